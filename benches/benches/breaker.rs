//! The circuit breaker alone: admit a request and record its success, in the closed state.
//!
//! Run with `cargo bench -p benches --bench breaker`.

use std::hint::black_box;

use benches::STEP;
use criterion::{Criterion, criterion_group, criterion_main};
use pool_core::{Admission, Breaker, BreakerConfig, BreakerOutcome, Time};

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

criterion_group!(benches, bench_breaker);
criterion_main!(benches);
