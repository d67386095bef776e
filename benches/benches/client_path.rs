//! The client's whole request path against a loopback mock server: `text().generate` over a
//! warm HTTP/1.1 connection and over h2c, one request at a time, from a task of the runtime. The
//! comparison with other clients under concurrency is the `compare` binary (`cargo xtask bench`).

use std::hint::black_box;

use blossom_client::BlossomClient;
use blossom_mock::{Behavior, MockServer};
use criterion::{Criterion, criterion_group, criterion_main};

fn client_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = MockServer::new(1);
    server.set_behavior(Behavior::Healthy { base: std::time::Duration::ZERO, jitter: std::time::Duration::ZERO });
    let (addr, _handle) = runtime.block_on(server.bind("127.0.0.1:0".parse().unwrap())).unwrap();
    let mut group = c.benchmark_group("client");
    for (name, h2) in [("text_generate_http1", false), ("text_generate_h2c", true)] {
        let client = runtime.block_on(async {
            let mut builder = BlossomClient::builder().base_url(format!("http://{addr}"));
            if h2 {
                builder = builder.http2_prior_knowledge();
            }
            let client = builder.build().unwrap();
            client.text().generate("warm").await.unwrap();
            client
        });
        // The requests run inside the runtime, one after another, timed there: what a task of
        // the caller sees per request, without criterion's hop into the runtime per iteration.
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let started = std::time::Instant::now();
                        for _ in 0..iterations {
                            black_box(client.text().generate("bench").await.unwrap());
                        }
                        started.elapsed()
                    })
                    .await
                    .unwrap()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, client_path);
criterion_main!(benches);
