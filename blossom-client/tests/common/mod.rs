//! Shared helpers of the integration tests: a mock region, a client tuned for fast tests, a tiny
//! raw HTTP/1.1 server for what the mock cannot do, and a log capture.
#![allow(dead_code, unreachable_pub)] // reason: each test binary uses a different subset

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blossom_client::{BlossomClient, ClientBuilder, ClientEvent, Region, SessionConfig};
use blossom_mock::MockServer;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The key every test client sends.
pub const KEY: &str = "sk_test_secret_0123456789";

/// A mock region on a loopback port.
pub async fn mock() -> (MockServer, SocketAddr) {
    let server = MockServer::new(7);
    let (addr, _handle) = server.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (server, addr)
}

/// Settings for fast, deterministic tests: no active health checks (they would open
/// connections of their own), short backoff, short timeouts.
pub fn fast(session: &mut SessionConfig) {
    session.health.active_checks = false;
    session.retry.backoff.initial = Duration::from_millis(10);
    session.retry.backoff.max = Duration::from_millis(50);
    session.retry.backoff.jitter = 0.0;
    session.timeout = Duration::from_secs(10);
    session.async_timeout_connect = Duration::from_secs(2);
    session.async_timeout_sock_read = Duration::from_secs(5);
    session.pool_timeout = Duration::from_secs(5);
}

/// A builder for `addr` with the test key and [`fast`] settings, then `change`.
pub fn builder(addr: SocketAddr, change: impl FnOnce(&mut SessionConfig)) -> ClientBuilder {
    BlossomClient::builder().base_url(format!("http://{addr}")).api_key(KEY).session_with(|s| {
        fast(s);
        change(s);
    })
}

/// A client for `addr` with the test key and [`fast`] settings, then `change`.
pub fn client(addr: SocketAddr, change: impl FnOnce(&mut SessionConfig)) -> BlossomClient {
    builder(addr, change).build().unwrap()
}

/// Waits (a few ms at a time, at most 5 s) until `condition` holds; panics otherwise.
pub async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Fails the test if `future` takes longer than `limit` (a hang guard, not a timing assertion).
pub async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    // The guard is polled first: a call polled again only once the guard is up would see its
    // own deadline passed and end by itself, which would hide a deadline that never woke it.
    tokio::select! {
        biased;
        _ = tokio::time::sleep(limit) => panic!("the call did not finish within {limit:?}, past its configured deadline"),
        output = future => output,
    }
}

/// A loopback address nothing listens on (connections are refused), reserved and let go.
pub fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A mock region listening on `addr` (e.g. a [`dead_addr`] brought back up).
pub async fn mock_at(addr: SocketAddr) -> MockServer {
    let server = MockServer::new(7);
    server.bind(addr).await.unwrap();
    server
}

/// A builder for several regions (`name`, address; priority 0, weight 1) with the test key and
/// [`fast`] settings, then `change`.
pub fn regions_builder(regions: &[(&str, SocketAddr)], change: impl FnOnce(&mut SessionConfig)) -> ClientBuilder {
    let mut builder = BlossomClient::builder().api_key(KEY).session_with(|s| {
        fast(s);
        change(s);
    });
    for (name, addr) in regions {
        builder = builder.region(Region::new(*name, format!("http://{addr}")));
    }
    builder
}

/// A client for several regions; see [`regions_builder`].
pub fn regions_client(regions: &[(&str, SocketAddr)], change: impl FnOnce(&mut SessionConfig)) -> BlossomClient {
    regions_builder(regions, change).build().unwrap()
}

/// Everything `client.events()` yields from now on, collected in the background.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<ClientEvent>>>);

impl Events {
    pub fn record(client: &BlossomClient) -> Events {
        let events = Events::default();
        let sink = events.clone();
        let mut stream = Box::pin(client.events());
        tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                sink.0.lock().unwrap().push(event);
            }
        });
        events
    }

    pub fn all(&self) -> Vec<ClientEvent> {
        self.0.lock().unwrap().clone()
    }

    /// The events that match `pick`.
    pub fn matching(&self, pick: impl Fn(&ClientEvent) -> bool) -> Vec<ClientEvent> {
        self.all().into_iter().filter(|e| pick(e)).collect()
    }

    /// The breaker transitions of `region`, as (from, to, reason).
    pub fn breaker(
        &self,
        region: &str,
    ) -> Vec<(blossom_client::pool_core::BreakerState, blossom_client::pool_core::BreakerState, String)> {
        self.all()
            .into_iter()
            .filter(|e| e.region.as_deref() == Some(region))
            .filter_map(|e| match e.event {
                blossom_client::pool_core::Event::Breaker { event, .. } => {
                    Some((event.from, event.to, format!("{:?}", event.reason)))
                }
                _ => None,
            })
            .collect()
    }
}

/// What the raw server does with the `n`-th request (0-based) on a connection.
#[derive(Debug, Clone)]
pub enum Act {
    /// Writes these bytes (a whole response) and keeps the connection open.
    Send(Vec<u8>),
    /// Closes the connection without answering.
    Close,
}

/// A `200 text/plain` response with a Content-Length and no `Connection: close`.
pub fn ok_text(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// A tiny HTTP/1.1 server on loopback, for what the mock server cannot do (close a kept-alive
/// connection right when the next request arrives, chunked bodies). Counts connections and
/// requests; each request is answered as `act(request index on its connection)` says.
#[derive(Clone)]
pub struct RawServer {
    pub addr: SocketAddr,
    connections: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

impl RawServer {
    pub async fn start(act: impl Fn(u64) -> Act + Send + Sync + 'static) -> RawServer {
        RawServer::start_by_path(move |n, _| act(n)).await
    }

    /// As [`RawServer::start`], and `act` also sees the request's path.
    pub async fn start_by_path(act: impl Fn(u64, &str) -> Act + Send + Sync + 'static) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server =
            RawServer { addr, connections: Arc::new(AtomicU64::new(0)), requests: Arc::new(AtomicU64::new(0)) };
        let act = Arc::new(act);
        let counters = server.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counters.connections.fetch_add(1, Ordering::SeqCst);
                let (act, counters) = (act.clone(), counters.clone());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    for n in 0.. {
                        let Some(path) = read_request_path(&mut stream, &mut buffer).await else { return };
                        counters.requests.fetch_add(1, Ordering::SeqCst);
                        match act(n, &path) {
                            Act::Send(bytes) => {
                                if stream.write_all(&bytes).await.is_err() {
                                    return;
                                }
                            }
                            Act::Close => return,
                        }
                    }
                });
            }
        });
        server
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Everything written by `tracing` while the guard lives (this thread only: use a
/// current-thread runtime).
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A gate shared by loopback HTTP/1.1 servers: a request whose path contains `hold` waits
/// (counted in [`Gate::held`]) until the gate opens; the others are answered at once. Each
/// answer is `200 text/plain` echoing the path.
#[derive(Clone)]
pub struct Gate {
    open: Arc<tokio::sync::watch::Sender<bool>>,
    held: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            open: Arc::new(tokio::sync::watch::Sender::new(false)),
            held: Arc::new(AtomicU64::new(0)),
            answered: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Gate {
    /// Starts a server behind this gate; returns its address.
    pub async fn serve(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = self.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let gate = gate.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    loop {
                        let Some(path) = read_request_path(&mut stream, &mut buffer).await else { return };
                        if path.contains("hold") {
                            let mut open = gate.open.subscribe();
                            gate.held.fetch_add(1, Ordering::SeqCst);
                            let _ = open.wait_for(|open| *open).await;
                            gate.held.fetch_sub(1, Ordering::SeqCst);
                        }
                        gate.answered.fetch_add(1, Ordering::SeqCst);
                        if stream.write_all(&ok_text(&path)).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Requests waiting at the gate now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    /// Lets every held request through, and the next ones too.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Holds the next `hold` requests again.
    pub fn close(&self) {
        self.open.send_replace(false);
    }
}

/// Reads one request head from `stream` (the tests send bodiless GETs) and returns its path;
/// `None` when the peer closed. Bytes past the head stay in `buffer` for the next request.
async fn read_request_path(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buffer.drain(..end + 4).collect();
            let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
            return Some(line.split(' ').nth(1).unwrap_or_default().to_string());
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}
