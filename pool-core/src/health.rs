//! Per-endpoint health: passive outlier ejection and active checks.
//!
//! A pool that keeps sending to a failing endpoint turns one bad host into failures for everyone. Passive
//! detection (as Envoy's outlier detection) ejects an endpoint after consecutive failed requests, for a time that
//! grows with each ejection; active checks (the guide: every 300 s, 5 s timeout, 3 failed checks) probe endpoints
//! on a jittered schedule and mark them unhealthy until enough checks pass. Never more than a set share of
//! endpoints is ejected, and when too few are usable (panic mode) all are used rather than overload a few.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, check_range, check_span};
use crate::rng::Rng;
use crate::time::Time;

const EVENT_CAPACITY: usize = 64;
const MAX_ENDPOINTS: usize = 10_000;

/// Settings for passive outlier detection, active health checks and connection recycling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Consecutive failed requests that eject an endpoint; 0 turns passive detection off. Default: 5.
    pub consecutive_failures: u32,
    /// Ejection time per ejection: base x times ejected, capped (seconds). Default: 30 s.
    #[serde(with = "crate::time::secs")]
    pub base_ejection_time: Duration,
    /// Cap on one ejection (seconds); each such span spent readmitted forgives one past ejection. Default: 300 s.
    #[serde(with = "crate::time::secs")]
    pub max_ejection_time: Duration,
    /// Most endpoints ejected at once, in percent (at least one may be when there are two or more). Default: 50.
    pub max_ejection_percent: u32,
    /// Below this percentage of usable endpoints, all are treated as usable; 0 turns panic mode off. Default: 50.
    pub panic_threshold_percent: u32,
    /// Whether active checks are scheduled. Default: true.
    pub active_checks: bool,
    /// Interval between active checks of a healthy endpoint (seconds). Default: 300 s.
    #[serde(with = "crate::time::secs")]
    pub health_check_interval: Duration,
    /// Interval between active checks of an unhealthy or ejected endpoint (seconds). Default: 10 s.
    #[serde(with = "crate::time::secs")]
    pub unhealthy_check_interval: Duration,
    /// Each interval is scaled by a random factor in 1 +- this fraction (0..=1). Default: 0.1.
    pub check_jitter: f64,
    /// A check that took longer than this failed (seconds). Default: 5 s.
    #[serde(with = "crate::time::secs")]
    pub check_timeout: Duration,
    /// Consecutive failed checks that mark an endpoint unhealthy. Default: 3.
    pub max_failed_checks: u32,
    /// Consecutive passed checks that mark an unhealthy endpoint healthy again. Default: 2.
    pub healthy_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
            panic_threshold_percent: 50,
            active_checks: true,
            health_check_interval: Duration::from_secs(300),
            unhealthy_check_interval: Duration::from_secs(10),
            check_jitter: 0.1,
            check_timeout: Duration::from_secs(5),
            max_failed_checks: 3,
            healthy_threshold: 2,
        }
    }
}

impl HealthConfig {
    /// Refuses values that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("consecutive_failures", self.consecutive_failures, 0, 10_000)?;
        check_span("base_ejection_time", self.base_ejection_time)?;
        check_span("max_ejection_time", self.max_ejection_time)?;
        if self.max_ejection_time < self.base_ejection_time {
            let problem = "must be at least base_ejection_time";
            return Err(ConfigError::new("max_ejection_time", problem));
        }
        let percent = |field: &str, value: u32| check_range(field, value, 0, 100);
        percent("max_ejection_percent", self.max_ejection_percent)?;
        percent("panic_threshold_percent", self.panic_threshold_percent)?;
        check_span("health_check_interval", self.health_check_interval)?;
        check_span("unhealthy_check_interval", self.unhealthy_check_interval)?;
        if !(0.0..=1.0).contains(&self.check_jitter) {
            let problem = format!("must be in 0..=1, got {}", self.check_jitter);
            return Err(ConfigError::new("check_jitter", problem));
        }
        check_span("check_timeout", self.check_timeout)?;
        check_range("max_failed_checks", self.max_failed_checks, 1, 10_000)?;
        check_range("healthy_threshold", self.healthy_threshold, 1, 10_000)?;
        Ok(())
    }
}

/// Where an endpoint stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointStatus {
    /// Takes traffic.
    Healthy,
    /// Ejected by passive detection until the given time (reported even if also unhealthy).
    Ejected {
        /// When the ejection ends.
        until: Time,
    },
    /// Failed too many active checks; stays so until enough checks pass.
    Unhealthy,
}

/// Why an ejected endpoint came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadmitReason {
    /// Its ejection time ran out.
    EjectionExpired,
    /// An active check passed.
    PassedCheck,
}

/// A health transition, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthEvent {
    /// Passive detection ejected an endpoint.
    Ejected {
        /// When.
        at: Time,
        /// Which endpoint.
        endpoint: usize,
        /// When the ejection ends.
        until: Time,
        /// Ejections counted for this endpoint, this one included.
        times: u32,
    },
    /// An ejected endpoint takes traffic again.
    Readmitted {
        /// When (for an expiry, when the ejection ended).
        at: Time,
        /// Which endpoint.
        endpoint: usize,
        /// Why.
        after: ReadmitReason,
    },
    /// Active checks marked an endpoint unhealthy.
    MarkedUnhealthy {
        /// When.
        at: Time,
        /// Which endpoint.
        endpoint: usize,
    },
    /// Active checks marked an endpoint healthy again.
    MarkedHealthy {
        /// When.
        at: Time,
        /// Which endpoint.
        endpoint: usize,
    },
    /// Too few endpoints are usable: all are treated as usable.
    PanicModeEntered {
        /// When.
        at: Time,
    },
    /// Enough endpoints are usable again.
    PanicModeLeft {
        /// When.
        at: Time,
    },
}

#[derive(Debug, Clone, Default)]
struct Endpoint {
    failures: u32,
    times_ejected: u32,
    ejected_until: Option<Time>,
    /// When the last ejection ended (only read once `times_ejected > 0`).
    readmitted_at: Time,
    unhealthy: bool,
    failed_checks: u32,
    passed_checks: u32,
    /// `None` while a check is in progress or active checks are off.
    next_check: Option<Time>,
}

impl Endpoint {
    fn ejected(&self, now: Time) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    fn healthy(&self, now: Time) -> bool {
        !self.unhealthy && !self.ejected(now)
    }
}

#[derive(Debug, Clone, Default)]
struct Events {
    queue: VecDeque<HealthEvent>,
    dropped: u64,
}

impl Events {
    fn push(&mut self, event: HealthEvent) {
        if self.queue.len() == EVENT_CAPACITY {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(event);
    }
}

/// Health of endpoints `0..endpoints()`, fed by request outcomes and check results.
///
/// Methods taking an endpoint index panic if it is not below [`HealthTracker::endpoints`].
#[derive(Debug, Clone)]
pub struct HealthTracker {
    config: HealthConfig,
    endpoints: Vec<Endpoint>,
    rng: Rng,
    in_panic: bool,
    events: Events,
}

impl HealthTracker {
    /// A tracker with all endpoints healthy; first checks are due one jittered interval from `now`.
    pub fn new(config: HealthConfig, endpoints: usize, now: Time, seed: u64) -> Result<HealthTracker, ConfigError> {
        config.validate()?;
        check_range("endpoints", endpoints, 1, MAX_ENDPOINTS)?;
        let mut rng = Rng::with_seed(seed);
        let mut endpoints = vec![Endpoint::default(); endpoints];
        if config.active_checks {
            for ep in &mut endpoints {
                ep.next_check = Some(now + rng.jitter(config.health_check_interval, config.check_jitter));
            }
        }
        let events = Events { queue: VecDeque::with_capacity(EVENT_CAPACITY), dropped: 0 };
        Ok(HealthTracker { config, endpoints, rng, in_panic: false, events })
    }

    /// The configuration in use.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Number of endpoints tracked.
    pub fn endpoints(&self) -> usize {
        self.endpoints.len()
    }

    /// Most endpoints that may be ejected at once.
    pub fn max_ejected(&self) -> usize {
        let n = self.endpoints.len();
        let share = n * self.config.max_ejection_percent as usize / 100;
        if n > 1 { share.max(1) } else { share }
    }

    /// A request to `endpoint` succeeded: its run of failures ends.
    #[inline]
    pub fn on_request_success(&mut self, _now: Time, endpoint: usize) {
        self.endpoints[endpoint].failures = 0;
    }

    /// A request to `endpoint` failed; enough in a row eject it, if the ejection share allows.
    pub fn on_request_failure(&mut self, now: Time, endpoint: usize) {
        if self.config.consecutive_failures == 0 {
            return;
        }
        self.expire(now);
        let ep = &mut self.endpoints[endpoint];
        if ep.ejected_until.is_some() {
            return;
        }
        ep.failures = ep.failures.saturating_add(1);
        if ep.failures < self.config.consecutive_failures {
            return;
        }
        let ejected = self.endpoints.iter().filter(|e| e.ejected_until.is_some());
        if ejected.count() < self.max_ejected() {
            self.eject(now, endpoint);
            self.update_panic(now);
        }
    }

    fn eject(&mut self, now: Time, endpoint: usize) {
        let config = &self.config;
        let sooner = self.rng.jitter(config.unhealthy_check_interval, config.check_jitter);
        let ep = &mut self.endpoints[endpoint];
        // One past ejection is forgiven per max_ejection_time spent readmitted.
        let healthy_for = now.saturating_since(ep.readmitted_at).as_nanos();
        let forgiven = u32::try_from(healthy_for / config.max_ejection_time.as_nanos()).unwrap_or(u32::MAX);
        let times = ep.times_ejected.saturating_sub(forgiven).saturating_add(1);
        let span = config.base_ejection_time.checked_mul(times).unwrap_or(Duration::MAX);
        let until = now + span.min(config.max_ejection_time);
        ep.times_ejected = times;
        ep.ejected_until = Some(until);
        ep.failures = 0;
        // Probe an ejected endpoint at the unhealthy interval: a passed check readmits it early.
        ep.next_check = ep.next_check.map(|next| next.min(now + sooner));
        self.events.push(HealthEvent::Ejected { at: now, endpoint, until, times });
    }

    fn expire(&mut self, now: Time) {
        for (endpoint, ep) in self.endpoints.iter_mut().enumerate() {
            if let Some(until) = ep.ejected_until.filter(|&until| until <= now) {
                ep.ejected_until = None;
                ep.readmitted_at = until;
                let after = ReadmitReason::EjectionExpired;
                self.events.push(HealthEvent::Readmitted { at: until, endpoint, after });
            }
        }
    }

    fn update_panic(&mut self, now: Time) {
        let panic = self.panic_mode(now);
        if panic != self.in_panic {
            self.in_panic = panic;
            let event =
                if panic { HealthEvent::PanicModeEntered { at: now } } else { HealthEvent::PanicModeLeft { at: now } };
            self.events.push(event);
        }
    }

    /// An endpoint whose active check is due (longest overdue first); not due again until its result comes.
    pub fn poll_check(&mut self, now: Time) -> Option<usize> {
        let due = self.endpoints.iter().enumerate();
        let due = due.filter_map(|(i, ep)| Some((ep.next_check.filter(|&at| at <= now)?, i)));
        let (_, endpoint) = due.min()?;
        self.endpoints[endpoint].next_check = None;
        Some(endpoint)
    }

    /// The result of an active check; one slower than `check_timeout` failed. Schedules the next check.
    pub fn on_check_result(&mut self, now: Time, endpoint: usize, passed: bool, took: Duration) {
        self.expire(now);
        let passed = passed && took <= self.config.check_timeout;
        let config = &self.config;
        let ep = &mut self.endpoints[endpoint];
        if passed {
            ep.failed_checks = 0;
            ep.passed_checks = ep.passed_checks.saturating_add(1);
            if ep.unhealthy && ep.passed_checks >= config.healthy_threshold {
                ep.unhealthy = false;
                self.events.push(HealthEvent::MarkedHealthy { at: now, endpoint });
            }
            if ep.ejected_until.take().is_some() {
                ep.readmitted_at = now;
                let after = ReadmitReason::PassedCheck;
                self.events.push(HealthEvent::Readmitted { at: now, endpoint, after });
            }
        } else {
            ep.passed_checks = 0;
            ep.failed_checks = ep.failed_checks.saturating_add(1);
            if !ep.unhealthy && ep.failed_checks >= config.max_failed_checks {
                ep.unhealthy = true;
                self.events.push(HealthEvent::MarkedUnhealthy { at: now, endpoint });
            }
        }
        if config.active_checks {
            let impaired = ep.unhealthy || ep.ejected_until.is_some();
            let interval = if impaired { config.unhealthy_check_interval } else { config.health_check_interval };
            ep.next_check = Some(now + self.rng.jitter(interval, config.check_jitter));
        }
        self.update_panic(now);
    }

    /// Where `endpoint` stands at `now`; an ejection ends by itself when its time runs out.
    #[inline]
    pub fn status(&self, endpoint: usize, now: Time) -> EndpointStatus {
        let ep = &self.endpoints[endpoint];
        match ep.ejected_until {
            Some(until) if now < until => EndpointStatus::Ejected { until },
            _ if ep.unhealthy => EndpointStatus::Unhealthy,
            _ => EndpointStatus::Healthy,
        }
    }

    /// Whether traffic may go to `endpoint`: it is healthy, or panic mode is on.
    #[inline]
    pub fn is_usable(&self, endpoint: usize, now: Time) -> bool {
        self.endpoints[endpoint].healthy(now) || self.panic_mode(now)
    }

    /// Whether fewer than `panic_threshold_percent` of endpoints are healthy, so all are used.
    pub fn panic_mode(&self, now: Time) -> bool {
        let threshold = self.config.panic_threshold_percent as usize;
        if threshold == 0 {
            return false;
        }
        let healthy = self.endpoints.iter().filter(|ep| ep.healthy(now)).count();
        healthy * 100 < threshold * self.endpoints.len()
    }

    /// Ends ejections whose time ran out (emitting `Readmitted`) and updates panic mode.
    pub fn handle_timeout(&mut self, now: Time) {
        self.expire(now);
        self.update_panic(now);
    }

    /// The next time something is due: a check or the end of an ejection.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.endpoints.iter().flat_map(|ep| [ep.next_check, ep.ejected_until]).flatten().min()
    }

    /// The oldest undrained event.
    pub fn poll_event(&mut self) -> Option<HealthEvent> {
        self.events.queue.pop_front()
    }

    #[inline]
    pub(crate) fn has_events(&self) -> bool {
        !self.events.queue.is_empty()
    }

    /// Events dropped because the queue (64) was full.
    pub fn dropped_events(&self) -> u64 {
        self.events.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EndpointStatus::{Healthy, Unhealthy};
    use proptest::prelude::*;

    fn at(secs: u64) -> Time {
        Time::ZERO + Duration::from_secs(secs)
    }

    fn config(edit: impl FnOnce(&mut HealthConfig)) -> HealthConfig {
        let mut config = HealthConfig::default();
        edit(&mut config);
        config
    }

    fn tracker(n: usize, edit: impl FnOnce(&mut HealthConfig)) -> HealthTracker {
        HealthTracker::new(config(edit), n, Time::ZERO, 7).unwrap()
    }

    /// No active checks, no panic mode.
    fn passive(n: usize) -> HealthTracker {
        tracker(n, |c| (c.active_checks, c.panic_threshold_percent) = (false, 0))
    }

    fn drain(t: &mut HealthTracker) -> Vec<HealthEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    fn fail(t: &mut HealthTracker, now: Time, endpoint: usize, times: u32) {
        (0..times).for_each(|_| t.on_request_failure(now, endpoint));
    }

    fn ejected_until(t: &HealthTracker, endpoint: usize, now: Time) -> Option<Time> {
        match t.status(endpoint, now) {
            EndpointStatus::Ejected { until } => Some(until),
            _ => None,
        }
    }

    fn check(t: &mut HealthTracker, secs: u64, endpoint: usize, passed: bool) {
        t.on_check_result(at(secs), endpoint, passed, Duration::from_secs(1));
    }

    #[test]
    fn validation_names_the_field() {
        let edge = config(|c| (c.consecutive_failures, c.check_jitter) = (0, 1.0));
        assert_eq!(edge.validate(), Ok(()));
        let bad = [
            ("max_ejection_percent", "101"),
            ("panic_threshold_percent", "101"),
            ("check_jitter", "1.5"),
            ("max_ejection_time", "10"),
            ("health_check_interval", "0"),
            ("unhealthy_check_interval", "0"),
            ("check_timeout", "1e12"),
            ("max_failed_checks", "0"),
            ("healthy_threshold", "0"),
        ];
        for (field, value) in bad {
            let json = format!("{{\"{field}\": {value}}}");
            let config: HealthConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(config.validate().unwrap_err().field, field);
        }
        let nan = config(|c| c.check_jitter = f64::NAN).validate();
        assert_eq!(nan.unwrap_err().field, "check_jitter");
        let none = HealthTracker::new(HealthConfig::default(), 0, Time::ZERO, 1);
        assert_eq!(none.unwrap_err().field, "endpoints");
        assert!(serde_json::from_str::<HealthConfig>("{\"interval\": 1}").is_err());
        // The lifetime in force is the session's: a health one, which acted on nothing, is refused.
        assert!(serde_json::from_str::<HealthConfig>("{\"max_connection_lifetime\": 60}").is_err());
    }

    #[test]
    fn consecutive_failures_eject_and_success_resets() {
        let mut t = passive(4);
        fail(&mut t, at(1), 0, 4);
        t.on_request_success(at(1), 0);
        fail(&mut t, at(2), 0, 4);
        assert_eq!(t.status(0, at(2)), Healthy);
        t.on_request_failure(at(3), 0);
        assert_eq!(ejected_until(&t, 0, at(3)), Some(at(33)));
        assert!(!t.is_usable(0, at(3)));
        let events = drain(&mut t);
        assert!(matches!(events[..], [HealthEvent::Ejected { times: 1, .. }]));
        // Expires by time alone; the event comes with handle_timeout.
        assert_eq!(t.poll_timeout(), Some(at(33)));
        assert_eq!(t.status(0, at(33)), Healthy);
        t.handle_timeout(at(40));
        let events = drain(&mut t);
        assert!(matches!(events[..], [HealthEvent::Readmitted { at: a, .. }] if a == at(33)));
        assert_eq!(t.poll_timeout(), None);
        // consecutive_failures = 0 turns passive detection off.
        let mut off = tracker(2, |c| c.consecutive_failures = 0);
        fail(&mut off, at(1), 0, 100);
        assert_eq!(off.status(0, at(1)), Healthy);
    }

    #[test]
    fn ejection_time_grows_caps_and_is_forgiven() {
        let mut t = passive(2);
        let mut now = at(0);
        for times in 1..=12u64 {
            fail(&mut t, now, 0, 5);
            let until = now + Duration::from_secs((30 * times).min(300));
            assert_eq!(ejected_until(&t, 0, now), Some(until));
            now = until;
            t.handle_timeout(now);
        }
        assert_eq!(drain(&mut t).len(), 24);
        // 600 s readmitted forgives two ejections: 12 - 2 + 1 = 11.
        now = now + Duration::from_secs(600);
        fail(&mut t, now, 0, 5);
        assert!(matches!(drain(&mut t)[..], [HealthEvent::Ejected { times: 11, .. }]));
        now = now + Duration::from_secs(300 * 20);
        t.handle_timeout(now);
        fail(&mut t, now, 0, 5);
        assert_eq!(ejected_until(&t, 0, now), Some(now + Duration::from_secs(30)));
    }

    #[test]
    fn ejection_share_is_capped() {
        let mut t = passive(4);
        assert_eq!(t.max_ejected(), 2);
        (0..4).for_each(|i| fail(&mut t, at(1), i, 5));
        let ejected = (0..4).filter(|&i| ejected_until(&t, i, at(1)).is_some());
        assert_eq!(ejected.count(), 2);
        // Endpoint 2 kept its run of failures: one more ejects it once there is room.
        t.handle_timeout(at(31));
        t.on_request_failure(at(31), 2);
        assert_eq!(ejected_until(&t, 2, at(31)), Some(at(61)));
        // At least one may go when n > 1, none when n == 1.
        assert_eq!(tracker(2, |c| c.max_ejection_percent = 0).max_ejected(), 1);
        assert_eq!(tracker(1, |c| c.max_ejection_percent = 0).max_ejected(), 0);
    }

    #[test]
    fn panic_mode_entered_and_left() {
        let mut t = tracker(4, |c| (c.active_checks, c.max_ejection_percent) = (false, 100));
        fail(&mut t, at(1), 0, 5);
        fail(&mut t, at(2), 1, 5);
        assert!(!t.panic_mode(at(2)));
        assert!(!t.is_usable(0, at(2)));
        fail(&mut t, at(3), 2, 5);
        assert!(t.panic_mode(at(3)));
        assert!((0..4).all(|i| t.is_usable(i, at(3))));
        let entered = HealthEvent::PanicModeEntered { at: at(3) };
        assert_eq!(drain(&mut t).last(), Some(&entered));
        t.handle_timeout(at(31));
        assert!(!t.panic_mode(at(31)));
        assert!(!t.is_usable(1, at(31)));
        let left = HealthEvent::PanicModeLeft { at: at(31) };
        assert_eq!(drain(&mut t).last(), Some(&left));
    }

    #[test]
    fn checks_are_jittered_within_bounds() {
        let mut t = tracker(50, |_| {});
        let first = t.poll_timeout().unwrap();
        assert!(first >= at(270) && first <= at(330), "{first:?}");
        assert_eq!(t.poll_check(first - Duration::from_nanos(1)), None);
        let mut seen = [false; 50];
        while let Some(i) = t.poll_check(at(330)) {
            assert!(!seen[i], "endpoint {i} due again while in progress");
            seen[i] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(t.poll_timeout(), None);
        (0..50).for_each(|i| check(&mut t, 330, i, true));
        let next: Vec<Time> = t.endpoints.iter().filter_map(|ep| ep.next_check).collect();
        assert!(next.iter().all(|&n| n >= at(600) && n <= at(660)));
        assert!(next.windows(2).any(|w| w[0] != w[1]), "no jitter");
    }

    #[test]
    fn failed_checks_mark_unhealthy_and_passes_readmit() {
        let mut t = tracker(4, |_| {});
        check(&mut t, 1, 0, false);
        check(&mut t, 2, 0, false);
        assert_eq!(t.status(0, at(2)), Healthy);
        check(&mut t, 3, 0, false);
        assert_eq!(t.status(0, at(3)), Unhealthy);
        assert!(matches!(drain(&mut t)[..], [HealthEvent::MarkedUnhealthy { endpoint: 0, .. }]));
        let next = t.endpoints[0].next_check.unwrap();
        assert!(next >= at(12) && next <= at(14), "unhealthy interval: {next:?}");
        check(&mut t, 4, 0, true);
        check(&mut t, 5, 0, false);
        check(&mut t, 6, 0, true);
        assert_eq!(t.status(0, at(6)), Unhealthy);
        check(&mut t, 7, 0, true);
        assert_eq!(t.status(0, at(7)), Healthy);
        assert!(matches!(drain(&mut t)[..], [HealthEvent::MarkedHealthy { endpoint: 0, .. }]));
        // A check that took longer than check_timeout failed; exactly the timeout passes.
        (8..=10).for_each(|s| t.on_check_result(at(s), 1, true, Duration::from_secs(5)));
        assert_eq!(t.status(1, at(10)), Healthy);
        (8..=10).for_each(|s| t.on_check_result(at(s), 1, true, Duration::from_millis(5001)));
        assert_eq!(t.status(1, at(10)), Unhealthy);
    }

    #[test]
    fn passed_check_unejects_and_ejection_pulls_check_in() {
        let mut t = tracker(2, |c| c.panic_threshold_percent = 0);
        fail(&mut t, at(1), 0, 5);
        let next = t.endpoints[0].next_check.unwrap();
        assert!(next >= at(10) && next <= at(12), "{next:?}");
        assert_eq!(t.poll_check(at(12)), Some(0));
        check(&mut t, 13, 0, true);
        assert_eq!(t.status(0, at(13)), Healthy);
        let after = ReadmitReason::PassedCheck;
        assert!(matches!(drain(&mut t)[1], HealthEvent::Readmitted { after: a, .. } if a == after));
    }

    #[test]
    fn event_queue_is_bounded() {
        let mut t = tracker(1, |c| (c.healthy_threshold, c.max_failed_checks) = (1, 1));
        (0..100).for_each(|s| check(&mut t, s, 0, s % 2 == 1));
        // Each check flips health and panic mode: 200 events, the newest 64 kept.
        assert_eq!(t.dropped_events(), 200 - 64);
        let events = drain(&mut t);
        assert_eq!(events.len(), 64);
        assert!(matches!(events.last(), Some(HealthEvent::PanicModeLeft { .. })));
    }

    type Step = (u64, Option<usize>, Option<Time>);

    /// Every check done and every deadline seen, with the events, over a fixed script.
    fn run_script(seed: u64) -> (Vec<Step>, Vec<HealthEvent>) {
        let mut t = HealthTracker::new(HealthConfig::default(), 5, Time::ZERO, seed).unwrap();
        let mut trace = Vec::new();
        for s in (0..2000).step_by(7) {
            let due = t.poll_check(at(s));
            if let Some(i) = due {
                check(&mut t, s, i, !(s + i as u64).is_multiple_of(3));
            }
            t.on_request_failure(at(s), (s % 5) as usize);
            t.handle_timeout(at(s));
            trace.push((s, due, t.poll_timeout()));
        }
        (trace, drain(&mut t))
    }

    #[test]
    fn same_seed_same_schedule() {
        let a = run_script(42);
        assert_eq!(a, run_script(42));
        assert!(a.0.iter().any(|(_, due, _)| due.is_some()));
        assert_ne!(a.0, run_script(43).0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Fail(usize),
        Succeed(usize),
        Check,
        Result(usize, bool, u64),
        Advance(u64),
        Timeout,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0..8usize).prop_map(Op::Fail),
            1 => (0..8usize).prop_map(Op::Succeed),
            1 => Just(Op::Check),
            2 => (0..8usize, any::<bool>(), 0..8u64).prop_map(|(i, p, s)| Op::Result(i, p, s)),
            2 => (0..40u64).prop_map(Op::Advance),
            1 => Just(Op::Timeout),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn ejected_share_never_exceeded(
            n in 1..=8usize,
            percent in 0..=100u32,
            threshold in 1..4u32,
            panic in 0..=100u32,
            seed: u64,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let config = config(|c| {
                (c.consecutive_failures, c.max_ejection_percent) = (threshold, percent);
                c.panic_threshold_percent = panic;
                c.base_ejection_time = Duration::from_secs(5);
                c.max_ejection_time = Duration::from_secs(40);
                c.health_check_interval = Duration::from_secs(30);
                c.unhealthy_check_interval = Duration::from_secs(3);
            });
            let mut t = HealthTracker::new(config, n, Time::ZERO, seed).unwrap();
            let share = n * percent as usize / 100;
            let allowed = if n > 1 { share.max(1) } else { share };
            let mut now = Time::ZERO;
            let mut ejected_by_events = vec![false; n];
            for op in ops {
                match op {
                    Op::Fail(i) => t.on_request_failure(now, i % n),
                    Op::Succeed(i) => t.on_request_success(now, i % n),
                    Op::Check => { t.poll_check(now); }
                    Op::Result(i, p, s) => t.on_check_result(now, i % n, p, Duration::from_secs(s)),
                    Op::Advance(secs) => now = now + Duration::from_secs(secs),
                    Op::Timeout => t.handle_timeout(now),
                }
                let ejected = (0..n).filter(|&i| ejected_until(&t, i, now).is_some()).count();
                prop_assert!(ejected <= allowed, "{} ejected, {} allowed", ejected, allowed);
                let panic_mode = t.panic_mode(now);
                for i in 0..n {
                    let healthy = t.status(i, now) == Healthy;
                    prop_assert_eq!(t.is_usable(i, now), healthy || panic_mode);
                }
                while let Some(event) = t.poll_event() {
                    if let HealthEvent::Ejected { endpoint, .. } = event {
                        prop_assert!(!ejected_by_events[endpoint]);
                        ejected_by_events[endpoint] = true;
                    }
                    if let HealthEvent::Readmitted { endpoint, .. } = event {
                        prop_assert!(ejected_by_events[endpoint]);
                        ejected_by_events[endpoint] = false;
                    }
                }
                if ejected_by_events.contains(&true) {
                    prop_assert!(t.poll_timeout().is_some());
                }
            }
            prop_assert_eq!(t.dropped_events(), 0);
        }
    }
}
