//! Guide section 4, "Connection pool statistics": counted by the pool itself, no wrapper needed.
//!
//! 20 concurrent requests, 10 sequential ones, and one the server refuses (400): the statistics
//! show connections created and reused, the failure by kind, waits and durations; the server's
//! own connection count matches the client's.
//!
//! Run: `cargo run -p blossom-client --example 04_pool_statistics`.

mod common;

use blossom_mock::Behavior;
use futures_util::future::join_all;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = common::Target::start(common::latency(20)).await;
    let client = target.builder().session_with(|s| s.async_limit_per_host = 10).build()?;

    let n = common::requests(20);
    let calls = (0..n).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("Request {i}")).await }
    });
    let mut ok = join_all(calls).await.iter().filter(|r| r.is_ok()).count();
    for i in 0..common::requests(10) {
        ok += usize::from(client.text().generate(&format!("Sequential {i}")).await.is_ok());
    }
    if target.mock.is_some() {
        target.set_behavior(Behavior::Status(400));
        let error = client.text().generate("a request the server refuses").await.unwrap_err();
        println!("refused as expected: {error}");
    }

    let stats = client.stats();
    println!("{stats}");
    println!("failed by kind: {:?}", stats.requests_failed);
    println!(
        "server saw {} connection(s); the client created {}",
        target.server_connections(),
        stats.connections_created
    );
    // Machine-readable too (serde): `serde_json::to_string(&stats)`.
    common::result(
        ok == stats.requests_succeeded as usize,
        &format!(
            "requests={} succeeded={ok} failed={} bad_request={} created={} reused={} reuse_ratio={:.2}",
            stats.requests_total,
            stats.requests_failed.total(),
            stats.requests_failed.bad_request,
            stats.connections_created,
            stats.connections_reused,
            stats.reuse_ratio
        ),
    );
    Ok(())
}
