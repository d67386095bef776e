//! `SessionConfig`: every setting the guide names, plus what the components need.
//!
//! Plain serde data with documented defaults; [`SessionConfig::validate`] refuses a configuration
//! that cannot work and names the field. Durations are seconds in TOML and JSON (`timeout = 30.0`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::BreakerConfig;
use crate::error::{ConfigError, check_nonzero, check_range, check_span};
use crate::health::HealthConfig;
use crate::limiter::LimiterConfig;
use crate::optimizer::OptimizerConfig;
use crate::pool::PoolConfig;
use crate::retry::RetryConfig;
use crate::router::RouterConfig;
use crate::sizer::{PolicyKind, SizerConfig};

/// How much the client logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    #[serde(alias = "ERROR")]
    Error,
    /// Warnings and errors.
    #[serde(alias = "WARN", alias = "WARNING", alias = "warning")]
    Warn,
    /// The usual.
    #[default]
    #[serde(alias = "INFO")]
    Info,
    /// Pool decisions too.
    #[serde(alias = "DEBUG")]
    Debug,
    /// Everything.
    #[serde(alias = "TRACE")]
    Trace,
}

impl LogLevel {
    /// The lowercase name, as `tracing` filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(LogLevel::Error),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => {
                Err(ConfigError::new("log_level", format!("must be one of error, warn, info, debug, trace, got `{s}`")))
            }
        }
    }
}

/// The whole configuration of a client session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Idle connections the blocking client keeps per endpoint (the async client keeps up to
    /// `async_limit_per_host`; both close idle ones after `keepalive_expiry`). Default: 10.
    pub sync_pool_connections: u32,
    /// Connections per endpoint of the blocking client. Default: 20.
    pub sync_pool_maxsize: u32,
    /// Wait for a connection when the pool is full (`true`) or fail at once with a pool-full
    /// error, for the blocking and the async client alike. Default: true.
    pub sync_pool_block: bool,
    /// Total time allowed for one call, retries included. Default: 30 s.
    #[serde(with = "crate::time::secs")]
    pub timeout: Duration,
    /// Connect timeout of the blocking client. Default: 5 s.
    #[serde(with = "crate::time::secs")]
    pub sync_timeout_connect: Duration,
    /// Read timeout (between body chunks) of the blocking client. Default: 25 s.
    #[serde(with = "crate::time::secs")]
    pub sync_timeout_read: Duration,
    /// Connections across all endpoints of the async client. Default: 100.
    pub async_limit_total: u32,
    /// Connections per endpoint of the async client. Default: 30.
    pub async_limit_per_host: u32,
    /// Connect timeout of the async client (TCP + TLS + HTTP handshake). Default: 5 s.
    #[serde(with = "crate::time::secs")]
    pub async_timeout_connect: Duration,
    /// Read timeout (between body chunks) of the async client. Default: 25 s.
    #[serde(with = "crate::time::secs")]
    pub async_timeout_sock_read: Duration,
    /// Requests per minute the client sends at most; `None` for no limit. Default: None.
    pub rate_limit_per_minute: Option<u32>,
    /// Requests allowed at once on top of the rate. Default: 10.
    pub rate_limit_burst: u32,
    /// How much the client logs. Default: info.
    pub log_level: LogLevel,
    /// Log every request (endpoint, status, duration, reuse, attempt). Default: false.
    pub log_requests: bool,
    /// Requests slower than this are logged as warnings. Default: 5 s.
    #[serde(with = "crate::time::secs")]
    pub slow_request_threshold: Duration,
    /// Longest wait for a pooled connection. Default: 5 s.
    #[serde(with = "crate::time::secs")]
    pub pool_timeout: Duration,
    /// Idle connections are closed after this, before the server closes them. Default: 30 s.
    #[serde(with = "crate::time::secs")]
    pub keepalive_expiry: Duration,
    /// Connections are replaced after this age. Default: 30 min.
    #[serde(with = "crate::time::opt_secs")]
    pub max_connection_lifetime: Option<Duration>,
    /// Requests waiting for a connection at once. Default: 1024.
    pub max_waiters: u32,
    /// Idle connections kept per endpoint; `None` keeps up to `async_limit_per_host` (the blocking
    /// client sets it to `sync_pool_connections`). Default: None.
    pub max_idle_per_host: Option<u32>,
    /// Offer HTTP/2 (ALPN) and multiplex when the server takes it. Default: true.
    pub http2: bool,
    /// Send an HTTP/2 PING on each connection this often, to find a peer that vanished without
    /// closing the connection; `None` sends none. Default: None.
    #[serde(with = "crate::time::opt_secs")]
    pub http2_ping_interval: Option<Duration>,
    /// A PING unanswered for this long ends its connection: its streams fail at once, rather
    /// than at their read timeout. Default: 20 s.
    #[serde(with = "crate::time::secs")]
    pub http2_ping_timeout: Duration,
    /// Largest response body accepted, in bytes. Default: 50 MiB.
    pub max_response_bytes: u64,
    /// Seed of every random choice (jitter, random routing). Default: 0.
    pub seed: u64,
    /// Circuit breaker per endpoint.
    pub breaker: BreakerConfig,
    /// Outlier detection and active health checks.
    pub health: HealthConfig,
    /// Dynamic pool sizing per endpoint. Default policy: fixed (the pool stays at its caps).
    /// An adaptive policy's target bounds an endpoint's requests in flight: its connections over
    /// HTTP/1.1, its streams over HTTP/2.
    pub sizer: SizerConfig,
    /// Endpoint selection.
    pub router: RouterConfig,
    /// Retries, backoff and retry budget.
    pub retry: RetryConfig,
    /// Workload recording for recommendations.
    pub optimizer: OptimizerConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            sync_pool_connections: 10,
            sync_pool_maxsize: 20,
            sync_pool_block: true,
            timeout: Duration::from_secs(30),
            sync_timeout_connect: Duration::from_secs(5),
            sync_timeout_read: Duration::from_secs(25),
            async_limit_total: 100,
            async_limit_per_host: 30,
            async_timeout_connect: Duration::from_secs(5),
            async_timeout_sock_read: Duration::from_secs(25),
            rate_limit_per_minute: None,
            rate_limit_burst: 10,
            log_level: LogLevel::Info,
            log_requests: false,
            slow_request_threshold: Duration::from_secs(5),
            pool_timeout: Duration::from_secs(5),
            keepalive_expiry: Duration::from_secs(30),
            max_connection_lifetime: Some(Duration::from_secs(30 * 60)),
            max_waiters: 1024,
            max_idle_per_host: None,
            http2: true,
            http2_ping_interval: None,
            http2_ping_timeout: Duration::from_secs(20),
            max_response_bytes: 50 * 1024 * 1024,
            seed: 0,
            breaker: BreakerConfig::default(),
            health: HealthConfig::default(),
            sizer: SizerConfig { policy: PolicyKind::Fixed, ..SizerConfig::default() },
            router: RouterConfig::default(),
            retry: RetryConfig::default(),
            optimizer: OptimizerConfig::default(),
        }
    }
}

impl SessionConfig {
    /// Many connections, bursts, a high rate (the guide's high-throughput preset).
    pub fn high_throughput() -> Self {
        SessionConfig {
            sync_pool_connections: 50,
            sync_pool_maxsize: 100,
            async_limit_total: 1000,
            async_limit_per_host: 100,
            sync_timeout_connect: Duration::from_secs(2),
            sync_timeout_read: Duration::from_secs(30),
            async_timeout_connect: Duration::from_secs(2),
            async_timeout_sock_read: Duration::from_secs(30),
            rate_limit_per_minute: Some(50_000),
            ..SessionConfig::default()
        }
    }

    /// Few connections, fast failure (the guide's low-latency preset).
    pub fn low_latency() -> Self {
        SessionConfig {
            sync_pool_connections: 10,
            sync_pool_maxsize: 20,
            async_limit_total: 100,
            async_limit_per_host: 30,
            sync_timeout_connect: Duration::from_secs(1),
            sync_timeout_read: Duration::from_secs(5),
            async_timeout_connect: Duration::from_secs(1),
            async_timeout_sock_read: Duration::from_secs(5),
            rate_limit_per_minute: Some(10_000),
            ..SessionConfig::default()
        }
    }

    /// A small pool and patient timeouts (the guide's batch preset).
    pub fn batch() -> Self {
        SessionConfig {
            sync_pool_connections: 5,
            sync_pool_maxsize: 10,
            async_limit_total: 50,
            async_limit_per_host: 10,
            sync_timeout_connect: Duration::from_secs(5),
            sync_timeout_read: Duration::from_secs(120),
            async_timeout_connect: Duration::from_secs(5),
            async_timeout_sock_read: Duration::from_secs(120),
            timeout: Duration::from_secs(180),
            rate_limit_per_minute: Some(2_000),
            ..SessionConfig::default()
        }
    }

    /// A preset by name: `default`, `high_throughput`, `low_latency` or `batch`.
    pub fn preset(name: &str) -> Result<Self, ConfigError> {
        match name.replace('-', "_").as_str() {
            "default" => Ok(SessionConfig::default()),
            "high_throughput" => Ok(SessionConfig::high_throughput()),
            "low_latency" => Ok(SessionConfig::low_latency()),
            "batch" => Ok(SessionConfig::batch()),
            _ => Err(ConfigError::new(
                "preset",
                format!("must be one of default, high_throughput, low_latency, batch, got `{name}`"),
            )),
        }
    }

    /// Refuses a configuration that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("sync_pool_connections", self.sync_pool_connections, 1, 100_000)?;
        check_range("sync_pool_maxsize", self.sync_pool_maxsize, self.sync_pool_connections, 100_000)?;
        check_range("async_limit_total", self.async_limit_total, 1, 100_000)?;
        check_range("async_limit_per_host", self.async_limit_per_host, 1, self.async_limit_total)?;
        check_span("timeout", self.timeout)?;
        check_span("sync_timeout_connect", self.sync_timeout_connect)?;
        check_span("sync_timeout_read", self.sync_timeout_read)?;
        check_span("async_timeout_connect", self.async_timeout_connect)?;
        check_span("async_timeout_sock_read", self.async_timeout_sock_read)?;
        check_nonzero("slow_request_threshold", self.slow_request_threshold)?;
        check_span("pool_timeout", self.pool_timeout)?;
        check_nonzero("keepalive_expiry", self.keepalive_expiry)?;
        if let Some(lifetime) = self.max_connection_lifetime {
            check_nonzero("max_connection_lifetime", lifetime)?;
        }
        if let Some(interval) = self.http2_ping_interval {
            check_span("http2_ping_interval", interval)?;
        }
        check_span("http2_ping_timeout", self.http2_ping_timeout)?;
        check_range("max_response_bytes", self.max_response_bytes, 1, 1 << 40)?;
        self.limiter().validate()?;
        self.pool().validate()?;
        self.breaker.validate().map_err(|e| e.within("breaker"))?;
        self.health.validate().map_err(|e| e.within("health"))?;
        self.sizer.validate().map_err(|e| e.within("sizer"))?;
        self.router.validate().map_err(|e| e.within("router"))?;
        self.retry.validate().map_err(|e| e.within("retry"))?;
        self.optimizer.validate().map_err(|e| e.within("optimizer"))?;
        Ok(())
    }

    /// The async client's pool limits.
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            max_total: self.async_limit_total,
            max_per_endpoint: self.async_limit_per_host,
            // By default keep every connection the cap allows: closing idle ones under steady load
            // only to reopen them costs a handshake each (measured: 118 reconnects per 40k requests).
            max_idle_per_endpoint: self
                .max_idle_per_host
                .unwrap_or(self.async_limit_per_host)
                .min(self.async_limit_per_host),
            idle_timeout: self.keepalive_expiry,
            max_lifetime: self.max_connection_lifetime,
            max_waiters: self.max_waiters,
            block: self.sync_pool_block,
            streams_within_target: self.sizer.policy != PolicyKind::Fixed,
            ..PoolConfig::default()
        }
    }

    /// The rate limiter's settings (validation errors name the session field).
    pub fn limiter(&self) -> LimiterConfig {
        LimiterConfig { rate_per_minute: self.rate_limit_per_minute, burst: self.rate_limit_burst }
    }

    /// The blocking variant of this configuration: its connect and read timeouts and pool limits
    /// become the ones in force.
    pub fn for_blocking(&self) -> SessionConfig {
        SessionConfig {
            async_timeout_connect: self.sync_timeout_connect,
            async_timeout_sock_read: self.sync_timeout_read,
            async_limit_per_host: self.sync_pool_maxsize,
            async_limit_total: self.sync_pool_maxsize.max(self.async_limit_total),
            max_idle_per_host: Some(self.sync_pool_connections),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_presets_are_valid() {
        for config in [
            SessionConfig::default(),
            SessionConfig::high_throughput(),
            SessionConfig::low_latency(),
            SessionConfig::batch(),
        ] {
            config.validate().unwrap();
            config.for_blocking().validate().unwrap();
        }
        let high = SessionConfig::preset("high-throughput").unwrap();
        assert_eq!((high.sync_pool_connections, high.sync_pool_maxsize), (50, 100));
        assert_eq!((high.async_limit_total, high.async_limit_per_host), (1000, 100));
        assert_eq!(high.rate_limit_per_minute, Some(50_000));
        let batch = SessionConfig::batch();
        assert_eq!(batch.sync_timeout_read, Duration::from_secs(120));
        assert!(SessionConfig::preset("fastest").is_err());
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases: Vec<(SessionConfig, &str)> = vec![
            (SessionConfig { sync_pool_maxsize: 5, ..SessionConfig::default() }, "sync_pool_maxsize"),
            (SessionConfig { sync_pool_connections: 0, ..SessionConfig::default() }, "sync_pool_connections"),
            (SessionConfig { async_limit_per_host: 500, ..SessionConfig::default() }, "async_limit_per_host"),
            (SessionConfig { async_limit_total: 0, ..SessionConfig::default() }, "async_limit_total"),
            (SessionConfig { timeout: Duration::ZERO, ..SessionConfig::default() }, "timeout"),
            (
                SessionConfig { sync_timeout_connect: Duration::ZERO, ..SessionConfig::default() },
                "sync_timeout_connect",
            ),
            (
                SessionConfig { async_timeout_sock_read: Duration::ZERO, ..SessionConfig::default() },
                "async_timeout_sock_read",
            ),
            (SessionConfig { pool_timeout: Duration::ZERO, ..SessionConfig::default() }, "pool_timeout"),
            // Past what a runtime's clock can add (it would panic): "no timeout" is not a timeout.
            (
                SessionConfig { async_timeout_connect: Duration::MAX, ..SessionConfig::default() },
                "async_timeout_connect",
            ),
            (
                SessionConfig {
                    async_timeout_sock_read: Duration::from_secs(8 * 24 * 3600),
                    ..SessionConfig::default()
                },
                "async_timeout_sock_read",
            ),
            (SessionConfig { sync_timeout_read: Duration::MAX, ..SessionConfig::default() }, "sync_timeout_read"),
            (SessionConfig { timeout: Duration::MAX, ..SessionConfig::default() }, "timeout"),
            (SessionConfig { http2_ping_timeout: Duration::MAX, ..SessionConfig::default() }, "http2_ping_timeout"),
            (
                SessionConfig { http2_ping_interval: Some(Duration::MAX), ..SessionConfig::default() },
                "http2_ping_interval",
            ),
            (SessionConfig { rate_limit_per_minute: Some(0), ..SessionConfig::default() }, "rate_per_minute"),
            (SessionConfig { max_response_bytes: 0, ..SessionConfig::default() }, "max_response_bytes"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert!(err.field.ends_with(field), "{field}: {err}");
            assert!(err.to_string().contains(field), "{err}");
        }
        let mut nested = SessionConfig::default();
        nested.breaker.success_threshold = 0;
        assert!(nested.validate().unwrap_err().field.starts_with("breaker."));
    }

    #[test]
    fn reads_toml_with_seconds_and_guide_names() {
        let text = r#"
            sync_pool_connections = 20
            sync_pool_maxsize = 40
            timeout = 12.5
            log_level = "DEBUG"
            log_requests = true
            rate_limit_per_minute = 1000
            [breaker]
            failure_threshold = 3
        "#;
        let config: SessionConfig = toml::from_str(text).unwrap();
        assert_eq!(config.sync_pool_maxsize, 40);
        assert_eq!(config.timeout, Duration::from_millis(12_500));
        assert_eq!(config.log_level, LogLevel::Debug);
        assert_eq!(config.breaker.failure_threshold, 3);
        config.validate().unwrap();
        let unknown = toml::from_str::<SessionConfig>("sync_pool_size = 3");
        assert!(unknown.unwrap_err().to_string().contains("sync_pool_size"));
        let back: SessionConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn async_pool_keeps_up_to_its_cap_idle_and_blocking_keeps_sync_pool_connections() {
        let config = SessionConfig { async_limit_per_host: 64, async_limit_total: 128, ..SessionConfig::default() };
        assert_eq!(config.pool().max_idle_per_endpoint, 64);
        let blocking = config.for_blocking();
        assert_eq!(blocking.pool().max_per_endpoint, config.sync_pool_maxsize);
        assert_eq!(blocking.pool().max_idle_per_endpoint, config.sync_pool_connections);
    }

    #[test]
    fn log_level_parses_any_case() {
        assert_eq!("WARNING".parse::<LogLevel>().unwrap(), LogLevel::Warn);
        assert_eq!("trace".parse::<LogLevel>().unwrap().to_string(), "trace");
        assert_eq!("loud".parse::<LogLevel>().unwrap_err().field, "log_level");
    }
}
