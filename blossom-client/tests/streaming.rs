//! Streamed chat: deltas as a `Stream`, ending on `[DONE]`; a stream cut off before it is an error.

mod common;

use blossom_client::{ChatOptions, Error, Message};
use futures_util::StreamExt;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer as WireMock, ResponseTemplate};

fn sse(events: &[&str]) -> ResponseTemplate {
    let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    ResponseTemplate::new(200).insert_header("content-type", "text/event-stream").set_body_string(body)
}

const HEL: &str = r#"{"choices":[{"delta":{"content":"Hel"}}]}"#;
const LO: &str = r#"{"choices":[{"delta":{"content":"lo"}}]}"#;

async fn stream_from(template: ResponseTemplate) -> (Vec<Result<String, Error>>, blossom_client::Stats) {
    let wire = WireMock::start().await;
    Mock::given(any()).respond_with(template).mount(&wire).await;
    let client = common::client(*wire.address(), |s| s.retry.max_retries = 0);
    let items = client.text().chat_stream(&[Message::user("hi")], &ChatOptions::default()).collect().await;
    (items, client.stats())
}

#[tokio::test]
async fn deltas_until_done() {
    let (items, stats) = stream_from(sse(&[HEL, LO, "[DONE]"])).await;
    let deltas: Vec<String> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(deltas, ["Hel", "lo"]);
    assert_eq!((stats.requests_succeeded, stats.pool_idle), (1, 1), "the connection went back to the pool");
}

#[tokio::test]
async fn a_stream_without_done_is_a_stream_error() {
    let (items, stats) = stream_from(sse(&[HEL, LO])).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(matches!(items.last(), Some(Err(Error::Stream { .. }))), "{items:?}");
    assert!(items.last().unwrap().as_ref().unwrap_err().to_string().contains("[DONE]"));
    assert_eq!(stats.requests_failed.response, 1);
}

#[tokio::test]
async fn an_error_event_ends_the_stream() {
    let (items, _) = stream_from(sse(&[HEL, r#"{"error":{"message":"model overloaded"}}"#])).await;
    let last = items.last().unwrap().as_ref().unwrap_err();
    assert!(matches!(last, Error::Stream { .. }) && last.to_string().contains("overloaded"), "{last:?}");
}

#[tokio::test]
async fn a_line_over_the_limit_is_a_stream_error() {
    let big = format!(r#"{{"choices":[{{"delta":{{"content":"{}"}}}}]}}"#, "x".repeat(4000));
    let wire = WireMock::start().await;
    Mock::given(any()).respond_with(sse(&[&big, "[DONE]"])).mount(&wire).await;
    let client = common::client(*wire.address(), |s| s.max_response_bytes = 1000);
    let items: Vec<_> = client.text().chat_stream(&[Message::user("hi")], &ChatOptions::default()).collect().await;
    assert!(matches!(items.as_slice(), [Err(Error::Stream { .. })]), "{items:?}");
}

#[tokio::test]
async fn an_error_status_before_the_stream() {
    let (items, _) = stream_from(ResponseTemplate::new(402).set_body_string(r#"{"error":"balance exhausted"}"#)).await;
    assert!(matches!(items.as_slice(), [Err(Error::Api(api))] if api.status == 402), "{items:?}");
}

// Paused time: the server's 5 s delay and the caller's 100 ms patience are virtual.
#[tokio::test(start_paused = true)]
async fn calls_and_streams_dropped_before_their_end_are_counted_cancelled() {
    let (server, addr) = common::mock().await;
    let client = common::client(addr, |s| s.retry.max_retries = 0);
    let text = client.text();
    // A call given up while it waits for its answer.
    server.set_behavior(blossom_mock::Behavior::Healthy {
        base: std::time::Duration::from_secs(5),
        jitter: std::time::Duration::ZERO,
    });
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(100), text.generate("slow")).await;
    assert!(gave_up.is_err());
    server.set_behavior(blossom_mock::Behavior::default());
    // A stream dropped after its first delta.
    let mut stream = text.chat_stream(&[Message::user("hi")], &ChatOptions::default());
    assert!(stream.next().await.unwrap().is_ok());
    drop(stream);
    // And one read to its end.
    let items: Vec<_> = text.chat_stream(&[Message::user("hi")], &ChatOptions::default()).collect().await;
    assert!(items.len() > 1 && items.iter().all(Result::is_ok), "{items:?}");
    let stats = client.stats();
    let counted =
        (stats.requests_total, stats.requests_succeeded, stats.requests_failed.total(), stats.requests_cancelled);
    assert_eq!(counted, (3, 1, 0, 2), "every call counted once: {stats}");
}

// Paused time: the 5 s read timeout and the 2 s guard are virtual.
#[tokio::test(start_paused = true)]
async fn a_stream_ends_at_done_even_if_the_server_keeps_the_response_open() {
    use common::{Act, RawServer};
    // A chunked answer whose last chunk never comes: `[DONE]`, then nothing, connection open.
    let events = format!("data: {HEL}\n\ndata: [DONE]\n\n");
    let open = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{events}\r\n",
        events.len()
    );
    let server = RawServer::start(move |_| Act::Send(open.clone().into_bytes())).await;
    let client = common::client(server.addr, |s| s.async_timeout_sock_read = std::time::Duration::from_secs(5));
    let text = client.text();
    let items = tokio::select! {
        biased;
        // Well inside the read timeout: the end must not wait for it.
        _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => panic!("the stream outlived its [DONE]"),
        items = text.chat_stream(&[Message::user("hi")], &ChatOptions::default()).collect::<Vec<_>>() => items,
    };
    assert_eq!(items.into_iter().map(Result::unwrap).collect::<Vec<_>>(), ["Hel"]);
}
