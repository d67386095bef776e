//! What every example shares: where to send requests (the real API when the environment names
//! it, otherwise an embedded mock region on loopback) and settings that keep a run short.
#![allow(dead_code, unreachable_pub)] // reason: each example uses a different subset

use std::net::SocketAddr;
use std::time::Duration;

use blossom_client::{BlossomClient, ClientBuilder, SessionConfig};
use blossom_mock::{Behavior, MockServer};

/// Whether `BLOSSOM_BASE_URL` or `BLOSSOM_REGIONS` names a real server to talk to.
pub fn live() -> bool {
    ["BLOSSOM_BASE_URL", "BLOSSOM_REGIONS"].iter().any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// A mock region on a loopback port, answering as `behavior` says. Needs a tokio runtime.
pub async fn mock(seed: u64, behavior: Behavior) -> (MockServer, String) {
    let server = MockServer::new(seed);
    server.set_behavior(behavior);
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
    let (addr, _handle) = server.bind(loopback).await.expect("bind a loopback port");
    (server, format!("http://{addr}"))
}

/// A healthy mock region that takes `ms` milliseconds per answer.
pub fn latency(ms: u64) -> Behavior {
    Behavior::Healthy { base: Duration::from_millis(ms), jitter: Duration::ZERO }
}

/// Where the example sends its requests: the environment's server, or a mock region.
pub struct Target {
    /// The mock, when running offline.
    pub mock: Option<MockServer>,
    /// The mock's base URL (unused when live: the environment wins).
    pub url: String,
}

impl Target {
    /// The environment's server if set, else a mock region answering as `behavior`.
    pub async fn start(behavior: Behavior) -> Target {
        if live() {
            println!("using the server named by BLOSSOM_BASE_URL / BLOSSOM_REGIONS");
            return Target { mock: None, url: String::new() };
        }
        let (mock, url) = mock(7, behavior).await;
        println!("using the embedded mock region at {url}");
        Target { mock: Some(mock), url }
    }

    /// A builder for this target with [`quick`] settings; the environment (key, URL, regions,
    /// preset) is applied last.
    pub fn builder(&self) -> ClientBuilder {
        let builder = BlossomClient::builder().session_with(quick);
        let builder = if self.url.is_empty() { builder } else { builder.base_url(&self.url) };
        builder.from_env()
    }

    /// Connections the mock accepted, as text (`n/a` when live).
    pub fn server_connections(&self) -> String {
        self.mock.as_ref().map_or("n/a".into(), |m| m.stats().connections.to_string())
    }

    /// Sets the mock's behaviour (nothing when live).
    pub fn set_behavior(&self, behavior: Behavior) {
        if let Some(mock) = &self.mock {
            mock.set_behavior(behavior);
        }
    }
}

/// Settings that keep an example short and its counts exact: no background health checks
/// (they would open connections of their own), short retry backoff, a 10 s call limit.
pub fn quick(session: &mut SessionConfig) {
    session.health.active_checks = false;
    session.retry.backoff.initial = Duration::from_millis(20);
    session.retry.backoff.max = Duration::from_millis(100);
    session.retry.backoff.jitter = 0.0;
    session.timeout = Duration::from_secs(10);
}

/// The default session with [`quick`] applied.
pub fn quick_session() -> SessionConfig {
    let mut session = SessionConfig::default();
    quick(&mut session);
    session
}

/// How many requests to send: `offline` against the mock, at most 10 against a real server.
pub fn requests(offline: usize) -> usize {
    if live() { offline.min(10) } else { offline }
}

/// A breaker state as the guide spells it.
pub fn state_name(state: blossom_client::pool_core::BreakerState) -> &'static str {
    use blossom_client::pool_core::BreakerState::*;
    match state {
        Closed => "CLOSED",
        Open => "OPEN",
        HalfOpen => "HALF_OPEN",
        ForcedOpen => "FORCED_OPEN",
        Disabled => "DISABLED",
    }
}

/// Prints the line the example test checks: `RESULT: ok <facts>`, or `RESULT: failed <facts>`
/// when the run did not show what it should (e.g. a real server refused requests).
pub fn result(ok: bool, facts: &str) {
    println!("RESULT: {} {facts}", if ok { "ok" } else { "failed" });
}
