//! Deterministic simulations of blossom: the real client over turmoil's network against mock
//! regions, under outages, partitions, latency, 429 storms and resets.
//!
//! Each (scenario, seed) runs three phases: chaos, heal, quiet. Safety invariants are checked
//! every simulated millisecond (pool caps, one request per HTTP/1 connection, breaker probe bound,
//! nothing through an open breaker, nothing to an ejected region while a healthy one is ready,
//! nothing before a `Retry-After`, retries within budget, a ledger where every request ends exactly
//! once and within its deadline); liveness after the heal (breakers closed, 99 % success when
//! quiet, no leak); and coverage (a sweep that never reaches what a scenario names fails). Every
//! decision goes into a trace whose hash replays exactly from the seed.

pub mod net;
pub mod report;
pub mod run;
pub mod scenario;

pub use run::{Options, RunReport, Violation, run};
pub use scenario::{Cover, Scenario, all, by_name};
