//! The summary table and the SVG timelines.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use pool_core::BreakerState;

use crate::run::RunReport;
use crate::scenario::Scenario;

/// One scenario's results over a sweep.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The scenario's name.
    pub name: String,
    /// Seeds run and passed.
    pub seeds: usize,
    /// Seeds that passed.
    pub passed: usize,
    /// Successes over requests.
    pub availability: f64,
    /// Latency percentiles of successes.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Median time from first fault to first failover.
    pub failover: Option<Duration>,
    /// Breaker transitions over the sweep.
    pub transitions: u64,
    /// Coverage points required and reached.
    pub coverage: String,
    /// Required points never reached.
    pub missing: Vec<&'static str>,
}

/// Summarises the runs of one scenario.
pub fn summarise(scenario: &Scenario, runs: &[RunReport]) -> Summary {
    let issued: u64 = runs.iter().map(|r| r.issued).sum();
    let succeeded: u64 = runs.iter().map(|r| r.succeeded).sum();
    let mut latencies: Vec<Duration> = runs.iter().flat_map(|r| r.latencies.iter().copied()).collect();
    latencies.sort_unstable();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let mut failovers: Vec<Duration> = runs.iter().filter_map(|r| r.failover_time).collect();
    failovers.sort_unstable();
    let reached: std::collections::BTreeSet<_> = runs.iter().flat_map(|r| r.coverage.iter().copied()).collect();
    let missing: Vec<&'static str> =
        scenario.coverage.iter().filter(|c| !reached.contains(c)).map(|c| c.name()).collect();
    Summary {
        name: scenario.name.to_string(),
        seeds: runs.len(),
        passed: runs.iter().filter(|r| r.passed()).count(),
        availability: if issued == 0 { 1.0 } else { succeeded as f64 / issued as f64 },
        p50: pct(0.5),
        p99: pct(0.99),
        failover: failovers.get(failovers.len() / 2).copied(),
        transitions: runs.iter().map(|r| r.breaker_transitions).sum(),
        coverage: format!("{}/{}", scenario.coverage.len() - missing.len(), scenario.coverage.len()),
        missing,
    }
}

/// The summary as a markdown table.
pub fn table(summaries: &[Summary]) -> String {
    let mut out = String::from(
        "| scenario | seeds passed | availability | p50 ms | p99 ms | failover ms | breaker transitions | coverage |\n|---|---|---|---|---|---|---|---|\n",
    );
    for s in summaries {
        let failover = s.failover.map_or("-".to_string(), |d| format!("{:.0}", d.as_secs_f64() * 1000.0));
        let missing = if s.missing.is_empty() { String::new() } else { format!(" (missing {})", s.missing.join(", ")) };
        let _ = writeln!(
            out,
            "| {} | {}/{} | {:.2} % | {:.1} | {:.1} | {} | {} | {}{} |",
            s.name,
            s.passed,
            s.seeds,
            s.availability * 100.0,
            s.p50.as_secs_f64() * 1000.0,
            s.p99.as_secs_f64() * 1000.0,
            failover,
            s.transitions,
            s.coverage,
            missing
        );
    }
    out
}

/// Writes `<scenario>.svg` for a run and returns the file name.
pub fn write_svg(dir: &Path, run: &RunReport) -> std::io::Result<String> {
    let name = format!("{}.svg", run.scenario);
    std::fs::write(dir.join(&name), svg(run))?;
    Ok(name)
}

/// Writes `index.html` linking the pictures.
pub fn write_index(dir: &Path, table_md: &str, pictures: &[(String, String)]) -> std::io::Result<()> {
    let mut html = String::from(
        "<!doctype html><meta charset=utf-8><title>blossom simulation</title><h1>blossom simulation</h1><pre>",
    );
    html.push_str(&table_md.replace('<', "&lt;"));
    html.push_str("</pre>");
    for (scenario, file) in pictures {
        let _ = write!(html, "<h2>{scenario}</h2><img src=\"{file}\" alt=\"{scenario} timeline\">");
    }
    std::fs::write(dir.join("index.html"), html)
}

fn svg(run: &RunReport) -> String {
    let width = 960.0;
    let lane = 90.0;
    let regions = run.regions.len();
    let height = 40.0 + lane * (regions as f64 + 1.0);
    let end = run.samples.last().map_or(1.0, |s| s.at.as_secs_f64()).max(1.0);
    let x = |t: Duration| 60.0 + (width - 80.0) * t.as_secs_f64() / end;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/><text x=\"10\" y=\"16\">{} seed {} — simulated {:.1} s</text>",
        run.scenario,
        run.seed,
        run.simulated.as_secs_f64()
    );
    let max_count =
        run.samples.iter().flat_map(|s| s.in_flight.iter().chain(s.pool.iter())).copied().max().unwrap_or(1).max(1)
            as f64;
    for r in 0..regions {
        let top = 30.0 + lane * r as f64;
        let _ = write!(out, "<text x=\"4\" y=\"{}\">{}</text>", top + 12.0, run.regions[r]);
        for pair in run.samples.windows(2) {
            let color = match pair[0].breaker.get(r) {
                Some(BreakerState::Open | BreakerState::ForcedOpen) => "#f4a6a6",
                Some(BreakerState::HalfOpen) => "#f7d08a",
                _ => "#d8f0d8",
            };
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"8\" fill=\"{color}\"/>",
                x(pair[0].at),
                (x(pair[1].at) - x(pair[0].at)).max(0.5)
            );
        }
        for (series, color) in [(0, "#1f77b4"), (1, "#555")] {
            let points: Vec<String> = run
                .samples
                .iter()
                .map(|s| {
                    let v = if series == 0 { s.in_flight.get(r) } else { s.pool.get(r) };
                    format!(
                        "{:.1},{:.1}",
                        x(s.at),
                        top + lane - 10.0 - (lane - 24.0) * f64::from(*v.unwrap_or(&0)) / max_count
                    )
                })
                .collect();
            let _ = write!(
                out,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.2\" points=\"{}\"/>",
                points.join(" ")
            );
        }
    }
    let top = 30.0 + lane * regions as f64;
    let max_p99 = run.samples.iter().map(|s| s.p99).max().unwrap_or_default().as_secs_f64().max(0.001);
    let max_err = run.samples.iter().map(|s| s.errors).max().unwrap_or(0).max(1) as f64;
    let _ = write!(out, "<text x=\"4\" y=\"{}\">p99 / errors</text>", top + 12.0);
    for s in &run.samples {
        let h = (lane - 24.0) * f64::from(s.errors) / max_err;
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"2\" height=\"{h:.1}\" fill=\"#d62728\"/>",
            x(s.at),
            top + lane - 10.0 - h
        );
    }
    let points: Vec<String> = run
        .samples
        .iter()
        .map(|s| format!("{:.1},{:.1}", x(s.at), top + lane - 10.0 - (lane - 24.0) * s.p99.as_secs_f64() / max_p99))
        .collect();
    let _ = write!(
        out,
        "<polyline fill=\"none\" stroke=\"#9467bd\" stroke-width=\"1.2\" points=\"{}\"/>",
        points.join(" ")
    );
    let _ = write!(
        out,
        "<text x=\"60\" y=\"{:.0}\">bands: breaker (green closed, orange half-open, red open); blue: in flight; grey: pool size; purple: p99 ({:.0} ms max); red bars: errors</text></svg>",
        height - 4.0,
        max_p99 * 1000.0
    );
    out
}
