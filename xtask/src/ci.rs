//! `cargo xtask ci`: formatting, lints, every test, then a bounded simulation sweep with a
//! determinism check (within a process for two seeds per scenario, and across two processes).

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(unknown) = args.first() {
        return Err(format!("ci takes no arguments, got `{unknown}`"));
    }
    crate::cargo(&["fmt", "--all", "--", "--check"], &[])?;
    crate::cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])?;
    crate::cargo(&["test", "--workspace"], &[])?;
    crate::sim::run(&["--ci".to_string()])?;
    crate::sim::determinism_across_processes("swizzle-clog", "7")
}
