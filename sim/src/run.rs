//! One (scenario, seed) run: chaos, heal, quiet; safety checked every millisecond, liveness
//! after the heal, coverage and a trace whose hash replays exactly.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallInstant, UNIX_EPOCH};

use blossom_client::{BlossomClient, ClientConfig, Region};
use blossom_mock::{Behavior, MockServer};
use futures_util::StreamExt;
use pool_core::{BreakerState, Event, HealthEvent, JournalEntry, ResizeReason, Retry};

use crate::net::{TurmoilConnector, serve_region};
use crate::scenario::{Action, Cover, Scenario, base_config};

/// How to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Keep every trace line (for `--trace` and determinism checks).
    pub keep_trace: bool,
    /// Fault injection for the checker's self-test: breakers admit one probe too many.
    pub inject_extra_probe: bool,
}

/// A broken promise, with the simulated time it was seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// Simulated time.
    pub at: Duration,
    /// Which invariant, and how.
    pub what: String,
}

/// Samples for the timeline picture, every 250 ms of simulated time.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Simulated time.
    pub at: Duration,
    /// Per region: requests in flight.
    pub in_flight: Vec<u32>,
    /// Per region: connections open.
    pub pool: Vec<u32>,
    /// Per region: breaker state.
    pub breaker: Vec<BreakerState>,
    /// Errors completed in the interval.
    pub errors: u32,
    /// p99 latency of requests completed in the interval.
    pub p99: Duration,
}

/// What a run saw.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// The scenario.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Broken invariants (empty when the run passed).
    pub violations: Vec<Violation>,
    /// Coverage points reached.
    pub coverage: BTreeSet<Cover>,
    /// FNV-1a over every trace line.
    pub trace_hash: u64,
    /// The trace lines, when kept.
    pub trace: Vec<String>,
    /// Requests issued and succeeded, in all and in the quiet phase.
    pub issued: u64,
    /// Succeeded.
    pub succeeded: u64,
    /// Quiet-phase requests.
    pub quiet_issued: u64,
    /// Quiet-phase successes.
    pub quiet_succeeded: u64,
    /// Latencies of successful requests.
    pub latencies: Vec<Duration>,
    /// Time from the first fault to the first failover after it.
    pub failover_time: Option<Duration>,
    /// Breaker transitions seen.
    pub breaker_transitions: u64,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// Wall time the run took.
    pub wall: Duration,
    /// The timeline.
    pub samples: Vec<Sample>,
    /// Region names.
    pub regions: Vec<String>,
}

impl RunReport {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

#[derive(Debug, Default)]
struct Ledger {
    started: HashMap<u64, Duration>,
    ended: HashMap<u64, bool>,
}

#[derive(Default)]
struct Record {
    report: RunReport,
    hash: Fnv,
    ledger: Ledger,
    first_fault: Option<Duration>,
    paused: Vec<Option<Duration>>,
    window_errors: u32,
    window_latencies: Vec<Duration>,
    retry_times: Vec<Duration>,
    first_attempt_times: Vec<Duration>,
}

impl Record {
    fn line(&mut self, line: String) {
        self.hash.write(line.as_bytes());
        if self.report.trace.len() < 2_000_000 {
            self.report.trace.push(line);
        }
    }

    fn violate(&mut self, at: Duration, what: String) {
        if self.report.violations.len() < 20 {
            self.line(format!("{} VIOLATION {what}", ms(at)));
            self.report.violations.push(Violation { at, what });
        }
    }
}

/// FNV-1a, 64 bits: a stable hash of the trace.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().chain(b"\n") {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn ms(d: Duration) -> String {
    format!("t={:.3}", d.as_secs_f64() * 1000.0)
}

fn region_name(i: usize) -> String {
    format!("region-{}", (b'a' + i as u8) as char)
}

/// Runs one scenario with one seed.
pub fn run(scenario: &Scenario, seed: u64, options: &Options) -> RunReport {
    let wall = WallInstant::now();
    let n = scenario.regions;
    let heal_at = scenario.chaos;
    let quiet_at = heal_at + scenario.heal;
    let end_at = quiet_at + scenario.quiet;
    let record = Arc::new(Mutex::new(Record {
        report: RunReport {
            scenario: scenario.name.to_string(),
            seed,
            regions: (0..n).map(region_name).collect(),
            ..RunReport::default()
        },
        paused: vec![None; n],
        ..Record::default()
    }));
    let servers: Vec<MockServer> =
        (0..n).map(|i| MockServer::new(seed.wrapping_mul(31).wrapping_add(i as u64))).collect();
    let mut sim = turmoil::Builder::new()
        .simulation_duration(end_at + Duration::from_secs(30))
        .tick_duration(Duration::from_millis(1))
        .epoch(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        .rng_seed(seed)
        .min_message_latency(Duration::from_micros(500))
        .max_message_latency(Duration::from_millis(3))
        .build();
    for (i, server) in servers.iter().enumerate() {
        let server = server.clone();
        sim.host(region_name(i), move || serve_region(server.clone()));
    }
    let mut session = base_config(seed);
    (scenario.configure)(&mut session);
    let config = ClientConfig {
        session,
        regions: (0..n)
            .map(|i| Region::new(region_name(i), format!("http://{}:80", region_name(i))).priority(i as u32))
            .collect(),
        http2_prior_knowledge: scenario.http2,
        ..ClientConfig::default()
    };
    sim.client("client", client_main(scenario.clone(), config, servers.clone(), record.clone(), *options));

    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let mut plan = (scenario.plan)(&mut rng, scenario);
    plan.sort_by_key(|(t, _)| *t);
    let mut plan = plan.into_iter().peekable();
    let mut crashed = vec![false; n];
    let mut healed = false;
    loop {
        let now = sim.elapsed();
        while let Some((_, action)) = plan.next_if(|(t, _)| *t <= now && *t < heal_at) {
            let mut r = record.lock().unwrap();
            r.line(format!("{} FAULT {action:?}", ms(now)));
            if r.first_fault.is_none() && !matches!(action, Action::Behave(_, Behavior::Capacity { .. })) {
                r.first_fault = Some(now);
            }
            drop(r);
            apply(&mut sim, &servers, &mut crashed, action);
        }
        if !healed && now >= heal_at {
            healed = true;
            record.lock().unwrap().line(format!("{} HEAL", ms(now)));
            for region in 0..n {
                for action in [Action::Release(region), Action::Repair(region), Action::Latency(region, Duration::ZERO)]
                {
                    apply(&mut sim, &servers, &mut crashed, action);
                }
                if scenario.capacity.is_none() {
                    servers[region].set_behavior(Behavior::default());
                }
                if crashed[region] {
                    apply(&mut sim, &servers, &mut crashed, Action::Restart(region));
                }
            }
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                let at = sim.elapsed();
                record.lock().unwrap().violate(at, format!("the client did not finish within the simulation: {e}"));
                break;
            }
        }
    }
    let simulated = sim.elapsed();
    drop(sim);
    let mut r = Arc::try_unwrap(record).map(|m| m.into_inner().unwrap()).unwrap_or_else(|arc| {
        let mut guard = arc.lock().unwrap();
        std::mem::take(&mut *guard)
    });
    // Ledger: every request ends exactly once.
    let unfinished: Vec<u64> = r.ledger.started.keys().filter(|id| !r.ledger.ended.contains_key(id)).copied().collect();
    // The lowest id, not the map's first: its order changes from process to process.
    if let Some(first) = unfinished.iter().min() {
        r.violate(simulated, format!("{} request(s) never ended, e.g. id {first}", unfinished.len()));
    }
    check_retry_budget(&mut r);
    r.report.trace_hash = r.hash.0;
    r.report.simulated = simulated;
    r.report.wall = wall.elapsed();
    if !options.keep_trace {
        r.report.trace = Vec::new();
    }
    r.report
}

fn apply(sim: &mut turmoil::Sim<'_>, servers: &[MockServer], crashed: &mut [bool], action: Action) {
    let client = "client";
    match action {
        Action::Crash(i) => {
            sim.crash(region_name(i));
            crashed[i] = true;
        }
        Action::Restart(i) => {
            sim.bounce(region_name(i));
            crashed[i] = false;
        }
        Action::Hold(i) => sim.hold(client, region_name(i)),
        Action::Release(i) => sim.release(client, region_name(i)),
        Action::PartitionFromRegion(i) => sim.partition_oneway(region_name(i), client),
        Action::Repair(i) => sim.repair(client, region_name(i)),
        Action::Behave(i, behavior) => servers[i].set_behavior(behavior),
        Action::Latency(i, latency) => {
            if latency.is_zero() {
                sim.set_link_latency(client, region_name(i), Duration::from_millis(1));
            } else {
                sim.set_link_latency(client, region_name(i), latency);
            }
        }
    }
}

/// Retries stay within the budget: in any 10 s, at most 10/s x 10 s + 20 % of first attempts.
fn check_retry_budget(r: &mut Record) {
    let ttl = Duration::from_secs(10);
    let slack = Duration::from_secs(1);
    let (retries, firsts) = (r.retry_times.clone(), r.first_attempt_times.clone());
    for (i, &t) in retries.iter().enumerate() {
        let from = t.saturating_sub(ttl);
        let in_window = retries[..=i].iter().filter(|&&x| x > from).count() as f64;
        let deposits = firsts.iter().filter(|&&x| x + ttl + slack > t && x <= t).count() as f64;
        if in_window > 100.0 + 0.2 * deposits + 1.0 {
            r.violate(t, format!("{in_window} retries in 10 s exceed the budget (deposits {deposits})"));
            return;
        }
    }
}

async fn client_main(
    scenario: Scenario,
    config: ClientConfig,
    servers: Vec<MockServer>,
    record: Arc<Mutex<Record>>,
    options: Options,
) -> turmoil::Result {
    let start = tokio::time::Instant::now();
    let elapsed = move || start.elapsed();
    let seed = config.session.seed;
    let client = BlossomClient::builder().config(config).connector(TurmoilConnector).build()?;
    let n = scenario.regions;
    client.with_core(|core, _| {
        core.set_journal(true);
        if options.inject_extra_probe {
            for e in 0..n {
                core.breaker_mut(e).inject_extra_probes(1);
            }
        }
    });
    // Events: coverage, breaker rules, the trace.
    let mut events = Box::pin(client.events());
    let events_record = record.clone();
    let stay_closed = scenario.breaker_stays_closed;
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let at = event.at;
            let mut r = events_record.lock().unwrap();
            r.line(format!("{} EVENT {:?}", ms(at), event.event));
            on_event(&mut r, at, &event.event, stay_closed);
        }
    });
    // The checker: every millisecond, the core's invariants and the new journal entries.
    let checker = client.clone();
    let checker_record = record.clone();
    let checker_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut next_sample = Duration::ZERO;
        loop {
            tick.tick().await;
            let at = elapsed();
            let mut r = checker_record.lock().unwrap();
            checker.with_core(|core, now| {
                if let Err(broken) = core.check_invariants() {
                    r.violate(at, format!("core invariant: {broken}"));
                }
                while let Some(entry) = core.poll_journal() {
                    on_journal(&mut r, at, &entry);
                }
                if at >= next_sample {
                    next_sample = at + Duration::from_millis(250);
                    let mut latencies = std::mem::take(&mut r.window_latencies);
                    latencies.sort_unstable();
                    let p99 = latencies
                        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
                        .copied()
                        .unwrap_or_default();
                    let sample = Sample {
                        at,
                        in_flight: (0..n).map(|e| core.router().in_flight(e)).collect(),
                        pool: (0..n).map(|e| core.pool().endpoint_stats(e).open).collect(),
                        breaker: (0..n).map(|e| core.breaker_state(e)).collect(),
                        errors: std::mem::take(&mut r.window_errors),
                        p99,
                    };
                    let _ = now;
                    r.report.samples.push(sample);
                }
            });
        }
    });

    let heal_at = scenario.chaos;
    let quiet_at = heal_at + scenario.heal;
    let end_at = quiet_at + scenario.quiet;
    let timeout = client.with_core(|core, _| core.config().timeout);
    // The arrivals' jitter varies with the run's seed too, as the faults do.
    let mut rng = fastrand::Rng::with_seed(seed ^ 0xa771_7a15);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id = 0u64;

    if let Some(burst) = scenario.workload.warmup_burst {
        let report = client.warmup(burst).await;
        let before: u64 = servers.iter().map(|s| s.stats().connections).sum();
        let mut burst_tasks = tokio::task::JoinSet::new();
        for i in 0..burst * n {
            let client = client.clone();
            burst_tasks.spawn(async move { client.text().generate(&format!("burst {i}")).await.is_ok() });
        }
        let ok = burst_tasks.join_all().await.into_iter().filter(|ok| *ok).count();
        let after: u64 = servers.iter().map(|s| s.stats().connections).sum();
        let mut r = record.lock().unwrap();
        r.line(format!(
            "{} WARMUP opened {} burst ok {ok} connections {before} -> {after}",
            ms(elapsed()),
            report.opened.len()
        ));
        if after == before && report.opened.len() == burst * n && ok == burst * n {
            r.report.coverage.insert(Cover::WarmupReused);
        } else if after != before {
            let at = elapsed();
            r.violate(at, format!("the burst after warmup opened {} new connection(s)", after - before));
        }
    }

    let mut heal_checked = false;
    while elapsed() < end_at {
        let now = elapsed();
        if !heal_checked && now >= quiet_at {
            heal_checked = true;
            // Liveness: every breaker closed by the end of the heal phase.
            let states: Vec<BreakerState> = client.with_core(|core, _| (0..n).map(|e| core.breaker_state(e)).collect());
            let mut r = record.lock().unwrap();
            for (e, state) in states.iter().enumerate() {
                if !matches!(state, BreakerState::Closed | BreakerState::Disabled) {
                    r.violate(now, format!("liveness: {}'s breaker is {state:?} after the heal phase", region_name(e)));
                }
            }
        }
        while tasks.len() >= scenario.workload.max_in_flight {
            tasks.join_next().await;
        }
        let id = next_id;
        next_id += 1;
        let quiet = now >= quiet_at;
        record.lock().unwrap().ledger.started.insert(id, now);
        let client = client.clone();
        let task_record = record.clone();
        tasks.spawn(async move {
            let started = elapsed();
            let result = client.text().generate(&format!("request {id}")).await;
            let ended = elapsed();
            let took = ended - started;
            let mut r = task_record.lock().unwrap();
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("error {}", e.to_string().split(':').next().unwrap_or_default()),
            };
            r.line(format!("{} END {id} {outcome} took {:.3}", ms(ended), took.as_secs_f64() * 1000.0));
            if r.ledger.ended.insert(id, result.is_ok()).is_some() {
                r.violate(ended, format!("request {id} ended twice"));
            }
            if took > timeout + Duration::from_millis(5) {
                r.violate(ended, format!("request {id} took {took:?}, past its {timeout:?} deadline"));
            }
            r.report.issued += 1;
            if quiet {
                r.report.quiet_issued += 1;
            }
            match result {
                Ok(_) => {
                    r.report.succeeded += 1;
                    r.report.latencies.push(took);
                    r.window_latencies.push(took);
                    if quiet {
                        r.report.quiet_succeeded += 1;
                    }
                }
                Err(_) => r.window_errors += 1,
            }
        });
        let gap = scenario.workload.interval.mul_f64(0.5 + rng.f64());
        tokio::time::sleep(gap).await;
    }
    while tasks.join_next().await.is_some() {}
    // Nothing leaked: within a few seconds (health probes may hold a connection briefly) the pool
    // must show no busy connection, no waiter and no attempt in flight.
    let mut leak = (0, 0, 0);
    let mut target = 0;
    for _ in 0..5000 {
        let (busy, waiting, in_flight, t) = client.with_core(|core, _| {
            let s = core.pool().stats();
            (s.busy, s.waiting, core.in_flight(), core.pool().target(0))
        });
        leak = (busy, waiting, in_flight);
        target = t;
        if leak == (0, 0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (busy, waiting, in_flight) = leak;
    let server_in_flight: u64 = servers.iter().map(|s| s.stats().in_flight).sum();
    let at = elapsed();
    let mut r = record.lock().unwrap();
    if busy != 0 || waiting != 0 || in_flight != 0 {
        r.violate(
            at,
            format!(
                "leak: {busy} busy connection(s), {waiting} waiter(s), {in_flight} attempt(s) in flight after the run"
            ),
        );
    }
    if server_in_flight != 0 && scenario.breaker_stays_closed.is_none() {
        r.line(format!("{} NOTE server still answering {server_in_flight}", ms(at)));
    }
    if r.report.quiet_issued > 0 {
        let rate = r.report.quiet_succeeded as f64 / r.report.quiet_issued as f64;
        if rate < 0.99 {
            r.violate(at, format!("liveness: {:.1} % success in the quiet phase, below 99 %", rate * 100.0));
        }
    }
    if let (Some(limit), Some(took)) = (scenario.max_failover, r.report.failover_time) {
        if took > limit {
            r.violate(
                at,
                format!(
                    "failover took {} ms after the first fault, more than {} ms",
                    took.as_millis(),
                    limit.as_millis()
                ),
            );
        }
    }
    if let Some(limit) = scenario.max_p50 {
        let mut latencies = r.report.latencies.clone();
        latencies.sort_unstable();
        if let Some(&p50) = latencies.get(latencies.len() / 2) {
            if p50 > limit {
                r.violate(at, format!("median latency {} ms, more than {} ms", p50.as_millis(), limit.as_millis()));
            }
        }
    }
    if let Some(k) = scenario.capacity {
        r.line(format!("{} SIZER target {target} for best concurrency {k}", ms(at)));
        if target < k / 2 || target > 2 * k {
            r.violate(at, format!("capacity discovery: the sizer settled at {target}, outside [{}, {}]", k / 2, 2 * k));
        }
    }
    drop(r);
    checker_task.abort();
    drop(client);
    Ok(())
}

fn on_event(r: &mut Record, at: Duration, event: &Event, stay_closed: Option<usize>) {
    match event {
        Event::Breaker { endpoint, event } => {
            r.report.breaker_transitions += 1;
            if event.to == BreakerState::Open {
                r.report.coverage.insert(Cover::BreakerOpened);
                if stay_closed == Some(*endpoint) {
                    r.violate(at, format!("{}'s breaker opened on 429s", region_name(*endpoint)));
                }
            }
            if event.from == BreakerState::HalfOpen && event.to == BreakerState::Closed {
                r.report.coverage.insert(Cover::ProbeSucceeded);
            }
        }
        Event::Failover { .. } => {
            r.report.coverage.insert(Cover::Failover);
            if r.report.failover_time.is_none() {
                if let Some(fault) = r.first_fault {
                    r.report.failover_time = Some(at.saturating_sub(fault));
                }
            }
        }
        Event::Resized { event, .. } => {
            r.report.coverage.insert(match event.reason {
                ResizeReason::Grow => Cover::SizerGrew,
                _ => Cover::SizerShrank,
            });
        }
        Event::Paused { endpoint, until, .. } => {
            r.paused[*endpoint] = Some(until.elapsed());
        }
        Event::Health(HealthEvent::Ejected { .. } | HealthEvent::MarkedUnhealthy { .. }) => {
            r.report.coverage.insert(Cover::Ejected);
        }
        Event::Health(HealthEvent::Readmitted { .. } | HealthEvent::MarkedHealthy { .. }) => {
            r.report.coverage.insert(Cover::Readmitted);
        }
        _ => {}
    }
}

fn on_journal(r: &mut Record, at: Duration, entry: &JournalEntry) {
    r.line(format!("{} JOURNAL {entry:?}", ms(at)));
    match entry {
        JournalEntry::Admitted {
            at: t,
            endpoint,
            attempt,
            breaker_admitting,
            paused_until,
            usable,
            other_ready,
            ..
        } => {
            let t = t.elapsed();
            if !breaker_admitting {
                r.violate(t, format!("sent to {} through a breaker that was not admitting", region_name(*endpoint)));
            }
            if paused_until.elapsed() > t {
                r.violate(t, format!("sent to {} before its Retry-After deadline", region_name(*endpoint)));
            }
            if !usable && *other_ready {
                r.violate(t, format!("sent to ejected {} while a healthy region was ready", region_name(*endpoint)));
            }
            if let Some(until) = r.paused[*endpoint] {
                if t >= until {
                    r.report.coverage.insert(Cover::RetryAfterHonoured);
                    r.paused[*endpoint] = None;
                }
            }
            if *attempt == 0 {
                r.first_attempt_times.push(t);
            }
        }
        JournalEntry::Retried { at: t, decision: Retry::At(_), .. } => {
            r.report.coverage.insert(Cover::Retried);
            r.retry_times.push(t.elapsed());
        }
        _ => {}
    }
    let _ = at;
}
