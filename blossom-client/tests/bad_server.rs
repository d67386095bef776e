//! A misbehaving server: each failure is its typed error within the configured deadline, without
//! panic, and the pool stays usable for the next request.

mod common;

use std::time::Duration;

use blossom_client::{BlossomClient, ChatOptions, Error, Message, TimeoutPhase};
use blossom_mock::Behavior;
use common::{Act, RawServer};
use futures_util::StreamExt;

const GUARD: Duration = Duration::from_secs(10);

/// A client that does not retry, with short read timeouts and a 1000-byte body cap.
fn strict(addr: std::net::SocketAddr) -> BlossomClient {
    common::client(addr, |s| {
        s.retry.max_retries = 0;
        s.async_timeout_sock_read = Duration::from_millis(300);
        s.max_response_bytes = 1000;
    })
}

async fn chat(client: &BlossomClient) -> Result<String, Error> {
    common::within(GUARD, client.text().chat(&[Message::user("hi")])).await
}

/// Sets `behavior`, expects `check` to accept the error of a chat call, then heals the server and
/// expects the same client to succeed.
async fn case(behavior: Behavior, check: impl Fn(&Error) -> bool) {
    let (server, addr) = common::mock().await;
    let client = strict(addr);
    server.set_behavior(behavior.clone());
    let err = chat(&client).await.expect_err("a bad answer was accepted");
    assert!(check(&err), "{behavior:?}: unexpected {err:?}");
    assert_eq!(server.stats().generations, 1, "{behavior:?}");
    server.set_behavior(Behavior::default());
    assert_eq!(chat(&client).await.unwrap(), "Hello from the mock", "{behavior:?}: the pool is usable again");
    let stats = client.stats();
    assert_eq!((stats.pool_busy, stats.pool_waiting), (0, 0), "{behavior:?}");
    assert_eq!((stats.requests_succeeded, stats.requests_failed.total()), (1, 1), "{behavior:?}");
    assert_eq!(stats.connections_created, server.stats().connections, "{behavior:?}");
}

#[tokio::test]
async fn reset_mid_body() {
    case(Behavior::ResetMidBody, |e| matches!(e, Error::Stream { source: Some(_), .. })).await;
}

#[tokio::test]
async fn truncated_body() {
    case(Behavior::Truncated, |e| matches!(e, Error::Stream { source: Some(_), .. })).await;
}

#[tokio::test]
async fn invalid_json() {
    case(Behavior::InvalidJson, |e| matches!(e, Error::InvalidResponse { .. })).await;
}

#[tokio::test]
async fn empty_200() {
    case(Behavior::Empty200, |e| matches!(e, Error::EmptyResponse)).await;
}

#[tokio::test]
async fn body_over_the_cap() {
    case(Behavior::Large(100_000), |e| matches!(e, Error::BodyTooLarge { limit_bytes: 1000 })).await;
}

#[tokio::test]
async fn stall_after_headers() {
    case(Behavior::HangAfterHeaders, |e| matches!(e, Error::Timeout { phase: TimeoutPhase::Read, .. })).await;
}

#[tokio::test]
async fn error_status() {
    case(Behavior::Status(503), |e| matches!(e, Error::Api(api) if api.status == 503)).await;
}

#[tokio::test]
async fn a_chunked_body_over_the_cap_is_cut_off() {
    // No Content-Length: the cap is enforced while reading.
    let chunk = format!("{:x}\r\n{}\r\n", 400, "x".repeat(400));
    let body = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(10)
    );
    let server = RawServer::start(move |_| Act::Send(body.clone().into_bytes())).await;
    let client = strict(server.addr);
    let err = common::within(GUARD, client.text().generate("hi")).await.unwrap_err();
    assert!(matches!(err, Error::BodyTooLarge { limit_bytes: 1000 }), "{err:?}");
    assert_eq!(client.stats().pool_size, 0, "a connection with unread body is closed");
}

#[tokio::test]
async fn an_unreachable_host_is_a_connect_error() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // dropped: closed
    let client = strict(addr);
    let err = common::within(GUARD, client.text().generate("hi")).await.unwrap_err();
    assert!(matches!(&err, Error::Connect { region, .. } if region == "default"), "{err:?}");
    assert!(err.is_retryable());
    let stats = client.stats();
    assert_eq!((stats.connections_failed, stats.pool_size), (1, 0));
}

#[tokio::test]
async fn a_server_that_closes_without_answering() {
    let server = RawServer::start(|_| Act::Close).await;
    let client = strict(server.addr);
    let err = common::within(GUARD, client.text().generate("hi")).await.unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err:?}");
    assert_eq!(client.stats().pool_size, 0);
}

#[tokio::test]
async fn a_broken_stream() {
    let (server, addr) = common::mock().await;
    let client = strict(addr);
    for behavior in [Behavior::ResetMidBody, Behavior::Truncated] {
        server.set_behavior(behavior.clone());
        let items: Vec<_> =
            common::within(GUARD, client.text().chat_stream(&[Message::user("hi")], &ChatOptions::default()).collect())
                .await;
        assert!(matches!(items.last(), Some(Err(Error::Stream { .. }))), "{behavior:?}: {items:?}");
    }
    server.set_behavior(Behavior::default());
    let deltas: Vec<_> =
        client.text().chat_stream(&[Message::user("hi")], &ChatOptions::default()).collect::<Vec<_>>().await;
    let text: String = deltas.into_iter().map(Result::unwrap).collect();
    assert_eq!(text, "Hello from the mock");
}
