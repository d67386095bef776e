//! `cargo xtask bench [--quick] [--no-criterion]`: the criterion benchmarks, then the loopback
//! comparison with other clients (markdown table on stdout, `target/bench/loopback.json`), then
//! the memory figures.
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
        // One file per area (core_path, breaker, limiter, router, pool, client_path), all in one go.
        let mut cargo_args = vec!["bench", "-p", "benches", "--benches", "--"];
        if quick {
            cargo_args.extend(["--warm-up-time", "0.5", "--measurement-time", "1"]);
        }
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

/// Runs a binary of the `benches` crate as `cargo bench` built it (the `bench` profile).
fn binary(name: &str, args: &[&str]) -> Result<(), String> {
    let path = target_dir().join("release").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    eprintln!("$ {} {}", path.display(), args.join(" "));
    let status = Command::new(&path)
        .args(args)
        .current_dir(crate::workspace_root())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if status.success() { Ok(()) } else { Err(format!("`{name}` failed ({status})")) }
}
