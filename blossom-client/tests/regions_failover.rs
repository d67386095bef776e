//! One region down (refusing connections, or accepting and never answering): traffic moves to
//! the others, its breaker opens, half-open probes close it after recovery, no request is lost.

mod common;

use std::time::Duration;

use blossom_client::pool_core::BreakerState::{Closed, HalfOpen, Open};
use blossom_client::{Error, SessionConfig};
use blossom_mock::Behavior;
use common::Events;

const GUARD: Duration = Duration::from_secs(10);

/// Opens after 3 consecutive failures for a constant 300 ms, closes after 2 probe successes.
/// Passive ejection is off so that the breaker alone decides.
fn resilient(s: &mut SessionConfig) {
    s.breaker.failure_threshold = 3;
    s.breaker.failure_rate_threshold = None;
    s.breaker.reset_timeout = Duration::from_millis(300);
    s.breaker.max_reset_timeout = Duration::from_millis(300);
    s.breaker.jitter = 0.0;
    s.breaker.success_threshold = 2;
    s.breaker.half_open_max_probes = 2;
    s.health.consecutive_failures = 0;
}

/// Sends `n` calls one after the other; every one must succeed.
async fn all_succeed(client: &blossom_client::BlossomClient, n: usize, tag: &str) {
    for i in 0..n {
        let result = common::within(GUARD, client.text().generate(&format!("{tag}-{i}"))).await;
        assert!(result.is_ok(), "call {tag}-{i} was lost: {result:?}");
    }
}

/// Keeps calling (each must succeed) until `region`'s breaker is closed again.
async fn until_closed(client: &blossom_client::BlossomClient, region: &str) -> usize {
    for calls in 0..400 {
        if client.breaker_state(region) == Some(Closed) {
            return calls;
        }
        let result = common::within(GUARD, client.text().generate(&format!("recovery-{calls}"))).await;
        assert!(result.is_ok(), "call lost during recovery: {result:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the breaker of {region} never closed: {:?}", client.breaker_state(region));
}

#[tokio::test]
async fn a_refusing_region_is_routed_around_then_probed_back() {
    let (a, a_addr) = common::mock().await;
    let (c, c_addr) = common::mock().await;
    let b_addr = common::dead_addr();
    let client = common::regions_client(&[("a", a_addr), ("b", b_addr), ("c", c_addr)], resilient);
    let events = Events::record(&client);

    all_succeed(&client, 30, "down").await;
    let served = a.stats().generations + c.stats().generations;
    assert_eq!(served, 30, "every call was answered by a live region, exactly once");
    assert_ne!(client.breaker_state("b"), Some(Closed), "b's breaker must not be closed while b refuses");
    let stats = client.stats();
    assert_eq!(stats.requests_succeeded, 30);
    assert_eq!(stats.requests_failed.total(), 0);
    assert!(stats.connections_failed >= 3, "b was tried until its breaker opened: {stats:?}");
    common::until("b's breaker opened", || {
        events.breaker("b").iter().any(|(from, to, why)| (*from, *to) == (Closed, Open) && why == "ConsecutiveFailures")
    })
    .await;

    // b comes back on the same address; half-open probes close its breaker.
    let b = common::mock_at(b_addr).await;
    until_closed(&client, "b").await;
    let transitions = events.breaker("b");
    assert!(transitions.iter().any(|(f, t, _)| (*f, *t) == (Open, HalfOpen)), "{transitions:?}");
    assert!(
        transitions.iter().any(|(f, t, why)| (*f, *t) == (HalfOpen, Closed) && why == "ProbesSucceeded"),
        "{transitions:?}"
    );
    assert!(b.stats().generations >= 2, "two probes succeeded on b");
    // Closed again, b takes its share of round-robin traffic.
    let before = b.stats().generations;
    all_succeed(&client, 30, "after").await;
    let share = b.stats().generations - before;
    assert!((8..=12).contains(&share), "b is back in the even rotation: {share} of 30");
    assert_eq!(client.stats().requests_failed.total(), 0, "no call was lost");
}

#[tokio::test]
async fn a_region_that_accepts_but_never_answers_is_routed_around_then_probed_back() {
    let (a, a_addr) = common::mock().await;
    let (b, b_addr) = common::mock().await;
    b.set_behavior(Behavior::Hang);
    let client = common::regions_client(&[("a", a_addr), ("b", b_addr)], |s| {
        resilient(s);
        s.async_timeout_sock_read = Duration::from_millis(150);
    });
    let events = Events::record(&client);

    all_succeed(&client, 12, "hang").await;
    assert_eq!(a.stats().generations, 12, "every call was answered by a");
    let hung = b.stats().generations;
    assert!(hung >= 3, "b was tried until its breaker opened ({hung})");
    assert_ne!(client.breaker_state("b"), Some(Closed));
    assert!(events.breaker("b").iter().any(|(f, t, _)| (*f, *t) == (Closed, Open)), "{:?}", events.all());
    let stats = client.stats();
    assert_eq!((stats.requests_succeeded, stats.requests_failed.total()), (12, 0));
    assert!(stats.requests_retried >= 3, "each read timeout on b was retried on a: {stats:?}");

    b.set_behavior(Behavior::default());
    until_closed(&client, "b").await;
    assert!(
        events.breaker("b").iter().any(|(f, t, why)| (*f, *t) == (HalfOpen, Closed) && why == "ProbesSucceeded"),
        "{:?}",
        events.breaker("b")
    );
    assert_eq!(client.stats().requests_failed.total(), 0, "no call was lost");
}

#[tokio::test]
async fn requests_keep_flowing_while_a_region_goes_down_under_concurrent_load() {
    let (a, a_addr) = common::mock().await;
    let (b, b_addr) = common::mock().await;
    for server in [&a, &b] {
        server.set_behavior(Behavior::Healthy { base: Duration::from_millis(5), jitter: Duration::ZERO });
    }
    let client = common::regions_client(&[("a", a_addr), ("b", b_addr)], resilient);
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                client.text().generate(&format!("w{worker}-{i}")).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    // Fail b once traffic is flowing to it, not after a guessed delay.
    common::until("traffic reaches b", || b.stats().generations > 0).await;
    b.set_behavior(Behavior::Status(502));
    for task in tasks {
        common::within(GUARD, task).await.unwrap().expect("no call is lost when a region starts failing");
    }
    assert_eq!(client.stats().requests_succeeded, 60);
    assert_ne!(client.breaker_state("b"), Some(Closed));
}

#[tokio::test]
async fn when_every_region_fails_the_error_names_each_one() {
    let (down, up) = (common::dead_addr(), common::dead_addr());
    let (bad, bad_addr) = common::mock().await;
    bad.set_behavior(Behavior::Status(503));
    let client = common::regions_client(&[("west", down), ("east", bad_addr), ("north", up)], |s| {
        s.retry.max_retries = 2;
        s.health.consecutive_failures = 0;
    });
    let err = common::within(GUARD, client.text().generate("hi")).await.unwrap_err();
    let Error::AllRegionsFailed { failures } = &err else { panic!("expected every region named: {err:?}") };
    let mut names: Vec<&str> = failures.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["east", "north", "west"], "{err}");
    let east = &failures.iter().find(|(n, _)| n == "east").unwrap().1;
    assert!(east.contains("503"), "east's last failure is its 503: {east}");
    let west = &failures.iter().find(|(n, _)| n == "west").unwrap().1;
    assert!(west.to_lowercase().contains("connect"), "west's last failure is the refused connection: {west}");
    assert_eq!(bad.stats().generations, 1, "one attempt per region");
}
