//! A request's read deadline fires on time, on simulated time: the client arms it with its
//! background task instead of a timer of its own, and that task must wake for it even when its
//! usual tick (one second) is further off. A server that accepts and never answers is the test.

use std::time::Duration;

use blossom_client::{BlossomClient, Error, TimeoutPhase};
use sim::net::TurmoilConnector;
use tokio::io::AsyncReadExt;

/// Accepts connections, reads what comes, and never answers.
async fn silent_server() -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", 80)).await?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buffer = [0u8; 1024];
            while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
        });
    }
}

/// The phase a call timed out in, and when (simulated time since the call began).
fn timed_out(read: Duration, total: Duration) -> (TimeoutPhase, Duration) {
    // Seeded, with a fixed link latency: turmoil's default draws up to 100 ms per message from
    // an unseeded generator, which made the time this test measures differ run to run.
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .tick_duration(Duration::from_millis(1))
        .rng_seed(7)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(1))
        .build();
    sim.host("silent", silent_server);
    let outcome = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = outcome.clone();
    sim.client("client", async move {
        let client = BlossomClient::builder()
            .base_url("http://silent:80")
            .connector(TurmoilConnector)
            .session_with(|s| {
                s.async_timeout_sock_read = read;
                s.timeout = total;
                s.retry.max_retries = 0;
            })
            .build()?;
        let started = tokio::time::Instant::now();
        let result = client.text().generate("hello").await;
        let phase = match result {
            Err(Error::Timeout { phase, .. }) => phase,
            other => panic!("expected a timeout, got {other:?}"),
        };
        *seen.lock().unwrap() = Some((phase, started.elapsed()));
        Ok(())
    });
    sim.run().expect("the simulation runs");
    let outcome = outcome.lock().unwrap().take();
    outcome.expect("the call ended")
}

#[test]
fn a_read_timeout_fires_at_its_deadline_not_at_the_next_tick() {
    let (phase, took) = timed_out(Duration::from_millis(200), Duration::from_secs(30));
    assert_eq!(phase, TimeoutPhase::Read);
    // Connecting takes a simulated millisecond (the link's fixed latency); the background tick
    // would be at 1 s.
    assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(210), "took {took:?}");
    // Same seed, same simulated time.
    assert_eq!(timed_out(Duration::from_millis(200), Duration::from_secs(30)), (phase, took));
}

#[test]
fn the_call_deadline_bounds_the_read_when_it_comes_first() {
    let (phase, took) = timed_out(Duration::from_secs(10), Duration::from_millis(300));
    assert_eq!(phase, TimeoutPhase::Total);
    assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(310), "took {took:?}");
}
