//! Guide section 1, "Sync connection pool": the blocking client and its `sync_*` settings.
//!
//! One blocking client, shared by four threads, keeps at most `sync_pool_maxsize` connections per
//! region and reuses them: 30 requests travel over at most 4 connections (one per thread).
//!
//! Run: `cargo run -p blossom-client --example 01_sync_pool` (set `BLOSSOM_BASE_URL` for a real server).

mod common;

use std::time::{Duration, Instant};

use blossom_client::blocking::BlossomClient;
use blossom_client::{ClientConfig, SessionConfig, TextOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The mock runs on a runtime of its own; the blocking client brings its own too.
    let runtime = tokio::runtime::Runtime::new()?;
    let target = runtime.block_on(common::Target::start(common::latency(20)));

    let mut config = ClientConfig {
        session: SessionConfig {
            sync_pool_connections: 10,        // idle connections kept per region
            sync_pool_maxsize: 20,            // connections per region at most
            sync_pool_block: true,            // wait for a free connection when all are busy
            timeout: Duration::from_secs(30), // whole call, retries included
            sync_timeout_connect: Duration::from_secs(5),
            sync_timeout_read: Duration::from_secs(25),
            ..common::quick_session()
        },
        base_url: target.url.clone(),
        ..ClientConfig::default()
    };
    if common::live() {
        config.apply_env()?;
    }
    let client = BlossomClient::with_config(config)?;

    let started = Instant::now();
    let options = TextOptions::default();
    let sequential = common::requests(10);
    for i in 0..sequential {
        client.generate(&format!("Request {i}"), &options)?;
    }
    println!("{sequential} sequential requests: {} connection(s) opened", client.stats().connections_created);

    let per_thread = common::requests(5);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (client, options) = (client.clone(), options.clone()); // clones share the pool
            std::thread::spawn(move || {
                (0..per_thread)
                    .try_for_each(|i| client.generate(&format!("Thread {t} request {i}"), &options).map(drop))
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("worker thread")?;
    }
    let stats = client.stats();
    let total = sequential + 4 * per_thread;
    println!("{total} requests in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
    println!("{stats}");
    println!("server saw {} connection(s)", target.server_connections());
    common::result(
        stats.requests_failed.total() == 0,
        &format!(
            "requests={} failed={} connections={} reused={}",
            stats.requests_total,
            stats.requests_failed.total(),
            stats.connections_created,
            stats.connections_reused
        ),
    );
    Ok(())
}
