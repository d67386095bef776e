//! `cargo xtask bench [--quick] [--no-criterion] [--instructions]`: the criterion benchmarks,
//! then the loopback comparison with other clients (markdown table on stdout,
//! `target/bench/loopback.json`), then the memory figures. `--instructions` adds instructions
//! per request counted by callgrind, and L1d and L1i misses per request at HTTP/1.1 128 simulated
//! by cachegrind: figures that, unlike req/s, do not move with the load of a shared machine.
//!
//! One `cargo bench --no-run` builds the criterion benches and the two binaries (`compare`,
//! `memory`) with one set of features, so nothing is built twice; the binaries then run from the
//! target directory. `--quick` keeps the run (once built) under a minute, the default under five;
//! `--no-criterion` skips the criterion part.

use std::path::PathBuf;
use std::process::Command;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    let criterion = !args.iter().any(|a| a == "--no-criterion");
    crate::cargo(&["bench", "-p", "benches", "--no-run"], &[])?;
    let started = std::time::Instant::now();
    if criterion {
        // One file per area (core_path, breaker, limiter, router, pool, client_path, parse), all in one go.
        let mut cargo_args = vec!["bench", "-p", "benches", "--benches", "--"];
        // Short windows: the figures are steady within them, and the whole run stays under five minutes.
        let (warm_up, measure) = if quick { ("0.5", "1") } else { ("1", "3") };
        cargo_args.extend(["--warm-up-time", warm_up, "--measurement-time", measure]);
        crate::cargo(&cargo_args, &[])?;
    }
    let json = target_dir().join("bench").join("loopback.json");
    let json = json.to_str().ok_or("the target path is not UTF-8")?.to_string();
    let mut compare = vec!["--json", json.as_str()];
    if quick {
        compare.push("--quick");
    }
    binary("compare", &compare)?;
    binary("memory", &[])?;
    if args.iter().any(|a| a == "--instructions") {
        instructions()?;
    }
    eprintln!("xtask bench: ran in {:.0} s (after the build); table data in {json}", started.elapsed().as_secs_f64());
    Ok(())
}

/// The target directory (`CARGO_TARGET_DIR` or the workspace's `target/`).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => crate::workspace_root().join(dir),
        None => crate::workspace_root().join("target"),
    }
}

/// Where `cargo bench` put a binary of the `benches` crate (the `bench` profile's directory).
fn release_binary(name: &str) -> PathBuf {
    target_dir().join("release").join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Runs a binary of the `benches` crate as `cargo bench` built it.
fn binary(name: &str, args: &[&str]) -> Result<(), String> {
    let path = release_binary(name);
    eprintln!("$ {} {}", path.display(), args.join(" "));
    let status = Command::new(&path)
        .args(args)
        .current_dir(crate::workspace_root())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if status.success() { Ok(()) } else { Err(format!("`{name}` failed ({status})")) }
}

/// Marginal instructions per request under callgrind: each client at HTTP/1.1 16 and h2c 128
/// (`raw-h2` at h2c only), run with 2,000 and with 12,000 measured requests (the same warmup);
/// the difference over 10,000 leaves out start-up (runtime, TLS roots, connections).
fn instructions() -> Result<(), String> {
    const CLIENTS: [&str; 6] = ["raw", "raw-h2", "hyper-util", "blossom", "blossom-off", "blossom-on"];
    const POINTS: [&str; 2] = ["http1:16", "h2c:128"];
    let runs = |point: &str, client: &str| client != "raw-h2" || point.starts_with("h2c");
    let compare = release_binary("compare");
    let mut per = std::collections::HashMap::new();
    for point in POINTS {
        for client in CLIENTS.into_iter().filter(|c| runs(point, c)) {
            per.insert(
                (point, client),
                marginal(&compare, Tool::Callgrind, one_round(client, point, "2"), 2_000, 12_000)?[0],
            );
        }
    }
    println!("\nInstructions per request (callgrind; client and server together, as in the comparison)\n");
    println!("| proto:concurrency | client | instructions per request | vs raw |");
    println!("|---|---|---:|---:|");
    let mut rows = Vec::new();
    for point in POINTS {
        let raw = per[&(point, "raw")];
        for client in CLIENTS.into_iter().filter(|c| runs(point, c)) {
            let value = per[&(point, client)];
            println!("| {point} | {client} | {value:.0} | {:.3} |", value / raw);
            rows.push(format!(
                "{{\"point\":\"{point}\",\"client\":\"{client}\",\"instructions_per_request\":{value:.0},\"vs_raw\":{:.4}}}",
                value / raw
            ));
        }
    }
    for (client, misses) in cache_misses(&compare)? {
        rows.push(format!(
            "{{\"point\":\"http1:128\",\"workers\":1,\"client\":\"{client}\",\"l1d_misses_per_request\":{:.1},\"l1i_misses_per_request\":{:.1}}}",
            misses.data, misses.code
        ));
    }
    for (config, value) in core_instructions()? {
        rows.push(format!(
            "{{\"point\":\"core_path\",\"client\":\"pool-core {config}\",\"instructions_per_request\":{value:.0}}}"
        ));
    }
    let path = target_dir().join("bench").join("instructions.json");
    std::fs::create_dir_all(path.parent().expect("a parent")).map_err(|e| e.to_string())?;
    std::fs::write(&path, format!("[\n{}\n]\n", rows.join(",\n"))).map_err(|e| e.to_string())?;
    eprintln!("xtask bench: instructions written to {}", path.display());
    Ok(())
}

/// L1 misses per request, as cachegrind simulates them.
struct CacheMisses {
    /// L1d, reads and writes: the data a request touches.
    data: f64,
    /// L1i: the code a request runs.
    code: f64,
}

/// Marginal L1d and L1i misses per request at HTTP/1.1 128 on one runtime thread, simulated by
/// cachegrind with this class of host's caches (64 KiB 16-way L1i, 48 KiB 12-way L1d, 2 MiB 16-way
/// L2 as the last level): the bytes of data and of code a request touches, where instructions per
/// request do not show them. With 128 requests in rotation each one's state has left L1 by its
/// turn, so what it touches is what it misses. Client and server share the simulated core, as
/// valgrind runs one thread at a time. Cachegrind does not model prefetches: lines a prefetch
/// brings in early count as misses still. Threads interleave differently from run to run, so the
/// figures move by about 2 % between runs; L1i moves with the code's layout too, by up to a
/// quarter from one build to the next for unchanged code, so compare clients within one build.
fn cache_misses(compare: &std::path::Path) -> Result<Vec<(&'static str, CacheMisses)>, String> {
    let mut misses = Vec::new();
    for client in ["raw", "blossom"] {
        let counts = marginal(compare, Tool::Cachegrind, one_round(client, "http1:128", "1"), 2_000, 12_000)?;
        let &[data, code] = counts.as_slice() else { return Err(format!("cachegrind gave {counts:?}")) };
        misses.push((client, CacheMisses { data, code }));
    }
    println!("\nL1 misses per request (cachegrind, http1:128 on one runtime thread; client and server together)\n");
    println!("| client | L1d misses per request | vs raw | L1i misses per request | vs raw |");
    println!("|---|---:|---:|---:|---:|");
    let raw = &misses[0].1;
    for (client, m) in &misses {
        println!("| {client} | {:.1} | {:.3} | {:.1} | {:.3} |", m.data, m.data / raw.data, m.code, m.code / raw.code);
    }
    Ok(misses)
}

/// `compare`'s arguments for one round of `client` alone at `point` on `workers` runtime threads,
/// given the number of measured requests.
fn one_round<'a>(client: &'a str, point: &'a str, workers: &'a str) -> impl Fn(&str) -> [String; 10] + 'a {
    move |n| {
        ["--only", client, "--point", point, "--workers", workers, "--rounds", "1", "--requests", n].map(String::from)
    }
}

/// Marginal instructions per request on pool-core's path (the `core_path` bench's loop, run by
/// the `core_loop` binary) with every component on and off: the criterion figure's count, which
/// does not move with the machine as its nanoseconds do.
fn core_instructions() -> Result<Vec<(&'static str, f64)>, String> {
    let program = release_binary("core_loop");
    let mut counts = Vec::new();
    for (config, name) in [("on", "all on"), ("off", "all off")] {
        counts.push((
            name,
            marginal(&program, Tool::Callgrind, |n: &str| [config, n].map(String::from), 10_000, 110_000)?[0],
        ));
    }
    println!("\nInstructions per request on pool-core's path (callgrind; the `core_path` bench's loop)\n");
    println!("| components | instructions per request |");
    println!("|---|---:|");
    for (name, value) in &counts {
        println!("| {name} | {value:.0} |");
    }
    Ok(counts)
}

/// What [`marginal`] counts.
#[derive(Clone, Copy)]
enum Tool {
    /// Instructions.
    Callgrind,
    /// L1d misses (reads and writes), then L1i misses.
    Cachegrind,
}

impl Tool {
    fn args(self) -> &'static [&'static str] {
        match self {
            Tool::Callgrind => &["--tool=callgrind", "--callgrind-out-file=/dev/null"],
            Tool::Cachegrind => &[
                "--tool=cachegrind",
                "--cache-sim=yes",
                "--I1=65536,16,64",
                "--D1=49152,12,64",
                "--LL=2097152,16,64",
                "--cachegrind-out-file=/dev/null",
            ],
        }
    }

    /// The totals in the tool's report on stderr, in the order [`Tool`] gives; none unless all
    /// are there.
    fn totals(self, stderr: &str) -> Option<Vec<u64>> {
        let labels: &[&str] = match self {
            Tool::Callgrind => &["Collected : "],
            Tool::Cachegrind => &["D1  misses: ", "I1  misses: "],
        };
        let total = |label: &str| {
            let value = stderr.lines().find_map(|l| l.split(label).nth(1))?;
            value.split_whitespace().next()?.replace(',', "").parse().ok()
        };
        labels.iter().map(|label| total(label)).collect()
    }
}

/// What `program` spends per request beyond its start-up, each of `tool`'s totals: run under
/// valgrind with `few` and with `many` requests (`args` given the number), both at once, the
/// difference divided by `many - few`.
fn marginal<const N: usize>(
    program: &std::path::Path,
    tool: Tool,
    args: impl Fn(&str) -> [String; N],
    few: u64,
    many: u64,
) -> Result<Vec<f64>, String> {
    let name = program.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let [first, second] = [few, many].map(|n| {
        let args = args(&n.to_string());
        let command = format!("{name} {}", args.join(" "));
        eprintln!("$ valgrind {} {command}", tool.args()[0]);
        valgrind(tool, program, &args).map(|child| (child, command))
    });
    let count = |run: Result<(std::process::Child, String), String>| {
        run.and_then(|(child, command)| collected(tool, child, &command))
    };
    let (few_counts, many_counts) = (count(first)?, count(second)?);
    Ok(few_counts.iter().zip(&many_counts).map(|(&a, &b)| (b as f64 - a as f64) / (many - few) as f64).collect())
}

/// Starts `program` under valgrind's `tool`, its report kept for [`collected`].
fn valgrind(tool: Tool, program: &std::path::Path, args: &[String]) -> Result<std::process::Child, String> {
    Command::new("valgrind")
        .args(tool.args())
        .arg(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run valgrind (is it installed?): {e}"))
}

/// Waits for a [`valgrind`] run and reads the totals it reports on stderr.
fn collected(tool: Tool, child: std::process::Child, what: &str) -> Result<Vec<u64>, String> {
    let output = child.wait_with_output().map_err(|e| format!("valgrind: {e}"))?;
    tool.totals(&String::from_utf8_lossy(&output.stderr)).ok_or_else(|| format!("no total from valgrind for {what}"))
}

#[cfg(test)]
mod tests {
    use super::Tool;

    #[test]
    fn each_tool_reads_its_own_totals_from_valgrinds_report() {
        let callgrind = "==1== Events    : Ir\n==1== Collected : 715613161\n==1==\n";
        let cachegrind = "==2== I   refs:      978,826,061\n\
                          ==2== I1  misses:     43,338,938\n\
                          ==2== LLi misses:          9,021\n\
                          ==2== D1  misses:      6,474,089  (  4,033,086 rd   +   2,441,003 wr)\n\
                          ==2== LLd misses:        220,683  (     40,560 rd   +     180,123 wr)\n";
        assert_eq!(Tool::Callgrind.totals(callgrind), Some(vec![715_613_161]));
        assert_eq!(Tool::Cachegrind.totals(cachegrind), Some(vec![6_474_089, 43_338_938]), "L1d, then L1i");
        assert_eq!(Tool::Cachegrind.totals(callgrind), None, "a report without the lines is no total");
        let without_code = cachegrind.replace("I1  misses", "I1 elided");
        assert_eq!(Tool::Cachegrind.totals(&without_code), None, "every total or none");
    }
}
