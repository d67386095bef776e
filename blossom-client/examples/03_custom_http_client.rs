//! Guide section 3, "Custom HTTP client with pooling": limits, timeouts, HTTP/2, redirects, and
//! an injected connector (here one that counts the connections it opens).
//!
//! The same 20 concurrent requests open 5 connections over HTTP/1.1 with a limit of 5 per host,
//! and 1 over HTTP/2, where they share it as streams. The connector's count and the pool's agree.
//!
//! Run: `cargo run -p blossom-client --example 03_custom_http_client`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use blossom_client::{BlossomClient, Connect, ConnectFuture, SessionConfig, Target, TcpConnector};
use futures_util::future::join_all;

/// Opens connections with the default TCP + TLS connector, counting them.
#[derive(Clone, Default)]
struct CountingConnector {
    inner: TcpConnector,
    opened: Arc<AtomicU64>,
}

impl Connect for CountingConnector {
    fn connect(&self, target: &Target) -> ConnectFuture {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.inner.connect(target)
    }
}

/// The guide's `create_client`: limits, timeouts and HTTP/2 in one place.
fn limits(session: &mut SessionConfig) {
    session.sync_pool_connections = 5; // idle connections kept ("max_keepalive_connections")
    session.async_limit_per_host = 5; // connections per host ("max_connections")
    session.keepalive_expiry = Duration::from_secs(30); // idle connections closed after 30 s
    session.async_timeout_connect = Duration::from_secs(3);
    session.async_timeout_sock_read = Duration::from_secs(30);
    session.pool_timeout = Duration::from_secs(5); // longest wait for a free connection
}

async fn burst(client: &BlossomClient, n: usize) -> usize {
    let calls = (0..n).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("Hello {i}")).await }
    });
    join_all(calls).await.iter().filter(|r| r.is_ok()).count()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = common::Target::start(common::latency(50)).await;
    let n = common::requests(20);

    let h1 = CountingConnector::default();
    let client = target
        .builder()
        .session_with(|s| {
            limits(s);
            s.http2 = false; // HTTP/1.1 only: one request per connection at a time
        })
        .max_redirects(5) // "follow_redirects": within the same region only
        .connector(h1.clone())
        .build()?;
    let ok = burst(&client, n).await;
    let h1_connects = h1.opened.load(Ordering::Relaxed);
    println!(
        "HTTP/1.1: {ok}/{n} ok, connector opened {h1_connects}, pool counted {}",
        client.stats().connections_created
    );

    let h2 = CountingConnector::default();
    let client = target
        .builder()
        .session_with(limits)
        .http2_prior_knowledge() // h2c for plain-http regions; https regions negotiate h2 by ALPN
        .connector(h2.clone())
        .build()?;
    let ok2 = burst(&client, n).await;
    let h2_connects = h2.opened.load(Ordering::Relaxed);
    println!(
        "HTTP/2:   {ok2}/{n} ok, connector opened {h2_connects}, pool counted {}",
        client.stats().connections_created
    );
    println!("server saw {} connection(s) in all", target.server_connections());
    common::result(
        ok + ok2 == 2 * n,
        &format!("requests={} h1_connects={h1_connects} h2_connects={h2_connects}", ok + ok2),
    );
    Ok(())
}
