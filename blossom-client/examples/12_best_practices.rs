//! Guide section 12, "Connection pool best practices": reuse one client; size its pool for the load.
//!
//! The same 20 requests twice: through one client (one pool: 1 connection, reused 19 times), and
//! with a new client per request (a new pool each time: 20 connections, 20 handshakes). The mock
//! counts the connections it accepted, so the numbers come from the server side. Then 50 requests
//! at once: the default pool (30 per host) makes 20 wait; a pool sized for the load, none.
//!
//! Run: `cargo run -p blossom-client --example 12_best_practices`.

mod common;

use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = common::requests(20);

    // DO: one client for the whole program (clone it freely: clones share the pool).
    let good = common::Target::start(common::latency(2)).await;
    let started = Instant::now();
    let client = good.builder().build()?;
    for i in 0..n {
        client.text().generate(&format!("Request {i}")).await?;
    }
    let good_ms = started.elapsed().as_secs_f64() * 1000.0;
    let reused = client.stats().connections_reused;
    let good_connections = good.server_connections();
    println!(
        "one client:              {n} requests, {} connection(s), {reused} reuses, {good_ms:.0} ms",
        good_connections
    );

    // DON'T: a client per request: each brings a new pool, so every request opens a connection.
    let bad = common::Target::start(common::latency(2)).await;
    let started = Instant::now();
    for i in 0..n {
        let client = bad.builder().build()?;
        client.text().generate(&format!("Request {i}")).await?;
    }
    let bad_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "a client per request:    {n} requests, {} connection(s), 0 reuses, {bad_ms:.0} ms",
        bad.server_connections()
    );

    // DO: size the pool for the expected load; DON'T keep the defaults (30 per host) for 50 at once.
    let waits = |sized: bool| {
        let builder = good.builder().session_with(move |s| {
            if sized {
                (s.sync_pool_connections, s.sync_pool_maxsize) = (20, 40); // expected load, 2x for bursts
                (s.async_limit_total, s.async_limit_per_host) = (200, 50);
            }
        });
        async move {
            let client = builder.build()?;
            let calls = (0..common::requests(50)).map(|i| {
                let client = client.clone();
                async move { client.text().generate(&format!("Burst {i}")).await }
            });
            futures_util::future::join_all(calls).await.into_iter().collect::<Result<Vec<_>, _>>()?;
            Ok::<_, blossom_client::Error>(client.stats().pool_wait.samples)
        }
    };
    let (default_waits, sized_waits) = (waits(false).await?, waits(true).await?);
    println!("50 at once: default pool made {default_waits} request(s) wait, a pool sized for it {sized_waits}");
    common::result(
        true,
        &format!(
            "requests={n} reused_client_connections={} per_request_connections={} default_waits={default_waits} sized_waits={sized_waits}",
            good_connections,
            bad.server_connections()
        ),
    );
    Ok(())
}
