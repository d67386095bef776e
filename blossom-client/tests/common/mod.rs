//! Shared helpers of the integration tests: a mock region, a client tuned for fast tests, a tiny
//! raw HTTP/1.1 server for what the mock cannot do, and a log capture.
#![allow(dead_code, unreachable_pub)] // reason: each test binary uses a different subset

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blossom_client::{BlossomClient, ClientBuilder, SessionConfig};
use blossom_mock::MockServer;
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
    tokio::time::timeout(limit, future).await.expect("the call finished within its configured deadline")
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
                        // Read one request head (the tests send bodiless GETs).
                        loop {
                            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                                buffer.drain(..end + 4);
                                break;
                            }
                            let mut chunk = [0u8; 4096];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                            }
                        }
                        counters.requests.fetch_add(1, Ordering::SeqCst);
                        match act(n) {
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
