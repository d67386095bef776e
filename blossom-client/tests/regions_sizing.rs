//! Dynamic sizing, live: under slow responses the threshold policy grows a region's pool, under
//! fast ones it shrinks it, each region on its own, and shrinking never aborts a request in flight.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use blossom_client::pool_core::{Event, PolicyKind};
use blossom_client::{BlossomClient, SessionConfig};
use blossom_mock::Behavior;
use common::{Events, Gate};

const GUARD: Duration = Duration::from_secs(10);

/// The guide's threshold rule on a fast clock: adjust every 100 ms from at least 3 samples;
/// grow by 3 above an average of 50 ms, shrink by 2 below 10 ms.
fn threshold(s: &mut SessionConfig) {
    s.sizer.policy = PolicyKind::Threshold;
    s.sizer.min = 1;
    s.sizer.max = 12;
    s.sizer.initial = 2;
    s.sizer.threshold.adjustment_interval = Duration::from_millis(100);
    s.sizer.threshold.min_samples = 3;
    s.sizer.threshold.slow_above = Duration::from_millis(50);
    s.sizer.threshold.fast_below = Duration::from_millis(10);
    s.sizer.threshold.grow_by = 3;
    s.sizer.threshold.shrink_by = 2;
}

/// The resizes of `region`, as (from, to).
fn resizes(events: &Events, region: &str) -> Vec<(u32, u32)> {
    events
        .matching(|e| e.region.as_deref() == Some(region))
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Resized { event, .. } => Some((event.from, event.to)),
            _ => None,
        })
        .collect()
}

fn target(client: &BlossomClient, region: &str) -> u32 {
    client.stats().regions.into_iter().find(|r| r.name == region).unwrap().pool_target
}

#[tokio::test]
async fn a_slow_region_grows_and_a_fast_one_shrinks() {
    let (slow, slow_addr) = common::mock().await;
    let (fast, fast_addr) = common::mock().await;
    slow.set_behavior(Behavior::Healthy { base: Duration::from_millis(120), jitter: Duration::ZERO });
    fast.set_behavior(Behavior::Healthy { base: Duration::ZERO, jitter: Duration::ZERO });
    let client = common::regions_client(&[("slow", slow_addr), ("fast", fast_addr)], |s| {
        threshold(s);
        s.sizer.initial = 3;
    });
    let events = Events::record(&client);
    assert_eq!((target(&client, "slow"), target(&client, "fast")), (3, 3));

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut done = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    client.text().generate(&format!("w{w}-{done}")).await?;
                    done += 1;
                }
                Ok::<_, blossom_client::Error>(done)
            })
        })
        .collect();
    common::until("the slow region grew and the fast one shrank", || {
        resizes(&events, "slow").iter().any(|(from, to)| to > from)
            && resizes(&events, "fast").iter().any(|(from, to)| to < from)
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        common::within(GUARD, worker).await.unwrap().expect("no call fails while pools are resized");
    }
    assert!(target(&client, "slow") > 3, "{:?}", resizes(&events, "slow"));
    assert!(target(&client, "fast") < 3, "{:?}", resizes(&events, "fast"));
    assert_eq!(client.stats().requests_failed.total(), 0);

    // The grown pool is used: more requests at once on the slow region than its first target.
    let burst: Vec<_> = (0..10)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.text().generate(&format!("burst {i}")).await })
        })
        .collect();
    for call in burst {
        common::within(GUARD, call).await.unwrap().unwrap();
    }
    assert!(slow.stats().max_in_flight > 3, "the slow region never had more than its first target in flight");
}

#[tokio::test]
async fn shrinking_closes_idle_connections_only() {
    let gate = Gate::default();
    let addr = gate.serve().await;
    let client = common::regions_client(&[("only", addr)], |s| {
        threshold(s);
        s.sizer.initial = 8;
        s.sizer.min = 1;
        s.sizer.threshold.shrink_by = 6;
    });
    let events = Events::record(&client);

    // Four requests held in flight by the server.
    let held: Vec<_> = (0..4)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.text().generate(&format!("hold {i}")).await })
        })
        .collect();
    common::until("four requests are in flight", || gate.held() == 4).await;

    // Fast traffic beside them until the pool shrinks below the four busy connections.
    let mut fast = 0;
    while !resizes(&events, "only").iter().any(|(_, to)| *to < 4) {
        assert!(fast < 2000, "no shrink: {:?}", resizes(&events, "only"));
        common::within(GUARD, client.text().generate(&format!("quick {fast}"))).await.unwrap();
        fast += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(gate.held(), 4, "the held requests are still in flight after the shrink");
    assert!(target(&client, "only") < 4);
    let pool = client.stats().regions[0].pool;
    assert!(pool.busy >= 4 && pool.open >= 4, "busy connections stay open past the target: {pool:?}");

    gate.open();
    for (i, call) in held.into_iter().enumerate() {
        let answer = common::within(GUARD, call).await.unwrap();
        assert_eq!(answer.unwrap(), format!("/text/hold%20{i}"), "request {i} in flight was aborted");
    }
    let stats = client.stats();
    assert_eq!(stats.requests_failed.total(), 0);
    assert_eq!(stats.requests_retried, 0, "nothing was retried: nothing was aborted");
    // Released into a pool above its target, the busy connections close; none is left idle above it.
    common::until("the pool is back within its target", || {
        let region = &client.stats().regions[0];
        region.pool.open <= region.pool_target.max(1)
    })
    .await;
}
