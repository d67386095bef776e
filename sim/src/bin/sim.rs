//! The simulation runner behind `cargo xtask sim`.
//!
//! `sim [--scenario NAME|all] [--seed S | --seeds N [--seed-start S]] [--check-determinism]
//!      [--trace] [--report DIR] [--jobs J] [--ci] [--inject-bug extra-probe]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sim::report::{summarise, table, write_index, write_svg};
use sim::{Options, RunReport, Scenario};

#[derive(Debug)]
struct Args {
    scenario: String,
    seed: Option<u64>,
    seeds: u64,
    seed_start: u64,
    check_determinism: bool,
    trace: bool,
    report: Option<PathBuf>,
    jobs: usize,
    inject_extra_probe: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        scenario: "all".into(),
        seed: None,
        seeds: 20,
        seed_start: 1,
        check_determinism: false,
        trace: false,
        report: None,
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get()).min(4),
        inject_extra_probe: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--scenario" => args.scenario = value("--scenario")?,
            "--seed" => args.seed = Some(value("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?),
            "--seeds" => args.seeds = value("--seeds")?.parse().map_err(|e| format!("--seeds: {e}"))?,
            "--seed-start" => {
                args.seed_start = value("--seed-start")?.parse().map_err(|e| format!("--seed-start: {e}"))?
            }
            "--check-determinism" => args.check_determinism = true,
            "--trace" => args.trace = true,
            "--report" => args.report = Some(PathBuf::from(value("--report")?)),
            "--jobs" => args.jobs = value("--jobs")?.parse().map_err(|e| format!("--jobs: {e}"))?,
            "--ci" => {
                args.seeds = 50;
                args.check_determinism = true;
            }
            "--inject-bug" => match value("--inject-bug")?.as_str() {
                "extra-probe" => args.inject_extra_probe = true,
                other => return Err(format!("unknown bug `{other}`; known: extra-probe")),
            },
            "-h" | "--help" => {
                println!("{}", include_str!("sim.rs").lines().nth(2).unwrap_or_default().trim_start_matches("//! "));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    args.jobs = args.jobs.max(1);
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sim: {e}");
            return ExitCode::from(2);
        }
    };
    let scenarios: Vec<Scenario> = if args.scenario == "all" {
        sim::all()
    } else {
        match sim::by_name(&args.scenario) {
            Some(s) => vec![s],
            None => {
                let names: Vec<&str> = sim::all().iter().map(|s| s.name).collect();
                eprintln!("sim: unknown scenario `{}`; known: {}", args.scenario, names.join(", "));
                return ExitCode::from(2);
            }
        }
    };
    let seeds: Vec<u64> = match args.seed {
        Some(seed) => vec![seed],
        None => (args.seed_start..args.seed_start + args.seeds).collect(),
    };
    let options =
        Options { keep_trace: args.trace || args.check_determinism, inject_extra_probe: args.inject_extra_probe };
    let wall = Instant::now();
    let jobs: Vec<(usize, u64)> = (0..scenarios.len()).flat_map(|s| seeds.iter().map(move |seed| (s, *seed))).collect();
    let results: Mutex<Vec<(usize, RunReport, Option<String>)>> = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    std::thread::scope(|scope| {
        for _ in 0..args.jobs {
            scope.spawn(|| {
                loop {
                    let job = {
                        let mut next = next.lock().unwrap();
                        let job = jobs.get(*next).copied();
                        *next += 1;
                        job
                    };
                    let Some((s, seed)) = job else { return };
                    let report = sim::run(&scenarios[s], seed, &options);
                    let divergence = if args.check_determinism && seed < args.seed_start + 2 {
                        let again = sim::run(&scenarios[s], seed, &options);
                        first_divergence(&report, &again)
                    } else {
                        None
                    };
                    results.lock().unwrap().push((s, report, divergence));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(s, r, _)| (*s, r.seed));
    let mut failed = false;
    let mut simulated = Duration::ZERO;
    let mut run_wall = Duration::ZERO;
    for (s, report, divergence) in &results {
        simulated += report.simulated;
        run_wall += report.wall;
        let name = scenarios[*s].name;
        if args.seed.is_some() {
            println!(
                "{name} seed {}: {} trace-hash: {:016x}",
                report.seed,
                if report.passed() { "PASS" } else { "FAIL" },
                report.trace_hash
            );
        }
        if args.trace {
            for line in &report.trace {
                println!("{line}");
            }
        }
        for v in &report.violations {
            failed = true;
            println!(
                "VIOLATION {name} seed {} at {:.3} s simulated: {}\n  replay: cargo xtask sim --scenario {name} --seed {} --trace",
                report.seed,
                v.at.as_secs_f64(),
                v.what,
                report.seed
            );
        }
        if let Some(divergence) = divergence {
            failed = true;
            println!(
                "NONDETERMINISM {name} seed {}: {divergence}\n  replay: cargo xtask sim --scenario {name} --seed {} --check-determinism",
                report.seed, report.seed
            );
        }
    }
    let summaries: Vec<_> = scenarios
        .iter()
        .enumerate()
        .map(|(i, scenario)| {
            let runs: Vec<RunReport> = results.iter().filter(|(s, _, _)| *s == i).map(|(_, r, _)| r.clone()).collect();
            summarise(scenario, &runs)
        })
        .collect();
    let table_md = table(&summaries);
    println!("\n{table_md}");
    if args.seed.is_none() {
        for s in &summaries {
            if !s.missing.is_empty() {
                failed = true;
                println!("COVERAGE {}: never reached {} over {} seed(s)", s.name, s.missing.join(", "), s.seeds);
            }
        }
    }
    if let Some(dir) = &args.report {
        if let Err(e) = write_report(dir, &scenarios, &results, &table_md) {
            eprintln!("sim: cannot write the report to {}: {e}", dir.display());
            failed = true;
        }
    }
    let runs = results.len();
    println!(
        "{runs} run(s), {:.0} simulated seconds in {:.1} s wall ({:.1} simulated s per wall s per run, {} job(s))",
        simulated.as_secs_f64(),
        wall.elapsed().as_secs_f64(),
        simulated.as_secs_f64() / run_wall.as_secs_f64().max(1e-9),
        args.jobs
    );
    if failed {
        println!("FAILED");
        ExitCode::FAILURE
    } else {
        println!("{} passed, 0 failed", runs);
        ExitCode::SUCCESS
    }
}

fn first_divergence(a: &RunReport, b: &RunReport) -> Option<String> {
    if a.trace_hash == b.trace_hash {
        return None;
    }
    let at = a.trace.iter().zip(&b.trace).position(|(x, y)| x != y).unwrap_or(a.trace.len().min(b.trace.len()));
    Some(format!(
        "hashes {:016x} != {:016x}; first divergent event #{at}:\n    first:  {}\n    second: {}",
        a.trace_hash,
        b.trace_hash,
        a.trace.get(at).map_or("<end>", String::as_str),
        b.trace.get(at).map_or("<end>", String::as_str)
    ))
}

fn write_report(
    dir: &PathBuf,
    scenarios: &[Scenario],
    results: &[(usize, RunReport, Option<String>)],
    table_md: &str,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut pictures = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        if let Some((_, run, _)) = results.iter().find(|(s, _, _)| *s == i) {
            pictures.push((scenario.name.to_string(), write_svg(dir, run)?));
        }
    }
    write_index(dir, table_md, &pictures)?;
    println!("report: {}", dir.join("index.html").display());
    Ok(())
}
