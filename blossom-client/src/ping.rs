//! HTTP/2 keep-alive: a PING each interval, and the connection ended when one goes unanswered.
//!
//! A peer can vanish without closing anything (a host that lost power, a NAT or load balancer
//! that dropped the flow). Nothing then arrives on the connection, and nothing says it is dead:
//! its streams wait for their read timeout, and new requests keep joining them, since HTTP/2
//! shares one connection among many. A PING the peer must answer finds this out within the
//! ping timeout, as hyper's and gRPC's keep-alive do. The connection then ends: its streams
//! fail at once (a caller retries them on another connection) and the pool replaces it.
//!
//! One PING is in flight at a time. A connection pings whether or not streams are open: a PING
//! also keeps idle middleboxes from forgetting the flow. Off unless `http2_ping_interval` is set.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// When to ping, and how long to wait for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeepAlive {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

/// The connection's PINGs, polled by its task alongside the connection itself.
pub(crate) struct Pinger {
    pings: h2::PingPong,
    keep_alive: KeepAlive,
    /// The next PING, or the end of the wait for its answer.
    timer: Pin<Box<Sleep>>,
    awaiting_pong: bool,
}

/// What polling the PINGs found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PingOutcome {
    /// A PING went unanswered for the timeout: the peer is gone.
    Unanswered,
    /// The connection is closing on its own: no more PINGs.
    Stopped,
}

impl Pinger {
    /// The first PING goes out one interval from now.
    pub(crate) fn new(pings: h2::PingPong, keep_alive: KeepAlive) -> Pinger {
        let timer = Box::pin(tokio::time::sleep(keep_alive.interval));
        Pinger { pings, keep_alive, timer, awaiting_pong: false }
    }

    /// Sends each PING when due and watches for its answer; pending while all is well.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<PingOutcome> {
        loop {
            if self.awaiting_pong {
                match self.pings.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.awaiting_pong = false;
                        let next = Instant::now() + self.keep_alive.interval;
                        self.timer.as_mut().reset(next);
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(PingOutcome::Stopped),
                    Poll::Pending => {}
                }
            }
            ready!(self.timer.as_mut().poll(cx));
            if self.awaiting_pong {
                return Poll::Ready(PingOutcome::Unanswered);
            }
            if self.pings.send_ping(h2::Ping::opaque()).is_err() {
                return Poll::Ready(PingOutcome::Stopped);
            }
            self.awaiting_pong = true;
            let give_up = Instant::now() + self.keep_alive.timeout;
            self.timer.as_mut().reset(give_up);
        }
    }
}

/// Why a connection ended, and its streams failed: its peer left a PING unanswered.
#[derive(Debug)]
pub(crate) struct PingTimedOut;

impl fmt::Display for PingTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the peer left an HTTP/2 PING unanswered past `http2_ping_timeout`: the connection is gone")
    }
}

impl std::error::Error for PingTimedOut {}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const KEEP_ALIVE: KeepAlive = KeepAlive { interval: Duration::from_secs(10), timeout: Duration::from_secs(5) };

    /// A client connection's PINGs, over an in-memory pipe to an h2 server that `serve`s it; with
    /// the connection's handle, which keeps it open, and its task.
    async fn pinger_to<F, Fut>(serve: F) -> (Pinger, h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>)
    where
        F: FnOnce(h2::server::Connection<tokio::io::DuplexStream, Bytes>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let connection = h2::server::handshake(server_io).await.expect("server handshake");
            serve(connection).await;
        });
        let (send, mut connection) = h2::client::handshake(client_io).await.expect("client handshake");
        let pinger = Pinger::new(connection.ping_pong().expect("first call"), KEEP_ALIVE);
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        (pinger, send, driver)
    }

    // Paused time: the clock moves only when every task waits, so the instants below are exact.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_answering_is_found_one_interval_and_one_timeout_later() {
        // The server's connection is never polled after the handshake: nothing answers.
        let (mut pinger, _send, _driver) = pinger_to(|connection| async move {
            let _held = connection;
            std::future::pending::<()>().await;
        })
        .await;
        let start = Instant::now();
        let outcome = std::future::poll_fn(|cx| pinger.poll(cx)).await;
        assert_eq!(outcome, PingOutcome::Unanswered);
        assert_eq!(start.elapsed(), KEEP_ALIVE.interval + KEEP_ALIVE.timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_answers_keeps_being_pinged_and_is_never_given_up() {
        let (mut pinger, _send, _driver) = pinger_to(|mut connection| async move {
            // Polling the connection answers each PING.
            while connection.accept().await.is_some() {}
        })
        .await;
        let watched = KEEP_ALIVE.interval * 10;
        let outcome = tokio::time::timeout(watched, std::future::poll_fn(|cx| pinger.poll(cx))).await;
        assert!(outcome.is_err(), "still pending after ten intervals: {outcome:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_connection_stops_the_pings() {
        let (mut pinger, _send, driver) = pinger_to(|connection| async move { drop(connection) }).await;
        driver.await.expect("the client connection ends with its peer");
        let outcome = std::future::poll_fn(|cx| pinger.poll(cx)).await;
        assert_eq!(outcome, PingOutcome::Stopped);
    }
}
