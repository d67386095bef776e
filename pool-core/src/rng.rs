//! Seeded randomness. pool-core never draws from an unseeded source.

use std::time::Duration;

/// A small seeded generator; the same seed gives the same draws.
#[derive(Debug, Clone)]
pub(crate) struct Rng(fastrand::Rng);

impl Rng {
    pub(crate) fn with_seed(seed: u64) -> Self {
        Rng(fastrand::Rng::with_seed(seed))
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        self.0.f64()
    }

    /// Uniform in `0..n`; `n` must be non-zero.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0.usize(0..n)
    }

    /// `base` scaled by a factor uniform in `[1 - spread, 1 + spread]`.
    pub(crate) fn jitter(&mut self, base: Duration, spread: f64) -> Duration {
        let factor = 1.0 + spread * (2.0 * self.unit() - 1.0);
        base.mul_f64(factor.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws() {
        let mut a = Rng::with_seed(7);
        let mut b = Rng::with_seed(7);
        for _ in 0..100 {
            assert_eq!(a.below(1000), b.below(1000));
        }
        let j = a.jitter(Duration::from_secs(10), 0.2);
        assert!(j >= Duration::from_secs(8) && j <= Duration::from_secs(12));
    }
}
