//! `BlossomClient`: one pool shared by every clone, and the life of a call through it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use pool_core::{BreakerState, Decision, Outcome, RejectReason, Request, Retry, Ticket, Time, WaitReason};

use crate::api::RequestSpec;
use crate::config::{ApiKey, ClientConfig, ParsedRegion, Region};
use crate::connect::{Connect, TcpConnector};
use crate::driver::{ClientEvent, Inner, Lease, Shared, Step, spawn_background};
use crate::error::{ApiError, ApiErrorKind, BoxError, Error, TimeoutPhase};
use crate::stats::Stats;
use crate::watch::WatchKey;

/// The stream `client.events()` returns.
pub type EventStream = std::pin::Pin<Box<dyn Stream<Item = ClientEvent> + Send + 'static>>;

/// The Pollinations client. Cheap to clone: every clone shares one pool, one breaker per region,
/// one rate limiter. Must be built inside a tokio runtime.
#[derive(Clone)]
pub struct BlossomClient {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for BlossomClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.shared.regions.iter().map(|r| r.name.as_str()).collect();
        f.debug_struct("BlossomClient").field("regions", &names).field("api_key", &self.shared.api_key).finish()
    }
}

/// Builds a [`BlossomClient`].
#[derive(Default)]
pub struct ClientBuilder {
    config: ClientConfig,
    connector: Option<Arc<dyn Connect>>,
    from_env: bool,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Starts from a whole configuration.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// The session settings (pool, timeouts, resilience).
    pub fn session(mut self, session: pool_core::SessionConfig) -> Self {
        self.config.session = session;
        self
    }

    /// Changes the session settings in place.
    pub fn session_with(mut self, change: impl FnOnce(&mut pool_core::SessionConfig)) -> Self {
        change(&mut self.config.session);
        self
    }

    /// The API key (sent as `Authorization: Bearer` to the configured regions only).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = Some(ApiKey::new(key));
        self
    }

    /// The base URL of the single default region.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.config.base_url = url.into();
        self
    }

    /// Adds a region (the first call replaces the default region).
    pub fn region(mut self, region: Region) -> Self {
        self.config.regions.push(region);
        self
    }

    /// Speaks HTTP/2 without negotiation over plain http (h2c).
    pub fn http2_prior_knowledge(mut self) -> Self {
        self.config.http2_prior_knowledge = true;
        self
    }

    /// Follows up to `max` redirects within the same region (at most [`crate::MAX_REDIRECTS`]);
    /// a redirect to another host is always refused. Default: 0 (redirects are refused).
    pub fn max_redirects(mut self, max: u32) -> Self {
        self.config.max_redirects = max;
        self
    }

    /// Opens connections with this connector (turmoil, a proxy, a test double).
    pub fn connector(mut self, connector: impl Connect) -> Self {
        self.connector = Some(Arc::new(connector));
        self
    }

    /// Applies the environment (see [`ClientConfig::apply_env`]) when building.
    pub fn from_env(mut self) -> Self {
        self.from_env = true;
        self
    }

    /// Validates everything and starts the client's background task (timers, validation, health
    /// checks). On a multi-thread runtime the task's time is kept by `blossom-alarm`, one thread
    /// for the process that the first client starts. The task ends when the client's clones and
    /// the streams it handed out are dropped, or with its runtime (a later call starts it again
    /// on its own): build one client and share it.
    pub fn build(mut self) -> Result<BlossomClient, Error> {
        if self.from_env {
            self.config.apply_env()?;
        }
        self.config.validate()?;
        let regions = self.config.parsed_regions()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config {
                field: "runtime".into(),
                problem: "the async client must be built inside a tokio runtime (or use blossom_client::blocking)"
                    .into(),
            });
        }
        let connector = self.connector.unwrap_or_else(|| Arc::new(TcpConnector::new()));
        let shared = Shared::new(self.config, regions, connector)?;
        spawn_background(&shared);
        Ok(BlossomClient { shared })
    }
}

/// A 2xx answer read in full, as [`BlossomClient::send`] returns it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Reply {
    /// The status: a success (2xx).
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, at most `max_response_bytes` long; empty if the server sent none.
    pub body: Bytes,
}

/// A streamed response: the body still to read, and what to give back when done.
pub(crate) struct Streaming {
    pub(crate) body: crate::transport::Body,
    pub(crate) done: Completion<'static>,
}

/// The client's shared state as a completion holds it: borrowed while the call runs (no
/// reference-count traffic between cores on the hot path), owned once a streamed body outlives
/// the call.
enum SharedRef<'a> {
    Borrowed(&'a Arc<Shared>),
    Owned(Arc<Shared>),
}

impl std::ops::Deref for SharedRef<'_> {
    type Target = Arc<Shared>;

    fn deref(&self) -> &Arc<Shared> {
        match self {
            SharedRef::Borrowed(shared) => shared,
            SharedRef::Owned(shared) => shared,
        }
    }
}

/// Finishes a streamed attempt: outcome to core, connection to the pool. If dropped without
/// `complete`, the attempt is abandoned and the connection closed.
pub(crate) struct Completion<'a> {
    shared: SharedRef<'a>,
    ticket: Option<Ticket>,
    lease: Option<Lease>,
    /// False once the server said it closes the connection (`Connection: close`): it is then
    /// never handed out again, whatever the outcome.
    keep_alive: bool,
    /// The response head arrived: the connection was alive for this attempt.
    answered: bool,
    /// For a streamed call: when the call started. Completing records the call's result then.
    pub(crate) call_started: Option<Time>,
    /// Where the attempt's deadline is armed (see [`crate::watch`]); disarmed on completion.
    watch: WatchSlot,
}

/// An attempt's armed deadline, as the attempt knows it.
#[derive(Debug, Default)]
pub(crate) struct WatchSlot {
    key: Option<WatchKey>,
    /// The deadline armed.
    end: Time,
    /// Which task's waker is armed with it: compared, never woken (the watchlist holds the
    /// waker), so the slot keeps no clone of it.
    task: WakerIdentity,
}

/// What `Waker::will_wake` compares: the waker's data and vtable addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct WakerIdentity(usize, usize);

impl WakerIdentity {
    fn of(waker: &Waker) -> Self {
        WakerIdentity(waker.data() as usize, std::ptr::from_ref(waker.vtable()) as usize)
    }
}

impl WatchSlot {
    /// Arms `end` for the task of `waker`, under the lock the caller holds.
    fn arm(&mut self, shared: &Shared, inner: &mut Inner, end: Time, waker: &Waker) {
        self.key = Some(shared.arm(inner, self.key, end, waker));
        self.end = end;
        self.task = WakerIdentity::of(waker);
    }

    /// Whether the task of `waker` is woken by `end` already: armed with `end`, or with an
    /// earlier deadline still ahead of `now`. That one wakes the task first, and the task,
    /// finding `end` not yet come, arms `end` then: a later bound costs no lock until needed.
    fn covers(&self, end: Time, now: Time, waker: &Waker) -> bool {
        self.key.is_some() && self.end <= end && now < self.end && self.task == WakerIdentity::of(waker)
    }

    /// Frees the slot, under the lock the caller holds.
    fn disarm(&mut self, inner: &mut Inner) {
        if let Some(key) = self.key.take() {
            inner.watch.disarm(key);
        }
    }
}

impl<'a> Completion<'a> {
    /// Holds a connection outside any request (health checks).
    pub(crate) fn lease_only(shared: Arc<Shared>, lease: Lease) -> Completion<'static> {
        Completion {
            shared: SharedRef::Owned(shared),
            ticket: None,
            lease: Some(lease),
            keep_alive: true,
            answered: false,
            call_started: None,
            watch: WatchSlot::default(),
        }
    }

    /// For an attempt of a call that borrows the client; `watch` may be armed already.
    fn attempt(shared: &'a Arc<Shared>, ticket: Ticket, watch: WatchSlot) -> Self {
        Completion {
            shared: SharedRef::Borrowed(shared),
            ticket: Some(ticket),
            lease: None,
            keep_alive: true,
            answered: false,
            call_started: None,
            watch,
        }
    }

    /// The attempt moved out to a completion free of the call's borrow (a streamed body outlives
    /// the call); this one is left empty.
    fn take_owned(&mut self) -> Completion<'static> {
        Completion {
            shared: SharedRef::Owned(Arc::clone(&self.shared)),
            ticket: self.ticket.take(),
            lease: self.lease.take(),
            keep_alive: self.keep_alive,
            answered: self.answered,
            call_started: self.call_started.take(),
            watch: std::mem::take(&mut self.watch),
        }
    }

    /// Removes the client's key from what a server's text put into `error`.
    pub(crate) fn redact(&self, error: &mut Error) {
        if let Some(key) = &self.shared.api_key {
            error.redact_secret(key.expose());
        }
    }

    /// Moves the attempt's connection out to a completion of its own, which gives it back when
    /// it ends (or is dropped); this one still counts the call and tells core its outcome.
    pub(crate) fn split_connection(&mut self) -> Completion<'static> {
        let lease = self.lease.take().expect("lease held until complete");
        let mut connection = Completion::lease_only(Arc::clone(&self.shared), lease);
        (connection.keep_alive, connection.answered) = (self.keep_alive, self.answered);
        connection
    }

    /// Whether the attempt holds an HTTP/2 connection.
    pub(crate) fn is_h2(&self) -> bool {
        self.lease.as_ref().is_some_and(|lease| lease.sender.is_h2())
    }

    /// A failure the attempt's connection reported: its cause as the caller should see it (see
    /// `Sender::explain`), and whether it ended only the stream (see [`only_the_stream`]).
    fn failure(&mut self, source: BoxError) -> (BoxError, bool) {
        let source = self.sender().explain(source);
        let only_stream = only_the_stream(self.is_h2(), Some(&source));
        (source, only_stream)
    }

    /// The connection's sender.
    pub(crate) fn sender(&mut self) -> &mut crate::driver::Sender {
        &mut self.lease.as_mut().expect("lease held until complete").sender
    }

    /// Ends the attempt with `outcome`; a streamed call counts as succeeded. Returns the time
    /// read for it.
    pub(crate) fn complete(&mut self, outcome: Outcome, reusable: bool) -> Time {
        self.end(Some(outcome), reusable, Some(Ok(())))
    }

    /// Ends a streamed attempt that broke off with `error`. An HTTP/1.1 connection is closed; an
    /// HTTP/2 one only when the failure may be the connection's (a timeout, `GOAWAY`, I/O).
    pub(crate) fn fail(&mut self, error: &Error, outcome: Outcome) {
        let is_h2 = self.is_h2();
        let reusable = match error {
            Error::Timeout { .. } => false,
            Error::Stream { source: Some(source), .. } => only_the_stream(is_h2, Some(source)),
            _ => only_the_stream(is_h2, None),
        };
        self.end(Some(outcome), reusable, Some(Err(error)));
    }

    /// Ends the attempt under one lock: disarms its deadline, tells core `outcome` (`None`:
    /// abandoned), gives the connection back, and counts a streamed call as `call` says.
    /// Returns the time read for it.
    fn end(&mut self, outcome: Option<Outcome>, reusable: bool, call: Option<Result<(), &Error>>) -> Time {
        // The clock is read before the lock, as `begin`'s is: the lock is held no longer than
        // core needs it.
        let now = self.shared.now();
        let mut inner = self.shared.lock();
        self.watch.disarm(&mut inner);
        match (call, self.call_started.take()) {
            (Some(result), Some(started)) => inner.recorder.finished(now.saturating_since(started), result),
            // A stream dropped before its end.
            (None, Some(_)) => inner.recorder.cancelled(),
            _ => {}
        }
        if let Some(ticket) = self.ticket.take() {
            match outcome {
                Some(outcome) => inner.core.finish(now, ticket, outcome),
                None => inner.core.abandon(now, ticket),
            }
        }
        if let Some(lease) = self.lease.take() {
            self.shared.release(&mut inner, lease, reusable && self.keep_alive, now);
        }
        self.shared.settle(&mut inner);
        now
    }

    /// Notes the response head: a server that announces `Connection: close` gets no more
    /// requests on this connection.
    pub(crate) fn saw_response_head(&mut self, headers: &HeaderMap) {
        if announces_close(headers) {
            self.keep_alive = false;
        }
    }

    pub(crate) fn read_timeout(&self) -> Duration {
        self.shared.config.session.async_timeout_sock_read
    }

    pub(crate) fn max_line_bytes(&self) -> usize {
        (self.shared.config.session.max_response_bytes as usize).min(crate::sse::DEFAULT_MAX_LINE_BYTES)
    }
}

impl Drop for Completion<'_> {
    /// An attempt dropped unfinished (its caller gave up, or stopped reading a stream): an
    /// HTTP/2 stream that was answered is reset alone and its connection serves on; one given up
    /// before any answer may have waited on a dead connection, which is retired. An HTTP/1.1
    /// connection, halfway through an exchange, is closed.
    fn drop(&mut self) {
        if self.ticket.is_some() || self.lease.is_some() || self.watch.key.is_some() {
            let reusable = self.answered && only_the_stream(self.is_h2(), None);
            self.end(None, reusable, None);
        }
    }
}

/// A call counted as begun and not yet ended: dropped so, it is counted cancelled.
struct CallCount<'a> {
    shared: &'a Shared,
    open: bool,
}

impl Drop for CallCount<'_> {
    fn drop(&mut self) {
        if self.open {
            self.shared.lock().recorder.cancelled();
        }
    }
}

/// How an attempt failed and what may follow (core has heard the outcome already). The error
/// is boxed: it is large, and the attempt's result is moved on every successful request too.
struct Failed {
    error: Box<Error>,
    next: Next,
    /// Whether the request may have reached the server (a spec that is not idempotent is then
    /// not sent again).
    sent: bool,
}

enum Begun {
    Go(Ticket, Step, WatchSlot),
    Wait(Time, WaitReason),
    Fail(Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Final.
    Stop,
    /// Once, at once: a reused connection failed before any response (the retry takes a fresh
    /// one), or an HTTP/2 server did not process the request (see [`unprocessed`]).
    Stale,
    /// With backoff, within the retry budget.
    Backoff,
    /// After the server's `Retry-After` (core pauses the region meanwhile).
    AfterPause,
}

impl Failed {
    fn new(error: Error, next: Next) -> Self {
        Failed { error: Box::new(error), next, sent: true }
    }

    /// A failure before the request left the client.
    fn unsent(error: Error, next: Next) -> Self {
        Failed { error: Box::new(error), next, sent: false }
    }
}

/// Turns a whole 2xx response into the caller's value. Its error (an empty or invalid body) is
/// the attempt's failure: counted, reported to core, and retried when the error says a retry
/// may help.
pub(crate) type Parse<'a, T> = &'a (dyn Fn(Reply) -> Result<T, Error> + Send + Sync);

pub(crate) enum Mode<'a, T> {
    Full(Parse<'a, T>),
    Stream,
}

pub(crate) enum Answer<T> {
    /// The value, and when the attempt that gave it finished.
    Full(T, Time),
    /// Boxed: a streamed answer is large and rare, and every full answer is moved several times.
    Stream(Box<Streaming>),
}

impl BlossomClient {
    /// A client for the default base URL, configured from the environment.
    pub fn new() -> Result<BlossomClient, Error> {
        BlossomClient::builder().from_env().build()
    }

    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Statistics: counted by the pool itself and by the driver, never guessed.
    pub fn stats(&self) -> Stats {
        let inner = self.shared.lock();
        let names: Vec<String> = self.shared.regions.iter().map(|r| r.name.clone()).collect();
        Stats::collect(&inner.core, &inner.recorder, &names, self.shared.now())
    }

    /// The workload analysis and recommended settings from the traffic seen so far.
    pub fn optimizer(&self) -> crate::Optimization {
        let inner = self.shared.lock();
        crate::Optimization::from_core(&inner.core)
    }

    /// A stream of what core decided: breaker transitions, ejections, resizes, failovers, pauses.
    /// Events published before the call are not replayed; a slow reader skips what it missed.
    pub fn events(&self) -> EventStream {
        let rx = self.shared.events.subscribe();
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }

    /// The regions' names, in configuration order.
    pub fn regions(&self) -> Vec<String> {
        self.shared.regions.iter().map(|r| r.name.clone()).collect()
    }

    /// A region's breaker state.
    pub fn breaker_state(&self, region: &str) -> Option<BreakerState> {
        let index = self.region_index(region)?;
        Some(self.shared.lock().core.breaker_state(index))
    }

    /// Manual breaker control for a region.
    pub fn set_breaker(&self, region: &str, control: BreakerControl) -> Result<(), Error> {
        let index = self
            .region_index(region)
            .ok_or_else(|| Error::InvalidInput { what: format!("no region named `{region}`") })?;
        let mut inner = self.shared.lock();
        let now = self.shared.now();
        let breaker = inner.core.breaker_mut(index);
        match control {
            BreakerControl::ForceOpen => breaker.force_open(now),
            BreakerControl::ForceClosed => breaker.force_closed(now),
            BreakerControl::Reset => breaker.reset(now),
        }
        self.shared.settle(&mut inner);
        Ok(())
    }

    fn region_index(&self, name: &str) -> Option<usize> {
        self.shared.regions.iter().position(|r| r.name == name)
    }

    /// Sends a request with retries, failover, timeouts and the body cap; reads the body and
    /// parses it with `parse` (inside the attempt, so a bad body can be retried).
    /// A plain future over `call`, with no `async` level of its own: the hot path nests one
    /// level less.
    pub(crate) fn execute<'a, T>(
        &'a self,
        spec: &'a RequestSpec,
        parse: Parse<'a, T>,
    ) -> impl Future<Output = Result<T, Error>> + 'a {
        FullAnswer { call: self.call(spec, Mode::Full(parse), false) }
    }

    /// Sends `spec` (built by hand or by the request builders of this crate) with the same
    /// pool, retries, failover, timeouts and body cap as the typed calls, and returns the 2xx
    /// answer unparsed. Another status is an [`Error::Api`]; redirects within the region are
    /// followed, as for the typed calls.
    ///
    /// A spec that is not `idempotent` is sent again only if it never left the client (a
    /// connection that failed to open, a pool wait): once sent, its first failure is final.
    ///
    /// Refused as [`Error::InvalidInput`] before anything is sent: a `path_and_query` that does
    /// not start with `/`, holds a fragment (`#`) or a character not percent-encoded (a space,
    /// a control, non-ASCII), or is longer than [`crate::MAX_PATH_AND_QUERY_BYTES`]; the
    /// `CONNECT` method; an `accept` or `content_type` that is not a valid header value.
    ///
    /// ```no_run
    /// # async fn run(client: blossom_client::BlossomClient) -> Result<(), blossom_client::Error> {
    /// let spec = blossom_client::simple_text_request("hello", &Default::default())?;
    /// let reply = client.send(&spec).await?;
    /// let text = blossom_client::parse_text_response(&reply.body)?;
    /// # Ok(()) }
    /// ```
    pub fn send<'a>(&'a self, spec: &'a RequestSpec) -> impl Future<Output = Result<Reply, Error>> + Send + 'a {
        // Checked in this call only: the typed calls' specs are built valid.
        FullAnswer { call: self.call(spec, Mode::Full(&|reply| Ok(reply)), true) }
    }

    /// As `execute`, but a 2xx body is handed over unread, for streaming. The call is counted
    /// as succeeded or failed when the stream ends (see [`Completion`]).
    pub(crate) async fn execute_streaming(&self, spec: &RequestSpec) -> Result<Streaming, Error> {
        match self.call::<()>(spec, Mode::Stream, false).await? {
            Answer::Stream(streaming) => Ok(*streaming),
            Answer::Full(..) => unreachable!("stream mode hands the body over"),
        }
    }

    /// The whole call: attempts, retries and failover within the deadline, then the count and
    /// the slow-request warning. One future level (no inner `run`), as the hot path wants.
    /// `check`: refuse a `spec` that cannot be sent (see [`RequestSpec::check`]) before the call
    /// counts.
    async fn call<T>(&self, spec: &RequestSpec, mode: Mode<'_, T>, check: bool) -> Result<Answer<T>, Error> {
        if check {
            spec.check()?;
        }
        let shared = &self.shared;
        shared.keep_background();
        let mode = &mode;
        let started = shared.now();
        let deadline = started + shared.config.session.timeout;
        // The first attempt begins at the time the call read; later ones read the clock again.
        let mut clock = Some(started);
        let endpoints = shared.regions.len();
        let mut request = Request { prefer: shared.released_here(), ..Request::new(deadline) };
        let mut failures: Vec<(usize, Error)> = Vec::new();
        let mut stale_retried = false;
        // Counted once begun; a call dropped before it ends is counted cancelled.
        let mut counted = CallCount { shared, open: false };
        let read_timeout = shared.config.session.async_timeout_sock_read;
        let mut result = 'run: loop {
            let now = clock.take().unwrap_or_else(|| shared.now());
            // Begun inside `poll_fn` for the task's waker: an attempt sent at once arms its read
            // deadline under this lock, and the waker is lent, not cloned.
            let (endpoint, mut completion, step) = match std::future::poll_fn(|cx| {
                let mut inner = shared.lock();
                if !counted.open {
                    // Counted under the lock `begin` takes anyway: one lock less per call.
                    inner.recorder.started();
                    counted.open = true;
                }
                let begun = match inner.core.begin(now, &request) {
                    Decision::Proceed { ticket, checkout } => {
                        let step = shared.step(&mut inner, checkout);
                        let mut watch = WatchSlot::default();
                        if let Step::Ready(..) = step {
                            // Sent at once: its read deadline is armed under this lock already.
                            watch.arm(shared, &mut inner, (now + read_timeout).min(deadline), cx.waker());
                        }
                        Begun::Go(ticket, step, watch)
                    }
                    Decision::WaitUntil { until, reason } => Begun::Wait(until, reason),
                    Decision::Reject(reason) => {
                        Begun::Fail(self.rejected(&inner.core, reason, std::mem::take(&mut failures), now))
                    }
                };
                shared.settle(&mut inner);
                Poll::Ready(begun)
            })
            .await
            {
                // Held here and lent to the attempt: an argument moved into an async fn is
                // stored twice.
                Begun::Go(ticket, step, watch) => (ticket.endpoint(), Completion::attempt(shared, ticket, watch), step),
                Begun::Fail(error) => break 'run Err(error),
                Begun::Wait(until, reason) => {
                    if until >= deadline {
                        break 'run Err(match reason {
                            WaitReason::RateLimited => Error::RateLimited { retry_after: until.saturating_since(now) },
                            WaitReason::NoEndpointReady => self.rejected_at(std::mem::take(&mut failures), now, until),
                        });
                    }
                    tokio::time::sleep_until(shared.instant(until)).await;
                    continue;
                }
            };
            let attempt_number = request.attempt;
            match self.attempt(endpoint, step, spec, mode, deadline, &mut completion, attempt_number).await {
                Ok(answer) => break 'run Ok(answer),
                Err(failed) => {
                    let now = shared.now();
                    failures.push((endpoint, *failed.error));
                    // Once sent, a request that is not idempotent is not sent again.
                    let next_step = if failed.sent && !spec.idempotent { Next::Stop } else { failed.next };
                    let free_stale_retry = next_step == Next::Stale && !stale_retried;
                    let next = {
                        let mut inner = shared.lock();
                        let next = match next_step {
                            Next::Stale if free_stale_retry => {
                                stale_retried = true;
                                // A server that dropped a kept-alive HTTP/1.1 connection likely
                                // dropped those that idled with it: the retry opens a fresh one.
                                // (Nothing to close after an HTTP/2 refusal.)
                                shared.close_idle_http1(&mut inner, endpoint);
                                Some(now)
                            }
                            Next::Backoff | Next::AfterPause | Next::Stale => match inner.core.retry(now, &request) {
                                Retry::At(_) if next_step == Next::AfterPause => Some(now),
                                Retry::At(at) => Some(at),
                                Retry::No(_) => None,
                            },
                            Next::Stop => None,
                        };
                        shared.settle(&mut inner);
                        next
                    };
                    let Some(at) = next else { break 'run Err(final_error(&shared.regions, failures)) };
                    shared.lock().recorder.retried();
                    if free_stale_retry {
                        request = request.again();
                    } else {
                        request = request.next_attempt(endpoint);
                        let all = if endpoints >= 64 { u64::MAX } else { (1u64 << endpoints) - 1 };
                        if request.avoid & all == all {
                            // Every region failed once: allow them again, except the last one if others exist.
                            request.avoid = if endpoints > 1 { 1 << endpoint } else { 0 };
                        }
                    }
                    if at > shared.now() {
                        tokio::time::sleep_until(shared.instant(at)).await;
                    }
                }
            }
        };
        // Ended: the completion or the lines below count it.
        counted.open = false;
        let took = match &mut result {
            // A stream is counted when it ends, as what it ends with.
            Ok(Answer::Stream(streaming)) => {
                streaming.done.call_started = Some(started);
                shared.now().saturating_since(started)
            }
            // Counted by the completion, under the lock it takes anyway, at the time it read.
            Ok(Answer::Full(_, finished)) => finished.saturating_since(started),
            Err(error) => {
                let took = shared.now().saturating_since(started);
                shared.lock().recorder.finished(took, Err(error));
                took
            }
        };
        if took >= shared.config.session.slow_request_threshold {
            tracing::warn!(path = %path_only(&spec.path_and_query), took_ms = took.as_millis() as u64, "slow request");
        }
        result
    }

    /// One attempt on `endpoint`: connection, request, response head and (in full mode) body.
    #[allow(clippy::too_many_arguments)] // reason: one call site; a struct would only rename these
    async fn attempt<T>(
        &self,
        endpoint: usize,
        step: Step,
        spec: &RequestSpec,
        mode: &Mode<'_, T>,
        deadline: Time,
        completion: &mut Completion<'_>,
        attempt: u32,
    ) -> Result<Answer<T>, Failed> {
        let shared = &self.shared;
        let session = &shared.config.session;
        // The call's deadline on tokio's clock, for the slow paths' timers only.
        let call = || Deadline { at: shared.instant(deadline), total: session.timeout };
        let admitted = completion_started(completion);
        let pool_deadline = deadline.min(admitted + session.pool_timeout);
        // A connection taken at `begin` is used at once; waiting or connecting is the slow path,
        // boxed so its large future does not weigh on every request's.
        let lease = completion.lease.insert(match step {
            Step::Ready(conn, sender) => Lease { conn, sender, reused: true, waited: Duration::ZERO },
            step => match Box::pin(shared.acquire(endpoint, step, pool_deadline, Some(call()))).await {
                Ok(lease) => lease,
                Err(error) => {
                    let (outcome, next) = match &error {
                        Error::Connect { source, .. } if source.is::<crate::driver::SharedConnectFailed>() => {
                            (None, Next::Backoff)
                        }
                        Error::Connect { .. } => (Some(Outcome::Failure), Next::Backoff),
                        Error::Timeout { .. } => timeout_outcome(&error),
                        _ => (None, Next::Stop),
                    };
                    complete_failed(completion, outcome, false);
                    return Err(Failed::unsent(error, next));
                }
            },
        });
        let (reused, waited, is_h2) = (lease.reused, lease.waited, lease.sender.is_h2());
        if !waited.is_zero() {
            shared.lock().recorder.waited(waited);
        }
        let queued_or_connected = !reused || !waited.is_zero();
        let mut sent_at = completion.ticket.map_or(admitted, |t| t.sent());
        if queued_or_connected {
            // Round trips are learnt from when the request went out, not from admission.
            sent_at = shared.now();
            if let Some(ticket) = completion.ticket.as_mut() {
                ticket.mark_sent(sent_at);
            }
        }
        let read_timeout = session.async_timeout_sock_read;
        let region = &shared.regions[endpoint];
        // Borrowed until a redirect names another path: no copy per attempt.
        let mut path = std::borrow::Cow::Borrowed(spec.path_and_query.as_str());
        let mut redirects = 0;
        // Set once a redirect turns the request into a bodiless `GET` (see `redirected_as_get`).
        let mut as_get = false;
        let (parts, mut body) = loop {
            let request = match shared.build_request(endpoint, spec, &path, is_h2, as_get) {
                Ok(request) => request,
                Err(error) => {
                    // Nothing was sent: the attempt is given up, and the connection is as it was.
                    complete_failed(completion, None, true);
                    return Err(Failed::unsent(error, Next::Stop));
                }
            };
            let sender = &mut completion.lease.as_mut().expect("lease held").sender;
            // The read timeout runs from when the request went out (no clock read of its own).
            let bound = Watch { shared, slot: &mut completion.watch, deadline, total: session.timeout };
            let response = match bound.wait(sender.send(request), Some(sent_at), read_timeout).await {
                Err(error) => {
                    let (outcome, next) = timeout_outcome(&error);
                    complete_failed(completion, outcome, false);
                    return Err(Failed::new(error, next));
                }
                Ok(Err(source)) => {
                    let (source, only_stream) = completion.failure(source);
                    if unprocessed(&source) {
                        // Not the region's failure. Safe to send again whatever the method, unless
                        // a redirect answered an earlier request of this attempt: that one was
                        // processed, and a retry sends it again.
                        complete_failed(completion, None, only_stream);
                        let failed = Failed::new(Error::Http { source }, Next::Stale);
                        return Err(Failed { sent: completion.answered, ..failed });
                    }
                    let (outcome, next) =
                        if reused { (None, Next::Stale) } else { (Some(Outcome::Failure), Next::Backoff) };
                    complete_failed(completion, outcome, only_stream);
                    return Err(Failed::new(Error::Http { source }, next));
                }
                Ok(Ok(response)) => response,
            };
            completion.answered = true;
            if !is_h2 {
                // HTTP/2 has no `Connection` header (RFC 9113, 8.2.2): nothing to look up.
                completion.saw_response_head(response.headers());
            }
            if !response.status().is_redirection() || response.status() == StatusCode::NOT_MODIFIED {
                break response.into_parts();
            }
            let code = response.status();
            let status = code.as_u16();
            let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
            let mut body = response.into_body();
            // Drain the redirect body so the connection can carry the next request.
            // Boxed: a redirect is rare, and its drain would widen every request's future.
            let drain = Box::pin(read_body(&mut body, DRAIN_LIMIT, read_timeout, BodyBound::Timer(Some(call()))));
            let drained = drain.await.is_ok();
            let same_region = location.as_deref().and_then(|l| same_region_path(region, l));
            let error = match (same_region, drained) {
                _ if shared.config.max_redirects == 0 => Error::RedirectRefused { status },
                (Some(next), true) if redirects < shared.config.max_redirects => {
                    redirects += 1;
                    path = std::borrow::Cow::Owned(next);
                    as_get |= redirected_as_get(code, &spec.method);
                    continue;
                }
                (Some(_), true) => Error::TooManyRedirects { limit: shared.config.max_redirects },
                _ => Error::RedirectRefused { status },
            };
            complete_failed(completion, Some(Outcome::Ignored), drained || only_the_stream(is_h2, None));
            return Err(Failed::new(error, Next::Stop));
        };
        let status = parts.status;
        if status.is_success() {
            if let Mode::Stream = mode {
                tracing_request(shared, region, status, completion_started(completion), reused, attempt);
                return Ok(Answer::Stream(Box::new(Streaming { body, done: completion.take_owned() })));
            }
        }
        let limit = session.max_response_bytes;
        // hyper knows a declared length (it checked `Content-Length`): no header lookup.
        if let Some(length) = http_body::Body::size_hint(&body).upper() {
            if length > limit {
                complete_failed(completion, Some(Outcome::Ignored), only_the_stream(is_h2, None));
                return Err(Failed::new(Error::BodyTooLarge { limit_bytes: limit }, Next::Stop));
            }
        }
        let bound = Watch { shared, slot: &mut completion.watch, deadline, total: session.timeout };
        let bytes = match read_body(&mut body, limit, read_timeout, BodyBound::Watch(bound)).await {
            Ok(bytes) => bytes,
            Err(BodyFailure::TooLarge) => {
                complete_failed(completion, Some(Outcome::Ignored), only_the_stream(is_h2, None));
                return Err(Failed::new(Error::BodyTooLarge { limit_bytes: limit }, Next::Stop));
            }
            Err(BodyFailure::Timeout(error)) => {
                let (outcome, next) = timeout_outcome(&error);
                complete_failed(completion, outcome, false);
                return Err(Failed::new(error, next));
            }
            Err(BodyFailure::Broken(source)) => {
                let (source, only_stream) = completion.failure(source);
                let error = Error::Stream { what: "the response body broke off".into(), source: Some(source) };
                complete_failed(completion, Some(Outcome::Failure), only_stream);
                return Err(Failed::new(error, Next::Backoff));
            }
        };
        tracing_request(shared, region, status, completion_started(completion), reused, attempt);
        if status.is_success() {
            let Mode::Full(parse) = mode else { unreachable!("a streamed 2xx returned above") };
            // Each parser refuses an empty body itself; `send` hands it over.
            return match parse(Reply { status, headers: parts.headers, body: bytes }) {
                Ok(value) => {
                    completion.call_started = Some(deadline - session.timeout);
                    let finished = completion.complete(Outcome::Success, true);
                    Ok(Answer::Full(value, finished))
                }
                Err(mut error) => {
                    // A 2xx the API cannot use (empty, invalid): the endpoint failed this attempt.
                    // Its text may quote the body, and the body may echo the key.
                    completion.redact(&mut error);
                    let (outcome, next) = if error.is_retryable() {
                        (Outcome::Failure, Next::Backoff)
                    } else {
                        (Outcome::Ignored, Next::Stop)
                    };
                    complete_failed(completion, Some(outcome), true);
                    Err(Failed::new(error, next))
                }
            };
        }
        let mut api = ApiError::from_response(status.as_u16(), &parts.headers, &bytes);
        if let Some(key) = &shared.api_key {
            api.redact_secret(key.expose());
        }
        let (outcome, next) = match api.kind {
            ApiErrorKind::RateLimited if status == StatusCode::TOO_MANY_REQUESTS => {
                let next = if api.retry_after.is_some() { Next::AfterPause } else { Next::Backoff };
                (Outcome::RateLimited { retry_after: api.retry_after }, next)
            }
            _ if api.is_retryable() => (Outcome::Failure, Next::Backoff),
            ApiErrorKind::Upstream => (Outcome::Failure, Next::Stop),
            _ => (Outcome::Ignored, Next::Stop),
        };
        completion.complete(outcome, true);
        Err(Failed::new(Error::Api(api), next))
    }

    fn rejected(
        &self,
        core: &pool_core::Core,
        reason: RejectReason,
        failures: Vec<(usize, Error)>,
        now: Time,
    ) -> Error {
        match reason {
            RejectReason::PoolFull { endpoint, .. } => {
                Error::PoolFull { region: self.shared.regions[endpoint].name.clone() }
            }
            RejectReason::NoEndpoint if !failures.is_empty() => final_error(&self.shared.regions, failures),
            RejectReason::NoEndpoint => {
                let regions = &self.shared.regions;
                if regions.len() == 1 {
                    let retry_in = core.breaker(0).reopens_at().map(|t| t.saturating_since(now));
                    if core.paused_until(0) > now {
                        return Error::RateLimited { retry_after: core.paused_until(0).saturating_since(now) };
                    }
                    return Error::BreakerOpen { region: regions[0].name.clone(), retry_in };
                }
                // Every region paused by a 429's Retry-After: the caller waits for the first to end.
                let first_resume = (0..regions.len()).map(|i| core.paused_until(i)).min();
                if let Some(first) = first_resume.filter(|&t| t > now) {
                    return Error::RateLimited { retry_after: first.saturating_since(now) };
                }
                let failures = regions
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let mut why =
                            format!("breaker {:?}, {:?}", core.breaker_state(i), core.health().status(i, now));
                        if core.paused_until(i) > now {
                            let wait = core.paused_until(i).saturating_since(now);
                            why.push_str(&format!(", rate limited for {:.1} s (Retry-After)", wait.as_secs_f64()));
                        }
                        (r.name.clone(), why)
                    })
                    .collect();
                Error::AllRegionsFailed { failures }
            }
        }
    }

    fn rejected_at(&self, failures: Vec<(usize, Error)>, now: Time, until: Time) -> Error {
        if !failures.is_empty() {
            return final_error(&self.shared.regions, failures);
        }
        let region = self.shared.regions[0].name.clone();
        Error::BreakerOpen { region, retry_in: Some(until.saturating_since(now)) }
    }
}

/// Manual breaker control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerControl {
    /// Reject everything until reset.
    ForceOpen,
    /// Admit everything, record nothing, until reset.
    ForceClosed,
    /// Back to normal operation, closed, counts cleared.
    Reset,
}

/// A phase that ran out. Connect or read: the endpoint was too slow (a failure, retried). The
/// call's own deadline or a wait for our own pool: no verdict on the endpoint, no retry.
fn timeout_outcome(error: &Error) -> (Option<Outcome>, Next) {
    match error {
        Error::Timeout { phase: TimeoutPhase::Connect | TimeoutPhase::Read, .. } => {
            (Some(Outcome::Timeout), Next::Backoff)
        }
        _ => (None, Next::Stop),
    }
}

/// Whether an attempt's failure ended only its stream, so its connection carries the next
/// requests: over HTTP/2, a stream the peer reset (`source`), or one dropped here unread
/// (`None`). A connection-wide error (`GOAWAY`, I/O) or a timeout, which may mean a dead
/// connection, retires it; so does any failure over HTTP/1.1, whose connection is then in an
/// unknown state.
fn only_the_stream(is_h2: bool, source: Option<&BoxError>) -> bool {
    is_h2 && source.is_none_or(|error| error.downcast_ref::<h2::Error>().is_some_and(h2::Error::is_reset))
}

/// Whether the server said it did not process the request (RFC 9113, 8.7): it refused the
/// stream (`REFUSED_STREAM`), or its graceful `GOAWAY` (`NO_ERROR`) came before this stream.
/// Such a request may go again at once, even one that is not idempotent, and the failure says
/// nothing against the region (the server is shedding load or shutting down in order).
fn unprocessed(source: &BoxError) -> bool {
    source.downcast_ref::<h2::Error>().is_some_and(|error| {
        error.is_remote()
            && match error.reason() {
                Some(h2::Reason::REFUSED_STREAM) => true,
                Some(h2::Reason::NO_ERROR) => error.is_go_away(),
                _ => false,
            }
    })
}

fn complete_failed(completion: &mut Completion<'_>, outcome: Option<Outcome>, reusable: bool) {
    completion.end(outcome, reusable, None);
}

fn completion_started(completion: &Completion<'_>) -> Time {
    completion.ticket.map_or(Time::ZERO, |t| t.started())
}

/// The error a call ends with: the last one, or every region's when several were tried.
fn final_error(regions: &[ParsedRegion], failures: Vec<(usize, Error)>) -> Error {
    let mut tried: Vec<usize> = failures.iter().map(|(i, _)| *i).collect();
    tried.sort_unstable();
    tried.dedup();
    if tried.len() <= 1 {
        return failures.into_iter().next_back().map(|(_, e)| e).unwrap_or(Error::EmptyResponse);
    }
    let mut last: Vec<(String, String)> = Vec::new();
    for (i, error) in failures {
        let name = regions[i].name.clone();
        match last.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = error.to_string(),
            None => last.push((name, error.to_string())),
        }
    }
    Error::AllRegionsFailed { failures: last }
}

/// Logs a response head: at info with `log_requests`, else at debug. Reads the clock only when
/// the line will be written.
fn tracing_request(
    shared: &Shared,
    region: &ParsedRegion,
    status: StatusCode,
    started: Time,
    reused: bool,
    attempt: u32,
) {
    let took_ms = || shared.now().saturating_since(started).as_millis() as u64;
    if shared.config.session.log_requests {
        if tracing::enabled!(tracing::Level::INFO) {
            tracing::info!(region = %region.name, status = status.as_u16(), took_ms = took_ms(), reused, attempt, "request");
        }
    } else if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(region = %region.name, status = status.as_u16(), took_ms = took_ms(), reused, attempt, "request");
    }
}

/// The path without the query (queries may carry user data; keys never travel there).
fn path_only(path_and_query: &str) -> &str {
    path_and_query.split('?').next().unwrap_or_default()
}

/// Whether a response says the server closes the connection after it.
fn announces_close(headers: &HeaderMap) -> bool {
    // A response has a handful of headers: comparing their names costs less than hashing one.
    if !headers.keys().any(|name| name == header::CONNECTION) {
        return false;
    }
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"))
}

/// Whether a redirect is followed as a bodiless `GET`, as the Fetch standard says and browsers
/// and reqwest do: a `POST` answered 301 or 302, and any method but `GET` and `HEAD` answered
/// 303. A 307 or 308 keeps the method and the body.
fn redirected_as_get(status: StatusCode, method: &http::Method) -> bool {
    match status {
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => method == http::Method::POST,
        StatusCode::SEE_OTHER => method != http::Method::GET && method != http::Method::HEAD,
        _ => false,
    }
}

/// A redirect target inside the same region, as a path and query.
fn same_region_path(region: &ParsedRegion, location: &str) -> Option<String> {
    let uri: http::Uri;
    let path = if location.starts_with('/') && !location.starts_with("//") {
        location
    } else {
        uri = location.parse().ok()?;
        if uri.scheme_str() != Some(region.scheme()) || uri.authority()?.as_str() != region.uri_authority.as_str() {
            return None;
        }
        uri.path_and_query()?.as_str()
    };
    // A header value may hold what no request path may (a space): such a target is refused.
    path.parse::<http::uri::PathAndQuery>().ok()?;
    // Within the region's base path only (`/base/x`, not `/login` or `/basement`): the request
    // goes out with the base path put back in front.
    let rest = path.strip_prefix(region.prefix.as_str())?;
    (rest.is_empty() || rest.starts_with(['/', '?'])).then(|| rest.to_string())
}

pub(crate) enum BodyFailure {
    TooLarge,
    Timeout(Error),
    Broken(BoxError),
}

/// The most read of a body that is read only so that its connection can serve again (a
/// redirect's, the rest of a stream): past it, the connection is closed instead.
pub(crate) const DRAIN_LIMIT: u64 = 64 * 1024;

/// Reads a whole body: at most `limit` bytes, at most `read_timeout` between chunks, and never
/// past the call's deadline.
pub(crate) async fn read_body(
    body: &mut crate::transport::Body,
    limit: u64,
    read_timeout: Duration,
    mut bound: BodyBound<'_>,
) -> Result<Bytes, BodyFailure> {
    use http_body::Body as _;
    // A small body comes in one frame: kept as it is, without a copy. More frames are gathered.
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut read = 0u64;
    let done =
        |first: Option<Bytes>, rest: BytesMut| if rest.is_empty() { first.unwrap_or_default() } else { rest.freeze() };
    loop {
        let next = match &mut bound {
            // Boxed: the timer's future would double the size of the watched (hot) one.
            BodyBound::Timer(deadline) => {
                Box::pin(bounded(*deadline, read_timeout, TimeoutPhase::Read, body.frame())).await
            }
            BodyBound::Watch(watch) => watch.reborrow().wait(body.frame(), None, read_timeout).await,
        };
        let frame = match next {
            Err(timeout) => return Err(BodyFailure::Timeout(timeout)),
            Ok(None) => return Ok(done(first, rest)),
            Ok(Some(Err(e))) => return Err(BodyFailure::Broken(e)),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        read += data.len() as u64;
        if read > limit {
            return Err(BodyFailure::TooLarge);
        }
        if data.is_empty() {
            continue;
        }
        match first.take() {
            None if rest.is_empty() => first = Some(data),
            earlier => {
                if let Some(earlier) = earlier {
                    rest.extend_from_slice(&earlier);
                }
                rest.extend_from_slice(&data);
            }
        }
        // Asked only after data: before the first frame it costs an HTTP/2 body a lock on the
        // connection's stream table, and an empty body ends at the first poll anyway.
        if body.is_end_stream() {
            // The last frame said so: no need for another timed poll.
            return Ok(done(first, rest));
        }
    }
}

pin_project_lite::pin_project! {
    /// The future [`BlossomClient::execute`] returns: the call's full answer, unwrapped.
    struct FullAnswer<F> {
        #[pin]
        call: F,
    }
}

impl<T, F: Future<Output = Result<Answer<T>, Error>>> Future for FullAnswer<F> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let call = self.project().call;
        crate::prefetch::lines_of(&*call);
        Poll::Ready(match std::task::ready!(call.poll(cx)) {
            Ok(Answer::Full(value, _)) => Ok(value),
            Ok(Answer::Stream(_)) => unreachable!("full mode reads the body"),
            Err(error) => Err(error),
        })
    }
}

/// How a body read is bounded: by tokio timers (off the hot path), or by the attempt's watch.
pub(crate) enum BodyBound<'a> {
    Timer(Option<Deadline>),
    Watch(Watch<'a>),
}

/// An attempt's waits bounded through its watch slot (see [`crate::watch`]): by each phase's
/// own timeout and by the call's deadline, with no timer of their own.
pub(crate) struct Watch<'a> {
    shared: &'a Shared,
    slot: &'a mut WatchSlot,
    /// The call's deadline, and the total timeout it comes from.
    deadline: Time,
    total: Duration,
}

impl<'a> Watch<'a> {
    fn reborrow(&mut self) -> Watch<'_> {
        Watch { shared: self.shared, slot: self.slot, deadline: self.deadline, total: self.total }
    }

    /// Waits for `fut` at most `limit` from `start` (or from the first wait) and never past the
    /// call's deadline.
    fn wait<F: Future>(self, fut: F, start: Option<Time>, limit: Duration) -> Watched<'a, F> {
        Watched { fut, watch: self, start, limit, end: None }
    }
}

pin_project_lite::pin_project! {
    /// The future [`Watch::wait`] returns.
    pub(crate) struct Watched<'a, F> {
        #[pin]
        fut: F,
        watch: Watch<'a>,
        start: Option<Time>,
        limit: Duration,
        // The bound, once the first wait computed it, and whether it is the call's deadline.
        end: Option<(Time, bool)>,
    }
}

impl<F: Future> Future for Watched<'_, F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.fut.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let watch = this.watch;
        let shared = watch.shared;
        let ((end, by_call), now) = match *this.end {
            Some(bound) => (bound, shared.now()),
            None => {
                let now = this.start.unwrap_or_else(|| shared.now());
                let phase_end = now + *this.limit;
                let bound = if watch.deadline <= phase_end { (watch.deadline, true) } else { (phase_end, false) };
                *this.end = Some(bound);
                (bound, now)
            }
        };
        if now >= end {
            return Poll::Ready(Err(if by_call {
                Error::Timeout { phase: TimeoutPhase::Total, limit: watch.total }
            } else {
                Error::Timeout { phase: TimeoutPhase::Read, limit: *this.limit }
            }));
        }
        if !watch.slot.covers(end, now, cx.waker()) {
            let mut inner = shared.lock();
            watch.slot.arm(shared, &mut inner, end, cx.waker());
        }
        Poll::Pending
    }
}

/// The call's deadline on tokio's clock, and the total timeout it comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) at: tokio::time::Instant,
    pub(crate) total: Duration,
}

/// Waits for `fut` at most `limit` (its phase's own timeout) and never past the call's deadline;
/// the error names whichever bound ran out. The timer is set only when `fut` is not ready at
/// once, so a wait that never happens costs no timer and no clock read.
pub(crate) fn bounded<F: Future>(
    deadline: Option<Deadline>,
    limit: Duration,
    phase: TimeoutPhase,
    fut: F,
) -> Bounded<F> {
    Bounded { fut, sleep: None, deadline, limit, phase, bound: Bound::Phase }
}

/// Which bound a [`Bounded`] timer stands for.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Phase,
    Call,
}

pin_project_lite::pin_project! {
    /// The future [`bounded`] returns.
    pub(crate) struct Bounded<F> {
        #[pin]
        fut: F,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        deadline: Option<Deadline>,
        limit: Duration,
        phase: TimeoutPhase,
        bound: Bound,
    }
}

impl<F: Future> Future for Bounded<F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(output) = this.fut.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if this.sleep.is_none() {
            let phase_end = tokio::time::Instant::now() + *this.limit;
            let end = match this.deadline {
                Some(d) if d.at <= phase_end => {
                    *this.bound = Bound::Call;
                    d.at
                }
                _ => phase_end,
            };
            this.sleep.set(Some(tokio::time::sleep_until(end)));
        }
        let sleep = this.sleep.as_pin_mut().expect("set above");
        if sleep.poll(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(Err(match (*this.bound, this.deadline) {
            (Bound::Call, Some(d)) => Error::Timeout { phase: TimeoutPhase::Total, limit: d.total },
            _ => Error::Timeout { phase: *this.phase, limit: *this.limit },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_close_is_read_from_any_token() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.append(header::CONNECTION, http::HeaderValue::from_static(value));
            headers
        };
        assert!(announces_close(&with("close")));
        assert!(announces_close(&with("Upgrade, Close")));
        assert!(!announces_close(&with("keep-alive")));
        assert!(!announces_close(&HeaderMap::new()));
    }

    #[test]
    fn an_earlier_deadline_ahead_covers_a_later_bound_for_the_same_task_only() {
        let at = |ms: u64| Time::from_nanos(ms * 1_000_000);
        let task = std::sync::Arc::new(NoWake);
        let waker = Waker::from(task.clone());
        let other = Waker::from(std::sync::Arc::new(NoWake));
        let slot = WatchSlot { key: Some(WatchKey::for_test(0)), end: at(10), task: WakerIdentity::of(&waker) };
        assert!(slot.covers(at(10), at(5), &waker), "the bound armed");
        assert!(slot.covers(at(30), at(5), &waker), "an earlier deadline wakes the task first");
        assert!(!slot.covers(at(30), at(10), &waker), "the earlier deadline has come: arm the later");
        assert!(!slot.covers(at(8), at(5), &waker), "a bound before the armed one is armed");
        assert!(!slot.covers(at(30), at(5), &other), "another task's waker is not woken");
        assert!(!WatchSlot::default().covers(at(30), at(0), &waker), "nothing armed");
    }

    struct NoWake;

    impl std::task::Wake for NoWake {
        fn wake(self: std::sync::Arc<Self>) {}
    }

    #[test]
    fn redirects_stay_in_the_region() {
        let region = ParsedRegion::parse(&Region::new("r", "http://127.0.0.1:8080/base"), 0).unwrap();
        assert_eq!(same_region_path(&region, "/base/text/x").as_deref(), Some("/text/x"));
        assert_eq!(same_region_path(&region, "http://127.0.0.1:8080/base/y?z=1").as_deref(), Some("/y?z=1"));
        assert_eq!(same_region_path(&region, "http://evil.example/base/y"), None);
        assert_eq!(same_region_path(&region, "//evil.example/y"), None);
        assert_eq!(same_region_path(&region, "/base/a b"), None, "not a request path");
        assert_eq!(same_region_path(&region, "/login"), None, "outside the base path");
        assert_eq!(same_region_path(&region, "/basement/x"), None, "outside the base path");
        assert_eq!(same_region_path(&region, "/base?page=2").as_deref(), Some("?page=2"));
        assert_eq!(same_region_path(&region, "https://127.0.0.1:8080/y"), None);
    }
}
