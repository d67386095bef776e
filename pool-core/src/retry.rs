//! Whether and when to retry; the caller does the waiting.
//!
//! Retries help with blips but multiply load in an outage, so they are capped three ways: a
//! number per request, a jittered exponential backoff (gRPC's defaults) and a budget shared by
//! all requests (Finagle/tower `TpsBudget`): retries may add `retry_percent` % of recent requests
//! plus `min_per_sec` per second.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, check_nonzero, check_range};
use crate::rng::Rng;
use crate::time::Time;

/// Slots per `ttl` in a [`RetryBudget`].
const SLOTS_PER_TTL: u64 = 10;
/// Slots kept: one more than `SLOTS_PER_TTL`, so the window always covers the last `ttl`.
const SLOTS: usize = SLOTS_PER_TTL as usize + 1;

/// Exponential backoff between attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// Delay before the first retry, seconds. Default: 1.
    #[serde(with = "crate::time::secs")]
    pub initial: Duration,
    /// Growth factor per retry, 1.0..=10.0. Unitless. Default: 1.6.
    pub multiplier: f64,
    /// Random spread, as a fraction of the delay, 0.0..=1.0 (0.2 = +-20 %). Default: 0.2.
    pub jitter: f64,
    /// Cap on the delay before jitter, seconds. Default: 120.
    #[serde(with = "crate::time::secs")]
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig { initial: Duration::from_secs(1), multiplier: 1.6, jitter: 0.2, max: Duration::from_secs(120) }
    }
}

impl BackoffConfig {
    /// Refuses a zero `initial`, `max` below `initial` or over a day, and out-of-range factors.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_nonzero("initial", self.initial)?;
        if self.max < self.initial || self.max > Duration::from_secs(86_400) {
            let problem = format!("must be in initial..=86400 s, got {:?}", self.max);
            return Err(ConfigError::new("max", problem));
        }
        check_finite("multiplier", self.multiplier, 1.0, 10.0)?;
        check_finite("jitter", self.jitter, 0.0, 1.0)
    }

    /// The delay before retry `attempt` (0 = first retry) without jitter:
    /// `initial x multiplier^attempt`, capped at `max`.
    pub fn capped(&self, attempt: u32) -> Duration {
        let grown = self.initial.as_secs_f64() * self.multiplier.powi(attempt.min(10_000) as i32);
        Duration::try_from_secs_f64(grown.min(self.max.as_secs_f64())).unwrap_or(self.max)
    }

    /// [`capped`](Self::capped) jittered by +-`jitter`; never above `max x (1 + jitter)`.
    pub(crate) fn delay(&self, attempt: u32, rng: &mut Rng) -> Duration {
        rng.jitter(self.capped(attempt), self.jitter)
    }
}

/// How many retries the shared budget allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// How long a request or retry counts, 1..=60 seconds. Default: 10.
    #[serde(with = "crate::time::secs")]
    pub ttl: Duration,
    /// Retries per second allowed with no traffic, 0..=100000. Default: 10.
    pub min_per_sec: u32,
    /// Retries allowed on top, as a percentage of requests, 0.0..=1000.0. Default: 20.
    pub retry_percent: f64,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig { ttl: Duration::from_secs(10), min_per_sec: 10, retry_percent: 20.0 }
    }
}

impl RetryBudgetConfig {
    /// Refuses values outside the documented ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ttl < Duration::from_secs(1) || self.ttl > Duration::from_secs(60) {
            return Err(ConfigError::new("ttl", format!("must be in 1..=60 s, got {:?}", self.ttl)));
        }
        check_range("min_per_sec", self.min_per_sec, 0, 100_000)?;
        check_finite("retry_percent", self.retry_percent, 0.0, 1000.0)
    }
}

/// `check_range` that also refuses NaN.
fn check_finite(field: &str, value: f64, min: f64, max: f64) -> Result<(), ConfigError> {
    if value.is_nan() {
        return Err(ConfigError::new(field, format!("must be in {min}..={max}, got NaN")));
    }
    check_range(field, value, min, max)
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Slot number (time / slot length) this slot's counts belong to.
    epoch: u64,
    deposits: u64,
    withdrawals: u64,
}

/// Finagle/tower-style retry budget over a sliding window of time slots (`ttl / 10` each).
///
/// A withdrawal is allowed while withdrawals in the window, this one included, stay within
/// `min_per_sec x ttl + retry_percent % x deposits` in the window. The window is the current slot and
/// the 10 before it, so it spans between `ttl` and `ttl + ttl / 10`: in any stretch of `ttl`,
/// withdrawals stay within the limit counted over deposits of that stretch plus up to one slot
/// (`ttl / 10`) before it. That slot is the granularity slack; deposits expire `ttl` to
/// `ttl + ttl / 10` after they are made.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    slot_nanos: u64,
    reserve: f64,
    percent: f64,
    slots: [Slot; SLOTS],
    /// Latest slot number seen; a clock going back is treated as standing still.
    epoch: u64,
}

impl RetryBudget {
    /// An empty budget (only the `min_per_sec` reserve available).
    pub fn new(config: RetryBudgetConfig, now: Time) -> Result<Self, ConfigError> {
        config.validate()?;
        let slot_nanos = (config.ttl.as_nanos() / u128::from(SLOTS_PER_TTL)) as u64;
        Ok(RetryBudget {
            slot_nanos,
            reserve: f64::from(config.min_per_sec) * config.ttl.as_secs_f64(),
            percent: config.retry_percent,
            slots: [Slot::default(); SLOTS],
            epoch: now.as_nanos() / slot_nanos,
        })
    }

    /// Counts a request (first attempts; retries are withdrawals).
    pub fn deposit(&mut self, now: Time) {
        let slot = self.slot(now);
        slot.deposits = slot.deposits.saturating_add(1);
    }

    /// Takes one retry from the budget if it allows one.
    #[must_use]
    pub fn try_withdraw(&mut self, now: Time) -> bool {
        if !self.can_withdraw(now) {
            return false;
        }
        let slot = self.slot(now);
        slot.withdrawals = slot.withdrawals.saturating_add(1);
        true
    }

    /// Whether a retry may be withdrawn now.
    pub fn can_withdraw(&self, now: Time) -> bool {
        self.balance(now) >= 1.0 - 1e-9
    }

    /// Retries available now (may be fractional): reserve + percent of deposits - withdrawals, in the window.
    pub fn balance(&self, now: Time) -> f64 {
        let epoch = self.epoch_at(now);
        let (deposits, withdrawals) = self
            .slots
            .iter()
            .filter(|s| epoch - s.epoch < SLOTS as u64)
            .fold((0u64, 0u64), |(d, w), s| (d + s.deposits, w + s.withdrawals));
        self.reserve + deposits as f64 * self.percent / 100.0 - withdrawals as f64
    }

    /// The slot number for `now`, never before `epoch`. Within the current slot (the usual
    /// case) a multiplication tells, and no division is needed.
    fn epoch_at(&self, now: Time) -> u64 {
        let nanos = now.as_nanos();
        if nanos < (self.epoch + 1).saturating_mul(self.slot_nanos) { self.epoch } else { nanos / self.slot_nanos }
    }

    /// The slot for `now`, cleared if it held an older slot's counts.
    fn slot(&mut self, now: Time) -> &mut Slot {
        self.epoch = self.epoch_at(now);
        let slot = &mut self.slots[(self.epoch % SLOTS as u64) as usize];
        if slot.epoch != self.epoch {
            *slot = Slot { epoch: self.epoch, deposits: 0, withdrawals: 0 };
        }
        slot
    }
}

/// Retry settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries per request after the first attempt, 0..=20. Default: 3.
    pub max_retries: u32,
    /// Delay between attempts. Default: see [`BackoffConfig`].
    pub backoff: BackoffConfig,
    /// Shared cap on retries. Default: see [`RetryBudgetConfig`].
    pub budget: RetryBudgetConfig,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { max_retries: 3, backoff: BackoffConfig::default(), budget: RetryBudgetConfig::default() }
    }
}

impl RetryConfig {
    /// Refuses values outside the documented ranges, naming `backoff.*` and `budget.*` fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("max_retries", self.max_retries, 0, 20)?;
        self.backoff.validate().map_err(|e| e.within("backoff"))?;
        self.budget.validate().map_err(|e| e.within("budget"))
    }
}

/// Whether a failed attempt may be retried.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Retry after this delay (a withdrawal has been taken from the budget).
    RetryAfter(Duration),
    /// The backoff would end past the request's deadline: no retry, and nothing withdrawn.
    PastDeadline,
    /// This request has used `max_retries`.
    Exhausted,
    /// The shared budget has no retry to spare.
    OverBudget,
}

/// Per-client retry policy: the limit per request, the backoff and the shared budget together.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_retries: u32,
    backoff: BackoffConfig,
    budget: RetryBudget,
    rng: Rng,
}

impl RetryPolicy {
    /// A policy; `seed` drives the jitter.
    pub fn new(config: RetryConfig, now: Time, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let budget = RetryBudget::new(config.budget, now)?;
        Ok(RetryPolicy { max_retries: config.max_retries, backoff: config.backoff, budget, rng: Rng::with_seed(seed) })
    }

    /// A new request (first attempt) was sent: deposits into the budget.
    #[inline]
    pub fn on_request(&mut self, now: Time) {
        self.budget.deposit(now);
    }

    /// After a retryable failure of a request that has had `retries_done` retries so far and
    /// must end by `deadline`. The budget pays only for a retry that will be sent.
    pub fn decide(&mut self, now: Time, retries_done: u32, deadline: Time) -> RetryDecision {
        if retries_done >= self.max_retries {
            return RetryDecision::Exhausted;
        }
        if !self.budget.can_withdraw(now) {
            return RetryDecision::OverBudget;
        }
        let delay = self.backoff.delay(retries_done, &mut self.rng);
        if now + delay >= deadline {
            return RetryDecision::PastDeadline;
        }
        let withdrawn = self.budget.try_withdraw(now);
        debug_assert!(withdrawn, "can_withdraw said yes at the same time");
        RetryDecision::RetryAfter(delay)
    }

    /// The shared budget, for metrics.
    pub fn budget(&self) -> &RetryBudget {
        &self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAR: Time = Time::from_nanos(u64::MAX);
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn at_ms(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn delays_grow_by_multiplier_with_jitter_and_cap() {
        let b = BackoffConfig::default();
        let expect = [1.0, 1.6, 2.56, 4.096];
        for (attempt, e) in expect.iter().enumerate() {
            assert!((b.capped(attempt as u32).as_secs_f64() - e).abs() < 1e-9);
        }
        assert_eq!(b.capped(20), Duration::from_secs(120));
        assert_eq!(b.capped(u32::MAX), Duration::from_secs(120));
        let mut rng = Rng::with_seed(9);
        let (mut lo, mut hi) = (f64::MAX, 0f64);
        for attempt in 0..30 {
            for _ in 0..50 {
                let ratio = b.delay(attempt, &mut rng).as_secs_f64() / b.capped(attempt).as_secs_f64();
                assert!((0.8..=1.2).contains(&ratio), "{ratio}");
                (lo, hi) = (lo.min(ratio), hi.max(ratio));
            }
        }
        assert!(lo < 0.85 && hi > 1.15, "jitter not spread: {lo}..{hi}");
    }

    #[test]
    fn budget_allows_min_rate_with_no_traffic() {
        let mut b = RetryBudget::new(RetryBudgetConfig::default(), Time::ZERO).unwrap();
        assert_eq!(b.balance(Time::ZERO), 100.0);
        assert_eq!((0..150).filter(|_| b.try_withdraw(at_ms(500))).count(), 100);
        assert!(!b.try_withdraw(at_ms(10_000)));
        assert!(b.try_withdraw(at_ms(11_000)), "withdrawals expire after ttl + one slot");
    }

    #[test]
    fn budget_adds_percent_of_deposits_and_they_expire() {
        let config = RetryBudgetConfig { min_per_sec: 0, ..RetryBudgetConfig::default() };
        let mut b = RetryBudget::new(config, Time::ZERO).unwrap();
        assert!(!b.try_withdraw(Time::ZERO));
        for _ in 0..50 {
            b.deposit(at_ms(100));
        }
        assert_eq!(b.balance(at_ms(100)), 10.0);
        assert_eq!((0..20).filter(|_| b.try_withdraw(at_ms(200))).count(), 10);
        for _ in 0..50 {
            b.deposit(at_ms(5_000));
        }
        assert_eq!(b.balance(at_ms(10_999)), 10.0);
        b.deposit(at_ms(100)); // a clock going back stands still: counts at 5 s
        assert!((b.balance(at_ms(11_000)) - 10.2).abs() < 1e-9); // first deposits and withdrawals gone
        assert_eq!(b.balance(at_ms(16_000)), 0.0); // all deposits expired
    }

    /// A policy whose budget holds `min_per_sec` retries a second, and nothing per request.
    fn policy(min_per_sec: u32) -> RetryPolicy {
        let config = RetryConfig {
            budget: RetryBudgetConfig { ttl: Duration::from_secs(1), min_per_sec, retry_percent: 0.0 },
            ..RetryConfig::default()
        };
        RetryPolicy::new(config, Time::ZERO, 1).unwrap()
    }

    #[test]
    fn policy_limits_retries_per_request_and_by_budget() {
        let mut p = policy(2);
        p.on_request(Time::ZERO);
        assert!(
            matches!(p.decide(Time::ZERO, 0, FAR), RetryDecision::RetryAfter(d) if d >= Duration::from_millis(800))
        );
        assert_eq!(p.decide(Time::ZERO, 3, FAR), RetryDecision::Exhausted);
        assert!(matches!(p.decide(Time::ZERO, 1, FAR), RetryDecision::RetryAfter(_)));
        assert_eq!(p.decide(Time::ZERO, 2, FAR), RetryDecision::OverBudget);
        assert!(p.budget().balance(Time::ZERO) < 1.0);
    }

    #[test]
    fn a_retry_past_the_deadline_takes_nothing_from_the_budget() {
        let mut p = policy(1);
        let soon = Time::ZERO + Duration::from_millis(1);
        assert_eq!(p.decide(Time::ZERO, 0, soon), RetryDecision::PastDeadline);
        assert!(matches!(p.decide(Time::ZERO, 0, FAR), RetryDecision::RetryAfter(_)), "the one retry is still there");
    }

    #[test]
    fn same_seed_same_delays() {
        let run = |seed| {
            let mut p = RetryPolicy::new(RetryConfig::default(), Time::ZERO, seed).unwrap();
            (0..3).map(|n| p.decide(Time::ZERO, n, FAR)).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn config_is_checked_and_named() {
        assert_eq!(RetryConfig::default().validate(), Ok(()));
        let c = RetryConfig { max_retries: 21, ..RetryConfig::default() };
        assert_eq!(c.validate().unwrap_err().field, "max_retries");
        let mut c = RetryConfig::default();
        c.backoff.multiplier = 0.5;
        assert_eq!(c.validate().unwrap_err().field, "backoff.multiplier");
        c = RetryConfig::default();
        c.budget.ttl = Duration::from_millis(10);
        assert_eq!(c.validate().unwrap_err().field, "budget.ttl");
        c = RetryConfig::default();
        c.budget.retry_percent = f64::NAN;
        assert_eq!(c.validate().unwrap_err().field, "budget.retry_percent");
        let c: RetryConfig = toml::from_str("max_retries = 5\n[backoff]\ninitial = 0.5").unwrap();
        assert_eq!((c.max_retries, c.backoff.initial), (5, Duration::from_millis(500)));
        assert!(toml::from_str::<RetryConfig>("[budget]\nttl_secs = 3").is_err());
        let json = serde_json::to_string(&RetryConfig::default()).unwrap();
        assert_eq!(serde_json::from_str::<RetryConfig>(&json).unwrap(), RetryConfig::default());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// For each granted withdrawal at t: withdrawals in (t - ttl, t] <= min_per_sec x ttl +
        /// percent x deposits in (t - ttl - slot, t], the slot being the granularity slack.
        #[test]
        fn withdrawals_stay_within_budget(
            min_per_sec in 0u32..5,
            percent in 0.0f64..100.0,
            events in proptest::collection::vec((0u64..400, any::<bool>()), 1..400),
        ) {
            let config = RetryBudgetConfig { ttl: Duration::from_secs(2), min_per_sec, retry_percent: percent };
            let mut b = RetryBudget::new(config, Time::ZERO).unwrap();
            let (mut now, mut deposits, mut withdrawals) = (0u64, Vec::new(), Vec::new());
            for (step_ms, is_deposit) in events {
                now += step_ms;
                if is_deposit {
                    b.deposit(at_ms(now));
                    deposits.push(now);
                } else if b.try_withdraw(at_ms(now)) {
                    withdrawals.push(now);
                    let in_window = |v: &[u64], from: u64| v.iter().filter(|&&t| t + from > now).count();
                    let allowed = f64::from(min_per_sec) * 2.0 + percent / 100.0 * in_window(&deposits, 2_200) as f64;
                    prop_assert!(in_window(&withdrawals, 2_000) as f64 <= allowed + 1e-6);
                }
            }
        }
    }
}
