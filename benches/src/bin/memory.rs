//! What blossom holds in memory: bytes per idle connection and per request waiting for a
//! connection, counted by a global allocator.
//!
//! Why: a pool's cost is not only time. Idle connections are kept on purpose and waiting requests
//! pile up under overload; both should cost little. The mock server runs in a child process (this
//! binary re-run with `--serve`), so the count holds the client's allocations only: the driver's
//! tables, hyper's connection buffers and tasks, and each waiting request's task and future.
//!
//! - idle connections: `client.warmup(1)`, then `client.warmup(IDLE)` opens `IDLE` more; the bytes
//!   live afterwards, over `IDLE`. hyper-util's and reqwest's pools are measured the same way for
//!   reference (`IDLE` concurrent requests against a server that answers after 50 ms).
//! - waiting requests: a pool of 1 whose connection hangs (`Behavior::Hang`), then `WAITERS`
//!   requests spawned that queue for it; the bytes live afterwards, over `WAITERS`.
//!
//! ```text
//! cargo run --profile bench -p benches --bin memory
//! ```
#![allow(unsafe_code)] // reason: counting allocator

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use blossom_client::BlossomClient;
use blossom_mock::{Behavior, MockServer};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::rt::TokioExecutor;

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments unchanged; the counter is
// an atomic and allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (so from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, which `System` shares.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// Idle connections opened per client.
const IDLE: usize = 100;
/// Requests queued behind a pool of one.
const WAITERS: usize = 1000;
/// The child server stops by itself after this, whatever happens to the parent.
const SERVE_LIMIT: Duration = Duration::from_secs(120);

/// Serves the mock on loopback with `behavior`, prints the address, and stops when stdin closes
/// or after [`SERVE_LIMIT`].
fn serve(behavior: &str) {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let server = MockServer::new(1);
        server.set_behavior(match behavior {
            "hang" => Behavior::Hang,
            "slow" => Behavior::Healthy { base: Duration::from_millis(50), jitter: Duration::ZERO },
            _ => Behavior::Healthy { base: Duration::ZERO, jitter: Duration::ZERO },
        });
        let (addr, _accept) = server.bind("127.0.0.1:0".parse().expect("loopback")).await.expect("bind");
        println!("{addr}");
        std::io::stdout().flush().expect("stdout");
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
        });
        let _ = tokio::time::timeout(SERVE_LIMIT, stdin_closed).await;
    });
}

/// A mock server in a child process; killed when dropped.
struct Child {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Child {
    fn spawn(behavior: &str) -> Child {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new(exe)
            .args(["--serve", behavior])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the mock server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("child stdout")).read_line(&mut line).expect("child address");
        let addr = line.trim().parse().expect("child prints its address");
        Child { child, addr }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lets connection tasks and buffers settle before a reading.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn per(bytes: i64, n: usize) -> i64 {
    bytes / n as i64
}

async fn blossom_idle() -> i64 {
    let server = Child::spawn("healthy");
    let client = BlossomClient::builder()
        .base_url(format!("http://{}", server.addr))
        .session_with(|s| {
            s.async_limit_per_host = IDLE as u32 + 1;
            s.async_limit_total = IDLE as u32 + 1;
            s.sync_pool_maxsize = IDLE as u32 + 1;
            s.sync_pool_connections = IDLE as u32 + 1;
        })
        .build()
        .expect("blossom client");
    client.text().generate("x").await.expect("first request");
    let _ = client.warmup(1).await;
    settle().await;
    let before = live();
    let report = client.warmup(IDLE).await;
    assert!(report.failed.is_empty(), "warmup failed: {report}");
    settle().await;
    let opened = report.opened.len().max(1);
    let held = live() - before;
    eprintln!("memory: blossom opened {opened} idle connections, {held} bytes");
    per(held, opened)
}

async fn hyper_util_idle() -> i64 {
    let server = Child::spawn("slow");
    let client: LegacyClient<_, Empty<Bytes>> = LegacyClient::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{}/text/x", server.addr).parse().expect("uri");
    let get = |client: LegacyClient<_, Empty<Bytes>>, uri: http::Uri| async move {
        let response = client.get(uri).await.expect("hyper-util response");
        response.into_body().collect().await.expect("hyper-util body");
    };
    get(client.clone(), uri.clone()).await;
    settle().await;
    let before = live();
    let all: Vec<_> = (0..IDLE).map(|_| tokio::spawn(get(client.clone(), uri.clone()))).collect();
    for task in all {
        task.await.expect("task");
    }
    settle().await;
    // The first connection was reused by one of the IDLE requests.
    per(live() - before, IDLE - 1)
}

async fn reqwest_idle() -> i64 {
    let server = Child::spawn("slow");
    let client = reqwest::Client::builder().no_proxy().http1_only().build().expect("reqwest client");
    let url = format!("http://{}/text/x", server.addr);
    let get = |client: reqwest::Client, url: String| async move {
        client.get(url).send().await.expect("reqwest response").bytes().await.expect("reqwest body");
    };
    get(client.clone(), url.clone()).await;
    settle().await;
    let before = live();
    let all: Vec<_> = (0..IDLE).map(|_| tokio::spawn(get(client.clone(), url.clone()))).collect();
    for task in all {
        task.await.expect("task");
    }
    settle().await;
    per(live() - before, IDLE - 1)
}

async fn blossom_waiting() -> (i64, usize) {
    let server = Child::spawn("hang");
    let client = BlossomClient::builder()
        .base_url(format!("http://{}", server.addr))
        .session_with(|s| {
            s.async_limit_per_host = 1;
            s.async_limit_total = 1;
            s.max_waiters = WAITERS as u32 + 16;
            s.pool_timeout = Duration::from_secs(60);
            s.timeout = Duration::from_secs(60);
        })
        .build()
        .expect("blossom client");
    let first = {
        let client = client.clone();
        tokio::spawn(async move { client.text().generate("x").await })
    };
    settle().await;
    let one = {
        let client = client.clone();
        async move { client.text().generate("x").await }
    };
    let future_bytes = std::mem::size_of_val(&one);
    drop(one);
    let before = live();
    let waiting: Vec<_> = (0..WAITERS)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.text().generate("x").await })
        })
        .collect();
    settle().await;
    let held = live() - before;
    let waiting_now = client.stats().pool_waiting;
    eprintln!("memory: blossom with {waiting_now} requests waiting: {held} bytes");
    for task in waiting {
        task.abort();
    }
    first.abort();
    (per(held, WAITERS), future_bytes)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(args.get(i + 1).map_or("healthy", String::as_str));
        return;
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let blossom = blossom_idle().await;
        let hyper_util = hyper_util_idle().await;
        let reqwest = reqwest_idle().await;
        let (waiting, future_bytes) = blossom_waiting().await;
        println!("\nMemory held by the client (counting allocator; mock server in a child process)\n");
        println!("| what | bytes |");
        println!("|---|---:|");
        println!("| blossom, per idle HTTP/1.1 connection (`warmup` to {IDLE} idle) | {blossom} |");
        println!("| hyper-util legacy Client, per idle HTTP/1.1 connection (reference) | {hyper_util} |");
        println!("| reqwest, per idle HTTP/1.1 connection (reference) | {reqwest} |");
        println!("| blossom, per request waiting for a connection ({WAITERS} queued on a pool of 1) | {waiting} |");
        println!("| of which the request future itself (`size_of_val`, `text().generate`) | {future_bytes} |");
        println!();
    });
}
