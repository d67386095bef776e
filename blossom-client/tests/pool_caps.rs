//! Connection caps on a cold pool: C concurrent requests open exactly min(C, cap) connections,
//! and with a cap below C no request is lost.

mod common;

use std::time::Duration;

use blossom_client::{Error, TimeoutPhase};
use blossom_mock::Behavior;
use futures_util::future::join_all;

const C: usize = 12;

fn latency(ms: u64) -> Behavior {
    Behavior::Healthy { base: Duration::from_millis(ms), jitter: Duration::ZERO }
}

#[tokio::test]
async fn a_cold_pool_opens_one_connection_per_concurrent_request() {
    let (server, addr) = common::mock().await;
    server.set_behavior(latency(150));
    let client = common::client(addr, |s| {
        s.async_limit_total = C as u32;
        s.async_limit_per_host = C as u32;
        s.sync_pool_connections = C as u32;
    });
    let calls = (0..C).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("prompt {i}")).await }
    });
    for result in join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(server.stats().connections, C as u64, "exactly one connection per concurrent request");
    assert_eq!(server.stats().max_in_flight, C as u64);
    let stats = client.stats();
    assert_eq!((stats.connections_created, stats.pool_peak), (C as u64, C as u32));
    assert_eq!(stats.pool_idle, C as u32, "every connection went back to the pool");
}

#[tokio::test]
async fn a_cap_below_the_concurrency_opens_exactly_the_cap() {
    const K: u32 = 3;
    let (server, addr) = common::mock().await;
    server.set_behavior(latency(50));
    let client = common::client(addr, |s| s.async_limit_per_host = K);
    let calls = (0..C).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("prompt {i}")).await }
    });
    let results = join_all(calls).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(server.stats().connections, u64::from(K));
    assert_eq!(server.stats().max_in_flight, u64::from(K), "never more than K requests at the server");
    assert_eq!(server.stats().generations, C as u64);
    let stats = client.stats();
    assert_eq!(stats.connections_created, u64::from(K));
    assert_eq!(stats.pool_peak, K);
    assert_eq!(stats.connections_reused, C as u64 - u64::from(K));
    assert!(stats.pool_wait.samples > 0, "requests beyond the cap waited");
}

#[tokio::test]
async fn no_request_is_lost_when_pool_waits_time_out() {
    const K: u32 = 2;
    let (server, addr) = common::mock().await;
    server.set_behavior(latency(100));
    let client = common::client(addr, |s| {
        s.async_limit_per_host = K;
        s.pool_timeout = Duration::from_millis(150);
    });
    let calls = (0..C).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("prompt {i}")).await }
    });
    let results = common::within(Duration::from_secs(10), join_all(calls)).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let waited_out =
        results.iter().filter(|r| matches!(r, Err(Error::Timeout { phase: TimeoutPhase::PoolWait, .. }))).count();
    assert_eq!(ok + waited_out, C, "each request got a response or a pool-wait timeout: {results:?}");
    assert!(ok >= K as usize && waited_out >= 1, "ok {ok}, timed out {waited_out}");
    assert_eq!(server.stats().connections, u64::from(K));
    assert_eq!(server.stats().generations, ok as u64, "a timed-out wait never reached the server");
    let stats = client.stats();
    assert_eq!(stats.requests_succeeded, ok as u64);
    assert_eq!(stats.requests_failed.pool, waited_out as u64);
    assert_eq!(stats.pool_waiting, 0, "no waiter left behind");
    // The pool is still usable.
    client.text().generate("after").await.unwrap();
}
