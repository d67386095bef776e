//! `client.stats()`: what the pool and the requests did, counted where it happened.

use std::fmt;
use std::time::Duration;

use pool_core::{BreakerState, ClosedCounts, Core, LimiterSnapshot, Time};
use serde::Serialize;

use crate::error::{ApiErrorKind, Error, TimeoutPhase};

/// Bounded recent samples (a ring) for percentiles.
#[derive(Debug)]
pub(crate) struct Ring {
    samples: Vec<Duration>,
    next: usize,
}

impl Ring {
    fn new(capacity: usize) -> Self {
        Ring { samples: Vec::with_capacity(capacity), next: 0 }
    }

    fn push(&mut self, sample: Duration) {
        if self.samples.len() < self.samples.capacity() {
            self.samples.push(sample);
        } else {
            self.samples[self.next] = sample;
            self.next += 1;
            if self.next == self.samples.len() {
                self.next = 0;
            }
        }
    }

    fn percentiles(&self) -> Percentiles {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let at = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1].as_secs_f64() * 1000.0
        };
        Percentiles { samples: sorted.len(), p50_ms: at(0.50), p99_ms: at(0.99), max_ms: at(1.0) }
    }
}

/// Request counters kept by the driver.
#[derive(Debug)]
pub(crate) struct Recorder {
    total: u64,
    succeeded: u64,
    failed: FailedCounts,
    cancelled: u64,
    retried: u64,
    durations: Ring,
    waits: Ring,
}

impl Recorder {
    pub(crate) fn new(capacity: usize) -> Self {
        Recorder {
            total: 0,
            succeeded: 0,
            failed: FailedCounts::default(),
            cancelled: 0,
            retried: 0,
            durations: Ring::new(capacity),
            waits: Ring::new(capacity),
        }
    }

    pub(crate) fn started(&mut self) {
        self.total += 1;
    }

    /// A call its caller dropped before it ended (a stream dropped before its end too).
    pub(crate) fn cancelled(&mut self) {
        self.cancelled += 1;
    }

    pub(crate) fn retried(&mut self) {
        self.retried += 1;
    }

    pub(crate) fn waited(&mut self, wait: Duration) {
        self.waits.push(wait);
    }

    pub(crate) fn finished(&mut self, took: Duration, result: Result<(), &Error>) {
        self.durations.push(took);
        match result {
            Ok(()) => self.succeeded += 1,
            Err(e) => self.failed.count(e),
        }
    }
}

/// Failed calls by kind of error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FailedCounts {
    /// Could not connect.
    pub connect: u64,
    /// Connect, read or total timeout.
    pub timeout: u64,
    /// No connection within `pool_timeout`, or the pool refused.
    pub pool: u64,
    /// Rate limited (locally or by a 429).
    pub rate_limited: u64,
    /// 401 / 403.
    pub auth: u64,
    /// 402.
    pub payment_required: u64,
    /// Other 4xx.
    pub bad_request: u64,
    /// 5xx, 520, 524.
    pub upstream: u64,
    /// Invalid, empty or oversized response, or a broken stream.
    pub response: u64,
    /// Breaker open or every region failed.
    pub unavailable: u64,
    /// Anything else (config, input, protocol).
    pub other: u64,
}

impl FailedCounts {
    fn count(&mut self, error: &Error) {
        let slot = match error {
            Error::Connect { .. } => &mut self.connect,
            Error::Timeout { phase: TimeoutPhase::PoolWait, .. } | Error::PoolFull { .. } => &mut self.pool,
            Error::Timeout { .. } => &mut self.timeout,
            Error::RateLimited { .. } => &mut self.rate_limited,
            Error::Api(api) => match api.kind {
                ApiErrorKind::Auth => &mut self.auth,
                ApiErrorKind::PaymentRequired => &mut self.payment_required,
                ApiErrorKind::RateLimited => &mut self.rate_limited,
                ApiErrorKind::Upstream => &mut self.upstream,
                _ => &mut self.bad_request,
            },
            Error::InvalidResponse { .. }
            | Error::EmptyResponse
            | Error::BodyTooLarge { .. }
            | Error::Stream { .. } => &mut self.response,
            Error::BreakerOpen { .. } | Error::AllRegionsFailed { .. } => &mut self.unavailable,
            _ => &mut self.other,
        };
        *slot += 1;
    }

    /// All failed calls.
    pub fn total(&self) -> u64 {
        self.connect
            + self.timeout
            + self.pool
            + self.rate_limited
            + self.auth
            + self.payment_required
            + self.bad_request
            + self.upstream
            + self.response
            + self.unavailable
            + self.other
    }
}

/// p50 / p99 / max of recent samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples the figures come from (the most recent ones).
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// One region's state.
#[derive(Debug, Clone, Serialize)]
pub struct RegionStats {
    /// The region's name.
    pub name: String,
    /// Its breaker's state.
    pub breaker: BreakerState,
    /// Healthy, ejected or unhealthy.
    pub health: String,
    /// Its pool's current cap (dynamic sizing).
    pub pool_target: u32,
    /// Its connections.
    pub pool: pool_core::PoolStats,
}

/// A snapshot of the client's statistics. `Display` prints a table.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Time since the client was built, in seconds.
    pub uptime_secs: f64,
    /// Connections established.
    pub connections_created: u64,
    /// Requests served on an already open connection.
    pub connections_reused: u64,
    /// Connections closed, by reason.
    pub connections_closed: ClosedCounts,
    /// Connection attempts that failed.
    pub connections_failed: u64,
    /// Calls made (retries not counted again).
    pub requests_total: u64,
    /// Calls that succeeded.
    pub requests_succeeded: u64,
    /// Calls that failed, by kind.
    pub requests_failed: FailedCounts,
    /// Calls their caller dropped before they ended (including streams dropped before their
    /// end): with succeeded and failed, every call is counted once.
    pub requests_cancelled: u64,
    /// Attempts beyond the first.
    pub requests_retried: u64,
    /// Connections open or opening now.
    pub pool_size: u32,
    /// Idle connections now.
    pub pool_idle: u32,
    /// Connections carrying requests now.
    pub pool_busy: u32,
    /// Requests waiting for a connection now.
    pub pool_waiting: u32,
    /// Most connections open at once.
    pub pool_peak: u32,
    /// Waits for a connection (the ones that had to wait).
    pub pool_wait: Percentiles,
    /// Whole-call durations.
    pub request_duration: Percentiles,
    /// `connections_reused / connections_created`, as the guide computes it.
    pub reuse_ratio: f64,
    /// The rate limiter now.
    pub limiter: LimiterSnapshot,
    /// Per region.
    pub regions: Vec<RegionStats>,
}

impl Stats {
    pub(crate) fn collect(core: &Core, recorder: &Recorder, names: &[String], now: Time) -> Stats {
        let pool = core.pool().stats();
        let regions = names
            .iter()
            .enumerate()
            .map(|(i, name)| RegionStats {
                name: name.clone(),
                breaker: core.breaker_state(i),
                health: format!("{:?}", core.health().status(i, now)),
                pool_target: core.pool().target(i),
                pool: core.pool().endpoint_stats(i),
            })
            .collect();
        Stats {
            uptime_secs: now.elapsed().as_secs_f64(),
            connections_created: pool.created,
            connections_reused: pool.reused,
            connections_closed: pool.closed,
            connections_failed: pool.connect_failed,
            requests_total: recorder.total,
            requests_succeeded: recorder.succeeded,
            requests_failed: recorder.failed,
            requests_cancelled: recorder.cancelled,
            requests_retried: recorder.retried,
            pool_size: pool.open,
            pool_idle: pool.idle,
            pool_busy: pool.busy,
            pool_waiting: pool.waiting,
            pool_peak: pool.peak_open,
            pool_wait: recorder.waits.percentiles(),
            request_duration: recorder.durations.percentiles(),
            reuse_ratio: pool.reused as f64 / pool.created.max(1) as f64,
            limiter: core.limiter().snapshot(now),
            regions,
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = "=".repeat(50);
        writeln!(f, "{line}\nCONNECTION POOL STATISTICS\n{line}")?;
        writeln!(f, "Uptime: {:.1}s", self.uptime_secs)?;
        writeln!(f, "Connections created: {}", self.connections_created)?;
        writeln!(f, "Connections reused: {}", self.connections_reused)?;
        writeln!(f, "Connections closed: {}", self.connections_closed.total())?;
        writeln!(f, "Connections failed: {}", self.connections_failed)?;
        writeln!(f, "Reuse ratio: {:.2}", self.reuse_ratio)?;
        writeln!(f, "Requests total: {}", self.requests_total)?;
        writeln!(f, "Requests succeeded: {}", self.requests_succeeded)?;
        writeln!(f, "Requests failed: {}", self.requests_failed.total())?;
        writeln!(f, "Requests cancelled: {}", self.requests_cancelled)?;
        writeln!(f, "Requests retried: {}", self.requests_retried)?;
        writeln!(
            f,
            "Pool: size {} (idle {}, busy {}), waiting {}, peak {}",
            self.pool_size, self.pool_idle, self.pool_busy, self.pool_waiting, self.pool_peak
        )?;
        let p = |p: &Percentiles| format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", p.p50_ms, p.p99_ms, p.max_ms);
        writeln!(f, "Pool wait: {}", p(&self.pool_wait))?;
        writeln!(f, "Request duration: {}", p(&self.request_duration))?;
        for r in &self.regions {
            writeln!(
                f,
                "Region {}: breaker {:?}, {}, target {}, open {}",
                r.name, r.breaker, r.health, r.pool_target, r.pool.open
            )?;
        }
        write!(f, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_recent_and_percentiles_are_nearest_rank() {
        let mut ring = Ring::new(4);
        for ms in [100, 1, 2, 3, 4] {
            ring.push(Duration::from_millis(ms));
        }
        let p = ring.percentiles();
        assert_eq!(p.samples, 4);
        assert_eq!((p.p50_ms, p.max_ms), (2.0, 4.0), "the 100 ms sample was overwritten");
        assert_eq!(Ring::new(3).percentiles().max_ms, 0.0);
    }
}
