//! `Core`: one request's life through every component, as decisions.
//!
//! [`Core::begin`] picks an endpoint (router, over what the breakers, health tracker and
//! `Retry-After` pauses allow), takes the rate limiter's and the breaker's permission and asks the
//! pool for a connection. [`Core::finish`] takes the classified outcome and feeds the breaker,
//! health tracker, router, sizer, optimizer and retry budget. [`Core::retry`] says whether and when
//! to try again. Events are drained with [`Core::poll_event`]; the next deadline is
//! [`Core::poll_timeout`].
//!
//! ```
//! use std::time::Duration;
//! use pool_core::{Checkout, Core, Decision, EndpointSpec, Outcome, Protocol, Request, SessionConfig, Time};
//!
//! let mut core = Core::new(SessionConfig::default(), &[EndpointSpec::default()], Time::ZERO).unwrap();
//! let now = Time::ZERO;
//! let Decision::Proceed { ticket, checkout } = core.begin(now, &Request::new(now + Duration::from_secs(30))) else {
//!     panic!("a fresh core admits");
//! };
//! let Checkout::Connect(conn) = checkout else { panic!("a cold pool connects") };
//! core.pool_mut().on_connected(now, conn, Protocol::Http1);
//! let later = now + Duration::from_millis(80);
//! core.finish(later, ticket, Outcome::Success);
//! core.pool_mut().release(later, conn, true);
//! assert_eq!(core.pool().stats().idle, 1);
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use crate::breaker::{Admission, Breaker, BreakerEvent, BreakerState, Outcome as BreakerOutcome, Permit};
use crate::config::SessionConfig;
use crate::error::ConfigError;
use crate::health::{EndpointStatus, HealthEvent, HealthTracker};
use crate::limiter::{Acquire, RateLimiter};
use crate::optimizer::Optimizer;
use crate::pool::{Checkout, ConnId, Pool, Reject};
use crate::retry::{RetryDecision, RetryPolicy};
use crate::router::{Availability, EndpointSpec, Pick, Router};
use crate::sizer::{PolicyKind, Sample, Sizer, SizerEvent};
use crate::time::Time;

/// Most endpoints a core serves (the avoid-set is a 64-bit mask).
pub const MAX_ENDPOINTS: usize = 64;
const EVENT_CAPACITY: usize = 256;

/// What the caller knows of a request when it asks where to send an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// No attempt may start or wait past this.
    pub deadline: Time,
    /// Attempts made so far (0 for the first).
    pub attempt: u32,
    /// Endpoints not to use for this attempt (bit `i` = endpoint `i`): those that failed it.
    pub avoid: u64,
    /// The endpoint of the previous attempt, if any (a different pick is a failover).
    pub last_endpoint: Option<usize>,
    /// An idle connection to take before the others, if it is still idle (see
    /// [`Pool::checkout_preferring`]).
    pub prefer: Option<ConnId>,
    /// The same attempt sent again (see [`Request::again`]): it deposits nothing more into the
    /// retry budget.
    pub again: bool,
}

impl Request {
    /// A first attempt with this deadline.
    pub fn new(deadline: Time) -> Self {
        Request { deadline, attempt: 0, avoid: 0, last_endpoint: None, prefer: None, again: false }
    }

    /// The same attempt once more (a kept-alive connection the server had closed before it read
    /// the request): it deposits nothing more into the retry budget.
    pub fn again(self) -> Self {
        Request { again: true, ..self }
    }

    /// The next attempt, avoiding `failed` (when other endpoints exist).
    pub fn next_attempt(self, failed: usize) -> Self {
        Request { attempt: self.attempt + 1, avoid: self.avoid | (1u64 << failed), last_endpoint: Some(failed), ..self }
    }
}

/// A request admitted to an endpoint; give it back with `finish` or `abandon`.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    endpoint: usize,
    permit: Permit,
    started: Time,
    sent: Time,
}

impl Ticket {
    /// The endpoint chosen.
    pub fn endpoint(&self) -> usize {
        self.endpoint
    }

    /// Whether this attempt is a half-open breaker probe.
    pub fn is_probe(&self) -> bool {
        self.permit.is_probe()
    }

    /// When the attempt was admitted.
    pub fn started(&self) -> Time {
        self.started
    }

    /// Marks when the request actually went out (after any wait for a connection). The sizer and
    /// the router learn the round trip from then, so queueing in the pool does not read as a
    /// slower server.
    pub fn mark_sent(&mut self, now: Time) {
        self.sent = now;
    }

    /// When the request went out: admission, or what [`Ticket::mark_sent`] said.
    pub fn sent(&self) -> Time {
        self.sent
    }
}

/// The answer to [`Core::begin`].
#[must_use]
#[derive(Debug, Clone, Copy)]
pub enum Decision {
    /// Send to `ticket.endpoint()` on what `checkout` says (reuse, connect, or wait for a grant).
    Proceed {
        /// Report the outcome with this.
        ticket: Ticket,
        /// The pool's answer for the chosen endpoint.
        checkout: Checkout,
    },
    /// Nothing may be sent before `until`; call `begin` again then (if before the deadline).
    WaitUntil {
        /// The earliest time worth trying again.
        until: Time,
        /// Why.
        reason: WaitReason,
    },
    /// Give up this request.
    Reject(RejectReason),
}

/// Why a request must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The client's rate limit.
    RateLimited,
    /// Every endpoint is open, ejected or paused by `Retry-After` until then.
    NoEndpointReady,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No endpoint can take it before its deadline (open, ejected, paused or already failed).
    NoEndpoint,
    /// The pool of the chosen endpoint is full.
    PoolFull {
        /// The endpoint whose pool refused.
        endpoint: usize,
        /// Why.
        reject: Reject,
    },
}

/// How an attempt ended, as the driver classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A good response.
    Success,
    /// The endpoint failed (connect error, 5xx, reset, invalid or empty response).
    Failure,
    /// No response in time: a failure and an overload signal for the sizer.
    Timeout,
    /// Says nothing of the endpoint's health (a 4xx).
    Ignored,
    /// 429: goes to the rate limiter, not the breaker; nothing is sent there before `retry_after`.
    RateLimited {
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
}

/// Whether and when to try again.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again at this time (call `begin` with `Request::next_attempt`).
    At(Time),
    /// Do not retry.
    No(NoRetry),
}

/// Why no retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRetry {
    /// `max_retries` reached.
    Exhausted,
    /// The retry budget is spent (too many retries lately).
    OverBudget,
    /// The backoff would end past the deadline.
    Deadline,
}

/// Something core decided, for users to log or alert on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A breaker changed state.
    Breaker {
        /// The endpoint.
        endpoint: usize,
        /// The transition.
        event: BreakerEvent,
    },
    /// An endpoint was ejected, readmitted, marked (un)healthy; panic mode changed.
    Health(HealthEvent),
    /// An endpoint's pool target changed.
    Resized {
        /// The endpoint.
        endpoint: usize,
        /// The change.
        event: SizerEvent,
    },
    /// A 429's `Retry-After` paused an endpoint.
    Paused {
        /// The endpoint.
        endpoint: usize,
        /// When.
        at: Time,
        /// Nothing is sent there before this.
        until: Time,
    },
    /// A retry went to another endpoint.
    Failover {
        /// Where the failed attempt went.
        from: usize,
        /// Where the retry goes.
        to: usize,
        /// When.
        at: Time,
    },
}

/// One decision, as the journal records it (for the simulation's checks and trace).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JournalEntry {
    /// An attempt was admitted to `endpoint`, with what held just before.
    Admitted {
        /// When.
        at: Time,
        /// Where.
        endpoint: usize,
        /// Attempt number of the request.
        attempt: u32,
        /// A half-open probe.
        probe: bool,
        /// The breaker's state before admission.
        breaker_before: BreakerState,
        /// Whether the breaker would admit before the call.
        breaker_admitting: bool,
        /// The endpoint's `Retry-After` pause.
        paused_until: Time,
        /// Health said usable (or panic mode).
        usable: bool,
        /// Some other endpoint not avoided by the request was fully ready.
        other_ready: bool,
    },
    /// An attempt ended.
    Finished {
        /// When.
        at: Time,
        /// Where.
        endpoint: usize,
        /// How.
        outcome: Outcome,
    },
    /// An attempt ended without an outcome.
    Abandoned {
        /// When.
        at: Time,
        /// Where.
        endpoint: usize,
    },
    /// A retry decision.
    Retried {
        /// When.
        at: Time,
        /// Attempts made so far.
        attempt: u32,
        /// What was decided.
        decision: Retry,
    },
}

/// Every component, composed for one client.
#[derive(Debug)]
pub struct Core {
    config: SessionConfig,
    pool: Pool,
    breakers: Vec<Breaker>,
    sizers: Vec<Option<Sizer>>,
    health: HealthTracker,
    router: Router,
    limiter: RateLimiter,
    retry: RetryPolicy,
    optimizer: Optimizer,
    paused: Vec<Time>,
    in_flight: u32,
    events: VecDeque<Event>,
    dropped_events: u64,
    journal: Option<VecDeque<JournalEntry>>,
}

impl Core {
    /// A core for these endpoints, started at `now`. Randomness comes from `config.seed`.
    pub fn new(config: SessionConfig, endpoints: &[EndpointSpec], now: Time) -> Result<Core, ConfigError> {
        config.validate()?;
        if endpoints.is_empty() || endpoints.len() > MAX_ENDPOINTS {
            return Err(ConfigError::new(
                "regions",
                format!("must list 1..={MAX_ENDPOINTS} endpoints, got {}", endpoints.len()),
            ));
        }
        let n = endpoints.len();
        let seed = config.seed;
        let breakers = (0..n)
            .map(|i| Breaker::new(config.breaker.clone(), seed ^ (0x9e37_79b9 * (i as u64 + 1))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.within("breaker"))?;
        let sizers = (0..n)
            .map(|_| match config.sizer.policy {
                PolicyKind::Fixed => Ok(None),
                _ => Sizer::new(config.sizer.clone(), now).map(Some),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.within("sizer"))?;
        let mut pool = Pool::new(config.pool(), n)?;
        for (i, sizer) in sizers.iter().enumerate() {
            if let Some(sizer) = sizer {
                pool.set_target(now, i, sizer.target());
            }
        }
        Ok(Core {
            pool,
            breakers,
            sizers,
            health: HealthTracker::new(config.health.clone(), n, now, seed.wrapping_add(1))
                .map_err(|e| e.within("health"))?,
            router: Router::new(config.router.clone(), endpoints, seed.wrapping_add(2))
                .map_err(|e| e.within("router"))?,
            limiter: RateLimiter::new(config.limiter())?,
            retry: RetryPolicy::new(config.retry.clone(), now, seed.wrapping_add(3)).map_err(|e| e.within("retry"))?,
            optimizer: Optimizer::new(config.optimizer.clone()).map_err(|e| e.within("optimizer"))?,
            paused: vec![Time::ZERO; n],
            in_flight: 0,
            events: VecDeque::with_capacity(EVENT_CAPACITY),
            dropped_events: 0,
            journal: None,
            config,
        })
    }

    /// Where and how to send an attempt of `request`.
    #[inline]
    pub fn begin(&mut self, now: Time, request: &Request) -> Decision {
        let (breakers, health, paused) = (&self.breakers, &self.health, &self.paused);
        // A recovering endpoint's breaker waits for probes: give it one before routing by strategy,
        // so it closes as soon as it can whatever the strategy prefers (no breaker left half-open).
        let probe = (0..breakers.len()).find(|&i| {
            breakers[i].wants_probe(now)
                && request.avoid & (1 << i) == 0
                && paused[i] <= now
                && health.is_usable(i, now)
        });
        let pick = match probe {
            Some(i) => Pick::Endpoint(i),
            None => self.router.pick(now, |i| {
                if request.avoid & (1 << i) != 0 {
                    return Availability::Unavailable;
                }
                if paused[i] > now {
                    return Availability::NotBefore(paused[i]);
                }
                if !breakers[i].would_admit(now) {
                    return match breakers[i].reopens_at() {
                        Some(t) if t > now => Availability::NotBefore(t),
                        _ => Availability::Unavailable,
                    };
                }
                if !health.is_usable(i, now) {
                    return match health.status(i, now) {
                        EndpointStatus::Ejected { until } => Availability::NotBefore(until),
                        _ => Availability::Unavailable,
                    };
                }
                Availability::Ready
            }),
        };
        let endpoint = match pick {
            Pick::Endpoint(endpoint) => endpoint,
            Pick::NoneReady { earliest: Some(until) } if until < request.deadline => {
                return Decision::WaitUntil { until, reason: WaitReason::NoEndpointReady };
            }
            Pick::NoneReady { .. } => return Decision::Reject(RejectReason::NoEndpoint),
        };
        // Ask the limiter without spending a permit: it is taken only once the pool has said yes.
        let earliest = self.limiter.earliest(now);
        if earliest > now {
            return Decision::WaitUntil { until: earliest, reason: WaitReason::RateLimited };
        }
        let before = self.journal.is_some().then(|| self.snapshot(now, request, endpoint));
        let Admission::Admitted(permit) = self.breakers[endpoint].try_acquire(now) else {
            // would_admit said yes a moment ago at the same `now`; the breaker is deterministic.
            return Decision::Reject(RejectReason::NoEndpoint);
        };
        let deadline = request.deadline.min(now + self.config.pool_timeout);
        let checkout = self.pool.checkout_preferring(now, endpoint, deadline, request.prefer);
        if let Checkout::Reject(reject) = checkout {
            self.breakers[endpoint].on_cancel(permit);
            return Decision::Reject(RejectReason::PoolFull { endpoint, reject });
        }
        let granted = self.limiter.try_acquire(now);
        debug_assert!(matches!(granted, Acquire::Granted), "earliest() said now, at the same time");
        if let (Some(mut entry), Some(journal)) = (before, &mut self.journal) {
            if let JournalEntry::Admitted { probe, .. } = &mut entry {
                *probe = permit.is_probe();
            }
            if journal.len() >= 65_536 {
                journal.pop_front();
            }
            journal.push_back(entry);
        }
        if let Some(from) = request.last_endpoint.filter(|from| *from != endpoint) {
            self.push(Event::Failover { from, to: endpoint, at: now });
        }
        if request.attempt == 0 && !request.again {
            // Each request deposits once into the retry budget, when it is first admitted.
            self.retry.on_request(now);
        }
        self.router.on_start(endpoint);
        self.in_flight += 1;
        Decision::Proceed { ticket: Ticket { endpoint, permit, started: now, sent: now }, checkout }
    }

    /// Reports how an admitted attempt ended. Connection release is separate ([`Pool::release`]).
    #[inline]
    pub fn finish(&mut self, now: Time, ticket: Ticket, outcome: Outcome) {
        let endpoint = ticket.endpoint;
        let latency = now.saturating_since(ticket.started);
        if let Some(journal) = &mut self.journal {
            journal.push_back(JournalEntry::Finished { at: now, endpoint, outcome });
        }
        let breaker_outcome = match outcome {
            Outcome::Success => BreakerOutcome::Success,
            Outcome::Failure | Outcome::Timeout => BreakerOutcome::Failure,
            Outcome::Ignored | Outcome::RateLimited { .. } => BreakerOutcome::Ignored,
        };
        self.breakers[endpoint].on_outcome(now, ticket.permit, breaker_outcome, latency);
        match outcome {
            Outcome::Success => self.health.on_request_success(now, endpoint),
            Outcome::Failure | Outcome::Timeout => self.health.on_request_failure(now, endpoint),
            Outcome::RateLimited { retry_after: Some(wait) } => self.pause(now, endpoint, now + wait),
            Outcome::Ignored | Outcome::RateLimited { retry_after: None } => {}
        }
        let in_flight = self.router.in_flight(endpoint);
        let rtt = now.saturating_since(ticket.sent);
        self.router.on_finish(now, endpoint, Some(rtt));
        self.optimizer.record(now, latency, self.in_flight);
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(sizer) = &mut self.sizers[endpoint] {
            if !matches!(outcome, Outcome::Ignored | Outcome::RateLimited { .. }) {
                let dropped = outcome == Outcome::Timeout;
                sizer.on_sample(now, Sample { rtt, in_flight, dropped });
                let target = sizer.target();
                if target != self.pool.target(endpoint) {
                    self.pool.set_target(now, endpoint, target);
                }
            }
        }
    }

    /// An admitted attempt that never ran (pool wait timed out, caller gave up): frees its
    /// breaker probe slot and its in-flight count without recording an outcome.
    pub fn abandon(&mut self, now: Time, ticket: Ticket) {
        if let Some(journal) = &mut self.journal {
            journal.push_back(JournalEntry::Abandoned { at: now, endpoint: ticket.endpoint });
        }
        self.breakers[ticket.endpoint].on_cancel(ticket.permit);
        self.router.on_finish(now, ticket.endpoint, None);
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Whether and when attempt number `request.attempt + 1` may go.
    pub fn retry(&mut self, now: Time, request: &Request) -> Retry {
        let decision = match self.retry.decide(now, request.attempt, request.deadline) {
            RetryDecision::RetryAfter(delay) => Retry::At(now + delay),
            RetryDecision::PastDeadline => Retry::No(NoRetry::Deadline),
            RetryDecision::Exhausted => Retry::No(NoRetry::Exhausted),
            RetryDecision::OverBudget => Retry::No(NoRetry::OverBudget),
        };
        if let Some(journal) = &mut self.journal {
            journal.push_back(JournalEntry::Retried { at: now, attempt: request.attempt, decision });
        }
        decision
    }

    /// Starts (or stops) recording every decision in a journal drained with
    /// [`Core::poll_journal`]. Off by default; the simulation turns it on.
    pub fn set_journal(&mut self, on: bool) {
        self.journal = on.then(|| VecDeque::with_capacity(EVENT_CAPACITY));
    }

    /// The next journal entry.
    pub fn poll_journal(&mut self) -> Option<JournalEntry> {
        self.journal.as_mut()?.pop_front()
    }

    /// Checks every component's bookkeeping (the simulation calls this at every step).
    pub fn check_invariants(&self) -> Result<(), String> {
        self.pool.check_invariants()?;
        for (endpoint, breaker) in self.breakers.iter().enumerate() {
            breaker.check_invariants().map_err(|e| format!("endpoint {endpoint}: {e}"))?;
        }
        let in_flight: u32 = (0..self.endpoints()).map(|e| self.router.in_flight(e)).sum();
        if in_flight != self.in_flight {
            return Err(format!("router counts {in_flight} in flight, core {}", self.in_flight));
        }
        Ok(())
    }

    /// Nothing is sent to `endpoint` before `until` (a server's `Retry-After`). With one
    /// endpoint the client-wide limiter is paused too.
    pub fn pause(&mut self, now: Time, endpoint: usize, until: Time) {
        if until > self.paused[endpoint] {
            self.paused[endpoint] = until;
            self.push(Event::Paused { endpoint, at: now, until });
        }
        if self.paused.len() == 1 {
            self.limiter.pause_until(now, until);
        }
    }

    /// Until when an endpoint is paused by `Retry-After` (past times mean not paused).
    pub fn paused_until(&self, endpoint: usize) -> Time {
        self.paused[endpoint]
    }

    /// The next endpoint whose active health check is due.
    pub fn poll_check(&mut self, now: Time) -> Option<usize> {
        if !self.config.health.active_checks {
            return None;
        }
        self.health.poll_check(now)
    }

    /// The result of an active health check.
    pub fn on_check_result(&mut self, now: Time, endpoint: usize, passed: bool, took: Duration) {
        self.health.on_check_result(now, endpoint, passed, took);
    }

    /// Runs every time-driven transition due at `now`. Due health checks are taken with
    /// [`Core::poll_check`], which a driver calls too (else `poll_timeout` stays at the check time).
    pub fn handle_timeout(&mut self, now: Time) {
        self.pool.handle_timeout(now);
        for breaker in &mut self.breakers {
            breaker.handle_timeout(now);
        }
        self.health.handle_timeout(now);
        for endpoint in 0..self.sizers.len() {
            if let Some(sizer) = &mut self.sizers[endpoint] {
                sizer.handle_timeout(now);
                let target = sizer.target();
                if target != self.pool.target(endpoint) {
                    self.pool.set_target(now, endpoint, target);
                }
            }
        }
    }

    /// The next time [`Core::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Time> {
        let breakers = self.breakers.iter().filter_map(Breaker::poll_timeout);
        let sizers = self.sizers.iter().flatten().filter_map(Sizer::poll_timeout);
        let health = if self.config.health.active_checks || self.config.health.consecutive_failures > 0 {
            self.health.poll_timeout()
        } else {
            None
        };
        breakers.chain(sizers).chain(health).chain(self.pool.poll_timeout()).min()
    }

    /// Whether a grant, a close or an event waits to be polled: a driver with nothing else to
    /// do may skip polling when this is false (the usual case after `begin` and `finish`).
    #[inline]
    pub fn has_output(&self) -> bool {
        self.pool.has_output()
            || !self.events.is_empty()
            || self.breakers.iter().any(Breaker::has_events)
            || self.health.has_events()
            || self.sizers.iter().flatten().any(Sizer::has_events)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        for (endpoint, breaker) in self.breakers.iter_mut().enumerate() {
            if let Some(event) = breaker.poll_event() {
                return Some(Event::Breaker { endpoint, event });
            }
        }
        if let Some(event) = self.health.poll_event() {
            return Some(Event::Health(event));
        }
        for (endpoint, sizer) in self.sizers.iter_mut().enumerate() {
            if let Some(event) = sizer.as_mut().and_then(Sizer::poll_event) {
                return Some(Event::Resized { endpoint, event });
            }
        }
        while self.limiter.poll_event().is_some() {}
        None
    }

    /// What held for `endpoint` just before admission, for the journal.
    fn snapshot(&self, now: Time, request: &Request, endpoint: usize) -> JournalEntry {
        let ready =
            |e: usize| self.breakers[e].would_admit(now) && self.paused[e] <= now && self.health.is_usable(e, now);
        let other_ready = (0..self.endpoints()).any(|e| e != endpoint && request.avoid & (1 << e) == 0 && ready(e));
        let breaker = &self.breakers[endpoint];
        JournalEntry::Admitted {
            at: now,
            endpoint,
            attempt: request.attempt,
            probe: false,
            breaker_before: breaker.state(),
            breaker_admitting: breaker.would_admit(now),
            paused_until: self.paused[endpoint],
            usable: self.health.is_usable(endpoint, now),
            other_ready,
        }
    }

    /// Events lost because nobody drained them in time.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

    /// The configuration in force.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Number of endpoints.
    pub fn endpoints(&self) -> usize {
        self.breakers.len()
    }

    /// The pool's accounting.
    #[inline]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The pool, to report connections opened, released and closed.
    #[inline]
    pub fn pool_mut(&mut self) -> &mut Pool {
        &mut self.pool
    }

    /// An endpoint's breaker (state queries).
    pub fn breaker(&self, endpoint: usize) -> &Breaker {
        &self.breakers[endpoint]
    }

    /// An endpoint's breaker, for manual control (force open, force closed, reset).
    pub fn breaker_mut(&mut self, endpoint: usize) -> &mut Breaker {
        &mut self.breakers[endpoint]
    }

    /// A breaker's state.
    pub fn breaker_state(&self, endpoint: usize) -> BreakerState {
        self.breakers[endpoint].state()
    }

    /// The health tracker.
    pub fn health(&self) -> &HealthTracker {
        &self.health
    }

    /// The router (in-flight counts, costs).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The workload recorder.
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// The retry policy (budget balance).
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Requests in flight across all endpoints.
    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    fn push(&mut self, event: Event) {
        if self.events.len() == EVENT_CAPACITY {
            self.events.pop_front();
            self.dropped_events += 1;
        }
        self.events.push_back(event);
    }
}
