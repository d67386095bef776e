//! Runs every example offline (each starts its own mock region on loopback) and checks the
//! numbers it reports on its `RESULT:` line, so no example can break silently.
//!
//! The examples are built once by cargo (into this test's own target directory), then each runs
//! as a process with the variables that would point it at a real server removed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Variables that would send an example to a real server or change its settings.
const ENV_REMOVED: &[&str] =
    &["BLOSSOM_BASE_URL", "BLOSSOM_REGIONS", "POLLINATIONS_API_KEY", "BLOSSOM_PRESET", "BLOSSOM_LOG_LEVEL", "RUST_LOG"];

/// Longest an example may run before the test fails (each takes about a second).
const LIMIT: Duration = Duration::from_secs(60);

/// `target/<profile>/examples`, after building every example of this package once.
fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps").to_path_buf();
        let target_dir = profile_dir.parent().expect("target/");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "blossom-client", "--examples", "--profile", &profile, "--target-dir"])
            .arg(target_dir)
            .status()
            .expect("run cargo build --examples");
        assert!(status.success(), "building the examples failed");
        profile_dir.join("examples")
    })
}

/// Runs an example offline; returns its stdout and the `key=value` pairs of its `RESULT: ok` line.
fn run(name: &str) -> (String, HashMap<String, String>) {
    let path = examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let mut command = Command::new(&path);
    for var in ENV_REMOVED {
        command.env_remove(var);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
    let started = Instant::now();
    while child.try_wait().expect("poll the example").is_none() {
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("{name} ran longer than {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("read the example's output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name} failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(
        stdout.contains("using the embedded mock") || stdout.contains("embedded mock regions"),
        "{name} ran offline:\n{stdout}"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT: ok"))
        .unwrap_or_else(|| panic!("{name} printed no `RESULT: ok` line:\n{stdout}\n{stderr}"));
    let facts = line.split_whitespace().filter_map(|w| w.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect();
    (stdout, facts)
}

/// A numeric fact.
fn num(facts: &HashMap<String, String>, key: &str) -> f64 {
    let value = facts.get(key).unwrap_or_else(|| panic!("no `{key}` in {facts:?}"));
    value.parse().unwrap_or_else(|_| panic!("`{key}={value}` is not a number"))
}

#[test]
fn sync_pool_reuses_a_connection_per_thread() {
    let (_, f) = run("01_sync_pool");
    assert_eq!((num(&f, "requests"), num(&f, "failed")), (30.0, 0.0), "{f:?}");
    assert!(num(&f, "connections") <= 4.0, "one connection per thread at most: {f:?}");
    assert_eq!(num(&f, "reused"), 30.0 - num(&f, "connections"), "{f:?}");
}

#[test]
fn async_pool_stops_at_the_per_host_limit() {
    let (_, f) = run("02_async_pool");
    assert_eq!((num(&f, "succeeded"), num(&f, "connections"), num(&f, "peak")), (50.0, 30.0, 30.0), "{f:?}");
    assert_eq!(num(&f, "waited"), 20.0, "{f:?}");
}

#[test]
fn custom_client_counts_its_connects() {
    let (_, f) = run("03_custom_http_client");
    assert_eq!((num(&f, "requests"), num(&f, "h1_connects"), num(&f, "h2_connects")), (40.0, 5.0, 1.0), "{f:?}");
}

#[test]
fn pool_statistics_add_up() {
    let (out, f) = run("04_pool_statistics");
    assert!(out.contains("CONNECTION POOL STATISTICS"), "{out}");
    assert_eq!((num(&f, "requests"), num(&f, "succeeded"), num(&f, "failed")), (31.0, 30.0, 1.0), "{f:?}");
    assert_eq!(num(&f, "bad_request"), 1.0, "{f:?}");
    assert_eq!(num(&f, "created") + num(&f, "reused"), 31.0, "every request used a new or a reused connection: {f:?}");
    assert!(num(&f, "created") <= 10.0, "{f:?}");
}

#[test]
fn dynamic_sizing_grows_then_shrinks() {
    let (out, f) = run("05_dynamic_sizing");
    assert!(out.contains("Increasing pool size: 10 -> 15") && out.contains("Decreasing pool size"), "{out}");
    assert!(num(&f, "grew") >= 1.0 && num(&f, "shrank") >= 1.0, "{f:?}");
    assert!(num(&f, "peak") > 10.0 && num(&f, "end") < num(&f, "peak"), "{f:?}");
    assert_eq!(num(&f, "failed"), 0.0, "{f:?}");
}

#[test]
fn health_checks_eject_and_readmit() {
    let (_, f) = run("06_health_checks");
    assert_eq!(num(&f, "succeeded"), num(&f, "requests"), "failover hid every failure: {f:?}");
    let events = &f["events"];
    for expected in ["b:ejected", "b:marked_unhealthy", "b:marked_healthy"] {
        assert!(events.contains(expected), "{expected} missing from {events}");
    }
    assert!(!events.contains("a:"), "region a stayed healthy: {events}");
}

#[test]
fn http2_multiplexes_on_one_connection() {
    let (_, f) = run("07_http2_multiplexing");
    assert_eq!((num(&f, "requests"), num(&f, "h1_connections")), (200.0, 50.0), "{f:?}");
    assert_eq!((num(&f, "h2_connections"), num(&f, "h2_max_in_flight")), (1.0, 100.0), "{f:?}");
}

#[test]
fn warmup_burst_opens_no_new_connection() {
    let (_, f) = run("08_warmup");
    assert_eq!((num(&f, "warmed"), num(&f, "failed"), num(&f, "requests")), (5.0, 0.0, 50.0), "{f:?}");
    assert_eq!(num(&f, "new_connections"), 0.0, "{f:?}");
}

#[test]
fn failover_survives_a_dead_region() {
    let (out, f) = run("09_multi_region_failover");
    assert_eq!((num(&f, "requests"), num(&f, "succeeded")), (30.0, 30.0), "{f:?}");
    assert!(num(&f, "failovers") >= 1.0, "{f:?}");
    assert_eq!(f["primary_breaker"], "OPEN", "{f:?}");
    assert!(num(&f, "us-west") >= 20.0 && num(&f, "eu-west") == 0.0, "{f:?}");
    assert!(out.contains("us-east: breaker CLOSED -> OPEN"), "{out}");
}

#[test]
fn breaker_opens_then_closes() {
    let (_, f) = run("10_circuit_breaker");
    let path = &f["transitions"];
    assert!(path.starts_with("CLOSED>OPEN>") && path.ends_with(">HALF_OPEN>CLOSED"), "{path}");
    assert!(num(&f, "rejected_fast") >= 1.0, "calls were refused without a request: {f:?}");
    assert!(num(&f, "reached_server") < 20.0, "{f:?}");
    assert!(num(&f, "succeeded") >= 10.0, "{f:?}");
}

#[test]
fn optimizer_recommends_from_the_workload() {
    let (out, f) = run("11_optimizer");
    assert!(out.contains("POOL OPTIMIZATION ANALYSIS"), "{out}");
    assert_eq!((num(&f, "samples"), num(&f, "max_concurrency")), (58.0, 20.0), "{f:?}");
    let size = num(&f, "recommended_pool_size");
    assert!((5.0..=50.0).contains(&size), "{f:?}");
}

#[test]
fn reusing_a_client_uses_one_connection() {
    let (_, f) = run("12_best_practices");
    assert_eq!(num(&f, "reused_client_connections"), 1.0, "{f:?}");
    assert_eq!(num(&f, "per_request_connections"), num(&f, "requests"), "{f:?}");
    assert_eq!((num(&f, "default_waits"), num(&f, "sized_waits")), (20.0, 0.0), "{f:?}");
}

#[test]
fn presets_set_the_per_host_limit() {
    let (out, f) = run("13_presets");
    assert!(out.contains("high_throughput") && out.contains("50000"), "{out}");
    assert_eq!(num(&f, "batch"), 10.0, "batch allows 10 per host: {f:?}");
    assert_eq!((num(&f, "default"), num(&f, "high_throughput")), (30.0, 30.0), "{f:?}");
}

#[test]
fn debug_logging_logs_each_request() {
    let (out, f) = run("14_debug_logging");
    let logged = out.lines().filter(|l| l.contains("request region=default status=200")).count();
    assert_eq!(logged, 20, "{out}");
    assert!(out.contains("reused=true"), "{out}");
    // The client times a call from inside it, the example from around it: a call the client
    // warned of is slow to the example too, and one the example saw well past the threshold
    // (by more than a busy machine's scheduling delay) was warned of.
    let warned: Vec<u32> = out
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("slow request"))
        .map(|l| {
            let index = l.split("path=/text/Request%20").nth(1).and_then(|rest| rest.split(' ').next());
            index.and_then(|i| i.parse().ok()).unwrap_or_else(|| panic!("no request index in {l}"))
        })
        .collect();
    let seen: Vec<(u32, f64)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Slow request "))
        .map(|rest| {
            let (index, secs) = rest.split_once(": ").expect("`Slow request i: s`");
            (index.parse().expect("index"), secs.trim_end_matches('s').parse().expect("seconds"))
        })
        .collect();
    assert_eq!(seen.len() as f64, num(&f, "slow"), "{out}");
    assert!(!warned.is_empty(), "answers of up to 65 ms cross the 50 ms threshold: {out}");
    for i in &warned {
        assert!(seen.iter().any(|(s, _)| s == i), "request {i} warned of but not slow to the example: {out}");
    }
    for (i, secs) in &seen {
        assert!(*secs < 0.060 || warned.contains(i), "request {i} took {secs} s and was not warned of: {out}");
    }
    assert!(!out.contains("sk_"), "no key in the logs");
}

#[test]
fn monitoring_under_load_stays_within_the_limit() {
    let (out, f) = run("15_monitoring_under_load");
    assert!(out.contains("busy 20"), "the watcher saw the pool full: {out}");
    assert_eq!((num(&f, "requests"), num(&f, "succeeded")), (100.0, 100.0), "{f:?}");
    assert!(num(&f, "connections") <= 20.0 && num(&f, "peak") <= 20.0, "{f:?}");
    assert_eq!(num(&f, "connections") + num(&f, "reused"), 100.0, "{f:?}");
}

#[test]
fn every_example_is_tested() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("the examples directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".rs").map(str::to_string))
        .collect();
    names.sort();
    let source = include_str!("examples.rs");
    for name in &names {
        assert!(source.contains(&format!("run(\"{name}\")")), "example {name} has no test");
    }
    assert_eq!(names.len(), 15, "one example per guide section: {names:?}");
}
