//! Guide section 8, "Connection warmup": open connections before the traffic arrives.
//!
//! `warmup(5)` opens 5 connections without sending a request. A burst of 50 requests, 5 at a
//! time, then opens no new connection: every request reuses a warm one.
//!
//! Run: `cargo run -p blossom-client --example 08_warmup`.

mod common;

use std::time::Instant;

use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    const WARM: usize = 5;
    let target = common::Target::start(common::latency(10)).await;
    let client = target.builder().build()?;

    println!("Warming up {WARM} connections...");
    let report = client.warmup(WARM).await;
    print!("{report}");
    let warm = client.stats().connections_created;
    println!("Connection warmup complete: {warm} open, {} request(s) sent so far", client.stats().requests_total);

    let n = common::requests(50);
    let started = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move { client.text().generate(&format!("Fast request {i}")).await }
        })
        .buffer_unordered(WARM) // at most as many at once as there are warm connections
        .collect()
        .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let stats = client.stats();
    let new = stats.connections_created - warm;
    println!("Processed {ok}/{n} requests in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
    println!("new connections during the burst: {new}; reused: {}", stats.connections_reused);
    println!("server saw {} connection(s)", target.server_connections());
    common::result(
        ok == n && report.failed.is_empty(),
        &format!("warmed={} failed={} requests={ok} new_connections={new}", report.opened.len(), report.failed.len()),
    );
    Ok(())
}
