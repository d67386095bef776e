//! How the CLI fails: one line on stderr (what went wrong, then what to do) and an exit code
//! per class of failure, so scripts can tell "fix your input" from "retry later".
//!
//! Every [`blossom_client::Error`] maps to one [`Exit`] class; the message is the error with its
//! sources and the hint is its [`suggestion`](blossom_client::Error::suggestion).

use std::process::ExitCode;

use blossom_client::Error;

/// The exit code of each class of failure (0 is success). Listed in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Anything else, e.g. the output file or stdout cannot be written.
    Other = 1,
    /// Bad flags or input (empty prompt, invalid size or option): nothing was sent.
    Usage = 2,
    /// The configuration cannot be read or is invalid (`--config`, `--region`, `--base-url`, env).
    Config = 3,
    /// No connection, a timeout, a connection that broke, or no region available.
    Network = 4,
    /// The API refused: an error status (server error, unknown model), auth, payment, rate limit.
    Api = 5,
    /// A success response that cannot be used: empty, malformed, too large, or a redirect.
    Response = 6,
}

/// The `Exit codes` section of `--help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  other failure (cannot write the output file or stdout)
  2  usage or input: bad flag, empty prompt, invalid size or option (nothing was sent)
  3  configuration: unreadable or invalid --config file, bad --region / --base-url / environment
  4  network or timeout: cannot connect, timed out, connection broke, no region available
  5  API error: the server refused (5xx, unknown model, auth, payment) or rate limited
  6  invalid response: empty, malformed or oversized success response, or a redirect
Errors print one line on stderr: `blossom: error: <what> (hint: <what to do>)`.";

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A failed command: its class, what happened and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
    pub(crate) hint: String,
}

impl Failure {
    pub(crate) fn new(exit: Exit, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Failure { exit, message: message.into(), hint: hint.into() }
    }

    /// A bad argument, refused before anything was sent.
    pub(crate) fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Failure::new(Exit::Usage, message, hint)
    }

    /// What the CLI prints: exactly one line, whatever the error's sources contain.
    pub(crate) fn line(&self) -> String {
        let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        format!("blossom: error: {} (hint: {})", one_line(&self.message), one_line(&self.hint))
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::new(classify(&error), error.full_message(), error.suggestion())
    }
}

/// The exit class of a client error.
pub(crate) fn classify(error: &Error) -> Exit {
    match error {
        Error::InvalidInput { .. } => Exit::Usage,
        Error::Config { .. } => Exit::Config,
        Error::Connect { .. }
        | Error::Timeout { .. }
        | Error::Http { .. }
        | Error::Stream { .. }
        | Error::PoolFull { .. }
        | Error::BreakerOpen { .. } => Exit::Network,
        Error::Api(_) | Error::RateLimited { .. } => Exit::Api,
        Error::InvalidResponse { .. }
        | Error::EmptyResponse
        | Error::BodyTooLarge { .. }
        | Error::RedirectRefused { .. }
        | Error::TooManyRedirects { .. } => Exit::Response,
        // The per-region errors arrive rendered as text: when every region answered with an API
        // error status the API refused; otherwise the regions were (also) unreachable.
        Error::AllRegionsFailed { failures } => {
            if !failures.is_empty() && failures.iter().all(|(_, e)| e.starts_with("api error")) {
                Exit::Api
            } else {
                Exit::Network
            }
        }
        _ => Exit::Other,
    }
}

/// An I/O failure on our side (output file, stdout, stdin).
pub(crate) fn io_failure(what: impl std::fmt::Display, error: std::io::Error) -> Failure {
    Failure::new(Exit::Other, format!("{what}: {error}"), "check the path, permissions and free space")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use blossom_client::{ApiError, ApiErrorKind, TimeoutPhase};

    use super::*;

    #[test]
    fn each_error_class_has_its_code() {
        let api = ApiError {
            status: 503,
            kind: ApiErrorKind::Upstream,
            code: None,
            message: "mock failure".into(),
            request_id: None,
            retry_after: None,
        };
        let cases = [
            (Error::InvalidInput { what: "prompt is empty".into() }, Exit::Usage),
            (Error::Config { field: "config_file".into(), problem: "cannot read".into() }, Exit::Config),
            (Error::Timeout { phase: TimeoutPhase::Read, limit: Duration::from_secs(1) }, Exit::Network),
            (Error::BreakerOpen { region: "a".into(), retry_in: None }, Exit::Network),
            (Error::Api(api), Exit::Api),
            (Error::RateLimited { retry_after: Duration::from_secs(1) }, Exit::Api),
            (Error::EmptyResponse, Exit::Response),
            (Error::InvalidResponse { what: "not json".into() }, Exit::Response),
            (
                Error::AllRegionsFailed { failures: vec![("a".into(), "api error 503 (upstream error): x".into())] },
                Exit::Api,
            ),
            (
                Error::AllRegionsFailed {
                    failures: vec![
                        ("a".into(), "api error 503 (upstream error): x".into()),
                        ("b".into(), "could not connect to region `b`".into()),
                    ],
                },
                Exit::Network,
            ),
        ];
        for (error, exit) in cases {
            assert_eq!(classify(&error), exit, "{error}");
        }
    }

    #[test]
    fn the_line_is_one_line_with_a_hint() {
        let failure = Failure::new(Exit::Api, "api error 503\nmock failure", "retry\r\nlater");
        assert_eq!(failure.line(), "blossom: error: api error 503 mock failure (hint: retry later)");
    }
}
