//! Each timeout phase is enforced and reported as its own typed error, and the pool is usable
//! afterwards.

mod common;

use std::time::Duration;

use blossom_client::{BlossomClient, ChatOptions, Connect, ConnectFuture, Error, Message, Target, TimeoutPhase};
use blossom_mock::{Behavior, MockServer};
use futures_util::StreamExt;

const SHORT: Duration = Duration::from_millis(300);
const GUARD: Duration = Duration::from_secs(10);

fn phase(result: Result<String, Error>) -> TimeoutPhase {
    match result {
        Err(Error::Timeout { phase, .. }) => phase,
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// A mock that behaves as `behavior`, and a client with a short read timeout and no retries.
async fn short_read(behavior: Behavior) -> (MockServer, BlossomClient) {
    let (server, addr) = common::mock().await;
    server.set_behavior(behavior);
    let client = common::client(addr, |s| {
        s.async_timeout_sock_read = SHORT;
        s.retry.max_retries = 0;
    });
    (server, client)
}

/// A connector whose connections never complete.
struct NeverConnects;

impl Connect for NeverConnects {
    fn connect(&self, _target: &Target) -> ConnectFuture {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn connect_timeout() {
    let client = BlossomClient::builder()
        .base_url("http://127.0.0.1:9")
        .connector(NeverConnects)
        .session_with(|s| {
            common::fast(s);
            s.async_timeout_connect = SHORT;
            s.retry.max_retries = 0;
        })
        .build()
        .unwrap();
    let result = common::within(GUARD, client.text().generate("hi")).await;
    assert_eq!(phase(result), TimeoutPhase::Connect);
    let stats = client.stats();
    assert_eq!((stats.connections_failed, stats.pool_size), (1, 0), "the slot is free again");
    assert_eq!(stats.requests_failed.timeout, 1);
}

#[tokio::test]
async fn connect_timeouts_are_retried() {
    let client = BlossomClient::builder()
        .base_url("http://127.0.0.1:9")
        .connector(NeverConnects)
        .session_with(|s| {
            common::fast(s);
            s.async_timeout_connect = Duration::from_millis(100);
            s.retry.max_retries = 2;
        })
        .build()
        .unwrap();
    let result = common::within(GUARD, client.text().generate("hi")).await;
    assert_eq!(phase(result), TimeoutPhase::Connect);
    assert_eq!(client.stats().connections_failed, 3, "one attempt and two retries");
}

#[tokio::test]
async fn read_timeout_after_headers() {
    let (server, client) = short_read(Behavior::HangAfterHeaders).await;
    assert_eq!(phase(common::within(GUARD, client.text().generate("hi")).await), TimeoutPhase::Read);
    server.set_behavior(Behavior::default());
    client.text().generate("next").await.unwrap();
}

#[tokio::test]
async fn read_timeout_between_chunks_of_a_slow_drip() {
    let (server, client) = short_read(Behavior::SlowDrip { every: Duration::from_secs(3) }).await;
    assert_eq!(phase(common::within(GUARD, client.text().generate("hi")).await), TimeoutPhase::Read);
    // A drip faster than the read timeout is fine, however long the whole body takes.
    server.set_behavior(Behavior::SlowDrip { every: Duration::from_millis(5) });
    assert_eq!(client.text().generate("again").await.unwrap(), "slow drip answer");
}

// Paused time: the drip's gaps and the read timeouts run on the test's clock, not the wall's.
#[tokio::test(start_paused = true)]
async fn a_body_read_outlasts_the_heads_read_timeout_when_each_gap_is_shorter() {
    // Sixteen bytes 100 ms apart: the head's read deadline passes while the body is read. It
    // wakes the read, which then waits for its own gap's bound.
    let (_server, client) = short_read(Behavior::SlowDrip { every: Duration::from_millis(100) }).await;
    assert_eq!(common::within(GUARD, client.text().generate("hi")).await.unwrap(), "slow drip answer");
}

#[tokio::test]
async fn read_timeout_waiting_for_the_response_head() {
    let (_server, client) = short_read(Behavior::Hang).await;
    assert_eq!(phase(common::within(GUARD, client.text().generate("hi")).await), TimeoutPhase::Read);
}

#[tokio::test]
async fn read_timeout_in_a_stream() {
    let (_server, client) = short_read(Behavior::HangAfterHeaders).await;
    let items: Vec<_> =
        common::within(GUARD, client.text().chat_stream(&[Message::user("hi")], &ChatOptions::default()).collect())
            .await;
    assert!(matches!(items.as_slice(), [Err(Error::Timeout { phase: TimeoutPhase::Read, .. })]), "{items:?}");
}

#[tokio::test]
async fn total_timeout() {
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::Hang);
    let client = common::client(addr, |s| {
        s.timeout = SHORT;
        s.async_timeout_sock_read = Duration::from_secs(30);
    });
    assert_eq!(phase(common::within(GUARD, client.text().generate("hi")).await), TimeoutPhase::Total);
    let stats = client.stats();
    assert_eq!(stats.requests_failed.timeout, 1);
    assert_eq!(stats.pool_busy, 0, "the abandoned connection was given back");
    server.set_behavior(Behavior::default());
    client.text().generate("next").await.unwrap();
}

/// On a multi-thread runtime the deadlines are kept by a thread of the client's own, not by
/// tokio's timer: the read and total timeouts still fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_hold_on_a_multi_thread_runtime() {
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::Hang);
    let reads = common::client(addr, |s| {
        s.async_timeout_sock_read = SHORT;
        s.retry.max_retries = 0;
    });
    assert_eq!(phase(common::within(GUARD, reads.text().generate("hi")).await), TimeoutPhase::Read);
    let totals = common::client(addr, |s| {
        s.timeout = SHORT;
        s.async_timeout_sock_read = Duration::from_secs(30);
    });
    assert_eq!(phase(common::within(GUARD, totals.text().generate("hi")).await), TimeoutPhase::Total);
}

#[tokio::test]
async fn pool_wait_timeout() {
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::Hang);
    let client = common::client(addr, |s| {
        s.async_limit_per_host = 1;
        s.pool_timeout = SHORT;
        s.async_timeout_sock_read = Duration::from_secs(30);
    });
    let hanging = tokio::spawn({
        let client = client.clone();
        async move { client.text().generate("first").await }
    });
    common::until("the first request reached the server", || server.stats().in_flight == 1).await;
    assert_eq!(phase(common::within(GUARD, client.text().generate("second")).await), TimeoutPhase::PoolWait);
    assert_eq!(server.stats().requests, 1, "the waiting request never reached the server");
    hanging.abort();
    let _ = hanging.await;
    server.set_behavior(Behavior::default());
    client.text().generate("after").await.unwrap();
    let stats = client.stats();
    assert_eq!(stats.requests_failed.pool, 1);
    assert_eq!(stats.pool_waiting, 0);
    // The wait that timed out is a wait too, as long as the pool timeout.
    assert_eq!(stats.pool_wait.samples, 1, "{stats}");
    assert!(stats.pool_wait.max_ms >= SHORT.as_secs_f64() * 1000.0, "{stats}");
    let regions = &stats.regions[0].pool;
    assert!(regions.wait_time_max >= SHORT && regions.wait_timeouts == 1, "{regions:?}");
}

#[test]
fn timeouts_hold_after_the_runtime_that_built_the_client_is_gone() {
    // A server that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let _held: Vec<_> = listener.incoming().collect();
    });
    // Paused time in both runtimes: the read timeout and the guard below are virtual.
    let paused = || tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    let first = paused();
    let client = first.block_on(async {
        common::client(addr, |s| {
            s.async_timeout_sock_read = SHORT;
            s.retry.max_retries = 0;
        })
    });
    // The client's background task (every deadline depends on it) goes with its runtime.
    drop(first);
    let second = paused();
    let text = client.text();
    let result = second.block_on(async {
        // The guard is polled first: when it is up, the call is not polled once more (a late poll
        // would see its deadline passed and time out by itself).
        tokio::select! {
            biased;
            _ = tokio::time::sleep(GUARD) => panic!("the call outlived its read timeout by {GUARD:?}"),
            result = text.generate("hi") => result,
        }
    });
    assert!(matches!(result, Err(Error::Timeout { phase: TimeoutPhase::Read, .. })), "{result:?}");
}
