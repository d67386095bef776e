//! Guide section 7, "HTTP/2 optimization": many concurrent requests as streams of one connection.
//!
//! The same 100 concurrent requests (each answered in 50 ms) need 50 connections over HTTP/1.1
//! with a limit of 50 per host, and one over HTTP/2, where all 100 run at once on it.
//!
//! Run: `cargo run -p blossom-client --example 07_http2_multiplexing`.

mod common;

use std::time::Instant;

use blossom_client::BlossomClient;
use futures_util::future::join_all;

/// Sends `n` concurrent requests; returns how many succeeded and how long they took (ms).
async fn burst(client: &BlossomClient, n: usize) -> (usize, f64) {
    let started = Instant::now();
    let calls = (0..n).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("HTTP/2 request {i}")).await }
    });
    let ok = join_all(calls).await.iter().filter(|r| r.is_ok()).count();
    (ok, started.elapsed().as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = common::requests(100);
    let limits = |s: &mut blossom_client::SessionConfig| {
        s.sync_pool_connections = 20; // guide: max_keepalive_connections = 20
        s.async_limit_total = 200;
        s.async_limit_per_host = 50;
    };

    let h1 = common::Target::start(common::latency(50)).await;
    let client = h1
        .builder()
        .session_with(|s| {
            limits(s);
            s.http2 = false; // HTTP/1.1: one request per connection at a time
        })
        .build()?;
    let (ok1, ms1) = burst(&client, n).await;
    let h1_connections = client.stats().connections_created;
    println!(
        "HTTP/1.1: {ok1}/{n} in {ms1:.0} ms over {h1_connections} connection(s) (server saw {})",
        h1.server_connections()
    );

    let h2 = common::Target::start(common::latency(50)).await;
    // https regions negotiate HTTP/2 by ALPN (`http2 = true`, the default); the plain-http mock
    // needs prior knowledge (h2c).
    let client = h2
        .builder()
        .session_with(|s| {
            limits(s);
            // A PING each 30 s: a peer gone silent is found within 20 s more (`http2_ping_timeout`).
            s.http2_ping_interval = Some(std::time::Duration::from_secs(30));
        })
        .http2_prior_knowledge()
        .build()?;
    let (ok2, ms2) = burst(&client, n).await;
    let stats = client.stats();
    let in_flight = h2.mock.as_ref().map_or("n/a".into(), |m| m.stats().max_in_flight.to_string());
    println!(
        "HTTP/2:   {ok2}/{n} in {ms2:.0} ms over {} connection(s), {} reuses, server ran {in_flight} at once",
        stats.connections_created, stats.connections_reused
    );
    common::result(
        ok1 + ok2 == 2 * n,
        &format!(
            "requests={} h1_connections={h1_connections} h2_connections={} h2_max_in_flight={in_flight}",
            ok1 + ok2,
            stats.connections_created
        ),
    );
    Ok(())
}
