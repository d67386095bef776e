//! Each routing strategy distributes as it says: round robin evenly (and by weight),
//! primary/backup only to the backup while the primary is out, least-loaded away from a slow
//! region, random over all of them.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use blossom_client::pool_core::{BreakerState, Strategy};
use blossom_client::{BlossomClient, BreakerControl, Region};
use blossom_mock::{Behavior, MockServer};

const GUARD: Duration = Duration::from_secs(10);

async fn calls(client: &BlossomClient, n: usize) {
    for i in 0..n {
        let result = common::within(GUARD, client.text().generate(&format!("call {i}"))).await;
        assert!(result.is_ok(), "call {i} failed: {result:?}");
    }
}

fn generations(servers: &[&MockServer]) -> Vec<u64> {
    servers.iter().map(|s| s.stats().generations).collect()
}

async fn mocks(n: usize) -> (Vec<MockServer>, Vec<SocketAddr>) {
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let (server, addr) = common::mock().await;
        servers.push(server);
        addrs.push(addr);
    }
    (servers, addrs)
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let (servers, addrs) = mocks(3).await;
    let client = common::regions_client(&[("a", addrs[0]), ("b", addrs[1]), ("c", addrs[2])], |s| {
        s.router.strategy = Strategy::RoundRobin;
    });
    calls(&client, 30).await;
    assert_eq!(generations(&[&servers[0], &servers[1], &servers[2]]), [10, 10, 10]);
}

#[tokio::test]
async fn round_robin_follows_the_weights() {
    let (servers, addrs) = mocks(2).await;
    let client = BlossomClient::builder()
        .api_key(common::KEY)
        .session_with(|s| {
            common::fast(s);
            s.router.strategy = Strategy::RoundRobin;
        })
        .region(Region::new("big", format!("http://{}", addrs[0])).weight(3))
        .region(Region::new("small", format!("http://{}", addrs[1])).weight(1))
        .build()
        .unwrap();
    calls(&client, 40).await;
    assert_eq!(generations(&[&servers[0], &servers[1]]), [30, 10]);
}

#[tokio::test]
async fn random_reaches_every_region_and_is_seeded() {
    let (servers, addrs) = mocks(3).await;
    let regions = [("a", addrs[0]), ("b", addrs[1]), ("c", addrs[2])];
    let client = common::regions_client(&regions, |s| {
        s.router.strategy = Strategy::Random;
        s.seed = 42;
    });
    calls(&client, 60).await;
    let first = generations(&[&servers[0], &servers[1], &servers[2]]);
    assert!(first.iter().all(|&n| n >= 5), "every region gets a share: {first:?}");
    // The same seed picks the same sequence.
    let again = common::regions_client(&regions, |s| {
        s.router.strategy = Strategy::Random;
        s.seed = 42;
    });
    calls(&again, 60).await;
    let both = generations(&[&servers[0], &servers[1], &servers[2]]);
    let second: Vec<u64> = both.iter().zip(&first).map(|(b, f)| b - f).collect();
    assert_eq!(first, second, "a seeded random router is reproducible");
}

#[tokio::test]
async fn primary_backup_uses_the_backup_only_while_the_primary_is_out() {
    let (servers, addrs) = mocks(2).await;
    let (primary, backup) = (&servers[0], &servers[1]);
    let client = BlossomClient::builder()
        .api_key(common::KEY)
        .session_with(|s| {
            common::fast(s);
            s.router.strategy = Strategy::PrimaryBackup;
            s.breaker.failure_threshold = 2;
            s.breaker.failure_rate_threshold = None;
            // No probe during the test: the primary stays out until reset by hand.
            s.breaker.reset_timeout = Duration::from_secs(60);
            s.health.consecutive_failures = 0;
        })
        // Listed backup first: priority decides, not order.
        .region(Region::new("backup", format!("http://{}", addrs[1])).priority(1))
        .region(Region::new("primary", format!("http://{}", addrs[0])).priority(0))
        .build()
        .unwrap();

    calls(&client, 10).await;
    assert_eq!(generations(&[primary, backup]), [10, 0], "the primary takes everything while up");

    primary.set_behavior(Behavior::Status(503));
    calls(&client, 10).await;
    assert_eq!(client.breaker_state("primary"), Some(BreakerState::Open));
    assert_eq!(primary.stats().generations, 12, "the primary saw failure_threshold failures, then nothing");
    assert_eq!(backup.stats().generations, 10, "every call of the outage went to the backup");
    calls(&client, 10).await;
    assert_eq!(generations(&[primary, backup]), [12, 20], "nothing reaches the primary while it is out");

    // Back up and reset by hand: traffic returns to the primary, none to the backup.
    primary.set_behavior(Behavior::default());
    client.set_breaker("primary", BreakerControl::Reset).unwrap();
    calls(&client, 10).await;
    assert_eq!(generations(&[primary, backup]), [22, 20]);

    // Forced open by hand: out again, whatever it answers.
    client.set_breaker("primary", BreakerControl::ForceOpen).unwrap();
    assert_eq!(client.breaker_state("primary"), Some(BreakerState::ForcedOpen));
    calls(&client, 5).await;
    assert_eq!(generations(&[primary, backup]), [22, 25]);
    client.set_breaker("primary", BreakerControl::Reset).unwrap();
    assert!(client.set_breaker("nowhere", BreakerControl::Reset).is_err());
    assert_eq!(client.breaker_state("nowhere"), None);
}

#[tokio::test]
async fn least_loaded_stays_away_from_a_slow_region() {
    let (servers, addrs) = mocks(2).await;
    let (fast, slow) = (&servers[0], &servers[1]);
    slow.set_behavior(Behavior::Healthy { base: Duration::from_millis(80), jitter: Duration::ZERO });
    let client = common::regions_client(&[("fast", addrs[0]), ("slow", addrs[1])], |s| {
        s.router.strategy = Strategy::LeastLoaded;
    });
    calls(&client, 40).await;
    let [to_fast, to_slow] = [fast.stats().generations, slow.stats().generations];
    assert_eq!(to_fast + to_slow, 40);
    // Both start at the default RTT estimate; one 80 ms sample makes the slow one costlier than the
    // fast one for far longer than this test runs.
    assert!(to_slow <= 3, "least-loaded kept sending to the slow region: fast {to_fast}, slow {to_slow}");

    // Under concurrency the in-flight count weighs in too: still mostly the fast region.
    let before_slow = slow.stats().generations;
    let tasks: Vec<_> = (0..4)
        .map(|w| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    client.text().generate(&format!("w{w}-{i}")).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        common::within(GUARD, task).await.unwrap();
    }
    let concurrent_slow = slow.stats().generations - before_slow;
    assert!(concurrent_slow <= 8, "least-loaded sent {concurrent_slow} of 40 concurrent calls to the slow region");
}
