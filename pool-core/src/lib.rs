//! pool-core: blossom's connection pool and resilience decisions as a pure state machine.
//!
//! The contract: deterministic, no I/O, never reads a clock, no tokio, no locks, no threads.
//! Time comes in as a [`Time`] argument; randomness from seeds in the configuration.
//! Decisions come out as values; events are drained with `poll_event()`, the next deadline
//! is `poll_timeout()`. The same inputs give the same decisions, which is what lets the same
//! code run in production, in property tests and in a deterministic simulation.
#![warn(missing_docs)]

mod error;
mod pool;

mod time;

pub use error::ConfigError;
pub use pool::{
    Checkout, CloseReason, ClosedCounts, ConnId, Grant, Pool, PoolConfig, PoolStats, Protocol, Reject, WaiterId,
};
pub use time::{Time, opt_secs, secs};
