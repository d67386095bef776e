//! h2c with prior knowledge: concurrent requests share one connection until its streams run out.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use blossom_mock::Behavior;
use bytes::Bytes;
use futures_util::future::join_all;

fn latency() -> Behavior {
    Behavior::Healthy { base: Duration::from_millis(100), jitter: Duration::ZERO }
}

#[tokio::test]
async fn concurrent_requests_share_one_connection() {
    let (server, addr) = common::mock().await;
    server.set_behavior(latency());
    let client = common::builder(addr, |_| {}).http2_prior_knowledge().build().unwrap();
    let calls = (0..30).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("prompt {i}")).await }
    });
    for result in join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(server.stats().connections, 1, "every request multiplexed on one connection");
    assert_eq!(server.stats().max_in_flight, 30, "and they really ran at once");
    let stats = client.stats();
    assert_eq!((stats.connections_created, stats.connections_reused), (1, 29));
    // Later requests keep using it.
    client.text().generate("later").await.unwrap();
    assert_eq!(server.stats().connections, 1);
}

#[tokio::test]
async fn finished_requests_give_their_sender_back_for_the_next() {
    let (server, addr) = common::mock().await;
    server.set_behavior(latency());
    let client = common::builder(addr, |_| {}).http2_prior_knowledge().build().unwrap();
    let batch = || {
        join_all((0..30).map(|i| {
            let client = client.clone();
            async move { client.text().generate(&format!("prompt {i}")).await }
        }))
    };
    assert!(batch().await.iter().all(Result::is_ok));
    assert_eq!(client.spare_senders(), 30, "each of 30 requests at once gave its sender back");
    // A second batch borrows those: no new clone, none lost.
    assert!(batch().await.iter().all(Result::is_ok));
    assert_eq!(client.spare_senders(), 30);
    client.text().generate("one more").await.unwrap();
    assert_eq!(client.spare_senders(), 30);
    assert_eq!(server.stats().connections, 1);
}

#[tokio::test]
async fn a_second_connection_opens_only_past_the_stream_limit() {
    // The mock takes hyper's default of 200 streams at once, as many as the pool allows.
    let (server, addr) = common::mock().await;
    server.set_behavior(latency());
    let client = common::builder(addr, |_| {}).http2_prior_knowledge().build().unwrap();
    let calls = (0..250).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("prompt {i}")).await }
    });
    let results = join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(server.stats().connections, 2);
    assert_eq!(client.stats().connections_created, 2);
}

/// `requests` sent at once, after a first one (whose connection reads the server's SETTINGS before
/// its answer), to a server that takes `limit` streams per connection: its statistics then.
async fn burst_at_peer_limit(limit: u32, requests: usize) -> blossom_mock::ServerStats {
    let (server, addr) = common::mock().await;
    server.set_behavior(latency());
    server.set_http2_max_streams(limit);
    let client = common::builder(addr, |_| {}).http2_prior_knowledge().build().unwrap();
    client.text().generate("first").await.unwrap();
    let calls = (0..requests).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("prompt {i}")).await }
    });
    assert!(join_all(calls).await.iter().all(Result::is_ok));
    server.stats()
}

#[tokio::test]
async fn streams_past_the_peers_limit_open_another_connection_rather_than_queue() {
    let stats = burst_at_peer_limit(10, 25).await;
    assert_eq!(stats.connections, 3, "10 streams per connection for 25 requests");
    assert_eq!(stats.max_in_flight, 25, "none waited inside a full connection");
}

/// A limit of exactly 100 (Apache's and hypercorn's default, next to the 99 the client assumes
/// before a peer's SETTINGS) is seen all the same: 250 requests take three connections.
#[tokio::test]
async fn a_peer_limit_of_100_is_told_apart_from_no_settings_yet() {
    let stats = burst_at_peer_limit(100, 250).await;
    assert_eq!(stats.connections, 3, "100 streams per connection for 250 requests");
    assert_eq!(stats.max_in_flight, 250, "none waited inside a full connection");
}

/// A `POST` of a JSON body to `path`, not idempotent.
fn json_post(path: &str) -> blossom_client::RequestSpec {
    blossom_client::RequestSpec {
        method: http::Method::POST,
        path_and_query: path.into(),
        body: Some(Bytes::from_static(b"{}")),
        content_type: Some("application/json"),
        accept: "application/json",
        idempotent: false,
    }
}

/// An h2c client whose breaker opens at the first failure and that retries no failure: only a
/// request the server did not process goes again.
fn unforgiving_h2c_client(addr: std::net::SocketAddr) -> blossom_client::BlossomClient {
    common::builder(addr, |s| {
        s.breaker.failure_threshold = 1;
        s.breaker.failure_rate_threshold = None;
        s.retry.max_retries = 0;
    })
    .http2_prior_knowledge()
    .build()
    .unwrap()
}

/// An h2c server on loopback: each connection it accepts goes, after the handshake, to `serve`
/// with its number (from 0). Returns its address and the connections it accepted.
async fn h2c_server<F, S>(serve: F) -> (std::net::SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, H2ServerConnection) -> S + Send + Sync + 'static,
    S: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let number = counter.fetch_add(1, Ordering::Relaxed);
            let serve = serve.clone();
            tokio::spawn(async move {
                if let Ok(connection) = h2::server::handshake(tcp).await {
                    serve(number, connection).await;
                }
            });
        }
    });
    (addr, accepted)
}

type H2ServerConnection = h2::server::Connection<tokio::net::TcpStream, Bytes>;

/// Answers a stream with `head` and the body `text`.
fn respond(mut stream: h2::server::SendResponse<Bytes>, head: http::Response<()>, text: &'static [u8]) {
    if let Ok(mut body) = stream.send_response(head, false) {
        let _ = body.send_data(Bytes::from_static(text), true);
    }
}

/// Answers a stream `echo`, as text.
fn echo(stream: h2::server::SendResponse<Bytes>) {
    respond(stream, http::Response::builder().header("content-type", "text/plain").body(()).unwrap(), b"echo");
}

/// An h2c server on loopback that resets the first `refuse` streams with `reason` and answers the
/// others; returns its address and the connections it accepted.
async fn resetting_server(refuse: usize, reason: h2::Reason) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let streams = Arc::new(AtomicUsize::new(0));
    h2c_server(move |_, mut connection| {
        let streams = streams.clone();
        async move {
            while let Some(Ok((_request, mut stream))) = connection.accept().await {
                if streams.fetch_add(1, Ordering::Relaxed) < refuse {
                    stream.send_reset(reason);
                } else {
                    echo(stream);
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_refused_stream_is_retried_on_the_same_connection() {
    let (addr, accepted) = resetting_server(1, h2::Reason::REFUSED_STREAM).await;
    let client = common::builder(addr, |_| {}).http2_prior_knowledge().build().unwrap();
    assert_eq!(client.text().generate("hello").await.unwrap(), "echo");
    assert_eq!(client.stats().requests_retried, 1, "the refused stream was retried");
    assert_eq!(accepted.load(Ordering::Relaxed), 1, "a reset stream leaves its connection serving");
    assert_eq!(client.stats().connections_created, 1);
}

/// `REFUSED_STREAM` says the server did not process the request (RFC 9113, 8.7): it is sent
/// again at once even when it is not idempotent, and does not count against the region (a
/// breaker that opens at the first failure stays closed).
#[tokio::test]
async fn a_refused_stream_is_sent_again_whatever_its_method_and_is_not_the_regions_failure() {
    let (addr, _) = resetting_server(1, h2::Reason::REFUSED_STREAM).await;
    let client = unforgiving_h2c_client(addr);
    let post = json_post("/openai");
    let reply = client.send(&post).await.expect("sent again after the refusal");
    assert_eq!(reply.body, "echo");
    assert_eq!(client.stats().requests_retried, 1);
    assert_eq!(client.breaker_state("default"), Some(blossom_client::pool_core::BreakerState::Closed));
}

/// An h2c server on loopback whose first connection goes away (`GOAWAY`, `NO_ERROR`) before it
/// reads a stream, so it processes none; later ones answer. Returns its address, the connections
/// it accepted and the requests it answered.
async fn going_away_server() -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let answered = Arc::new(AtomicUsize::new(0));
    let requests = answered.clone();
    let (addr, accepted) = h2c_server(move |number, mut connection| {
        let requests = requests.clone();
        async move {
            if number == 0 {
                // No frame after the preface is read yet: the GOAWAY's last stream is 0.
                connection.abrupt_shutdown(h2::Reason::NO_ERROR);
            }
            while let Some(Ok((_request, stream))) = connection.accept().await {
                requests.fetch_add(1, Ordering::Relaxed);
                echo(stream);
            }
        }
    })
    .await;
    (addr, accepted, answered)
}

/// A `GOAWAY` with `NO_ERROR` (here a single one, naming stream 0, not h2's two-step graceful
/// shutdown) that names a last stream below the request's says the server
/// did not process it (RFC 9113, 8.7): as after `REFUSED_STREAM`, it goes again on a new
/// connection even when it is not idempotent, and the region is not counted failed.
#[tokio::test]
async fn a_request_a_goaway_left_unprocessed_goes_again_on_a_new_connection() {
    let (addr, accepted, answered) = going_away_server().await;
    let client = unforgiving_h2c_client(addr);
    let reply = client.send(&json_post("/openai")).await.expect("sent again on a new connection");
    assert_eq!(reply.body, "echo");
    assert_eq!(accepted.load(Ordering::Relaxed), 2, "the first connection went away");
    assert_eq!(answered.load(Ordering::Relaxed), 1, "the server processed the request once");
    assert_eq!(client.stats().requests_retried, 1);
    assert_eq!(client.breaker_state("default"), Some(blossom_client::pool_core::BreakerState::Closed));
}

/// A stream reset with `NO_ERROR` outside a `GOAWAY` does not say the request went unprocessed:
/// a `POST` sent once is not sent again, and the failure counts against the region.
#[tokio::test]
async fn a_stream_reset_with_no_error_is_not_taken_for_an_unprocessed_request() {
    let (addr, _) = resetting_server(1, h2::Reason::NO_ERROR).await;
    let client = unforgiving_h2c_client(addr);
    let error = client.send(&json_post("/openai")).await.expect_err("a POST is not sent twice");
    assert!(matches!(error, blossom_client::Error::Http { .. }), "{error:?}");
    assert_eq!(client.stats().requests_retried, 0);
    assert_eq!(client.breaker_state("default"), Some(blossom_client::pool_core::BreakerState::Open));
}

/// An h2c server on loopback: `POST /a` is answered 303 to `/b`, whose first request is refused
/// (`REFUSED_STREAM`) and later ones answered; returns its address and the `POST`s it saw.
async fn redirect_then_refuse_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let posts = Arc::new(AtomicUsize::new(0));
    let (seen, refused) = (posts.clone(), Arc::new(AtomicUsize::new(0)));
    let (addr, _) = h2c_server(move |_, mut connection| {
        let (seen, refused) = (seen.clone(), refused.clone());
        async move {
            while let Some(Ok((request, mut stream))) = connection.accept().await {
                let head = if request.method() == http::Method::POST {
                    seen.fetch_add(1, Ordering::Relaxed);
                    http::Response::builder().status(303).header("location", "/b").body(()).unwrap()
                } else if refused.fetch_add(1, Ordering::Relaxed) == 0 {
                    stream.send_reset(h2::Reason::REFUSED_STREAM);
                    continue;
                } else {
                    http::Response::builder().body(()).unwrap()
                };
                respond(stream, head, b"done");
            }
        }
    })
    .await;
    (addr, posts)
}

/// A refusal of the request a redirect led to does not make the redirected one unprocessed: a
/// `POST` the server answered with a 303 is not sent again when the `GET` after it is refused.
#[tokio::test]
async fn a_refused_request_after_a_redirect_does_not_send_a_processed_post_again() {
    let (addr, posts) = redirect_then_refuse_server().await;
    let client =
        common::builder(addr, |s| s.retry.max_retries = 3).http2_prior_knowledge().max_redirects(2).build().unwrap();
    let post = json_post("/a");
    let result = client.send(&post).await;
    assert_eq!(posts.load(Ordering::Relaxed), 1, "the POST was processed once and sent once: {result:?}");
    assert!(matches!(result, Err(blossom_client::Error::Http { .. })), "{result:?}");
}

#[tokio::test]
async fn an_answer_refused_unread_leaves_its_connection_serving() {
    let (server, addr) = common::mock().await;
    // Each answer declares more than the client takes: the stream is dropped unread.
    let client = common::builder(addr, |s| s.max_response_bytes = 4).http2_prior_knowledge().build().unwrap();
    for _ in 0..3 {
        let error = client.text().generate("hello").await.unwrap_err();
        assert!(matches!(error, blossom_client::Error::BodyTooLarge { limit_bytes: 4 }), "{error:?}");
    }
    assert_eq!(server.stats().requests, 3);
    assert_eq!(server.stats().connections, 1, "each dropped stream left the connection serving");
}

#[tokio::test]
async fn a_stream_dropped_half_read_leaves_its_connection_serving() {
    use blossom_client::{ChatOptions, Message};
    use futures_util::StreamExt;
    let (server, addr) = common::mock().await;
    let client = common::builder(addr, |_| {}).http2_prior_knowledge().build().unwrap();
    for _ in 0..3 {
        let mut deltas = client.text().chat_stream(&[Message::user("hi")], &ChatOptions::default());
        assert_eq!(deltas.next().await.expect("a first delta").expect("ok"), "Hello");
    }
    client.text().generate("after").await.unwrap();
    assert_eq!(server.stats().requests, 4);
    assert_eq!(server.stats().connections, 1, "each stream dropped unread left the connection serving");
}

// Paused time: the caller's 100 ms pass only once the request waits at the server, whose
// 5 s answer then never comes; no real time is spent.
#[tokio::test(start_paused = true)]
async fn a_call_given_up_before_any_answer_retires_its_connection() {
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::Healthy { base: Duration::from_secs(5), jitter: Duration::ZERO });
    let client = common::builder(addr, |_| {}).http2_prior_knowledge().build().unwrap();
    // No answer within the caller's patience: the connection may be dead, so it is not reused.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), client.text().generate("slow")).await;
    assert!(gave_up.is_err());
    assert_eq!(server.stats().requests, 1, "given up while the request waited at the server");
    server.set_behavior(Behavior::default());
    client.text().generate("after").await.unwrap();
    assert_eq!(server.stats().connections, 2);
}

#[tokio::test]
async fn a_chat_stream_reset_by_the_server_leaves_its_connection_serving() {
    use blossom_client::{ChatOptions, Message};
    use futures_util::StreamExt;
    let (server, addr) = common::mock().await;
    let client = common::builder(addr, |s| s.retry.max_retries = 0).http2_prior_knowledge().build().unwrap();
    server.set_behavior(Behavior::ResetMidBody);
    let deltas: Vec<_> = client.text().chat_stream(&[Message::user("hi")], &ChatOptions::default()).collect().await;
    assert!(matches!(deltas.last(), Some(Err(blossom_client::Error::Stream { .. }))), "{deltas:?}");
    server.set_behavior(Behavior::default());
    client.text().generate("after").await.unwrap();
    assert_eq!(server.stats().connections, 1, "the reset ended the stream, not the connection");
}

#[tokio::test]
async fn streams_and_errors_over_h2() {
    use blossom_client::{ChatOptions, Error, Message};
    use futures_util::StreamExt;
    let (server, addr) = common::mock().await;
    let client = common::builder(addr, |s| s.retry.max_retries = 0).http2_prior_knowledge().build().unwrap();
    let text: Vec<_> = client.text().chat_stream(&[Message::user("hi")], &ChatOptions::default()).collect().await;
    assert_eq!(text.into_iter().map(Result::unwrap).collect::<String>(), "Hello from the mock");
    server.set_behavior(Behavior::ResetMidBody);
    let err = client.text().generate("hi").await.unwrap_err();
    assert!(matches!(err, Error::Stream { .. }), "{err:?}");
    server.set_behavior(Behavior::default());
    client.text().generate("after").await.unwrap();
}

#[tokio::test]
async fn bodies_past_the_flow_control_windows_are_read_whole() {
    // 3 MiB each: past the 2 MiB stream window, and two together past the 5 MiB connection
    // window. A body whose window were not opened again as it is read would stall here.
    const SIZE: usize = 3 * 1024 * 1024;
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::Large(SIZE));
    let client = common::builder(addr, |_| {}).http2_prior_knowledge().build().unwrap();
    for _ in 0..3 {
        let text = client.text().generate("big").await.unwrap();
        assert_eq!(text.len(), SIZE);
    }
    let text = client.text();
    let together = join_all((0..2).map(|_| text.generate("big"))).await;
    assert!(together.iter().all(|r| r.as_ref().is_ok_and(|t| t.len() == SIZE)));
    assert_eq!(server.stats().connections, 1, "all on one connection");
}

#[tokio::test]
async fn a_request_body_past_the_peers_window_is_sent_whole() {
    use blossom_client::{ChatOptions, Message};
    // 3 MiB of message: more than the server's windows take at once, so the body waits for its
    // window updates. The server answers only once it has the whole body.
    let (server, addr) = common::mock().await;
    let client = common::builder(addr, |_| {}).http2_prior_knowledge().build().unwrap();
    let long = "x".repeat(3 * 1024 * 1024);
    let answer = client.text().chat_with(&[Message::user(&long)], &ChatOptions::default()).await.unwrap();
    assert!(!answer.is_empty());
    assert_eq!((server.stats().connections, server.stats().generations), (1, 1));
}

/// An h2c server on loopback that takes each connection's first request, then falls silent: it
/// neither answers nor reads again, as a peer that vanished. Returns its address and the
/// connections it accepted.
async fn silent_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    silent_after(0).await
}

/// As `silent_server`, but answers the first `answered` requests of each connection first.
async fn silent_after(answered: usize) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    h2c_server(move |_, mut connection| async move {
        for _ in 0..answered {
            let Some(Ok((_request, stream))) = connection.accept().await else { return };
            echo(stream);
        }
        if answered == 0 {
            let _request = connection.accept().await;
        } else {
            // Flushes the answers, then stops: the PINGs that follow go unanswered.
            let _ = tokio::time::timeout(Duration::from_millis(10), connection.accept()).await;
        }
        // Held, never polled again: no answer, no PONG.
        std::future::pending::<()>().await;
        drop(connection);
    })
    .await
}

// Paused time: the clock jumps from one timer to the next, so the instants below are exact.
#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_answering_pings_fails_its_streams_before_their_read_timeout() {
    let (addr, accepted) = silent_server().await;
    let client = common::builder(addr, |s| {
        s.http2_ping_interval = Some(Duration::from_secs(1));
        s.http2_ping_timeout = Duration::from_millis(500);
        s.retry.max_retries = 0;
    })
    .http2_prior_knowledge()
    .build()
    .unwrap();
    let start = tokio::time::Instant::now();
    let error = client.text().generate("hello").await.unwrap_err();
    let took = start.elapsed();
    // The read timeout (5 s in tests) would end it later, as a timeout.
    assert!(!matches!(error, blossom_client::Error::Timeout { .. }), "{error:?}");
    let cause = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("PING unanswered"), "the caller learns why: {cause}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(2),
        "one interval and one timeout: {took:?}"
    );
    assert_eq!(client.stats().connections_closed.total(), 1, "the silent connection was retired");
    // The next call does not join the dead connection.
    let _ = client.text().generate("again").await;
    assert_eq!(accepted.load(Ordering::Relaxed), 2);
}

/// A connector whose every attempt is refused after a while; counts the attempts.
struct RefusedAfter(Duration, Arc<AtomicUsize>);

impl blossom_client::Connect for RefusedAfter {
    fn connect(&self, _target: &blossom_client::Target) -> blossom_client::ConnectFuture {
        self.1.fetch_add(1, Ordering::Relaxed);
        let delay = self.0;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
        })
    }
}

// Paused time: the connector's delay is virtual.
#[tokio::test(start_paused = true)]
async fn requests_waiting_to_share_an_http2_connection_that_fails_to_open_fail_with_it() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let client = blossom_client::BlossomClient::builder()
        .base_url("http://127.0.0.1:9")
        .connector(RefusedAfter(Duration::from_millis(100), attempts.clone()))
        .session_with(|s| {
            common::fast(s);
            s.retry.max_retries = 0;
        })
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // The first opens the connection; the other two wait to share it.
    let text = client.text();
    let calls = join_all((0..3).map(|_| text.generate("hello"))).await;
    for call in &calls {
        assert!(matches!(call, Err(blossom_client::Error::Connect { .. })), "{call:?}");
    }
    assert_eq!(attempts.load(Ordering::Relaxed), 1, "one attempt, not one per waiter in turn");
    assert_eq!(client.stats().connections_failed, 1);
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_whose_peer_went_silent_is_counted_broken_not_closed_by_the_server() {
    let (addr, accepted) = silent_after(1).await;
    let client = common::builder(addr, |s| {
        s.http2_ping_interval = Some(Duration::from_secs(1));
        s.http2_ping_timeout = Duration::from_millis(500);
    })
    .http2_prior_knowledge()
    .build()
    .unwrap();
    assert_eq!(client.text().generate("hello").await.unwrap(), "echo");
    // Idle now: its PING at 1 s goes unanswered until 1.5 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let closed = client.stats().connections_closed;
    assert_eq!((closed.broken, closed.server_closed), (1, 0), "{closed:?}");
    assert_eq!(accepted.load(Ordering::Relaxed), 1);
}

/// Connects as `TcpConnector` does, after a while; counts the attempts.
struct SlowToConnect(Duration, Arc<AtomicUsize>, blossom_client::TcpConnector);

impl blossom_client::Connect for SlowToConnect {
    fn connect(&self, target: &blossom_client::Target) -> blossom_client::ConnectFuture {
        self.1.fetch_add(1, Ordering::Relaxed);
        let (delay, connecting) = (self.0, self.2.connect(target));
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            connecting.await
        })
    }
}

// Paused time: the connector's delay and the caller's patience are virtual.
#[tokio::test(start_paused = true)]
async fn a_caller_giving_up_on_a_connect_does_not_fail_those_waiting_to_share_it() {
    let (_server, addr) = common::mock().await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let connector = SlowToConnect(Duration::from_millis(100), attempts.clone(), blossom_client::TcpConnector::new());
    let client = common::builder(addr, |s| s.retry.max_retries = 0)
        .connector(connector)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let text = client.text();
    // The first call opens the connection and is given up at 50 ms; two more wait to share it.
    let (gave_up, shared) =
        tokio::join!(tokio::time::timeout(Duration::from_millis(50), text.generate("first")), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            join_all((0..2).map(|_| text.generate("hello"))).await
        });
    assert!(gave_up.is_err(), "given up while connecting");
    for call in &shared {
        assert_eq!(call.as_deref().ok(), Some("echo: hello"), "{call:?}");
    }
    assert_eq!(attempts.load(Ordering::Relaxed), 2, "the abandoned connect, then one the waiters share");
    assert_eq!(client.stats().connections_failed, 0, "giving up is no failure");
}
