//! What a user can watch: `client.events()` shows breaker transitions, failovers and manual
//! control; `log_requests` logs region, status, duration, reuse and attempt of every request;
//! slow requests and breaker transitions are warned about; the API key never appears.

mod common;

use std::time::Duration;

use blossom_client::BreakerControl;
use blossom_client::pool_core::BreakerState::{Closed, ForcedOpen, Open};
use blossom_client::pool_core::{Event, SessionConfig};
use blossom_mock::Behavior;
use common::{Events, KEY};

const GUARD: Duration = Duration::from_secs(10);

fn opens_at_two(s: &mut SessionConfig) {
    s.breaker.failure_threshold = 2;
    s.breaker.failure_rate_threshold = None;
    s.breaker.reset_timeout = Duration::from_secs(60);
    s.health.consecutive_failures = 0;
}

#[tokio::test]
async fn events_show_failovers_and_breaker_transitions() {
    let (bad, bad_addr) = common::mock().await;
    let (_good, good_addr) = common::mock().await;
    bad.set_behavior(Behavior::Status(502));
    let client = common::regions_client(&[("bad", bad_addr), ("good", good_addr)], opens_at_two);
    let events = Events::record(&client);

    for i in 0..6 {
        common::within(GUARD, client.text().generate(&format!("call {i}"))).await.unwrap();
    }
    client.set_breaker("good", BreakerControl::ForceOpen).unwrap();
    client.set_breaker("good", BreakerControl::Reset).unwrap();

    common::until("the manual reset is published", || events.breaker("good").len() == 2).await;
    let failovers: Vec<(usize, usize)> = events
        .all()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Failover { from, to, .. } => {
                assert_eq!(e.region.as_deref(), Some("good"), "a failover names the region it goes to");
                Some((from, to))
            }
            _ => None,
        })
        .collect();
    assert_eq!(failovers, [(0, 1), (0, 1)], "the two calls that hit `bad` moved to `good`");
    assert_eq!(events.breaker("bad"), [(Closed, Open, "ConsecutiveFailures".to_string())]);
    assert_eq!(
        events.breaker("good"),
        [(Closed, ForcedOpen, "Manual".to_string()), (ForcedOpen, Closed, "Manual".to_string())]
    );
    let all = events.all();
    assert!(all.windows(2).all(|w| w[0].at <= w[1].at), "events come in order");
}

#[tokio::test]
async fn events_stop_when_the_client_is_dropped() {
    let (_server, addr) = common::mock().await;
    let client = common::regions_client(&[("only", addr)], |_| {});
    let mut stream = Box::pin(client.events());
    drop(client);
    let next = common::within(GUARD, futures_util::StreamExt::next(&mut stream)).await;
    assert!(next.is_none(), "the stream ends with the client: {next:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn request_logs_carry_region_status_duration_reuse_and_attempt() {
    let logs = common::LogCapture::default();
    let _guard = logs.install();
    let (bad, bad_addr) = common::mock().await;
    let (slow, slow_addr) = common::mock().await;
    bad.set_behavior(Behavior::Status(503));
    slow.set_behavior(Behavior::Healthy { base: Duration::from_millis(60), jitter: Duration::ZERO });
    let client = common::regions_client(&[("bad", bad_addr), ("slow", slow_addr)], |s| {
        opens_at_two(s);
        s.log_requests = true;
        s.slow_request_threshold = Duration::from_millis(40);
    });
    for i in 0..4 {
        common::within(GUARD, client.text().generate(&format!("call {i}"))).await.unwrap();
    }
    let _ = client.warmup(1).await;
    let text = logs.text();
    let lines: Vec<&str> = text.lines().collect();
    let has = |needles: &[&str]| lines.iter().any(|line| needles.iter().all(|n| line.contains(n)));

    let request = |region: &str, status: &str, reused: &str, attempt: &str| {
        has(&[
            " INFO ",
            "request",
            &format!("region={region}"),
            &format!("status={status}"),
            "took_ms=",
            &format!("reused={reused}"),
            &format!("attempt={attempt}"),
        ])
    };
    assert!(request("bad", "503", "false", "0"), "the failed first attempt is logged:\n{text}");
    assert!(request("slow", "200", "false", "1"), "the failover attempt is logged:\n{text}");
    assert!(request("slow", "200", "true", "0"), "a call on a reused connection is logged:\n{text}");
    assert!(has(&[" WARN ", "slow request", "took_ms="]), "slow calls are warned about:\n{text}");
    assert!(
        has(&[" WARN ", "circuit breaker transition", "region=bad", "to=Open"]),
        "breaker transitions are warned about:\n{text}"
    );
    assert!(has(&[" WARN ", "failover", "from=bad", "to=slow"]), "failovers are warned about:\n{text}");
    assert!(!text.contains(KEY), "the API key was logged:\n{text}");
    assert!(!text.to_ascii_lowercase().contains("bearer"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn without_log_requests_requests_are_debug_only() {
    let logs = common::LogCapture::default();
    let _guard = logs.install();
    let (_server, addr) = common::mock().await;
    let client = common::regions_client(&[("only", addr)], |s| s.log_requests = false);
    client.text().generate("quiet").await.unwrap();
    let text = logs.text();
    assert!(
        text.lines().any(|l| l.contains("DEBUG") && l.contains("region=only") && l.contains("status=200")),
        "{text}"
    );
    assert!(!text.lines().any(|l| l.contains(" INFO ") && l.contains("region=only")), "{text}");
    assert!(!text.contains(KEY));
}
