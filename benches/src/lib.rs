//! Shared helpers for blossom's benchmarks.
