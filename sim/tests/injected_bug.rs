//! The checker catches a deliberately broken invariant: breakers that admit one probe too many.

use std::process::Command;

#[test]
fn an_extra_half_open_probe_fails_the_sweep_with_a_replay_command() {
    let output = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["--scenario", "black-hole", "--seeds", "3", "--jobs", "2", "--inject-bug", "extra-probe"])
        .output()
        .expect("the sim binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "the sweep must fail:\n{stdout}");
    assert!(stdout.contains("exceed half_open_max_probes"), "the probe bound is named:\n{stdout}");
    assert!(stdout.contains("replay: cargo xtask sim --scenario black-hole --seed "), "a replay command:\n{stdout}");
}

#[test]
fn the_same_sweep_without_the_bug_passes() {
    let output = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["--scenario", "black-hole", "--seeds", "3", "--jobs", "2"])
        .output()
        .expect("the sim binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
}
