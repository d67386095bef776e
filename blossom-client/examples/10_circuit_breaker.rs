//! Guide section 10, "Circuit breaker with pooling": built into every region's pool.
//!
//! The region answers 503 for the first 6 requests: after 3 failures the breaker opens and calls
//! fail at once, without touching the network, saying when to come back. After the open period
//! (400 ms) the breaker lets a probe through (HALF_OPEN); while the region still fails it opens
//! again. Once the region recovers, 2 successful probes close it.
//!
//! Run: `cargo run -p blossom-client --example 10_circuit_breaker`.

mod common;

use std::time::{Duration, Instant};

use blossom_client::Error;
use blossom_client::pool_core::Event;
use blossom_mock::Behavior;
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = common::Target::start(Behavior::Status(503)).await;
    let client = target
        .builder()
        .session_with(|s| {
            s.breaker.failure_threshold = 3; // guide: failure_threshold = 3
            s.breaker.reset_timeout = Duration::from_millis(400); // guide: reset_timeout = 30 s
            s.breaker.backoff_multiplier = 1.0; // each open period as long as the first
            s.breaker.jitter = 0.0;
            // A call waits for the breaker to half-open if that happens within its time limit;
            // with 200 ms it fails at once while the breaker has longer to go (guide: timeout = 10 s).
            s.timeout = Duration::from_millis(200);
            s.breaker.success_threshold = 2; // probe successes that close it
            s.retry.max_retries = 0; // one attempt per call, to see each outcome
            s.health.consecutive_failures = 0; // keep health ejection out of this example
        })
        .build()?;
    let region = client.regions()[0].clone();

    let mut events = Box::pin(client.events());
    let log = tokio::spawn(async move {
        let mut path = vec!["CLOSED".to_string()];
        while let Some(e) = events.next().await {
            if let Event::Breaker { event, .. } = e.event {
                let to = common::state_name(event.to);
                println!("  Circuit breaker: {} -> {to} ({:?})", common::state_name(event.from), event.reason);
                path.push(to.to_string());
            }
        }
        path
    });

    let (mut rejected_fast, mut ok) = (0, 0);
    for i in 0..common::requests(20) {
        if i == 6 {
            println!("(the region recovers)");
            target.set_behavior(common::latency(5));
        }
        let started = Instant::now();
        let result = client.text().generate(&format!("Circuit breaker request {i}")).await;
        let state = common::state_name(client.breaker_state(&region).expect("the region exists"));
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(_) => {
                ok += 1;
                println!("Request {i}: Success ({ms:.1} ms) - {state}");
            }
            Err(e) => {
                println!("Request {i}: Failed ({ms:.1} ms) - {e} - {state}");
                if let Error::BreakerOpen { retry_in: Some(wait), .. } = e {
                    // Rejected without touching the network; the error says when to come back.
                    rejected_fast += 1;
                    tokio::time::sleep(wait).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = target.mock.as_ref().map_or("n/a".into(), |m| m.stats().generations.to_string());
    drop(client);
    let path = log.await?.join(">");
    common::result(
        ok > 0,
        &format!("transitions={path} succeeded={ok} rejected_fast={rejected_fast} reached_server={sent}"),
    );
    Ok(())
}
