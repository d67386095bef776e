//! `BlossomClient::send`: a request built by hand, through the same pool and policies as the
//! typed calls, answered unparsed.

mod common;

use std::time::Duration;

use blossom_client::{Error, RequestSpec};
use blossom_mock::Behavior;
use bytes::Bytes;
use common::{Act, RawServer};
use wiremock::matchers::{body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer as WireMock, ResponseTemplate};

const GUARD: Duration = Duration::from_secs(10);

fn spec(method: http::Method, path_and_query: &str) -> RequestSpec {
    RequestSpec {
        method,
        path_and_query: path_and_query.to_string(),
        body: None,
        content_type: None,
        accept: "application/json",
        idempotent: true,
    }
}

#[tokio::test]
async fn a_spec_is_sent_as_given_and_answered_unparsed() {
    let wire = WireMock::start().await;
    Mock::given(method("PUT"))
        .and(path("/v1/things/7"))
        .and(query_param("mode", "fast"))
        .and(header("content-type", "text/csv"))
        .and(header("accept", "text/csv"))
        .and(header("authorization", format!("Bearer {}", common::KEY).as_str()))
        .and(body_string("a,b\n1,2\n"))
        .respond_with(ResponseTemplate::new(201).insert_header("x-answer", "yes").set_body_string("stored"))
        .mount(&wire)
        .await;
    Mock::given(path("/empty")).respond_with(ResponseTemplate::new(204)).mount(&wire).await;
    let client = common::client(*wire.address(), |_| {});

    let put = RequestSpec {
        body: Some(Bytes::from_static(b"a,b\n1,2\n")),
        content_type: Some("text/csv"),
        accept: "text/csv",
        ..spec(http::Method::PUT, "/v1/things/7?mode=fast")
    };
    let reply = common::within(GUARD, client.send(&put)).await.unwrap();
    assert_eq!(reply.status, http::StatusCode::CREATED);
    assert_eq!(reply.headers["x-answer"], "yes");
    assert_eq!(reply.body, "stored");

    // An empty success is an answer here: no parser stands behind `send` to refuse it.
    let reply = common::within(GUARD, client.send(&spec(http::Method::GET, "/empty"))).await.unwrap();
    assert_eq!((reply.status, reply.body.len()), (http::StatusCode::NO_CONTENT, 0));
    let stats = client.stats();
    assert_eq!((stats.requests_succeeded, stats.connections_created), (2, 1));
}

#[tokio::test]
async fn a_spec_that_cannot_be_sent_as_given_is_refused_and_nothing_is_sent() {
    let wire = WireMock::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&wire)
        .await;
    let client = common::client(*wire.address(), |s| s.retry.max_retries = 2);
    let get = |path: &str| spec(http::Method::GET, path);
    let refused = [
        (get("text/no-slash"), "path_and_query"),
        (get("/a#fragment"), "path_and_query"),
        (get("/a b"), "path_and_query"),
        (get("/caf\u{e9}"), "path_and_query"),
        (get(&format!("/{}", "a".repeat(blossom_client::MAX_PATH_AND_QUERY_BYTES))), "path_and_query"),
        (spec(http::Method::CONNECT, "/"), "method"),
        (RequestSpec { accept: "text/plain\r\nx-injected: 1", ..get("/") }, "accept"),
        (RequestSpec { content_type: Some("text/\u{7f}"), ..get("/") }, "content_type"),
    ];
    for (spec, field) in &refused {
        let err = common::within(GUARD, client.send(spec)).await.expect_err(&format!("{spec:?} was sent"));
        assert!(matches!(err, Error::InvalidInput { .. }), "{spec:?}: {err:?}");
        assert!(err.to_string().contains(&format!("`{field}`")), "{spec:?}: {err}");
        assert!(!err.is_retryable());
    }
    assert!(wire.received_requests().await.unwrap().is_empty(), "a refused spec went out");
    // The connection a refused path had taken went back unharmed.
    let reply = common::within(GUARD, client.send(&get("/fine"))).await.unwrap();
    assert_eq!(reply.body, "ok");
    let stats = client.stats();
    assert_eq!((stats.connections_created, stats.requests_retried), (1, 0));
}

#[tokio::test]
async fn a_spec_that_is_not_idempotent_is_not_sent_again_once_sent() {
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::Status(503));
    let client = common::client(addr, |s| s.retry.max_retries = 2);
    let text = blossom_client::simple_text_request("hi", &Default::default()).unwrap();
    let once = RequestSpec { idempotent: false, ..text.clone() };
    let err = common::within(GUARD, client.send(&once)).await.unwrap_err();
    assert!(matches!(&err, Error::Api(api) if api.status == 503), "{err:?}");
    assert_eq!((server.stats().generations, client.stats().requests_retried), (1, 0));
    // The same spec marked idempotent is retried as the typed calls are.
    common::within(GUARD, client.send(&text)).await.unwrap_err();
    assert_eq!((server.stats().generations, client.stats().requests_retried), (4, 2));

    // A kept-alive connection the server drops when the request arrives: the request may have
    // been taken, so it is not sent again, not even once on a fresh connection.
    let raw = RawServer::start(|n| if n == 0 { Act::Send(common::ok_text("fresh")) } else { Act::Close }).await;
    let client = common::client(raw.addr, |s| s.retry.max_retries = 2);
    let once = RequestSpec { idempotent: false, ..spec(http::Method::GET, "/x") };
    assert_eq!(common::within(GUARD, client.send(&once)).await.unwrap().body, "fresh");
    let err = common::within(GUARD, client.send(&once)).await.unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err:?}");
    assert_eq!((raw.requests(), raw.connections(), client.stats().requests_retried), (2, 1, 0));
}

#[tokio::test]
async fn a_spec_that_is_not_idempotent_is_retried_while_it_never_left() {
    let client = common::client(common::dead_addr(), |s| s.retry.max_retries = 2);
    let once = RequestSpec { idempotent: false, ..spec(http::Method::POST, "/v1/x") };
    let err = common::within(GUARD, client.send(&once)).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!((client.stats().connections_failed, client.stats().requests_retried), (3, 2));
}

/// A redirect is followed as the Fetch standard says (browsers and reqwest do the same): a
/// `POST` answered 301 or 302, and any method but `GET`/`HEAD` answered 303, goes on as a bodiless
/// `GET`; a 307 or 308, and a 301 or 302 of another method, keep the method and the body.
#[tokio::test]
async fn a_redirect_turns_a_post_into_a_get_as_fetch_says() {
    let wire = WireMock::start().await;
    let moved = |status: u16, to: &str| ResponseTemplate::new(status).insert_header("location", to);
    for (from, status) in [("/post-301", 301), ("/post-302", 302), ("/post-303", 303), ("/delete-303", 303)] {
        Mock::given(path(from)).respond_with(moved(status, "/got")).mount(&wire).await;
    }
    for (from, status) in [("/post-307", 307), ("/post-308", 308), ("/put-302", 302)] {
        Mock::given(path(from)).respond_with(moved(status, "/kept")).mount(&wire).await;
    }
    Mock::given(method("GET"))
        .and(path("/got"))
        .respond_with(ResponseTemplate::new(200).set_body_string("got"))
        .mount(&wire)
        .await;
    Mock::given(path("/kept"))
        .and(body_string("payload"))
        .and(header("content-type", "text/plain"))
        .respond_with(ResponseTemplate::new(200).set_body_string("kept"))
        .mount(&wire)
        .await;
    let client = common::builder(*wire.address(), |_| {}).max_redirects(2).build().unwrap();
    let with_body = |method: http::Method, path_and_query: &str| RequestSpec {
        body: Some(Bytes::from_static(b"payload")),
        content_type: Some("text/plain"),
        ..spec(method, path_and_query)
    };

    let cases = [
        (http::Method::POST, "/post-301", "got", "GET"),
        (http::Method::POST, "/post-302", "got", "GET"),
        (http::Method::POST, "/post-303", "got", "GET"),
        (http::Method::DELETE, "/delete-303", "got", "GET"),
        (http::Method::POST, "/post-307", "kept", "POST"),
        (http::Method::POST, "/post-308", "kept", "POST"),
        (http::Method::PUT, "/put-302", "kept", "PUT"),
    ];
    for (verb, from, answer, followed_with) in cases {
        let before = wire.received_requests().await.unwrap().len();
        let reply = common::within(GUARD, client.send(&with_body(verb, from))).await;
        assert_eq!(reply.map(|r| r.body).ok().as_deref(), Some(answer.as_bytes()), "{from}");
        let received = wire.received_requests().await.unwrap();
        let hop = &received[before + 1];
        assert_eq!(hop.method.as_str(), followed_with, "{from}");
        if followed_with == "GET" {
            assert!(hop.body.is_empty(), "{from}: the body went along");
            assert!(!hop.headers.contains_key("content-type"), "{from}: a bodiless GET names no content type");
        }
    }
}
