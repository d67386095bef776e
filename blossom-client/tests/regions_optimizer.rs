//! `client.optimizer()` from a recorded workload matches the guide's formula: pool size =
//! int(average concurrency x 1.5) clamped to [5, 50]; maxsize x2, total x10, per host x3.
//!
//! The workload is made exact with a gate: `n` calls across two regions are all held by the
//! servers until every one has arrived, so when they finish the concurrency each one records is
//! n, n-1, ..., 1 (core counts in flight at finish), an average of (n + 1) / 2.

mod common;

use std::time::Duration;

use blossom_client::BlossomClient;
use common::Gate;

const GUARD: Duration = Duration::from_secs(10);

/// The guide's rule, written out independently of pool-core.
fn guide_pool(avg_concurrency: f64) -> u32 {
    ((avg_concurrency * 1.5) as u32).clamp(5, 50)
}

/// Sends `n` calls at once through the gate and waits for all of them.
async fn burst(client: &BlossomClient, gate: &Gate, n: u64) {
    gate.close();
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.text().generate(&format!("hold {i}")).await })
        })
        .collect();
    common::until("every call of the burst is held", || gate.held() == n).await;
    gate.open();
    for call in calls {
        common::within(GUARD, call).await.unwrap().expect("every call of the workload succeeds");
    }
}

async fn two_regions(per_host: u32) -> (Gate, BlossomClient) {
    let gate = Gate::default();
    let (a, b) = (gate.serve().await, gate.serve().await);
    let client = common::regions_client(&[("a", a), ("b", b)], |s| {
        s.async_limit_per_host = per_host;
        s.async_limit_total = per_host * 2;
    });
    (gate, client)
}

#[tokio::test]
async fn the_recommendation_follows_the_guide_formula() {
    let (gate, client) = two_regions(30).await;
    let none = client.optimizer();
    assert!(none.analysis.is_none());
    assert_eq!(none.to_string(), "No metrics available for analysis");

    burst(&client, &gate, 20).await;
    let optimization = client.optimizer();
    let analysis = optimization.analysis.clone().expect("20 calls were recorded");
    assert_eq!(analysis.samples, 20);
    assert_eq!(analysis.max_concurrency, 20);
    assert!((analysis.avg_concurrency - 10.5).abs() < 1e-9, "{}", analysis.avg_concurrency);
    let pool = guide_pool(10.5);
    assert_eq!(pool, 15);
    assert_eq!(analysis.recommended_pool_size, pool);
    let r = &optimization.recommended;
    assert_eq!(
        (r.sync_pool_connections, r.sync_pool_maxsize, r.async_limit_total, r.async_limit_per_host),
        (pool, pool * 2, pool * 10, pool * 3)
    );
    r.validate().expect("the recommended configuration is valid");
    let shown = optimization.to_string();
    for line in [
        "POOL OPTIMIZATION ANALYSIS",
        "Max concurrent requests: 20",
        "Average concurrent requests: 10.5",
        "Recommended pool size: 15",
        "Metrics collected: 20",
        "Optimal pool size: 15",
    ] {
        assert!(shown.contains(line), "missing `{line}` in:\n{shown}");
    }

    // A second, smaller burst: the average is over every call recorded.
    burst(&client, &gate, 4).await;
    let analysis = client.optimizer().analysis.unwrap();
    let avg = (210.0 + 10.0) / 24.0;
    assert!((analysis.avg_concurrency - avg).abs() < 1e-9, "{}", analysis.avg_concurrency);
    assert_eq!(analysis.recommended_pool_size, guide_pool(avg));
    assert_eq!(client.optimizer().recommended.sync_pool_connections, 13);
}

#[tokio::test]
async fn the_pool_size_is_clamped_to_5_and_50() {
    let (gate, client) = two_regions(50).await;
    gate.open();
    // One call at a time: concurrency 1, int(1.5) = 1, raised to 5.
    for i in 0..10 {
        client.text().generate(&format!("one {i}")).await.unwrap();
    }
    let optimization = client.optimizer();
    let analysis = optimization.analysis.unwrap();
    assert_eq!((analysis.avg_concurrency, analysis.recommended_pool_size), (1.0, 5));
    let r = &optimization.recommended;
    assert_eq!((r.sync_pool_maxsize, r.async_limit_total, r.async_limit_per_host), (10, 50, 15));

    // 80 at once: average 40.5, int(60.75) = 60, capped at 50.
    let (gate, client) = two_regions(50).await;
    burst(&client, &gate, 80).await;
    let optimization = client.optimizer();
    let analysis = optimization.analysis.unwrap();
    assert!((analysis.avg_concurrency - 40.5).abs() < 1e-9, "{}", analysis.avg_concurrency);
    assert_eq!(analysis.recommended_pool_size, 50);
    let r = &optimization.recommended;
    assert_eq!((r.sync_pool_connections, r.sync_pool_maxsize), (50, 100));
    assert_eq!((r.async_limit_total, r.async_limit_per_host), (500, 150));
}
