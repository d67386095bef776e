//! HTTP/2 straight over the `h2` crate, and the response body both protocols give.
//!
//! hyper's HTTP/2 client hands each request to the connection's task over a channel and spawns
//! a task per request to carry the response back. Here the request's own task opens the stream
//! on the shared connection and polls its response: no channel hop, no task per request. The
//! connection's settings are hyper's client defaults, so nothing changes on the wire.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use http::{HeaderValue, header};
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::connect::Io;
use crate::error::BoxError;
use crate::ping::{KeepAlive, PingOutcome, PingTimedOut, Pinger};

/// Streams opened before the peer's SETTINGS say how many it takes: one under the 100 RFC 9113
/// recommends a peer to allow at least (and hyper assumes). h2 reports this number until the
/// SETTINGS come, so it cannot be a limit peers announce: 100 is a common one (Apache's and
/// hypercorn's default), 99 is not.
const STREAMS_BEFORE_SETTINGS: usize = 99;

/// Opens HTTP/2 on `io` with hyper's client defaults (windows of 5 MiB per connection and 2 MiB
/// per stream, 16 KiB frames and header lists, no server push), and PINGs if `keep_alive` says
/// so. The connection is for its own task to drive.
pub(crate) async fn handshake(
    io: Box<dyn Io>,
    keep_alive: Option<KeepAlive>,
) -> Result<(H2Sender, H2Connection), h2::Error> {
    let (send, mut connection) = h2::client::Builder::new()
        .initial_max_send_streams(STREAMS_BEFORE_SETTINGS)
        .initial_window_size(2 * 1024 * 1024)
        .initial_connection_window_size(5 * 1024 * 1024)
        .max_frame_size(16 * 1024)
        .max_header_list_size(16 * 1024)
        .max_send_buffer_size(1024 * 1024)
        .max_local_error_reset_streams(Some(1024))
        .enable_push(false)
        .handshake(io)
        .await?;
    let open = Arc::new(Liveness::default());
    let pinger = keep_alive.and_then(|k| Some(Pinger::new(connection.ping_pong()?, k)));
    let connection = Box::new(connection);
    let streams = STREAMS_BEFORE_SETTINGS;
    let defer = tokio::runtime::Handle::try_current().is_ok_and(|runtime| runtime.metrics().num_workers() == 1);
    let connection = H2Connection { connection, open: open.clone(), defer, deferred: false, streams, pinger };
    Ok((H2Sender { send, open }, connection))
}

/// An HTTP/2 connection's future: reads and writes frames, and marks the connection's senders
/// closed when it ends.
///
/// On a runtime of one worker thread, each wake is deferred once: the task yields to the back of
/// the run queue before it drives the connection, so the requests woken alongside open their
/// streams first and go out in one write (flush consolidation, as Netty does it). Without it,
/// each request's wake ran the connection at once and wrote its frames alone: at 128 requests in
/// flight on loopback, 2.3 times as many write calls per request, and 8 points less against a
/// bare hyper connection. With more workers a yield does not batch: tokio wakes an idle worker
/// to take the yielded task, and the connection moves between cores. Measured at two workers,
/// not deferring reads 2.4 points more at 128 in flight, 10 more at 16, and three times the
/// requests a second at 1. (The blocking client's runtime has one worker, but its requests run on
/// the callers' threads: that case was not measured, and defers as before.)
pub(crate) struct H2Connection {
    /// Boxed: 1.3 KB inline would size every connection's task, HTTP/1.1 ones too.
    connection: Box<h2::client::Connection<Box<dyn Io>, Bytes>>,
    open: Arc<Liveness>,
    /// Whether wakes are deferred: the runtime has one worker thread.
    defer: bool,
    deferred: bool,
    /// The streams the peer takes at once, as last seen.
    streams: usize,
    pinger: Option<Pinger>,
}

impl H2Connection {
    /// The streams the peer takes at once, when that changed since the last call: its SETTINGS
    /// arrived, or changed it. (`h2` shows no SETTINGS as such: a peer that takes exactly
    /// [`STREAMS_BEFORE_SETTINGS`] looks as one that has not said yet.)
    pub(crate) fn stream_limit_changed(&mut self) -> Option<usize> {
        if self.deferred {
            // Only yielded: nothing was read.
            return None;
        }
        let streams = self.connection.max_concurrent_send_streams();
        (streams != self.streams).then(|| {
            self.streams = streams;
            streams
        })
    }
}

impl Future for H2Connection {
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.defer && !this.deferred {
            this.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.deferred = false;
        let ended = match Pin::new(&mut this.connection).poll(cx) {
            Poll::Ready(ended) => ended.map_err(BoxError::from),
            Poll::Pending => match this.pinger.as_mut().map(|pinger| pinger.poll(cx)) {
                None | Some(Poll::Pending) => return Poll::Pending,
                Some(Poll::Ready(PingOutcome::Stopped)) => {
                    this.pinger = None;
                    return Poll::Pending;
                }
                // Ended here: dropping the connection fails its streams at once.
                Some(Poll::Ready(PingOutcome::Unanswered)) => {
                    this.pinger = None;
                    this.open.end(SILENT);
                    Err(Box::new(PingTimedOut) as BoxError)
                }
            },
        };
        this.open.end(CLOSED);
        Poll::Ready(ended)
    }
}

/// A handle to open streams on one HTTP/2 connection.
#[derive(Clone)]
pub(crate) struct H2Sender {
    send: h2::client::SendRequest<Bytes>,
    /// Shared by the connection's handles and its task.
    open: Arc<Liveness>,
}

const OPEN: u8 = 0;
const CLOSED: u8 = 1;
/// Ended by its own task: the peer left a PING unanswered.
const SILENT: u8 = 2;

/// Whether a connection still takes streams, and if not, whether its peer went silent.
#[derive(Debug, Default)]
struct Liveness(AtomicU8);

impl Liveness {
    fn is_open(&self) -> bool {
        self.0.load(Ordering::Acquire) == OPEN
    }

    /// Marks the connection ended `how`, unless it already was.
    fn end(&self, how: u8) {
        let _ = self.0.compare_exchange(OPEN, how, Ordering::Release, Ordering::Relaxed);
    }

    fn went_silent(&self) -> bool {
        self.0.load(Ordering::Acquire) == SILENT
    }
}

impl H2Sender {
    pub(crate) fn is_closed(&self) -> bool {
        !self.open.is_open()
    }

    /// What a stream's failure says: that the peer went silent, if it did (h2 tells only of a
    /// broken pipe).
    pub(crate) fn explain(&self, source: BoxError) -> BoxError {
        if self.open.went_silent() { Box::new(PingTimedOut) } else { source }
    }

    /// The streams the peer takes at once; `None` until its SETTINGS changed them from
    /// [`STREAMS_BEFORE_SETTINGS`].
    pub(crate) fn stream_limit(&self) -> Option<usize> {
        Some(self.send.current_max_send_streams()).filter(|&n| n != STREAMS_BEFORE_SETTINGS)
    }

    /// Opens a stream for `request` at once when the handle is ready (the usual case), so the
    /// future holds no copy of the request; otherwise once the peer's stream limit allows.
    pub(crate) fn send(&mut self, request: http::Request<Full<Bytes>>) -> H2Response<'_> {
        let state = match self.send.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => self.open_stream(request),
            Poll::Ready(Err(error)) => self.refused(error),
            Poll::Pending => State::Waiting(self, Some(Box::new(request))),
        };
        H2Response { state }
    }

    fn open_stream<'a>(&mut self, request: http::Request<Full<Bytes>>) -> State<'a> {
        let (mut parts, body) = request.into_parts();
        let body = whole(body);
        let end = body.is_empty();
        if !end {
            // As hyper sets it: a body of known length declares it.
            parts.headers.entry(header::CONTENT_LENGTH).or_insert_with(|| HeaderValue::from(body.len()));
        }
        match self.send.send_request(http::Request::from_parts(parts, ()), end) {
            Ok((response, stream)) => State::Sent { response, body: (!end).then_some((stream, body)) },
            Err(error) => self.refused(error),
        }
    }

    /// A stream the connection would not open. After the peer's `GOAWAY` (or a broken
    /// connection) none will open: its senders are marked closed at once, so a retry takes
    /// another connection rather than this one again, while its last streams finish.
    fn refused<'a>(&self, error: h2::Error) -> State<'a> {
        if error.is_go_away() || error.is_io() {
            self.open.end(CLOSED);
        }
        State::Failed(Some(error))
    }
}

/// The bytes of a request body: `Full` gives them whole, at its first poll.
fn whole(mut body: Full<Bytes>) -> Bytes {
    use http_body::Body as _;
    if body.is_end_stream() {
        return Bytes::new();
    }
    match Pin::new(&mut body).poll_frame(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

/// The response to a request sent with [`H2Sender::send`]; pushes the request body meanwhile.
pub(crate) struct H2Response<'a> {
    state: State<'a>,
}

enum State<'a> {
    /// The handle's previous stream is not open yet.
    Waiting(&'a mut H2Sender, Option<Box<http::Request<Full<Bytes>>>>),
    Sent {
        response: h2::client::ResponseFuture,
        body: Option<(h2::SendStream<Bytes>, Bytes)>,
    },
    Failed(Option<h2::Error>),
}

impl Future for H2Response<'_> {
    type Output = Result<http::Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Waiting(sender, request) => {
                    this.state = match ready!(sender.send.poll_ready(cx)) {
                        Ok(()) => sender.open_stream(*request.take().expect("a waiting request is sent once")),
                        Err(error) => sender.refused(error),
                    };
                }
                State::Failed(error) => {
                    return Poll::Ready(Err(Box::new(error.take().expect("a failed send is polled once"))));
                }
                State::Sent { response, body } => {
                    if let Some((stream, data)) = body {
                        if let Err(error) = push_body(stream, data, cx) {
                            return Poll::Ready(Err(Box::new(error)));
                        }
                        if data.is_empty() {
                            *body = None;
                        }
                    }
                    let response = match ready!(Pin::new(response).poll(cx)) {
                        Ok(response) => response,
                        Err(error) => return Poll::Ready(Err(Box::new(error))),
                    };
                    let declared = declared_length(response.headers());
                    return Poll::Ready(Ok(response.map(|recv| Body::H2(H2Body { recv, remaining: declared }))));
                }
            }
        }
    }
}

/// Sends as much of `data` as the peer's windows allow; the rest waits for `cx` to be woken.
/// A stream the peer closed takes no more: its response says why.
fn push_body(stream: &mut h2::SendStream<Bytes>, data: &mut Bytes, cx: &mut Context<'_>) -> Result<(), h2::Error> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        match stream.poll_capacity(cx) {
            Poll::Ready(Some(Ok(0))) | Poll::Pending => return Ok(()),
            Poll::Ready(Some(Ok(granted))) => {
                let chunk = data.split_to(granted.min(data.len()));
                stream.send_data(chunk, data.is_empty())?;
            }
            Poll::Ready(Some(Err(error))) => return Err(error),
            Poll::Ready(None) => {
                data.clear();
                return Ok(());
            }
        }
    }
    Ok(())
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// A response body, over either protocol.
pub(crate) enum Body {
    H1(Incoming),
    H2(H2Body),
}

/// An HTTP/2 response body: the stream's window opens again as each chunk is taken.
pub(crate) struct H2Body {
    recv: h2::RecvStream,
    /// What `Content-Length` declared and is not read yet.
    remaining: Option<u64>,
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::H1(body) => Pin::new(body).poll_frame(cx).map_err(|error| Box::new(error) as BoxError),
            Body::H2(body) => body.poll_frame(cx),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            Body::H1(body) => body.is_end_stream(),
            Body::H2(body) => body.recv.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::H1(body) => body.size_hint(),
            Body::H2(body) => body.remaining.map(SizeHint::with_exact).unwrap_or_default(),
        }
    }
}

impl H2Body {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match ready!(self.recv.poll_data(cx)) {
            Some(Ok(data)) => {
                // Taken by the reader now: the peer may send as much again.
                let _ = self.recv.flow_control().release_capacity(data.len());
                if let Some(remaining) = &mut self.remaining {
                    *remaining = remaining.saturating_sub(data.len() as u64);
                }
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            Some(Err(error)) => return Poll::Ready(Some(Err(Box::new(error)))),
            None => {}
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(Box::new(error)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn get(path: &str) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = format!("http://test{path}").parse().expect("a uri");
        request
    }

    /// Counts the wakes of the task that polls with it.
    #[derive(Default)]
    struct CountWakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_connection_defers_its_wakes_on_a_runtime_of_one_worker_only() {
        let one_thread = tokio::runtime::Builder::new_current_thread().build();
        let multi_thread = |n| tokio::runtime::Builder::new_multi_thread().worker_threads(n).build();
        for (runtime, defers) in
            [(one_thread, true), (multi_thread(1), true), (multi_thread(2), false), (multi_thread(4), false)]
        {
            let runtime = runtime.expect("a runtime");
            let workers = runtime.metrics().num_workers();
            let wakes = runtime.block_on(async {
                // Nobody answers: the connection has nothing to read, so only a deferral wakes.
                let (client_io, _server_io) = tokio::io::duplex(64 * 1024);
                let (_sender, mut connection) = handshake(Box::new(client_io), None).await.expect("client handshake");
                let wakes = Arc::new(CountWakes::default());
                let waker = Waker::from(wakes.clone());
                assert!(Pin::new(&mut connection).poll(&mut Context::from_waker(&waker)).is_pending());
                wakes.0.load(Ordering::SeqCst)
            });
            assert_eq!(wakes, usize::from(defers), "{workers} worker(s): the first poll's wakes");
        }
    }

    // Paused time: the server is in memory, so the polls below cost no real time.
    #[tokio::test(start_paused = true)]
    async fn a_goaway_marks_the_senders_closed_while_the_connection_lives_on() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut connection = h2::server::handshake(server_io).await.expect("server handshake");
            // Held unanswered: the connection cannot end while this stream is open.
            let (_request, _held) = connection.accept().await.expect("a stream").expect("a request");
            connection.graceful_shutdown();
            while connection.accept().await.is_some() {}
        });
        let (mut sender, connection) = handshake(Box::new(client_io), None).await.expect("client handshake");
        let driver = tokio::spawn(connection);
        let observer = sender.clone();
        let mut first = sender.clone();
        let _open = first.send(get("/held"));
        // Until the GOAWAY has arrived: then no stream opens on this connection.
        let mut refused = false;
        for _ in 0..500 {
            if let Poll::Ready(Err(error)) = sender.send.poll_ready(&mut Context::from_waker(Waker::noop())) {
                refused = error.is_go_away();
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "the peer's GOAWAY arrived");
        assert!(!sender.is_closed(), "not yet marked: nothing was sent since");
        let sent = sender.send(get("/next")).await;
        assert!(sent.is_err_and(|e| e.downcast_ref::<h2::Error>().is_some_and(h2::Error::is_go_away)));
        assert!(sender.is_closed() && observer.is_closed(), "every sender of the connection is marked closed");
        assert!(!driver.is_finished(), "while the held stream keeps the connection open");
    }

    // Paused time: the server is in memory; the timeouts only bound a broken run.
    #[tokio::test(start_paused = true)]
    async fn a_request_on_a_handle_whose_last_stream_waits_to_open_is_sent_when_that_one_opens() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let builder = h2::server::Builder::new().max_concurrent_streams(1).handshake::<_, Bytes>(server_io);
            let mut connection = builder.await.expect("server handshake");
            let mut paths = Vec::new();
            let mut released = Some(released);
            while let Some(accepted) = connection.accept().await {
                let (request, mut respond) = accepted.expect("a request");
                paths.push(request.uri().path().to_string());
                let hold = released.take();
                tokio::spawn(async move {
                    if let Some(hold) = hold {
                        let _ = hold.await;
                    }
                    let response = http::Response::new(());
                    let _ = respond.send_response(response, true);
                });
            }
            paths
        });
        let (sender, connection) = handshake(Box::new(client_io), None).await.expect("client handshake");
        tokio::spawn(connection);
        for _ in 0..100 {
            if sender.stream_limit() == Some(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(sender.stream_limit(), Some(1), "the server's SETTINGS arrived");
        // The server's one stream is taken; the handle's next stream waits to open.
        let mut first = sender.clone();
        let held = first.send(get("/1"));
        let mut handle = sender.clone();
        let (queued, _) = handle.send.send_request(get("/2").map(|_| ()), true).expect("queued");
        let mut third = handle.send(get("/3"));
        let pending = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut third).poll(cx).is_pending())).await;
        assert!(pending, "waits while the handle's last stream has not opened");
        release.send(()).expect("the server holds the first stream");
        let bound = Duration::from_secs(5);
        let status = |r: Result<http::Response<Body>, BoxError>| r.expect("answered").status();
        assert_eq!(status(tokio::time::timeout(bound, held).await.expect("first answered")), 200);
        assert_eq!(tokio::time::timeout(bound, queued).await.expect("second answered").expect("ok").status(), 200);
        assert_eq!(status(tokio::time::timeout(bound, third).await.expect("third answered")), 200);
        drop((first, handle, sender));
        let paths = tokio::time::timeout(bound, server).await.expect("server done").expect("server ran");
        assert_eq!(paths, ["/1", "/2", "/3"], "each request reached the server once, in order");
    }
}
