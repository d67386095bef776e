//! `blossom`: try the Pollinations API, or the embedded mock, from the command line.
//!
//! ```text
//! blossom mock --regions 2 --fail 1:503         # prints region-a http://127.0.0.1:PORT, ...
//! blossom --base-url http://127.0.0.1:PORT text "hello"
//! blossom image "a red fox" -o fox.png --width 512 --height 512
//! blossom models --image
//! echo "hi" | blossom --stats chat
//! ```
//!
//! Every failure is one line on stderr that says what to do, and an exit code per class (see
//! `blossom --help` and [`failure::Exit`]); the API key comes from `POLLINATIONS_API_KEY` only.

/// `eprintln!` that cannot panic: a stderr that fails (full, a pipe closed by its reader) loses
/// the line, not the exit code.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod cli;
mod commands;
mod failure;
mod mock;
mod progress;
mod setup;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::{Cli, Command};
use crate::failure::{Exit, Failure};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    setup::init_logging(cli.global.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&failure::io_failure("cannot start the async runtime", e)),
    };
    let result = runtime.block_on(run(cli));
    // Nothing is left to finish: don't wait for background tasks (health checks, stdin reads).
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(&failure),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Mock(args) = &cli.command {
        return mock::run(args).await;
    }
    let client = setup::client(setup::config(&cli.global)?)?;
    let result = match &cli.command {
        Command::Text(args) => commands::text(&client, args).await,
        Command::Chat(args) => commands::chat(&client, args).await,
        Command::Image(args) => commands::image(&client, args).await,
        Command::Models(args) => commands::models(&client, args).await,
        Command::Mock(_) => unreachable!("handled above"),
    };
    if cli.global.stats {
        note!("{}", client.stats());
    }
    result
}

fn fail(failure: &Failure) -> ExitCode {
    note!("{}", failure.line());
    failure.exit.into()
}

/// Help and version go to stdout as clap renders them; a usage error becomes one line (with
/// clap's tip, if any) and exit code 2.
fn usage_error(error: &clap::Error) -> ExitCode {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = error.print();
        return if error.exit_code() == 0 { ExitCode::SUCCESS } else { Exit::Usage.into() };
    }
    let rendered = error.render().to_string();
    let mut what = Vec::new();
    let mut hints = Vec::new();
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(tip) = line.strip_prefix("tip:") {
            hints.push(tip.trim().to_string());
        } else if let Some(usage) = line.strip_prefix("Usage:") {
            hints.push(format!("usage: {}", usage.trim()));
        } else if !line.starts_with("For more information") {
            what.push(line.trim_start_matches("error: "));
        }
    }
    hints.push("see `blossom --help`".to_string());
    let what = if what.is_empty() { "invalid arguments".to_string() } else { what.join(" ") };
    let hint = hints.join("; ");
    fail(&Failure::usage(what, hint))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for needle in ["Exit codes:", "2  usage", "3  configuration", "4  network", "5  API", "6  invalid response"] {
            assert!(help.contains(needle), "{needle} missing from:\n{help}");
        }
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli =
            Cli::try_parse_from(["blossom", "text", "hi", "--base-url", "http://127.0.0.1:1", "--stats"]).unwrap();
        assert!(cli.global.stats);
        assert_eq!(cli.global.base_url.as_deref(), Some("http://127.0.0.1:1"));
        let both = Cli::try_parse_from(["blossom", "--base-url", "http://x", "--region", "a=http://y", "models"]);
        assert!(both.is_err(), "--base-url and --region conflict");
    }
}
