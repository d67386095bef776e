//! `cargo xtask sim`: the deterministic simulation, built with `--cfg tokio_unstable` in its own
//! target directory so ordinary builds are not invalidated.

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let target = crate::workspace_root().join("target").join("sim");
    let target = target.to_string_lossy().into_owned();
    let mut cargo_args = vec!["run", "--release", "-p", "sim", "--bin", "sim", "--"];
    cargo_args.extend(args.iter().map(String::as_str));
    crate::cargo(&cargo_args, &[("RUSTFLAGS", "--cfg tokio_unstable"), ("CARGO_TARGET_DIR", target.as_str())])
}
