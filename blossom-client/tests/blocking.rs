//! The blocking client: the `sync_*` settings are in force; `sync_pool_block = false` makes a
//! full pool an immediate error.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use blossom_client::blocking::BlossomClient;
use blossom_client::{ClientConfig, Error, ImageOptions, Message, ModelKind, TextOptions, TimeoutPhase};
use blossom_mock::{Behavior, MockServer};

/// A mock server on a runtime of its own (the blocking client must not run inside one).
fn start_mock() -> (tokio::runtime::Runtime, MockServer, SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (server, addr) = runtime.block_on(common::mock());
    (runtime, server, addr)
}

fn config(addr: SocketAddr, change: impl FnOnce(&mut ClientConfig)) -> ClientConfig {
    let mut config = ClientConfig { base_url: format!("http://{addr}"), ..ClientConfig::default() };
    common::fast(&mut config.session);
    change(&mut config);
    config
}

/// Waits (a few ms at a time, at most 5 s) until `condition` holds.
fn until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting until {what}");
}

#[test]
fn round_trips() {
    let (_runtime, server, addr) = start_mock();
    let client = BlossomClient::with_config(config(addr, |_| {})).unwrap();
    assert_eq!(client.generate("hi", &TextOptions::default()).unwrap(), "echo: hi");
    assert_eq!(client.chat(&[Message::user("hi")], &Default::default()).unwrap(), "Hello from the mock");
    assert_eq!(client.image("a fox", &ImageOptions::default()).unwrap().content_type, "image/png");
    assert_eq!(client.models(ModelKind::Image).unwrap().len(), 2);
    let spec = blossom_client::simple_text_request("sent", &TextOptions::default()).unwrap();
    assert_eq!(client.send(&spec).unwrap().body, "echo: sent");
    assert_eq!((server.stats().connections, client.stats().requests_succeeded), (1, 5));
}

#[test]
fn a_full_pool_fails_at_once_when_not_blocking() {
    let (_runtime, server, addr) = start_mock();
    server.set_behavior(Behavior::Healthy { base: Duration::from_millis(300), jitter: Duration::ZERO });
    let client = BlossomClient::with_config(config(addr, |c| {
        c.session.sync_pool_connections = 1;
        c.session.sync_pool_maxsize = 1;
        c.session.sync_pool_block = false;
    }))
    .unwrap();
    let busy = std::thread::spawn({
        let client = client.clone();
        move || client.generate("first", &TextOptions::default())
    });
    until("the first request reached the server", || server.stats().in_flight == 1);
    let err = client.generate("second", &TextOptions::default()).unwrap_err();
    assert!(matches!(err, Error::PoolFull { .. }), "{err:?}");
    assert_eq!(server.stats().requests, 1, "the refused request was never sent");
    busy.join().unwrap().unwrap();
    assert_eq!(client.stats().requests_failed.pool, 1);
    client.generate("third", &TextOptions::default()).unwrap();
}

#[test]
fn a_full_pool_waits_when_blocking() {
    let (_runtime, server, addr) = start_mock();
    server.set_behavior(Behavior::Healthy { base: Duration::from_millis(100), jitter: Duration::ZERO });
    let client = BlossomClient::with_config(config(addr, |c| {
        c.session.sync_pool_connections = 1;
        c.session.sync_pool_maxsize = 1;
    }))
    .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let client = client.clone();
            std::thread::spawn(move || client.generate(&format!("call {i}"), &TextOptions::default()))
        })
        .collect();
    for thread in threads {
        thread.join().unwrap().unwrap();
    }
    assert_eq!((server.stats().connections, server.stats().max_in_flight), (1, 1), "sync_pool_maxsize holds");
}

#[test]
fn the_sync_read_timeout_is_in_force() {
    let (_runtime, server, addr) = start_mock();
    server.set_behavior(Behavior::HangAfterHeaders);
    let client = BlossomClient::with_config(config(addr, |c| {
        c.session.sync_timeout_read = Duration::from_millis(300);
        c.session.async_timeout_sock_read = Duration::from_secs(60);
        c.session.retry.max_retries = 0;
    }))
    .unwrap();
    // The client's own runtime is a multi-thread one: its deadlines are kept by the alarm thread.
    let err = within(move || client.generate("hi", &TextOptions::default())).unwrap_err();
    assert!(matches!(err, Error::Timeout { phase: TimeoutPhase::Read, limit } if limit == Duration::from_millis(300)));
}

/// Runs `call` on a thread of its own; fails the test, not hangs it, if the call outlives 10 s.
fn within<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(call());
    });
    receiver.recv_timeout(Duration::from_secs(10)).expect("the call finished within its configured deadline")
}

/// Misused from async code, the blocking client answers, refuses, and goes without a panic.
/// (It blocks its caller's worker: the mock serves from the other.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn called_built_refused_and_dropped_inside_an_async_runtime_it_does_not_panic() {
    let (server, addr) = common::mock().await;
    let client = BlossomClient::with_config(config(addr, |_| {})).unwrap();
    // (Panicked before: "Cannot start a runtime from within a runtime".)
    assert_eq!(client.generate("hi", &TextOptions::default()).unwrap(), "echo: hi");
    assert_eq!(server.stats().requests, 1);
    // (Panicked before: "Cannot drop a runtime in a context where blocking is not allowed".)
    drop(client);
    // A configuration the core refuses after the runtime is built: an error, not that panic.
    let regions = (0..65).map(|i| blossom_client::Region::new(format!("r{i}"), format!("http://{addr}"))).collect();
    let refused = BlossomClient::with_config(config(addr, |c| c.regions = regions));
    assert!(matches!(refused, Err(Error::Config { .. })), "{refused:?}");
}

/// Called from a task on a multi-thread runtime, the blocking client gives up its worker for the
/// call: the runtime's other tasks (here the mock server, on the only other worker there is)
/// carry on, and the call is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn inside_a_runtime_task_the_call_does_not_starve_the_workers_other_tasks() {
    let (server, addr) = common::mock().await;
    let client = BlossomClient::with_config(config(addr, |c| {
        c.session.sync_timeout_read = Duration::from_secs(2);
        c.session.retry.max_retries = 0;
    }))
    .unwrap();
    let answer = tokio::spawn(async move { client.generate("hi", &TextOptions::default()) }).await.unwrap();
    assert_eq!(answer.unwrap(), "echo: hi");
    assert_eq!(server.stats().requests, 1);
}
