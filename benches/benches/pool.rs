//! The connection pool alone: check a connection out and give it back.
//!
//! Run with `cargo bench -p benches --bench pool`.

use std::hint::black_box;
use std::time::Duration;

use benches::STEP;
use criterion::{Criterion, criterion_group, criterion_main};
use pool_core::{Checkout, Pool, PoolConfig, Protocol, Time};

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

criterion_group!(benches, bench_pool);
criterion_main!(benches);
