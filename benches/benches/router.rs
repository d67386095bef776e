//! The router alone: one pick over 3, 8 and 32 ready endpoints, least-loaded and round robin.
//!
//! Run with `cargo bench -p benches --bench router`.

use std::hint::black_box;
use std::time::Duration;

use benches::STEP;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use pool_core::{Availability, EndpointSpec, Pick, Router, RouterConfig, Strategy, Time};

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

criterion_group!(benches, bench_router);
criterion_main!(benches);
