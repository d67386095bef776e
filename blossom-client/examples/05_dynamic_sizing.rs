//! Guide section 5, "Dynamic pool sizing": the threshold policy grows the pool while answers are
//! slow and shrinks it while they are fast, within `[min, max]`.
//!
//! Phase 1: the region answers in 60 ms (above `slow_above` = 40 ms), so the target grows by 5 per
//! interval. Phase 2: it answers in 1 ms (below `fast_below` = 10 ms), so the target shrinks by 2.
//! Each change arrives as an event from `client.events()`.
//!
//! Run: `cargo run -p blossom-client --example 05_dynamic_sizing`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blossom_client::BlossomClient;
use blossom_client::pool_core::{Event, PolicyKind, ResizeReason};
use futures_util::StreamExt;
use futures_util::future::join_all;

/// Sends waves of 10 concurrent requests for at least `at_least`, then until `seen` counts a
/// resize (at most 5 s more): a loaded machine may take longer to show it than a fixed time.
async fn load(client: &BlossomClient, at_least: Duration, seen: &AtomicUsize) -> usize {
    let (started, mut sent) = (Instant::now(), 0);
    let before = seen.load(Ordering::SeqCst);
    while started.elapsed() < at_least
        || (seen.load(Ordering::SeqCst) == before && started.elapsed() < at_least + Duration::from_secs(5))
    {
        let calls = (0..10).map(|i| {
            let client = client.clone();
            async move { client.text().generate(&format!("Request {i}")).await }
        });
        sent += join_all(calls).await.len();
    }
    sent
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = common::Target::start(common::latency(60)).await;
    let client = target
        .builder()
        .session_with(|s| {
            s.sizer.policy = PolicyKind::Threshold; // the guide's DynamicPoolManager
            (s.sizer.min, s.sizer.max, s.sizer.initial) = (5, 30, 10);
            s.sizer.threshold.adjustment_interval = Duration::from_millis(200); // guide: 60 s
            s.sizer.threshold.min_samples = 10;
            s.sizer.threshold.slow_above = Duration::from_millis(40); // guide: 2 s
            s.sizer.threshold.fast_below = Duration::from_millis(10); // guide: 0.5 s
            (s.sizer.threshold.grow_by, s.sizer.threshold.shrink_by) = (5, 2);
        })
        .build()?;

    let mut events = Box::pin(client.events()); // the stream is not `Unpin`
    let (grows, shrinks) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (grows_seen, shrinks_seen) = (grows.clone(), shrinks.clone());
    let printer = tokio::spawn(async move {
        let (mut grew, mut shrank) = (0, 0);
        while let Some(e) = events.next().await {
            if let Event::Resized { event, .. } = e.event {
                let verb = if event.reason == ResizeReason::Grow { "Increasing" } else { "Decreasing" };
                println!(
                    "  [{:>5.0} ms] {verb} pool size: {} -> {}",
                    e.at.as_secs_f64() * 1000.0,
                    event.from,
                    event.to
                );
                if event.reason == ResizeReason::Grow {
                    grew += 1;
                    grows_seen.fetch_add(1, Ordering::SeqCst);
                } else {
                    shrank += 1;
                    shrinks_seen.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        (grew, shrank)
    });

    let target_now = |c: &BlossomClient| c.stats().regions[0].pool_target;
    println!("start: pool target {}", target_now(&client));
    println!("phase 1: slow answers (60 ms)");
    let slow = load(&client, Duration::from_millis(700), &grows).await;
    let after_slow = target_now(&client);
    println!("after {slow} slow requests: pool target {after_slow}");
    target.set_behavior(common::latency(1));
    println!("phase 2: fast answers (1 ms)");
    let fast = load(&client, Duration::from_millis(1200), &shrinks).await;
    let after_fast = target_now(&client);
    println!("after {fast} fast requests: pool target {after_fast}");

    let failed = client.stats().requests_failed.total();
    drop(client); // ends the event stream
    let (grew, shrank) = printer.await?;
    common::result(
        failed == 0 && grew > 0,
        &format!("grew={grew} shrank={shrank} start=10 peak={after_slow} end={after_fast} failed={failed}"),
    );
    Ok(())
}
