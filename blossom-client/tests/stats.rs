//! `client.stats()` agrees with what the server counted.

mod common;

use std::time::Duration;

use blossom_client::{ChatOptions, Message};
use blossom_mock::Behavior;
use futures_util::StreamExt;
use futures_util::future::join_all;

#[tokio::test]
async fn stats_agree_with_the_server() {
    let (server, addr) = common::mock().await;
    let client = common::client(addr, |s| s.retry.max_retries = 2);
    for i in 0..5 {
        client.text().generate(&format!("sequential {i}")).await.unwrap();
    }
    server.set_behavior(Behavior::Healthy { base: Duration::from_millis(100), jitter: Duration::ZERO });
    let calls = (0..3).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("concurrent {i}")).await }
    });
    assert!(join_all(calls).await.iter().all(Result::is_ok));
    server.set_behavior(Behavior::Status(503));
    client.text().generate("failing").await.unwrap_err();
    server.set_behavior(Behavior::default());
    let deltas: Vec<_> = client.text().chat_stream(&[Message::user("hi")], &ChatOptions::default()).collect().await;
    assert!(deltas.iter().all(Result::is_ok));

    let (served, stats) = (server.stats(), client.stats());
    assert_eq!(stats.connections_created, served.connections, "connections accepted == created");
    assert_eq!(served.connections, 3);
    assert_eq!(stats.requests_total, 10);
    assert_eq!(stats.requests_retried, 2);
    assert_eq!(served.requests, stats.requests_total + stats.requests_retried, "every attempt reached the server");
    assert_eq!(stats.connections_reused, served.requests - served.connections, "each attempt was one checkout");
    assert_eq!((stats.requests_succeeded, stats.requests_failed.upstream), (9, 1));
    assert_eq!(stats.requests_failed.total(), 1);
    assert_eq!((stats.pool_size, stats.pool_idle, stats.pool_busy, stats.pool_peak), (3, 3, 0, 3));
    assert_eq!(stats.connections_closed.total(), 0);
    assert_eq!(stats.request_duration.samples, 10);
    assert!(stats.request_duration.max_ms >= stats.request_duration.p50_ms);
    assert!((stats.reuse_ratio - stats.connections_reused as f64 / 3.0).abs() < 1e-9);

    let table = stats.to_string();
    for line in ["Connections created: 3", "Requests total: 10", "Requests retried: 2", "Reuse ratio"] {
        assert!(table.contains(line), "{line}: {table}");
    }
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["connections_created"], 3);
    assert_eq!(json["requests_failed"]["upstream"], 1);
}

#[tokio::test]
async fn closed_connections_are_counted_by_reason() {
    let (server, addr) = common::mock().await;
    server.close_connections_after(1);
    let client = common::client(addr, |_| {});
    for i in 0..3 {
        client.text().generate(&format!("call {i}")).await.unwrap();
    }
    server.close_connections_after(0);
    server.set_behavior(Behavior::ResetMidBody);
    let _ = client.text().generate("reset").await;
    let stats = client.stats();
    assert_eq!(stats.connections_created, server.stats().connections);
    assert!(stats.connections_closed.total() >= 3, "{:?}", stats.connections_closed);
    assert!(stats.connections_closed.broken >= 1, "{:?}", stats.connections_closed);
    assert_eq!(stats.pool_size as u64, stats.connections_created - stats.connections_closed.total());
}

#[tokio::test]
async fn failed_streams_count_as_failed_calls() {
    let (server, addr) = common::mock().await;
    let client = common::client(addr, |s| s.retry.max_retries = 0);
    server.set_behavior(Behavior::Truncated);
    let items: Vec<_> = client.text().chat_stream(&[Message::user("hi")], &ChatOptions::default()).collect().await;
    assert!(items.last().is_some_and(Result::is_err));
    server.set_behavior(Behavior::InvalidJson);
    client.text().chat(&[Message::user("hi")]).await.unwrap_err();
    let stats = client.stats();
    assert_eq!((stats.requests_total, stats.requests_succeeded, stats.requests_failed.response), (2, 0, 2));
}
