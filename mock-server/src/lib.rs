//! A mock Pollinations region: the API's endpoints with programmable behaviour, over real
//! loopback TCP ([`MockServer::bind`]) or any byte stream ([`MockServer::serve_io`], e.g. turmoil).
//!
//! The behaviour can change at any time ([`MockServer::set_behavior`]): healthy with a latency,
//! a capacity limit (latency grows as in-flight requests exceed K), 429 with `Retry-After`, any
//! status, slow drip, hang after headers, reset mid-body, empty 200, truncated body, invalid JSON,
//! or no answer at all. It counts connections and requests server-side. Time is tokio's, so a
//! paused or simulated clock drives it; randomness is seeded.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// A tiny valid PNG (1x1), the image every image request gets.
pub const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d,
    0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// How the server answers. Model listings (what health checks ask for) follow every failure
/// behaviour too, except the generation-only ones ([`Behavior::Empty200`],
/// [`Behavior::InvalidJson`], [`Behavior::Large`]), for which they answer normally.
#[derive(Debug, Clone, PartialEq)]
pub enum Behavior {
    /// Answers well after `base` plus up to `jitter` (uniform, seeded).
    Healthy {
        /// Least latency.
        base: Duration,
        /// Extra latency, uniform in `[0, jitter]`.
        jitter: Duration,
    },
    /// Answers after `base`, plus `per_excess` for each in-flight request above `k`: a server
    /// whose best concurrency is `k`.
    Capacity {
        /// Best concurrency.
        k: u32,
        /// Latency at or below `k`.
        base: Duration,
        /// Added per request above `k`.
        per_excess: Duration,
    },
    /// 429 with `Retry-After: secs`.
    RateLimited {
        /// Seconds in the header.
        retry_after_secs: u64,
    },
    /// This status with a Pollinations error body (5xx, 520, 524, 4xx...).
    Status(u16),
    /// A 200 whose body arrives one byte every `every`.
    SlowDrip {
        /// Gap between bytes.
        every: Duration,
    },
    /// Headers, then nothing, forever.
    HangAfterHeaders,
    /// Headers and part of the body, then the connection is reset.
    ResetMidBody,
    /// A 200 with an empty body.
    Empty200,
    /// A 200 that promises more bytes (Content-Length) than it sends, then closes.
    Truncated,
    /// A 200 whose JSON is broken.
    InvalidJson,
    /// A 200 with a body of this many bytes.
    Large(usize),
    /// Accepts the request and never answers.
    Hang,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior::Healthy { base: Duration::from_millis(1), jitter: Duration::ZERO }
    }
}

/// What the server counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: u64,
    /// Requests received (every path).
    pub requests: u64,
    /// Generation requests (chat, text, image).
    pub generations: u64,
    /// Model listings (the cheap health-check kind).
    pub listings: u64,
    /// Requests being answered now.
    pub in_flight: u64,
    /// Most requests answered at once.
    pub max_in_flight: u64,
}

#[derive(Debug)]
struct State {
    behavior: Mutex<Behavior>,
    rng: Mutex<fastrand::Rng>,
    connections: AtomicU64,
    requests: AtomicU64,
    generations: AtomicU64,
    listings: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    close_after: AtomicU64,
    http2_max_streams: AtomicU32,
}

/// A mock region. Cheap to clone; clones share behaviour and counters.
#[derive(Debug, Clone)]
pub struct MockServer {
    state: Arc<State>,
}

impl Default for MockServer {
    fn default() -> Self {
        MockServer::new(0)
    }
}

impl MockServer {
    /// A healthy server whose random choices come from `seed`.
    pub fn new(seed: u64) -> Self {
        MockServer {
            state: Arc::new(State {
                behavior: Mutex::new(Behavior::default()),
                rng: Mutex::new(fastrand::Rng::with_seed(seed)),
                connections: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                generations: AtomicU64::new(0),
                listings: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
                max_in_flight: AtomicU64::new(0),
                close_after: AtomicU64::new(0),
                http2_max_streams: AtomicU32::new(0),
            }),
        }
    }

    /// Changes how the server answers from now on.
    pub fn set_behavior(&self, behavior: Behavior) {
        *self.state.behavior.lock().unwrap_or_else(|p| p.into_inner()) = behavior;
    }

    /// How the server answers now.
    pub fn behavior(&self) -> Behavior {
        self.state.behavior.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks the client to close each connection after `n` requests on it (`Connection: close`);
    /// 0 keeps connections open.
    pub fn close_connections_after(&self, n: u64) {
        self.state.close_after.store(n, Ordering::Relaxed);
    }

    /// Announces that HTTP/2 connections accepted from now on take `n` streams at once
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`); 0 keeps hyper's default (200).
    pub fn set_http2_max_streams(&self, n: u32) {
        self.state.http2_max_streams.store(n, Ordering::Relaxed);
    }

    /// The counters.
    pub fn stats(&self) -> ServerStats {
        let s = &self.state;
        ServerStats {
            connections: s.connections.load(Ordering::Relaxed),
            requests: s.requests.load(Ordering::Relaxed),
            generations: s.generations.load(Ordering::Relaxed),
            listings: s.listings.load(Ordering::Relaxed),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            max_in_flight: s.max_in_flight.load(Ordering::Relaxed),
        }
    }

    /// Listens on `addr` (use `127.0.0.1:0`) and serves until the returned handle is aborted or
    /// dropped with the runtime. HTTP/1.1 and h2c (prior knowledge) are both accepted.
    pub async fn bind(&self, addr: SocketAddr) -> io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let server = self.clone();
        let handle = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                tokio::spawn(async move { server.serve_io(stream).await });
            }
        });
        Ok((local, handle))
    }

    /// Serves one connection until it closes (counted as accepted).
    pub async fn serve_io<IO>(&self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.state.connections.fetch_add(1, Ordering::Relaxed);
        let server = self.clone();
        let served = Arc::new(AtomicU64::new(0));
        let service = hyper::service::service_fn(move |request| {
            let server = server.clone();
            let served = served.clone();
            async move { Ok::<_, Infallible>(server.answer(request, &served).await) }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let max_streams = self.state.http2_max_streams.load(Ordering::Relaxed);
        if max_streams > 0 {
            builder.http2().max_concurrent_streams(max_streams);
        }
        let _ = builder.serve_connection(TokioIo::new(io), service).await;
    }

    async fn answer(&self, request: Request<Incoming>, served: &AtomicU64) -> Response<BoxBody<Bytes, io::Error>> {
        let s = &self.state;
        s.requests.fetch_add(1, Ordering::Relaxed);
        let in_flight = s.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        s.max_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        let _guard = InFlight(self.state.clone());
        let path = request.uri().path().to_string();
        let listing = path.ends_with("/models");
        if listing {
            s.listings.fetch_add(1, Ordering::Relaxed);
        } else {
            s.generations.fetch_add(1, Ordering::Relaxed);
        }
        let stream = request.method() == http::Method::POST && {
            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("stream")?.as_bool())
                .unwrap_or(false)
        };
        let behavior = self.behavior();
        let delay = match &behavior {
            Behavior::Healthy { base, jitter } => {
                let extra = if jitter.is_zero() { 0.0 } else { self.unit() };
                *base + jitter.mul_f64(extra)
            }
            Behavior::Capacity { k, base, per_excess } => {
                *base + *per_excess * (in_flight.saturating_sub(u64::from(*k)) as u32)
            }
            _ => Duration::ZERO,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let n = served.fetch_add(1, Ordering::Relaxed) + 1;
        let close_after = s.close_after.load(Ordering::Relaxed);
        let mut response = self.respond(&path, stream, listing, behavior).await;
        if close_after > 0 && n >= close_after {
            response.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        }
        response
    }

    async fn respond(
        &self,
        path: &str,
        stream: bool,
        listing: bool,
        behavior: Behavior,
    ) -> Response<BoxBody<Bytes, io::Error>> {
        // Listings (the health-check kind) fail with the server: errors, hangs, broken bodies;
        // answers that only make sense for a generation (empty, invalid JSON, large) leave them be.
        let generation_only = matches!(behavior, Behavior::Empty200 | Behavior::InvalidJson | Behavior::Large(_));
        let healthy = matches!(behavior, Behavior::Healthy { .. } | Behavior::Capacity { .. });
        if healthy || (listing && generation_only) {
            return ok_for(path, stream);
        }
        match behavior {
            Behavior::RateLimited { retry_after_secs } => {
                let mut r = error_response(429, "RATE_LIMITED", "too many requests");
                r.headers_mut().insert(header::RETRY_AFTER, retry_after_secs.into());
                r
            }
            Behavior::Status(code) => error_response(code, "UPSTREAM_ERROR", "mock failure"),
            Behavior::Empty200 => plain(StatusCode::OK, "text/plain", Bytes::new()),
            Behavior::InvalidJson => plain(StatusCode::OK, "application/json", Bytes::from_static(b"{\"choices\": [")),
            Behavior::Large(n) => plain(StatusCode::OK, "text/plain", Bytes::from(vec![b'x'; n])),
            Behavior::Hang => std::future::pending().await,
            Behavior::SlowDrip { every } => {
                let (tx, body) = channel_body();
                tokio::spawn(async move {
                    for byte in b"slow drip answer".iter() {
                        tokio::time::sleep(every).await;
                        if tx.send(Ok(Bytes::copy_from_slice(&[*byte]))).await.is_err() {
                            return;
                        }
                    }
                });
                streamed(StatusCode::OK, "text/plain", body, None)
            }
            Behavior::HangAfterHeaders => {
                let (tx, body) = channel_body();
                tokio::spawn(async move {
                    tx.closed().await;
                });
                streamed(StatusCode::OK, "text/plain", body, None)
            }
            Behavior::ResetMidBody => {
                let (tx, body) = channel_body();
                tokio::spawn(async move {
                    let _ = tx.send(Ok(Bytes::from_static(b"partial answer"))).await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let _ = tx.send(Err(io::Error::new(io::ErrorKind::ConnectionReset, "mock reset"))).await;
                });
                streamed(StatusCode::OK, "text/plain", body, None)
            }
            Behavior::Truncated => {
                let (tx, body) = channel_body();
                tokio::spawn(async move {
                    let _ = tx.send(Ok(Bytes::from_static(b"only half"))).await;
                });
                streamed(StatusCode::OK, "text/plain", body, Some(100))
            }
            Behavior::Healthy { .. } | Behavior::Capacity { .. } => ok_for(path, stream),
        }
    }

    fn unit(&self) -> f64 {
        self.state.rng.lock().unwrap_or_else(|p| p.into_inner()).f64()
    }
}

struct InFlight(Arc<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The healthy answer for each endpoint of the API.
fn ok_for(path: &str, stream: bool) -> Response<BoxBody<Bytes, io::Error>> {
    if path.ends_with("/v1/models") {
        let models = r#"[{"name":"openai","description":"mock text","aliases":[],"input_modalities":["text"],"output_modalities":["text"]},{"name":"flux","description":"mock image","aliases":[],"input_modalities":["text"],"output_modalities":["image"]}]"#;
        return plain(StatusCode::OK, "application/json", Bytes::from_static(models.as_bytes()));
    }
    if path.ends_with("/text/models") {
        return plain(StatusCode::OK, "application/json", Bytes::from_static(br#"["openai","mistral"]"#));
    }
    if path.ends_with("/image/models") {
        return plain(StatusCode::OK, "application/json", Bytes::from_static(br#"["flux","turbo"]"#));
    }
    if path.contains("/image/") {
        return plain(StatusCode::OK, "image/png", Bytes::from_static(PNG_1X1));
    }
    if path.ends_with("/v1/chat/completions") {
        if stream {
            let mut sse = String::new();
            for word in ["Hello", " from", " the", " mock"] {
                let chunk = serde_json::json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": word}}]});
                sse.push_str(&format!("data: {chunk}\n\n"));
            }
            sse.push_str("data: [DONE]\n\n");
            return plain(StatusCode::OK, "text/event-stream", Bytes::from(sse));
        }
        let body = serde_json::json!({
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the mock"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        });
        return plain(StatusCode::OK, "application/json", Bytes::from(body.to_string()));
    }
    if let Some(prompt) = path.rsplit_once("/text/").map(|(_, p)| p) {
        return plain(StatusCode::OK, "text/plain; charset=utf-8", Bytes::from(format!("echo: {prompt}")));
    }
    error_response(404, "NOT_FOUND", "no such endpoint")
}

fn error_response(status: u16, code: &str, message: &str) -> Response<BoxBody<Bytes, io::Error>> {
    let body = serde_json::json!({
        "status": status, "success": false,
        "error": {"code": code, "message": message, "requestId": "mock-req-1"}
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    plain(status, "application/json", Bytes::from(body.to_string()))
}

fn plain(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<BoxBody<Bytes, io::Error>> {
    let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

fn streamed(
    status: StatusCode,
    content_type: &'static str,
    body: ChannelBody,
    content_length: Option<u64>,
) -> Response<BoxBody<Bytes, io::Error>> {
    let mut response = Response::new(body.boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    if let Some(length) = content_length {
        response.headers_mut().insert(header::CONTENT_LENGTH, length.into());
    }
    response
}

type Chunk = Result<Bytes, io::Error>;

fn channel_body() -> (mpsc::Sender<Chunk>, ChannelBody) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ChannelBody { rx })
}

/// A body fed from a channel; an `Err` aborts the connection mid-body.
struct ChannelBody {
    rx: mpsc::Receiver<Chunk>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|r| r.map(Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_endpoints_and_counts() {
        let server = MockServer::new(1);
        let (addr, handle) = server.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert!(get(addr, "/text/hello%20world").await.contains("echo: hello%20world"));
        assert!(get(addr, "/text/models").await.contains("mistral"));
        server.set_behavior(Behavior::RateLimited { retry_after_secs: 7 });
        let limited = get(addr, "/text/x").await;
        assert!(
            limited.starts_with("HTTP/1.1 429") && limited.to_ascii_lowercase().contains("retry-after: 7"),
            "{limited}"
        );
        server.set_behavior(Behavior::Status(524));
        assert!(get(addr, "/image/x").await.starts_with("HTTP/1.1 524"));
        let stats = server.stats();
        assert_eq!((stats.connections, stats.requests, stats.listings, stats.generations), (4, 4, 1, 3));
        handle.abort();
    }
}
