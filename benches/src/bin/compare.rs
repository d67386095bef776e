//! The loopback comparison: one mock server, one workload, four clients, side by side.
//!
//! Why: users pick an HTTP client by what it costs per request. The limit is a bare hyper
//! connection per task (no pool at all); hyper-util's legacy `Client` and reqwest are what people
//! use today; blossom should come close to the limit. Each client does the same thing: `GET
//! /text/bench` against [`blossom_mock::MockServer`] (answer `echo: bench`, a small body read in
//! full), HTTP/1.1 at concurrency 1, 16 and 128, and h2c at 128. Each builds what it sends from
//! parts made once (a URI, header values; blossom's `RequestSpec`, through
//! `BlossomClient::send`) and takes the body as bytes.
//!
//! `blossom-text`, at HTTP/1.1 128 only, is blossom through its typed text API: it also
//! percent-encodes the prompt into a new path and copies the answer into a checked `String` on
//! every request, work no other client here does. Its row shows what that API layer costs.
//!
//! blossom speaks HTTP/2 over the `h2` crate directly, below hyper's HTTP/2 client; at h2c a
//! fifth client, `raw-h2` (one bare `h2` connection shared by all tasks), is the limit on that
//! layer, and a second table gives each client against it.
//!
//! For every point and every client, a fresh client makes `warmup` requests (cold start), then
//! `requests` measured ones; the server's accepted-connection counter is read before, between and
//! after. The clients run interleaved, round after round, in an order that rotates each round, so
//! drift on a noisy machine hits all alike; the figures reported are medians over the rounds, and
//! `vs raw, paired` is the median of each round's ratio to raw (the steadier of the two ratios),
//! with a distribution-free 95 % interval for it: a target inside the interval is one the rounds
//! cannot tell met from missed.
//!
//! Server and clients share one multi-thread tokio runtime with 2 workers, as they share the
//! machine's 2 cores: what the server costs is paid by every client alike.
//!
//! ```text
//! cargo run --profile bench -p benches --bin compare -- [--quick] [--json PATH] [--only CLIENT[,CLIENT...]]
//!     [--blossom-keep-idle] [--point PROTO:CONCURRENCY] [--rounds N] [--requests N] [--workers N]
//! ```
//!
//! `--only` runs the clients named (one for profiling, or a comma-separated list); `--point`
//! only the point named (`http1:16`, `h2c:128`); `--rounds` and `--requests` override the plan
//! (under a profiler, a fixed count of requests makes two clients' totals comparable);
//! `--workers` sets the runtime's worker threads (default 2; 1 shows what sharing two cores costs);
//! `--blossom-keep-idle` also sets blossom's `sync_pool_connections` to the concurrency (by default
//! blossom keeps at most 10 idle).
//!
//! Two more blossom variants measure what resilience costs: `blossom-off` (breaker disabled, no
//! health tracking, no limiter, fixed size, no retries) and `blossom-on` (breaker, passive and
//! active health, limiter at a rate far above the load, AIMD sizer capped at the concurrency,
//! retries). They run at HTTP/1.1 concurrency 16 and h2c 128, in the same rounds as the others,
//! and a second table gives on / off.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blossom_client::pool_core::{BreakerConfig, BreakerMode, HealthConfig, PolicyKind, SizerConfig};
use blossom_client::{BlossomClient, SessionConfig};
use blossom_mock::{Behavior, MockServer};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::json;

/// The prompt every client asks for: `GET /text/bench`, answered `echo: bench`.
const PROMPT: &str = "bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Raw,
    /// h2c only: one bare connection of the `h2` crate shared by all tasks, the layer blossom
    /// speaks HTTP/2 on (hyper's HTTP/2 client, `raw`, adds a channel hop and a task per request).
    RawH2,
    HyperUtil,
    Reqwest,
    Blossom,
    /// blossom with every resilience feature off.
    BlossomOff,
    /// blossom with every resilience feature on.
    BlossomOn,
    /// blossom through its typed text API, which also encodes the prompt into the path and
    /// checks the answer is UTF-8 text (work the other clients are not asked to do).
    BlossomText,
}

const KINDS: [Kind; 8] = [
    Kind::Raw,
    Kind::RawH2,
    Kind::HyperUtil,
    Kind::Reqwest,
    Kind::Blossom,
    Kind::BlossomOff,
    Kind::BlossomOn,
    Kind::BlossomText,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::RawH2 => "raw-h2",
            Kind::HyperUtil => "hyper-util",
            Kind::Reqwest => "reqwest",
            Kind::Blossom => "blossom",
            Kind::BlossomOff => "blossom-off",
            Kind::BlossomOn => "blossom-on",
            Kind::BlossomText => "blossom-text",
        }
    }

    /// Whether this client runs at `point`: the resilience pair only at HTTP/1.1 16 and h2c 128,
    /// `raw-h2` only over h2c, `blossom-text` only at HTTP/1.1 128.
    fn runs_at(self, point: Point) -> bool {
        match self {
            Kind::RawH2 => point.proto == Proto::H2c,
            Kind::BlossomOff | Kind::BlossomOn => {
                matches!((point.proto, point.concurrency), (Proto::Http1, 16) | (Proto::H2c, 128))
            }
            Kind::BlossomText => (point.proto, point.concurrency) == (Proto::Http1, 128),
            _ => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http1,
    H2c,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Http1 => "http1",
            Proto::H2c => "h2c",
        }
    }
}

/// One point of the workload.
#[derive(Debug, Clone, Copy)]
struct Point {
    proto: Proto,
    concurrency: usize,
}

const POINTS: [Point; 4] = [
    Point { proto: Proto::Http1, concurrency: 1 },
    Point { proto: Proto::Http1, concurrency: 16 },
    Point { proto: Proto::Http1, concurrency: 128 },
    Point { proto: Proto::H2c, concurrency: 128 },
];

/// How much to run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rounds: usize,
    /// Measured requests per run.
    requests: usize,
    /// Warmup requests per run (at least a few per task, so every task has its connection).
    warmup_min: usize,
    /// A run that takes longer than this is cut short (the machine is broken, not slow).
    run_limit: Duration,
}

impl Plan {
    fn quick() -> Self {
        Plan { rounds: 5, requests: 8_000, warmup_min: 500, run_limit: Duration::from_secs(10) }
    }

    /// Many short rounds: a round's two clients run closer in time, so the machine's drift
    /// cancels better in their ratio (50 x 6,000 gave 95 % intervals about half as wide as
    /// 25 x 12,000, in the same total).
    fn full() -> Self {
        Plan { rounds: 50, requests: 6_000, warmup_min: 1_000, run_limit: Duration::from_secs(30) }
    }

    fn warmup(&self, concurrency: usize) -> usize {
        self.warmup_min.max(4 * concurrency)
    }
}

/// What to run and how.
struct Options {
    plan: Plan,
    /// Diagnostic: also raise blossom's idle cap (`sync_pool_connections`) to the concurrency.
    blossom_keep_idle: bool,
}

/// A TCP connection to the mock, with nodelay as every client sets it.
async fn dial(addr: SocketAddr) -> tokio::net::TcpStream {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the mock");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// A bare hyper connection per task (HTTP/1.1), or one h2 connection shared by all tasks.
struct Raw {
    addr: SocketAddr,
    /// One HTTP/1.1 sender per task, kept between warmup and the measured run.
    h1: Mutex<Vec<Option<http1::SendRequest<Empty<Bytes>>>>>,
    h2: tokio::sync::OnceCell<http2::SendRequest<Empty<Bytes>>>,
}

impl Raw {
    async fn h1(&self) -> http1::SendRequest<Empty<Bytes>> {
        let stream = dial(self.addr).await;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.expect("http1 handshake");
        tokio::spawn(conn);
        sender
    }

    async fn h2(&self) -> http2::SendRequest<Empty<Bytes>> {
        self.h2
            .get_or_init(|| async {
                let stream = dial(self.addr).await;
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(TokioIo::new(stream))
                    .await
                    .expect("h2 handshake");
                tokio::spawn(conn);
                sender
            })
            .await
            .clone()
    }
}

/// One bare `h2` connection, shared by all tasks; each task opens its streams on its own handle.
struct RawH2 {
    addr: SocketAddr,
    sender: tokio::sync::OnceCell<h2::client::SendRequest<Bytes>>,
}

impl RawH2 {
    async fn sender(&self) -> h2::client::SendRequest<Bytes> {
        self.sender
            .get_or_init(|| async {
                let stream = dial(self.addr).await;
                let (sender, conn) = h2::client::handshake(stream).await.expect("h2 handshake");
                tokio::spawn(conn);
                sender
            })
            .await
            .clone()
    }
}

/// One of the clients, built fresh for each run.
enum Client {
    Raw(Arc<Raw>),
    RawH2(Arc<RawH2>),
    HyperUtil(Box<LegacyClient<HttpConnector, Empty<Bytes>>>),
    Reqwest(reqwest::Client),
    Blossom(BlossomClient),
    BlossomText(BlossomClient),
}

impl Client {
    fn new(kind: Kind, point: Point, addr: SocketAddr, options: &Options) -> Client {
        let h2 = point.proto == Proto::H2c;
        match kind {
            Kind::Raw => Client::Raw(Arc::new(Raw {
                addr,
                h1: Mutex::new((0..point.concurrency).map(|_| None).collect()),
                h2: tokio::sync::OnceCell::new(),
            })),
            Kind::RawH2 => Client::RawH2(Arc::new(RawH2 { addr, sender: tokio::sync::OnceCell::new() })),
            Kind::HyperUtil => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                let client = LegacyClient::builder(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .pool_timer(TokioTimer::new())
                    .http2_only(h2)
                    .build(connector);
                Client::HyperUtil(Box::new(client))
            }
            Kind::Reqwest => {
                let builder = reqwest::Client::builder().no_proxy().tcp_nodelay(true);
                let builder = if h2 { builder.http2_prior_knowledge() } else { builder.http1_only() };
                Client::Reqwest(builder.build().expect("reqwest client"))
            }
            Kind::Blossom | Kind::BlossomOff | Kind::BlossomOn | Kind::BlossomText => {
                let cap = point.concurrency as u32;
                let builder = BlossomClient::builder().base_url(format!("http://{addr}")).session_with(|s| {
                    s.async_limit_per_host = cap;
                    s.async_limit_total = cap;
                    if options.blossom_keep_idle {
                        s.sync_pool_maxsize = s.sync_pool_maxsize.max(cap);
                        s.sync_pool_connections = cap;
                    }
                    match kind {
                        Kind::BlossomOff => resilience_off(s),
                        Kind::BlossomOn => resilience_on(s, cap),
                        _ => {}
                    }
                });
                let builder = if h2 { builder.http2_prior_knowledge() } else { builder };
                let client = builder.build().expect("blossom client");
                if kind == Kind::BlossomText { Client::BlossomText(client) } else { Client::Blossom(client) }
            }
        }
    }
}

/// Every resilience feature off: no breaker, no health tracking, no limiter, fixed size, no retries.
fn resilience_off(s: &mut SessionConfig) {
    s.breaker.mode = BreakerMode::Disabled;
    s.health.active_checks = false;
    s.health.consecutive_failures = 0;
    s.rate_limit_per_minute = None;
    s.sizer.policy = PolicyKind::Fixed;
    s.retry.max_retries = 0;
}

/// Every resilience feature on: breaker (defaults), passive and active health checks (default
/// interval), a limiter at the highest rate it takes (10 M/min, far above what 2 cores reach) with
/// a large burst, an AIMD sizer whose cap stays at the concurrency, retries (defaults).
fn resilience_on(s: &mut SessionConfig, cap: u32) {
    let defaults = SessionConfig::default();
    s.breaker = BreakerConfig { mode: BreakerMode::Normal, ..defaults.breaker };
    s.health = HealthConfig { active_checks: true, ..defaults.health };
    s.rate_limit_per_minute = Some(RATE_LIMIT_PER_MINUTE);
    s.rate_limit_burst = 1_000_000;
    s.sizer = SizerConfig { policy: PolicyKind::Aimd, min: 1, max: cap, initial: cap, ..defaults.sizer };
    s.retry = defaults.retry;
}

/// The limiter's rate for `blossom-on`: the most `LimiterConfig` accepts (166 667 requests a second).
const RATE_LIMIT_PER_MINUTE: u32 = 10_000_000;

/// What one task needs to send: a shared client, or (raw) its own connection.
#[allow(clippy::large_enum_variant)] // reason: one per task, made once; a box would add an indirection to one client's measured path
enum Handle {
    RawH1(usize, http1::SendRequest<Empty<Bytes>>, Arc<Raw>),
    RawH2(http2::SendRequest<Empty<Bytes>>),
    H2(h2::client::SendRequest<Bytes>),
    HyperUtil(LegacyClient<HttpConnector, Empty<Bytes>>),
    Reqwest(reqwest::Client),
    Blossom(BlossomClient),
    BlossomText(BlossomClient),
}

impl Handle {
    async fn new(client: &Client, task: usize, proto: Proto) -> Handle {
        match (client, proto) {
            (Client::Raw(raw), Proto::Http1) => {
                let kept = raw.h1.lock().expect("raw slots").get_mut(task).and_then(Option::take);
                let sender = match kept {
                    Some(sender) => sender,
                    None => raw.h1().await,
                };
                Handle::RawH1(task, sender, raw.clone())
            }
            (Client::Raw(raw), Proto::H2c) => Handle::RawH2(raw.h2().await),
            (Client::RawH2(raw), _) => Handle::H2(raw.sender().await),
            (Client::HyperUtil(c), _) => Handle::HyperUtil(LegacyClient::clone(c)),
            (Client::Reqwest(c), _) => Handle::Reqwest(c.clone()),
            (Client::Blossom(c), _) => Handle::Blossom(c.clone()),
            (Client::BlossomText(c), _) => Handle::BlossomText(c.clone()),
        }
    }

    /// One request, body read in full; returns the body's length. Every client puts the same
    /// request on the wire (blossom's headers: `accept` and `user-agent`, and `host` over
    /// HTTP/1.1), so the server's work per request is the same for all.
    async fn request(&mut self, wire: &Wire) -> usize {
        match self {
            Handle::RawH1(_, sender, _) => {
                sender.ready().await.expect("raw h1 ready");
                let request = wire.request(wire.uri.path(), true);
                let response = sender.send_request(request).await.expect("raw h1 response");
                response.into_body().collect().await.expect("raw h1 body").to_bytes().len()
            }
            Handle::RawH2(sender) => {
                let request = wire.request(wire.uri.clone(), false);
                let response = sender.send_request(request).await.expect("raw h2 response");
                response.into_body().collect().await.expect("raw h2 body").to_bytes().len()
            }
            Handle::H2(sender) => {
                std::future::poll_fn(|cx| sender.poll_ready(cx)).await.expect("h2 ready");
                let request = wire.request(wire.uri.clone(), false).map(|_| ());
                let (response, _) = sender.send_request(request, true).expect("h2 send");
                let mut body = response.await.expect("h2 response").into_body();
                let mut len = 0;
                while let Some(data) = body.data().await {
                    let data = data.expect("h2 body");
                    len += data.len();
                    let _ = body.flow_control().release_capacity(data.len());
                }
                len
            }
            Handle::HyperUtil(client) => {
                // hyper-util adds `host` itself over HTTP/1.1.
                let response =
                    client.request(wire.request(wire.uri.clone(), false)).await.expect("hyper-util response");
                response.into_body().collect().await.expect("hyper-util body").to_bytes().len()
            }
            Handle::Reqwest(client) => {
                let response = client
                    .get(&wire.url)
                    .header(http::header::ACCEPT, wire.accept.clone())
                    .header(http::header::USER_AGENT, wire.user_agent.clone())
                    .send()
                    .await
                    .expect("reqwest response");
                response.bytes().await.expect("reqwest body").len()
            }
            // The request built once, as for the other clients; the body handed over as bytes.
            Handle::Blossom(client) => client.send(&wire.spec).await.expect("blossom response").body.len(),
            Handle::BlossomText(client) => client.text().generate(PROMPT).await.expect("blossom response").len(),
        }
    }

    /// Gives a raw task's connection back for the next phase.
    fn finish(self) {
        if let Handle::RawH1(task, sender, raw) = self {
            raw.h1.lock().expect("raw slots")[task] = Some(sender);
        }
    }
}

/// The request every client sends, in the forms the clients take it.
#[derive(Clone)]
struct Wire {
    uri: http::Uri,
    url: String,
    authority: http::HeaderValue,
    accept: http::HeaderValue,
    user_agent: http::HeaderValue,
    /// blossom's form: the request its text API builds for the prompt.
    spec: blossom_client::RequestSpec,
}

impl Wire {
    fn new(addr: SocketAddr) -> Wire {
        let uri: http::Uri = format!("http://{addr}/text/{PROMPT}").parse().expect("uri");
        Wire {
            spec: blossom_client::simple_text_request(PROMPT, &Default::default()).expect("spec"),
            url: uri.to_string(),
            uri,
            authority: http::HeaderValue::from_str(&addr.to_string()).expect("authority"),
            accept: http::HeaderValue::from_static("text/plain"),
            // Static, as blossom holds its default: a clone touches no shared reference count.
            user_agent: http::HeaderValue::from_static(Box::leak(
                blossom_client::ClientConfig::default().user_agent.into_boxed_str(),
            )),
        }
    }

    fn request<U>(&self, uri: U, host: bool) -> http::Request<Empty<Bytes>>
    where
        http::Uri: TryFrom<U>,
        <http::Uri as TryFrom<U>>::Error: Into<http::Error>,
    {
        let mut builder = http::Request::get(uri)
            .header(http::header::ACCEPT, self.accept.clone())
            .header(http::header::USER_AGENT, self.user_agent.clone());
        if host {
            builder = builder.header(http::header::HOST, self.authority.clone());
        }
        builder.body(Empty::new()).expect("request")
    }
}

/// `total` requests over `concurrency` tasks; latencies in nanoseconds when `record`.
async fn phase(
    client: &Client,
    point: Point,
    addr: SocketAddr,
    total: usize,
    record: bool,
    limit: Duration,
) -> (Vec<u64>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let wire = Wire::new(addr);
    let deadline = Instant::now() + limit;
    let mut handles = Vec::with_capacity(point.concurrency);
    for task in 0..point.concurrency {
        handles.push(Handle::new(client, task, point.proto).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = handles
        .into_iter()
        .map(|mut handle| {
            let next = next.clone();
            let wire = wire.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(if record { total / point.concurrency + 16 } else { 0 });
                while next.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < deadline {
                    let sent = Instant::now();
                    let len = handle.request(&wire).await;
                    debug_assert_eq!(len, "echo: ".len() + PROMPT.len());
                    if record {
                        latencies.push(sent.elapsed().as_nanos() as u64);
                    }
                }
                handle.finish();
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(if record { total } else { 0 });
    for task in tasks {
        all.extend(task.await.expect("bench task"));
    }
    (all, started.elapsed())
}

/// One run of one client at one point.
#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    cold: u64,
    measured: u64,
}

fn percentile_us(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

async fn run_once(kind: Kind, point: Point, server: &MockServer, addr: SocketAddr, options: &Options) -> Run {
    let plan = &options.plan;
    let before = server.stats().connections;
    let client = Client::new(kind, point, addr, options);
    phase(&client, point, addr, plan.warmup(point.concurrency), false, plan.run_limit).await;
    let warm = server.stats().connections;
    let (mut latencies, took) = phase(&client, point, addr, plan.requests, true, plan.run_limit).await;
    let after = server.stats().connections;
    drop(client);
    latencies.sort_unstable();
    Run {
        rps: latencies.len() as f64 / took.as_secs_f64(),
        p50_us: percentile_us(&latencies, 0.50),
        p99_us: percentile_us(&latencies, 0.99),
        p999_us: percentile_us(&latencies, 0.999),
        cold: warm - before,
        measured: after - warm,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    median_of_sorted(&values)
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// A ratio as reported: three decimals.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let quick = args.iter().any(|a| a == "--quick");
    let json_path = value("--json");
    let only = value("--only");
    let mut plan = if quick { Plan::quick() } else { Plan::full() };
    let number = |flag: &str| {
        value(flag).map(|v| {
            v.parse::<usize>().unwrap_or_else(|_| {
                eprintln!("compare: {flag} takes a number, got `{v}`");
                std::process::exit(2)
            })
        })
    };
    if let Some(rounds) = number("--rounds") {
        plan.rounds = rounds.max(1);
    }
    if let Some(requests) = number("--requests") {
        plan.requests = requests.max(1);
        plan.warmup_min = plan.warmup_min.min(requests);
        // A profiler slows everything down: no run is cut short when the count is fixed.
        plan.run_limit = Duration::from_secs(3600);
    }
    let point_filter = value("--point");
    let options = Options { plan, blossom_keep_idle: args.iter().any(|a| a == "--blossom-keep-idle") };
    let plan = options.plan;
    let points: Vec<bool> = POINTS
        .iter()
        .map(|p| point_filter.as_deref().is_none_or(|f| f == format!("{}:{}", p.proto.name(), p.concurrency)))
        .collect();
    if !points.contains(&true) {
        eprintln!("compare: --point takes http1:1, http1:16, http1:128 or h2c:128");
        std::process::exit(2);
    }
    let kinds: Vec<Kind> =
        KINDS.iter().copied().filter(|k| only.as_deref().is_none_or(|o| o.split(',').any(|o| o == k.name()))).collect();
    if kinds.is_empty() {
        eprintln!(
            "compare: --only takes raw, raw-h2, hyper-util, reqwest, blossom, blossom-off, blossom-on or blossom-text"
        );
        std::process::exit(2);
    }

    let workers = number("--workers").unwrap_or(2).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let results = runtime.block_on(async {
        let server = MockServer::new(1);
        server.set_behavior(Behavior::Healthy { base: Duration::ZERO, jitter: Duration::ZERO });
        let (addr, accept) = server.bind("127.0.0.1:0".parse().expect("loopback")).await.expect("bind the mock");
        let mut runs: Vec<Vec<Vec<Run>>> = vec![vec![Vec::new(); KINDS.len()]; POINTS.len()];
        for round in 0..plan.rounds {
            for (p, point) in POINTS.iter().enumerate() {
                if !points[p] {
                    continue;
                }
                for k in 0..KINDS.len() {
                    let k = (k + round + p) % KINDS.len();
                    if !kinds.contains(&KINDS[k]) || !KINDS[k].runs_at(*point) {
                        continue;
                    }
                    let run = run_once(KINDS[k], *point, &server, addr, &options).await;
                    runs[p][k].push(run);
                    // Let the dropped client's connections close before the next one starts.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            eprintln!("compare: round {}/{} done at {:.1} s", round + 1, plan.rounds, started.elapsed().as_secs_f64());
        }
        accept.abort();
        runs
    });
    drop(runtime);

    let mut rows = Vec::new();
    for (p, point) in POINTS.iter().enumerate() {
        let raw_rps = median(results[p][0].iter().map(|r| r.rps).collect());
        for (k, kind) in KINDS.iter().enumerate() {
            let runs = &results[p][k];
            if runs.is_empty() {
                continue;
            }
            let pick = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
            let rps = pick(|r| r.rps);
            let ratios = paired_ratios(&results[p][0], runs);
            rows.push(json!({
                "client": kind.name(),
                "proto": point.proto.name(),
                "concurrency": point.concurrency,
                "rps": rps.round() as u64,
                "vs_raw": if raw_rps > 0.0 { json!(round3(rps / raw_rps)) } else { json!(null) },
                "vs_raw_paired": ratios.as_deref().map(|r| round3(median_of_sorted(r))),
                "vs_raw_paired_quartiles": ratios.as_deref().map(quartiles),
                "vs_raw_paired_ci95": ratios.as_deref().and_then(median_interval).map(|[low, high]| [round3(low), round3(high)]),
                "p50_us": (pick(|r| r.p50_us) * 10.0).round() / 10.0,
                "p99_us": (pick(|r| r.p99_us) * 10.0).round() / 10.0,
                "p999_us": (pick(|r| r.p999_us) * 10.0).round() / 10.0,
                "connections_cold": count(pick(|r| r.cold as f64)),
                "connections_measured": count(pick(|r| r.measured as f64)),
                "connections_cold_max": runs.iter().map(|r| r.cold).max().unwrap_or(0),
                "connections_measured_max": runs.iter().map(|r| r.measured).max().unwrap_or(0),
                "rounds": runs.len(),
                "requests": plan.requests,
                "warmup": plan.warmup(point.concurrency),
            }));
            if point.proto == Proto::H2c && *kind != Kind::Raw && *kind != Kind::RawH2 {
                // Over the same layer: h2 under both.
                let h2 = &results[p][KINDS.iter().position(|k| *k == Kind::RawH2).expect("a listed kind")];
                if let Some(ratios) = paired_ratios(h2, runs) {
                    let row = rows.last_mut().expect("just pushed");
                    row["vs_raw_h2_paired"] = json!(round3(median_of_sorted(&ratios)));
                    row["vs_raw_h2_paired_ci95"] = json!(median_interval(&ratios).map(|[l, h]| [round3(l), round3(h)]));
                }
            }
            if *kind == Kind::BlossomOn {
                let off = &results[p][KINDS.iter().position(|k| *k == Kind::BlossomOff).expect("a listed kind")];
                if !off.is_empty() {
                    let off_pick = |f: fn(&Run) -> f64| median(off.iter().map(f).collect());
                    let row = rows.last_mut().expect("just pushed");
                    row["on_vs_off_rps"] = json!(round3(rps / off_pick(|r| r.rps)));
                    row["on_vs_off_p99"] = json!(round3(pick(|r| r.p99_us) / off_pick(|r| r.p99_us)));
                    if let Some(ratios) = paired_ratios(off, runs) {
                        row["on_vs_off_rps_paired"] = json!(round3(median_of_sorted(&ratios)));
                        row["on_vs_off_rps_paired_ci95"] =
                            json!(median_interval(&ratios).map(|[l, h]| [round3(l), round3(h)]));
                    }
                }
            }
        }
    }
    print_table(&rows, &plan);
    print_same_transport(&rows);
    print_resilience(&results);
    let text = serde_json::to_string_pretty(&rows).expect("json");
    match json_path {
        Some(path) => {
            if let Some(dir) = std::path::Path::new(&path).parent() {
                std::fs::create_dir_all(dir).expect("create the output directory");
            }
            std::fs::write(&path, text + "\n").expect("write the json");
            eprintln!("compare: wrote {path} in {:.1} s", started.elapsed().as_secs_f64());
        }
        None => println!("{text}"),
    }
}

/// A `[low, high]` interval as the tables print it; `-` when there is none.
fn interval(bounds: &serde_json::Value) -> String {
    match (bounds[0].as_f64(), bounds[1].as_f64()) {
        (Some(low), Some(high)) => format!("{low:.3}–{high:.3}"),
        _ => "-".to_string(),
    }
}

/// h2c against `raw-h2`, the bare connection of the layer blossom speaks HTTP/2 on.
fn print_same_transport(rows: &[serde_json::Value]) {
    let rows: Vec<_> = rows.iter().filter(|r| r["vs_raw_h2_paired"].is_number()).collect();
    if rows.is_empty() {
        return;
    }
    println!("h2c against a bare h2 connection (`raw-h2`), paired:\n");
    println!("| client | vs raw-h2, paired | 95 % interval |");
    println!("|---|---:|---:|");
    for row in rows {
        let interval = interval(&row["vs_raw_h2_paired_ci95"]);
        println!(
            "| {} | {:.3}x | {interval} |",
            row["client"].as_str().unwrap_or("?"),
            row["vs_raw_h2_paired"].as_f64().unwrap_or(0.0)
        );
    }
    println!();
}

/// "Resilience on vs off": on / off of the medians, and the median of the per-round on / off
/// (the two ran in the same round, close in time), for req/s (with that median's 95 % interval,
/// as for `vs raw`) and p99.
fn print_resilience(results: &[Vec<Vec<Run>>]) {
    let index = |kind: Kind| KINDS.iter().position(|k| *k == kind).expect("a listed kind");
    let (off, on) = (index(Kind::BlossomOff), index(Kind::BlossomOn));
    let mut lines = Vec::new();
    for (p, point) in POINTS.iter().enumerate() {
        let (offs, ons) = (&results[p][off], &results[p][on]);
        if offs.is_empty() || ons.is_empty() {
            continue;
        }
        let ratio = |f: fn(&Run) -> f64| {
            let medians = median(ons.iter().map(f).collect()) / median(offs.iter().map(f).collect());
            let paired = median(offs.iter().zip(ons).map(|(a, b)| f(b) / f(a)).collect());
            (medians, paired)
        };
        let (rps, rps_paired) = ratio(|r| r.rps);
        let (p99, p99_paired) = ratio(|r| r.p99_us);
        let rps_interval = interval(&json!(paired_ratios(offs, ons).and_then(|ratios| median_interval(&ratios))));
        lines.push(format!(
            "| {} | {} | {:.0} | {:.0} | {rps:.3} | {rps_paired:.3} | {rps_interval} | {:.1} | {:.1} | {p99:.3} | {p99_paired:.3} |",
            point.proto.name(),
            point.concurrency,
            median(offs.iter().map(|r| r.rps).collect()),
            median(ons.iter().map(|r| r.rps).collect()),
            median(offs.iter().map(|r| r.p99_us).collect()),
            median(ons.iter().map(|r| r.p99_us).collect()),
        ));
    }
    if lines.is_empty() {
        return;
    }
    println!("Resilience on vs off (blossom-on / blossom-off; target: req/s within 3 %)\n");
    println!(
        "| proto | concurrency | off req/s | on req/s | on/off req/s | per-round | per-round, 95 % interval | off p99 µs | on p99 µs | on/off p99 | per-round |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for line in lines {
        println!("{line}");
    }
    println!();
}

/// Each round's req/s of this client over raw's in the same round, sorted: the two ran close in
/// time, so drift on a noisy machine cancels out better than in a ratio of medians. `None`
/// unless every round has both.
fn paired_ratios(raw: &[Run], runs: &[Run]) -> Option<Vec<f64>> {
    if raw.len() != runs.len() || raw.is_empty() {
        return None;
    }
    let mut ratios: Vec<f64> = raw.iter().zip(runs).map(|(r, c)| c.rps / r.rps).collect();
    ratios.sort_by(f64::total_cmp);
    Some(ratios)
}

/// The first quartile, median and third quartile of `sorted` ratios: how far the machine's
/// noise spreads them.
fn quartiles(sorted: &[f64]) -> [f64; 3] {
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    [round3(at(0.25)), round3(median_of_sorted(sorted)), round3(at(0.75))]
}

/// A distribution-free 95 % confidence interval for the median of `sorted`: its `k`-th smallest
/// and `k`-th largest values, for the largest `k` at which fewer than `k` of `n` fair coin flips
/// come up heads with probability at most 2.5 %. `None` below 6 values, where no `k` does.
fn median_interval(sorted: &[f64]) -> Option<[f64; 2]> {
    let n = sorted.len();
    // P(heads < k) for k = 1, 2, ...: the binomial tail, summed term by term.
    let mut term = 0.5f64.powi(n as i32); // P(heads = 0)
    let mut below = 0.0;
    let mut k = 0;
    while k < n / 2 && below + term <= 0.025 {
        below += term;
        k += 1;
        term *= (n - k + 1) as f64 / k as f64;
    }
    (k > 0).then(|| [sorted[k - 1], sorted[n - k]])
}

/// A median count: an integer unless it falls between two.
fn count(median: f64) -> serde_json::Value {
    if median.fract() == 0.0 { json!(median as u64) } else { json!(median) }
}

/// The rows as a markdown table on stdout.
fn print_table(rows: &[serde_json::Value], plan: &Plan) {
    println!(
        "\nLoopback comparison: GET /text/{PROMPT} (body `echo: {PROMPT}`), {} measured requests per run, median of {} rounds\n",
        plan.requests, plan.rounds
    );
    println!(
        "| client | proto | concurrency | req/s | vs raw | vs raw, paired | paired, 95 % interval | p50 µs | p99 µs | p99.9 µs | conns cold | conns measured |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let interval = interval(&row["vs_raw_paired_ci95"]);
        println!(
            "| {} | {} | {} | {} | {} | {} | {interval} | {} | {} | {} | {} | {} |",
            row["client"].as_str().unwrap_or("?"),
            row["proto"].as_str().unwrap_or("?"),
            row["concurrency"],
            row["rps"],
            row["vs_raw"].as_f64().map_or("-".to_string(), |v| format!("{v:.2}x")),
            row["vs_raw_paired"].as_f64().map_or("-".to_string(), |v| format!("{v:.3}x")),
            row["p50_us"],
            row["p99_us"],
            row["p999_us"],
            row["connections_cold"],
            row["connections_measured"],
        );
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(n: usize) -> Vec<f64> {
        (1..=n).map(|i| i as f64).collect()
    }

    #[test]
    fn the_median_interval_takes_the_order_statistics_the_binomial_tail_allows() {
        // Published values for a 95 % interval: n = 25 takes the 8th smallest and the 8th
        // largest (P(X <= 7) = 2.16 %, P(X <= 8) = 5.39 %), n = 10 the 2nd, n = 6 the extremes.
        assert_eq!(median_interval(&sorted(25)), Some([8.0, 18.0]));
        assert_eq!(median_interval(&sorted(10)), Some([2.0, 9.0]));
        assert_eq!(median_interval(&sorted(6)), Some([1.0, 6.0]));
        // Five rounds cannot give 95 %: even their extremes cover only 93.75 %.
        assert_eq!(median_interval(&sorted(5)), None);
        assert_eq!(median_interval(&[]), None);
    }
}
