//! What is retried, how often, and how long a 429 makes the client wait.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blossom_client::{ApiErrorKind, Error};
use blossom_mock::Behavior;
use common::{Act, RawServer};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer as WireMock, Request, Respond, ResponseTemplate};

const GUARD: Duration = Duration::from_secs(10);

fn status_of(result: Result<String, Error>) -> u16 {
    match result {
        Err(Error::Api(api)) => api.status,
        other => panic!("expected an api error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stale_connection_is_retried_once_on_a_fresh_one() {
    // Answers the first request of each connection; closes the connection, unanswered, when a
    // second request arrives on it: the keep-alive race, without `Connection: close`.
    let server = RawServer::start(|n| if n == 0 { Act::Send(common::ok_text("fresh")) } else { Act::Close }).await;
    let client = common::client(server.addr, |s| s.retry.max_retries = 0);
    assert_eq!(client.text().generate("one").await.unwrap(), "fresh");
    assert_eq!(client.text().generate("two").await.unwrap(), "fresh", "retried although max_retries is 0");
    assert_eq!((server.connections(), server.requests()), (2, 3));
    let stats = client.stats();
    assert_eq!((stats.requests_succeeded, stats.requests_retried), (2, 1));
    assert_eq!(stats.connections_created, 2);
}

#[tokio::test]
async fn the_retry_after_a_stale_connection_does_not_take_another_stale_one() {
    let server = RawServer::start(|n| if n == 0 { Act::Send(common::ok_text("fresh")) } else { Act::Close }).await;
    let client = common::client(server.addr, |s| s.retry.max_retries = 0);
    // Two overlapping calls on a cold pool: two connections, both idle afterwards, both stale
    // (the server closes each when its second request arrives).
    let text = client.text();
    let (a, b) = tokio::join!(text.generate("a"), text.generate("b"));
    assert_eq!((a.unwrap(), b.unwrap()), ("fresh".to_string(), "fresh".to_string()));
    assert_eq!(client.stats().pool_idle, 2);
    let result = common::within(GUARD, client.text().generate("c")).await;
    assert_eq!(result.unwrap(), "fresh");
    assert_eq!(server.requests(), 4, "two calls, then one stale attempt and one retry");
    assert_eq!(server.connections(), 3, "the retry went to a fresh connection");
}

#[tokio::test]
async fn connections_the_server_closes_are_never_reused() {
    let (server, addr) = common::mock().await;
    server.close_connections_after(1);
    let client = common::client(addr, |s| s.retry.max_retries = 0);
    for i in 0..5 {
        client.text().generate(&format!("call {i}")).await.unwrap();
    }
    let stats = client.stats();
    assert_eq!((server.stats().connections, server.stats().requests), (5, 5));
    assert_eq!(stats.requests_retried, 0, "no attempt was sent on a closing connection");
    assert_eq!(stats.connections_created, 5);
}

#[tokio::test]
async fn retryable_statuses_are_retried_up_to_max_retries() {
    for status in [500, 502, 503, 504, 520, 522, 524] {
        let (server, addr) = common::mock().await;
        server.set_behavior(Behavior::Status(status));
        let client = common::client(addr, |s| s.retry.max_retries = 2);
        assert_eq!(status_of(common::within(GUARD, client.text().generate("hi")).await), status);
        assert_eq!(server.stats().generations, 3, "status {status}: one attempt and two retries");
        assert_eq!(client.stats().requests_retried, 2, "status {status}");
        assert_eq!(server.stats().connections, 1, "status {status}: an error status keeps the connection");
    }
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    for status in [400, 401, 402, 403, 404, 501] {
        let (server, addr) = common::mock().await;
        server.set_behavior(Behavior::Status(status));
        let client = common::client(addr, |s| s.retry.max_retries = 3);
        assert_eq!(status_of(client.text().generate("hi").await), status);
        assert_eq!(server.stats().generations, 1, "status {status} was retried");
        assert_eq!(client.stats().requests_retried, 0);
    }
}

#[tokio::test]
async fn connect_errors_are_retried() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }; // closed again: nothing listens there
    let client = common::client(addr, |s| s.retry.max_retries = 2);
    let err = common::within(GUARD, client.text().generate("hi")).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(client.stats().connections_failed, 3);
    assert_eq!(client.stats().requests_failed.connect, 1);
}

#[tokio::test]
async fn empty_200s_are_retried() {
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::Empty200);
    let client = common::client(addr, |s| s.retry.max_retries = 2);
    let err = common::within(GUARD, client.text().generate("hi")).await.unwrap_err();
    assert!(matches!(err, Error::EmptyResponse), "{err:?}");
    assert_eq!(server.stats().generations, 3);

    let wire = WireMock::start().await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).up_to_n_times(1).with_priority(1).mount(&wire).await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200).set_body_string("at last")).mount(&wire).await;
    let client = common::client(*wire.address(), |s| s.retry.max_retries = 2);
    assert_eq!(client.text().generate("hi").await.unwrap(), "at last");
    assert_eq!(wire.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn invalid_success_bodies_are_retried() {
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::InvalidJson);
    let client = common::client(addr, |s| s.retry.max_retries = 2);
    let err = client.text().chat(&[blossom_client::Message::user("hi")]).await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert_eq!(server.stats().generations, 3);
    assert_eq!(client.stats().requests_failed.response, 1);
}

/// Answers 429 with `Retry-After: 1` and records when each request came.
#[derive(Clone, Default)]
struct Limited(Arc<Mutex<Vec<Instant>>>);

impl Respond for Limited {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        self.0.lock().unwrap().push(Instant::now());
        ResponseTemplate::new(429)
            .insert_header("retry-after", "1")
            .set_body_string(r#"{"error":{"code":"RATE_LIMITED","message":"slow down"}}"#)
    }
}

#[tokio::test]
async fn a_429_waits_for_retry_after_then_succeeds() {
    let wire = WireMock::start().await;
    let limited = Limited::default();
    Mock::given(any()).respond_with(limited.clone()).up_to_n_times(1).with_priority(1).mount(&wire).await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200).set_body_string("ok")).mount(&wire).await;
    let client = common::client(*wire.address(), |s| s.retry.max_retries = 3);
    let started = Instant::now();
    assert_eq!(common::within(GUARD, client.text().generate("hi")).await.unwrap(), "ok");
    let requests = wire.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert!(started.elapsed() >= Duration::from_secs(1), "retried before Retry-After: {:?}", started.elapsed());
    assert_eq!(client.stats().requests_retried, 1);
}

#[tokio::test]
async fn a_429_is_never_retried_sooner_and_gives_up_at_the_deadline() {
    let wire = WireMock::start().await;
    let limited = Limited::default();
    Mock::given(any()).respond_with(limited.clone()).mount(&wire).await;
    let client = common::client(*wire.address(), |s| {
        s.retry.max_retries = 5;
        s.timeout = Duration::from_millis(1600);
    });
    let err = common::within(GUARD, client.text().generate("hi")).await.unwrap_err();
    let Error::Api(api) = &err else { panic!("expected the 429, got {err:?}") };
    assert_eq!((api.status, api.kind), (429, ApiErrorKind::RateLimited));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    let times = limited.0.lock().unwrap().clone();
    assert!(!times.is_empty() && times.len() <= 2, "{} requests in 1.6 s", times.len());
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_secs(1), "retried after {:?}", pair[1] - pair[0]);
    }
}

#[tokio::test]
async fn a_429_longer_than_the_deadline_fails_at_once() {
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::RateLimited { retry_after_secs: 60 });
    let client = common::client(addr, |s| s.timeout = Duration::from_secs(5));
    let started = Instant::now();
    let err = client.text().generate("hi").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "waited for the deadline instead of failing");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)), "{err:?}");
    assert_eq!(server.stats().generations, 1);
    // The region stays paused: the next call is refused without sending anything.
    let err = client.text().generate("again").await.unwrap_err();
    assert!(err.retry_after().is_some_and(|d| d > Duration::from_secs(50)), "{err:?}");
    assert_eq!(server.stats().generations, 1);
}
