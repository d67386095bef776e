//! blossom-client: a fast, resilient, observable pooled client for the Pollinations API.
//!
//! One [`BlossomClient`] owns its connections (HTTP/1.1 over hyper 1.x, HTTP/2 over h2, rustls) and lets
//! `pool_core` decide everything: which region, which connection, when to wait, when to stop
//! sending to a failing region, how big each pool is. Every figure [`BlossomClient::stats`]
//! reports is counted where it happened.
//!
//! Connections serve as long as they can. An HTTP/1.1 connection goes back to the pool after a
//! complete exchange, and a thread's next request takes the one that thread gave back last. An
//! HTTP/2 connection carries up to 200 streams at once (fewer if the server says so) and outlives
//! the failure of one stream: a reset, or an answer dropped unread. A timeout, a `GOAWAY` or an
//! I/O error retires a connection of either kind (an HTTP/2 one once its other streams end); so
//! does, over HTTP/2, a PING left unanswered, when `http2_ping_interval` is set.
//!
//! ```no_run
//! # async fn run() -> Result<(), blossom_client::Error> {
//! let client = blossom_client::BlossomClient::builder().api_key("sk_...").build()?;
//! let text = client.text().generate("Hello world").await?;
//! println!("{text}\n{}", client.stats());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod alarm;
mod api;
pub mod blocking;
mod client;
mod config;
mod connect;
mod driver;
mod endpoints;
mod error;
mod headers;
mod health;
mod inspect;
mod ping;
mod prefetch;
mod sse;
mod stats;
mod transport;
mod watch;

pub use api::*;
pub use client::{BlossomClient, BreakerControl, ClientBuilder, EventStream, Reply};
pub use config::{ApiKey, ClientConfig, DEFAULT_BASE_URL, MAX_REDIRECTS, Region, parse_region_list};
pub use connect::{Connect, ConnectFuture, Connection, Io, Target, TcpConnector};
pub use driver::ClientEvent;
pub use endpoints::{ImageApi, Optimization, TextApi, TextStream};
pub use error::*;
pub use health::WarmupReport;
pub use pool_core;
pub use pool_core::{LogLevel, SessionConfig};
pub use sse::*;
pub use stats::{FailedCounts, Percentiles, RegionStats, Stats};

impl From<pool_core::ConfigError> for Error {
    fn from(e: pool_core::ConfigError) -> Self {
        Error::Config { field: e.field, problem: e.problem }
    }
}
