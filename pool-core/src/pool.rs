//! Connection accounting: which connection a request gets, or why it must wait.
//!
//! The pool never touches a socket. The driver asks [`Pool::checkout`] and does what the
//! answer says: reuse a connection, open one (and report back with [`Pool::on_connected`] or
//! [`Pool::on_connect_failed`]), or park until [`Pool::poll_grant`] hands the waiter something.
//! Caps hold whatever the order of calls: never more than `max_total` connections, never more
//! than an endpoint's cap, never two requests on one HTTP/1 connection.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, check_nonzero, check_range};
use crate::time::Time;

/// Limits of the connection pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Connections open (or opening) across all endpoints. Default: 100.
    pub max_total: u32,
    /// Connections open (or opening) to one endpoint. Default: 30.
    pub max_per_endpoint: u32,
    /// Idle HTTP/1 connections kept per endpoint; more are closed on release. Default: 10.
    pub max_idle_per_endpoint: u32,
    /// An idle connection older than this is closed (before the server does it). Default: 30 s.
    #[serde(with = "crate::time::secs")]
    pub idle_timeout: Duration,
    /// A connection older than this is closed once idle. Default: 30 min.
    #[serde(with = "crate::time::opt_secs")]
    pub max_lifetime: Option<Duration>,
    /// Requests allowed to wait for a connection at once. Default: 1024.
    pub max_waiters: u32,
    /// Wait when full (`true`) or refuse at once (`false`). Default: true.
    pub block: bool,
    /// HTTP/2 streams per connection at most, and as many as are assumed until the peer says
    /// how many it takes at once. A peer that takes fewer (its `SETTINGS_MAX_CONCURRENT_STREAMS`)
    /// lowers this for its connection ([`Pool::on_stream_limit`]), and for the endpoint's next
    /// connections until their own SETTINGS are read. Default: 200.
    pub http2_default_streams: u32,
    /// An endpoint's target bounds its requests in flight over HTTP/2 too, not only its
    /// connections: set when a sizer drives the target, which over HTTP/1.1 means both.
    /// Default: false.
    pub streams_within_target: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_total: 100,
            max_per_endpoint: 30,
            max_idle_per_endpoint: 10,
            idle_timeout: Duration::from_secs(30),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            max_waiters: 1024,
            block: true,
            http2_default_streams: 200,
            streams_within_target: false,
        }
    }
}

impl PoolConfig {
    /// Refuses caps that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("max_total", self.max_total, 1, 100_000)?;
        check_range("max_per_endpoint", self.max_per_endpoint, 1, self.max_total)?;
        check_range("max_idle_per_endpoint", self.max_idle_per_endpoint, 0, self.max_per_endpoint)?;
        check_nonzero("idle_timeout", self.idle_timeout)?;
        if let Some(lifetime) = self.max_lifetime {
            check_nonzero("max_lifetime", lifetime)?;
        }
        check_range("max_waiters", self.max_waiters, 0, 1_000_000)?;
        check_range("http2_default_streams", self.http2_default_streams, 1, 10_000)?;
        Ok(())
    }
}

/// A connection slot. Stale ids (of closed connections) are ignored by every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl ConnId {
    /// A number unique among open connections (reused after close).
    pub fn index(self) -> u32 {
        self.index
    }
}

/// A request parked in the pool's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaiterId(u64);

/// What a connection speaks, as learnt when it was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// One request at a time.
    Http1,
    /// Up to `max_streams` requests at once.
    Http2 {
        /// The peer's `SETTINGS_MAX_CONCURRENT_STREAMS` (or the configured default).
        max_streams: u32,
    },
}

/// The answer to [`Pool::checkout`].
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkout {
    /// Send on this open connection; call [`Pool::release`] when the response is done.
    Reuse(ConnId),
    /// Open a connection in this slot; report with `on_connected` or `on_connect_failed`.
    Connect(ConnId),
    /// Wait: [`Pool::poll_grant`] will hand this waiter a [`Grant`] by its deadline.
    Wait(WaiterId),
    /// Refused at once.
    Reject(Reject),
}

/// Why a checkout was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reject {
    /// Every connection is in use and the pool does not block (or the deadline passed).
    Full,
    /// Too many requests already wait.
    QueueFull,
}

/// What a waiter finally gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// As [`Checkout::Reuse`].
    Reuse(ConnId),
    /// As [`Checkout::Connect`].
    Connect(ConnId),
    /// The deadline passed first.
    TimedOut,
    /// The HTTP/2 connection the waiter was to share failed to open, and none other is opening:
    /// the request fails now (and may retry elsewhere) rather than queue behind one connect
    /// attempt after another.
    ConnectFailed,
}

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Idle longer than `idle_timeout`.
    IdleTimeout,
    /// Older than `max_lifetime`.
    MaxLifetime,
    /// An error on the connection.
    Broken,
    /// The server closed it.
    ServerClosed,
    /// The pool shrank.
    Shrink,
    /// More idle connections than `max_idle_per_endpoint`.
    Surplus,
    /// Closed to make room for another endpoint under `max_total`.
    Evicted,
    /// It failed a health check.
    FailedCheck,
    /// The client shut down.
    Shutdown,
}

impl CloseReason {
    const ALL: [CloseReason; 9] = [
        CloseReason::IdleTimeout,
        CloseReason::MaxLifetime,
        CloseReason::Broken,
        CloseReason::ServerClosed,
        CloseReason::Shrink,
        CloseReason::Surplus,
        CloseReason::Evicted,
        CloseReason::FailedCheck,
        CloseReason::Shutdown,
    ];
}

/// Connections closed, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClosedCounts {
    /// Idle longer than `idle_timeout`.
    pub idle_timeout: u64,
    /// Older than `max_lifetime`.
    pub max_lifetime: u64,
    /// An error on the connection.
    pub broken: u64,
    /// The server closed it.
    pub server_closed: u64,
    /// The pool shrank.
    pub shrink: u64,
    /// Over `max_idle_per_endpoint`.
    pub surplus: u64,
    /// Made room for another endpoint.
    pub evicted: u64,
    /// Failed a health check.
    pub failed_check: u64,
    /// Client shut down.
    pub shutdown: u64,
}

impl ClosedCounts {
    fn slot(&mut self, reason: CloseReason) -> &mut u64 {
        match reason {
            CloseReason::IdleTimeout => &mut self.idle_timeout,
            CloseReason::MaxLifetime => &mut self.max_lifetime,
            CloseReason::Broken => &mut self.broken,
            CloseReason::ServerClosed => &mut self.server_closed,
            CloseReason::Shrink => &mut self.shrink,
            CloseReason::Surplus => &mut self.surplus,
            CloseReason::Evicted => &mut self.evicted,
            CloseReason::FailedCheck => &mut self.failed_check,
            CloseReason::Shutdown => &mut self.shutdown,
        }
    }

    /// Connections closed for `reason`.
    pub fn get(&self, reason: CloseReason) -> u64 {
        let mut copy = *self;
        *copy.slot(reason)
    }

    /// All closed connections.
    pub fn total(&self) -> u64 {
        CloseReason::ALL.iter().map(|r| self.get(*r)).sum()
    }
}

/// Counters and gauges of one endpoint's connections (or of the whole pool).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// Connections established.
    pub created: u64,
    /// Checkouts served by an open connection.
    pub reused: u64,
    /// Connection attempts that failed.
    pub connect_failed: u64,
    /// Connections closed, by reason.
    pub closed: ClosedCounts,
    /// Checkouts that had to wait.
    pub waited: u64,
    /// Waiters whose deadline passed.
    pub wait_timeouts: u64,
    /// Checkouts refused at once.
    pub rejected: u64,
    /// Sum of wait times of waiters, however their wait ended (granted, timed out, failed with
    /// their connect, or cancelled).
    pub wait_time_total: Duration,
    /// Longest wait of a waiter, however it ended.
    pub wait_time_max: Duration,
    /// Most connections open at once.
    pub peak_open: u32,
    /// Connections open or opening now.
    pub open: u32,
    /// Connections being opened now.
    pub connecting: u32,
    /// Established connections with no request now.
    pub idle: u32,
    /// Established connections with at least one request now.
    pub busy: u32,
    /// Requests on connections now.
    pub in_flight: u32,
    /// Requests waiting now.
    pub waiting: u32,
}

impl PoolStats {
    /// Adds a wait that ended at `now`, however it ended.
    fn count_wait(&mut self, waiter: Waiter, now: Time) {
        let waited = now.saturating_since(waiter.since);
        self.wait_time_total += waited;
        self.wait_time_max = self.wait_time_max.max(waited);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Request,
    Warmup,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Connecting(Owner),
    /// `retiring`: an HTTP/2 connection given up on while other streams still ran on it. It
    /// takes no new stream, still counts as open, and closes when its last stream is released.
    Ready {
        protocol: Protocol,
        in_use: u32,
        idle_since: Time,
        retiring: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    endpoint: u32,
    created_at: Time,
    state: State,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

#[derive(Debug, Clone, Copy)]
struct Waiter {
    id: WaiterId,
    deadline: Time,
    since: Time,
}

#[derive(Debug)]
struct Endpoint {
    /// Effective cap from dynamic sizing (clamped by `max_per_endpoint`).
    target: u32,
    open: u32,
    connecting: u32,
    /// Idle HTTP/1 connections, most recently used last (LIFO).
    idle: Vec<ConnId>,
    /// Established HTTP/2 connections.
    shared: Vec<ConnId>,
    http2: bool,
    /// The stream limit the peer announced last ([`Pool::on_stream_limit`]): the same server
    /// announces the same on its next connection, before that one's SETTINGS are read.
    peer_streams: Option<u32>,
    /// Connections to keep open (warmup target); closed ones are replaced.
    warm: u32,
    waiters: VecDeque<Waiter>,
    stats: PoolStats,
}

/// Connection accounting for every endpoint of a client.
#[derive(Debug)]
pub struct Pool {
    config: PoolConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    endpoints: Vec<Endpoint>,
    open_total: u32,
    waiting_total: u32,
    next_waiter: u64,
    grants: VecDeque<(WaiterId, Grant)>,
    closes: VecDeque<(ConnId, CloseReason)>,
    peak_total: u32,
}

impl Pool {
    /// A pool for `endpoints` endpoints, every one starting at the full per-endpoint cap.
    pub fn new(config: PoolConfig, endpoints: usize) -> Result<Pool, ConfigError> {
        config.validate()?;
        if endpoints == 0 || endpoints > 1024 {
            return Err(ConfigError::new("endpoints", format!("must be in 1..=1024, got {endpoints}")));
        }
        let per = config.max_per_endpoint as usize;
        let waiters = (config.max_waiters as usize).min(4096);
        let endpoints = (0..endpoints)
            .map(|_| Endpoint {
                target: config.max_per_endpoint,
                open: 0,
                connecting: 0,
                idle: Vec::with_capacity(per),
                shared: Vec::with_capacity(per),
                http2: false,
                warm: 0,
                peer_streams: None,
                waiters: VecDeque::with_capacity(waiters),
                stats: PoolStats::default(),
            })
            .collect();
        let total = config.max_total as usize;
        Ok(Pool {
            slots: Vec::with_capacity(total),
            free: Vec::with_capacity(total),
            endpoints,
            open_total: 0,
            waiting_total: 0,
            next_waiter: 0,
            grants: VecDeque::with_capacity(waiters),
            closes: VecDeque::with_capacity(total),
            peak_total: 0,
            config,
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Number of endpoints.
    pub fn endpoints(&self) -> usize {
        self.endpoints.len()
    }

    /// Sets an endpoint's dynamic cap (clamped to `1..=max_per_endpoint`). Shrinking closes
    /// idle connections only; busy ones close when released.
    pub fn set_target(&mut self, now: Time, endpoint: usize, target: u32) {
        let target = target.clamp(1, self.config.max_per_endpoint);
        self.endpoints[endpoint].target = target;
        while self.endpoints[endpoint].open > target {
            let Some(id) = self.find_idle(endpoint) else { break };
            self.close(id, CloseReason::Shrink, true);
        }
        self.dispatch(now);
    }

    /// An endpoint's current cap.
    #[inline]
    pub fn target(&self, endpoint: usize) -> u32 {
        self.endpoints[endpoint].target
    }

    /// Says an endpoint speaks HTTP/2 (known ahead, e.g. h2c with prior knowledge, or likely,
    /// e.g. h2 offered in TLS ALPN), so requests share a connection that is still being opened
    /// instead of opening more. An HTTP/1.1 connection to it withdraws the expectation.
    pub fn expect_http2(&mut self, endpoint: usize) {
        self.endpoints[endpoint].http2 = true;
    }

    /// A connection for a request to `endpoint`, or a place in the queue until `deadline`.
    pub fn checkout(&mut self, now: Time, endpoint: usize, deadline: Time) -> Checkout {
        self.checkout_preferring(now, endpoint, deadline, None)
    }

    /// As [`Pool::checkout`], but an idle HTTP/1 connection `prefer` of `endpoint` is taken
    /// before the most recently released one. A driver passes the connection its thread
    /// released last: that connection's buffers and socket are still in this core's caches,
    /// where another thread's last one is not.
    #[inline]
    pub fn checkout_preferring(
        &mut self,
        now: Time,
        endpoint: usize,
        deadline: Time,
        prefer: Option<ConnId>,
    ) -> Checkout {
        if self.endpoints[endpoint].waiters.is_empty() {
            if let Some(checkout) = self.try_serve(now, endpoint, prefer) {
                return checkout;
            }
        }
        let ep = &mut self.endpoints[endpoint];
        if !self.config.block || deadline <= now {
            ep.stats.rejected += 1;
            return Checkout::Reject(Reject::Full);
        }
        if self.waiting_total >= self.config.max_waiters {
            ep.stats.rejected += 1;
            return Checkout::Reject(Reject::QueueFull);
        }
        let id = WaiterId(self.next_waiter);
        self.next_waiter += 1;
        ep.waiters.push_back(Waiter { id, deadline, since: now });
        ep.stats.waited += 1;
        self.waiting_total += 1;
        Checkout::Wait(id)
    }

    /// Keeps `n` connections open to `endpoint` from now on (within its cap): when idle expiry,
    /// lifetime or a failed check closes one, [`Pool::warm_deficit`] says to open a replacement.
    pub fn set_warm_target(&mut self, endpoint: usize, n: u32) {
        self.endpoints[endpoint].warm = n;
    }

    /// Connections to open now to bring `endpoint` back to its warm target (0 when at the cap).
    pub fn warm_deficit(&self, endpoint: usize) -> u32 {
        let ep = &self.endpoints[endpoint];
        let want = ep.warm.min(ep.target).saturating_sub(ep.open);
        want.min(self.config.max_total.saturating_sub(self.open_total))
    }

    /// Reserves a slot to open a connection ahead of traffic; `None` when at the cap.
    pub fn reserve_warmup(&mut self, endpoint: usize) -> Option<ConnId> {
        if !self.has_room(endpoint) {
            return None;
        }
        Some(self.reserve(endpoint, Owner::Warmup))
    }

    /// A connection opened. A request's connection goes to that request; a warmup one goes idle.
    pub fn on_connected(&mut self, now: Time, id: ConnId, protocol: Protocol) {
        let Some(&Conn { state: State::Connecting(owner), endpoint, .. }) = self.conn(id) else { return };
        let protocol = match (protocol, self.endpoints[endpoint as usize].peer_streams) {
            // Not read from this connection yet: what the peer said on its last one, if less.
            (Protocol::Http2 { max_streams }, Some(peer)) => Protocol::Http2 { max_streams: max_streams.min(peer) },
            (protocol, _) => protocol,
        };
        let Some(conn) = self.conn_mut(id) else { return };
        let in_use = u32::from(owner == Owner::Request);
        conn.state = State::Ready { protocol, in_use, idle_since: now, retiring: false };
        conn.created_at = now;
        let endpoint = conn.endpoint as usize;
        let ep = &mut self.endpoints[endpoint];
        ep.connecting -= 1;
        ep.stats.created += 1;
        match protocol {
            Protocol::Http2 { .. } => {
                ep.http2 = true;
                ep.shared.push(id);
            }
            Protocol::Http1 => {
                // HTTP/1.1 after all (ALPN said so): stop holding requests for a shared connection.
                ep.http2 = false;
                if in_use == 0 {
                    ep.idle.push(id);
                }
            }
        }
        self.dispatch(now);
    }

    /// The peer of an HTTP/2 connection allows `max_streams` streams at once (its
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`, capped by the caller at `http2_default_streams`). No
    /// stream is added while the connection carries that many; streams above a lowered limit
    /// finish where they are. A raised limit serves waiters at once.
    pub fn on_stream_limit(&mut self, now: Time, id: ConnId, max_streams: u32) {
        let Some(conn) = self.conn_mut(id) else { return };
        let endpoint = conn.endpoint as usize;
        let State::Ready { protocol: Protocol::Http2 { max_streams: limit }, .. } = &mut conn.state else { return };
        let changed = *limit != max_streams;
        *limit = max_streams;
        if max_streams > 0 {
            // A peer holding back all streams for a while says nothing of its next connection.
            self.endpoints[endpoint].peer_streams = Some(max_streams);
        }
        if changed {
            self.dispatch(now);
        }
    }

    /// Opening a connection failed; its slot is free again.
    pub fn on_connect_failed(&mut self, now: Time, id: ConnId) {
        let Some(conn) = self.conn(id) else { return };
        if !matches!(conn.state, State::Connecting(_)) {
            return;
        }
        let endpoint = conn.endpoint as usize;
        self.endpoints[endpoint].stats.connect_failed += 1;
        self.remove(id);
        let ep = &self.endpoints[endpoint];
        if ep.http2 && ep.connecting == 0 && ep.shared.is_empty() {
            // They waited to share it; one failed connect each would come to each in turn.
            // (With an HTTP/2 connection open, they wait for its streams to free instead.)
            let failed = std::mem::take(&mut self.endpoints[endpoint].waiters);
            self.waiting_total -= failed.len() as u32;
            for waiter in &failed {
                self.endpoints[endpoint].stats.count_wait(*waiter, now);
            }
            self.grants.extend(failed.into_iter().map(|waiter| (waiter.id, Grant::ConnectFailed)));
        }
        self.dispatch(now);
    }

    /// A request is done with its connection. `reusable` is false after any error on it.
    #[inline]
    pub fn release(&mut self, now: Time, id: ConnId, reusable: bool) {
        let max_lifetime = self.config.max_lifetime;
        let max_idle = self.config.max_idle_per_endpoint as usize;
        let Some(conn) = self.conn_mut(id) else { return };
        let State::Ready { protocol, in_use, idle_since, retiring } = &mut conn.state else { return };
        *in_use = in_use.saturating_sub(1);
        if *in_use == 0 {
            *idle_since = now;
        }
        let (protocol, idle) = (*protocol, *in_use == 0);
        let endpoint = conn.endpoint as usize;
        if (!reusable || *retiring) && !idle {
            // Other streams still run on this HTTP/2 connection: it takes no new one, and stays
            // counted (caps hold) until the last is released. Closing it now would leave their
            // releases unheard and the pool counting fewer connections than are open.
            *retiring = true;
            self.endpoints[endpoint].shared.retain(|c| *c != id);
            self.dispatch(now);
            return;
        }
        let retired = *retiring;
        let expired = max_lifetime.is_some_and(|l| conn.created_at + l <= now);
        let ep = &self.endpoints[endpoint];
        let reason = if !reusable || retired {
            Some(CloseReason::Broken)
        } else if !idle {
            None
        } else if expired {
            Some(CloseReason::MaxLifetime)
        } else if ep.open > ep.target {
            Some(CloseReason::Shrink)
        } else if protocol == Protocol::Http1 && ep.waiters.is_empty() && ep.idle.len() >= max_idle {
            Some(CloseReason::Surplus)
        } else {
            None
        };
        match reason {
            Some(reason) => self.close(id, reason, true),
            None if protocol == Protocol::Http1 => self.endpoints[endpoint].idle.push(id),
            None => {}
        }
        self.dispatch(now);
    }

    /// A connection just checked out for reuse was found closed by the server while it idled:
    /// it closes, and the checkout is not counted as a reuse (the request opens another).
    pub fn on_reuse_found_closed(&mut self, now: Time, id: ConnId) {
        if let Some(endpoint) = self.endpoint_of(id) {
            let stats = &mut self.endpoints[endpoint].stats;
            stats.reused = stats.reused.saturating_sub(1);
        }
        self.on_closed(now, id, CloseReason::ServerClosed);
    }

    /// The driver found a connection dead (the server closed it, or a check failed).
    pub fn on_closed(&mut self, now: Time, id: ConnId, reason: CloseReason) {
        if self.conn(id).is_none() {
            return;
        }
        self.close(id, reason, false);
        self.dispatch(now);
    }

    /// Takes a waiter out of the queue. `false` if it was already granted: the driver then
    /// holds that grant (from [`Pool::poll_grant`]) and must give it back.
    pub fn cancel_wait(&mut self, now: Time, waiter: WaiterId) -> bool {
        for ep in &mut self.endpoints {
            if let Some(pos) = ep.waiters.iter().position(|w| w.id == waiter) {
                let waiter = ep.waiters.remove(pos).expect("position is in range");
                ep.stats.count_wait(waiter, now);
                self.waiting_total -= 1;
                return true;
            }
        }
        false
    }

    /// Gives back a connection a request got but will not use (e.g. it was cancelled).
    pub fn give_back(&mut self, now: Time, grant: Grant) {
        match grant {
            Grant::Reuse(id) => self.release(now, id, true),
            Grant::Connect(id) => {
                if matches!(self.conn(id).map(|c| c.state), Some(State::Connecting(_))) {
                    self.remove(id);
                    self.dispatch(now);
                }
            }
            Grant::TimedOut | Grant::ConnectFailed => {}
        }
    }

    /// Expires waiters past their deadline, and idle connections past their idle time or lifetime.
    pub fn handle_timeout(&mut self, now: Time) {
        for ep in &mut self.endpoints {
            while let Some(pos) = ep.waiters.iter().position(|w| w.deadline <= now) {
                let waiter = ep.waiters.remove(pos).expect("position is in range");
                ep.stats.wait_timeouts += 1;
                ep.stats.count_wait(waiter, now);
                self.waiting_total -= 1;
                self.grants.push_back((waiter.id, Grant::TimedOut));
            }
        }
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            let Some(conn) = slot.conn else { continue };
            let id = ConnId { index: index as u32, generation: slot.generation };
            if let Some((due, reason)) = self.idle_expiry(&conn) {
                if due <= now {
                    self.close(id, reason, true);
                }
            }
        }
        self.dispatch(now);
    }

    /// The next time [`Pool::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Time> {
        let waiters = self.endpoints.iter().flat_map(|ep| ep.waiters.iter().map(|w| w.deadline));
        let idle = self.slots.iter().filter_map(|s| s.conn).filter_map(|c| self.idle_expiry(&c));
        waiters.chain(idle.map(|(t, _)| t)).min()
    }

    /// The next waiter to wake, with what it got.
    pub fn poll_grant(&mut self) -> Option<(WaiterId, Grant)> {
        self.grants.pop_front()
    }

    #[inline]
    pub(crate) fn has_output(&self) -> bool {
        !self.grants.is_empty() || !self.closes.is_empty()
    }

    /// The next connection the driver must close (the pool already forgot it).
    pub fn poll_close(&mut self) -> Option<(ConnId, CloseReason)> {
        self.closes.pop_front()
    }

    /// Whether `id` is a connection the pool still tracks.
    pub fn is_live(&self, id: ConnId) -> bool {
        self.conn(id).is_some()
    }

    /// The endpoint a live connection belongs to.
    pub fn endpoint_of(&self, id: ConnId) -> Option<usize> {
        self.conn(id).map(|c| c.endpoint as usize)
    }

    /// Requests on a connection now (0 when idle or not live).
    pub fn in_use(&self, id: ConnId) -> u32 {
        match self.conn(id).map(|c| c.state) {
            Some(State::Ready { in_use, .. }) => in_use,
            _ => 0,
        }
    }

    /// Idle connections of an endpoint (for health validation), most recently used last.
    pub fn idle_connections(&self, endpoint: usize) -> impl Iterator<Item = ConnId> + '_ {
        let ep = &self.endpoints[endpoint];
        let shared = ep.shared.iter().copied().filter(|id| self.in_use(*id) == 0);
        ep.idle.iter().copied().chain(shared)
    }

    /// Closes every idle connection (shutdown); busy ones close when released.
    pub fn close_idle(&mut self, reason: CloseReason) {
        for endpoint in 0..self.endpoints.len() {
            while let Some(id) = self.find_idle(endpoint) {
                self.close(id, reason, true);
            }
        }
    }

    /// Checks the pool's own bookkeeping against its slots: caps, counts, one request per
    /// HTTP/1 connection, idle lists holding idle connections.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.open_total > self.config.max_total {
            return Err(format!("{} connections open, max_total is {}", self.open_total, self.config.max_total));
        }
        let mut open = vec![0u32; self.endpoints.len()];
        let mut connecting = vec![0u32; self.endpoints.len()];
        for (index, slot) in self.slots.iter().enumerate() {
            let Some(conn) = slot.conn else { continue };
            let e = conn.endpoint as usize;
            open[e] += 1;
            match conn.state {
                State::Connecting(_) => connecting[e] += 1,
                State::Ready { protocol: Protocol::Http1, in_use, .. } if in_use > 1 => {
                    return Err(format!("HTTP/1 connection {index} of endpoint {e} carries {in_use} requests"));
                }
                // An HTTP/2 connection may carry more streams than its limit after the peer
                // lowered it; that no stream is added past the limit is checked where one is.
                State::Ready { .. } => {}
            }
        }
        for (e, ep) in self.endpoints.iter().enumerate() {
            if ep.open != open[e] || ep.connecting != connecting[e] {
                return Err(format!(
                    "endpoint {e} counts {}/{} open/connecting, slots say {}/{}",
                    ep.open, ep.connecting, open[e], connecting[e]
                ));
            }
            if ep.open > self.config.max_per_endpoint {
                return Err(format!(
                    "endpoint {e} has {} connections, max_per_endpoint is {}",
                    ep.open, self.config.max_per_endpoint
                ));
            }
            if let Some(busy) = ep.idle.iter().find(|id| self.in_use(**id) != 0 || self.conn(**id).is_none()) {
                return Err(format!("endpoint {e} idle list holds a busy or dead connection {busy:?}"));
            }
        }
        let waiting: usize = self.endpoints.iter().map(|ep| ep.waiters.len()).sum();
        if waiting as u32 != self.waiting_total {
            return Err(format!("waiting_total {} but {waiting} queued", self.waiting_total));
        }
        Ok(())
    }

    /// Statistics of one endpoint.
    pub fn endpoint_stats(&self, endpoint: usize) -> PoolStats {
        let ep = &self.endpoints[endpoint];
        let mut stats = ep.stats;
        stats.open = ep.open;
        stats.connecting = ep.connecting;
        stats.waiting = ep.waiters.len() as u32;
        for conn in self.slots.iter().filter_map(|s| s.conn) {
            if conn.endpoint as usize != endpoint {
                continue;
            }
            if let State::Ready { in_use, .. } = conn.state {
                stats.in_flight += in_use;
                if in_use == 0 {
                    stats.idle += 1;
                } else {
                    stats.busy += 1;
                }
            }
        }
        stats
    }

    /// Statistics of the whole pool (`peak_open` is the peak of the total).
    pub fn stats(&self) -> PoolStats {
        let mut total = PoolStats::default();
        for endpoint in 0..self.endpoints.len() {
            let s = self.endpoint_stats(endpoint);
            total.created += s.created;
            total.reused += s.reused;
            total.connect_failed += s.connect_failed;
            for reason in CloseReason::ALL {
                *total.closed.slot(reason) += s.closed.get(reason);
            }
            total.waited += s.waited;
            total.wait_timeouts += s.wait_timeouts;
            total.rejected += s.rejected;
            total.wait_time_total += s.wait_time_total;
            total.wait_time_max = total.wait_time_max.max(s.wait_time_max);
            total.open += s.open;
            total.connecting += s.connecting;
            total.idle += s.idle;
            total.busy += s.busy;
            total.in_flight += s.in_flight;
            total.waiting += s.waiting;
        }
        total.peak_open = self.peak_total;
        total
    }

    #[inline]
    fn conn(&self, id: ConnId) -> Option<&Conn> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.conn.as_ref()
    }

    #[inline]
    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.conn.as_mut()
    }

    #[inline]
    fn idle_expiry(&self, conn: &Conn) -> Option<(Time, CloseReason)> {
        let State::Ready { in_use: 0, idle_since, .. } = conn.state else { return None };
        let idle = (idle_since + self.config.idle_timeout, CloseReason::IdleTimeout);
        match self.config.max_lifetime {
            Some(l) if conn.created_at + l < idle.0 => Some((conn.created_at + l, CloseReason::MaxLifetime)),
            _ => Some(idle),
        }
    }

    #[inline]
    fn has_room(&self, endpoint: usize) -> bool {
        let ep = &self.endpoints[endpoint];
        ep.open < ep.target && self.open_total < self.config.max_total
    }

    /// Serves a checkout for `endpoint` now, if anything is free.
    #[inline]
    fn try_serve(&mut self, now: Time, endpoint: usize, prefer: Option<ConnId>) -> Option<Checkout> {
        // No HTTP/2 connection open (always so over HTTP/1.1): no stream counts.
        let streams_at_target = !self.endpoints[endpoint].shared.is_empty() && self.streams_at_target(endpoint);
        if !streams_at_target {
            if let Some(id) = self.take_shared(endpoint) {
                return Some(Checkout::Reuse(id));
            }
        }
        let idle = &mut self.endpoints[endpoint].idle;
        if let Some(at) = prefer.and_then(|prefer| idle.iter().rposition(|&id| id == prefer)) {
            // To the top of the stack, in place (nothing moves when it is there already, the usual
            // case): the loop below takes it first, and checks its age.
            idle[at..].rotate_left(1);
        }
        while let Some(id) = self.endpoints[endpoint].idle.pop() {
            let conn = self.conn(id).copied().expect("idle list holds live connections");
            if let Some((due, reason)) = self.idle_expiry(&conn) {
                if due <= now {
                    self.close(id, reason, true);
                    continue;
                }
            }
            if let Some(Conn { state: State::Ready { in_use, .. }, .. }) = self.conn_mut(id) {
                *in_use = 1;
            }
            self.endpoints[endpoint].stats.reused += 1;
            return Some(Checkout::Reuse(id));
        }
        if streams_at_target {
            // Another connection would only carry streams past the target.
            return None;
        }
        let ep = &self.endpoints[endpoint];
        if ep.http2 && ep.connecting > 0 {
            // Share the connection being opened rather than open another (hyper#2197), as far
            // as the peer will take.
            let streams = ep.peer_streams.unwrap_or(self.config.http2_default_streams) as usize;
            if ep.waiters.len() < ep.connecting as usize * streams.saturating_sub(1) {
                return None;
            }
        }
        if self.has_room(endpoint) {
            return Some(Checkout::Connect(self.reserve(endpoint, Owner::Request)));
        }
        let ep = &self.endpoints[endpoint];
        if ep.open < ep.target && self.evict_other(endpoint) {
            return Some(Checkout::Connect(self.reserve(endpoint, Owner::Request)));
        }
        None
    }

    #[inline]
    fn take_shared(&mut self, endpoint: usize) -> Option<ConnId> {
        let shared = &self.endpoints[endpoint].shared;
        let mut best: Option<(ConnId, u32)> = None;
        for &id in shared {
            let conn = self.slots[id.index as usize].conn.as_ref()?;
            if let State::Ready { protocol: Protocol::Http2 { max_streams }, in_use, .. } = conn.state {
                if in_use < max_streams && best.is_none_or(|(_, b)| in_use < b) {
                    best = Some((id, in_use));
                }
            }
        }
        let (id, _) = best?;
        if let Some(Conn { state: State::Ready { in_use, .. }, .. }) = self.conn_mut(id) {
            *in_use += 1;
        }
        self.endpoints[endpoint].stats.reused += 1;
        Some(id)
    }

    /// Closes an idle connection of another endpoint to make room under `max_total`.
    fn evict_other(&mut self, endpoint: usize) -> bool {
        let victim = (0..self.endpoints.len()).filter(|&e| e != endpoint).find_map(|e| self.find_idle(e));
        match victim {
            Some(id) => {
                self.close(id, CloseReason::Evicted, true);
                true
            }
            None => false,
        }
    }

    fn find_idle(&self, endpoint: usize) -> Option<ConnId> {
        let ep = &self.endpoints[endpoint];
        // Oldest idle first: the LIFO stack's bottom.
        ep.idle.first().copied().or_else(|| ep.shared.iter().copied().find(|id| self.in_use(*id) == 0))
    }

    fn reserve(&mut self, endpoint: usize, owner: Owner) -> ConnId {
        let conn = Conn { endpoint: endpoint as u32, created_at: Time::ZERO, state: State::Connecting(owner) };
        let id = match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.conn = Some(conn);
                ConnId { index, generation: slot.generation }
            }
            None => {
                self.slots.push(Slot { generation: 0, conn: Some(conn) });
                ConnId { index: self.slots.len() as u32 - 1, generation: 0 }
            }
        };
        let ep = &mut self.endpoints[endpoint];
        ep.open += 1;
        ep.connecting += 1;
        ep.stats.peak_open = ep.stats.peak_open.max(ep.open);
        self.open_total += 1;
        self.peak_total = self.peak_total.max(self.open_total);
        id
    }

    /// Forgets a connection; `notify` queues it for the driver to close.
    fn close(&mut self, id: ConnId, reason: CloseReason, notify: bool) {
        let Some(conn) = self.conn(id).copied() else { return };
        if matches!(conn.state, State::Ready { .. }) {
            *self.endpoints[conn.endpoint as usize].stats.closed.slot(reason) += 1;
        }
        self.remove(id);
        if notify {
            self.closes.push_back((id, reason));
        }
    }

    fn remove(&mut self, id: ConnId) {
        let slot = &mut self.slots[id.index as usize];
        let Some(conn) = slot.conn.take() else { return };
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        let ep = &mut self.endpoints[conn.endpoint as usize];
        ep.open -= 1;
        self.open_total -= 1;
        match conn.state {
            State::Connecting(_) => ep.connecting -= 1,
            State::Ready { protocol: Protocol::Http1, .. } => ep.idle.retain(|c| *c != id),
            State::Ready { .. } => ep.shared.retain(|c| *c != id),
        }
    }

    /// Serves waiters, oldest first across endpoints, while anything is free.
    #[inline]
    fn dispatch(&mut self, now: Time) {
        // The usual case on release: nobody waits (`check_invariants` holds `waiting_total` to the queues).
        if self.waiting_total == 0 {
            return;
        }
        loop {
            let mut order: Option<(usize, WaiterId)> = None;
            let mut served = false;
            // Pick the endpoint whose head waiter is oldest and can be served.
            for endpoint in 0..self.endpoints.len() {
                let Some(head) = self.endpoints[endpoint].waiters.front() else { continue };
                if order.is_none_or(|(_, id)| head.id < id) && self.can_serve(endpoint) {
                    order = Some((endpoint, head.id));
                }
            }
            if let Some((endpoint, _)) = order {
                // Let the waiter pass the HTTP/2 "share the pending connection" rule: it waited already.
                let grant = self.serve_waiter(now, endpoint);
                if let Some(grant) = grant {
                    let ep = &mut self.endpoints[endpoint];
                    let waiter = ep.waiters.pop_front().expect("head exists");
                    ep.stats.count_wait(waiter, now);
                    self.waiting_total -= 1;
                    self.grants.push_back((waiter.id, grant));
                    served = true;
                }
            }
            if !served {
                return;
            }
        }
    }

    /// Whether `endpoint`'s HTTP/2 streams in flight reached its target, when they count
    /// against it (`streams_within_target`).
    #[inline]
    fn streams_at_target(&self, endpoint: usize) -> bool {
        if !self.config.streams_within_target {
            return false;
        }
        let ep = &self.endpoints[endpoint];
        let in_flight: u32 = ep.shared.iter().map(|&id| self.in_use(id)).sum();
        in_flight >= ep.target
    }

    /// Whether an open HTTP/2 connection of `endpoint` is below its peer's stream limit.
    fn has_free_stream(&self, endpoint: usize) -> bool {
        self.endpoints[endpoint].shared.iter().any(|id| {
            matches!(self.conn(*id).map(|c| c.state),
                Some(State::Ready { protocol: Protocol::Http2 { max_streams }, in_use, .. }) if in_use < max_streams)
        })
    }

    fn can_serve(&self, endpoint: usize) -> bool {
        let ep = &self.endpoints[endpoint];
        if !ep.idle.is_empty() {
            return true;
        }
        // As `try_serve` rules: past the target no stream is added, nor a connection opened for one.
        if self.streams_at_target(endpoint) {
            return false;
        }
        if self.has_free_stream(endpoint) {
            return true;
        }
        if ep.http2 && ep.connecting > 0 {
            return false;
        }
        if ep.open >= ep.target {
            return false;
        }
        self.open_total < self.config.max_total
            || (0..self.endpoints.len()).any(|e| e != endpoint && self.find_idle(e).is_some())
    }

    fn serve_waiter(&mut self, now: Time, endpoint: usize) -> Option<Grant> {
        let waiters = std::mem::take(&mut self.endpoints[endpoint].waiters);
        let served = self.try_serve(now, endpoint, None);
        self.endpoints[endpoint].waiters = waiters;
        match served? {
            Checkout::Reuse(id) => Some(Grant::Reuse(id)),
            Checkout::Connect(id) => Some(Grant::Connect(id)),
            Checkout::Wait(_) | Checkout::Reject(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> Time {
        Time::ZERO + Duration::from_secs(secs)
    }

    /// Caps of `max_total` connections, `per` endpoint (busy and idle alike); defaults otherwise.
    fn caps(max_total: u32, per: u32) -> PoolConfig {
        PoolConfig { max_total, max_per_endpoint: per, max_idle_per_endpoint: per, ..PoolConfig::default() }
    }

    fn pool(max_total: u32, per: u32) -> Pool {
        Pool::new(caps(max_total, per), 2).unwrap()
    }

    /// An HTTP/2 connection of endpoint 0 the peer lets carry `max_streams`, carrying `streams`.
    fn http2_carrying(p: &mut Pool, max_streams: u32, streams: usize) -> ConnId {
        let Checkout::Connect(c) = p.checkout(at(0), 0, at(5)) else { panic!("connects") };
        p.on_connected(at(0), c, Protocol::Http2 { max_streams });
        for _ in 1..streams {
            assert_eq!(p.checkout(at(0), 0, at(5)), Checkout::Reuse(c));
        }
        c
    }

    /// An HTTP/2 endpoint whose first connection carries `streams` and then hears the peer
    /// announce `limits` (the last leaves it full): the pool and the second connection, being
    /// opened for the next checkout.
    fn second_connection_after(streams: usize, limits: &[u32]) -> (Pool, ConnId) {
        let mut p = Pool::new(caps(10, 10), 1).unwrap();
        let first = http2_carrying(&mut p, 200, streams);
        for &limit in limits {
            p.on_stream_limit(at(0), first, limit);
        }
        let Checkout::Connect(second) = p.checkout(at(0), 0, at(5)) else { panic!("the first is full") };
        (p, second)
    }

    fn connect(p: &mut Pool, now: Time, endpoint: usize) -> ConnId {
        match p.checkout(now, endpoint, now + Duration::from_secs(5)) {
            Checkout::Connect(id) => {
                p.on_connected(now, id, Protocol::Http1);
                id
            }
            other => panic!("expected connect, got {other:?}"),
        }
    }

    #[test]
    fn reuses_a_released_connection_lifo() {
        let mut p = pool(10, 10);
        let a = connect(&mut p, at(0), 0);
        let b = connect(&mut p, at(0), 0);
        p.release(at(1), a, true);
        p.release(at(2), b, true);
        assert_eq!(p.checkout(at(3), 0, at(8)), Checkout::Reuse(b));
        let s = p.stats();
        assert_eq!((s.created, s.reused, s.open, s.busy, s.idle), (2, 1, 2, 1, 1));
    }

    #[test]
    fn a_preferred_idle_connection_is_taken_before_the_most_recent() {
        let mut p = pool(10, 10);
        let [a, b, c] = [0; 3].map(|_| connect(&mut p, at(0), 0));
        for id in [a, b, c] {
            p.release(at(1), id, true);
        }
        assert_eq!(p.checkout_preferring(at(2), 0, at(8), Some(a)), Checkout::Reuse(a), "taken from the bottom");
        assert_eq!(p.checkout(at(2), 0, at(8)), Checkout::Reuse(c), "the others keep their order");
        // Busy, of another endpoint, or gone: the most recent idle one, as without a preference.
        assert_eq!(p.checkout_preferring(at(2), 0, at(8), Some(a)), Checkout::Reuse(b));
        let other = connect(&mut p, at(2), 1);
        p.release(at(3), other, true);
        p.release(at(3), c, true);
        assert_eq!(p.checkout_preferring(at(4), 0, at(9), Some(other)), Checkout::Reuse(c));
        p.release(at(5), c, true);
        p.release(at(5), b, false);
        assert!(matches!(p.checkout_preferring(at(6), 0, at(9), Some(b)), Checkout::Reuse(id) if id == c));
    }

    #[test]
    fn a_preferred_connection_past_its_idle_timeout_is_closed_not_taken() {
        let mut p = pool(10, 10);
        let a = connect(&mut p, at(0), 0);
        let b = connect(&mut p, at(0), 0);
        p.release(at(1), a, true);
        p.release(at(200), b, true);
        assert_eq!(p.checkout_preferring(at(200), 0, at(205), Some(a)), Checkout::Reuse(b));
        assert_eq!(p.poll_close(), Some((a, CloseReason::IdleTimeout)));
    }

    #[test]
    fn waits_at_the_cap_then_gets_the_released_connection() {
        let mut p = pool(10, 1);
        let a = connect(&mut p, at(0), 0);
        let Checkout::Wait(w) = p.checkout(at(1), 0, at(10)) else { panic!("should wait") };
        assert_eq!(p.poll_grant(), None);
        p.release(at(3), a, true);
        assert_eq!(p.poll_grant(), Some((w, Grant::Reuse(a))));
        let s = p.stats();
        assert_eq!((s.waited, s.wait_time_total, s.in_flight), (1, Duration::from_secs(2), 1));
    }

    #[test]
    fn waiter_times_out_at_its_deadline() {
        let mut p = pool(10, 1);
        let _a = connect(&mut p, at(0), 0);
        let Checkout::Wait(w) = p.checkout(at(1), 0, at(4)) else { panic!("should wait") };
        assert_eq!(p.poll_timeout(), Some(at(4)));
        p.handle_timeout(at(3));
        assert_eq!(p.poll_grant(), None);
        p.handle_timeout(at(4));
        assert_eq!(p.poll_grant(), Some((w, Grant::TimedOut)));
        assert_eq!(p.stats().wait_timeouts, 1);
    }

    #[test]
    fn non_blocking_pool_rejects_and_queue_is_bounded() {
        let mut p = Pool::new(PoolConfig { block: false, ..caps(1, 1) }, 1).unwrap();
        let _a = connect(&mut p, at(0), 0);
        assert_eq!(p.checkout(at(0), 0, at(9)), Checkout::Reject(Reject::Full));
        let mut p = Pool::new(PoolConfig { max_waiters: 1, ..caps(1, 1) }, 1).unwrap();
        let _a = connect(&mut p, at(0), 0);
        assert!(matches!(p.checkout(at(0), 0, at(9)), Checkout::Wait(_)));
        assert_eq!(p.checkout(at(0), 0, at(9)), Checkout::Reject(Reject::QueueFull));
    }

    #[test]
    fn idle_connections_expire_and_stale_ids_are_ignored() {
        let mut p = pool(10, 10);
        let a = connect(&mut p, at(0), 0);
        p.release(at(1), a, true);
        assert_eq!(p.poll_timeout(), Some(at(31)));
        p.handle_timeout(at(31));
        assert_eq!(p.poll_close(), Some((a, CloseReason::IdleTimeout)));
        assert!(!p.is_live(a));
        p.release(at(32), a, true);
        assert_eq!(p.stats().closed.idle_timeout, 1);
        assert!(matches!(p.checkout(at(33), 0, at(40)), Checkout::Connect(_)));
    }

    #[test]
    fn expired_idle_is_skipped_at_checkout() {
        let mut p = pool(10, 10);
        let a = connect(&mut p, at(0), 0);
        p.release(at(1), a, true);
        assert!(matches!(p.checkout(at(100), 0, at(105)), Checkout::Connect(_)));
        assert_eq!(p.poll_close(), Some((a, CloseReason::IdleTimeout)));
    }

    #[test]
    fn an_endpoint_whose_streams_are_at_target_does_not_hold_up_another_endpoints_waiters() {
        let mut p = Pool::new(PoolConfig { streams_within_target: true, ..caps(10, 2) }, 2).unwrap();
        // Endpoint 0: HTTP/2, its two streams at a target of 2, on one connection of two allowed.
        p.set_target(at(0), 0, 2);
        let _ = http2_carrying(&mut p, 100, 2);
        // Endpoint 1: HTTP/1.1, its one connection busy at a target of 1.
        p.set_target(at(0), 1, 1);
        let Checkout::Connect(h1) = p.checkout(at(0), 1, at(9)) else { panic!() };
        p.on_connected(at(0), h1, Protocol::Http1);
        // Endpoint 0's waiter is older than endpoint 1's.
        let Checkout::Wait(_) = p.checkout(at(1), 0, at(9)) else { panic!("at the target: wait") };
        let Checkout::Wait(w1) = p.checkout(at(2), 1, at(9)) else { panic!("at the cap: wait") };
        p.release(at(3), h1, true);
        assert_eq!(p.poll_grant(), Some((w1, Grant::Reuse(h1))), "endpoint 1's freed connection serves its waiter");
        p.check_invariants().unwrap();
    }

    #[test]
    fn a_sized_target_bounds_http2_streams_in_flight_as_it_bounds_http1_connections() {
        for within in [true, false] {
            let config = PoolConfig {
                max_total: 10,
                max_per_endpoint: 10,
                streams_within_target: within,
                ..PoolConfig::default()
            };
            let mut p = Pool::new(config, 1).unwrap();
            p.set_target(at(0), 0, 3);
            p.expect_http2(0);
            let Checkout::Connect(c) = p.checkout(at(0), 0, at(5)) else { panic!() };
            p.on_connected(at(0), c, Protocol::Http2 { max_streams: 100 });
            let mut taken = 1;
            while taken < 5 && matches!(p.checkout(at(0), 0, at(5)), Checkout::Reuse(id) if id == c) {
                taken += 1;
            }
            if !within {
                assert_eq!(taken, 5, "without the rule the target counts connections only");
                continue;
            }
            assert_eq!(taken, 3, "three streams, the target; the fourth waited");
            assert_eq!(p.stats().open, 1, "and no connection opened for it");
            p.release(at(1), c, true);
            assert!(matches!(p.poll_grant(), Some((_, Grant::Reuse(id))) if id == c), "a stream freed serves it");
            p.set_target(at(2), 0, 5);
            assert!(
                matches!(p.checkout(at(2), 0, at(5)), Checkout::Reuse(id) if id == c),
                "a raised target takes more"
            );
            p.check_invariants().unwrap();
        }
    }

    #[test]
    fn a_reuse_found_closed_is_no_reuse() {
        let mut p = pool(1, 1);
        let c = connect(&mut p, at(0), 0);
        p.release(at(1), c, true);
        assert_eq!(p.checkout(at(2), 0, at(9)), Checkout::Reuse(c));
        p.on_reuse_found_closed(at(2), c);
        let s = p.stats();
        assert_eq!((s.created, s.reused, s.closed.server_closed, s.open), (1, 0, 1, 0));
        p.check_invariants().unwrap();
    }

    #[test]
    fn waits_that_time_out_or_are_cancelled_count_as_waits() {
        let mut p = pool(1, 1);
        let c = connect(&mut p, at(0), 0);
        let Checkout::Wait(_) = p.checkout(at(1), 0, at(3)) else { panic!("full: wait") };
        p.handle_timeout(at(3));
        let Checkout::Wait(cancelled) = p.checkout(at(4), 0, at(9)) else { panic!("full: wait") };
        assert!(p.cancel_wait(at(5), cancelled));
        let s = p.stats();
        assert_eq!((s.waited, s.wait_timeouts), (2, 1));
        assert_eq!((s.wait_time_total, s.wait_time_max), (Duration::from_secs(3), Duration::from_secs(2)));
        p.release(at(6), c, true);
        p.check_invariants().unwrap();
    }

    #[test]
    fn http2_shares_until_saturated() {
        let config = PoolConfig { max_total: 10, max_per_endpoint: 10, ..PoolConfig::default() };
        let mut p = Pool::new(config, 1).unwrap();
        p.expect_http2(0);
        let Checkout::Connect(c) = p.checkout(at(0), 0, at(5)) else { panic!() };
        let Checkout::Wait(w) = p.checkout(at(0), 0, at(5)) else { panic!("shares the pending connection") };
        p.on_connected(at(0), c, Protocol::Http2 { max_streams: 2 });
        assert_eq!(p.poll_grant(), Some((w, Grant::Reuse(c))));
        assert_eq!(p.in_use(c), 2);
        assert!(matches!(p.checkout(at(0), 0, at(5)), Checkout::Connect(_)), "saturated: open another");
    }

    #[test]
    fn an_http2_connection_given_up_with_streams_running_retires_when_the_last_ends() {
        let mut p = Pool::new(caps(2, 2), 1).unwrap();
        let c = http2_carrying(&mut p, 10, 3);
        // One of three streams fails the connection: the other two run on, still counted.
        p.release(at(1), c, false);
        assert_eq!(p.poll_close(), None, "two streams still run on it");
        let stats = p.stats();
        assert_eq!((stats.open, stats.busy, stats.in_flight), (1, 1, 2));
        let Checkout::Connect(fresh) = p.checkout(at(1), 0, at(5)) else { panic!("no new stream on it") };
        p.on_connected(at(1), fresh, Protocol::Http2 { max_streams: 10 });
        assert!(matches!(p.checkout(at(1), 0, at(5)), Checkout::Reuse(id) if id == fresh));
        // Within the cap of two: a third connection waits for room.
        p.on_stream_limit(at(1), fresh, 2);
        assert!(matches!(p.checkout(at(1), 0, at(5)), Checkout::Wait(_)), "the retiring one still counts");
        p.on_stream_limit(at(1), c, 10);
        p.release(at(2), c, true);
        assert_eq!(p.poll_close(), None);
        p.release(at(2), c, true);
        assert_eq!(p.poll_close(), Some((c, CloseReason::Broken)), "closed with its last stream");
        assert_eq!(p.stats().closed.broken, 1);
        assert!(matches!(p.poll_grant(), Some((_, Grant::Connect(_)))), "its room goes to the waiter");
        p.check_invariants().unwrap();
    }

    /// The limit a peer announced is what its next connection is taken to allow until that one's
    /// own SETTINGS say otherwise: the requests waiting for it take no more streams than that,
    /// and the rest get a connection of their own.
    #[test]
    fn the_limit_a_peer_announced_holds_for_its_next_connection() {
        let (mut p, second) = second_connection_after(3, &[3]);
        let waiters: Vec<_> = (0..3)
            .map(|_| match p.checkout(at(0), 0, at(5)) {
                Checkout::Wait(w) => w,
                other => panic!("waits for the connection being opened: {other:?}"),
            })
            .collect();
        // Opened before its SETTINGS were read: the caller's default of 200 is not believed.
        p.on_connected(at(0), second, Protocol::Http2 { max_streams: 200 });
        assert_eq!(p.poll_grant(), Some((waiters[0], Grant::Reuse(second))));
        assert_eq!(p.poll_grant(), Some((waiters[1], Grant::Reuse(second))));
        assert!(
            matches!(p.poll_grant(), Some((w, Grant::Connect(_))) if w == waiters[2]),
            "the second is full at three"
        );
        assert_eq!(p.in_use(second), 3);
        // Its own SETTINGS raise it.
        p.on_stream_limit(at(0), second, 5);
        assert_eq!(p.checkout(at(0), 0, at(5)), Checkout::Reuse(second));
        p.check_invariants().unwrap();
    }

    /// A peer holding back every stream for a while (a limit of 0) says nothing of its next
    /// connection: that one is taken to allow what the peer announced before.
    #[test]
    fn a_limit_of_zero_is_not_carried_to_the_next_connection() {
        let (mut p, second) = second_connection_after(1, &[4, 0]);
        p.on_connected(at(0), second, Protocol::Http2 { max_streams: 200 });
        for _ in 1..4 {
            assert_eq!(p.checkout(at(0), 0, at(5)), Checkout::Reuse(second));
        }
        assert!(matches!(p.checkout(at(0), 0, at(5)), Checkout::Connect(_)), "four, as announced before the 0");
        p.check_invariants().unwrap();
    }

    #[test]
    fn the_peers_stream_limit_holds_new_streams_until_the_connection_is_under_it() {
        let mut p = Pool::new(caps(1, 1), 1).unwrap();
        let c = http2_carrying(&mut p, 4, 3);
        // Three streams open; the peer now allows one: the three finish, no fourth starts.
        p.on_stream_limit(at(1), c, 1);
        let Checkout::Wait(w) = p.checkout(at(1), 0, at(5)) else { panic!("over the lowered limit: wait") };
        p.release(at(2), c, true);
        p.release(at(2), c, true);
        assert_eq!(p.poll_grant(), None, "two streams still over a limit of one");
        p.release(at(2), c, true);
        assert_eq!(p.poll_grant(), Some((w, Grant::Reuse(c))), "under the limit: the waiter gets the stream");
        assert_eq!(p.in_use(c), 1);
        // A raised limit serves the next waiter at once, without a release.
        let Checkout::Wait(next) = p.checkout(at(3), 0, at(5)) else { panic!("at the limit of one: wait") };
        p.on_stream_limit(at(3), c, 2);
        assert_eq!(p.poll_grant(), Some((next, Grant::Reuse(c))));
        assert_eq!(p.in_use(c), 2);
    }

    #[test]
    fn waiters_sharing_a_failed_http2_connect_fail_with_it_but_http1_waiters_get_a_connect_each() {
        let config = PoolConfig { max_total: 10, max_per_endpoint: 10, ..PoolConfig::default() };
        for http2 in [true, false] {
            let mut p = Pool::new(config.clone(), 1).unwrap();
            let per = if http2 { 10 } else { 1 };
            p.set_target(at(0), 0, per);
            if http2 {
                p.expect_http2(0);
            }
            let Checkout::Connect(c) = p.checkout(at(0), 0, at(5)) else { panic!() };
            let waiters: Vec<WaiterId> = (0..3)
                .map(|_| match p.checkout(at(0), 0, at(5)) {
                    Checkout::Wait(w) => w,
                    other => panic!("waits behind the connect: {other:?}"),
                })
                .collect();
            p.on_connect_failed(at(1), c);
            let grants: Vec<_> = std::iter::from_fn(|| p.poll_grant()).collect();
            if http2 {
                let failed: Vec<_> = waiters.iter().map(|&w| (w, Grant::ConnectFailed)).collect();
                assert_eq!(grants, failed, "each waiter learns of the failed connect at once");
            } else {
                assert!(matches!(grants[..], [(w, Grant::Connect(_))] if w == waiters[0]), "{grants:?}");
            }
            p.check_invariants().unwrap();
        }
    }

    #[test]
    fn a_failed_extra_http2_connect_does_not_fail_the_waiters_of_an_open_connection() {
        let config = PoolConfig { max_total: 10, max_per_endpoint: 10, ..PoolConfig::default() };
        let mut p = Pool::new(config, 1).unwrap();
        let _ = http2_carrying(&mut p, 1, 1);
        // Saturated: another connection opens, and a request waits meanwhile.
        let Checkout::Connect(extra) = p.checkout(at(1), 0, at(9)) else { panic!("saturated: open another") };
        let Checkout::Wait(w) = p.checkout(at(1), 0, at(9)) else { panic!("waits") };
        p.on_connect_failed(at(2), extra);
        // Not failed with it: the waiter gets the freed room (a connect of its own), as over HTTP/1.1.
        assert!(matches!(p.poll_grant(), Some((id, Grant::Connect(_))) if id == w));
        p.check_invariants().unwrap();
    }

    #[test]
    fn an_http1_answer_withdraws_the_http2_expectation() {
        // h2 offered in ALPN, http/1.1 chosen: the held request opens its own connection.
        let config = PoolConfig { max_total: 10, max_per_endpoint: 10, ..PoolConfig::default() };
        let mut p = Pool::new(config, 1).unwrap();
        p.expect_http2(0);
        let Checkout::Connect(c) = p.checkout(at(0), 0, at(5)) else { panic!() };
        let Checkout::Wait(w) = p.checkout(at(0), 0, at(5)) else { panic!("holds for the pending connection") };
        p.on_connected(at(1), c, Protocol::Http1);
        assert!(matches!(p.poll_grant(), Some((id, Grant::Connect(_))) if id == w));
        assert!(matches!(p.checkout(at(1), 0, at(5)), Checkout::Connect(_)), "no longer held while connecting");
    }

    #[test]
    fn closed_warm_connections_are_replaced() {
        let mut p = pool(10, 10);
        p.set_warm_target(0, 2);
        assert_eq!(p.warm_deficit(0), 2);
        let a = p.reserve_warmup(0).unwrap();
        let b = p.reserve_warmup(0).unwrap();
        p.on_connected(at(0), a, Protocol::Http1);
        p.on_connected(at(0), b, Protocol::Http1);
        assert_eq!(p.warm_deficit(0), 0);
        p.handle_timeout(at(31));
        assert_eq!(p.stats().closed.idle_timeout, 2);
        assert_eq!(p.warm_deficit(0), 2, "expired warm connections are to be replaced");
        p.set_target(at(31), 0, 1);
        assert_eq!(p.warm_deficit(0), 1, "never beyond the endpoint's cap");
    }

    #[test]
    fn shrinking_closes_idle_only() {
        let mut p = pool(10, 10);
        let a = connect(&mut p, at(0), 0);
        let b = connect(&mut p, at(0), 0);
        p.release(at(1), a, true);
        p.set_target(at(1), 0, 1);
        assert_eq!(p.poll_close(), Some((a, CloseReason::Shrink)));
        assert!(p.is_live(b), "busy connection survives");
        p.set_target(at(1), 0, 1);
        assert_eq!(p.stats().open, 1);
    }

    #[test]
    fn evicts_idle_of_another_endpoint_under_total_cap() {
        let mut p = pool(1, 1);
        let a = connect(&mut p, at(0), 0);
        p.release(at(1), a, true);
        assert!(matches!(p.checkout(at(2), 1, at(7)), Checkout::Connect(_)));
        assert_eq!(p.poll_close(), Some((a, CloseReason::Evicted)));
    }

    #[test]
    fn warmup_connections_go_idle_and_are_reused() {
        let mut p = pool(10, 10);
        let w = p.reserve_warmup(0).unwrap();
        p.on_connected(at(0), w, Protocol::Http1);
        assert_eq!(p.checkout(at(1), 0, at(5)), Checkout::Reuse(w));
        assert_eq!(p.stats().created, 1);
    }

    #[test]
    fn config_errors_name_the_field() {
        let bad = PoolConfig { max_per_endpoint: 200, ..PoolConfig::default() };
        assert_eq!(bad.validate().unwrap_err().field, "max_per_endpoint");
        let bad = PoolConfig { idle_timeout: Duration::ZERO, ..PoolConfig::default() };
        assert_eq!(bad.validate().unwrap_err().field, "idle_timeout");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Checkout { endpoint: usize, wait_ms: u64 },
        Finish { pick: usize, ok: bool },
        ConnectDone { pick: usize, ok: bool, h2: bool },
        Cancel { pick: usize },
        Advance { ms: u64 },
        Shrink { endpoint: usize, target: u32 },
        ServerClose { pick: usize },
        StreamLimit { pick: usize, max_streams: u32 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3usize, 0..3000u64).prop_map(|(endpoint, wait_ms)| Op::Checkout { endpoint, wait_ms }),
            (any::<usize>(), any::<bool>()).prop_map(|(pick, ok)| Op::Finish { pick, ok }),
            (any::<usize>(), any::<bool>(), any::<bool>()).prop_map(|(pick, ok, h2)| Op::ConnectDone { pick, ok, h2 }),
            any::<usize>().prop_map(|pick| Op::Cancel { pick }),
            (0..2000u64).prop_map(|ms| Op::Advance { ms }),
            (0..3usize, 1..5u32).prop_map(|(endpoint, target)| Op::Shrink { endpoint, target }),
            any::<usize>().prop_map(|pick| Op::ServerClose { pick }),
            (any::<usize>(), 0..4u32).prop_map(|(pick, max_streams)| Op::StreamLimit { pick, max_streams }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// (b) caps hold and every waiter gets exactly one answer by its deadline.
        #[test]
        fn caps_hold_and_no_waiter_is_lost(
            max_total in 1..6u32, per in 1..4u32, within in any::<bool>(), ops in prop::collection::vec(op(), 1..200)
        ) {
            let per = per.min(max_total);
            let config = PoolConfig { max_waiters: 8, streams_within_target: within, ..caps(max_total, per) };
            let mut p = Pool::new(config, 3).unwrap();
            let mut now = Time::ZERO;
            let mut using: Vec<ConnId> = Vec::new();
            let mut connecting: Vec<ConnId> = Vec::new();
            let mut waiting: Vec<(WaiterId, Time)> = Vec::new();
            let mut answered = std::collections::HashSet::new();
            // A stream added to an HTTP/2 connection stays within the connection's limit.
            // With `streams_within_target`, as many as the endpoint's target over all of them.
            let within_limit = |p: &Pool, id: ConnId| match p.conn(id) {
                Some(Conn { endpoint, state: State::Ready { protocol: Protocol::Http2 { max_streams }, in_use, .. }, .. }) => {
                    let ep = &p.endpoints[*endpoint as usize];
                    let in_flight: u32 = ep.shared.iter().map(|&c| p.in_use(c)).sum();
                    in_use <= max_streams && (!within || in_flight <= ep.target)
                }
                _ => true,
            };
            for op in ops {
                match op {
                    Op::Checkout { endpoint, wait_ms } => match p.checkout(now, endpoint, now + Duration::from_millis(wait_ms)) {
                        Checkout::Reuse(id) => {
                            prop_assert!(within_limit(&p, id), "a stream past the HTTP/2 limit");
                            using.push(id);
                        }
                        Checkout::Connect(id) => connecting.push(id),
                        Checkout::Wait(w) => waiting.push((w, now + Duration::from_millis(wait_ms))),
                        Checkout::Reject(_) => {}
                    },
                    Op::Finish { pick, ok } if !using.is_empty() => {
                        let id = using.swap_remove(pick % using.len());
                        p.release(now, id, ok);
                    }
                    Op::ConnectDone { pick, ok, h2 } if !connecting.is_empty() => {
                        let id = connecting.swap_remove(pick % connecting.len());
                        if ok {
                            let protocol = if h2 { Protocol::Http2 { max_streams: 2 } } else { Protocol::Http1 };
                            p.on_connected(now, id, protocol);
                            using.push(id);
                        } else {
                            p.on_connect_failed(now, id);
                        }
                    }
                    Op::Cancel { pick } if !waiting.is_empty() => {
                        let (w, _) = waiting.swap_remove(pick % waiting.len());
                        prop_assert!(p.cancel_wait(now, w), "an undrained waiter must still be queued");
                        answered.insert(w);
                    }
                    Op::Advance { ms } => {
                        now = now + Duration::from_millis(ms);
                        p.handle_timeout(now);
                    }
                    Op::Shrink { endpoint, target } => p.set_target(now, endpoint, target),
                    Op::ServerClose { pick } => {
                        let idle = p.idle_connections(pick % 3).next();
                        if let Some(id) = idle { p.on_closed(now, id, CloseReason::ServerClosed); }
                    }
                    Op::StreamLimit { pick, max_streams } if !using.is_empty() => {
                        p.on_stream_limit(now, using[pick % using.len()], max_streams);
                    }
                    _ => {}
                }
                while p.poll_close().is_some() {}
                while let Some((w, grant)) = p.poll_grant() {
                    prop_assert!(answered.insert(w), "waiter answered twice");
                    let (_, deadline) = *waiting.iter().find(|(id, _)| *id == w).expect("known waiter");
                    waiting.retain(|(id, _)| *id != w);
                    match grant {
                        Grant::Reuse(id) => {
                            prop_assert!(within_limit(&p, id), "a waiter served past the HTTP/2 limit");
                            using.push(id);
                        }
                        Grant::Connect(id) => connecting.push(id),
                        Grant::TimedOut => prop_assert!(now >= deadline),
                        Grant::ConnectFailed => {}
                    }
                }
                // Nobody waits past their deadline once time has been handled.
                for (_, deadline) in &waiting {
                    prop_assert!(*deadline > now, "a waiter outlived its deadline");
                }
                if let Err(broken) = p.check_invariants() { prop_assert!(false, "{}", broken); }
                let s = p.stats();
                prop_assert!(s.open <= max_total);
                for e in 0..3 {
                    prop_assert!(p.endpoint_stats(e).open <= per);
                }
                for id in &using {
                    if let Some(Conn { state: State::Ready { protocol: Protocol::Http1, in_use, .. }, .. }) = p.conn(*id) {
                        prop_assert!(*in_use <= 1, "two requests on one HTTP/1 connection");
                    }
                }
            }
            // Drain: every remaining waiter is answered by its deadline.
            now = now + Duration::from_secs(10);
            p.handle_timeout(now);
            while let Some((w, _)) = p.poll_grant() {
                prop_assert!(answered.insert(w));
                waiting.retain(|(id, _)| *id != w);
            }
            prop_assert!(waiting.is_empty(), "lost waiters: {:?}", waiting);
        }
    }
}
