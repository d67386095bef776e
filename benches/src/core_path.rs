//! pool-core's whole per-request path, shared by the criterion bench (`core_path`) and the
//! `core_loop` binary that callgrind counts.

use std::time::Duration;

use pool_core::{
    AimdConfig, BreakerConfig, BreakerMode, Checkout, ConnId, Core, Decision, EndpointSpec, HealthConfig, Outcome,
    PolicyKind, Protocol, Request, RouterConfig, SessionConfig, SizerConfig, Strategy, Time,
};

use crate::STEP;

/// Breaker, a high rate limit, passive and active health, AIMD sizing, least-loaded routing.
pub fn all_on() -> SessionConfig {
    SessionConfig {
        rate_limit_per_minute: Some(10_000_000),
        rate_limit_burst: 1_000,
        health: HealthConfig { active_checks: true, consecutive_failures: 5, ..HealthConfig::default() },
        sizer: SizerConfig {
            policy: PolicyKind::Aimd,
            min: 1,
            max: 20,
            initial: 4,
            aimd: AimdConfig::default(),
            ..SizerConfig::default()
        },
        router: RouterConfig { strategy: Strategy::LeastLoaded, ..RouterConfig::default() },
        ..SessionConfig::default()
    }
}

/// Breaker disabled, no limiter, no health tracking, fixed pool size.
pub fn all_off() -> SessionConfig {
    SessionConfig {
        rate_limit_per_minute: None,
        breaker: BreakerConfig { mode: BreakerMode::Disabled, ..BreakerConfig::default() },
        health: HealthConfig { active_checks: false, consecutive_failures: 0, ..HealthConfig::default() },
        sizer: SizerConfig { policy: PolicyKind::Fixed, ..SizerConfig::default() },
        router: RouterConfig { strategy: Strategy::RoundRobin, ..RouterConfig::default() },
        ..SessionConfig::default()
    }
}

/// A connection to send on: reused, or (first time, or after the pool expired it) opened now.
fn connection(core: &mut Core, now: Time, checkout: Checkout) -> ConnId {
    match checkout {
        Checkout::Reuse(id) => id,
        Checkout::Connect(id) => {
            core.pool_mut().on_connected(now, id, Protocol::Http1);
            id
        }
        other => panic!("one request at a time never waits: {other:?}"),
    }
}

/// One request: begin, finish, release, drain events.
pub fn request(core: &mut Core, now: &mut Time) {
    let start = *now;
    let decision = core.begin(start, std::hint::black_box(&Request::new(start + Duration::from_secs(30))));
    let Decision::Proceed { ticket, checkout } = decision else { panic!("admitted: {decision:?}") };
    let conn = connection(core, start, checkout);
    *now = *now + STEP;
    core.finish(*now, ticket, std::hint::black_box(Outcome::Success));
    core.pool_mut().release(*now, conn, true);
    while let Some(event) = core.poll_event() {
        std::hint::black_box(event);
    }
    *now = *now + STEP;
}

/// A core over one endpoint, warmed by 10,000 requests (every connection open, every window full).
pub fn warm_core(config: SessionConfig, now: &mut Time) -> Core {
    let mut core = Core::new(config, &[EndpointSpec::default()], *now).expect("valid config");
    for _ in 0..10_000 {
        request(&mut core, now);
    }
    core
}
