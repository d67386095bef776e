//! Guide section 11, "Connection pool tuning": the client records its workload and recommends
//! pool sizes and timeouts from it; no wrapper needed.
//!
//! Batches of 5, 10, 20, 15 and 8 concurrent requests against a region whose best concurrency is
//! 8 (it slows down beyond). After each batch: the analysis and the recommended pool size.
//!
//! Run: `cargo run -p blossom-client --example 11_optimizer`.

mod common;

use std::time::Duration;

use blossom_mock::Behavior;
use futures_util::future::join_all;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let capacity = Behavior::Capacity { k: 8, base: Duration::from_millis(20), per_excess: Duration::from_millis(5) };
    let target = common::Target::start(capacity).await;
    let client = target.builder().build()?;
    println!("{}", client.optimizer()); // nothing measured yet

    for batch in [5, 10, 20, 15, 8] {
        let batch = common::requests(batch);
        let calls = (0..batch).map(|i| {
            let client = client.clone();
            async move { client.text().generate(&format!("Request {i}")).await }
        });
        let ok = join_all(calls).await.iter().filter(|r| r.is_ok()).count();
        if let Some(a) = client.optimizer().analysis {
            println!(
                "batch of {batch:>2}: {ok} ok, avg latency {:.0} ms, avg concurrency {:.1}, max {} -> optimal pool size {}",
                a.avg_latency.as_secs_f64() * 1000.0,
                a.avg_concurrency,
                a.max_concurrency,
                a.recommended_pool_size
            );
        }
    }
    println!("{}", client.optimizer());

    let optimization = client.optimizer();
    let analysis = optimization.analysis.as_ref().ok_or("no requests were measured")?;
    let r = &optimization.recommended;
    println!(
        "recommended: sync_pool_connections={} sync_pool_maxsize={} async_limit_total={} async_limit_per_host={} read timeout {:?}, total {:?}",
        r.sync_pool_connections,
        r.sync_pool_maxsize,
        r.async_limit_total,
        r.async_limit_per_host,
        r.async_timeout_sock_read,
        r.timeout
    );
    // The recommendation is a whole SessionConfig: build the next client with it.
    let tuned = target.builder().session(r.clone()).build()?;
    tuned.text().generate("with the tuned settings").await?;
    common::result(
        true,
        &format!(
            "samples={} max_concurrency={} recommended_pool_size={} littles_law={}",
            analysis.samples, analysis.max_concurrency, analysis.recommended_pool_size, analysis.littles_law_pool_size
        ),
    );
    Ok(())
}
