//! Guide section 15, "Pool statistics monitoring": 100 requests, at most 20 at once, with the pool
//! watched while they run, then the summary the guide computes.
//!
//! A background task samples `client.stats()` every 50 ms (busy, idle, waiting). At most 20
//! connections open (the concurrency limit); the other 80 requests reuse them.
//!
//! Run: `cargo run -p blossom-client --example 15_monitoring_under_load`.

mod common;

use std::time::Duration;

use blossom_mock::Behavior;
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target =
        common::Target::start(Behavior::Healthy { base: Duration::from_millis(20), jitter: Duration::from_millis(30) })
            .await;
    let client = target.builder().build()?;

    let n = common::requests(100);
    let watcher = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut peak_busy = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let s = client.stats();
                peak_busy = peak_busy.max(s.pool_busy);
                println!(
                    "  [{:>4.0} ms] done {:>3}/{}, busy {:>2}, idle {:>2}, waiting {}",
                    s.uptime_secs * 1000.0,
                    s.requests_succeeded,
                    s.requests_total,
                    s.pool_busy,
                    s.pool_idle,
                    s.pool_waiting
                );
                if s.requests_total as usize >= n && s.pool_busy == 0 {
                    return peak_busy;
                }
            }
        })
    };

    let results: Vec<_> = futures_util::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move { client.text().generate(&format!("Request {i}")).await }
        })
        .buffer_unordered(20) // the guide's Semaphore(20)
        .collect()
        .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let peak_busy = watcher.await?;

    let s = client.stats();
    println!("\nPool Statistics:");
    println!("  connections_created: {}", s.connections_created);
    println!("  connections_reused: {}", s.connections_reused);
    println!("  reuse_ratio: {:.2}", s.reuse_ratio);
    println!("  requests_total: {} ({} failed)", s.requests_total, s.requests_failed.total());
    println!(
        "  request_duration: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        s.request_duration.p50_ms, s.request_duration.p99_ms, s.request_duration.max_ms
    );
    println!("  pool_wait: {} waited, max {:.1} ms", s.pool_wait.samples, s.pool_wait.max_ms);
    println!("  peak open: {}, peak busy seen: {peak_busy}", s.pool_peak);
    println!("server saw {} connection(s)", target.server_connections());
    common::result(
        ok == n,
        &format!(
            "requests={n} succeeded={ok} connections={} reused={} peak={} reuse_ratio={:.2}",
            s.connections_created, s.connections_reused, s.pool_peak, s.reuse_ratio
        ),
    );
    Ok(())
}
