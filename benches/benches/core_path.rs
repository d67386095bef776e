//! The per-request cost of pool-core: the whole path (begin, finish, release, events) with
//! every component on and with every component off. A fake clock moves a few microseconds per
//! iteration, as a busy client's would. The components alone have their own files (`breaker`,
//! `limiter`, `router`, `pool`); `cargo xtask bench --instructions` counts the same path's
//! instructions (the `core_loop` binary).
//!
//! Run with `cargo bench -p benches --bench core_path`.

use benches::core_path::{all_off, all_on, request, warm_core};
use criterion::{Criterion, criterion_group, criterion_main};
use pool_core::Time;

fn bench_core(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    for (name, config) in [("begin_finish_all_on", all_on()), ("begin_finish_all_off", all_off())] {
        let mut now = Time::ZERO;
        let mut core = warm_core(config, &mut now);
        group.bench_function(name, |b| b.iter(|| request(&mut core, &mut now)));
    }
    group.finish();
}

criterion_group!(benches, bench_core);
criterion_main!(benches);
