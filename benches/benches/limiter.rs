//! The rate limiter alone: one permit, in the steady state where every permit is granted.
//!
//! Run with `cargo bench -p benches --bench limiter`.

use std::hint::black_box;

use benches::STEP;
use criterion::{Criterion, criterion_group, criterion_main};
use pool_core::{LimiterConfig, RateLimiter, Time};

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

criterion_group!(benches, bench_limiter);
criterion_main!(benches);
