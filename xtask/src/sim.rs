//! `cargo xtask sim`: the deterministic simulation, built with `--cfg tokio_unstable` (turmoil
//! seeds tokio with it) in its own target directory so ordinary builds are not invalidated.

use std::process::Command;

const SIM_ENV: [(&str, &str); 1] = [("RUSTFLAGS", "--cfg tokio_unstable")];

fn target_dir() -> String {
    crate::workspace_root().join("target").join("sim").to_string_lossy().into_owned()
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let target = target_dir();
    let mut cargo_args = vec!["run", "--release", "-p", "sim", "--bin", "sim", "--"];
    cargo_args.extend(args.iter().map(String::as_str));
    crate::cargo(&cargo_args, &[SIM_ENV[0], ("CARGO_TARGET_DIR", target.as_str())])
}

/// Runs one (scenario, seed) in two separate processes and compares their trace hashes.
pub(crate) fn determinism_across_processes(scenario: &str, seed: &str) -> Result<(), String> {
    let binary = crate::workspace_root().join("target").join("sim").join("release").join("sim");
    let hash = || -> Result<String, String> {
        let output = Command::new(&binary)
            .args(["--scenario", scenario, "--seed", seed])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        stdout
            .lines()
            .find_map(|l| l.split_once("trace-hash: ").map(|(_, h)| h.trim().to_string()))
            .ok_or_else(|| format!("no trace-hash line in:\n{stdout}"))
    };
    let (first, second) = (hash()?, hash()?);
    println!("determinism: {scenario} seed {seed} in two processes: {first} / {second}");
    if first == second { Ok(()) } else { Err(format!("{scenario} seed {seed}: trace hashes differ across processes")) }
}
