//! The API key stays secret (Debug, errors, logs), goes only to the configured host, and
//! redirects never carry it elsewhere.

mod common;

use std::time::Duration;

use blossom_client::{BlossomClient, ClientConfig, DEFAULT_BASE_URL, Error, SessionConfig};
use blossom_mock::Behavior;
use common::KEY;
use wiremock::matchers::{any, header, path};
use wiremock::{Mock, MockServer as WireMock, ResponseTemplate};

#[tokio::test]
async fn the_key_never_shows_in_debug_or_errors() {
    let wire = WireMock::start().await;
    let echo = format!(r#"{{"error":{{"code":"{KEY}","message":"key {KEY} is invalid","requestId":"{KEY}"}}}}"#);
    Mock::given(any()).respond_with(ResponseTemplate::new(401).set_body_string(echo)).mount(&wire).await;
    let builder = common::builder(*wire.address(), |_| {});
    assert!(!format!("{builder:?}").contains(KEY));
    let client = builder.build().unwrap();
    let err = client.text().generate("hi").await.unwrap_err();
    assert!(matches!(&err, Error::Api(api) if api.status == 401), "{err:?}");
    let config = ClientConfig { api_key: Some(blossom_client::ApiKey::new(KEY)), ..ClientConfig::default() };
    let shown = format!("{client:?} {config:?} {err:?} {err} {} {}", err.full_message(), err.suggestion());
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
}

#[tokio::test]
async fn the_key_never_shows_in_errors_that_quote_a_success_body_or_a_stream() {
    use blossom_client::{ChatOptions, ImageOptions, Message};
    use futures_util::StreamExt;
    let wire = WireMock::start().await;
    // A 200 whose JSON carries an error, an image that is text, and a stream that sends an
    // error event: each error quotes the server, and each server echoed the key.
    let chat = format!(r#"{{"error":{{"message":"token {KEY} is invalid"}}}}"#);
    Mock::given(path("/v1/chat/completions"))
        .and(header("accept", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_string(chat))
        .mount(&wire)
        .await;
    let event = format!("data: {{\"error\":{{\"message\":\"token {KEY} is invalid\"}}}}\n\n");
    Mock::given(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("content-type", "text/event-stream").set_body_string(event),
        )
        .mount(&wire)
        .await;
    Mock::given(path("/image/cat"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/plain")
                .set_body_string(format!("your key {KEY}")),
        )
        .mount(&wire)
        .await;
    // An error message cut inside the key: its start must not show either.
    let long = format!(r#"{{"error":{{"message":"{}{KEY}"}}}}"#, "x".repeat(490));
    Mock::given(path("/text/long")).respond_with(ResponseTemplate::new(401).set_body_string(long)).mount(&wire).await;
    let client = common::client(*wire.address(), |s| s.retry.max_retries = 0);
    let errors = [
        client.text().chat(&[Message::user("hi")]).await.unwrap_err(),
        client.text().chat_stream(&[Message::user("hi")], &ChatOptions::default()).next().await.unwrap().unwrap_err(),
        client.image().generate("cat", &ImageOptions::default()).await.unwrap_err(),
        client.text().generate("long").await.unwrap_err(),
    ];
    for err in errors {
        let shown = format!("{err:?} {err} {}", err.full_message());
        assert!(shown.contains("redacted"), "the quote is there: {shown}");
        assert!(!shown.contains(&KEY[..8]), "{shown}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_key_never_shows_in_logs() {
    let logs = common::LogCapture::default();
    let _guard = logs.install();
    let (server, addr) = common::mock().await;
    let client = common::client(addr, |s| {
        s.log_requests = true;
        s.slow_request_threshold = Duration::from_millis(1);
        s.retry.max_retries = 1;
    });
    client.text().generate("hi").await.unwrap();
    for behavior in [
        Behavior::Status(401),
        Behavior::Status(503),
        Behavior::ResetMidBody,
        Behavior::RateLimited { retry_after_secs: 60 },
    ] {
        server.set_behavior(behavior);
        let _ = client.text().generate("hi").await;
    }
    let _ = client.warmup(2).await;
    let text = logs.text();
    assert!(text.contains("request") && text.contains("slow request"), "nothing was logged: {text}");
    assert!(!text.contains(KEY), "{text}");
    assert!(!text.to_ascii_lowercase().contains("bearer"), "{text}");
}

#[tokio::test]
async fn authorization_goes_to_the_configured_host() {
    let wire = WireMock::start().await;
    Mock::given(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string("authorized"))
        .expect(2)
        .mount(&wire)
        .await;
    Mock::given(any()).respond_with(ResponseTemplate::new(401)).mount(&wire).await;
    let client = common::client(*wire.address(), |_| {});
    assert_eq!(client.text().generate("hi").await.unwrap(), "authorized");
    assert_eq!(client.text().generate("again").await.unwrap(), "authorized");
    // Without a key, no Authorization header at all.
    let anonymous = BlossomClient::builder()
        .base_url(format!("http://{}", wire.address()))
        .session_with(common::fast)
        .build()
        .unwrap();
    let err = anonymous.text().generate("hi").await.unwrap_err();
    assert!(matches!(&err, Error::Api(api) if api.status == 401), "{err:?}");
    let requests = wire.received_requests().await.unwrap();
    assert!(requests.last().unwrap().headers.get("authorization").is_none());
}

/// A second host that records whatever reaches it.
async fn elsewhere() -> WireMock {
    let other = WireMock::start().await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200).set_body_string("stolen")).mount(&other).await;
    other
}

fn redirect_to(location: &str) -> ResponseTemplate {
    ResponseTemplate::new(302).insert_header("location", location)
}

#[tokio::test]
async fn redirects_are_refused_by_default() {
    let other = elsewhere().await;
    let wire = WireMock::start().await;
    let location = format!("{}/text/hi", other.uri());
    Mock::given(any()).respond_with(redirect_to(&location)).mount(&wire).await;
    let client = common::client(*wire.address(), |_| {});
    let err = client.text().generate("hi").await.unwrap_err();
    assert!(matches!(err, Error::RedirectRefused { status: 302 }), "{err:?}");
    assert!(other.received_requests().await.unwrap().is_empty());
    assert_eq!(wire.received_requests().await.unwrap().len(), 1, "not retried");
}

#[tokio::test]
async fn a_redirect_to_another_host_is_refused_when_redirects_are_on() {
    let other = elsewhere().await;
    let wire = WireMock::start().await;
    let location = format!("{}/text/hi", other.uri());
    Mock::given(any()).respond_with(redirect_to(&location)).mount(&wire).await;
    let client = common::builder(*wire.address(), |_| {}).max_redirects(5).build().unwrap();
    let err = client.text().generate("hi").await.unwrap_err();
    assert!(matches!(err, Error::RedirectRefused { status: 302 }), "{err:?}");
    assert!(other.received_requests().await.unwrap().is_empty(), "the key went to another host");
    for location in ["//evil.example/text/hi", "https://127.0.0.1/text/hi"] {
        let wire = WireMock::start().await;
        Mock::given(any()).respond_with(redirect_to(location)).mount(&wire).await;
        let client = common::builder(*wire.address(), |_| {}).max_redirects(5).build().unwrap();
        let err = client.text().generate("hi").await.unwrap_err();
        assert!(matches!(err, Error::RedirectRefused { .. }), "{location}: {err:?}");
    }
}

#[tokio::test]
async fn same_host_redirects_are_followed_up_to_the_limit() {
    let wire = WireMock::start().await;
    Mock::given(path("/text/old")).respond_with(redirect_to("/text/new")).mount(&wire).await;
    Mock::given(path("/text/new"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string("moved"))
        .mount(&wire)
        .await;
    Mock::given(path("/text/loop")).respond_with(redirect_to("/text/loop")).mount(&wire).await;
    // A fragment names a part of the page: it stays with the client, the path is followed.
    Mock::given(path("/text/part")).respond_with(redirect_to("/text/new#top")).mount(&wire).await;
    let client = common::builder(*wire.address(), |_| {}).max_redirects(3).build().unwrap();
    assert_eq!(client.text().generate("old").await.unwrap(), "moved");
    assert_eq!(client.text().generate("part").await.unwrap(), "moved");
    let before = wire.received_requests().await.unwrap().len();
    let err = client.text().generate("loop").await.unwrap_err();
    assert!(matches!(err, Error::TooManyRedirects { limit: 3 }), "{err:?}");
    assert_eq!(wire.received_requests().await.unwrap().len() - before, 4, "the request and three redirects");
}

#[tokio::test]
async fn bodies_are_capped_and_https_is_the_default() {
    assert_eq!(SessionConfig::default().max_response_bytes, 50 * 1024 * 1024);
    assert!(DEFAULT_BASE_URL.starts_with("https://"));
    assert!(ClientConfig::default().base_url.starts_with("https://"));
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::Large(2 << 20));
    let client = common::client(addr, |s| s.max_response_bytes = 1 << 20);
    let err = client.text().generate("hi").await.unwrap_err();
    assert!(matches!(err, Error::BodyTooLarge { limit_bytes } if limit_bytes == 1 << 20), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(server.stats().generations, 1, "an oversized body is not retried");
}

#[tokio::test]
async fn a_same_host_redirect_to_a_malformed_path_is_refused_not_followed() {
    // Each is visible ASCII (a valid header value) but no valid request path.
    for location in ["/text/a b", "/text/<x>"] {
        let wire = WireMock::start().await;
        Mock::given(any()).respond_with(redirect_to(location)).mount(&wire).await;
        let client = common::builder(*wire.address(), |_| {}).max_redirects(5).build().unwrap();
        let err = client.text().generate("hi").await.unwrap_err();
        assert!(matches!(err, Error::RedirectRefused { status: 302 }), "{location}: {err:?}");
        assert_eq!(wire.received_requests().await.unwrap().len(), 1, "{location}: not followed");
    }
}
