//! Guide section 14, "Common pool issues": debug logging with `tracing`, and spotting slow requests.
//!
//! `log_level = debug` and `log_requests = true` make the client log every request (region,
//! status, duration, whether the connection was reused, attempt) and pool decisions; requests
//! slower than `slow_request_threshold` are logged as warnings. The example installs a
//! `tracing-subscriber` that prints to stdout and counts what it logged.
//!
//! Run: `cargo run -p blossom-client --example 14_debug_logging` (`RUST_LOG` overrides the filter).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blossom_client::{LogLevel, SessionConfig};
use blossom_mock::Behavior;
use tracing_subscriber::EnvFilter;

static LINES: AtomicUsize = AtomicUsize::new(0);

/// Stdout, counting the log lines written.
struct Counting;
impl std::io::Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LINES.fetch_add(buf.iter().filter(|b| **b == b'\n').count(), Ordering::Relaxed);
        std::io::stdout().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let level = LogLevel::Debug; // guide: log_level = "DEBUG"
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("blossom_client={level}")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| Counting).with_ansi(false).init();

    // Answers take 5-65 ms: some cross the 50 ms slow-request threshold.
    let target =
        common::Target::start(Behavior::Healthy { base: Duration::from_millis(5), jitter: Duration::from_millis(60) })
            .await;
    let debug = |s: &mut SessionConfig| {
        (s.sync_pool_connections, s.sync_pool_maxsize) = (10, 20);
        s.log_level = level;
        s.log_requests = true; // every request at info level
        s.slow_request_threshold = Duration::from_millis(50);
    };
    let mut shown = SessionConfig::default();
    debug(&mut shown);
    println!("Pool connections: {}, max size: {}", shown.sync_pool_connections, shown.sync_pool_maxsize);
    let client = target.builder().session_with(debug).build()?;

    let (mut slow, n) = (0, common::requests(20));
    for i in 0..n {
        let started = Instant::now();
        client.text().generate(&format!("Request {i}")).await?;
        let elapsed = started.elapsed();
        if elapsed >= Duration::from_millis(50) {
            slow += 1;
            println!("Slow request {i}: {:.3}s", elapsed.as_secs_f64());
        }
    }
    let stats = client.stats();
    println!(
        "{n} requests, {slow} slow, {} connection(s), {} reused",
        stats.connections_created, stats.connections_reused
    );
    common::result(true, &format!("requests={n} slow={slow} log_lines={}", LINES.load(Ordering::Relaxed)));
    Ok(())
}
