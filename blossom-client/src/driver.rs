//! The driver: pool-core decides, this module acts on real connections.
//!
//! Core and the connection senders live behind one lock, held only for synchronous calls, never
//! across an `.await`. Waiters park on oneshot channels outside the lock. The time is read in one
//! place ([`Shared::now`], tokio's clock, so a paused or simulated clock drives everything), and a
//! background task holding only a `Weak` runs core's timers and the active health checks.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use pool_core::{Checkout, CloseReason, ConnId, Core, Event, Grant, Protocol, Time, WaiterId};
use tokio::sync::{Notify, broadcast, oneshot};

use crate::alarm::Alarm;
use crate::api::RequestSpec;
use crate::client::{Deadline, bounded};
use crate::config::{ApiKey, ClientConfig, ParsedRegion, intern};
use crate::connect::{Connect, Target};
use crate::error::{Error, TimeoutPhase};
use crate::headers::RegionHeaders;
use crate::stats::Recorder;
use crate::transport::{Body, H2Connection, H2Sender};
use crate::watch::{WatchKey, Watchlist};

/// A request sender on an open connection.
pub(crate) enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    /// Boxed: a sender moves with every request (step, lease), and this one is the larger.
    H2(Box<H2Sender>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    pub(crate) fn is_h2(&self) -> bool {
        matches!(self, Sender::H2(_))
    }

    /// The cause of a failure on this connection, as the caller should see it.
    pub(crate) fn explain(&self, source: crate::error::BoxError) -> crate::error::BoxError {
        match self {
            Sender::H1(_) => source,
            Sender::H2(s) => s.explain(source),
        }
    }

    /// Sends `request`. It is taken at once; the future only waits for the response, so it
    /// holds no copy of the request (an `async fn` would keep one in its state).
    pub(crate) fn send(
        &mut self,
        request: http::Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<http::Response<Body>, crate::error::BoxError>> + '_ {
        match self {
            // An idle connection from the pool is ready as a rule; waiting for it is the slow
            // path, boxed.
            Sender::H1(s) if s.is_ready() => Sent::H1 { sent: s.send_request(request) },
            Sender::H1(s) => Sent::H1Later {
                sent: Box::pin(async move {
                    s.ready().await?;
                    s.send_request(request).await
                }),
            },
            Sender::H2(s) => Sent::H2 { sent: s.send(request) },
        }
    }
}

pin_project_lite::pin_project! {
    /// A response on its way, in one level (each level a response passes moves it once more):
    /// hyper's HTTP/1.1 future, the same after waiting for the connection, or an HTTP/2
    /// stream's. hyper's response comes out as a [`Body`].
    #[project = SentProj]
    enum Sent<F, L, H> {
        H1 { #[pin] sent: F },
        H1Later { #[pin] sent: L },
        H2 { #[pin] sent: H },
    }
}

type H1Result = hyper::Result<http::Response<hyper::body::Incoming>>;

impl<F, L, H> Future for Sent<F, L, H>
where
    F: Future<Output = H1Result>,
    L: Future<Output = H1Result>,
    H: Future<Output = Result<http::Response<Body>, crate::error::BoxError>>,
{
    type Output = Result<http::Response<Body>, crate::error::BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let sent = match self.project() {
            SentProj::H1 { sent } => std::task::ready!(sent.poll(cx)),
            SentProj::H1Later { sent } => std::task::ready!(sent.poll(cx)),
            SentProj::H2 { sent } => return sent.poll(cx),
        };
        Poll::Ready(match sent {
            Ok(response) => Ok(response.map(Body::H1)),
            Err(error) => Err(Box::new(error) as crate::error::BoxError),
        })
    }
}

/// A connection in the driver's table.
struct Entry {
    id: ConnId,
    /// `None` while an HTTP/1 connection is lent to a request.
    sender: Option<Sender>,
    /// HTTP/2 senders that finished requests gave back, lent again before a new clone is made:
    /// a clone and its drop are atomic writes to lines the connection's task shares. At most
    /// as many as requests ran at once on the connection.
    #[allow(clippy::vec_box)] // reason: lent and given back as the box a request holds, no allocation per request
    spares: Vec<Box<H2Sender>>,
}

/// State under the lock.
pub(crate) struct Inner {
    pub(crate) core: Core,
    conns: Vec<Option<Entry>>,
    waiters: HashMap<WaiterId, oneshot::Sender<Grant>>,
    pub(crate) recorder: Recorder,
    /// The time the background task sleeps until.
    scheduled: Time,
    /// A deadline may have come earlier than `scheduled` (a waiter queued, an event published).
    pub(crate) dirty: bool,
    /// In-flight attempts' deadlines, served by the background task.
    pub(crate) watch: Watchlist,
}

/// An event with the region it concerns, as `client.events()` yields it.
#[derive(Debug, Clone)]
pub struct ClientEvent {
    /// Time since the client was built.
    pub at: Duration,
    /// The region's name, when the event concerns one.
    pub region: Option<String>,
    /// What core decided.
    pub event: Event,
}

/// The lock and the state it guards, on cache lines of their own: each core that takes the lock
/// takes those lines over, and the fields read outside it on every request (the clock's epoch,
/// the config) stay where they are. 128 bytes, as crossbeam's `CachePadded` on x86-64, whose
/// prefetchers pull lines in pairs.
#[repr(align(128))]
struct Locked(Mutex<Inner>);

thread_local! {
    /// The HTTP/1.1 connection this thread released last, and the client it belongs to: the
    /// thread's next request of that client takes it if it is idle still (see
    /// [`pool_core::Pool::checkout_preferring`]).
    static LAST_RELEASED: Cell<(u64, Option<ConnId>)> = const { Cell::new((0, None)) };
}

/// Tells the clients apart in [`LAST_RELEASED`] (an address could be reused by the next one).
static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

/// Everything the clones of a client share.
pub(crate) struct Shared {
    inner: Locked,
    /// This client among those of the process.
    id: u64,
    epoch: tokio::time::Instant,
    pub(crate) wake: Arc<Notify>,
    /// Whether the background task runs: cleared when its runtime drops it (see
    /// [`Shared::keep_background`]).
    background: AtomicBool,
    pub(crate) regions: Vec<ParsedRegion>,
    connector: Arc<dyn Connect>,
    pub(crate) config: ClientConfig,
    pub(crate) api_key: Option<ApiKey>,
    /// Per region: the headers its requests carry, built once.
    headers: Vec<RegionHeaders>,
    pub(crate) events: broadcast::Sender<ClientEvent>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// A connection lent to one request.
pub(crate) struct Lease {
    pub(crate) conn: ConnId,
    pub(crate) sender: Sender,
    pub(crate) reused: bool,
    pub(crate) waited: Duration,
}

impl Shared {
    pub(crate) fn new(
        config: ClientConfig,
        regions: Vec<ParsedRegion>,
        connector: Arc<dyn Connect>,
    ) -> Result<Arc<Shared>, Error> {
        let specs: Vec<_> = regions.iter().map(|r| r.spec.clone()).collect();
        let epoch = tokio::time::Instant::now();
        let mut core = Core::new(config.session.clone(), &specs, Time::ZERO)?;
        for (endpoint, region) in regions.iter().enumerate() {
            // h2c (prior knowledge) applies to plain-http regions; https ones offering h2 in ALPN
            // are expected to pick it, so a cold burst shares the first connection instead of
            // opening one each. An HTTP/1.1 answer withdraws the expectation (pool-core).
            let h2c = config.http2_prior_knowledge && !region.tls;
            let alpn_h2 = region.tls && config.session.http2;
            if h2c || alpn_h2 {
                core.pool_mut().expect_http2(endpoint);
            }
        }
        let total = config.session.async_limit_total as usize;
        let (events, _) = broadcast::channel(1024);
        HeaderValue::from_str(&config.user_agent).map_err(|_| Error::Config {
            field: "user_agent".into(),
            problem: "must be a valid header value".into(),
        })?;
        // Static (interned), as the region's authority is: every request clones it.
        let user_agent = HeaderValue::from_static(intern(&config.user_agent));
        let authorization = match &config.api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    Error::Config { field: "api_key".into(), problem: "must be printable ASCII without spaces".into() }
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let headers =
            regions.iter().map(|r| RegionHeaders::new(&r.host_header, &user_agent, authorization.as_ref())).collect();
        Ok(Arc::new(Shared {
            inner: Locked(Mutex::new(Inner {
                core,
                conns: (0..total).map(|_| None).collect(),
                waiters: HashMap::new(),
                recorder: Recorder::new(1000),
                scheduled: Time::ZERO,
                dirty: false,
                watch: Watchlist::default(),
            })),
            id: NEXT_CLIENT.fetch_add(1, Ordering::Relaxed),
            epoch,
            wake: Arc::new(Notify::new()),
            background: AtomicBool::new(false),
            regions,
            connector,
            api_key: config.api_key.clone(),
            headers,
            config,
            events,
        }))
    }

    /// The one place the client reads the clock.
    pub(crate) fn now(&self) -> Time {
        Time::from_elapsed(self.epoch.elapsed())
    }

    /// The tokio instant of a core time.
    pub(crate) fn instant(&self, time: Time) -> tokio::time::Instant {
        self.epoch + time.elapsed()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Arms an attempt's deadline (see [`crate::watch`]); wakes the background task if it
    /// sleeps past it.
    pub(crate) fn arm(&self, inner: &mut Inner, key: Option<WatchKey>, deadline: Time, waker: &Waker) -> WatchKey {
        let key = inner.watch.arm(key, deadline, waker);
        if deadline < inner.scheduled {
            inner.scheduled = deadline;
            self.wake.notify_one();
        }
        key
    }

    /// Delivers grants, closes connections core dropped, and publishes events. Call after every
    /// core call that may have changed something, with the lock held.
    pub(crate) fn settle(&self, inner: &mut Inner) {
        // The request path's usual case, told at a glance: nothing queued, no deadline moved.
        if !inner.dirty && !inner.core.has_output() {
            return;
        }
        // The clock is read only if something needs it (a grant to give back, an event).
        let mut clock = None;
        let mut now = || *clock.get_or_insert_with(|| self.now());
        loop {
            let mut progressed = false;
            while let Some((id, _reason)) = inner.core.pool_mut().poll_close() {
                if let Some(slot) = inner.conns.get_mut(id.index() as usize) {
                    if slot.as_ref().is_some_and(|e| e.id == id) {
                        *slot = None;
                    }
                }
                progressed = true;
            }
            while let Some((waiter, grant)) = inner.core.pool_mut().poll_grant() {
                progressed = true;
                let delivered = match inner.waiters.remove(&waiter) {
                    Some(tx) => tx.send(grant).is_ok(),
                    None => false,
                };
                if !delivered {
                    inner.core.pool_mut().give_back(now(), grant);
                }
            }
            if !progressed {
                break;
            }
        }
        while let Some(event) = inner.core.poll_event() {
            self.publish(now(), event);
            inner.dirty = true;
        }
        // Wake the background task only when a deadline may have come earlier than it sleeps to.
        // It wakes at least every second anyway, so later deadlines (idle expiry) need no wake,
        // and the request path does not scan the pool for them.
        if std::mem::take(&mut inner.dirty) {
            if let Some(next) = inner.core.poll_timeout() {
                if next < inner.scheduled {
                    inner.scheduled = next;
                    self.wake.notify_one();
                }
            }
        }
    }

    fn publish(&self, now: Time, event: Event) {
        let region = match &event {
            Event::Breaker { endpoint, event: e } => {
                let name = &self.regions[*endpoint].name;
                tracing::warn!(region = %name, from = ?e.from, to = ?e.to, reason = ?e.reason, "circuit breaker transition");
                Some(*endpoint)
            }
            Event::Resized { endpoint, event: e } => {
                tracing::info!(region = %self.regions[*endpoint].name, from = e.from, to = e.to, policy = e.policy, "pool resized");
                Some(*endpoint)
            }
            Event::Paused { endpoint, until, .. } => {
                let wait = until.saturating_since(now);
                tracing::warn!(region = %self.regions[*endpoint].name, wait_ms = wait.as_millis() as u64, "rate limited: pausing region");
                Some(*endpoint)
            }
            Event::Failover { from, to, .. } => {
                tracing::warn!(from = %self.regions[*from].name, to = %self.regions[*to].name, "failover");
                Some(*to)
            }
            Event::Health(e) => {
                tracing::warn!(event = ?e, "health");
                health_endpoint(e)
            }
            _ => None,
        };
        let region = region.map(|i| self.regions[i].name.clone());
        let _ = self.events.send(ClientEvent { at: now.elapsed(), region, event });
    }

    pub(crate) fn build_request(
        &self,
        endpoint: usize,
        spec: &RequestSpec,
        path: &str,
        h2: bool,
        as_get: bool,
    ) -> Result<http::Request<Full<Bytes>>, Error> {
        let region = &self.regions[endpoint];
        let mut path_and_query = String::with_capacity(region.prefix.len() + path.len());
        path_and_query.push_str(&region.prefix);
        path_and_query.push_str(path);
        // The builders' paths are valid; one that `send` was given is checked here, parsed once.
        let path_and_query = http::uri::PathAndQuery::try_from(path_and_query).map_err(|_| {
            Error::invalid_input(format!("`path_and_query` is not a valid URI path and query, got {path:?}"))
        })?;
        // HTTP/2 takes the absolute form, from parts parsed once; HTTP/1.1 the origin form.
        let uri = if h2 {
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(if region.tls { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP });
            parts.authority = Some(region.uri_authority.clone());
            parts.path_and_query = Some(path_and_query);
            http::Uri::from_parts(parts).expect("scheme, authority and path make a uri")
        } else {
            http::Uri::from(path_and_query)
        };
        // Built in place rather than through `http::request::Builder`, which moves the whole
        // request on every call: this is the hot path.
        // `as_get`: a redirect turned the request into a bodiless `GET`.
        let (method, body, content_type) = if as_get {
            (http::Method::GET, None, None)
        } else {
            (spec.method.clone(), spec.body.clone(), spec.content_type)
        };
        let mut request = http::Request::new(Full::new(body.unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = self.headers[endpoint].for_request(h2, spec.accept, content_type)?;
        Ok(request)
    }

    /// Turns a checkout into a step the request can await; registers a waiter's channel.
    /// Call under the same lock as the checkout.
    pub(crate) fn step(&self, inner: &mut Inner, checkout: Checkout) -> Step {
        match checkout {
            // Take the sender under this lock already: one lock less per request.
            Checkout::Reuse(id) => match take_sender(inner, id) {
                Some(sender) => Step::Ready(id, sender),
                None => Step::Grant(Grant::Reuse(id)),
            },
            Checkout::Connect(id) => Step::Grant(Grant::Connect(id)),
            Checkout::Wait(waiter) => {
                let (tx, rx) = oneshot::channel();
                inner.waiters.insert(waiter, tx);
                inner.dirty = true;
                Step::Wait(waiter, rx)
            }
            Checkout::Reject(_) => Step::Full,
        }
    }

    /// A connection for `endpoint`: reuses, connects or waits as the step says.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        endpoint: usize,
        first: Step,
        pool_deadline: Time,
        deadline: Option<Deadline>,
    ) -> Result<Lease, Error> {
        let mut step = first;
        let mut waited = Duration::ZERO;
        let failed = loop {
            let grant = match step {
                Step::Ready(conn, sender) => return Ok(Lease { conn, sender, reused: true, waited }),
                Step::Grant(grant) => grant,
                Step::Full => break Error::PoolFull { region: self.regions[endpoint].name.clone() },
                Step::Wait(waiter, rx) => {
                    let since = self.now();
                    let grant = WaitGuard { shared: self, waiter, since, rx: Some(rx) }.wait().await;
                    waited += self.now().saturating_since(since);
                    grant
                }
            };
            match grant {
                Grant::Reuse(id) => {
                    let mut inner = self.lock();
                    if let Some(sender) = take_sender(&mut inner, id) {
                        return Ok(Lease { conn: id, sender, reused: true, waited });
                    }
                    // Closed by the server while idle: never hand it out (nor count it reused); ask again.
                    let now = self.now();
                    inner.core.pool_mut().on_reuse_found_closed(now, id);
                    let checkout = inner.core.pool_mut().checkout(now, endpoint, pool_deadline);
                    step = self.step(&mut inner, checkout);
                    self.settle(&mut inner);
                }
                Grant::Connect(id) => {
                    // Boxed: the connect future (TCP, TLS, handshake) is large and rarely live.
                    match Box::pin(self.connect(endpoint, id, false, deadline)).await {
                        Ok(sender) => {
                            let sender = sender.expect("a request's connection is lent to it");
                            return Ok(Lease { conn: id, sender, reused: false, waited });
                        }
                        Err(error) => break error,
                    }
                }
                Grant::TimedOut => {
                    break Error::Timeout { phase: TimeoutPhase::PoolWait, limit: self.config.session.pool_timeout };
                }
                Grant::ConnectFailed => {
                    let region = self.regions[endpoint].name.clone();
                    break Error::Connect { region, source: Box::new(SharedConnectFailed) };
                }
            }
        };
        // A wait that ended in a failure is counted here; one that ended with a connection, by
        // the attempt that uses it (under the lock it takes anyway).
        if !waited.is_zero() {
            self.lock().recorder.waited(waited);
        }
        Err(failed)
    }

    /// Opens a connection in slot `id`: connect, TLS and HTTP handshake, within the connect timeout.
    /// A `warm` connection goes idle into the table (`Ok(None)`); otherwise it is lent to the caller.
    pub(crate) async fn connect(
        self: &Arc<Self>,
        endpoint: usize,
        id: ConnId,
        warm: bool,
        deadline: Option<Deadline>,
    ) -> Result<Option<Sender>, Error> {
        let mut guard = ConnectGuard { shared: self, id, armed: true, failed: false };
        let region = &self.regions[endpoint];
        let target = Target {
            tls: region.tls,
            host: region.host.clone(),
            port: region.port,
            offer_h2: self.config.session.http2,
        };
        let limit = self.config.session.async_timeout_connect;
        let prior_knowledge = self.config.http2_prior_knowledge && !region.tls;
        let opened = bounded(deadline, limit, TimeoutPhase::Connect, async {
            let connection =
                self.connector.connect(&target).await.map_err(|e| Box::new(e) as crate::error::BoxError)?;
            if prior_knowledge || connection.negotiated_h2 {
                let keep_alive = self.config.session.http2_ping_interval.map(|interval| crate::ping::KeepAlive {
                    interval,
                    timeout: self.config.session.http2_ping_timeout,
                });
                let (sender, conn) = crate::transport::handshake(connection.io, keep_alive)
                    .await
                    .map_err(|e| Box::new(e) as crate::error::BoxError)?;
                Ok::<_, crate::error::BoxError>((Sender::H2(Box::new(sender)), ConnTask::H2 { conn }))
            } else {
                let (sender, conn) = http1::Builder::new()
                    .writev(false)
                    .handshake(TokioIo::new(connection.io))
                    .await
                    .map_err(|e| Box::new(e) as crate::error::BoxError)?;
                Ok((Sender::H1(sender), ConnTask::H1 { conn }))
            }
        })
        .await;
        let (sender, task) = match opened {
            Err(timeout) => {
                guard.failed = true;
                return Err(timeout);
            }
            Ok(Err(source)) => {
                guard.failed = true;
                return Err(Error::Connect { region: region.name.clone(), source });
            }
            Ok(Ok(opened)) => opened,
        };
        guard.armed = false;
        let mut inner = self.lock();
        let protocol = match &sender {
            // Read under the lock the connection's task reports a change under: none is lost.
            // Until the peer's SETTINGS say otherwise, the pool's own limit (or what the peer
            // said on its last connection, pool-core's rule): streams past the peer's wait
            // inside the connection meanwhile.
            Sender::H2(s) => {
                Protocol::Http2 { max_streams: s.stream_limit().map_or(self.stream_cap(), |n| self.streams_for(n)) }
            }
            Sender::H1(_) => Protocol::Http1,
        };
        inner.core.pool_mut().on_connected(self.now(), id, protocol);
        let (stored, lent) = match sender {
            Sender::H2(s) if warm => (Some(Sender::H2(s)), None),
            Sender::H2(s) => (Some(Sender::H2(s.clone())), Some(Sender::H2(s))),
            Sender::H1(s) if warm => (Some(Sender::H1(s)), None),
            Sender::H1(s) => (None, Some(Sender::H1(s))),
        };
        if let Some(slot) = inner.conns.get_mut(id.index() as usize) {
            *slot = Some(Entry { id, sender: stored, spares: Vec::new() });
        }
        self.settle(&mut inner);
        drop(inner);
        // Started once the pool counts the connection open: were it to end before, its end would
        // find a slot still connecting, and the connection would be counted nowhere.
        tokio::spawn(ConnDriver { task, shared: Arc::downgrade(self), id });
        Ok(lent)
    }

    /// The pool's limit of HTTP/2 streams per connection.
    fn stream_cap(&self) -> u32 {
        self.config.session.pool().http2_default_streams
    }

    /// The streams the pool puts on an HTTP/2 connection whose peer takes `peer` at once.
    fn streams_for(&self, peer: usize) -> u32 {
        u32::try_from(peer).unwrap_or(u32::MAX).min(self.stream_cap())
    }

    /// The peer of an HTTP/2 connection changed how many streams it takes at once.
    fn on_peer_stream_limit(&self, id: ConnId, peer: usize) {
        let mut inner = self.lock();
        let now = self.now();
        inner.core.pool_mut().on_stream_limit(now, id, self.streams_for(peer));
        self.settle(&mut inner);
    }

    /// The server (or an error) ended a connection: forget it if idle; a busy one is closed
    /// when its request releases it.
    fn connection_ended(&self, id: ConnId, reason: CloseReason) {
        let mut inner = self.lock();
        let pool = inner.core.pool_mut();
        if pool.is_live(id) && pool.in_use(id) == 0 {
            pool.on_closed(self.now(), id, reason);
            if let Some(slot) = inner.conns.get_mut(id.index() as usize) {
                *slot = None;
            }
            self.settle(&mut inner);
        }
    }

    /// Closes the idle HTTP/1 connections of `endpoint` (after one of them proved stale).
    pub(crate) fn close_idle_http1(&self, inner: &mut Inner, endpoint: usize) {
        let now = self.now();
        let idle: Vec<ConnId> = inner.core.pool().idle_connections(endpoint).collect();
        for id in idle {
            let index = id.index() as usize;
            let http1 = inner
                .conns
                .get(index)
                .and_then(Option::as_ref)
                .is_some_and(|e| e.id == id && matches!(e.sender, Some(Sender::H1(_))));
            if http1 {
                // Presumed closed by the server with the stale one; dropping the sender closes it.
                inner.core.pool_mut().on_closed(now, id, CloseReason::ServerClosed);
                inner.conns[index] = None;
            }
        }
    }

    /// Gives a connection back after a request.
    pub(crate) fn release(&self, inner: &mut Inner, lease: Lease, reusable: bool, now: Time) {
        let reusable = reusable && !lease.sender.is_closed();
        if reusable && !lease.sender.is_h2() {
            LAST_RELEASED.with(|last| last.set((self.id, Some(lease.conn))));
        }
        if reusable {
            if let Some(Some(entry)) = inner.conns.get_mut(lease.conn.index() as usize) {
                if entry.id == lease.conn {
                    match lease.sender {
                        Sender::H1(_) => entry.sender = Some(lease.sender),
                        Sender::H2(sender) => entry.spares.push(sender),
                    }
                }
            }
        }
        inner.core.pool_mut().release(now, lease.conn, reusable);
    }

    /// The connection this thread released last, if it is this client's.
    pub(crate) fn released_here(&self) -> Option<ConnId> {
        LAST_RELEASED.with(|last| match last.get() {
            (client, conn) if client == self.id => conn,
            _ => None,
        })
    }

    /// HTTP/2 senders kept for reuse, over all connections.
    pub(crate) fn spare_senders(&self) -> usize {
        self.lock().conns.iter().flatten().map(|entry| entry.spares.len()).sum()
    }

    /// Runs core's timers; returns when to run again (within a second).
    fn tick(self: &Arc<Self>) -> Time {
        let now = self.now();
        let mut inner = self.lock();
        inner.core.handle_timeout(now);
        // Validation: an idle connection the server closed is dropped now, not at checkout.
        let idle: Vec<ConnId> =
            (0..self.regions.len()).flat_map(|e| inner.core.pool().idle_connections(e).collect::<Vec<_>>()).collect();
        for id in idle {
            let closed = inner
                .conns
                .get(id.index() as usize)
                .and_then(Option::as_ref)
                .and_then(|e| e.sender.as_ref())
                .is_none_or(Sender::is_closed);
            if closed {
                inner.core.pool_mut().on_closed(now, id, CloseReason::ServerClosed);
                inner.conns[id.index() as usize] = None;
            }
        }
        let mut checks = Vec::new();
        while let Some(endpoint) = inner.core.poll_check(now) {
            checks.push(endpoint);
        }
        // Replacement: warm connections closed by idle expiry, lifetime or validation are reopened,
        // but only toward a region that may take traffic (no reconnect storm against a dead one).
        let mut replacements = Vec::new();
        for endpoint in 0..self.regions.len() {
            let core = &inner.core;
            if !core.breaker(endpoint).would_admit(now) || !core.health().is_usable(endpoint, now) {
                continue;
            }
            for _ in 0..inner.core.pool().warm_deficit(endpoint) {
                if let Some(id) = inner.core.pool_mut().reserve_warmup(endpoint) {
                    replacements.push((endpoint, id));
                }
            }
        }
        self.settle(&mut inner);
        let mut due = Vec::new();
        inner.watch.expire(now, |waker| due.push(waker));
        let cap = now + Duration::from_secs(1);
        let next = [inner.core.poll_timeout(), inner.watch.next_deadline()].into_iter().flatten().fold(cap, Time::min);
        inner.scheduled = next;
        drop(inner);
        // Attempts past their deadline see it when polled, and fail with their timeout.
        due.into_iter().for_each(Waker::wake);
        for endpoint in checks {
            let shared = self.clone();
            tokio::spawn(async move { crate::health::probe(shared, endpoint).await });
        }
        for (endpoint, id) in replacements {
            // Detached: the task ends on its own.
            drop(self.spawn_replacement(endpoint, id));
        }
        next
    }

    /// Opens a warm connection in slot `id`, reserved already, on a task of its own.
    fn spawn_replacement(self: &Arc<Self>, endpoint: usize, id: ConnId) -> tokio::task::JoinHandle<()> {
        let mut reserved = Reserved { shared: self.clone(), id, armed: true };
        tokio::spawn(async move {
            // From its first step `connect` guards the slot itself.
            reserved.armed = false;
            let shared = &reserved.shared;
            if let Err(error) = shared.connect(endpoint, id, true, None).await {
                tracing::debug!(region = %shared.regions[endpoint].name, %error, "replacing a warm connection failed");
            }
        })
    }
}

/// What a request does next to get a connection.
pub(crate) enum Step {
    /// An open connection, already taken (use it at once: the pool counts it busy).
    Ready(ConnId, Sender),
    Grant(Grant),
    Wait(WaiterId, oneshot::Receiver<Grant>),
    Full,
}

impl Shared {
    /// Gives back the slot of a connect given up on before it failed or opened: nothing is
    /// counted, and whoever waited to share it gets the slot (a connect of its own).
    fn abandon_connect(&self, id: ConnId) {
        let mut inner = self.lock();
        inner.core.pool_mut().give_back(self.now(), Grant::Connect(id));
        self.settle(&mut inner);
    }

    /// Starts the background task again on the caller's runtime if the runtime that ran it shut
    /// down (a client built in one runtime and used in another, or a blocking client's async
    /// handle outliving it). Every deadline and pool wait depends on that task.
    pub(crate) fn keep_background(self: &Arc<Self>) {
        if self.background.load(Ordering::Relaxed) || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if self.background.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            tracing::debug!("the background task's runtime is gone: starting it on this one");
            run_background(self);
        }
    }
}

/// Starts the background task: timers, validation and health checks. It holds only a `Weak`,
/// so dropping the last client clone stops it.
pub(crate) fn spawn_background(shared: &Arc<Shared>) {
    shared.background.store(true, Ordering::Release);
    run_background(shared);
}

/// Clears [`Shared::background`] when the task is dropped with its runtime.
struct BackgroundRuns(Weak<Shared>);

impl Drop for BackgroundRuns {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.background.store(false, Ordering::Release);
        }
    }
}

fn run_background(shared: &Arc<Shared>) {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let wake = shared.wake.clone();
    let runs = BackgroundRuns(weak.clone());
    let alarm = Alarm::for_current_runtime(&wake);
    tokio::spawn(async move {
        let _runs = runs;
        loop {
            let deadline = {
                let Some(shared) = weak.upgrade() else { return };
                let next = shared.tick();
                shared.instant(next)
            };
            alarm.wait(&wake, deadline).await;
        }
    });
}

fn take_sender(inner: &mut Inner, id: ConnId) -> Option<Sender> {
    let entry = inner.conns.get_mut(id.index() as usize)?.as_mut().filter(|e| e.id == id)?;
    match entry.sender.as_ref()? {
        sender if sender.is_closed() => None,
        Sender::H2(s) => Some(Sender::H2(entry.spares.pop().unwrap_or_else(|| s.clone()))),
        Sender::H1(_) => entry.sender.take(),
    }
}

type BoxedIo = TokioIo<Box<dyn crate::connect::Io>>;

pin_project_lite::pin_project! {
    /// A connection's future, held inline (no box, no extra future level per poll).
    #[project = ConnTaskProj]
    enum ConnTask {
        H1 { #[pin] conn: http1::Connection<BoxedIo, Full<Bytes>> },
        H2 { #[pin] conn: H2Connection },
    }
}

pin_project_lite::pin_project! {
    /// A connection's background task: drives the connection, then tells the pool it ended.
    struct ConnDriver {
        #[pin]
        task: ConnTask,
        shared: Weak<Shared>,
        id: ConnId,
    }
}

impl Future for ConnDriver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let result = match this.task.project() {
            ConnTaskProj::H1 { conn } => std::task::ready!(conn.poll(cx)).map_err(crate::error::BoxError::from),
            ConnTaskProj::H2 { mut conn } => {
                let polled = conn.as_mut().poll(cx);
                if let Some(peer) = conn.stream_limit_changed() {
                    if let Some(shared) = this.shared.upgrade() {
                        shared.on_peer_stream_limit(*this.id, peer);
                    }
                }
                std::task::ready!(polled)
            }
        };
        let mut reason = CloseReason::ServerClosed;
        if let Err(error) = result {
            tracing::debug!(%error, "connection ended with an error");
            if error.is::<crate::ping::PingTimedOut>() {
                // Not closed by the peer: it went silent.
                reason = CloseReason::Broken;
            }
        }
        if let Some(shared) = this.shared.upgrade() {
            shared.connection_ended(*this.id, reason);
        }
        Poll::Ready(())
    }
}

/// Why a request that waited to share an HTTP/2 connection got none: the connection failed to
/// open. The request that opened it counts the failure against the region; the ones that
/// waited for it do not count it again.
#[derive(Debug)]
pub(crate) struct SharedConnectFailed;

impl std::fmt::Display for SharedConnectFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the HTTP/2 connection this request waited to share failed to open")
    }
}

impl std::error::Error for SharedConnectFailed {}

/// Takes a waiter out of the queue if its request is dropped, and gives back a grant that
/// arrived too late.
struct WaitGuard<'a> {
    shared: &'a Shared,
    waiter: WaiterId,
    /// When the wait began.
    since: Time,
    rx: Option<oneshot::Receiver<Grant>>,
}

impl WaitGuard<'_> {
    async fn wait(mut self) -> Grant {
        let rx = self.rx.as_mut().expect("receiver present until dropped");
        let grant = rx.await.unwrap_or(Grant::TimedOut);
        self.rx = None;
        grant
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        let mut inner = self.shared.lock();
        inner.waiters.remove(&self.waiter);
        let now = self.shared.now();
        // A cancelled wait is a wait too: counted, as granted and timed-out ones are.
        inner.recorder.waited(now.saturating_since(self.since));
        if !inner.core.pool_mut().cancel_wait(now, self.waiter) {
            if let Ok(grant) = rx.try_recv() {
                inner.core.pool_mut().give_back(now, grant);
            }
        }
        self.shared.settle(&mut inner);
    }
}

/// A slot reserved for a connect whose task has not run yet: given back if the task is dropped
/// unrun (its runtime shut down), rather than left connecting for good.
struct Reserved {
    shared: Arc<Shared>,
    id: ConnId,
    armed: bool,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.armed {
            self.shared.abandon_connect(self.id);
        }
    }
}

/// Frees a reserved slot if connecting fails or is abandoned.
struct ConnectGuard<'a> {
    shared: &'a Shared,
    id: ConnId,
    armed: bool,
    /// The connect failed (an error or its timeout), rather than its caller giving up on it.
    failed: bool,
}

impl Drop for ConnectGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if !self.failed {
            self.shared.abandon_connect(self.id);
            return;
        }
        let mut inner = self.shared.lock();
        inner.core.pool_mut().on_connect_failed(self.shared.now(), self.id);
        self.shared.settle(&mut inner);
    }
}

fn health_endpoint(event: &pool_core::HealthEvent) -> Option<usize> {
    use pool_core::HealthEvent as H;
    match event {
        H::Ejected { endpoint, .. }
        | H::Readmitted { endpoint, .. }
        | H::MarkedUnhealthy { endpoint, .. }
        | H::MarkedHealthy { endpoint, .. } => Some(*endpoint),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client of a region where nothing listens (a port just freed), and its slot reserved
    /// for a warm connection.
    fn reserved_slot(runtime: &tokio::runtime::Runtime) -> (crate::BlossomClient, ConnId) {
        let freed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let client = runtime.block_on(async {
            crate::BlossomClient::builder().base_url(format!("http://{freed}")).build().expect("client")
        });
        let id = client.shared.lock().core.pool_mut().reserve_warmup(0).expect("room for one");
        (client, id)
    }

    fn connecting(shared: &Shared) -> u32 {
        let inner = shared.lock();
        inner.core.check_invariants().expect("the pool's bookkeeping holds");
        inner.core.pool().endpoint_stats(0).connecting
    }

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    /// A replacement whose runtime shuts down before its task ran gives its slot back, rather
    /// than leave it connecting for good.
    #[test]
    fn a_replacement_dropped_unrun_gives_its_slot_back() {
        let runtime = current_thread();
        let (client, id) = reserved_slot(&runtime);
        assert_eq!(connecting(&client.shared), 1);
        let doomed = current_thread();
        // Spawned from a future that is done at its first poll: the task never runs.
        doomed.block_on(async { drop(client.shared.spawn_replacement(0, id)) });
        drop(doomed);
        assert_eq!(connecting(&client.shared), 0, "the slot is given back");
    }

    /// One that runs hands the slot to `connect`: the connect fails (nothing listens), counts
    /// the failure and frees the slot.
    #[test]
    fn a_replacement_that_runs_and_fails_frees_its_slot() {
        let runtime = current_thread();
        let (client, id) = reserved_slot(&runtime);
        let ran = runtime.block_on(async { client.shared.spawn_replacement(0, id).await });
        ran.expect("the task ran to its end");
        assert_eq!(connecting(&client.shared), 0);
        assert_eq!(client.shared.lock().core.pool().endpoint_stats(0).connect_failed, 1);
    }
}
