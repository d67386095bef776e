//! Active health checks eject a region that fails them and readmit it once it passes them again;
//! they send the cheap listing request, never a generation; passive ejection is lifted by a
//! passed check.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use blossom_client::pool_core::{Event, HealthEvent, ReadmitReason};
use blossom_client::{BlossomClient, SessionConfig};
use blossom_mock::Behavior;
use common::{Act, Events, RawServer};

const GUARD: Duration = Duration::from_secs(10);

/// Checks every 30 ms, no jitter; two failed checks mark a region unhealthy, two passed ones
/// healthy again.
fn checking(s: &mut SessionConfig) {
    s.health.active_checks = true;
    s.health.health_check_interval = Duration::from_millis(30);
    s.health.unhealthy_check_interval = Duration::from_millis(30);
    s.health.check_jitter = 0.0;
    s.health.check_timeout = Duration::from_secs(2);
    s.health.max_failed_checks = 2;
    s.health.healthy_threshold = 2;
}

/// A region whose health endpoint answers 503 while `sick`, and which counts generations.
struct Flaky {
    server: RawServer,
    sick: Arc<AtomicBool>,
    generations: Arc<AtomicU64>,
    checks: Arc<AtomicU64>,
}

async fn flaky() -> Flaky {
    let sick = Arc::new(AtomicBool::new(false));
    let generations = Arc::new(AtomicU64::new(0));
    let checks = Arc::new(AtomicU64::new(0));
    let (s, g, c) = (sick.clone(), generations.clone(), checks.clone());
    let server = RawServer::start_by_path(move |_, path| {
        if path.ends_with("/models") {
            c.fetch_add(1, Ordering::SeqCst);
            if s.load(Ordering::SeqCst) {
                let body = r#"{"error":"down"}"#;
                return Act::Send(
                    format!("HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n{body}", body.len())
                        .into_bytes(),
                );
            }
            return Act::Send(common::ok_text("[]"));
        }
        g.fetch_add(1, Ordering::SeqCst);
        Act::Send(common::ok_text("from b"))
    })
    .await;
    Flaky { server, sick, generations, checks }
}

async fn calls(client: &BlossomClient, n: usize) {
    for i in 0..n {
        let result = common::within(GUARD, client.text().generate(&format!("call {i}"))).await;
        assert!(result.is_ok(), "call {i} failed: {result:?}");
    }
}

fn health_of(events: &Events, region: &str) -> Vec<HealthEvent> {
    events
        .matching(|e| e.region.as_deref() == Some(region))
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Health(h) => Some(h),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn failing_checks_take_a_region_out_and_passing_ones_bring_it_back() {
    let (a, a_addr) = common::mock().await;
    let b = flaky().await;
    b.sick.store(true, Ordering::SeqCst);
    let client = common::regions_client(&[("a", a_addr), ("b", b.server.addr)], checking);
    let events = Events::record(&client);

    common::until("b is marked unhealthy", || {
        health_of(&events, "b").iter().any(|h| matches!(h, HealthEvent::MarkedUnhealthy { .. }))
    })
    .await;
    assert!(b.checks.load(Ordering::SeqCst) >= 2);
    let region = |name: &str| client.stats().regions.into_iter().find(|r| r.name == name).unwrap();
    assert!(region("b").health.to_lowercase().contains("unhealthy"), "{:?}", region("b"));
    assert!(health_of(&events, "a").is_empty(), "a passes its checks: {:?}", health_of(&events, "a"));

    // Out: nothing goes to b, every call succeeds on a.
    calls(&client, 10).await;
    assert_eq!(b.generations.load(Ordering::SeqCst), 0, "an unhealthy region takes no traffic");
    assert_eq!(a.stats().generations, 10);

    // It passes again: readmitted, and it takes traffic again.
    b.sick.store(false, Ordering::SeqCst);
    common::until("b is marked healthy", || {
        health_of(&events, "b").iter().any(|h| matches!(h, HealthEvent::MarkedHealthy { .. }))
    })
    .await;
    calls(&client, 10).await;
    let to_b = b.generations.load(Ordering::SeqCst);
    assert!((4..=6).contains(&to_b), "b is back in the rotation: {to_b} of 10");

    // Checks are the cheap listing, never a generation that costs the user money.
    assert!(a.stats().listings >= 2, "a was checked too: {:?}", a.stats());
    assert_eq!(a.stats().generations + to_b, 20, "only the 20 calls generated anything");
}

#[tokio::test]
async fn a_passed_check_readmits_a_passively_ejected_region() {
    let (a, a_addr) = common::mock().await;
    let (b, b_addr) = common::mock().await;
    // Generations fail on b, its listings (the health check) pass.
    b.set_behavior(Behavior::Status(502));
    let client = common::regions_client(&[("a", a_addr), ("b", b_addr)], |s| {
        checking(s);
        // Checks only after the ejection, so the first one readmits.
        s.health.health_check_interval = Duration::from_secs(60);
        s.health.unhealthy_check_interval = Duration::from_millis(300);
        s.health.consecutive_failures = 2;
        s.health.base_ejection_time = Duration::from_secs(60);
        s.health.max_ejection_time = Duration::from_secs(60);
        s.breaker.failure_threshold = 0;
        s.breaker.failure_rate_threshold = None;
    });
    let events = Events::record(&client);

    calls(&client, 10).await;
    assert_eq!(b.stats().generations, 2, "b is ejected after 2 consecutive failures");
    assert_eq!(a.stats().generations, 10);
    assert!(health_of(&events, "b").iter().any(|h| matches!(h, HealthEvent::Ejected { .. })));

    b.set_behavior(Behavior::default());
    common::until("a passed check readmits b", || {
        health_of(&events, "b")
            .iter()
            .any(|h| matches!(h, HealthEvent::Readmitted { after: ReadmitReason::PassedCheck, .. }))
    })
    .await;
    calls(&client, 10).await;
    assert!(b.stats().generations > 2, "b takes traffic again");
}

#[tokio::test]
async fn dropping_the_client_stops_its_health_checks() {
    let b = flaky().await;
    let client = common::regions_client(&[("b", b.server.addr)], checking);
    common::until("b is checked", || b.checks.load(Ordering::SeqCst) >= 2).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = b.checks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.checks.load(Ordering::SeqCst), after_drop, "a dropped client keeps checking");
}
