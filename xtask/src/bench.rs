//! `cargo xtask bench`: the criterion benchmarks.

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut cargo_args = vec!["bench", "-p", "benches", "--"];
    if quick {
        cargo_args.extend(["--warm-up-time", "1", "--measurement-time", "2"]);
    }
    crate::cargo(&cargo_args, &[])
}
