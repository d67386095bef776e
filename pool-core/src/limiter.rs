//! Client-side rate limiting, so a client stays under `rate_limit_per_minute` instead of
//! learning the limit from 429s, and honours a server's `Retry-After` for every request.
//!
//! A GCRA (generic cell rate algorithm): one "theoretical arrival time" in integer
//! nanoseconds, equivalent to a token bucket holding `burst` tokens refilled at `rate`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, check_range};
use crate::time::Time;

const EVENT_CAPACITY: usize = 16;
const NANOS_PER_MINUTE: u64 = 60_000_000_000;

/// Rate limiter settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimiterConfig {
    /// Requests allowed per minute (1..=10000000), or `None` for no limit. Default: None.
    pub rate_per_minute: Option<u32>,
    /// Requests allowed at once after an idle spell (1..=1000000). Default: 10.
    pub burst: u32,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig { rate_per_minute: None, burst: 10 }
    }
}

impl LimiterConfig {
    /// Refuses a rate or burst outside its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(rate) = self.rate_per_minute {
            check_range("rate_per_minute", rate, 1, 10_000_000)?;
        }
        check_range("burst", self.burst, 1, 1_000_000)
    }
}

/// The answer to "may a request go now?".
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// Yes; one permit was consumed.
    Granted,
    /// No; ask again at this time (nothing was consumed).
    WaitUntil(Time),
}

/// Something worth logging that the limiter did.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterEvent {
    /// A pause (e.g. a `Retry-After`) was set or extended; nothing is granted before `until`.
    Paused {
        /// When the pause was asked for.
        at: Time,
        /// When it ends.
        until: Time,
    },
}

/// The limiter's state at a moment, for metrics and debugging.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimiterSnapshot {
    /// The configured rate; `None` is unlimited.
    pub rate_per_minute: Option<u32>,
    /// The configured burst.
    pub burst: u32,
    /// Permits available now, fractional (0..=burst), ignoring any pause; `None` when unlimited.
    pub available: Option<f64>,
    /// End of the pause in force, if any.
    pub paused_until: Option<Time>,
    /// Events dropped because the queue was full.
    pub dropped_events: u64,
}

/// A GCRA rate limiter shared by every request of one client.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    config: LimiterConfig,
    /// Nanoseconds per permit, `ceil(60e9 / rate)` so the rate is never exceeded; 0 = unlimited.
    interval: u64,
    /// How far ahead of `now` the theoretical arrival time may run: `(burst - 1) * interval`.
    tolerance: u64,
    /// Theoretical arrival time, in nanoseconds.
    tat: u64,
    paused_until: Option<Time>,
    events: VecDeque<LimiterEvent>,
    dropped_events: u64,
}

impl RateLimiter {
    /// A limiter with a full burst available, or the config's error.
    pub fn new(config: LimiterConfig) -> Result<RateLimiter, ConfigError> {
        config.validate()?;
        let per_minute = |rate: u32| NANOS_PER_MINUTE.div_ceil(u64::from(rate));
        let interval = config.rate_per_minute.map_or(0, per_minute);
        let tolerance = u64::from(config.burst - 1) * interval;
        Ok(RateLimiter {
            config,
            interval,
            tolerance,
            tat: 0,
            paused_until: None,
            events: VecDeque::with_capacity(EVENT_CAPACITY),
            dropped_events: 0,
        })
    }

    /// Takes one permit if one is available at `now` and no pause is in force.
    #[inline]
    pub fn try_acquire(&mut self, now: Time) -> Acquire {
        let earliest = self.earliest(now);
        if earliest > now {
            return Acquire::WaitUntil(earliest);
        }
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
        }
        if self.interval > 0 {
            self.tat = self.tat.max(now.as_nanos()).saturating_add(self.interval);
        }
        Acquire::Granted
    }

    /// When [`try_acquire`](Self::try_acquire) would next be granted (`now` if it would be now).
    #[inline]
    pub fn earliest(&self, now: Time) -> Time {
        let by_rate = Time::from_nanos(self.tat.saturating_sub(self.tolerance)); // ZERO when unlimited
        now.max(by_rate).max(self.paused_until.unwrap_or(Time::ZERO))
    }

    /// Grants nothing before `until` (a server's `Retry-After`). Only ever extends a pause;
    /// an `until` at or before `now` is ignored.
    pub fn pause_until(&mut self, now: Time, until: Time) {
        if until <= now || self.paused_until.is_some_and(|current| current >= until) {
            return;
        }
        self.paused_until = Some(until);
        if self.events.len() == EVENT_CAPACITY {
            self.events.pop_front();
            self.dropped_events += 1;
        }
        self.events.push_back(LimiterEvent::Paused { at: now, until });
    }

    /// End of the latest pause, until a grant after it clears it.
    pub fn paused_until(&self) -> Option<Time> {
        self.paused_until
    }

    /// The oldest undrained event (at most 16 are kept; older ones are dropped and counted).
    pub fn poll_event(&mut self) -> Option<LimiterEvent> {
        self.events.pop_front()
    }

    /// The limiter's state at `now`.
    pub fn snapshot(&self, now: Time) -> LimiterSnapshot {
        let available = (self.interval > 0).then(|| {
            let tat = self.tat.max(now.as_nanos());
            let headroom = now.as_nanos().saturating_add(self.tolerance + self.interval).saturating_sub(tat);
            (headroom as f64 / self.interval as f64).clamp(0.0, f64::from(self.config.burst))
        });
        LimiterSnapshot {
            rate_per_minute: self.config.rate_per_minute,
            burst: self.config.burst,
            available,
            paused_until: self.paused_until.filter(|&until| until > now),
            dropped_events: self.dropped_events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn config(rate_per_minute: Option<u32>, burst: u32) -> LimiterConfig {
        LimiterConfig { rate_per_minute, burst }
    }

    fn limiter(rate: Option<u32>, burst: u32) -> RateLimiter {
        RateLimiter::new(config(rate, burst)).unwrap()
    }

    fn paused(at: Time, until: Time) -> Option<LimiterEvent> {
        Some(LimiterEvent::Paused { at, until })
    }

    fn secs(n: u64) -> Time {
        Time::ZERO + Duration::from_secs(n)
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |rate, burst| RateLimiter::new(config(rate, burst)).unwrap_err();
        assert_eq!(bad(Some(0), 1).field, "rate_per_minute");
        assert_eq!(bad(Some(10_000_001), 1).field, "rate_per_minute");
        assert_eq!(bad(None, 0).field, "burst");
        assert_eq!(bad(Some(60), 1_000_001).field, "burst");
        assert!(RateLimiter::new(config(Some(10_000_000), 1_000_000)).is_ok());
    }

    #[test]
    fn config_defaults_and_serde() {
        let parsed: LimiterConfig = toml::from_str("rate_per_minute = 1000").unwrap();
        assert_eq!(parsed, config(Some(1000), 10));
        assert!(toml::from_str::<LimiterConfig>("rate = 5").is_err());
        let empty: LimiterConfig = toml::from_str("").unwrap();
        assert_eq!(empty, LimiterConfig::default());
    }

    #[test]
    fn burst_then_steady_rate() {
        let mut l = limiter(Some(60), 3); // one a second
        for _ in 0..3 {
            assert_eq!(l.try_acquire(secs(10)), Acquire::Granted);
        }
        assert_eq!(l.try_acquire(secs(10)), Acquire::WaitUntil(secs(11)));
        assert_eq!(l.earliest(secs(10)), secs(11));
        let just_before = secs(11) - Duration::from_nanos(1);
        assert_eq!(l.try_acquire(just_before), Acquire::WaitUntil(secs(11)));
        assert_eq!(l.try_acquire(secs(11)), Acquire::Granted);
        assert_eq!(l.try_acquire(secs(11)), Acquire::WaitUntil(secs(12)));
        // Idle for a long time: the burst refills, but no further.
        assert_eq!(l.snapshot(secs(100)).available, Some(3.0));
        for _ in 0..3 {
            assert_eq!(l.try_acquire(secs(100)), Acquire::Granted);
        }
        assert!(matches!(l.try_acquire(secs(100)), Acquire::WaitUntil(_)));
    }

    #[test]
    fn snapshot_reports_partial_tokens() {
        let mut l = limiter(Some(60), 2);
        assert_eq!(l.snapshot(secs(5)).available, Some(2.0));
        assert_eq!(l.try_acquire(secs(5)), Acquire::Granted);
        assert_eq!(l.try_acquire(secs(5)), Acquire::Granted);
        assert_eq!(l.snapshot(secs(5)).available, Some(0.0));
        let half = l.snapshot(secs(5) + Duration::from_millis(500));
        assert!((half.available.unwrap() - 0.5).abs() < 1e-9);
        let json = serde_json::to_value(l.snapshot(secs(5))).unwrap();
        assert_eq!(json["burst"], 2);
        assert_eq!(json["rate_per_minute"], 60);
    }

    #[test]
    fn pause_blocks_extends_and_emits() {
        let mut l = limiter(None, 1);
        assert_eq!(l.try_acquire(secs(1)), Acquire::Granted);
        l.pause_until(secs(1), secs(30));
        assert_eq!(l.paused_until(), Some(secs(30)));
        assert_eq!(l.try_acquire(secs(2)), Acquire::WaitUntil(secs(30)));
        l.pause_until(secs(2), secs(10)); // shorter: ignored
        assert_eq!(l.paused_until(), Some(secs(30)));
        l.pause_until(secs(3), secs(40));
        assert_eq!(l.snapshot(secs(3)).paused_until, Some(secs(40)));
        assert_eq!(l.poll_event(), paused(secs(1), secs(30)));
        assert_eq!(l.poll_event(), paused(secs(3), secs(40)));
        assert_eq!(l.poll_event(), None);
        let just_before = secs(40) - Duration::from_nanos(1);
        assert_eq!(l.try_acquire(just_before), Acquire::WaitUntil(secs(40)));
        assert_eq!(l.try_acquire(secs(40)), Acquire::Granted);
        assert_eq!(l.paused_until(), None);
    }

    #[test]
    fn event_queue_drops_oldest() {
        let mut l = limiter(Some(60), 1);
        for n in 1..=20 {
            l.pause_until(Time::ZERO, secs(n));
        }
        assert_eq!(l.snapshot(Time::ZERO).dropped_events, 4);
        assert_eq!(l.poll_event(), paused(Time::ZERO, secs(5)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire(u64),
        AcquireWhenReady,
        Pause(u64, u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        // Gaps in ns: bursts at one instant, sub-interval gaps at high rates, seconds at low ones.
        let gap = || prop_oneof![Just(0u64), 0u64..2_000_000, 0u64..2_000_000_000];
        let op = prop_oneof![
            6 => gap().prop_map(Op::Acquire),
            3 => Just(Op::AcquireWhenReady),
            1 => (gap(), 0u64..5_000_000_000).prop_map(|(dt, len)| Op::Pause(dt, len)),
        ];
        prop::collection::vec(op, 1..300)
    }

    /// One `try_acquire` in a run: when, whether granted, and whether a pause set before it
    /// (in call order) was still in force.
    struct Attempt {
        at: u64,
        granted: bool,
        paused: bool,
    }

    /// Runs `ops` at non-decreasing times; returns the attempts and the time of the last op.
    fn run(l: &mut RateLimiter, ops: &[Op]) -> (Vec<Attempt>, u64) {
        let (mut now, mut pause_end, mut attempts) = (0, 0, vec![]);
        for op in ops {
            match *op {
                Op::Acquire(_) | Op::AcquireWhenReady => {
                    now = match *op {
                        Op::Acquire(dt) => now + dt,
                        _ => l.earliest(Time::from_nanos(now)).as_nanos(),
                    };
                    let earliest = l.earliest(Time::from_nanos(now));
                    let acquire = l.try_acquire(Time::from_nanos(now));
                    let granted = acquire == Acquire::Granted;
                    assert_eq!(granted, earliest.as_nanos() == now);
                    if let Acquire::WaitUntil(t) = acquire {
                        assert_eq!(t, earliest);
                    }
                    attempts.push(Attempt { at: now, granted, paused: now < pause_end });
                }
                Op::Pause(dt, len) => {
                    now += dt;
                    l.pause_until(Time::from_nanos(now), Time::from_nanos(now + len));
                    pause_end = pause_end.max(now + len);
                }
            }
        }
        (attempts, now)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn grants_never_exceed_rate_plus_burst(
            rate in 1u32..100_000,
            burst in 1u32..20,
            ops in ops(),
        ) {
            let mut l = limiter(Some(rate), burst);
            let (attempts, _) = run(&mut l, &ops);
            prop_assert!(!attempts.iter().any(|a| a.granted && a.paused), "grant in a pause");
            let grants: Vec<u64> = attempts.iter().filter(|a| a.granted).map(|a| a.at).collect();
            let minute = u128::from(NANOS_PER_MINUTE);
            // The fullest windows run from one grant to another: [g_i, g_j] holds j - i + 1.
            for i in 0..grants.len() {
                for j in i..grants.len() {
                    let count = (j - i + 1) as u128;
                    let window = u128::from(grants[j] - grants[i]);
                    let bound = u128::from(rate) * window + u128::from(burst) * minute;
                    prop_assert!(count * minute <= bound, "{count} grants in {window} ns");
                }
            }
        }

        #[test]
        fn unlimited_grants_all_but_paused(ops in ops()) {
            let mut l = limiter(None, 1);
            let (attempts, _) = run(&mut l, &ops);
            prop_assert!(attempts.iter().all(|a| a.granted != a.paused));
        }

        #[test]
        fn earliest_is_exact(rate in 1u32..1_000, burst in 1u32..5, ops in ops()) {
            let mut l = limiter(Some(rate), burst);
            let (_, last) = run(&mut l, &ops);
            let now = Time::from_nanos(last + 1);
            let at = l.earliest(now);
            if at > now {
                let just_before = at - Duration::from_nanos(1);
                prop_assert_eq!(l.clone().try_acquire(just_before), Acquire::WaitUntil(at));
            }
            prop_assert_eq!(l.try_acquire(at), Acquire::Granted);
        }
    }
}
