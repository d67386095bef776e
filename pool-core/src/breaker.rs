//! Per-endpoint circuit breaker: stop sending to an endpoint that keeps failing, let a few probes
//! test it after a jittered, growing pause, and close again once they succeed.
//!
//! Sans-IO: ask [`Breaker::try_acquire`] before a call, report it once with [`Breaker::on_outcome`]
//! (or [`Breaker::on_cancel`]), drive time with [`Breaker::handle_timeout`]. A [`Permit`] carries
//! the generation it was issued in, so a late outcome from before a transition changes nothing;
//! half-open probe slots are counted so that no interleaving admits more than
//! `half_open_max_probes` (resilience4j #1432) or leaves the breaker stuck half-open (#903, #935).

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, check_nonzero, check_range};
use crate::rng::Rng;
use crate::time::Time;
use BreakerState as S;
use TransitionReason as R;

const EVENT_CAPACITY: usize = 64;
const MAX_COUNT: u32 = 10_000;
const MAX_OPEN: Duration = Duration::from_secs(86_400);

/// How the caller classifies a finished call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint did its job.
    Success,
    /// The endpoint failed; counts toward opening.
    Failure,
    /// Says nothing about the endpoint's health (e.g. a 400 or 429): not recorded, slot freed.
    Ignored,
}

/// Operating mode, from config or the manual controls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerMode {
    /// Opens and closes by the rules.
    #[default]
    Normal,
    /// Admits every call and records nothing.
    Disabled,
    /// Rejects every call until reset.
    ForcedOpen,
}

/// The window over which failure and slow-call rates are measured while CLOSED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SlidingWindow {
    /// The last `size` recorded calls (1..=10000).
    Count {
        /// Number of calls kept.
        size: u32,
    },
    /// The calls of the last `seconds` seconds (1..=3600), in per-second buckets.
    Time {
        /// Window length in seconds.
        seconds: u32,
    },
}

impl Default for SlidingWindow {
    fn default() -> Self {
        SlidingWindow::Count { size: 100 }
    }
}

/// Breaker settings; [`BreakerConfig::guide`] gives the guide's simpler semantics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Normal, disabled (admit all, record nothing) or forced open. Default: normal.
    pub mode: BreakerMode,
    /// Consecutive failures in CLOSED that open it (a success resets the count); 0 = rule off.
    /// Default: 5.
    pub failure_threshold: u32,
    /// Probe successes in HALF_OPEN that close it; at most `half_open_max_probes`. Default: 3.
    pub success_threshold: u32,
    /// First OPEN duration, seconds. Default: 60.
    #[serde(with = "crate::time::secs")]
    pub reset_timeout: Duration,
    /// Cap on the growing OPEN duration (before jitter), seconds, at most a day. Default: 300.
    #[serde(with = "crate::time::secs")]
    pub max_reset_timeout: Duration,
    /// Factor (1..=100) on the OPEN duration per consecutive re-open; 1 = constant. Default: 2.0.
    pub backoff_multiplier: f64,
    /// Fraction (0..=1) by which each OPEN duration is randomly lengthened or shortened.
    /// Default: 0.2.
    pub jitter: f64,
    /// Probes per HALF_OPEN period, counting those in flight and counted successes. Default: 3.
    pub half_open_max_probes: u32,
    /// Seconds in HALF_OPEN without closing after which it re-opens; none = no limit.
    /// Default: none.
    #[serde(with = "crate::time::opt_secs")]
    pub max_wait_in_half_open: Option<Duration>,
    /// Window for the rate rules. Default: `{ kind = "count", size = 100 }`.
    pub window: SlidingWindow,
    /// Failure rate over the window that opens it, percent in (0, 100]; none = rule off.
    /// Default: 50.
    pub failure_rate_threshold: Option<f64>,
    /// Calls the window must hold before rates count (capped at a count window's size), calls.
    /// Default: 20.
    pub minimum_calls: u32,
    /// A call this slow or slower is slow, whatever its outcome, seconds; none = rule off.
    /// Default: none.
    #[serde(with = "crate::time::opt_secs")]
    pub slow_call_duration: Option<Duration>,
    /// Slow-call rate over the window that opens it, percent in (0, 100]. Default: 100.
    pub slow_call_rate_threshold: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            mode: BreakerMode::Normal,
            failure_threshold: 5,
            success_threshold: 3,
            reset_timeout: Duration::from_secs(60),
            max_reset_timeout: Duration::from_secs(300),
            backoff_multiplier: 2.0,
            jitter: 0.2,
            half_open_max_probes: 3,
            max_wait_in_half_open: None,
            window: SlidingWindow::default(),
            failure_rate_threshold: Some(50.0),
            minimum_calls: 20,
            slow_call_duration: None,
            slow_call_rate_threshold: 100.0,
        }
    }
}

impl BreakerConfig {
    /// The guide's breaker: open for exactly 60 s after 5 consecutive failures, close after 3
    /// successful probes (3 admitted); no rate rules, backoff or jitter.
    pub fn guide() -> Self {
        BreakerConfig {
            max_reset_timeout: Duration::from_secs(60),
            backoff_multiplier: 1.0,
            jitter: 0.0,
            failure_rate_threshold: None,
            ..Self::default()
        }
    }

    /// Refuses values the breaker cannot work with, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let count = |field: &str, value: u32, min: u32| check_range(field, value, min, MAX_COUNT);
        count("failure_threshold", self.failure_threshold, 0)?;
        count("success_threshold", self.success_threshold, 1)?;
        count("half_open_max_probes", self.half_open_max_probes, 1)?;
        count("minimum_calls", self.minimum_calls, 1)?;
        let max = self.half_open_max_probes;
        check_range("success_threshold", self.success_threshold, 1, max)?;
        check_nonzero("reset_timeout", self.reset_timeout)?;
        if self.max_reset_timeout < self.reset_timeout || self.max_reset_timeout > MAX_OPEN {
            let problem = "must be in reset_timeout..=86400 s";
            return Err(ConfigError::new("max_reset_timeout", problem));
        }
        check_real("backoff_multiplier", self.backoff_multiplier, 1.0, 100.0)?;
        check_real("jitter", self.jitter, 0.0, 1.0)?;
        let (field, len, max) = match self.window {
            SlidingWindow::Count { size } => ("window.size", size, MAX_COUNT),
            SlidingWindow::Time { seconds } => ("window.seconds", seconds, 3_600),
        };
        check_range(field, len, 1, max)?;
        let (wait, slow) = (self.max_wait_in_half_open, self.slow_call_duration);
        for (field, d) in [("max_wait_in_half_open", wait), ("slow_call_duration", slow)] {
            d.map_or(Ok(()), |d| check_nonzero(field, d))?;
        }
        let rate = self.failure_rate_threshold.unwrap_or(100.0);
        check_percent("failure_rate_threshold", rate)?;
        check_percent("slow_call_rate_threshold", self.slow_call_rate_threshold)
    }
}

/// Refuses NaN, infinities and values outside `min..=max`.
fn check_real(field: &str, value: f64, min: f64, max: f64) -> Result<(), ConfigError> {
    if value.is_finite() {
        return check_range(field, value, min, max);
    }
    Err(ConfigError::new(field, format!("must be finite, got {value}")))
}

fn check_percent(field: &str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value <= 100.0 {
        return Ok(());
    }
    Err(ConfigError::new(field, format!("must be in (0, 100], got {value}")))
}

/// Where the breaker is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Admitting and recording calls.
    Closed,
    /// Rejecting calls until its open duration has passed.
    Open,
    /// Admitting a few probes to decide whether to close.
    HalfOpen,
    /// Rejecting every call (manual).
    ForcedOpen,
    /// Admitting every call, recording nothing (manual).
    Disabled,
}

/// Why the breaker changed state.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TransitionReason {
    /// `failure_threshold` consecutive failures.
    ConsecutiveFailures,
    /// The window's failure rate reached its threshold.
    FailureRate,
    /// The window's slow-call rate reached its threshold.
    SlowCallRate,
    /// The OPEN duration passed.
    OpenTimeoutElapsed,
    /// `success_threshold` probes succeeded.
    ProbesSucceeded,
    /// A probe failed.
    ProbeFailed,
    /// HALF_OPEN lasted `max_wait_in_half_open` without closing.
    HalfOpenTimeout,
    /// `force_open`, `force_closed` or `reset`.
    Manual,
}

/// One state change.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BreakerEvent {
    /// When it happened.
    pub at: Time,
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// Why.
    pub reason: TransitionReason,
}

/// Leave to make one call; report it exactly once, with `on_outcome` or `on_cancel`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Permit {
    probe: bool,
    generation: u32,
}

impl Permit {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

/// The breaker's answer to [`Breaker::try_acquire`].
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Admission {
    /// Make the call.
    Admitted(Permit),
    /// Do not call.
    Rejected {
        /// When OPEN ends; `None` when unknown (forced open, all probe slots taken).
        retry_at: Option<Time>,
    },
}

impl Admission {
    /// The permit, if admitted.
    pub fn permit(self) -> Option<Permit> {
        match self {
            Admission::Admitted(permit) => Some(permit),
            Admission::Rejected { .. } => None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    calls: u64,
    failures: u64,
    slow: u64,
}

/// Count- or time-based window over preallocated slots (one per call, or one per second).
#[derive(Clone, Debug)]
struct Window {
    by_time: bool,
    slots: Vec<Counts>,
    /// Count window: the slot the next call overwrites. Time window: the newest second seen.
    head: u64,
    total: Counts,
}

impl Window {
    fn new(kind: SlidingWindow) -> Self {
        let (by_time, len) = match kind {
            SlidingWindow::Count { size } => (false, size),
            SlidingWindow::Time { seconds } => (true, seconds),
        };
        let slots = vec![Counts::default(); len.max(1) as usize];
        Window { by_time, slots, head: 0, total: Counts::default() }
    }

    fn clear(&mut self) {
        self.slots.fill(Counts::default());
        self.total = Counts::default();
    }

    #[inline]
    fn drop_slot(&mut self, idx: u64) {
        let old = std::mem::take(&mut self.slots[idx as usize]);
        self.total.calls -= old.calls;
        self.total.failures -= old.failures;
        self.total.slow -= old.slow;
    }

    /// Records one call and returns the window's totals.
    #[inline]
    fn record(&mut self, now: Time, failure: bool, slow: bool) -> Counts {
        let len = self.slots.len() as u64;
        let idx = if self.by_time {
            let sec = now.as_nanos() / 1_000_000_000;
            for i in 1..=sec.saturating_sub(self.head).min(len) {
                self.drop_slot((self.head + i) % len);
            }
            self.head = self.head.max(sec);
            self.head % len
        } else {
            let idx = self.head;
            // Wrapped by a compare, not `%`: a division is the dearest instruction on this path.
            self.head = if idx + 1 == len { 0 } else { idx + 1 };
            self.drop_slot(idx);
            idx
        };
        for counts in [&mut self.slots[idx as usize], &mut self.total] {
            counts.calls += 1;
            counts.failures += u64::from(failure);
            counts.slow += u64::from(slow);
        }
        self.total
    }
}

/// A circuit breaker for one endpoint (see the module docs).
#[derive(Clone, Debug)]
pub struct Breaker {
    config: BreakerConfig,
    rng: Rng,
    state: BreakerState,
    generation: u32,
    open_until: Time,
    half_open_since: Time,
    consecutive_failures: u32,
    /// Opens since the last close: the backoff exponent.
    opens: u32,
    probes_in_flight: u32,
    probe_successes: u32,
    injected_extra_probes: u32,
    window: Window,
    events: VecDeque<BreakerEvent>,
    dropped_events: u64,
}

impl Breaker {
    /// A breaker in the config's mode (CLOSED when normal); `seed` drives the jitter.
    pub fn new(config: BreakerConfig, seed: u64) -> Result<Breaker, ConfigError> {
        config.validate()?;
        let state = match config.mode {
            BreakerMode::Normal => S::Closed,
            BreakerMode::Disabled => S::Disabled,
            BreakerMode::ForcedOpen => S::ForcedOpen,
        };
        Ok(Breaker {
            window: Window::new(config.window),
            config,
            rng: Rng::with_seed(seed),
            state,
            generation: 0,
            open_until: Time::ZERO,
            half_open_since: Time::ZERO,
            consecutive_failures: 0,
            opens: 0,
            probes_in_flight: 0,
            probe_successes: 0,
            injected_extra_probes: 0,
            events: VecDeque::with_capacity(EVENT_CAPACITY),
            dropped_events: 0,
        })
    }

    /// The current state; OPEN stays until a call or `handle_timeout` moves it on.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether `try_acquire(now)` would admit; changes nothing.
    #[inline]
    pub fn would_admit(&self, now: Time) -> bool {
        match self.state {
            S::Closed | S::Disabled => true,
            S::ForcedOpen => false,
            S::Open => now >= self.open_until,
            S::HalfOpen => !self.half_open_expired(now) && self.probe_slot_free(),
        }
    }

    /// Whether the breaker is waiting for a probe it would admit now: OPEN with its open time
    /// passed, or HALF_OPEN with a free probe slot.
    #[inline]
    pub fn wants_probe(&self, now: Time) -> bool {
        match self.state {
            S::Open => now >= self.open_until,
            S::HalfOpen => self.would_admit(now),
            _ => false,
        }
    }

    /// Probes admitted in this half-open period and still out, and probe successes counted.
    pub fn probes(&self) -> (u32, u32) {
        (self.probes_in_flight, self.probe_successes)
    }

    /// The probe bound: in flight plus counted never above `half_open_max_probes`.
    pub fn check_invariants(&self) -> Result<(), String> {
        let (out, counted) = self.probes();
        if out + counted > self.config.half_open_max_probes {
            return Err(format!(
                "breaker probes {out} in flight + {counted} counted exceed half_open_max_probes {}",
                self.config.half_open_max_probes
            ));
        }
        Ok(())
    }

    /// When OPEN ends, if open.
    #[inline]
    pub fn reopens_at(&self) -> Option<Time> {
        (self.state == S::Open).then_some(self.open_until)
    }

    /// Asks to make a call; moves OPEN to HALF_OPEN once the open time has passed.
    #[inline]
    pub fn try_acquire(&mut self, now: Time) -> Admission {
        self.handle_timeout(now);
        let retry_at = match self.state {
            S::Closed | S::Disabled => return Admission::Admitted(self.permit(false)),
            S::HalfOpen if self.probe_slot_free() => {
                self.probes_in_flight += 1;
                return Admission::Admitted(self.permit(true));
            }
            S::Open => Some(self.open_until),
            S::HalfOpen | S::ForcedOpen => None,
        };
        Admission::Rejected { retry_at }
    }

    /// Reports how an admitted call ended and how long it took; stale permits change nothing.
    #[inline]
    pub fn on_outcome(&mut self, now: Time, permit: Permit, outcome: Outcome, duration: Duration) {
        self.handle_timeout(now);
        if permit.generation != self.generation {
            return;
        }
        if self.state == S::Closed {
            return self.record_closed(now, outcome, duration);
        }
        if self.state != S::HalfOpen || !permit.probe {
            return;
        }
        self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        match outcome {
            Outcome::Success => {
                self.probe_successes += 1;
                if self.probe_successes >= self.config.success_threshold {
                    self.transition(now, S::Closed, R::ProbesSucceeded);
                }
            }
            Outcome::Failure => self.open(now, R::ProbeFailed),
            Outcome::Ignored => {}
        }
    }

    /// Reports that an admitted call was abandoned before an outcome; frees its probe slot.
    pub fn on_cancel(&mut self, permit: Permit) {
        if permit.probe && permit.generation == self.generation {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    /// Applies time-driven transitions: OPEN time passed, HALF_OPEN waited too long.
    #[inline]
    pub fn handle_timeout(&mut self, now: Time) {
        // Only OPEN and HALF_OPEN move with time: every call and outcome asks, told here inline.
        if matches!(self.state, S::Open | S::HalfOpen) {
            self.move_with_time(now);
        }
    }

    fn move_with_time(&mut self, now: Time) {
        if self.state == S::Open && now >= self.open_until {
            self.transition(now, S::HalfOpen, R::OpenTimeoutElapsed);
        }
        if self.half_open_expired(now) {
            self.open(now, R::HalfOpenTimeout);
        }
    }

    /// When `handle_timeout` next has something to do.
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.state {
            S::Open => Some(self.open_until),
            S::HalfOpen => self.config.max_wait_in_half_open.map(|w| self.half_open_since + w),
            _ => None,
        }
    }

    /// The oldest undrained state change.
    pub fn poll_event(&mut self) -> Option<BreakerEvent> {
        self.events.pop_front()
    }

    #[inline]
    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Events dropped because the queue (64) was full.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

    /// Rejects every call until `reset`.
    pub fn force_open(&mut self, now: Time) {
        self.transition(now, S::ForcedOpen, R::Manual);
    }

    /// Admits every call and records nothing (the disabled mode) until `reset`.
    pub fn force_closed(&mut self, now: Time) {
        self.transition(now, S::Disabled, R::Manual);
    }

    /// Back to normal mode, CLOSED, counts and backoff cleared.
    pub fn reset(&mut self, now: Time) {
        self.transition(now, S::Closed, R::Manual);
    }

    fn permit(&self, probe: bool) -> Permit {
        Permit { probe, generation: self.generation }
    }

    fn probe_slot_free(&self) -> bool {
        self.probes_in_flight + self.probe_successes < self.config.half_open_max_probes + self.injected_extra_probes
    }

    /// Fault injection for the simulation's self-test: admit `extra` probes beyond the bound.
    /// Never use it outside a test of the invariant checker.
    #[doc(hidden)]
    pub fn inject_extra_probes(&mut self, extra: u32) {
        self.injected_extra_probes = extra;
    }

    fn half_open_expired(&self, now: Time) -> bool {
        let wait = self.config.max_wait_in_half_open;
        self.state == S::HalfOpen && wait.is_some_and(|w| now >= self.half_open_since + w)
    }

    #[inline]
    fn record_closed(&mut self, now: Time, outcome: Outcome, duration: Duration) {
        let failure = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            Outcome::Ignored => return,
        };
        let c = &self.config;
        let slow = c.slow_call_duration.is_some_and(|d| duration >= d);
        let min_calls = match c.window {
            SlidingWindow::Count { size } => c.minimum_calls.min(size),
            SlidingWindow::Time { .. } => c.minimum_calls,
        };
        self.consecutive_failures = self.consecutive_failures.saturating_add(1) * u32::from(failure);
        let total = self.window.record(now, failure, slow);
        let rate = |n: u64| n as f64 * 100.0 / total.calls as f64;
        let reason = if c.failure_threshold > 0 && self.consecutive_failures >= c.failure_threshold {
            R::ConsecutiveFailures
        } else if total.calls < u64::from(min_calls) || (total.failures == 0 && total.slow == 0) {
            // Too few calls to judge, or nothing to count against the endpoint: no rate to compute.
            return;
        } else if c.failure_rate_threshold.is_some_and(|t| rate(total.failures) >= t) {
            R::FailureRate
        } else if c.slow_call_duration.is_some() && rate(total.slow) >= c.slow_call_rate_threshold {
            R::SlowCallRate
        } else {
            return;
        };
        self.open(now, reason);
    }

    /// Enters OPEN for `reset_timeout x multiplier^opens`, capped, then jittered.
    fn open(&mut self, now: Time, reason: TransitionReason) {
        let c = &self.config;
        let exponent = self.opens.min(1_000) as i32;
        let grown = c.reset_timeout.as_secs_f64() * c.backoff_multiplier.powi(exponent);
        let capped = Duration::try_from_secs_f64(grown.min(c.max_reset_timeout.as_secs_f64()));
        let base = capped.unwrap_or(c.max_reset_timeout);
        let jitter = c.jitter;
        self.open_until = now + self.rng.jitter(base, jitter);
        self.opens = self.opens.saturating_add(1);
        self.transition(now, S::Open, reason);
    }

    fn transition(&mut self, now: Time, to: BreakerState, reason: TransitionReason) {
        let from = std::mem::replace(&mut self.state, to);
        self.generation = self.generation.wrapping_add(1);
        (self.probes_in_flight, self.probe_successes) = (0, 0);
        match to {
            S::HalfOpen => self.half_open_since = now,
            S::Closed => {
                (self.consecutive_failures, self.opens) = (0, 0);
                self.window.clear();
            }
            _ => {}
        }
        if from == to {
            return;
        }
        if self.events.len() == EVENT_CAPACITY {
            self.events.pop_front();
            self.dropped_events += 1;
        }
        self.events.push_back(BreakerEvent { at: now, from, to, reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BreakerState::*;
    use Outcome::*;
    use proptest::prelude::*;

    fn t(secs: u64) -> Time {
        Time::ZERO + Duration::from_secs(secs)
    }

    /// Defaults without jitter or rate rule, changed by `f`.
    fn cfg(f: impl FnOnce(&mut BreakerConfig)) -> BreakerConfig {
        let mut c = BreakerConfig { jitter: 0.0, failure_rate_threshold: None, ..BreakerConfig::default() };
        f(&mut c);
        c
    }

    fn breaker(config: BreakerConfig) -> Breaker {
        Breaker::new(config, 1).expect("valid config")
    }

    fn acquire(b: &mut Breaker, now: Time) -> Permit {
        b.try_acquire(now).permit().expect("admitted")
    }

    /// Acquires and reports one call taking `millis`.
    fn call_for(b: &mut Breaker, now: Time, outcome: Outcome, millis: u64) {
        let p = acquire(b, now);
        b.on_outcome(now, p, outcome, Duration::from_millis(millis));
    }

    fn call(b: &mut Breaker, now: Time, outcome: Outcome, times: usize) {
        (0..times).for_each(|_| call_for(b, now, outcome, 10));
    }

    fn events(b: &mut Breaker) -> Vec<(BreakerState, BreakerState, TransitionReason)> {
        std::iter::from_fn(|| b.poll_event()).map(|e| (e.from, e.to, e.reason)).collect()
    }

    #[test]
    fn consecutive_failures_open_success_resets_ignored_does_not() {
        let mut b = breaker(cfg(|_| {}));
        call(&mut b, t(0), Failure, 4);
        call(&mut b, t(0), Success, 1);
        call(&mut b, t(1), Failure, 2);
        call(&mut b, t(1), Ignored, 10);
        call(&mut b, t(1), Failure, 2);
        assert_eq!((b.state(), b.window.total.calls), (Closed, 9));
        call(&mut b, t(1), Failure, 1);
        assert_eq!(b.reopens_at(), Some(t(61)));
        assert_eq!(events(&mut b), [(Closed, Open, R::ConsecutiveFailures)]);
    }

    #[test]
    fn failure_rate_opens_once_the_window_holds_minimum_calls() {
        // minimum_calls (20) above the count window's size is capped at the size.
        let config = cfg(|c| (c.failure_threshold, c.failure_rate_threshold) = (0, Some(50.0)));
        let mut b = breaker(BreakerConfig { window: SlidingWindow::Count { size: 10 }, ..config });
        call(&mut b, t(0), Failure, 9);
        assert_eq!(b.state(), Closed, "9 of 9 failed, but fewer than 10 calls");
        b.reset(t(0));
        call(&mut b, t(0), Success, 6);
        call(&mut b, t(0), Failure, 4);
        assert_eq!(b.state(), Closed, "4 of 10 failed");
        call(&mut b, t(0), Failure, 1); // 5 of the last 10, though 5 of 11 overall
        assert_eq!(events(&mut b), [(Closed, Open, R::FailureRate)]);
    }

    #[test]
    fn slow_calls_count_whatever_their_outcome() {
        let config = cfg(|c| (c.failure_threshold, c.minimum_calls, c.slow_call_rate_threshold) = (0, 4, 50.0));
        let mut b = breaker(BreakerConfig { slow_call_duration: Some(Duration::from_secs(1)), ..config });
        call_for(&mut b, t(0), Success, 1_000);
        call_for(&mut b, t(0), Success, 999);
        call_for(&mut b, t(0), Failure, 5);
        assert_eq!(b.state(), Closed);
        call_for(&mut b, t(0), Failure, 3_000);
        assert_eq!(events(&mut b), [(Closed, Open, R::SlowCallRate)]);
    }

    #[test]
    fn time_window_drops_calls_older_than_its_length() {
        let config = cfg(|c| (c.failure_threshold, c.failure_rate_threshold, c.minimum_calls) = (0, Some(50.0), 4));
        let mut b = breaker(BreakerConfig { window: SlidingWindow::Time { seconds: 10 }, ..config });
        call(&mut b, t(0), Failure, 2);
        call(&mut b, t(5), Success, 1);
        call(&mut b, t(11), Success, 2);
        call(&mut b, t(12), Failure, 2);
        assert_eq!((b.state(), b.window.total.calls), (Closed, 5), "the failures at 0 s dropped out");
        call(&mut b, t(12), Failure, 1);
        assert_eq!(b.state(), Open, "3 of 6 in the last 10 s");
        let mut w = Window::new(SlidingWindow::Time { seconds: 10 });
        (0..5).for_each(|_| _ = w.record(t(3), true, false));
        assert_eq!(w.record(t(1_000), false, false).calls, 1);
    }

    #[test]
    fn guide_end_to_end_open_rejects_then_bounded_probes_close() {
        let mut b = breaker(BreakerConfig::guide());
        for _ in 0..20 {
            call(&mut b, t(0), Failure, 4);
            call(&mut b, t(0), Success, 1);
        }
        assert_eq!(b.state(), Closed, "80 % failures, but no rate rule and never 5 in a row");
        call(&mut b, t(0), Failure, 5);
        assert_eq!(b.try_acquire(t(30)), Admission::Rejected { retry_at: Some(t(60)) });
        assert_eq!(b.poll_timeout(), Some(t(60)));
        assert!(!b.would_admit(t(59)) && b.would_admit(t(60)));
        assert_eq!(b.state(), Open, "would_admit changes nothing");
        call(&mut b, t(60), Success, 1);
        call(&mut b, t(61), Failure, 1);
        assert_eq!(b.reopens_at(), Some(t(121)), "constant 60 s");
        let probes: Vec<_> = (0..3).map(|_| acquire(&mut b, t(121))).collect();
        assert!(probes.iter().all(Permit::is_probe));
        assert_eq!(b.try_acquire(t(122)), Admission::Rejected { retry_at: None });
        for p in probes {
            assert_eq!(b.state(), HalfOpen);
            b.on_outcome(t(122), p, Success, Duration::ZERO);
        }
        let expected = [
            (Closed, Open, R::ConsecutiveFailures),
            (Open, HalfOpen, R::OpenTimeoutElapsed),
            (HalfOpen, Open, R::ProbeFailed),
            (Open, HalfOpen, R::OpenTimeoutElapsed),
            (HalfOpen, Closed, R::ProbesSucceeded),
        ];
        assert_eq!(events(&mut b), expected);
        assert!(!acquire(&mut b, t(123)).is_probe());
    }

    #[test]
    fn ignored_and_cancelled_probes_give_their_slot_back() {
        let mut b = breaker(cfg(|c| (c.success_threshold, c.half_open_max_probes) = (2, 2)));
        call(&mut b, t(0), Failure, 5);
        let (p1, p2) = (acquire(&mut b, t(60)), acquire(&mut b, t(60)));
        assert!(b.try_acquire(t(60)).permit().is_none());
        b.on_outcome(t(61), p1, Ignored, Duration::ZERO);
        let p3 = acquire(&mut b, t(61));
        b.on_cancel(p2);
        let p4 = acquire(&mut b, t(61));
        assert!(b.try_acquire(t(61)).permit().is_none());
        b.on_outcome(t(62), p3, Success, Duration::ZERO);
        b.on_outcome(t(62), p4, Success, Duration::ZERO);
        assert_eq!(b.state(), Closed);
    }

    #[test]
    fn backoff_grows_caps_jitters_and_resets_on_close() {
        let mut b = Breaker::new(cfg(|c| c.jitter = 0.2), 42).unwrap();
        call(&mut b, t(0), Failure, 5);
        let (mut now, mut factors) = (t(0), vec![]);
        for expected in [60.0, 120.0, 240.0, 300.0, 300.0, 300.0] {
            let until = b.reopens_at().unwrap();
            let factor = until.saturating_since(now).as_secs_f64() / expected;
            assert!((0.8..=1.2).contains(&factor), "{factor} x {expected}");
            factors.push(factor);
            now = until;
            call(&mut b, now, Failure, 1);
        }
        factors.dedup();
        assert!(factors.len() > 1, "jitter varies: {factors:?}");
        now = b.reopens_at().unwrap();
        call(&mut b, now, Success, 3);
        call(&mut b, now, Failure, 5);
        let secs = b.reopens_at().unwrap().saturating_since(now).as_secs_f64();
        assert!((48.0..=72.0).contains(&secs), "back to 60 s: {secs}");
    }

    #[test]
    fn max_wait_in_half_open_reopens_and_late_outcomes_are_stale() {
        let mut b = breaker(cfg(|c| c.max_wait_in_half_open = Some(Duration::from_secs(10))));
        call(&mut b, t(0), Failure, 5);
        b.handle_timeout(t(60));
        let p = acquire(&mut b, t(60));
        assert_eq!(b.poll_timeout(), Some(t(70)));
        b.handle_timeout(t(69));
        assert_eq!(b.state(), HalfOpen);
        b.handle_timeout(t(70));
        assert_eq!(b.reopens_at(), Some(t(190)));
        b.on_outcome(t(71), p, Failure, Duration::ZERO);
        assert_eq!(b.reopens_at(), Some(t(190)), "a stale probe changes nothing");
        assert_eq!(events(&mut b).last(), Some(&(HalfOpen, Open, R::HalfOpenTimeout)));
    }

    #[test]
    fn stale_permits_neither_count_nor_free_slots() {
        let mut b = breaker(cfg(|_| {}));
        let old_closed = acquire(&mut b, t(0));
        call(&mut b, t(0), Failure, 5);
        let old_probe = acquire(&mut b, t(60));
        call(&mut b, t(60), Failure, 1);
        let now = b.reopens_at().unwrap();
        let probes: Vec<_> = (0..3).map(|_| acquire(&mut b, now)).collect();
        b.on_cancel(old_probe);
        b.on_outcome(now, old_probe, Ignored, Duration::ZERO);
        assert!(b.try_acquire(now).permit().is_none(), "the old probe freed no new slot");
        b.on_outcome(now, old_closed, Success, Duration::ZERO);
        b.on_outcome(now, probes[0], Success, Duration::ZERO);
        b.on_outcome(now, probes[1], Success, Duration::ZERO);
        assert_eq!(b.state(), HalfOpen, "the stale success did not count");
        b.on_outcome(now, probes[2], Success, Duration::ZERO);
        b.on_outcome(now, probes[2], Failure, Duration::ZERO);
        assert_eq!((b.state(), b.consecutive_failures), (Closed, 0));
    }

    #[test]
    fn forced_open_disabled_and_reset() {
        let mut b = breaker(cfg(|_| {}));
        b.force_open(t(1));
        assert_eq!(b.try_acquire(t(1000)), Admission::Rejected { retry_at: None });
        assert!(!b.would_admit(t(1000)) && b.poll_timeout().is_none());
        b.force_closed(t(2));
        call(&mut b, t(2), Failure, 100);
        assert_eq!((b.state(), b.window.total.calls), (Disabled, 0));
        b.reset(t(3));
        call(&mut b, t(3), Failure, 4);
        b.reset(t(3));
        call(&mut b, t(3), Failure, 1);
        assert_eq!(b.state(), Closed, "reset cleared the count");
        let manual =
            [(Closed, ForcedOpen, R::Manual), (ForcedOpen, Disabled, R::Manual), (Disabled, Closed, R::Manual)];
        assert_eq!(events(&mut b), manual);
        assert_eq!(breaker(cfg(|c| c.mode = BreakerMode::Disabled)).state(), Disabled);
        assert_eq!(breaker(cfg(|c| c.mode = BreakerMode::ForcedOpen)).state(), ForcedOpen);
    }

    #[test]
    fn event_queue_is_bounded_and_drops_the_oldest() {
        let mut b = breaker(cfg(|_| {}));
        let capacity = b.events.capacity();
        for i in 0..100 {
            b.force_open(t(i));
            b.reset(t(i));
        }
        assert_eq!((b.dropped_events(), b.events.capacity()), (136, capacity), "no growth, no allocation");
        let all: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
        assert_eq!((all.len(), all[0].at, all[63].at, all[63].to), (64, t(68), t(99), Closed));
    }

    #[test]
    fn config_validation_and_serde() {
        assert_eq!(BreakerConfig::default().validate(), Ok(()));
        assert_eq!(BreakerConfig::guide().validate(), Ok(()));
        type Change = fn(&mut BreakerConfig);
        let cases: [(&str, Change); 12] = [
            ("success_threshold", |c| c.success_threshold = 4),
            ("half_open_max_probes", |c| c.half_open_max_probes = 0),
            ("reset_timeout", |c| c.reset_timeout = Duration::ZERO),
            ("max_reset_timeout", |c| c.max_reset_timeout = Duration::from_secs(59)),
            ("backoff_multiplier", |c| c.backoff_multiplier = 0.5),
            ("backoff_multiplier", |c| c.backoff_multiplier = f64::NAN),
            ("jitter", |c| c.jitter = -0.1),
            ("failure_rate_threshold", |c| c.failure_rate_threshold = Some(0.0)),
            ("slow_call_rate_threshold", |c| c.slow_call_rate_threshold = 101.0),
            ("window.size", |c| c.window = SlidingWindow::Count { size: 0 }),
            ("minimum_calls", |c| c.minimum_calls = 0),
            ("max_wait_in_half_open", |c| c.max_wait_in_half_open = Some(Duration::ZERO)),
        ];
        for (field, change) in cases {
            assert_eq!(Breaker::new(cfg(change), 0).unwrap_err().field, field);
        }
        let text = "reset_timeout = 2.5\nmode = \"forced_open\"\nwindow = { kind = \"time\", seconds = 30 }";
        let parsed: BreakerConfig = toml::from_str(text).unwrap();
        let window = SlidingWindow::Time { seconds: 30 };
        let expected = BreakerConfig { mode: BreakerMode::ForcedOpen, window, ..BreakerConfig::default() };
        assert_eq!(parsed, BreakerConfig { reset_timeout: Duration::from_millis(2500), ..expected });
        let json = serde_json::to_string(&expected).unwrap();
        assert_eq!(serde_json::from_str::<BreakerConfig>(&json).unwrap(), expected);
        assert!(toml::from_str::<BreakerConfig>("failure_treshold = 1").is_err());
    }

    #[test]
    fn same_seed_same_events() {
        let run = |seed| {
            let mut b = Breaker::new(cfg(|c| (c.jitter, c.backoff_multiplier) = (0.5, 1.5)), seed).unwrap();
            let mut log = vec![];
            for round in 0..10 {
                let mut now = t(round * 10_000);
                while b.state() != Open {
                    call(&mut b, now, Failure, 1);
                }
                for _ in 0..3 {
                    now = b.reopens_at().unwrap_or(now);
                    call(&mut b, now, if round % 2 == 0 { Failure } else { Success }, 1);
                }
                log.extend(std::iter::from_fn(|| b.poll_event()));
            }
            log
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u64),
        Rewind(u64),
        Acquire,
        Report(usize, usize, u64),
        Cancel(usize),
        Tick,
        Manual(u8),
    }

    fn arb_config() -> impl Strategy<Value = BreakerConfig> {
        let counts = (1u32..5, 0u32..5, 0u32..6, 1u32..8, 1u32..10, any::<bool>());
        let times = (1u64..20, 1.0f64..4.0, 0.0f64..=1.0, proptest::option::of(1u64..30));
        let rates = (proptest::option::of(1.0f64..=100.0), proptest::option::of(1u64..3), 1.0f64..=100.0);
        (counts, times, rates).prop_map(|(counts, times, rates)| {
            let (probes, successes, failures, size, minimum_calls, by_time) = counts;
            let (reset, backoff_multiplier, jitter, wait) = times;
            let (failure_rate_threshold, slow, slow_call_rate_threshold) = rates;
            BreakerConfig {
                mode: BreakerMode::Normal,
                failure_threshold: failures,
                success_threshold: 1 + successes % probes,
                reset_timeout: Duration::from_secs(reset),
                max_reset_timeout: Duration::from_secs(reset * 5),
                backoff_multiplier,
                jitter,
                half_open_max_probes: probes,
                max_wait_in_half_open: wait.map(Duration::from_secs),
                window: if by_time { SlidingWindow::Time { seconds: size } } else { SlidingWindow::Count { size } },
                failure_rate_threshold,
                minimum_calls,
                slow_call_duration: slow.map(Duration::from_secs),
                slow_call_rate_threshold,
            }
        })
    }

    fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            4 => (0u64..30_000).prop_map(Op::Advance),
            1 => (0u64..100_000).prop_map(Op::Rewind),
            8 => Just(Op::Acquire),
            8 => (any::<usize>(), 0usize..3, 0u64..4_000).prop_map(|(i, o, ms)| Op::Report(i, o, ms)),
            2 => any::<usize>().prop_map(Op::Cancel),
            2 => Just(Op::Tick),
            1 => (0u8..3).prop_map(Op::Manual),
        ];
        proptest::collection::vec(op, 1..200)
    }

    /// Runs `ops`, checking the breaker after every step. With `once`, each permit is reported
    /// once (the contract) and the probe bound is checked against a model; without, permits are
    /// kept and may be reported again and again, which must not panic.
    fn drive(config: BreakerConfig, ops: Vec<Op>, seed: u64, once: bool) -> Result<(), TestCaseError> {
        let max = config.half_open_max_probes;
        let mut b = Breaker::new(config, seed).unwrap();
        let (mut now, mut held, mut generation, mut counted) = (Time::ZERO, Vec::<Permit>::new(), 0, 0u32);
        let take = |held: &mut Vec<Permit>, i: usize| {
            let i = i % held.len();
            if once { held.swap_remove(i) } else { held[i] }
        };
        for op in ops {
            match op {
                Op::Advance(ms) => now = now + Duration::from_millis(ms),
                Op::Rewind(ms) => now = now - Duration::from_millis(ms),
                Op::Acquire => {
                    let predicted = b.would_admit(now);
                    let permit = b.try_acquire(now).permit();
                    prop_assert_eq!(predicted, permit.is_some());
                    held.extend(permit);
                }
                Op::Report(i, o, ms) if !held.is_empty() => {
                    let (p, outcome, before) = (take(&mut held, i), [Success, Failure, Ignored][o], b.generation);
                    b.on_outcome(now, p, outcome, Duration::from_millis(ms));
                    let same_period = b.generation == before && p.generation == before;
                    counted += u32::from(same_period && p.is_probe() && outcome == Success);
                }
                Op::Cancel(i) if !held.is_empty() => b.on_cancel(take(&mut held, i)),
                Op::Tick => b.handle_timeout(now),
                Op::Manual(0) => b.force_open(now),
                Op::Manual(1) => b.force_closed(now),
                Op::Manual(_) => b.reset(now),
                _ => {}
            }
            if b.generation != generation {
                (generation, counted) = (b.generation, 0);
            }
            prop_assert_eq!(b.reopens_at().is_some(), b.state() == Open);
            prop_assert!(b.probes_in_flight + b.probe_successes <= max);
            while let Some(e) = b.poll_event() {
                prop_assert_ne!(e.from, e.to);
            }
            let in_flight = held.iter().filter(|p| p.is_probe() && p.generation == b.generation).count() as u32;
            if once {
                prop_assert!(in_flight + counted <= max, "{in_flight} out + {counted} counted > {max}");
            }
            if once && b.state() == HalfOpen {
                prop_assert_eq!((b.probes_in_flight, b.probe_successes), (in_flight, counted));
                prop_assert!(in_flight > 0 || b.would_admit(now) || b.half_open_expired(now), "stuck half-open");
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Probes out plus counted successes never exceed `half_open_max_probes`, HALF_OPEN with
        /// no probe out always admits, and would_admit predicts try_acquire.
        #[test]
        fn half_open_probe_bound_holds(config in arb_config(), ops in arb_ops(), seed in any::<u64>()) {
            drive(config, ops, seed, true)?;
        }

        /// Double and stale reports, manual controls and time going backwards never panic.
        #[test]
        fn never_panics(config in arb_config(), ops in arb_ops(), seed in any::<u64>()) {
            drive(config, ops, seed, false)?;
        }
    }
}
