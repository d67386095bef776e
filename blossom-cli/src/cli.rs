//! The command line: subcommands, their flags and the global flags, with the help text.
//!
//! The API key has no flag on purpose: a flag lands in shell history and `ps` output, so the
//! key is read from `POLLINATIONS_API_KEY` only.

use std::path::PathBuf;

use blossom_mock::Behavior;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::failure::EXIT_CODES_HELP;
use crate::mock::parse_fault;

/// Try the Pollinations API (or the embedded mock) through blossom's resilient pooled client.
#[derive(Debug, Parser)]
#[command(name = "blossom", version, after_help = after_help())]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Configuration order and environment, for `--help`.
const CONFIG_HELP: &str = "\
Configuration is read in this order, later wins: --config FILE, then the environment, then
--base-url / --region.

Environment:
  POLLINATIONS_API_KEY  the API key (there is no flag, so it stays out of shell history)
  BLOSSOM_BASE_URL      base URL of the single default region
  BLOSSOM_REGIONS       regions as name=url,name=url
  BLOSSOM_PRESET        session preset (e.g. batch)
  BLOSSOM_LOG_LEVEL     log level when --log-level is not given (else RUST_LOG, else error)

Try it offline: `blossom mock` prints `region-a http://127.0.0.1:PORT` lines; then run
`blossom --base-url http://127.0.0.1:PORT text \"hello\"` in another shell.";

/// The `--help` epilogue: configuration, environment and exit codes.
pub(crate) fn after_help() -> String {
    format!("{CONFIG_HELP}\n\n{EXIT_CODES_HELP}")
}

/// Flags every subcommand accepts (before or after the subcommand's name).
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Print the client's pool statistics on stderr when the command ends.
    #[arg(long, global = true)]
    pub(crate) stats: bool,
    /// Read the client configuration from this TOML file (`[session]`, `[[regions]]`, `base_url`).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Add a region (repeatable; listed order is the failover priority). Replaces the regions of
    /// --config and BLOSSOM_REGIONS.
    #[arg(long, global = true, value_name = "NAME=URL")]
    pub(crate) region: Vec<String>,
    /// Use one region at this base URL (e.g. a `blossom mock` region).
    #[arg(long, global = true, value_name = "URL", conflicts_with = "region")]
    pub(crate) base_url: Option<String>,
    /// Log to stderr at this level. Default: error (a failure prints only its one-line message).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub(crate) log_level: Option<Level>,
}

/// A log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Generate text for a prompt, streamed as it arrives.
    Text(TextArgs),
    /// Chat: one message per line on stdin, the conversation is kept; EOF (Ctrl-D) ends it.
    Chat(ChatArgs),
    /// Generate an image and save it, showing the seconds waited (image models can take a minute).
    Image(ImageArgs),
    /// List the available text models (or image models with --image).
    Models(ModelsArgs),
    /// Run the embedded multi-region mock server on loopback until killed.
    Mock(MockArgs),
}

/// Model and system prompt of text and chat.
#[derive(Debug, Args)]
pub(crate) struct ChatFlags {
    /// Model name. Default: openai.
    #[arg(long)]
    pub(crate) model: Option<String>,
    /// System prompt sent before the conversation.
    #[arg(long)]
    pub(crate) system: Option<String>,
    /// Seed for reproducible output.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct TextArgs {
    /// What to ask.
    pub(crate) prompt: String,
    #[command(flatten)]
    pub(crate) chat: ChatFlags,
}

#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    #[command(flatten)]
    pub(crate) chat: ChatFlags,
}

#[derive(Debug, Args)]
pub(crate) struct ImageArgs {
    /// What to draw.
    pub(crate) prompt: String,
    /// Where to save the image.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: PathBuf,
    /// Width in pixels, 64..=4096.
    #[arg(long, default_value_t = 1024, value_name = "PX")]
    pub(crate) width: u32,
    /// Height in pixels, 64..=4096.
    #[arg(long, default_value_t = 1024, value_name = "PX")]
    pub(crate) height: u32,
    /// Model name (e.g. flux, turbo). Default: the server's.
    #[arg(long)]
    pub(crate) model: Option<String>,
    /// Seed for reproducible output.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct ModelsArgs {
    /// List image models instead of text models.
    #[arg(long)]
    pub(crate) image: bool,
}

#[derive(Debug, Args)]
#[command(after_help = crate::mock::FAULTS_HELP)]
pub(crate) struct MockArgs {
    /// First port; region i listens on PORT+i. 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    pub(crate) port: u16,
    /// Number of regions (region-a, region-b, ...).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=26))]
    pub(crate) regions: u8,
    /// Make a region misbehave, e.g. `0:503` (repeatable; see the list below).
    #[arg(long, value_name = "REGION_INDEX:BEHAVIOR", value_parser = parse_fault)]
    pub(crate) fail: Vec<(usize, Behavior)>,
    /// Seed of the mock's random choices (region i uses SEED+i).
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}
