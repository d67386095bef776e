#![allow(unsafe_code)] // reason: a counting allocator needs GlobalAlloc

//! The per-request path allocates nothing once warm.
//!
//! Every buffer in pool-core is sized when it is built (event queues, idle lists, the optimizer's
//! ring, the breaker's window, the router's scratch list), so the steady state of
//! begin + finish + release must not touch the heap. A counting global allocator checks it, per
//! thread so that tests running side by side do not count each other's allocations. The
//! component tests say which one to blame if the whole path ever allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use pool_core::{
    Acquire, Admission, AimdConfig, Availability, Breaker, BreakerConfig, BreakerOutcome, Checkout, Core, Decision,
    EndpointSpec, HealthConfig, HealthTracker, LimiterConfig, Optimizer, OptimizerConfig, Outcome, PolicyKind, Pool,
    PoolConfig, Protocol, RateLimiter, Request, Router, RouterConfig, Sample, SessionConfig, Sizer, SizerConfig,
    SlidingWindow, Strategy, Time,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: the slot may be gone while the thread is torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only a const-initialised
// thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: `ptr` came from this allocator, hence from `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, hence from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations (and reallocations) made by this thread while `f` runs.
fn allocations<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    (ALLOCATIONS.with(Cell::get) - before, result)
}

#[test]
fn the_counter_counts() {
    let (count, v) = allocations(|| std::hint::black_box(Vec::<u64>::with_capacity(4)));
    assert_eq!(count, 1, "a Vec with capacity is one allocation");
    drop(v);
}

const ITERATIONS: u32 = 10_000;
const STEP: Duration = Duration::from_micros(10);

/// Every component on: breaker, a high rate limit, passive and active health, AIMD sizing,
/// least-loaded routing, the optimizer.
fn all_on() -> SessionConfig {
    SessionConfig {
        rate_limit_per_minute: Some(10_000_000),
        rate_limit_burst: 1_000,
        breaker: BreakerConfig { slow_call_duration: Some(Duration::from_secs(1)), ..BreakerConfig::default() },
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
        optimizer: OptimizerConfig { capacity: 1_000, ..OptimizerConfig::default() },
        ..SessionConfig::default()
    }
}

/// One request the way a driver runs it on a warm pool: begin (reuse), finish, release, then
/// drain events and read the next deadline.
fn request(core: &mut Core, now: &mut Time) {
    let start = *now;
    let Decision::Proceed { ticket, checkout } = core.begin(start, &Request::new(start + Duration::from_secs(30)))
    else {
        panic!("a warm core admits");
    };
    let Checkout::Reuse(conn) = checkout else { panic!("a warm pool reuses, got {checkout:?}") };
    *now = *now + STEP;
    core.finish(*now, ticket, Outcome::Success);
    core.pool_mut().release(*now, conn, true);
    while core.poll_event().is_some() {}
    std::hint::black_box(core.poll_timeout());
    *now = *now + STEP;
}

fn warm_core() -> (Core, Time) {
    let mut now = Time::ZERO;
    let mut core = Core::new(all_on(), &[EndpointSpec::default()], now).expect("valid config");
    let Decision::Proceed { ticket, checkout } = core.begin(now, &Request::new(now + Duration::from_secs(30))) else {
        panic!("a fresh core admits");
    };
    let Checkout::Connect(conn) = checkout else { panic!("a cold pool connects") };
    core.pool_mut().on_connected(now, conn, Protocol::Http1);
    now = now + STEP;
    core.finish(now, ticket, Outcome::Success);
    core.pool_mut().release(now, conn, true);
    // Fill every ring and queue once (the optimizer keeps 1000 samples).
    for _ in 0..2 * ITERATIONS {
        request(&mut core, &mut now);
    }
    (core, now)
}

#[test]
fn core_request_path_does_not_allocate() {
    let (mut core, mut now) = warm_core();
    let created = core.pool().stats().created;
    let (count, ()) = allocations(|| {
        for _ in 0..ITERATIONS {
            request(&mut core, &mut now);
        }
    });
    assert_eq!(core.pool().stats().created, created, "the loop reused the one connection");
    assert_eq!(count, 0, "{count} heap allocations in {ITERATIONS} warm requests");
}

fn breaker_loop(window: SlidingWindow) -> u64 {
    let config = BreakerConfig { window, slow_call_duration: Some(Duration::from_secs(1)), ..BreakerConfig::default() };
    let mut breaker = Breaker::new(config, 7).expect("valid config");
    let mut now = Time::ZERO;
    let mut run = |breaker: &mut Breaker, n: u32| {
        for i in 0..n {
            let Admission::Admitted(permit) = breaker.try_acquire(now) else { panic!("a closed breaker admits") };
            now = now + STEP;
            // One failure in ten: never enough to open, but the window counts both kinds.
            let outcome = if i % 10 == 0 { BreakerOutcome::Failure } else { BreakerOutcome::Success };
            breaker.on_outcome(now, permit, outcome, STEP);
            while breaker.poll_event().is_some() {}
        }
    };
    run(&mut breaker, ITERATIONS);
    allocations(|| run(&mut breaker, ITERATIONS)).0
}

#[test]
fn breaker_admit_record_does_not_allocate() {
    assert_eq!(breaker_loop(SlidingWindow::Count { size: 100 }), 0, "count window");
    assert_eq!(breaker_loop(SlidingWindow::Time { seconds: 60 }), 0, "time window");
}

// The components alone: if the whole path allocates, these say which one does.

#[test]
fn limiter_does_not_allocate() {
    let mut limiter = RateLimiter::new(LimiterConfig { rate_per_minute: Some(10_000_000), burst: 1_000 }).unwrap();
    let mut now = Time::ZERO;
    let (count, ()) = allocations(|| {
        for _ in 0..ITERATIONS {
            assert_eq!(limiter.try_acquire(now), Acquire::Granted);
            now = now + STEP;
        }
    });
    assert_eq!(count, 0);
}

#[test]
fn router_does_not_allocate() {
    for strategy in [Strategy::RoundRobin, Strategy::LeastLoaded, Strategy::Random, Strategy::PrimaryBackup] {
        let specs = vec![EndpointSpec::default(); 8];
        let mut router = Router::new(RouterConfig { strategy, ..RouterConfig::default() }, &specs, 1).unwrap();
        let mut now = Time::ZERO;
        let (count, ()) = allocations(|| {
            for _ in 0..ITERATIONS {
                let pool_core::Pick::Endpoint(e) = router
                    .pick(now, |i| if i == 3 { Availability::NotBefore(now + STEP) } else { Availability::Ready })
                else {
                    panic!("endpoints are ready")
                };
                router.on_start(e);
                now = now + STEP;
                router.on_finish(now, e, Some(STEP));
            }
        });
        assert_eq!(count, 0, "{strategy:?}");
    }
}

#[test]
fn pool_does_not_allocate() {
    let mut pool = Pool::new(PoolConfig::default(), 2).unwrap();
    let mut now = Time::ZERO;
    let Checkout::Connect(conn) = pool.checkout(now, 0, Time::MAX) else { panic!("a cold pool connects") };
    pool.on_connected(now, conn, Protocol::Http1);
    pool.release(now, conn, true);
    let (count, ()) = allocations(|| {
        for _ in 0..ITERATIONS {
            let Checkout::Reuse(id) = pool.checkout(now, 0, now + Duration::from_secs(5)) else { panic!("reuse") };
            now = now + STEP;
            pool.release(now, id, true);
            std::hint::black_box(pool.poll_timeout());
        }
    });
    assert_eq!(count, 0);
}

#[test]
fn health_sizer_optimizer_do_not_allocate() {
    let mut health = HealthTracker::new(HealthConfig::default(), 1, Time::ZERO, 3).unwrap();
    let config = SizerConfig { policy: PolicyKind::Aimd, min: 1, max: 20, initial: 4, ..SizerConfig::default() };
    let mut sizer = Sizer::new(config, Time::ZERO).unwrap();
    let mut optimizer = Optimizer::new(OptimizerConfig { capacity: 100, ..OptimizerConfig::default() }).unwrap();
    let mut now = Time::ZERO;
    let mut run = |now: &mut Time, n: u32| {
        for i in 0..n {
            health.on_request_success(*now, 0);
            std::hint::black_box(health.is_usable(0, *now));
            std::hint::black_box(health.poll_timeout());
            sizer.on_sample(*now, Sample { rtt: STEP, in_flight: 1 + i % 8, dropped: i % 50 == 0 });
            while sizer.poll_event().is_some() {}
            optimizer.record(*now, STEP, 1);
            *now = *now + STEP;
        }
    };
    run(&mut now, 1_000);
    let (count, ()) = allocations(|| run(&mut now, ITERATIONS));
    assert_eq!(count, 0);
}
