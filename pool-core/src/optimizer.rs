//! Pool sizing from observed traffic, so pool limits and timeouts follow the workload
//! instead of guesses: the guide's `PoolOptimizer` (section 11) in bounded memory.
//!
//! Keeps the last `capacity` requests in a preallocated ring buffer; `record` is O(1) and
//! never allocates. The guide's rule (average concurrency x 1.5, clamped) is kept and a
//! Little's law estimate (arrival rate x p99 latency) is reported beside it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, check_range};
use crate::time::Time;

/// Optimizer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Requests remembered, the most recent ones (1..=1000000). Default: 1000.
    pub capacity: usize,
    /// Smallest pool size recommended, in connections (1..=100000). Default: 5.
    pub min_pool: u32,
    /// Largest pool size recommended, in connections (min_pool..=100000). Default: 50.
    pub max_pool: u32,
    /// Pool size per average concurrent request, a ratio (1.0..=10.0). Default: 1.5.
    pub buffer_factor: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig { capacity: 1000, min_pool: 5, max_pool: 50, buffer_factor: 1.5 }
    }
}

impl OptimizerConfig {
    /// Refuses sizes out of range, `max_pool < min_pool`, or a non-finite factor.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("capacity", self.capacity, 1, 1_000_000)?;
        check_range("min_pool", self.min_pool, 1, 100_000)?;
        check_range("max_pool", self.max_pool, self.min_pool, 100_000)?;
        if !self.buffer_factor.is_finite() {
            let problem = format!("must be finite, got {}", self.buffer_factor);
            return Err(ConfigError::new("buffer_factor", problem));
        }
        check_range("buffer_factor", self.buffer_factor, 1.0, 10.0)
    }
}

/// Client settings derived from a pool size, as the guide's `get_optimal_config`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// Connections kept per sync pool: the pool size.
    pub sync_pool_connections: u32,
    /// Connections allowed per sync pool: pool size x 2.
    pub sync_pool_maxsize: u32,
    /// Concurrent async connections in total: pool size x 10.
    pub async_limit_total: u32,
    /// Concurrent async connections per host: pool size x 3.
    pub async_limit_per_host: u32,
    /// Read timeout: `max(p99 x 2, 1 s)` rounded up to whole seconds.
    #[serde(with = "crate::time::secs")]
    pub read_timeout: Duration,
    /// Whole-request timeout: `max(max latency x 1.5, read_timeout)` rounded up to whole seconds.
    #[serde(with = "crate::time::secs")]
    pub total_timeout: Duration,
}

impl Recommendation {
    /// The guide's configuration when nothing was measured: 10 / 20 / 100 (section 11), 30 per
    /// host, 25 s read and 30 s total timeouts (sections 1 and 2).
    pub fn without_data() -> Self {
        Recommendation {
            sync_pool_connections: 10,
            sync_pool_maxsize: 20,
            async_limit_total: 100,
            async_limit_per_host: 30,
            read_timeout: Duration::from_secs(25),
            total_timeout: Duration::from_secs(30),
        }
    }

    fn for_pool(pool: u32, p99: Duration, max: Duration) -> Self {
        let read_timeout = ceil_secs(p99.saturating_mul(2).max(Duration::from_secs(1)));
        let total_timeout = ceil_secs(max.saturating_add(max / 2).max(read_timeout));
        Recommendation {
            sync_pool_connections: pool,
            sync_pool_maxsize: pool.saturating_mul(2),
            async_limit_total: pool.saturating_mul(10),
            async_limit_per_host: pool.saturating_mul(3),
            read_timeout,
            total_timeout,
        }
    }
}

fn ceil_secs(d: Duration) -> Duration {
    match d.subsec_nanos() {
        0 => d,
        _ => Duration::from_secs(d.as_secs().saturating_add(1)),
    }
}

/// What the recorded requests say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// Requests analysed.
    pub samples: usize,
    /// Mean latency.
    #[serde(with = "crate::time::secs")]
    pub avg_latency: Duration,
    /// Median latency (nearest rank, as all percentiles here).
    #[serde(with = "crate::time::secs")]
    pub p50_latency: Duration,
    /// 90th percentile latency.
    #[serde(with = "crate::time::secs")]
    pub p90_latency: Duration,
    /// 99th percentile latency.
    #[serde(with = "crate::time::secs")]
    pub p99_latency: Duration,
    /// Largest latency.
    #[serde(with = "crate::time::secs")]
    pub max_latency: Duration,
    /// Mean of the concurrency seen by each request.
    pub avg_concurrency: f64,
    /// Largest concurrency seen.
    pub max_concurrency: u32,
    /// Requests per second: `(samples - 1) / (last - first timestamp)`; 0 if that span is 0.
    pub arrival_rate_per_sec: f64,
    /// The guide's size: `int(avg_concurrency x buffer_factor)` clamped to `[min_pool, max_pool]`.
    pub recommended_pool_size: u32,
    /// Little's law on the tail: `ceil(arrival_rate x p99 seconds)` clamped to `[1, max_pool x 10]`.
    pub littles_law_pool_size: u32,
    /// Settings derived from `recommended_pool_size` and the latencies.
    pub recommended: Recommendation,
}

impl fmt::Display for Analysis {
    /// Reads like the guide's `print_analysis`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = "=".repeat(50);
        let avg = self.avg_latency.as_secs_f64();
        let (p50, p99) = (self.p50_latency.as_secs_f64(), self.p99_latency.as_secs_f64());
        writeln!(f, "{rule}\nPOOL OPTIMIZATION ANALYSIS\n{rule}")?;
        writeln!(f, "Average response time: {avg:.2}s")?;
        writeln!(f, "Max concurrent requests: {}", self.max_concurrency)?;
        writeln!(f, "Average concurrent requests: {:.1}", self.avg_concurrency)?;
        writeln!(f, "Recommended pool size: {}", self.recommended_pool_size)?;
        writeln!(f, "Little's law pool size: {}", self.littles_law_pool_size)?;
        writeln!(f, "Latency p50/p99: {p50:.2}s / {p99:.2}s")?;
        writeln!(f, "Metrics collected: {}", self.samples)?;
        write!(f, "{rule}")
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: u64,
    latency: u64,
    concurrency: u32,
}

/// Recent request metrics and the pool size they call for.
#[derive(Debug, Clone)]
pub struct Optimizer {
    config: OptimizerConfig,
    samples: Vec<Sample>,
    /// Where the next sample goes once the buffer is full.
    next: usize,
}

impl Optimizer {
    /// An empty optimizer with its buffer allocated, or the config's error.
    pub fn new(config: OptimizerConfig) -> Result<Optimizer, ConfigError> {
        config.validate()?;
        Ok(Optimizer { samples: Vec::with_capacity(config.capacity), next: 0, config })
    }

    /// Records a request that ended at `now`, took `duration`, with `concurrency` in flight.
    #[inline]
    pub fn record(&mut self, now: Time, duration: Duration, concurrency: u32) {
        let latency = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let sample = Sample { at: now.as_nanos(), latency, concurrency };
        if self.samples.len() < self.config.capacity {
            self.samples.push(sample);
        } else {
            self.samples[self.next] = sample;
            self.next += 1;
            if self.next == self.config.capacity {
                self.next = 0;
            }
        }
    }

    /// Requests remembered.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The analysis of the remembered requests; `None` if there are none.
    pub fn analysis(&self) -> Option<Analysis> {
        let n = self.samples.len();
        if n == 0 {
            return None;
        }
        let mut latencies: Vec<u64> = self.samples.iter().map(|s| s.latency).collect();
        latencies.sort_unstable();
        let rank = |p: usize| Duration::from_nanos(latencies[(p * n).div_ceil(100).max(1) - 1]);
        let total_latency: u128 = latencies.iter().map(|&l| u128::from(l)).sum();
        let total_concurrency: u64 = self.samples.iter().map(|s| u64::from(s.concurrency)).sum();
        let avg_concurrency = total_concurrency as f64 / n as f64;
        let first = self.samples.iter().map(|s| s.at).min().unwrap_or(0);
        let last = self.samples.iter().map(|s| s.at).max().unwrap_or(0);
        let span = Duration::from_nanos(last - first).as_secs_f64();
        let arrival_rate_per_sec = if span > 0.0 { (n - 1) as f64 / span } else { 0.0 };

        let (min_pool, max_pool) = (self.config.min_pool, self.config.max_pool);
        let buffer_factor = self.config.buffer_factor;
        let guide = (avg_concurrency * buffer_factor) as u32; // truncates, as the guide's int()
        let recommended_pool_size = guide.clamp(min_pool, max_pool);
        let p99 = rank(99);
        let littles = (arrival_rate_per_sec * p99.as_secs_f64()).ceil() as u32; // saturating cast
        let littles_law_pool_size = littles.clamp(1, max_pool.saturating_mul(10));
        let max_latency = Duration::from_nanos(latencies[n - 1]);
        let max_concurrency = self.samples.iter().map(|s| s.concurrency).max();
        Some(Analysis {
            samples: n,
            avg_latency: Duration::from_nanos((total_latency / n as u128) as u64),
            p50_latency: rank(50),
            p90_latency: rank(90),
            p99_latency: p99,
            max_latency,
            avg_concurrency,
            max_concurrency: max_concurrency.unwrap_or(0),
            arrival_rate_per_sec,
            recommended_pool_size,
            littles_law_pool_size,
            recommended: Recommendation::for_pool(recommended_pool_size, p99, max_latency),
        })
    }

    /// The guide's `get_optimal_config`: the analysis's recommendation, or
    /// [`Recommendation::without_data`] when nothing was recorded.
    pub fn recommendation(&self) -> Recommendation {
        self.analysis().map_or_else(Recommendation::without_data, |a| a.recommended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn optimizer(capacity: usize) -> Optimizer {
        let config = OptimizerConfig { capacity, ..OptimizerConfig::default() };
        Optimizer::new(config).unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Analyses `(end ms, latency ms, concurrency)` records kept in a buffer of `capacity`.
    fn analyse(capacity: usize, records: impl IntoIterator<Item = (u64, u64, u32)>) -> Analysis {
        let mut o = optimizer(capacity);
        for (at, latency, concurrency) in records {
            o.record(Time::ZERO + ms(at), ms(latency), concurrency);
        }
        o.analysis().unwrap()
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |change: fn(&mut OptimizerConfig)| {
            let mut config = OptimizerConfig::default();
            change(&mut config);
            Optimizer::new(config).unwrap_err().field
        };
        assert_eq!(bad(|c| c.capacity = 0), "capacity");
        assert_eq!(bad(|c| c.min_pool = 0), "min_pool");
        assert_eq!(bad(|c| c.max_pool = 4), "max_pool");
        assert_eq!(bad(|c| c.buffer_factor = f64::NAN), "buffer_factor");
        assert_eq!(bad(|c| c.buffer_factor = 0.5), "buffer_factor");
        let parsed: OptimizerConfig = toml::from_str("capacity = 10").unwrap();
        assert_eq!((parsed.capacity, parsed.max_pool), (10, 50));
        assert!(toml::from_str::<OptimizerConfig>("size = 10").is_err());
    }

    #[test]
    fn empty_has_no_analysis_and_the_guide_defaults() {
        let o = optimizer(10);
        assert!(o.is_empty());
        assert_eq!(o.analysis(), None);
        assert_eq!(o.recommendation(), Recommendation::without_data());
        let r = Recommendation::without_data();
        assert_eq!((r.sync_pool_connections, r.sync_pool_maxsize), (10, 20));
        assert_eq!(r.async_limit_total, 100);
    }

    #[test]
    fn guide_workload_recommends_17() {
        let mut o = optimizer(1000);
        for i in 0..20 {
            let concurrency = [5, 10, 20, 15, 8][i as usize % 5];
            o.record(Time::ZERO + ms(i * 1000), ms(500), concurrency);
        }
        let a = o.analysis().unwrap();
        assert!((a.avg_concurrency - 11.6).abs() < 1e-9);
        assert_eq!((a.max_concurrency, a.samples), (20, 20));
        assert_eq!(a.recommended_pool_size, 17); // int(11.6 x 1.5)
        let r = &a.recommended;
        assert_eq!((r.sync_pool_connections, r.sync_pool_maxsize), (17, 34));
        assert_eq!((r.async_limit_total, r.async_limit_per_host), (170, 51));
        assert_eq!((r.read_timeout, r.total_timeout), (ms(1000), ms(1000)));
        assert_eq!(o.recommendation(), a.recommended);
    }

    #[test]
    fn pool_size_clamps() {
        assert_eq!(analyse(10, [(0, 10, 1)]).recommended_pool_size, 5);
        assert_eq!(analyse(10, [(0, 10, 1000)]).recommended_pool_size, 50);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let a = analyse(1000, (1..=100).rev().map(|i| (0, i, 1)));
        assert_eq!((a.p50_latency, a.p90_latency), (ms(50), ms(90)));
        assert_eq!((a.p99_latency, a.max_latency), (ms(99), ms(100)));
        assert_eq!(a.avg_latency, Duration::from_micros(50_500));
        assert_eq!(a.recommended.read_timeout, ms(1000)); // 2 x 99 ms, raised to 1 s
        let a = analyse(1000, (1..=100).map(|i| (0, i, 1)).chain([(0, 4100, 1)]));
        assert_eq!(a.recommended.total_timeout, ms(7000)); // 1.5 x 4.1 s, rounded up
    }

    #[test]
    fn ring_keeps_only_the_latest() {
        let mut o = optimizer(3);
        for i in 1..=5u32 {
            o.record(Time::ZERO, ms(u64::from(i)), i);
        }
        let a = o.analysis().unwrap();
        assert_eq!((o.len(), a.samples, a.max_concurrency), (3, 3, 5));
        assert_eq!((a.p50_latency, a.max_latency), (ms(4), ms(5)));
        assert!((a.avg_concurrency - 4.0).abs() < 1e-9);
        assert_eq!(o.samples.capacity(), 3);
    }

    #[test]
    fn littles_law_on_a_known_rate() {
        // 10 requests a second for 10 s, each taking 2 s: about 20 in flight.
        let a = analyse(1000, (0..=100).map(|i| (i * 100, 2000, 20)));
        assert!((a.arrival_rate_per_sec - 10.0).abs() < 1e-9);
        assert_eq!(a.littles_law_pool_size, 20);
        let once = analyse(10, [(0, 2000, 1)]);
        assert_eq!(once.arrival_rate_per_sec, 0.0);
        assert_eq!(once.littles_law_pool_size, 1);
    }

    #[test]
    fn display_reads_like_the_guide() {
        let a = analyse(10, [(0, 1234, 10), (500, 1234, 13)]);
        let text = a.to_string();
        for line in [
            "POOL OPTIMIZATION ANALYSIS",
            "Average response time: 1.23s",
            "Max concurrent requests: 13",
            "Average concurrent requests: 11.5",
            "Recommended pool size: 17",
            "Little's law pool size: 3",
            "Latency p50/p99: 1.23s / 1.23s",
            "Metrics collected: 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.starts_with(&"=".repeat(50)));
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(
            (json["p99_latency"].as_f64(), json["recommended"]["read_timeout"].as_f64()),
            (Some(1.234), Some(3.0))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn analysis_is_sane(
            capacity in 1usize..50,
            min_pool in 1u32..20,
            extra in 0u32..100,
            factor in 1.0f64..10.0,
            records in prop::collection::vec((any::<u64>(), any::<u64>(), any::<u32>()), 0..120),
        ) {
            let max_pool = min_pool + extra;
            let config = OptimizerConfig { capacity, min_pool, max_pool, buffer_factor: factor };
            let mut o = Optimizer::new(config).unwrap();
            for &(at, nanos, c) in &records {
                o.record(Time::from_nanos(at), Duration::from_nanos(nanos), c);
            }
            prop_assert_eq!(o.len(), records.len().min(capacity));
            match o.analysis() {
                None => prop_assert!(records.is_empty()),
                Some(a) => {
                    prop_assert!((min_pool..=max_pool).contains(&a.recommended_pool_size));
                    prop_assert!(a.littles_law_pool_size >= 1);
                    prop_assert!(a.p50_latency <= a.p90_latency && a.p90_latency <= a.p99_latency);
                    prop_assert!(a.p99_latency <= a.max_latency && a.avg_latency <= a.max_latency);
                    prop_assert!(a.recommended.read_timeout <= a.recommended.total_timeout);
                    let kept = &records[records.len() - a.samples..];
                    prop_assert_eq!(a.max_concurrency, kept.iter().map(|r| r.2).max().unwrap());
                }
            }
        }
    }
}
