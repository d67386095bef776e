//! pool-core: blossom's connection pool and resilience decisions as a pure state machine.
//!
//! The contract: deterministic, no I/O, never reads a clock, no tokio, no locks, no threads.
//! Time comes in as a [`Time`] argument; randomness from seeds in the configuration.
//! Decisions come out as values; events are drained with `poll_event()`, the next deadline
//! is `poll_timeout()`. The same inputs give the same decisions, which is what lets the same
//! code run in production, in property tests and in a deterministic simulation.
//!
//! [`Core`] composes every component for one client; each component is usable alone too.
//!
//! The functions a request goes through are `#[inline]`: the driver's crate compiles them beside
//! its own request path instead of calling across the crate boundary.
#![warn(missing_docs)]

mod breaker;
mod config;
mod core;
mod error;
mod health;
mod limiter;
mod optimizer;
mod pool;
mod retry;
mod rng;
mod router;
mod sizer;
mod time;

pub use breaker::{
    Admission, Breaker, BreakerConfig, BreakerEvent, BreakerMode, BreakerState, Outcome as BreakerOutcome, Permit,
    SlidingWindow, TransitionReason,
};
pub use config::{LogLevel, SessionConfig};
pub use core::{
    Core, Decision, Event, JournalEntry, MAX_ENDPOINTS, NoRetry, Outcome, RejectReason, Request, Retry, Ticket,
    WaitReason,
};
pub use error::ConfigError;
pub use health::{EndpointStatus, HealthConfig, HealthEvent, HealthTracker, ReadmitReason};
pub use limiter::{Acquire, LimiterConfig, LimiterEvent, LimiterSnapshot, RateLimiter};
pub use optimizer::{Analysis, Optimizer, OptimizerConfig, Recommendation};
pub use pool::{
    Checkout, CloseReason, ClosedCounts, ConnId, Grant, Pool, PoolConfig, PoolStats, Protocol, Reject, WaiterId,
};
pub use retry::{BackoffConfig, RetryBudget, RetryBudgetConfig, RetryConfig, RetryDecision, RetryPolicy};
pub use router::{Availability, EndpointSpec, Pick, Router, RouterConfig, Strategy};
pub use sizer::{
    Aimd, AimdConfig, Fixed, Gradient, GradientConfig, MAX_LIMIT, PolicyKind, ResizeReason, Sample, Sizer, SizerConfig,
    SizerEvent, SizingPolicy, Threshold, ThresholdConfig,
};
pub use time::{Time, opt_secs, secs};
