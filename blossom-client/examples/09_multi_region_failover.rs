//! Guide section 9, "Multi-region connection pooling": one client, three regions, each with its
//! own pool, breaker and health; primary/backup routing with automatic failover.
//!
//! `us-east` (priority 0) serves until request 10, then stops answering. The stuck attempts time
//! out (300 ms read timeout) and are retried on `us-west`; after 3 such failures us-east's breaker
//! opens and later requests go straight to `us-west`. No call fails.
//!
//! Run: `cargo run -p blossom-client --example 09_multi_region_failover`
//! (or set `BLOSSOM_REGIONS=us-east=https://...,us-west=https://...`).

mod common;

use std::time::Duration;

use blossom_client::pool_core::{Event, Strategy};
use blossom_client::{BlossomClient, Region};
use blossom_mock::Behavior;
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let live = common::live();
    let names = ["us-east", "us-west", "eu-west"];
    let mut mocks = Vec::new();
    let mut builder = BlossomClient::builder().session_with(|s| {
        common::quick(s);
        s.router.strategy = Strategy::PrimaryBackup; // lowest priority value first
        s.async_timeout_sock_read = Duration::from_millis(300);
        s.breaker.failure_threshold = 3;
    });
    for (priority, name) in names.iter().enumerate() {
        let (mock, url) = common::mock(priority as u64, common::latency(5)).await;
        if !live {
            builder = builder.region(Region::new(*name, url).priority(priority as u32));
        }
        mocks.push(mock);
    }
    let client = builder.from_env().build()?;
    if !live {
        println!("using three embedded mock regions");
    }
    println!("regions: {}", client.regions().join(", "));

    let mut events = Box::pin(client.events());
    let log = tokio::spawn(async move {
        let mut failovers = 0;
        while let Some(e) = events.next().await {
            match &e.event {
                Event::Failover { .. } => failovers += 1,
                Event::Breaker { event, .. } => println!(
                    "  region {}: breaker {} -> {}",
                    e.region.as_deref().unwrap_or("?"),
                    common::state_name(event.from),
                    common::state_name(event.to)
                ),
                _ => {}
            }
        }
        failovers
    });

    let (mut ok, n) = (0, common::requests(30));
    for i in 0..n {
        if i == 10 && !live {
            println!("request {i}: us-east stops answering");
            mocks[0].set_behavior(Behavior::Hang);
        }
        match client.text().generate(&format!("Request {i}")).await {
            Ok(_) => ok += 1,
            Err(e) => println!("request {i}: failed: {e}"),
        }
    }
    let served: Vec<String> =
        names.iter().zip(&mocks).map(|(name, m)| format!("{name}={}", m.stats().generations)).collect();
    let stats = client.stats();
    for r in &stats.regions {
        println!("region {}: breaker {}, {}", r.name, common::state_name(r.breaker), r.health);
    }
    let primary = common::state_name(stats.regions[0].breaker);
    println!(
        "{ok}/{n} succeeded, {} retried; requests received per region: {}",
        stats.requests_retried,
        served.join(" ")
    );
    drop(client);
    let failovers = log.await?;
    common::result(
        ok == n,
        &format!("requests={n} succeeded={ok} failovers={failovers} primary_breaker={primary} {}", served.join(" ")),
    );
    Ok(())
}
