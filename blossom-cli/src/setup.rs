//! From flags to a configured client and a log subscriber.
//!
//! Sources are layered, later wins: the `--config` TOML file, the environment
//! ([`ClientConfig::apply_env`]), then `--base-url` / `--region`. The key is taken from
//! `POLLINATIONS_API_KEY` only; a key in the config file is ignored (with a warning), so the CLI
//! has exactly one place a key can come from.

use std::io::IsTerminal;

use blossom_client::{BlossomClient, ClientConfig, LogLevel, parse_region_list};
use tracing_subscriber::EnvFilter;

use crate::cli::{Global, Level};
use crate::failure::Failure;

/// The client configuration the global flags ask for.
pub(crate) fn config(global: &Global) -> Result<ClientConfig, Failure> {
    let mut config = match &global.config {
        Some(path) => {
            let mut config = ClientConfig::from_toml_file(path)?;
            if config.api_key.take().is_some() {
                note!(
                    "blossom: warning: ignoring `api_key` in {}; the CLI reads the key from POLLINATIONS_API_KEY only",
                    path.display()
                );
            }
            config
        }
        None => ClientConfig::default(),
    };
    match config.apply_env() {
        // `--log-level` wins over the variable, even one that does not parse.
        Err(blossom_client::Error::Config { field, .. }) if field == "log_level" && global.log_level.is_some() => {}
        other => other?,
    }
    if let Some(url) = &global.base_url {
        config.base_url = url.clone();
        config.regions.clear();
    }
    if !global.region.is_empty() {
        // One list, so the flags' order is the regions' priority.
        config.regions = parse_region_list(&global.region.join(","))?;
    }
    if let Some(level) = global.log_level {
        config.session.log_level = level.as_str().parse::<LogLevel>().map_err(blossom_client::Error::from)?;
    }
    Ok(config)
}

/// Builds the client (inside the runtime).
pub(crate) fn client(config: ClientConfig) -> Result<BlossomClient, Failure> {
    Ok(BlossomClient::builder().config(config).build()?)
}

/// Logs to stderr: `--log-level`, else `BLOSSOM_LOG_LEVEL`, else `RUST_LOG`, else errors only
/// (the client logs none: by default a failure prints just its one-line message). Other crates
/// (hyper, ...) log only warnings unless the level is `trace` or `error`.
pub(crate) fn init_logging(flag: Option<Level>) {
    let env_level = std::env::var("BLOSSOM_LOG_LEVEL").ok().and_then(|v| v.parse::<LogLevel>().ok());
    let filter = match (flag.map(Level::as_str), env_level.map(LogLevel::as_str)) {
        (Some(level), _) | (None, Some(level)) => EnvFilter::new(directives(level)),
        (None, None) => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives("error"))),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn directives(level: &str) -> String {
    let others = match level {
        "trace" => "trace",
        "error" => "error",
        _ => "warn",
    };
    format!("{others},blossom={level},blossom_client={level},pool_core={level},blossom_mock={level}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global() -> Global {
        Global { stats: false, config: None, region: Vec::new(), base_url: None, log_level: None }
    }

    #[test]
    fn flags_override_the_defaults() {
        let mut g = global();
        g.base_url = Some("http://127.0.0.1:9".into());
        g.log_level = Some(Level::Debug);
        let built = config(&g).unwrap();
        assert_eq!(built.base_url, "http://127.0.0.1:9");
        assert_eq!(built.session.log_level, LogLevel::Debug);

        let mut g = global();
        g.region = vec!["a=http://127.0.0.1:1".into(), "b=http://127.0.0.1:2".into()];
        let regions = config(&g).unwrap().regions;
        assert_eq!(regions.iter().map(|r| (r.name.as_str(), r.priority)).collect::<Vec<_>>(), [("a", 0), ("b", 1)]);
    }

    #[test]
    fn bad_region_and_missing_file_are_config_errors() {
        let mut g = global();
        g.region = vec!["no-equals-sign".into()];
        assert_eq!(config(&g).unwrap_err().exit, crate::failure::Exit::Config);
        let mut g = global();
        g.config = Some(std::env::temp_dir().join("blossom-cli-no-such-dir/none.toml"));
        assert_eq!(config(&g).unwrap_err().exit, crate::failure::Exit::Config);
    }
}
