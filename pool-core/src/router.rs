//! Which endpoint (region) gets the next request.
//!
//! The caller says which endpoints are usable right now; the router spreads load over those by
//! rotation, weighted chance, priority (primary/backup) or least load (power of two choices on
//! Peak-EWMA cost, as tower and linkerd do). `pick` does not allocate.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::rng::Rng;
use crate::time::Time;

/// How the router chooses among ready endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Smooth weighted rotation (as nginx): with equal weights, exactly even.
    #[default]
    RoundRobin,
    /// Seeded random choice, weighted.
    Random,
    /// The ready endpoint with the lowest priority value; ties rotate by weight.
    PrimaryBackup,
    /// Cheaper of two random ready endpoints; cost = Peak-EWMA RTT x (in flight + 1). Ignores weights.
    LeastLoaded,
}

/// One endpoint as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointSpec {
    /// Preference for primary/backup; lower is preferred. Unitless. Default: 0.
    pub priority: u32,
    /// Share of traffic for round robin and random, 1..=1000000. Unitless. Default: 1.
    pub weight: u32,
}

impl Default for EndpointSpec {
    fn default() -> Self {
        EndpointSpec { priority: 0, weight: 1 }
    }
}

impl EndpointSpec {
    /// Refuses a weight outside 1..=1000000.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::error::check_range("weight", self.weight, 1, 1_000_000)
    }
}

/// Router settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// How to choose. Default: round_robin.
    pub strategy: Strategy,
    /// RTT assumed for an endpoint with no sample yet, seconds (Peak-EWMA start). Default: 0.03.
    #[serde(with = "crate::time::secs")]
    pub default_rtt: Duration,
    /// Peak-EWMA decay time, seconds: how fast old RTT samples lose weight. Default: 10.
    #[serde(with = "crate::time::secs")]
    pub decay: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            strategy: Strategy::RoundRobin,
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
        }
    }
}

impl RouterConfig {
    /// Refuses a zero `default_rtt` or `decay`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::error::check_nonzero("default_rtt", self.default_rtt)?;
        crate::error::check_nonzero("decay", self.decay)
    }
}

/// What the caller knows of one endpoint right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// May take a request now.
    Ready,
    /// Not before this time (e.g. breaker open, rate limited). Not picked, even if the time has passed.
    NotBefore(Time),
    /// Not usable, with no known time of return.
    Unavailable,
}

/// The router's choice.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Send to this endpoint index.
    Endpoint(usize),
    /// No endpoint is ready; `earliest` is the soonest `NotBefore` (None if all are unavailable).
    NoneReady {
        /// Soonest time an endpoint said it may be ready.
        earliest: Option<Time>,
    },
}

#[derive(Debug, Clone, Default)]
struct EndpointState {
    spec: EndpointSpec,
    /// Smooth weighted round robin's current weight.
    current: i64,
    in_flight: u32,
    /// Peak-EWMA RTT estimate in nanoseconds, as of `sampled_at`.
    rtt_ns: f64,
    /// When the last RTT sample came; None: no sample yet, the estimate is the default.
    sampled_at: Option<Time>,
}

/// Chooses endpoints; tracks in-flight counts and RTT estimates per endpoint.
///
/// Endpoints are named by their index in the spec slice; an index `>= len()` panics.
#[derive(Debug, Clone)]
pub struct Router {
    strategy: Strategy,
    decay_ns: f64,
    endpoints: Vec<EndpointState>,
    /// Scratch list of ready indices, preallocated to `endpoints.len()`.
    ready: Vec<usize>,
    rng: Rng,
}

impl Router {
    /// A router over `endpoints` (1..=1024 of them; indices are positions in the slice). Refuses
    /// a bad config or spec, naming `endpoints` or `endpoints[i].weight`.
    pub fn new(config: RouterConfig, endpoints: &[EndpointSpec], seed: u64) -> Result<Router, ConfigError> {
        config.validate()?;
        crate::error::check_range("endpoints", endpoints.len(), 1, 1024)?;
        for (i, spec) in endpoints.iter().enumerate() {
            spec.validate().map_err(|e| e.within(&format!("endpoints[{i}]")))?;
        }
        let rtt_ns = config.default_rtt.as_nanos() as f64;
        let state = |spec: &EndpointSpec| EndpointState { spec: spec.clone(), rtt_ns, ..EndpointState::default() };
        let endpoints: Vec<EndpointState> = endpoints.iter().map(state).collect();
        Ok(Router {
            strategy: config.strategy,
            decay_ns: config.decay.as_nanos() as f64,
            ready: Vec::with_capacity(endpoints.len()),
            endpoints,
            rng: Rng::with_seed(seed),
        })
    }

    /// Chooses a `Ready` endpoint; `availability(i)` is asked once per endpoint.
    #[inline]
    pub fn pick(&mut self, now: Time, mut availability: impl FnMut(usize) -> Availability) -> Pick {
        self.ready.clear();
        let mut earliest: Option<Time> = None;
        for i in 0..self.endpoints.len() {
            match availability(i) {
                Availability::Ready => self.ready.push(i),
                Availability::NotBefore(t) => earliest = Some(earliest.map_or(t, |e| e.min(t))),
                Availability::Unavailable => {}
            }
        }
        if self.ready.is_empty() {
            return Pick::NoneReady { earliest };
        }
        // One ready endpoint: round robin would leave its counters as they are and least-loaded
        // has no second to draw; random draws from the seed, so it goes the whole way (same
        // draws, same trace).
        if self.ready.len() == 1 && self.strategy != Strategy::Random {
            return Pick::Endpoint(self.ready[0]);
        }
        let chosen = match self.strategy {
            Strategy::RoundRobin => self.smooth_weighted(),
            Strategy::Random => self.weighted_random(),
            Strategy::PrimaryBackup => {
                let eps = &self.endpoints;
                let best = self.ready.iter().map(|&i| eps[i].spec.priority).min();
                self.ready.retain(|&i| Some(eps[i].spec.priority) == best);
                self.smooth_weighted()
            }
            Strategy::LeastLoaded => self.two_choices(now),
        };
        Pick::Endpoint(chosen)
    }

    /// A request was sent to `endpoint`.
    #[inline]
    pub fn on_start(&mut self, endpoint: usize) {
        let e = &mut self.endpoints[endpoint];
        e.in_flight = e.in_flight.saturating_add(1);
    }

    /// A request to `endpoint` ended; `rtt` feeds the Peak-EWMA estimate (None skips it, e.g. on
    /// cancel). Only the least-loaded strategy reads the estimate, so only it keeps one.
    #[inline]
    pub fn on_finish(&mut self, now: Time, endpoint: usize, rtt: Option<Duration>) {
        let decay_ns = self.decay_ns;
        let e = &mut self.endpoints[endpoint];
        e.in_flight = e.in_flight.saturating_sub(1);
        let Some(rtt) = rtt.filter(|_| self.strategy == Strategy::LeastLoaded) else { return };
        let sample = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX) as f64;
        e.rtt_ns = match e.sampled_at {
            // A peak is taken at once; otherwise decay toward the sample by elapsed time.
            Some(at) if sample <= e.rtt_ns => {
                let w = decay_weight(decay_ns, at, now);
                e.rtt_ns * w + sample * (1.0 - w)
            }
            _ => sample,
        };
        e.sampled_at = Some(e.sampled_at.map_or(now, |at| at.max(now)));
    }

    /// Requests in flight to `endpoint`.
    #[inline]
    pub fn in_flight(&self, endpoint: usize) -> u32 {
        self.endpoints[endpoint].in_flight
    }

    /// Least-loaded cost in nanoseconds: RTT estimate x (in flight + 1). The estimate decays
    /// toward zero while no sample comes, so a shunned endpoint is tried again (as tower does).
    /// Under another strategy no sample is kept, and the estimate stays at `default_rtt`.
    pub fn cost(&self, now: Time, endpoint: usize) -> f64 {
        let e = &self.endpoints[endpoint];
        let estimate = match e.sampled_at {
            Some(at) => e.rtt_ns * decay_weight(self.decay_ns, at, now),
            None => e.rtt_ns,
        };
        estimate * (f64::from(e.in_flight) + 1.0)
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Always false: a router has at least one endpoint.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// nginx's smooth weighted round robin over `self.ready`.
    fn smooth_weighted(&mut self) -> usize {
        let mut total = 0i64;
        let mut best = self.ready[0];
        for &i in &self.ready {
            let e = &mut self.endpoints[i];
            e.current = e.current.saturating_add(i64::from(e.spec.weight));
            total += i64::from(e.spec.weight);
            let current = e.current;
            if current > self.endpoints[best].current {
                best = i;
            }
        }
        let e = &mut self.endpoints[best];
        e.current = e.current.saturating_sub(total);
        best
    }

    fn weighted_random(&mut self) -> usize {
        let weight = |i: usize| self.endpoints[i].spec.weight as usize;
        let total: usize = self.ready.iter().map(|&i| weight(i)).sum();
        let mut r = self.rng.below(total);
        for &i in &self.ready {
            let w = weight(i);
            if r < w {
                return i;
            }
            r -= w;
        }
        self.ready[self.ready.len() - 1]
    }

    /// Power of two choices: the cheaper of two distinct random ready endpoints (`pick` took a
    /// lone one already).
    fn two_choices(&mut self, now: Time) -> usize {
        let k = self.ready.len();
        let a = self.rng.below(k);
        let mut b = self.rng.below(k - 1);
        if b >= a {
            b += 1;
        }
        let (a, b) = (self.ready[a], self.ready[b]);
        let (cost_a, cost_b) = (self.cost(now, a), self.cost(now, b));
        if cost_b < cost_a { b } else { a }
    }
}

/// Weight left to what was known at `from`, by `to`: exp(-elapsed / decay).
fn decay_weight(decay_ns: f64, from: Time, to: Time) -> f64 {
    (-(to.saturating_since(from).as_nanos() as f64) / decay_ns).exp()
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy as _;

    use super::Strategy;
    use super::*;
    use Availability::{NotBefore, Ready, Unavailable};
    use Strategy::{LeastLoaded, PrimaryBackup, Random, RoundRobin};
    use proptest::prelude::*;

    fn secs(n: u64) -> Time {
        Time::ZERO + Duration::from_secs(n)
    }

    /// A router over `(priority, weight)` endpoints.
    fn router(strategy: Strategy, specs: &[(u32, u32)], seed: u64) -> Router {
        let config = RouterConfig { strategy, ..RouterConfig::default() };
        let to_spec = |&(priority, weight): &(u32, u32)| EndpointSpec { priority, weight };
        Router::new(config, &specs.iter().map(to_spec).collect::<Vec<_>>(), seed).unwrap()
    }

    fn picks(r: &mut Router, n: usize, avail: &[Availability]) -> Vec<usize> {
        let pick = |r: &mut Router| match r.pick(secs(1), |i| avail[i]) {
            Pick::Endpoint(i) => i,
            other => panic!("expected an endpoint, got {other:?}"),
        };
        (0..n).map(|_| pick(r)).collect()
    }

    fn counts(r: &mut Router, n: usize, avail: &[Availability]) -> Vec<usize> {
        let mut counts = vec![0; r.len()];
        picks(r, n, avail).into_iter().for_each(|i| counts[i] += 1);
        counts
    }

    #[test]
    fn rotation_is_even_and_weights_are_respected() {
        let mut r = router(RoundRobin, &[(0, 1); 3], 1);
        assert_eq!(picks(&mut r, 6, &[Ready; 3]), [0, 1, 2, 0, 1, 2]);
        assert_eq!(counts(&mut r, 300, &[Ready; 3]), [100, 100, 100]);
        let mut r = router(RoundRobin, &[(0, 5), (0, 1), (0, 1)], 1);
        assert_eq!(picks(&mut r, 7, &[Ready; 3]), [0, 0, 1, 0, 2, 0, 0]); // nginx's {5, 1, 1}
        assert_eq!(counts(&mut r, 700, &[Ready; 3]), [500, 100, 100]);
        let c = counts(&mut router(Random, &[(0, 3), (0, 1)], 7), 10_000, &[Ready; 2]);
        assert!((7_200..=7_800).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn picks_only_ready_endpoints_else_reports_earliest() {
        for strategy in [RoundRobin, Random, LeastLoaded] {
            let mut r = router(strategy, &[(0, 1); 4], 3);
            let c = counts(&mut r, 400, &[Ready, Unavailable, Ready, NotBefore(secs(9))]);
            assert_eq!((c[1], c[3]), (0, 0), "{strategy:?}");
            assert!(c[0] > 100 && c[2] > 100, "{strategy:?} {c:?}");
            let avail = [NotBefore(secs(5)), Unavailable, NotBefore(secs(3)), Unavailable];
            assert_eq!(r.pick(secs(1), |i| avail[i]), Pick::NoneReady { earliest: Some(secs(3)) });
            assert_eq!(r.pick(secs(1), |_| Unavailable), Pick::NoneReady { earliest: None });
        }
    }

    #[test]
    fn one_endpoint_is_picked_when_ready_else_reported() {
        for strategy in [RoundRobin, Random, LeastLoaded, PrimaryBackup] {
            let mut r = router(strategy, &[(0, 1)], 3);
            assert_eq!(r.pick(secs(1), |_| Ready), Pick::Endpoint(0), "{strategy:?}");
            assert_eq!(r.pick(secs(1), |_| NotBefore(secs(4))), Pick::NoneReady { earliest: Some(secs(4)) });
            assert_eq!(r.pick(secs(1), |_| Unavailable), Pick::NoneReady { earliest: None }, "{strategy:?}");
        }
    }

    #[test]
    fn primary_backup_fails_over_and_back() {
        let mut r = router(PrimaryBackup, &[(0, 1), (1, 1), (1, 1)], 1);
        assert_eq!(counts(&mut r, 10, &[Ready; 3]), [10, 0, 0]);
        let primary_down = [NotBefore(secs(30)), Ready, Ready];
        assert_eq!(picks(&mut r, 4, &primary_down), [1, 2, 1, 2]);
        assert_eq!(counts(&mut r, 10, &[Ready; 3]), [10, 0, 0]);
    }

    #[test]
    fn least_loaded_avoids_slow_and_busy_endpoints() {
        let mut r = router(LeastLoaded, &[(0, 1); 3], 5);
        for (i, ms) in [(0, 20), (1, 2_000), (2, 20)] {
            r.on_start(i);
            r.on_finish(secs(1), i, Some(Duration::from_millis(ms)));
        }
        assert_eq!(counts(&mut r, 300, &[Ready; 3])[1], 0);
        // Endpoint 0 busy: 20 ms x 51 is still under 2 s, but loses to endpoint 2 every time.
        (0..50).for_each(|_| r.on_start(0));
        assert_eq!(r.in_flight(0), 50);
        let c = counts(&mut r, 300, &[Ready; 3]);
        assert!(c[1] == 0 && c[0] < 140 && c[2] > 160, "{c:?}");
        // Only one ready: it is picked whatever it costs.
        assert_eq!(picks(&mut r, 3, &[Unavailable, Ready, Unavailable]), [1, 1, 1]);
    }

    #[test]
    fn only_least_loaded_keeps_an_rtt_estimate() {
        for (strategy, kept) in [(LeastLoaded, true), (RoundRobin, false), (Random, false), (PrimaryBackup, false)] {
            let mut r = router(strategy, &[(0, 1)], 1);
            r.on_start(0);
            r.on_finish(secs(1), 0, Some(Duration::from_millis(100)));
            let expected = if kept { 100e6 } else { 30e6 };
            assert_eq!(r.cost(secs(1), 0), expected, "{strategy:?}");
            assert_eq!(r.in_flight(0), 0, "{strategy:?}: the count is kept either way");
        }
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let mut r = router(LeastLoaded, &[(0, 1)], 1);
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(r.cost(secs(0), 0), 30e6); // default 30 ms
        r.on_finish(secs(10), 0, ms(100));
        assert_eq!(r.cost(secs(10), 0), 100e6);
        r.on_finish(secs(10), 0, ms(500));
        assert_eq!(r.cost(secs(10), 0), 500e6); // peak taken at once
        r.on_finish(secs(20), 0, ms(100));
        let expect = 500e6 * (-1f64).exp() + 100e6 * (1.0 - (-1f64).exp());
        assert!((r.cost(secs(20), 0) - expect).abs() < 1.0);
        assert!(r.cost(secs(60), 0) < expect / 50.0); // idle: decays so it is probed again
        r.on_start(0);
        assert!((r.cost(secs(20), 0) - 2.0 * expect).abs() < 2.0);
        r.on_finish(secs(20), 0, None);
        r.on_finish(secs(20), 0, None);
        assert_eq!(r.in_flight(0), 0);
    }

    #[test]
    fn config_is_checked_and_serde_uses_snake_case() {
        let config = RouterConfig::default();
        assert_eq!(Router::new(config.clone(), &[], 0).unwrap_err().field, "endpoints");
        let spec = EndpointSpec { weight: 0, priority: 0 };
        let bad = Router::new(config.clone(), &[EndpointSpec::default(), spec], 0);
        assert_eq!(bad.unwrap_err().field, "endpoints[1].weight");
        let mut zero = config.clone();
        zero.decay = Duration::ZERO;
        assert_eq!(zero.validate().unwrap_err().field, "decay");
        let c: RouterConfig = toml::from_str("strategy = \"primary_backup\"\ndefault_rtt = 0.05").unwrap();
        assert_eq!((c.strategy, c.default_rtt), (PrimaryBackup, Duration::from_millis(50)));
        assert!(toml::from_str::<RouterConfig>("strategy = \"round_robin\"\nfoo = 1").is_err());
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<RouterConfig>(&json).unwrap(), config);
    }

    #[test]
    fn same_seed_same_picks() {
        let run = |strategy, seed| {
            let mut r = router(strategy, &[(0, 1), (0, 2), (0, 3), (0, 1)], seed);
            let mut out = Vec::new();
            for n in 0..200u64 {
                r.on_finish(secs(n), (n % 4) as usize, Some(Duration::from_millis(n % 7 * 10)));
                out.extend(picks(&mut r, 1, &[Ready; 4]));
            }
            out
        };
        for strategy in [Random, LeastLoaded] {
            assert_eq!(run(strategy, 42), run(strategy, 42));
            assert_ne!(run(strategy, 42), run(strategy, 43), "{strategy:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn never_picks_a_non_ready_endpoint(
            strategy in prop_oneof![Just(RoundRobin), Just(Random), Just(PrimaryBackup), Just(LeastLoaded)],
            specs in proptest::collection::vec((0u32..3, 1u32..5), 1..8),
            steps in proptest::collection::vec(
                (proptest::collection::vec(prop_oneof![
                    Just(Ready), (0u64..100).prop_map(|s| NotBefore(secs(s))), Just(Unavailable)
                ], 8), any::<bool>(), 0u64..2_000), 1..40),
            seed in any::<u64>(),
        ) {
            let mut r = router(strategy, &specs, seed);
            for (n, (avail, start, rtt_ms)) in steps.into_iter().enumerate() {
                let now = secs(n as u64);
                let avail = &avail[..r.len()];
                match r.pick(now, |i| avail[i]) {
                    Pick::Endpoint(i) => {
                        prop_assert_eq!(avail[i], Ready);
                        let rtt = Some(Duration::from_millis(rtt_ms));
                        if start { r.on_start(i) } else { r.on_finish(now, i, rtt) }
                    }
                    Pick::NoneReady { earliest } => {
                        prop_assert!(!avail.contains(&Ready));
                        let not_before = |a: &Availability| match a { NotBefore(t) => Some(*t), _ => None };
                        let soonest = avail.iter().filter_map(not_before).min();
                        prop_assert_eq!(earliest, soonest);
                    }
                }
            }
        }
    }
}
