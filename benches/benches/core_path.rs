//! The per-request cost of pool-core: the whole path with every component on and off, and each
//! component alone. A fake clock moves a few microseconds per iteration, as a busy client's would.
//!
//! Run with `cargo bench -p benches --bench core_path`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use pool_core::{
    Admission, AimdConfig, Availability, Breaker, BreakerConfig, BreakerMode, BreakerOutcome, Checkout, ConnId, Core,
    Decision, EndpointSpec, HealthConfig, LimiterConfig, Outcome, Pick, PolicyKind, Pool, PoolConfig, Protocol,
    RateLimiter, Request, Router, RouterConfig, SessionConfig, SizerConfig, Strategy, Time,
};

/// Fake time per half request (begin at `t`, finish at `t + STEP`, next begin at `t + 2 STEP`).
const STEP: Duration = Duration::from_micros(5);

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

fn bench_breaker(c: &mut Criterion) {
    let mut breaker = Breaker::new(BreakerConfig::default(), 7).expect("valid config");
    let mut now = Time::ZERO;
    c.bench_function("breaker/admit_record", |b| {
        b.iter(|| {
            let Admission::Admitted(permit) = breaker.try_acquire(now) else { panic!("a closed breaker admits") };
            now = now + STEP;
            breaker.on_outcome(now, permit, black_box(BreakerOutcome::Success), STEP);
        })
    });
}

fn bench_limiter(c: &mut Criterion) {
    let config = LimiterConfig { rate_per_minute: Some(10_000_000), burst: 1_000 };
    let mut limiter = RateLimiter::new(config).expect("valid config");
    let mut now = Time::ZERO;
    c.bench_function("limiter/try_acquire", |b| {
        b.iter(|| {
            // 10 us per permit against a 6 us interval: always granted, the steady state.
            now = now + 2 * STEP;
            black_box(limiter.try_acquire(black_box(now)))
        })
    });
}

fn bench_router(c: &mut Criterion) {
    let mut group = c.benchmark_group("router");
    for (name, strategy) in [("pick_least_loaded", Strategy::LeastLoaded), ("pick_round_robin", Strategy::RoundRobin)] {
        for n in [3usize, 8, 32] {
            let specs = vec![EndpointSpec::default(); n];
            let mut router = Router::new(RouterConfig { strategy, ..RouterConfig::default() }, &specs, 1).unwrap();
            let mut now = Time::ZERO;
            // Some load and RTT history, so least-loaded compares real costs.
            for i in 0..n {
                router.on_start(i);
                router.on_finish(now, i, Some(Duration::from_millis(10 + i as u64)));
            }
            for i in (0..n).step_by(2) {
                router.on_start(i);
            }
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    now = now + STEP;
                    let pick = router.pick(now, |_| Availability::Ready);
                    let Pick::Endpoint(e) = pick else { panic!("all ready") };
                    black_box(e)
                })
            });
        }
    }
    group.finish();
}

fn bench_pool(c: &mut Criterion) {
    let mut pool = Pool::new(PoolConfig::default(), 3).expect("valid config");
    let mut now = Time::ZERO;
    c.bench_function("pool/checkout_release", |b| {
        b.iter(|| {
            let checkout = pool.checkout(now, 0, now + Duration::from_secs(5));
            let id = match checkout {
                Checkout::Reuse(id) => id,
                Checkout::Connect(id) => {
                    pool.on_connected(now, id, Protocol::Http1);
                    id
                }
                other => panic!("one request at a time never waits: {other:?}"),
            };
            now = now + STEP;
            pool.release(now, black_box(id), true);
            while let Some(close) = pool.poll_close() {
                black_box(close);
            }
        })
    });
}

criterion_group!(benches, bench_core, bench_breaker, bench_limiter, bench_router, bench_pool);
criterion_main!(benches);
