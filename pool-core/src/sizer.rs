//! Dynamic pool sizing: how many connections (concurrent requests) the pool should allow right now.
//!
//! Too small a pool queues requests; too large a one overloads the server and slows every request.
//! [`Sizer`] holds the target and keeps it within `[min, max]`; a [`SizingPolicy`] proposes changes
//! from request samples. Policies: [`Fixed`], [`Threshold`] (the guide's average-latency rule),
//! [`Gradient`] (Netflix Gradient2-like) and [`Aimd`] (additive increase, multiplicative decrease).

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, check_nonzero, check_range};
use crate::time::Time;

const EVENT_CAPACITY: usize = 64;
/// The largest `max` a [`Sizer`] accepts.
pub const MAX_LIMIT: u32 = 100_000;

/// One finished request, as the policies see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Round-trip time (until the response, or until the timeout when `dropped`).
    pub rtt: Duration,
    /// Requests in flight when this one was sent, itself included.
    pub in_flight: u32,
    /// The request timed out or the server signalled overload (429, 503).
    pub dropped: bool,
}

/// A rule that proposes a new target from samples (and, for some, the passing of time).
pub trait SizingPolicy: std::fmt::Debug + Send {
    /// Short name, reported in [`SizerEvent::policy`].
    fn name(&self) -> &'static str;
    /// Records one finished request.
    fn on_sample(&mut self, now: Time, sample: &Sample);
    /// Proposes a new target given the current one; the Sizer clamps it to [min, max].
    fn adjust(&mut self, now: Time, current: u32) -> u32;
    /// When `adjust` next wants to be called without a new sample (time-driven policies), if ever.
    fn next_adjustment(&self) -> Option<Time> {
        None
    }
}

/// Never changes the target.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fixed;

impl SizingPolicy for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }
    fn on_sample(&mut self, _now: Time, _sample: &Sample) {}
    fn adjust(&mut self, _now: Time, current: u32) -> u32 {
        current
    }
}

/// The guide's rule: every `adjustment_interval`, given at least `min_samples` samples since the last
/// adjustment, grow when the average RTT is above `slow_above` and shrink when it is below `fast_below`.
///
/// Keeps only a sum and a count. With too few samples nothing changes and samples keep accumulating
/// (the interval does not restart), as in the guide.
#[derive(Debug, Clone)]
pub struct Threshold {
    config: ThresholdConfig,
    last_adjustment: Time,
    rtt_sum_nanos: u128,
    samples: u64,
}

impl Threshold {
    /// A policy whose first interval starts at `now`.
    pub fn new(config: ThresholdConfig, now: Time) -> Self {
        Threshold { config, last_adjustment: now, rtt_sum_nanos: 0, samples: 0 }
    }
}

impl SizingPolicy for Threshold {
    fn name(&self) -> &'static str {
        "threshold"
    }
    fn on_sample(&mut self, _now: Time, sample: &Sample) {
        self.rtt_sum_nanos = self.rtt_sum_nanos.saturating_add(sample.rtt.as_nanos());
        self.samples = self.samples.saturating_add(1);
    }
    fn adjust(&mut self, now: Time, current: u32) -> u32 {
        let c = &self.config;
        if now.saturating_since(self.last_adjustment) < c.adjustment_interval || self.samples < u64::from(c.min_samples)
        {
            return current;
        }
        // Compare sum against threshold * count: exact, no division.
        let n = u128::from(self.samples);
        let sum = self.rtt_sum_nanos;
        self.last_adjustment = now;
        self.rtt_sum_nanos = 0;
        self.samples = 0;
        if sum > c.slow_above.as_nanos().saturating_mul(n) {
            current.saturating_add(c.grow_by)
        } else if sum < c.fast_below.as_nanos().saturating_mul(n) {
            current.saturating_sub(c.shrink_by)
        } else {
            current
        }
    }
    fn next_adjustment(&self) -> Option<Time> {
        // Without enough samples only a new sample can make a difference.
        (self.samples >= u64::from(self.config.min_samples))
            .then(|| self.last_adjustment + self.config.adjustment_interval)
    }
}

/// Samples averaged plainly before the long-term RTT becomes an exponential average.
const GRADIENT_WARMUP: u32 = 10;
/// Floor for RTTs in seconds, so ratios stay finite.
const MIN_RTT_SECS: f64 = 1e-9;

/// Netflix Gradient2-like: compares the short-term RTT (the sample) with a long-term baseline.
///
/// `gradient = clamp(tolerance * long / short, 0.5, 1)`, and the limit moves towards
/// `limit * gradient + queue_size` by `smoothing` per sample; a drop multiplies it by `backoff_ratio`.
/// It grows only while in use (`in_flight * 2 >= limit`). The baseline is an exponential average over
/// `long_window` samples fed only by healthy samples (`short <= tolerance * long`), so sustained
/// self-inflicted queueing cannot drag it up; it drops fast when RTTs fall well below it. Start
/// with a low `initial`: the baseline is learnt from the first samples.
#[derive(Debug, Clone)]
pub struct Gradient {
    config: GradientConfig,
    limit: f64,
    long_rtt: f64,
    warmup: u32,
    pending: Option<Sample>,
}

impl Gradient {
    /// A policy starting from limit `initial`.
    pub fn new(config: GradientConfig, initial: u32) -> Self {
        Gradient { config, limit: f64::from(initial), long_rtt: 0.0, warmup: 0, pending: None }
    }
}

impl SizingPolicy for Gradient {
    fn name(&self) -> &'static str {
        "gradient"
    }
    fn on_sample(&mut self, _now: Time, sample: &Sample) {
        let short = sample.rtt.as_secs_f64().max(MIN_RTT_SECS);
        if self.warmup < GRADIENT_WARMUP {
            let n = f64::from(self.warmup);
            self.long_rtt = (self.long_rtt * n + short) / (n + 1.0);
            self.warmup += 1;
        } else if short <= self.config.tolerance * self.long_rtt {
            let alpha = 2.0 / (f64::from(self.config.long_window) + 1.0);
            self.long_rtt += alpha * (short - self.long_rtt);
        }
        if self.long_rtt / short > 2.0 {
            self.long_rtt *= 0.95;
        }
        self.long_rtt = self.long_rtt.max(MIN_RTT_SECS);
        self.pending = Some(*sample);
    }
    fn adjust(&mut self, _now: Time, current: u32) -> u32 {
        let Some(sample) = self.pending.take() else {
            return current;
        };
        let c = &self.config;
        // Keep the fractional estimate unless the Sizer clamped or someone moved the target.
        let limit = if self.limit.round() as u32 == current { self.limit } else { f64::from(current) };
        let new = if sample.dropped {
            limit * c.backoff_ratio
        } else {
            let short = sample.rtt.as_secs_f64().max(MIN_RTT_SECS);
            let gradient = (c.tolerance * self.long_rtt / short).clamp(0.5, 1.0);
            let target = limit * gradient + f64::from(c.queue_size);
            let blended = limit * (1.0 - c.smoothing) + target * c.smoothing;
            let in_use = f64::from(sample.in_flight) * 2.0 >= limit;
            if in_use { blended } else { blended.min(limit) }
        };
        self.limit = new.clamp(1.0, f64::from(u32::MAX));
        self.limit.round() as u32
    }
}

/// Additive increase while in use (`in_flight >= target`), multiplicative decrease on a drop or an
/// RTT above `timeout`.
#[derive(Debug, Clone)]
pub struct Aimd {
    config: AimdConfig,
    pending: Option<Sample>,
}

impl Aimd {
    /// A new policy.
    pub fn new(config: AimdConfig) -> Self {
        Aimd { config, pending: None }
    }
}

impl SizingPolicy for Aimd {
    fn name(&self) -> &'static str {
        "aimd"
    }
    fn on_sample(&mut self, _now: Time, sample: &Sample) {
        self.pending = Some(*sample);
    }
    fn adjust(&mut self, _now: Time, current: u32) -> u32 {
        match self.pending.take() {
            Some(s) if s.dropped || s.rtt > self.config.timeout => {
                (f64::from(current) * self.config.backoff_ratio) as u32
            }
            Some(s) if s.in_flight >= current => current.saturating_add(self.config.increase_by),
            _ => current,
        }
    }
}

/// Which policy a [`SizerConfig`] builds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// The target stays at `initial`.
    Fixed,
    /// The guide's average-latency rule ([`Threshold`]).
    #[default]
    Threshold,
    /// Long/short RTT gradient ([`Gradient`]).
    Gradient,
    /// Additive increase, multiplicative decrease ([`Aimd`]).
    Aimd,
}

/// Settings of [`Threshold`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Seconds between adjustments. Default: 60.
    #[serde(with = "crate::time::secs")]
    pub adjustment_interval: Duration,
    /// Samples needed since the last adjustment before adjusting. Default: 10.
    pub min_samples: u32,
    /// Grow when the average RTT is above this many seconds. Default: 2.
    #[serde(with = "crate::time::secs")]
    pub slow_above: Duration,
    /// Shrink when the average RTT is below this many seconds. Default: 0.5.
    #[serde(with = "crate::time::secs")]
    pub fast_below: Duration,
    /// Connections added when slow. Default: 5.
    pub grow_by: u32,
    /// Connections removed when fast. Default: 2.
    pub shrink_by: u32,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        ThresholdConfig {
            adjustment_interval: Duration::from_secs(60),
            min_samples: 10,
            slow_above: Duration::from_secs(2),
            fast_below: Duration::from_millis(500),
            grow_by: 5,
            shrink_by: 2,
        }
    }
}

impl ThresholdConfig {
    /// Refuses values that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_nonzero("adjustment_interval", self.adjustment_interval)?;
        check_range("min_samples", self.min_samples, 1, 1_000_000)?;
        check_nonzero("slow_above", self.slow_above)?;
        if self.fast_below > self.slow_above {
            return Err(ConfigError::new("fast_below", "must not exceed slow_above"));
        }
        check_range("grow_by", self.grow_by, 0, MAX_LIMIT)?;
        check_range("shrink_by", self.shrink_by, 0, MAX_LIMIT)
    }
}

/// Settings of [`Gradient`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradientConfig {
    /// Share of the newly computed limit blended in per sample, in 0.01..=1. Default: 0.2.
    pub smoothing: f64,
    /// RTT increase over the baseline tolerated before shrinking, a factor in 1..=10. Default: 1.5.
    pub tolerance: f64,
    /// Samples the long-term RTT averages over. Default: 600.
    pub long_window: u32,
    /// Requests allowed to queue on top of the limit (growth per step), in requests. Default: 4.
    pub queue_size: u32,
    /// Factor applied to the limit on a drop, in 0.5..=1. Default: 0.9.
    pub backoff_ratio: f64,
}

impl Default for GradientConfig {
    fn default() -> Self {
        GradientConfig { smoothing: 0.2, tolerance: 1.5, long_window: 600, queue_size: 4, backoff_ratio: 0.9 }
    }
}

impl GradientConfig {
    /// Refuses values that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_float("smoothing", self.smoothing, 0.01, 1.0)?;
        check_float("tolerance", self.tolerance, 1.0, 10.0)?;
        check_range("long_window", self.long_window, 1, 1_000_000)?;
        check_range("queue_size", self.queue_size, 0, 1000)?;
        check_float("backoff_ratio", self.backoff_ratio, 0.5, 1.0)
    }
}

/// Settings of [`Aimd`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AimdConfig {
    /// Added to the target per sample while in use, in connections. Default: 1.
    pub increase_by: u32,
    /// Factor applied to the target on a drop or slow sample, in 0.5..=1. Default: 0.9.
    pub backoff_ratio: f64,
    /// Seconds of RTT above which a sample counts as a drop. Default: 5.
    #[serde(with = "crate::time::secs")]
    pub timeout: Duration,
}

impl Default for AimdConfig {
    fn default() -> Self {
        AimdConfig { increase_by: 1, backoff_ratio: 0.9, timeout: Duration::from_secs(5) }
    }
}

impl AimdConfig {
    /// Refuses values that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("increase_by", self.increase_by, 1, 1000)?;
        check_float("backoff_ratio", self.backoff_ratio, 0.5, 1.0)?;
        check_nonzero("timeout", self.timeout)
    }
}

/// Settings of a [`Sizer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SizerConfig {
    /// The policy to run. Default: threshold.
    pub policy: PolicyKind,
    /// Smallest target, in connections. Default: 5.
    pub min: u32,
    /// Largest target, in connections (at most 100000). Default: 50.
    pub max: u32,
    /// Starting target, in connections. Default: 10.
    pub initial: u32,
    /// Settings of the threshold policy. Default: see [`ThresholdConfig`].
    pub threshold: ThresholdConfig,
    /// Settings of the gradient policy. Default: see [`GradientConfig`].
    pub gradient: GradientConfig,
    /// Settings of the AIMD policy. Default: see [`AimdConfig`].
    pub aimd: AimdConfig,
}

impl Default for SizerConfig {
    fn default() -> Self {
        SizerConfig {
            policy: PolicyKind::Threshold,
            min: 5,
            max: 50,
            initial: 10,
            threshold: ThresholdConfig::default(),
            gradient: GradientConfig::default(),
            aimd: AimdConfig::default(),
        }
    }
}

impl SizerConfig {
    /// Refuses values that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_bounds(self.min, self.max, self.initial)?;
        self.threshold.validate().map_err(|e| e.within("threshold"))?;
        self.gradient.validate().map_err(|e| e.within("gradient"))?;
        self.aimd.validate().map_err(|e| e.within("aimd"))
    }
}

fn check_bounds(min: u32, max: u32, initial: u32) -> Result<(), ConfigError> {
    check_range("min", min, 1, MAX_LIMIT)?;
    check_range("max", max, min, MAX_LIMIT)?;
    check_range("initial", initial, min, max)
}

/// Refuses `value` unless finite and in `min..=max`.
fn check_float(field: &str, value: f64, min: f64, max: f64) -> Result<(), ConfigError> {
    if !(min..=max).contains(&value) {
        return Err(ConfigError::new(field, format!("must be in {min}..={max}, got {value}")));
    }
    Ok(())
}

/// Which way the target moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeReason {
    /// The target went up.
    Grow,
    /// The target went down.
    Shrink,
}

/// The target changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizerEvent {
    /// When.
    pub at: Time,
    /// The previous target.
    pub from: u32,
    /// The new target.
    pub to: u32,
    /// Name of the policy that moved it.
    pub policy: &'static str,
    /// Which way it moved.
    pub reason: ResizeReason,
}

/// Holds the pool's target size within `[min, max]` and lets a policy move it.
#[derive(Debug)]
pub struct Sizer {
    min: u32,
    max: u32,
    target: u32,
    policy: Box<dyn SizingPolicy>,
    events: VecDeque<SizerEvent>,
    dropped_events: u64,
}

impl Sizer {
    /// A sizer running the policy `config` chooses, its time-driven interval starting at `now`.
    pub fn new(config: SizerConfig, now: Time) -> Result<Sizer, ConfigError> {
        config.validate()?;
        let policy: Box<dyn SizingPolicy> = match config.policy {
            PolicyKind::Fixed => Box::new(Fixed),
            PolicyKind::Threshold => Box::new(Threshold::new(config.threshold, now)),
            PolicyKind::Gradient => Box::new(Gradient::new(config.gradient, config.initial)),
            PolicyKind::Aimd => Box::new(Aimd::new(config.aimd)),
        };
        Self::with_policy(config.min, config.max, config.initial, policy)
    }

    /// A sizer running a policy of your own.
    pub fn with_policy(min: u32, max: u32, initial: u32, policy: Box<dyn SizingPolicy>) -> Result<Sizer, ConfigError> {
        check_bounds(min, max, initial)?;
        Ok(Sizer {
            min,
            max,
            target: initial,
            policy,
            events: VecDeque::with_capacity(EVENT_CAPACITY),
            dropped_events: 0,
        })
    }

    /// The current target size.
    #[inline]
    pub fn target(&self) -> u32 {
        self.target
    }

    /// Name of the running policy.
    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    /// Records a finished request and lets the policy adjust the target.
    #[inline]
    pub fn on_sample(&mut self, now: Time, sample: Sample) {
        self.policy.on_sample(now, &sample);
        self.adjust(now);
    }

    /// Lets a time-driven policy adjust the target; call at [`Sizer::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Time) {
        self.adjust(now);
    }

    /// When [`Sizer::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.policy.next_adjustment()
    }

    /// The oldest undelivered resize event.
    pub fn poll_event(&mut self) -> Option<SizerEvent> {
        self.events.pop_front()
    }

    #[inline]
    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Events dropped because the queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

    #[inline]
    fn adjust(&mut self, now: Time) {
        let from = self.target;
        let to = self.policy.adjust(now, from).clamp(self.min, self.max);
        if to == from {
            return;
        }
        self.target = to;
        if self.events.len() == EVENT_CAPACITY {
            self.events.pop_front();
            self.dropped_events += 1;
        }
        let reason = if to > from { ResizeReason::Grow } else { ResizeReason::Shrink };
        self.events.push_back(SizerEvent { at: now, from, to, policy: self.policy.name(), reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn at(secs: u64) -> Time {
        Time::ZERO + Duration::from_secs(secs)
    }

    fn smp(rtt: Duration, in_flight: u32, dropped: bool) -> Sample {
        Sample { rtt, in_flight, dropped }
    }

    fn ms(rtt_ms: u64, in_flight: u32) -> Sample {
        smp(Duration::from_millis(rtt_ms), in_flight, false)
    }

    fn sizer(policy: PolicyKind, min: u32, max: u32, initial: u32) -> Sizer {
        let config = SizerConfig { policy, min, max, initial, ..SizerConfig::default() };
        Sizer::new(config, Time::ZERO).unwrap()
    }

    fn events(s: &mut Sizer) -> Vec<SizerEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    /// Feeds ten samples of `rtt_ms` at seconds `from..from + 10`.
    fn ten(s: &mut Sizer, from: u64, rtt_ms: u64) {
        (from..from + 10).for_each(|t| s.on_sample(at(t), ms(rtt_ms, 1)));
    }

    #[test]
    fn threshold_grows_after_interval_with_enough_slow_samples() {
        let mut s = sizer(PolicyKind::Threshold, 5, 50, 10);
        ten(&mut s, 1, 3000);
        assert_eq!(s.target(), 10, "no change before the interval");
        assert_eq!(s.poll_timeout(), Some(at(60)));
        s.handle_timeout(at(59));
        assert_eq!(s.target(), 10);
        s.handle_timeout(at(60));
        let want = SizerEvent { at: at(60), from: 10, to: 15, policy: "threshold", reason: ResizeReason::Grow };
        assert_eq!(events(&mut s), vec![want]);
        // The window restarted: ten new slow samples wait for the next interval.
        assert_eq!(s.poll_timeout(), None);
        ten(&mut s, 61, 3000);
        s.handle_timeout(at(119));
        assert_eq!(s.target(), 15);
        s.handle_timeout(at(120));
        assert_eq!(s.target(), 20);
    }

    #[test]
    fn threshold_waits_for_min_samples_without_restarting() {
        let mut s = sizer(PolicyKind::Threshold, 5, 50, 10);
        (1..=9).for_each(|t| s.on_sample(at(t), ms(3000, 1)));
        s.handle_timeout(at(61));
        assert_eq!(s.target(), 10, "9 samples are not enough");
        assert_eq!(s.poll_timeout(), None);
        s.on_sample(at(70), ms(3000, 1));
        assert_eq!(s.target(), 15, "the 10th sample after the interval adjusts");
    }

    #[test]
    fn threshold_shrinks_when_fast_and_holds_in_between() {
        let mut s = sizer(PolicyKind::Threshold, 5, 50, 10);
        ten(&mut s, 1, 100);
        s.handle_timeout(at(60));
        assert_eq!(s.target(), 8);
        // Averages of exactly 2 s and exactly 0.5 s are "in between" (strict comparisons).
        for (rtt, t) in [(1000, 120), (2000, 180), (500, 240)] {
            ten(&mut s, t - 30, rtt);
            s.handle_timeout(at(t));
            assert_eq!(s.target(), 8, "avg {rtt} ms");
        }
        // (9 * 100 ms + 30 s) / 10 = 3.09 s -> grow.
        (250..259).for_each(|t| s.on_sample(at(t), ms(100, 1)));
        s.on_sample(at(260), ms(30_000, 1));
        s.handle_timeout(at(300));
        assert_eq!(s.target(), 13);
    }

    #[test]
    fn threshold_clamps_at_min_and_max() {
        let mut s = sizer(PolicyKind::Threshold, 5, 50, 48);
        for t in [60, 120] {
            ten(&mut s, t - 20, 2500);
            s.handle_timeout(at(t));
            assert_eq!(s.target(), 50);
        }
        assert_eq!(events(&mut s).len(), 1, "no event when clamped without change");
        let mut s = sizer(PolicyKind::Threshold, 5, 50, 6);
        ten(&mut s, 50, 10);
        s.handle_timeout(at(60));
        assert_eq!(s.target(), 5);
    }

    /// Feeds `n` samples with `in_flight` = target (or the given value); returns the target.
    fn drive(s: &mut Sizer, n: usize, rtt_ms: u64, in_flight: Option<u32>) -> u32 {
        for _ in 0..n {
            let inf = in_flight.unwrap_or(s.target());
            s.on_sample(Time::ZERO, ms(rtt_ms, inf));
        }
        s.target()
    }

    #[test]
    fn gradient_grows_while_in_use_and_not_when_app_limited() {
        let mut s = sizer(PolicyKind::Gradient, 1, 200, 10);
        assert_eq!(drive(&mut s, 50, 50, Some(2)), 10, "app-limited: no growth");
        let grown = drive(&mut s, 50, 50, None);
        assert!(grown >= 40, "steady low RTT while in use grows the limit, got {grown}");
        let ev = events(&mut s);
        assert!(ev.iter().all(|e| e.reason == ResizeReason::Grow && e.policy == "gradient"));
    }

    #[test]
    fn gradient_shrinks_when_rtt_rises_and_backs_off_on_drops() {
        let mut s = sizer(PolicyKind::Gradient, 1, 40, 10);
        assert_eq!(drive(&mut s, 300, 100, None), 40);
        let after = drive(&mut s, 30, 1000, None);
        assert!(after <= 20, "10x the baseline RTT must shrink, got {after}");
        // Lasting high RTT does not drag the baseline up: the limit keeps shrinking.
        let floor = drive(&mut s, 2000, 1000, None);
        assert!(floor <= 10, "got {floor}");
        let mut s = sizer(PolicyKind::Gradient, 1, 40, 20);
        s.on_sample(Time::ZERO, smp(Duration::from_millis(100), 20, true));
        assert_eq!(s.target(), 18);
    }

    #[test]
    fn gradient_settles_near_the_best_concurrency() {
        // A server that serves K requests at `base` and queues the rest: rtt grows linearly above K.
        for k in [5u32, 20, 100] {
            let mut s = sizer(PolicyKind::Gradient, 1, 2000, 2);
            let base = Duration::from_millis(100);
            let mut now = Time::ZERO;
            let (mut lo, mut hi) = (u32::MAX, 0);
            for step in 0..20_000 {
                let in_flight = s.target();
                let rtt = base.mul_f64((f64::from(in_flight) / f64::from(k)).max(1.0));
                now = now + rtt;
                s.on_sample(now, smp(rtt, in_flight, false));
                if step >= 15_000 {
                    (lo, hi) = (lo.min(s.target()), hi.max(s.target()));
                }
            }
            assert!(lo >= k / 2 && hi <= 3 * k, "K={k}: settled in {lo}..={hi}");
        }
    }

    #[test]
    fn aimd_adds_while_in_use_and_multiplies_down_on_drops_and_timeouts() {
        let mut s = sizer(PolicyKind::Aimd, 1, 100, 10);
        s.on_sample(Time::ZERO, ms(100, 9));
        assert_eq!(s.target(), 10, "not in use");
        s.on_sample(Time::ZERO, ms(100, 10));
        s.on_sample(Time::ZERO, ms(100, 11));
        assert_eq!(s.target(), 12);
        s.on_sample(Time::ZERO, ms(5001, 12));
        assert_eq!(s.target(), 10, "12 * 0.9 = 10.8 -> 10 on a timeout");
        s.on_sample(Time::ZERO, smp(Duration::ZERO, 50, true));
        assert_eq!(s.target(), 9);
        s.on_sample(Time::ZERO, ms(5000, 9));
        assert_eq!(s.target(), 10, "exactly the timeout is not a drop");
    }

    #[test]
    fn fixed_never_moves() {
        let mut s = sizer(PolicyKind::Fixed, 1, 100, 7);
        s.on_sample(at(1), smp(Duration::MAX, u32::MAX, true));
        s.handle_timeout(at(1000));
        assert_eq!((s.target(), s.poll_timeout(), s.policy_name()), (7, None, "fixed"));
    }

    #[test]
    fn event_queue_is_bounded_and_drops_the_oldest() {
        let mut s = sizer(PolicyKind::Aimd, 1, 1000, 1);
        assert_eq!(drive(&mut s, 100, 10, None), 101);
        assert_eq!(s.dropped_events(), 36);
        let ev = events(&mut s);
        assert_eq!((ev.len(), ev[0].from, ev[63].to), (64, 37, 101));
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(SizerConfig::default().validate(), Ok(()));
        type Spoil = fn(&mut SizerConfig);
        let cases: [(Spoil, &str); 12] = [
            (|c| c.min = 0, "min"),
            (|c| c.max = 4, "max"),
            (|c| c.max = MAX_LIMIT + 1, "max"),
            (|c| c.initial = 51, "initial"),
            (|c| c.threshold.adjustment_interval = Duration::ZERO, "threshold.adjustment_interval"),
            (|c| c.threshold.min_samples = 0, "threshold.min_samples"),
            (|c| c.threshold.fast_below = Duration::from_secs(3), "threshold.fast_below"),
            (|c| c.gradient.smoothing = f64::NAN, "gradient.smoothing"),
            (|c| c.gradient.tolerance = 0.9, "gradient.tolerance"),
            (|c| c.gradient.long_window = 0, "gradient.long_window"),
            (|c| c.aimd.backoff_ratio = 1.5, "aimd.backoff_ratio"),
            (|c| c.aimd.timeout = Duration::ZERO, "aimd.timeout"),
        ];
        for (spoil, field) in cases {
            let mut c = SizerConfig::default();
            spoil(&mut c);
            assert_eq!(c.validate().unwrap_err().field, field);
            assert!(Sizer::new(c, Time::ZERO).is_err());
        }
        assert!(Sizer::with_policy(10, 5, 7, Box::new(Fixed)).is_err());
    }

    #[test]
    fn config_reads_from_toml_with_defaults() {
        let text = "policy = \"aimd\"\nmax = 80\n[aimd]\ntimeout = 2.5\n";
        let c: SizerConfig = toml::from_str(text).unwrap();
        assert_eq!((c.policy, c.max, c.min), (PolicyKind::Aimd, 80, 5));
        assert_eq!(c.aimd.timeout, Duration::from_millis(2500));
        assert!(toml::from_str::<SizerConfig>("maximum = 3").is_err());
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<SizerConfig>(&json).unwrap(), c);
    }

    fn run(policy: PolicyKind, seed: u64) -> Vec<SizerEvent> {
        let mut s = sizer(policy, 2, 60, 10);
        let mut rng = Rng::with_seed(seed);
        let (mut now, mut out) = (Time::ZERO, Vec::new());
        for _ in 0..3000 {
            now = now + Duration::from_millis(rng.below(500) as u64);
            let rtt = Duration::from_millis(rng.below(4000) as u64);
            s.on_sample(now, smp(rtt, rng.below(70) as u32, rng.below(50) == 0));
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
            out.extend(std::iter::from_fn(|| s.poll_event()));
        }
        out
    }

    #[test]
    fn same_inputs_same_events() {
        for policy in [PolicyKind::Threshold, PolicyKind::Gradient, PolicyKind::Aimd] {
            let a = run(policy, 42);
            assert!(!a.is_empty(), "{policy:?} never resized");
            assert_eq!(a, run(policy, 42));
        }
    }

    fn arb_config() -> impl Strategy<Value = SizerConfig> {
        let kind = prop_oneof![
            Just(PolicyKind::Fixed),
            Just(PolicyKind::Threshold),
            Just(PolicyKind::Gradient),
            Just(PolicyKind::Aimd)
        ];
        let bounds = (1u32..50, 0u32..200, any::<prop::sample::Index>());
        let threshold = (1u64..120, 1u32..20, 0u32..50);
        let gradient = (0.01f64..=1.0, 1.0f64..=10.0, 1u32..1000, 0u32..100, 0.5f64..=1.0);
        (kind, bounds, threshold, gradient).prop_map(|(policy, (min, span, i), t, g)| {
            let initial = min + i.index(span as usize + 1) as u32;
            let mut c = SizerConfig { policy, min, max: min + span, initial, ..Default::default() };
            c.threshold.adjustment_interval = Duration::from_secs(t.0);
            c.threshold.min_samples = t.1;
            (c.threshold.grow_by, c.threshold.shrink_by, c.aimd.increase_by) = (t.2, t.2 / 2, t.2 + 1);
            c.gradient = GradientConfig {
                smoothing: g.0,
                tolerance: g.1,
                long_window: g.2,
                queue_size: g.3,
                backoff_ratio: g.4,
            };
            c.aimd.backoff_ratio = g.4;
            c
        })
    }

    fn arb_rtt() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::MAX),
            (0u64..10_000_000_000).prop_map(Duration::from_nanos),
            any::<u64>().prop_map(Duration::from_secs),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn target_stays_within_bounds(
            config in arb_config(),
            steps in prop::collection::vec(
                (0u64..200_000, arb_rtt(), any::<u32>(), any::<bool>(), any::<bool>()), 0..200),
        ) {
            prop_assert_eq!(config.validate(), Ok(()));
            let (min, max) = (config.min, config.max);
            let mut s = Sizer::new(config, Time::ZERO).unwrap();
            let mut now = Time::ZERO;
            for (ms, rtt, in_flight, dropped, tick) in steps {
                now = now + Duration::from_millis(ms);
                if tick {
                    s.handle_timeout(now);
                } else {
                    s.on_sample(now, smp(rtt, in_flight % (max * 2 + 1), dropped));
                }
                prop_assert!((min..=max).contains(&s.target()), "{} out of bounds", s.target());
            }
        }
    }
}
