//! A 429 storm with `Retry-After` on one region: nothing is sent there before the deadline (the
//! server's own count stays flat until then), the calls go to the other region, and the storm
//! never opens that region's breaker (429 goes to the rate limiter, not the breaker).

mod common;

use std::time::{Duration, Instant};

use blossom_client::pool_core::{BreakerState, Event};
use blossom_client::{Error, SessionConfig};
use blossom_mock::Behavior;
use common::Events;

const GUARD: Duration = Duration::from_secs(10);

/// A breaker that would open at the second failure, so a 429 counted as one would show.
fn touchy(s: &mut SessionConfig) {
    s.breaker.failure_threshold = 2;
    s.health.consecutive_failures = 2;
}

#[tokio::test]
async fn a_429_storm_pauses_one_region_until_its_retry_after() {
    let (ok, ok_addr) = common::mock().await;
    let (limited, limited_addr) = common::mock().await;
    limited.set_behavior(Behavior::RateLimited { retry_after_secs: 1 });
    let client = common::regions_client(&[("limited", limited_addr), ("ok", ok_addr)], touchy);
    let events = Events::record(&client);

    // Round robin sends the first call to `limited`: 429, paused, the call moves to `ok`.
    let started = Instant::now();
    let first = common::within(GUARD, client.text().generate("first")).await;
    assert!(first.is_ok(), "{first:?}");
    assert_eq!(limited.stats().requests, 1);
    // The pause began after `started`, so it lasts at least until `started + 1 s`: any count the
    // server gives before then must still be 1.
    let mut calls = 1;
    while started.elapsed() < Duration::from_millis(800) {
        let result = common::within(GUARD, client.text().generate(&format!("during {calls}"))).await;
        assert!(result.is_ok(), "call {calls} failed during the pause: {result:?}");
        calls += 1;
        if started.elapsed() < Duration::from_secs(1) {
            assert_eq!(limited.stats().requests, 1, "a request reached the limited region before its Retry-After");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(ok.stats().generations, calls, "every call of the pause was answered by the other region");

    // The storm goes on: after each deadline one request goes there, gets 429, and pauses it again.
    while limited.stats().requests < 3 {
        assert!(started.elapsed() < GUARD, "the limited region was never tried again after its deadline");
        let result = common::within(GUARD, client.text().generate(&format!("storm {calls}"))).await;
        assert!(result.is_ok(), "call {calls} failed during the storm: {result:?}");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "two pauses of 1 s each came before the third request");
    let pauses = events.matching(|e| matches!(e.event, Event::Paused { .. }));
    assert!(!pauses.is_empty());
    for pause in &pauses {
        assert_eq!(pause.region.as_deref(), Some("limited"));
        let Event::Paused { at, until, .. } = pause.event else { unreachable!() };
        assert_eq!(until.saturating_since(at), Duration::from_secs(1), "the pause is the server's Retry-After");
    }
    assert_eq!(client.breaker_state("limited"), Some(BreakerState::Closed), "429s never open the breaker");
    assert!(events.breaker("limited").is_empty(), "{:?}", events.breaker("limited"));
    let limited_stats = client.stats().regions.into_iter().find(|r| r.name == "limited").unwrap();
    assert_eq!(limited_stats.health, "Healthy", "429s do not eject the region either");
    assert_eq!(client.stats().requests_failed.total(), 0, "no call was lost");
}

#[tokio::test]
async fn a_single_region_rate_limited_makes_the_call_wait_or_fail_fast() {
    let (server, addr) = common::mock().await;
    server.set_behavior(Behavior::RateLimited { retry_after_secs: 30 });
    let client = common::regions_client(&[("only", addr)], touchy);
    // The retry would have to wait 30 s, past the 10 s total timeout: a typed error at once.
    let err = common::within(GUARD, client.text().generate("hi")).await.unwrap_err();
    assert!(
        matches!(&err, Error::Api(api) if api.status == 429) || matches!(err, Error::RateLimited { .. }),
        "{err:?}"
    );
    // The next call is not sent at all before the deadline.
    let err = common::within(GUARD, client.text().generate("again")).await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { retry_after } if retry_after > Duration::from_secs(20)), "{err:?}");
    assert_eq!(server.stats().requests, 1);
    assert_eq!(client.breaker_state("only"), Some(BreakerState::Closed));
}

#[tokio::test]
async fn when_every_region_is_paused_the_call_says_how_long_to_wait() {
    let (a, a_addr) = common::mock().await;
    let (b, b_addr) = common::mock().await;
    for server in [&a, &b] {
        server.set_behavior(Behavior::RateLimited { retry_after_secs: 30 });
    }
    let client = common::regions_client(&[("a", a_addr), ("b", b_addr)], touchy);
    // The first call meets both 429s: it names both regions and their answers.
    let err = common::within(GUARD, client.text().generate("hi")).await.unwrap_err();
    let Error::AllRegionsFailed { failures } = &err else { panic!("{err:?}") };
    assert_eq!(failures.len(), 2, "{err}");
    assert!(failures.iter().all(|(_, why)| why.contains("429") || why.contains("rate")), "{err}");
    // The next one is sent nowhere: every region is paused past the call's deadline.
    let err = common::within(GUARD, client.text().generate("again")).await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { retry_after } if retry_after > Duration::from_secs(20)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!((a.stats().requests, b.stats().requests), (1, 1));
    for region in ["a", "b"] {
        assert_eq!(client.breaker_state(region), Some(BreakerState::Closed));
    }
}

#[tokio::test]
async fn a_paused_region_is_named_as_such_when_no_region_is_left() {
    let (a, a_addr) = common::mock().await;
    let (b, b_addr) = common::mock().await;
    b.set_behavior(Behavior::RateLimited { retry_after_secs: 30 });
    let client = common::regions_client(&[("a", a_addr), ("b", b_addr)], touchy);
    client.set_breaker("a", blossom_client::BreakerControl::ForceOpen).unwrap();
    let first = common::within(GUARD, client.text().generate("hi")).await.unwrap_err();
    assert!(matches!(&first, Error::Api(api) if api.status == 429), "{first:?}");
    let err = common::within(GUARD, client.text().generate("again")).await.unwrap_err();
    let Error::AllRegionsFailed { failures } = &err else { panic!("{err:?}") };
    let why = |name: &str| failures.iter().find(|(n, _)| n == name).map(|(_, w)| w.clone()).unwrap();
    assert!(why("a").contains("ForcedOpen"), "{err}");
    assert!(why("b").contains("Retry-After"), "{err}");
    assert_eq!((a.stats().requests, b.stats().requests), (0, 1));
}
