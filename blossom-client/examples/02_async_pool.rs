//! Guide section 2, "Async connection pool": `async_limit_*`, async timeouts and a rate limit.
//!
//! 50 concurrent requests against a per-host limit of 30: the pool opens 30 connections, the
//! other 20 requests wait for one to come free and reuse it; none fails.
//!
//! Run: `cargo run -p blossom-client --example 02_async_pool`.

mod common;

use std::time::{Duration, Instant};

use futures_util::future::join_all;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = common::Target::start(common::latency(50)).await;
    let client = target
        .builder()
        .session_with(|s| {
            s.async_limit_total = 100; // connections across all regions
            s.async_limit_per_host = 30; // connections per region
            s.async_timeout_connect = Duration::from_secs(2);
            s.async_timeout_sock_read = Duration::from_secs(10);
            s.rate_limit_per_minute = Some(1000);
            s.rate_limit_burst = 50; // let the whole batch start at once
        })
        .build()?;

    let n = common::requests(50);
    let started = Instant::now();
    let calls = (0..n).map(|i| {
        let client = client.clone(); // clones share one pool
        async move { client.text().generate(&format!("Request {i}")).await }
    });
    let results = join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    for error in results.iter().filter_map(|r| r.as_ref().err()) {
        println!("failed: {error}");
    }
    let stats = client.stats();
    println!("{ok}/{n} requests succeeded in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
    println!(
        "connections: created {}, reused {}, peak {} (limit per host 30)",
        stats.connections_created, stats.connections_reused, stats.pool_peak
    );
    println!("waited for a connection: {} request(s), max {:.1} ms", stats.pool_wait.samples, stats.pool_wait.max_ms);
    let tokens = stats.limiter.available.unwrap_or(f64::INFINITY);
    println!("rate limiter: 1000/min with a burst of 50, {tokens:.1} token(s) left");
    println!("server saw {} connection(s)", target.server_connections());
    common::result(
        ok == n,
        &format!(
            "requests={n} succeeded={ok} connections={} peak={} waited={}",
            stats.connections_created, stats.pool_peak, stats.pool_wait.samples
        ),
    );
    Ok(())
}
