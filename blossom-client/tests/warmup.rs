//! `warmup(n)` opens n connections ahead of traffic; n concurrent requests then open none.

mod common;

use std::time::Duration;

use blossom_mock::Behavior;
use futures_util::future::join_all;

#[tokio::test]
async fn warm_connections_serve_the_first_burst() {
    const N: usize = 4;
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::Healthy { base: Duration::from_millis(100), jitter: Duration::ZERO });
    let client = common::client(addr, |_| {});
    let report = client.warmup(N).await;
    assert_eq!((report.opened.len(), report.failed.len(), report.skipped), (N, 0, 0), "{report}");
    assert!(report.to_string().contains("Warmed up 4 connection(s)"), "{report}");
    common::until("the server accepted the warm connections", || server.stats().connections == N as u64).await;
    assert_eq!(server.stats().requests, 0, "warmup sends no request");
    let stats = client.stats();
    assert_eq!((stats.connections_created, stats.pool_idle), (N as u64, N as u32));

    let calls = (0..N).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("prompt {i}")).await }
    });
    for result in join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(server.stats().connections, N as u64, "no new connection");
    assert_eq!(server.stats().max_in_flight, N as u64);
    let stats = client.stats();
    assert_eq!((stats.connections_created, stats.connections_reused), (N as u64, N as u64));
}

#[tokio::test]
async fn warmup_stops_at_the_cap() {
    let (server, addr) = common::mock().await;
    let client = common::client(addr, |s| s.async_limit_per_host = 2);
    let report = client.warmup(5).await;
    assert_eq!((report.opened.len(), report.skipped), (2, 3), "{report}");
    common::until("the server accepted the warm connections", || server.stats().connections == 2).await;
    assert_eq!(client.stats().pool_size, 2);
    // Asking for more than anything can hold stops at the cap too, at once (under the lock).
    // (Before, this looped `usize::MAX` times under the client's lock, and the test hung.)
    let report = client.warmup(usize::MAX).await;
    assert_eq!((report.opened.len(), report.skipped), (0, usize::MAX), "{report}");
    assert_eq!(client.text().generate("hi").await.unwrap(), "echo: hi", "the client is not held up");
}

#[tokio::test]
async fn warmup_reports_failures() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // closed again
    let client = common::client(addr, |_| {});
    let report = client.warmup(2).await;
    assert_eq!((report.opened.len(), report.failed.len()), (0, 2), "{report}");
    let stats = client.stats();
    assert_eq!((stats.connections_failed, stats.pool_size), (2, 0), "failed slots are freed");
}

#[tokio::test]
async fn an_h2_warm_connection_serves_many() {
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::Healthy { base: Duration::from_millis(50), jitter: Duration::ZERO });
    let client = common::builder(addr, |_| {}).http2_prior_knowledge().build().unwrap();
    assert_eq!(client.warmup(1).await.opened.len(), 1);
    let calls = (0..10).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("prompt {i}")).await }
    });
    assert!(join_all(calls).await.iter().all(Result::is_ok));
    assert_eq!(server.stats().connections, 1);
}

#[tokio::test]
async fn warm_connections_closed_by_idle_expiry_are_replaced() {
    let (server, addr) = common::mock().await;
    let client = common::client(addr, |s| s.keepalive_expiry = Duration::from_millis(300));
    let report = client.warmup(2).await;
    assert_eq!(report.opened.len(), 2, "{report}");
    // The idle timeout closes both; the background task opens two new ones to keep the target.
    common::until("the expired warm connections were closed", || client.stats().connections_closed.idle_timeout >= 2)
        .await;
    common::until("the warm connections were replaced", || {
        let stats = client.stats();
        stats.connections_created >= 4 && stats.pool_idle == 2
    })
    .await;
    assert!(server.stats().connections >= 4, "the server saw the replacements");
    assert_eq!(server.stats().requests, 0, "replacement sends no request");
    client.text().generate("served warm").await.unwrap();
}

#[tokio::test]
async fn a_thread_takes_the_connection_it_released_last_before_a_newer_idle_one() {
    let (server, addr) = common::mock().await;
    let client = common::client(addr, |_| {});
    client.text().generate("first").await.unwrap();
    // A warm connection goes idle after the first one: the most recent idle one, not the one
    // this thread released last.
    assert_eq!(client.warmup(1).await.opened.len(), 1);
    // A connection's second request is answered with `Connection: close`: which one served the
    // next request shows as a closed connection, or none.
    server.close_connections_after(2);
    client.text().generate("second").await.unwrap();
    assert_eq!(server.stats().connections, 2);
    assert_eq!(client.stats().connections_closed.total(), 1, "the first connection served again");
}
