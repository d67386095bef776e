//! Guide section 13, "Pool configuration guidelines": the three presets, by code, by name
//! (`SessionConfig::preset`) or from the environment (`BLOSSOM_PRESET=batch`).
//!
//! Prints each preset's settings, then runs the same 30 concurrent requests under each: the
//! per-host limit decides how many connections open.
//!
//! Run: `cargo run -p blossom-client --example 13_presets`.

mod common;

use blossom_client::SessionConfig;
use futures_util::future::join_all;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let presets = [
        ("default", SessionConfig::default()),
        ("high_throughput", SessionConfig::high_throughput()),
        ("low_latency", SessionConfig::low_latency()),
        ("batch", SessionConfig::preset("batch")?), // by name, as a config file or CLI would
    ];
    println!(
        "{:<16} {:>5} {:>7} {:>6} {:>8} {:>8} {:>7} {:>9}",
        "preset", "idle", "maxsize", "total", "per_host", "connect", "read", "rate/min"
    );
    for (name, s) in &presets {
        println!(
            "{name:<16} {:>5} {:>7} {:>6} {:>8} {:>7}s {:>6}s {:>9}",
            s.sync_pool_connections,
            s.sync_pool_maxsize,
            s.async_limit_total,
            s.async_limit_per_host,
            s.async_timeout_connect.as_secs(),
            s.async_timeout_sock_read.as_secs(),
            s.rate_limit_per_minute.map_or("none".into(), |r| r.to_string())
        );
    }

    let n = common::requests(30);
    let (mut summary, mut all_ok) = (Vec::new(), true);
    for (name, preset) in presets {
        let target = common::Target::start(common::latency(20)).await;
        let client = target
            .builder()
            .session(preset)
            .session_with(|s| s.rate_limit_burst = s.rate_limit_burst.max(30)) // start the batch at once
            .session_with(common::quick)
            .build()?;
        let calls = (0..n).map(|i| {
            let client = client.clone();
            async move { client.text().generate(&format!("{name} request {i}")).await }
        });
        let ok = join_all(calls).await.iter().filter(|r| r.is_ok()).count();
        let stats = client.stats();
        println!(
            "{name:<16} {ok}/{n} ok over {} connection(s), {} waited",
            stats.connections_created, stats.pool_wait.samples
        );
        all_ok &= ok == n;
        summary.push(format!("{name}={}", stats.connections_created));
    }
    common::result(all_ok, &format!("requests_each={n} connections {}", summary.join(" ")));
    Ok(())
}
