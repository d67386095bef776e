//! Shared helpers for blossom's benchmarks.

use std::time::Duration;

pub mod core_path;

/// Fake time per half request in the pool-core benchmarks (begin at `t`, finish at `t + STEP`,
/// next begin at `t + 2 STEP`): a few microseconds, as a busy client's clock would move.
pub const STEP: Duration = Duration::from_micros(5);
