//! The per-request cost of pool-core: the whole path (begin, finish, release, events) with
//! every component on and with every component off. A fake clock moves a few microseconds per
//! iteration, as a busy client's would. The components alone have their own files (`breaker`,
//! `limiter`, `router`, `pool`).
//!
//! Run with `cargo bench -p benches --bench core_path`.

use std::hint::black_box;
use std::time::Duration;

use benches::STEP;
use criterion::{Criterion, criterion_group, criterion_main};
use pool_core::{
    AimdConfig, BreakerConfig, BreakerMode, Checkout, ConnId, Core, Decision, EndpointSpec, HealthConfig, Outcome,
    PolicyKind, Protocol, Request, RouterConfig, SessionConfig, SizerConfig, Strategy, Time,
};

/// Breaker, a high rate limit, passive and active health, AIMD sizing, least-loaded routing.
fn all_on() -> SessionConfig {
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
fn all_off() -> SessionConfig {
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
fn request(core: &mut Core, now: &mut Time) {
    let start = *now;
    let decision = core.begin(start, black_box(&Request::new(start + Duration::from_secs(30))));
    let Decision::Proceed { ticket, checkout } = decision else { panic!("admitted: {decision:?}") };
    let conn = connection(core, start, checkout);
    *now = *now + STEP;
    core.finish(*now, ticket, black_box(Outcome::Success));
    core.pool_mut().release(*now, conn, true);
    while let Some(event) = core.poll_event() {
        black_box(event);
    }
    *now = *now + STEP;
}

fn bench_core(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    for (name, config) in [("begin_finish_all_on", all_on()), ("begin_finish_all_off", all_off())] {
        let mut now = Time::ZERO;
        let mut core = Core::new(config, &[EndpointSpec::default()], now).expect("valid config");
        for _ in 0..10_000 {
            request(&mut core, &mut now);
        }
        group.bench_function(name, |b| b.iter(|| request(&mut core, &mut now)));
    }
    group.finish();
}

criterion_group!(benches, bench_core);
criterion_main!(benches);
