//! Guide section 6, "Connection health checks": passive outlier detection plus active checks.
//!
//! Two regions. Region `b` starts answering 503: three failed requests in a row eject it (the
//! calls themselves succeed, retried on `a`), and three failed active checks (every 100 ms while
//! it is impaired) mark it unhealthy. When `b` recovers, a passed check readmits it, two mark it
//! healthy, and it takes traffic again.
//!
//! Run: `cargo run -p blossom-client --example 06_health_checks`.

mod common;

use std::time::Duration;

use blossom_client::pool_core::{Event, HealthEvent, ReadmitReason};
use blossom_client::{BlossomClient, ClientConfig, Region};
use blossom_mock::Behavior;
use futures_util::StreamExt;

/// Waits, at most 5 s, for a health event of region `b` that `wanted` picks.
async fn health_event_of_b(
    events: &mut (impl futures_util::Stream<Item = blossom_client::ClientEvent> + Unpin),
    wanted: fn(&HealthEvent) -> bool,
) {
    let seen = async {
        while let Some(e) = events.next().await {
            if e.region.as_deref() == Some("b") && matches!(&e.event, Event::Health(h) if wanted(h)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), seen).await;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let live = common::live();
    let (_a, url_a) = common::mock(1, common::latency(5)).await;
    let (b, url_b) = common::mock(2, common::latency(5)).await;
    // The guide's check is a tiny generation; the default is the cheaper model listing.
    let config = ClientConfig { health_check_path: "/text/health%20check?max_tokens=10".into(), ..Default::default() };
    let mut builder = BlossomClient::builder()
        .config(config)
        .session_with(|s| {
            common::quick(s);
            s.health.active_checks = true;
            s.health.health_check_interval = Duration::from_millis(300); // guide: 300 s
            s.health.unhealthy_check_interval = Duration::from_millis(100);
            s.health.check_timeout = Duration::from_millis(500);
            s.health.max_failed_checks = 3; // guide: max_failed_checks = 3
            s.health.healthy_threshold = 2;
            s.health.consecutive_failures = 3; // passive: eject after 3 failed requests
            s.health.base_ejection_time = Duration::from_millis(500);
            s.breaker.failure_threshold = 0; // this example is about health, not the breaker
            s.breaker.failure_rate_threshold = None;
        })
        .from_env();
    if !live {
        builder = builder.region(Region::new("a", url_a)).region(Region::new("b", url_b));
        println!("using two embedded mock regions, a and b");
    }
    let client = builder.build()?;
    let mut events = Box::pin(client.events());
    let log = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(e) = events.next().await {
            if let Event::Health(h) = &e.event {
                let what = match h {
                    HealthEvent::Ejected { .. } => "ejected",
                    HealthEvent::Readmitted { after: ReadmitReason::PassedCheck, .. } => "readmitted (check passed)",
                    HealthEvent::Readmitted { .. } => "readmitted (ejection over)",
                    HealthEvent::MarkedUnhealthy { .. } => "marked unhealthy",
                    HealthEvent::MarkedHealthy { .. } => "marked healthy",
                    _ => "panic mode changed",
                };
                let region = e.region.clone().unwrap_or_default();
                println!("  [{:>5.0} ms] region {region}: {what}", e.at.as_secs_f64() * 1000.0);
                let word = what.split(" (").next().unwrap_or(what).replace(' ', "_");
                seen.push(format!("{region}:{word}"));
            }
        }
        seen
    });

    let report = |client: &BlossomClient, label: &str| {
        let regions: Vec<String> = client.stats().regions.iter().map(|r| format!("{} {}", r.name, r.health)).collect();
        println!("{label}: {}", regions.join(", "));
    };
    let mut ok = 0;
    for i in 0..common::requests(20) {
        ok += usize::from(client.text().generate(&format!("Request {i}")).await.is_ok());
    }
    report(&client, "all healthy");
    if !live {
        // Each phase waits for `b`'s health event (at most 5 s), not for a fixed time that a
        // loaded machine may not keep: on a stream subscribed before `b` fails.
        let mut changes = Box::pin(client.events());
        b.set_behavior(Behavior::Status(503));
        for i in 0..20 {
            ok += usize::from(client.text().generate(&format!("Request {i}")).await.is_ok());
        }
        // Three failed active checks mark it unhealthy.
        health_event_of_b(&mut changes, |h| matches!(h, HealthEvent::MarkedUnhealthy { .. })).await;
        report(&client, "b failing");
        // Passed checks readmit `b`, then mark it healthy.
        b.set_behavior(common::latency(5));
        health_event_of_b(&mut changes, |h| matches!(h, HealthEvent::MarkedHealthy { .. })).await;
        let before = b.stats().generations;
        for i in 0..20 {
            ok += usize::from(client.text().generate(&format!("Request {i}")).await.is_ok());
        }
        report(&client, "b recovered");
        println!("b took {} of the last 20 requests (checks included)", b.stats().generations - before);
    }
    let total = client.stats().requests_total;
    drop(client);
    let seen = log.await?;
    common::result(ok as u64 == total, &format!("requests={total} succeeded={ok} events={}", seen.join(",")));
    Ok(())
}
