//! Properties of `Core` under random drives.
//!
//! A model driver applies random actions (begins, finishes with random outcomes, whole endpoints
//! failing, time passing, `handle_timeout` at `poll_timeout`, active check results, manual breaker
//! control) and checks after every one:
//! - `begin` only proceeds to an endpoint whose breaker admitted, that the health tracker allowed
//!   (healthy, or panic mode), that no `Retry-After` paused and that the request did not avoid;
//! - when some endpoint was ready, `begin` never answers "no endpoint";
//! - the pool caps hold (total and per endpoint);
//! - the in-flight counts of core, router and model agree;
//! - after `handle_timeout(t)` (and taking due checks), `poll_timeout()` is later than `t`;
//! - every `Proceed` is matched by exactly one `finish` or `abandon`, leaving nothing in flight.

use std::time::Duration;

use pool_core::{
    AimdConfig, BreakerConfig, BreakerState, Checkout, ConnId, Core, Decision, EndpointSpec, Grant, HealthConfig,
    Outcome, PolicyKind, Protocol, RejectReason, Request, RouterConfig, SessionConfig, SizerConfig, Ticket, Time,
    WaitReason, WaiterId,
};
use proptest::prelude::*;

const ENDPOINTS: usize = 4;
const TOTAL: u32 = 6;
const PER_HOST: u32 = 3;

#[derive(Debug, Clone)]
enum Action {
    /// A new request (attempt 0, or a retry avoiding some endpoints).
    Begin { deadline_ms: u64, avoid: u8, connect_ok: bool, http2: bool },
    /// The attempt at index `pick` (modulo) that holds a connection ends with `outcome`.
    Finish { pick: usize, outcome: Outcome, latency_ms: u64 },
    /// Every attempt on `endpoint` fails.
    FailEndpoint { endpoint: usize },
    /// The caller gives up the attempt at index `pick` (modulo).
    Abandon { pick: usize },
    /// Time passes.
    Advance { ms: u64 },
    /// Time jumps to `poll_timeout()` and `handle_timeout` runs.
    TimeoutJump,
    /// The oldest active check under way ends.
    CheckResult { passed: bool, took_ms: u64 },
    /// Manual breaker control: 0 force open, 1 force closed, 2 reset.
    Manual { endpoint: usize, op: u8 },
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Success),
        4 => Just(Outcome::Failure),
        1 => Just(Outcome::Timeout),
        1 => Just(Outcome::Ignored),
        1 => proptest::option::of(0u64..3_000)
            .prop_map(|ms| Outcome::RateLimited { retry_after: ms.map(Duration::from_millis) }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (1u64..5_000, any::<u8>(), proptest::bool::weighted(0.9), proptest::bool::weighted(0.2)).prop_map(
            |(deadline_ms, avoid, connect_ok, http2)| {
                // Mostly first attempts; sometimes a retry avoiding endpoints.
                let avoid = if avoid < 192 { 0 } else { avoid & 0x0f };
                Action::Begin { deadline_ms, avoid, connect_ok, http2 }
            }
        ),
        5 => (any::<usize>(), outcome(), 0u64..1_500)
            .prop_map(|(pick, outcome, latency_ms)| Action::Finish { pick, outcome, latency_ms }),
        1 => (0..ENDPOINTS).prop_map(|endpoint| Action::FailEndpoint { endpoint }),
        1 => any::<usize>().prop_map(|pick| Action::Abandon { pick }),
        3 => prop_oneof![0u64..50, 0u64..5_000].prop_map(|ms| Action::Advance { ms }),
        2 => Just(Action::TimeoutJump),
        2 => (proptest::bool::weighted(0.6), 0u64..8_000)
            .prop_map(|(passed, took_ms)| Action::CheckResult { passed, took_ms }),
        1 => (0..ENDPOINTS, 0u8..3).prop_map(|(endpoint, op)| Action::Manual { endpoint, op }),
    ]
}

/// `Strategy` names both proptest's trait and the router's enum; this alias is the router's.
type Routing = pool_core::Strategy;

fn routing() -> impl Strategy<Value = Routing> {
    prop_oneof![
        Just(Routing::RoundRobin),
        Just(Routing::LeastLoaded),
        Just(Routing::Random),
        Just(Routing::PrimaryBackup)
    ]
}

fn config(seed: u64, strategy: Routing, policy: PolicyKind) -> SessionConfig {
    SessionConfig {
        seed,
        async_limit_total: TOTAL,
        async_limit_per_host: PER_HOST,
        sync_pool_connections: 2,
        pool_timeout: Duration::from_millis(700),
        keepalive_expiry: Duration::from_secs(3),
        max_connection_lifetime: Some(Duration::from_secs(20)),
        rate_limit_per_minute: Some(3_000),
        rate_limit_burst: 5,
        breaker: BreakerConfig {
            failure_threshold: 2,
            success_threshold: 2,
            reset_timeout: Duration::from_secs(1),
            max_reset_timeout: Duration::from_secs(8),
            half_open_max_probes: 2,
            max_wait_in_half_open: Some(Duration::from_secs(4)),
            minimum_calls: 4,
            ..BreakerConfig::default()
        },
        health: HealthConfig {
            consecutive_failures: 3,
            base_ejection_time: Duration::from_secs(2),
            max_ejection_time: Duration::from_secs(10),
            active_checks: true,
            health_check_interval: Duration::from_secs(2),
            unhealthy_check_interval: Duration::from_millis(500),
            check_timeout: Duration::from_secs(5),
            max_failed_checks: 2,
            healthy_threshold: 1,
            ..HealthConfig::default()
        },
        sizer: SizerConfig {
            policy,
            min: 1,
            max: 5,
            initial: 2,
            aimd: AimdConfig { timeout: Duration::from_millis(800), ..AimdConfig::default() },
            ..SizerConfig::default()
        },
        router: RouterConfig { strategy, ..RouterConfig::default() },
        ..SessionConfig::default()
    }
}

#[derive(Debug, Clone, Copy)]
enum Conn {
    Ready(ConnId),
    Waiting(WaiterId),
}

/// What the chosen endpoint looked like just before `begin`.
#[derive(Debug, Clone, Copy)]
struct Before {
    state: BreakerState,
    reopens_at: Option<Time>,
    would_admit: bool,
    usable: bool,
    paused_until: Time,
}

struct Model {
    core: Core,
    now: Time,
    attempts: Vec<(Ticket, Conn)>,
    /// Endpoints whose active check is under way.
    checking: Vec<usize>,
    proceeds: u64,
    settled: u64,
}

impl Model {
    fn new(seed: u64, strategy: Routing, policy: PolicyKind) -> Self {
        let specs: Vec<EndpointSpec> =
            (0..ENDPOINTS as u32).map(|i| EndpointSpec { priority: i % 2, weight: 1 + i }).collect();
        let core = Core::new(config(seed, strategy, policy), &specs, Time::ZERO).expect("valid config");
        Model { core, now: Time::ZERO, attempts: Vec::new(), checking: Vec::new(), proceeds: 0, settled: 0 }
    }

    fn before(&self, endpoint: usize) -> Before {
        let breaker = self.core.breaker(endpoint);
        Before {
            state: breaker.state(),
            reopens_at: breaker.reopens_at(),
            would_admit: breaker.would_admit(self.now),
            usable: self.core.health().is_usable(endpoint, self.now),
            paused_until: self.core.paused_until(endpoint),
        }
    }

    fn ready(&self, before: &Before, endpoint: usize, avoid: u64) -> bool {
        avoid & (1 << endpoint) == 0 && before.would_admit && before.usable && before.paused_until <= self.now
    }

    fn begin(&mut self, deadline_ms: u64, avoid: u64, connect_ok: bool, http2: bool) -> Result<(), TestCaseError> {
        let now = self.now;
        let before: Vec<Before> = (0..ENDPOINTS).map(|e| self.before(e)).collect();
        let any_ready = (0..ENDPOINTS).any(|e| self.ready(&before[e], e, avoid));
        let request = Request {
            deadline: now + Duration::from_millis(deadline_ms),
            attempt: 0,
            avoid,
            last_endpoint: None,
            prefer: None,
            again: false,
        };
        let request = if avoid == 0 { request } else { Request { attempt: 1, ..request } };
        let decision = self.core.begin(now, &request);
        match decision {
            Decision::Proceed { ticket, checkout } => {
                let e = ticket.endpoint();
                let b = before[e];
                prop_assert!(avoid & (1 << e) == 0, "proceeded to avoided endpoint {e}");
                prop_assert!(b.would_admit, "breaker of {e} was not admitting: {b:?}");
                prop_assert!(b.state != BreakerState::ForcedOpen, "breaker of {e} forced open: {b:?}");
                if b.state == BreakerState::Open {
                    prop_assert!(b.reopens_at.is_some_and(|t| t <= now), "breaker of {e} still open: {b:?} at {now:?}");
                }
                prop_assert!(b.usable, "endpoint {e} ejected or unhealthy (and no panic mode): {b:?}");
                prop_assert!(b.paused_until <= now, "endpoint {e} paused: {b:?} at {now:?}");
                self.proceeds += 1;
                let conn = match checkout {
                    Checkout::Reuse(id) => Conn::Ready(id),
                    Checkout::Connect(id) if connect_ok => {
                        let protocol = if http2 { Protocol::Http2 { max_streams: 2 } } else { Protocol::Http1 };
                        self.core.pool_mut().on_connected(now, id, protocol);
                        Conn::Ready(id)
                    }
                    Checkout::Connect(id) => {
                        self.core.pool_mut().on_connect_failed(now, id);
                        self.core.finish(now, ticket, Outcome::Failure);
                        self.settled += 1;
                        return Ok(());
                    }
                    Checkout::Wait(waiter) => Conn::Waiting(waiter),
                    Checkout::Reject(reject) => {
                        return Err(TestCaseError::fail(format!("Proceed with a pool reject {reject:?}")));
                    }
                };
                self.attempts.push((ticket, conn));
            }
            Decision::WaitUntil { until, reason } => {
                prop_assert!(until > now, "wait until {until:?} is not in the future ({now:?})");
                if any_ready {
                    prop_assert_eq!(reason, WaitReason::RateLimited, "an endpoint was ready: {:?}", before);
                }
            }
            Decision::Reject(reason) => {
                if any_ready {
                    prop_assert!(
                        matches!(reason, RejectReason::PoolFull { .. }),
                        "an endpoint was ready, yet {reason:?}: {before:?}"
                    );
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, index: usize, outcome: Outcome) {
        let (ticket, conn) = self.attempts.remove(index);
        self.core.finish(self.now, ticket, outcome);
        self.settled += 1;
        if let Conn::Ready(id) = conn {
            let reusable = matches!(outcome, Outcome::Success | Outcome::Ignored | Outcome::RateLimited { .. });
            self.core.pool_mut().release(self.now, id, reusable);
        }
    }

    fn abandon(&mut self, index: usize) -> Result<(), TestCaseError> {
        let (ticket, conn) = self.attempts.remove(index);
        match conn {
            Conn::Ready(id) => self.core.pool_mut().release(self.now, id, true),
            Conn::Waiting(waiter) => {
                // Grants are drained after every action, so this waiter is still queued.
                prop_assert!(self.core.pool_mut().cancel_wait(self.now, waiter), "waiter {waiter:?} was not queued");
            }
        }
        self.core.abandon(self.now, ticket);
        self.settled += 1;
        Ok(())
    }

    /// Hands out pool grants, drops closes and events; checks `has_output` told whether any
    /// were there.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        let announced = self.core.has_output();
        let mut polled = 0;
        while let Some((waiter, grant)) = self.core.pool_mut().poll_grant() {
            polled += 1;
            let Some(pos) = self.attempts.iter().position(|(_, c)| matches!(c, Conn::Waiting(w) if *w == waiter))
            else {
                continue;
            };
            match grant {
                Grant::Reuse(id) => self.attempts[pos].1 = Conn::Ready(id),
                Grant::Connect(id) => {
                    self.core.pool_mut().on_connected(self.now, id, Protocol::Http1);
                    self.attempts[pos].1 = Conn::Ready(id);
                }
                Grant::TimedOut | Grant::ConnectFailed => {
                    let (ticket, _) = self.attempts.remove(pos);
                    self.core.abandon(self.now, ticket);
                    self.settled += 1;
                }
            }
        }
        while self.core.pool_mut().poll_close().is_some() {
            polled += 1;
        }
        while self.core.poll_event().is_some() {
            polled += 1;
        }
        prop_assert_eq!(announced, polled > 0, "has_output said {}, {} polled", announced, polled);
        Ok(())
    }

    fn timeout(&mut self) {
        self.core.handle_timeout(self.now);
        while let Some(endpoint) = self.core.poll_check(self.now) {
            self.checking.push(endpoint);
        }
    }

    fn apply(&mut self, action: &Action) -> Result<(), TestCaseError> {
        match *action {
            Action::Begin { deadline_ms, avoid, connect_ok, http2 } => {
                self.begin(deadline_ms, u64::from(avoid), connect_ok, http2)?;
            }
            Action::Finish { pick, outcome, latency_ms } => {
                let ready: Vec<usize> =
                    (0..self.attempts.len()).filter(|&i| matches!(self.attempts[i].1, Conn::Ready(_))).collect();
                if !ready.is_empty() {
                    self.now = self.now + Duration::from_millis(latency_ms);
                    self.finish(ready[pick % ready.len()], outcome);
                }
            }
            Action::FailEndpoint { endpoint } => {
                while let Some(i) =
                    self.attempts.iter().position(|(t, c)| t.endpoint() == endpoint && matches!(c, Conn::Ready(_)))
                {
                    self.finish(i, Outcome::Failure);
                }
            }
            Action::Abandon { pick } => {
                if !self.attempts.is_empty() {
                    self.abandon(pick % self.attempts.len())?;
                }
            }
            Action::Advance { ms } => {
                self.now = self.now + Duration::from_millis(ms);
                if self.core.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.timeout();
                }
            }
            Action::TimeoutJump => {
                if let Some(t) = self.core.poll_timeout() {
                    self.now = self.now.max(t);
                    self.timeout();
                    let next = self.core.poll_timeout();
                    prop_assert!(
                        next.is_none_or(|next| next > self.now),
                        "poll_timeout {next:?} not after handle_timeout at {:?}",
                        self.now
                    );
                }
            }
            Action::CheckResult { passed, took_ms } => {
                if !self.checking.is_empty() {
                    let endpoint = self.checking.remove(0);
                    self.now = self.now + Duration::from_millis(took_ms.min(1_000));
                    self.core.on_check_result(self.now, endpoint, passed, Duration::from_millis(took_ms));
                }
            }
            Action::Manual { endpoint, op } => {
                let now = self.now;
                let breaker = self.core.breaker_mut(endpoint);
                match op {
                    0 => breaker.force_open(now),
                    1 => breaker.force_closed(now),
                    _ => breaker.reset(now),
                }
            }
        }
        self.drain()?;
        self.check_invariants()
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        let stats = self.core.pool().stats();
        prop_assert!(stats.open <= TOTAL, "{} connections open, cap {TOTAL}", stats.open);
        for e in 0..ENDPOINTS {
            let open = self.core.pool().endpoint_stats(e).open;
            prop_assert!(open <= PER_HOST, "endpoint {e}: {open} connections open, cap {PER_HOST}");
        }
        let outstanding = self.attempts.len() as u32;
        prop_assert_eq!(self.core.in_flight(), outstanding, "core in-flight vs model");
        let routed: u32 = (0..ENDPOINTS).map(|e| self.core.router().in_flight(e)).sum();
        prop_assert_eq!(routed, outstanding, "router in-flight vs model");
        prop_assert_eq!(self.proceeds, self.settled + u64::from(outstanding));
        Ok(())
    }

    /// Ends every attempt still out and checks nothing is left in flight.
    fn wind_down(&mut self) -> Result<(), TestCaseError> {
        while let Some(i) = self.attempts.iter().position(|(_, c)| matches!(c, Conn::Ready(_))) {
            self.finish(i, Outcome::Success);
            self.drain()?;
        }
        while !self.attempts.is_empty() {
            self.abandon(0)?;
            self.drain()?;
        }
        self.check_invariants()?;
        prop_assert_eq!(self.core.in_flight(), 0);
        prop_assert_eq!(self.proceeds, self.settled);
        let stats = self.core.pool().stats();
        prop_assert_eq!((stats.in_flight, stats.busy, stats.waiting), (0, 0, 0), "pool after wind-down: {:?}", stats);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn core_decisions_respect_every_component(
        seed in any::<u64>(),
        strategy in routing(),
        policy in prop_oneof![Just(PolicyKind::Aimd), Just(PolicyKind::Threshold), Just(PolicyKind::Gradient)],
        actions in proptest::collection::vec(action(), 1..400),
    ) {
        let mut model = Model::new(seed, strategy, policy);
        for action in &actions {
            model.apply(action)?;
        }
        model.wind_down()?;
    }
}
