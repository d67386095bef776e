//! The one error type of blossom-client, and the classification of Pollinations error responses.
//!
//! Users of the Pollinations API mostly suffer from failures they cannot tell apart: 429s after a
//! few requests, 429s wrapped in 500s, 402s, bursts of 502/504/524, empty 200s. Every failure here
//! is a typed [`Error`] that says whether a retry can help ([`Error::is_retryable`]), how long to
//! wait when the server or the client knows ([`Error::retry_after`]) and what to do
//! ([`Error::suggestion`]).
//!
//! Errors only carry what they are given: no variant stores request headers or URLs, so the API
//! key (sent as `Authorization: Bearer`) cannot leak through them. A server may still echo a key
//! in its message; [`ApiError::redact_secret`] and [`redact`] remove it.
//!
//! ```
//! # use blossom_client::{ApiError, ApiErrorKind};
//! let body = br#"{"status":429,"success":false,"error":{"code":"RATE_LIMITED","message":"Too many requests"}}"#;
//! let mut headers = http::HeaderMap::new();
//! headers.insert(http::header::RETRY_AFTER, "15".parse().unwrap());
//! let err = ApiError::from_response(429, &headers, body);
//! assert_eq!(err.kind, ApiErrorKind::RateLimited);
//! assert_eq!(err.retry_after, Some(std::time::Duration::from_secs(15)));
//! assert!(err.is_retryable());
//! ```

use std::fmt;
use std::time::Duration;

/// A boxed error from the transport (hyper, rustls, the connector, ...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when talking to Pollinations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value was refused (built from `pool_core::ConfigError`).
    #[error("invalid config: `{field}` {problem}")]
    Config {
        /// Dotted path of the field, e.g. `regions.eu.base_url`.
        field: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// A request argument was refused before anything was sent (empty prompt, bad option).
    #[error("invalid input: {what}")]
    InvalidInput {
        /// What was wrong, naming the argument and the allowed values.
        what: String,
    },
    /// No connection could be opened to a region (DNS, TCP, TLS).
    #[error("could not connect to region `{region}`")]
    Connect {
        /// Name of the region from the configuration.
        region: String,
        /// The connector's error.
        #[source]
        source: BoxError,
    },
    /// A configured timeout ran out.
    #[error("{phase} timed out after {limit:?}")]
    Timeout {
        /// Which timeout ran out.
        phase: TimeoutPhase,
        /// The configured duration that ran out.
        limit: Duration,
    },
    /// The region's connection pool is at its limit and the request may not queue.
    #[error("connection pool for region `{region}` is full")]
    PoolFull {
        /// Name of the region.
        region: String,
    },
    /// The region's circuit breaker is open after repeated failures.
    #[error("circuit breaker for region `{region}` is open{}", retry_hint(.retry_in))]
    BreakerOpen {
        /// Name of the region.
        region: String,
        /// How long from now until the breaker lets a probe through, if known.
        retry_in: Option<Duration>,
    },
    /// The client's own rate limiter refused the request (nothing was sent).
    #[error("rate limited by the local limiter; retry after {retry_after:?}")]
    RateLimited {
        /// How long from now until a request is allowed.
        retry_after: Duration,
    },
    /// The API answered with an error status.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A success response that could not be understood.
    #[error("invalid response: {what}")]
    InvalidResponse {
        /// What was wrong with it.
        what: String,
    },
    /// A success response with no content.
    #[error("empty response")]
    EmptyResponse,
    /// A streamed (SSE) response broke off or could not be decoded.
    #[error("stream error: {what}")]
    Stream {
        /// What went wrong.
        what: String,
        /// The transport error that broke the stream, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The response body is larger than the configured limit.
    #[error("response body exceeds the limit of {limit_bytes} bytes")]
    BodyTooLarge {
        /// The configured limit, in bytes.
        limit_bytes: u64,
    },
    /// An HTTP protocol or I/O error from the transport (connection reset, malformed response).
    #[error("http protocol error")]
    Http {
        /// The transport's error.
        #[source]
        source: BoxError,
    },
    /// Every region was tried and failed.
    #[error("all regions failed: {}", failures_list(.failures))]
    AllRegionsFailed {
        /// For each region tried, in order: its name and its last error, rendered with
        /// [`Error::full_message`].
        failures: Vec<(String, String)>,
    },
    /// The server answered with a redirect, which the client does not follow.
    #[error("redirect refused (status {status})")]
    RedirectRefused {
        /// The 3xx status.
        status: u16,
    },
    /// The server redirected more times than allowed.
    #[error("too many redirects (limit {limit})")]
    TooManyRedirects {
        /// The configured limit.
        limit: u32,
    },
}

fn retry_hint(retry_in: &Option<Duration>) -> String {
    match retry_in {
        Some(d) => format!("; retry in {d:?}"),
        None => String::new(),
    }
}

fn failures_list(failures: &[(String, String)]) -> String {
    if failures.is_empty() {
        return "no region was tried".to_owned();
    }
    let parts: Vec<String> = failures.iter().map(|(region, err)| format!("`{region}`: {err}")).collect();
    parts.join("; ")
}

/// Which timeout ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Opening the connection (TCP and TLS).
    Connect,
    /// Waiting for response bytes (first byte, or the next chunk of a stream).
    Read,
    /// The whole request, retries included.
    Total,
    /// Waiting for a free connection in the pool.
    PoolWait,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::Read => "read",
            TimeoutPhase::Total => "request",
            TimeoutPhase::PoolWait => "pool wait",
        })
    }
}

impl Error {
    /// Whether sending the same (idempotent) request again may succeed.
    ///
    /// True for transient failures: connect errors, connect/read/pool-wait timeouts, a full pool,
    /// an open breaker or the local limiter (after waiting), retryable API statuses (see
    /// [`ApiError::is_retryable`]), empty or invalid success responses and broken streams
    /// (Pollinations sometimes returns empty or truncated 200s that succeed on retry), and
    /// protocol errors (mostly connection resets). False for everything the caller must fix
    /// (config, input, 4xx, body too large, redirects), for [`TimeoutPhase::Total`] (the caller's
    /// budget is spent) and for [`Error::AllRegionsFailed`] (the client already retried).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::PoolFull { .. }
            | Error::BreakerOpen { .. }
            | Error::RateLimited { .. }
            | Error::InvalidResponse { .. }
            | Error::EmptyResponse
            | Error::Stream { .. }
            | Error::Http { .. } => true,
            Error::Timeout { phase, .. } => *phase != TimeoutPhase::Total,
            Error::Api(api) => api.is_retryable(),
            Error::Config { .. }
            | Error::InvalidInput { .. }
            | Error::BodyTooLarge { .. }
            | Error::AllRegionsFailed { .. }
            | Error::RedirectRefused { .. }
            | Error::TooManyRedirects { .. } => false,
        }
    }

    /// How long to wait before retrying, when the server or the client knows.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } => Some(*retry_after),
            Error::BreakerOpen { retry_in, .. } => *retry_in,
            Error::Api(api) => api.retry_after,
            _ => None,
        }
    }

    /// A short hint of what to do about this error.
    pub fn suggestion(&self) -> &'static str {
        match self {
            Error::Config { .. } => "fix the named configuration field; the message gives the allowed range",
            Error::InvalidInput { .. } => "fix the named argument; nothing was sent",
            Error::Connect { .. } => "check network access to the region's base url; the client retries other regions",
            Error::Timeout { phase, .. } => match phase {
                TimeoutPhase::Connect => "the edge is slow to accept connections; retry or raise the connect timeout",
                TimeoutPhase::Read => {
                    "the model is slow (image models can take over a minute); raise the read timeout or retry"
                }
                TimeoutPhase::Total => "the request budget is spent; raise the total timeout or send fewer retries",
                TimeoutPhase::PoolWait => "all connections are busy; lower concurrency or raise the pool size",
            },
            Error::PoolFull { .. } => "too many requests in flight; lower concurrency or raise the pool limits",
            Error::BreakerOpen { .. } => "the region is failing; wait for the breaker to close or use another region",
            Error::RateLimited { .. } => "wait for the given delay; a secret key (`sk_`) is not rate limited",
            Error::Api(api) => api.suggestion(),
            Error::InvalidResponse { .. } => {
                "the server sent something unexpected; retry, and report it if it persists"
            }
            Error::EmptyResponse => "the server sent an empty success response; retry",
            Error::Stream { .. } => "the stream broke off; retry the request",
            Error::BodyTooLarge { .. } => "raise the body size limit or ask for a smaller output",
            Error::Http { .. } => "the connection failed mid-request; retry",
            Error::AllRegionsFailed { .. } => "every region failed; check each region's error and retry later",
            Error::RedirectRefused { .. } => "point the base url at the final location (use https and the right host)",
            Error::TooManyRedirects { .. } => "point the base url at the final location",
        }
    }

    /// This error and all its sources, joined with `": "` (for logs and
    /// [`Error::AllRegionsFailed`] entries).
    pub fn full_message(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            out.push_str(": ");
            out.push_str(&err.to_string());
            source = err.source();
        }
        out
    }

    /// An [`Error::InvalidInput`] with the given description.
    pub(crate) fn invalid_input(what: impl Into<String>) -> Self {
        Error::InvalidInput { what: what.into() }
    }

    /// An [`Error::InvalidResponse`] with the given description.
    pub(crate) fn invalid_response(what: impl Into<String>) -> Self {
        Error::InvalidResponse { what: what.into() }
    }

    /// An [`Error::Stream`] without a transport source.
    pub(crate) fn stream(what: impl Into<String>) -> Self {
        Error::Stream { what: what.into(), source: None }
    }

    /// Removes `secret` from what a server's text put into this error (see [`redact`]).
    pub(crate) fn redact_secret(&mut self, secret: &str) {
        match self {
            Error::Api(api) => api.redact_secret(secret),
            Error::InvalidResponse { what } | Error::Stream { what, .. } => *what = redact(what, secret),
            _ => {}
        }
    }
}

/// The class of an API error status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// 401 or 403: the key is missing, wrong, or not allowed this model.
    Auth,
    /// 402: the balance or budget is exhausted (Pollinations also uses it for "queue full").
    PaymentRequired,
    /// 429, or a 5xx whose body says it is a rate limit.
    RateLimited,
    /// 400, 405, 409, 422 and other 4xx: the request itself is wrong.
    BadRequest,
    /// 5xx (including the edge's 520, 522, 524): a server-side failure.
    Upstream,
}

impl ApiErrorKind {
    /// The class of an HTTP status (anything below 500 that is not listed counts as
    /// [`ApiErrorKind::BadRequest`]).
    pub fn from_status(status: u16) -> Self {
        match status {
            401 | 403 => ApiErrorKind::Auth,
            402 => ApiErrorKind::PaymentRequired,
            429 => ApiErrorKind::RateLimited,
            500.. => ApiErrorKind::Upstream,
            _ => ApiErrorKind::BadRequest,
        }
    }
}

impl fmt::Display for ApiErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiErrorKind::Auth => "not authorized",
            ApiErrorKind::PaymentRequired => "payment required",
            ApiErrorKind::RateLimited => "rate limited",
            ApiErrorKind::BadRequest => "bad request",
            ApiErrorKind::Upstream => "upstream error",
        })
    }
}

/// An error status from the API, with what its body said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The class of the error.
    pub kind: ApiErrorKind,
    /// The body's `error.code`, if any.
    pub code: Option<String>,
    /// The body's message, else a cleaned, truncated excerpt of a non-JSON body, else the
    /// status's reason phrase.
    pub message: String,
    /// The body's `error.requestId`, else the `x-request-id` or `cf-ray` header.
    pub request_id: Option<String>,
    /// The `Retry-After` header, if given as delta-seconds; at most [`MAX_RETRY_AFTER`].
    pub retry_after: Option<Duration>,
}

/// Longest excerpt of a plain-text body kept as a message, in characters.
const MAX_TEXT_MESSAGE_CHARS: usize = 200;
/// Longest message taken from a JSON body (including field errors), in characters.
const MAX_JSON_MESSAGE_CHARS: usize = 500;
/// Longest code or request id kept, in characters.
const MAX_ID_CHARS: usize = 100;
/// Largest error body read as JSON: a parsed value takes up to ~20 times its text, and a real
/// error body is a few hundred bytes. A larger one is shown as text.
const MAX_ERROR_JSON_BYTES: usize = 64 * 1024;

impl ApiError {
    /// Classifies an error response from its status, headers and body.
    ///
    /// Understands the Pollinations body
    /// `{"status", "success": false, "error": {"code", "message", "details": {"fieldErrors"}, "requestId"}}`
    /// (field errors are appended to the message), the `{"error": "text"}` and
    /// `{"message": "text"}` shapes, and the OpenAI `{"error": {"message", "type"}}` shape. Any
    /// other body becomes a message: an HTML page by its `<title>`, plain text cleaned of control
    /// characters and truncated to 200 characters, an empty body by the status's reason phrase.
    ///
    /// A 5xx whose body says it is a rate limit (Pollinations sometimes wraps 429s in 500s) is
    /// classed [`ApiErrorKind::RateLimited`]; `status` stays the HTTP status.
    ///
    /// `Retry-After` is read as delta-seconds (a decimal number is accepted). An HTTP-date is
    /// ignored: turning it into a delay needs the wall clock, which this code never reads.
    pub fn from_response(status: u16, headers: &http::HeaderMap, body: &[u8]) -> ApiError {
        let mut kind = ApiErrorKind::from_status(status);
        let parsed = parse_error_body(body);
        let message = match parsed.message {
            Some(m) if !m.is_empty() => m,
            _ if parsed.is_json_object => reason_phrase(status),
            _ => fallback_message(status, body),
        };
        if kind == ApiErrorKind::Upstream
            && (parsed.inner_status == Some(429) || looks_rate_limited(&parsed.code, &message))
        {
            kind = ApiErrorKind::RateLimited;
        }
        let request_id = parsed.request_id.or_else(|| {
            ["x-request-id", "cf-ray"]
                .iter()
                .find_map(|name| headers.get(*name)?.to_str().ok())
                .map(|v| clean(v, MAX_ID_CHARS))
                .filter(|v| !v.is_empty())
        });
        let retry_after = headers.get(http::header::RETRY_AFTER).and_then(|v| parse_retry_after(v.to_str().ok()?));
        ApiError { status, kind, code: parsed.code, message, request_id, retry_after }
    }

    /// Whether the same request may succeed if sent again.
    ///
    /// Retryable: 408, 429, 500 (Pollinations wraps some 429s in 500s), 502, 503, 504 and the
    /// edge's 520-524 (unknown error, origin down, timeouts, origin unreachable). Never
    /// 400, 401, 402, 403 or any other status.
    pub fn is_retryable(&self) -> bool {
        self.kind == ApiErrorKind::RateLimited || is_retryable_status(self.status)
    }

    /// A short hint of what to do about this error.
    pub fn suggestion(&self) -> &'static str {
        match (self.kind, self.status) {
            (ApiErrorKind::Auth, 401) => "check the api key (missing, mistyped or revoked)",
            (ApiErrorKind::Auth, _) => {
                "the key may not use this model or feature; check the model name and the key's tier"
            }
            (ApiErrorKind::PaymentRequired, _) => {
                "top up the balance or raise the key's budget; if the message says the queue is full, retry later"
            }
            (ApiErrorKind::RateLimited, _) => {
                "slow down and honour retry_after; a secret key (`sk_`) is not rate limited"
            }
            (ApiErrorKind::BadRequest, _) => "fix the request (model name, parameters); the message says what is wrong",
            (ApiErrorKind::Upstream, _) if self.is_retryable() => {
                "transient server failure; retry with backoff, or try another model or region"
            }
            (ApiErrorKind::Upstream, _) => "the server cannot handle this request; try another model or endpoint",
        }
    }

    /// Replaces every occurrence of `secret` in the message, code and request id (in case the
    /// server echoed the key).
    pub fn redact_secret(&mut self, secret: &str) {
        self.message = redact(&self.message, secret);
        if let Some(code) = &mut self.code {
            *code = redact(code, secret);
        }
        if let Some(id) = &mut self.request_id {
            *id = redact(id, secret);
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "api error {} ({}): {}", self.status, self.kind, self.message)?;
        if let Some(code) = &self.code {
            write!(f, " [code {code}]")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Whether a status is worth retrying on its own (see [`ApiError::is_retryable`]).
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504 | 520..=524)
}

/// `s` with every occurrence of `secret` replaced by `[redacted]` (an empty secret changes nothing).
/// An excerpt cut short (ending in `…`) inside the secret loses the secret's start too, from
/// four characters on.
pub fn redact(s: &str, secret: &str) -> String {
    if secret.is_empty() {
        return s.to_owned();
    }
    let mut out = s.replace(secret, "[redacted]");
    if let Some(kept) = out.strip_suffix('…') {
        let cut = (4..secret.len()).rev().find(|&n| secret.is_char_boundary(n) && kept.ends_with(&secret[..n]));
        if let Some(n) = cut {
            out.truncate(kept.len() - n);
            out.push_str("[redacted]…");
        }
    }
    out
}

/// The longest `Retry-After` honoured: a longer one is read as this, so a broken or hostile
/// server cannot stop a region (or, alone, the client) for longer.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Parses a `Retry-After` value given as delta-seconds, capped at [`MAX_RETRY_AFTER`]; `None` for
/// an HTTP-date or garbage.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let secs: f64 = value.parse().ok()?;
            // Reject NaN, negatives and values too large for a Duration (about 584 billion years).
            (0.0..1e15).contains(&secs).then(|| Duration::from_secs_f64(secs))?
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// What an error body said, as far as it could be read.
#[derive(Default)]
struct ParsedBody {
    message: Option<String>,
    code: Option<String>,
    request_id: Option<String>,
    inner_status: Option<u64>,
    /// The body is a JSON object (so its text is no message).
    is_json_object: bool,
}

fn parse_error_body(body: &[u8]) -> ParsedBody {
    use serde_json::Value;
    let mut out = ParsedBody::default();
    if body.len() > MAX_ERROR_JSON_BYTES {
        return out;
    }
    let Ok(Value::Object(root)) = serde_json::from_slice::<Value>(body) else {
        return out;
    };
    out.is_json_object = true;
    out.inner_status = root.get("status").and_then(Value::as_u64);
    match root.get("error") {
        Some(Value::Object(err)) => {
            out.code = err.get("code").or_else(|| err.get("type")).and_then(scalar_text);
            out.request_id = err.get("requestId").or_else(|| root.get("requestId")).and_then(scalar_text);
            let mut message = err.get("message").and_then(scalar_text).unwrap_or_default();
            if let Some(fields) = err.get("details").and_then(|d| d.get("fieldErrors")) {
                let rendered = render_field_errors(fields);
                if !rendered.is_empty() {
                    if !message.is_empty() {
                        message.push_str(": ");
                    }
                    message.push_str(&rendered);
                }
            }
            out.message = Some(message);
        }
        Some(Value::String(text)) => out.message = Some(text.clone()),
        _ => {}
    }
    if out.message.as_deref().is_none_or(str::is_empty) {
        out.message = ["message", "detail"].iter().find_map(|k| root.get(*k).and_then(scalar_text));
    }
    out.message = out.message.map(|m| clean(&m, MAX_JSON_MESSAGE_CHARS));
    out.code = out.code.map(|c| clean(&c, MAX_ID_CHARS));
    out.request_id = out.request_id.map(|r| clean(&r, MAX_ID_CHARS));
    out
}

/// A string or number as text; `None` for anything else.
fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Renders zod-style `{"field": ["problem", ..]}` (or `[{"path", "message"}]`) as `field: problem; ...`.
fn render_field_errors(fields: &serde_json::Value) -> String {
    use serde_json::Value;
    let mut parts = Vec::new();
    match fields {
        Value::Object(map) => {
            for (field, problems) in map {
                let text = match problems {
                    Value::Array(items) => items.iter().filter_map(scalar_text).collect::<Vec<_>>().join(", "),
                    other => scalar_text(other).unwrap_or_default(),
                };
                parts.push(if text.is_empty() { field.clone() } else { format!("{field}: {text}") });
            }
        }
        Value::Array(items) => {
            parts.extend(items.iter().filter_map(|item| item.get("message").and_then(scalar_text)));
        }
        _ => {}
    }
    parts.join("; ")
}

/// The message for a body that is not a recognised JSON error.
fn fallback_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return reason_phrase(status);
    }
    if trimmed.starts_with('<') {
        return match html_title(trimmed) {
            Some(title) => format!("html error page: {}", clean(title, MAX_TEXT_MESSAGE_CHARS)),
            None => "html error page".to_owned(),
        };
    }
    clean(trimmed, MAX_TEXT_MESSAGE_CHARS)
}

/// The status's reason phrase in lowercase, e.g. `gateway timeout`.
fn reason_phrase(status: u16) -> String {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(str::to_lowercase)
        .unwrap_or_else(|| "no error message".to_owned())
}

/// The text of the first `<title>` element, found case-insensitively.
fn html_title(html: &str) -> Option<&str> {
    let lower = html.to_ascii_lowercase(); // same byte offsets: ASCII lowercasing keeps lengths.
    let start = lower.find("<title")?;
    let open_end = start + lower[start..].find('>')? + 1;
    let close = open_end + lower[open_end..].find("</title")?;
    let title = html[open_end..close].trim();
    (!title.is_empty()).then_some(title)
}

fn looks_rate_limited(code: &Option<String>, message: &str) -> bool {
    let code = code.as_deref().unwrap_or("").to_ascii_lowercase();
    let message = message.to_ascii_lowercase();
    code.contains("rate_limit")
        || code.contains("ratelimit")
        || code == "429"
        || message.contains("rate limit")
        || message.contains("too many requests")
}

/// `s` with control characters turned into spaces, runs of whitespace collapsed, and cut to
/// `max_chars` characters (an ellipsis marks the cut).
pub(crate) fn clean(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars * 4 + 3));
    let mut count = 0;
    let mut last_space = true; // also trims leading whitespace
    for c in s.chars() {
        let c = if c.is_control() || c.is_whitespace() { ' ' } else { c };
        if c == ' ' {
            if last_space || count == max_chars {
                continue; // trailing spaces past the limit do not count as a cut
            }
        } else if count == max_chars {
            out.truncate(out.trim_end().len());
            out.push('…');
            return out;
        }
        last_space = c == ' ';
        out.push(c);
        count += 1;
    }
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http::header::{HeaderValue, RETRY_AFTER};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn parses_the_pollinations_error_body() {
        let body = br#"{"status":400,"success":false,"error":{"code":"BAD_REQUEST","message":"Invalid parameters",
            "timestamp":"2025-01-01T00:00:00Z","details":{"formErrors":[],"fieldErrors":{"temperature":["Number must be less than or equal to 2"]}},
            "requestId":"req_123"}}"#;
        let err = ApiError::from_response(400, &HeaderMap::new(), body);
        assert_eq!(err.kind, ApiErrorKind::BadRequest);
        assert_eq!(err.code.as_deref(), Some("BAD_REQUEST"));
        assert_eq!(err.message, "Invalid parameters: temperature: Number must be less than or equal to 2");
        assert_eq!(err.request_id.as_deref(), Some("req_123"));
        assert_eq!(err.retry_after, None);
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "api error 400 (bad request): Invalid parameters: temperature: Number must be less than or equal to 2 \
             [code BAD_REQUEST] (request id req_123)"
        );
    }

    #[test]
    fn parses_the_string_error_and_message_shapes() {
        let err = ApiError::from_response(401, &HeaderMap::new(), br#"{"error":"Invalid API key"}"#);
        assert_eq!(
            (err.kind, err.message.as_str(), err.code.as_deref()),
            (ApiErrorKind::Auth, "Invalid API key", None)
        );
        let err = ApiError::from_response(422, &HeaderMap::new(), br#"{"message":"model not found"}"#);
        assert_eq!(err.message, "model not found");
        let err = ApiError::from_response(
            400,
            &HeaderMap::new(),
            br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#,
        );
        assert_eq!((err.message.as_str(), err.code.as_deref()), ("bad", Some("invalid_request_error")));
        let err = ApiError::from_response(400, &HeaderMap::new(), br#"{"error":{"code":42}}"#);
        assert_eq!((err.message.as_str(), err.code.as_deref()), ("bad request", Some("42")));
    }

    #[test]
    fn falls_back_on_plain_text_html_invalid_json_and_empty_bodies() {
        let long = "x".repeat(1000);
        let err = ApiError::from_response(502, &HeaderMap::new(), long.as_bytes());
        assert_eq!(err.message.chars().count(), MAX_TEXT_MESSAGE_CHARS + 1);
        assert!(err.message.ends_with('…'));

        let err = ApiError::from_response(500, &HeaderMap::new(), b"Internal\r\nerror\x00 here  ");
        assert_eq!(err.message, "Internal error here");

        let err = ApiError::from_response(503, &HeaderMap::new(), br#"{"error": {"message": "trunc"#);
        assert_eq!(err.message, r#"{"error": {"message": "trunc"#);

        let err = ApiError::from_response(504, &HeaderMap::new(), b"");
        assert_eq!(err.message, "gateway timeout");
        let err = ApiError::from_response(524, &HeaderMap::new(), b"  \n");
        assert_eq!(err.message, "no error message");

        let html = b"<!DOCTYPE html><html><head><TITLE>gen.pollinations.ai | 524: A timeout occurred</TITLE></head><body>...</body></html>";
        let err = ApiError::from_response(524, &HeaderMap::new(), html);
        assert_eq!(err.message, "html error page: gen.pollinations.ai | 524: A timeout occurred");
        assert!(err.is_retryable());

        let err = ApiError::from_response(502, &HeaderMap::new(), &[0xff, 0xfe, b'o', b'k']);
        assert_eq!(err.message, "\u{fffd}\u{fffd}ok");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let text = "é".repeat(300);
        let err = ApiError::from_response(500, &HeaderMap::new(), text.as_bytes());
        assert_eq!(err.message, format!("{}…", "é".repeat(MAX_TEXT_MESSAGE_CHARS)));
        assert_eq!(clean("ab  ", 2), "ab");
        assert_eq!(clean("a b c", 2), "a…");
    }

    #[test]
    fn classifies_statuses() {
        let cases = [
            (400, ApiErrorKind::BadRequest, false),
            (401, ApiErrorKind::Auth, false),
            (402, ApiErrorKind::PaymentRequired, false),
            (403, ApiErrorKind::Auth, false),
            (404, ApiErrorKind::BadRequest, false),
            (405, ApiErrorKind::BadRequest, false),
            (408, ApiErrorKind::BadRequest, true),
            (409, ApiErrorKind::BadRequest, false),
            (422, ApiErrorKind::BadRequest, false),
            (429, ApiErrorKind::RateLimited, true),
            (500, ApiErrorKind::Upstream, true),
            (501, ApiErrorKind::Upstream, false),
            (502, ApiErrorKind::Upstream, true),
            (503, ApiErrorKind::Upstream, true),
            (504, ApiErrorKind::Upstream, true),
            (520, ApiErrorKind::Upstream, true),
            (522, ApiErrorKind::Upstream, true),
            (524, ApiErrorKind::Upstream, true),
            (525, ApiErrorKind::Upstream, false),
        ];
        for (status, kind, retryable) in cases {
            let err = ApiError::from_response(status, &HeaderMap::new(), b"{}");
            assert_eq!((err.kind, err.is_retryable()), (kind, retryable), "status {status}");
            assert_eq!(Error::Api(err).is_retryable(), retryable, "status {status}");
        }
    }

    #[test]
    fn a_rate_limit_wrapped_in_a_500_is_rate_limited() {
        let body = br#"{"status":429,"success":false,"error":{"message":"Queue full for IP"}}"#;
        assert_eq!(ApiError::from_response(500, &HeaderMap::new(), body).kind, ApiErrorKind::RateLimited);
        let body = br#"{"error":"Upstream returned 429 Too Many Requests"}"#;
        assert_eq!(ApiError::from_response(502, &HeaderMap::new(), body).kind, ApiErrorKind::RateLimited);
        let body = br#"{"error":"model crashed"}"#;
        assert_eq!(ApiError::from_response(500, &HeaderMap::new(), body).kind, ApiErrorKind::Upstream);
        // A 4xx is never reclassified.
        let body = br#"{"status":429,"error":"rate limit"}"#;
        assert_eq!(ApiError::from_response(402, &HeaderMap::new(), body).kind, ApiErrorKind::PaymentRequired);
    }

    #[test]
    fn a_huge_json_error_body_is_shown_as_text_not_parsed() {
        let small = br#"{"error":{"message":"quota"},"pad":""}"#;
        assert_eq!(ApiError::from_response(500, &HeaderMap::new(), small).message, "quota");
        let mut huge = br#"{"error":{"message":"quota"},"pad":""#.to_vec();
        huge.resize(huge.len() + MAX_ERROR_JSON_BYTES, b'a');
        huge.extend_from_slice(br#""}"#);
        let message = ApiError::from_response(500, &HeaderMap::new(), &huge).message;
        assert!(message.starts_with(r#"{"error":{"message":"quota"}"#), "an excerpt of the text: {message}");
        assert!(message.len() <= 4 * MAX_TEXT_MESSAGE_CHARS, "{}", message.len());
    }

    #[test]
    fn redaction_covers_a_secret_cut_short_by_an_excerpt() {
        let secret = "sk_0123456789";
        assert_eq!(redact("key sk_0123456789 and sk_0123456789", secret), "key [redacted] and [redacted]");
        assert_eq!(redact("invalid key sk_01234…", secret), "invalid key [redacted]…");
        assert_eq!(redact("invalid key sk_…", secret), "invalid key sk_…", "three characters say nothing");
        assert_eq!(redact("a sk_01234 b", secret), "a sk_01234 b", "not cut: not the secret");
        assert_eq!(redact("anything", ""), "anything");
    }

    #[test]
    fn reads_retry_after_as_delta_seconds() {
        let err = ApiError::from_response(429, &headers(&[("retry-after", " 30 ")]), b"");
        assert_eq!(err.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(Error::Api(err).retry_after(), Some(Duration::from_secs(30)));
        let err = ApiError::from_response(503, &headers(&[("retry-after", "1.5")]), b"");
        assert_eq!(err.retry_after, Some(Duration::from_millis(1500)));
        for long in ["18446744073709551615", "3601", "1e14"] {
            let err = ApiError::from_response(429, &headers(&[("retry-after", long)]), b"");
            assert_eq!(err.retry_after, Some(MAX_RETRY_AFTER), "{long:?} is capped");
        }
        for ignored in ["Wed, 21 Oct 2015 07:28:00 GMT", "-1", "soon", "NaN", "1e300", ""] {
            let err = ApiError::from_response(429, &headers(&[("retry-after", ignored)]), b"");
            assert_eq!(err.retry_after, None, "{ignored:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(ApiError::from_response(429, &h, b"").retry_after, None);
    }

    #[test]
    fn request_id_falls_back_to_headers() {
        let h = headers(&[("x-request-id", "hdr-1"), ("cf-ray", "ray-1")]);
        assert_eq!(ApiError::from_response(500, &h, b"").request_id.as_deref(), Some("hdr-1"));
        let h = headers(&[("cf-ray", "8f00-AMS")]);
        assert_eq!(ApiError::from_response(524, &h, b"").request_id.as_deref(), Some("8f00-AMS"));
        let body = br#"{"error":{"message":"x","requestId":"body-1"}}"#;
        assert_eq!(ApiError::from_response(500, &h, body).request_id.as_deref(), Some("body-1"));
    }

    #[test]
    fn redacts_an_echoed_key() {
        let body = br#"{"error":{"message":"key sk_secret123 is invalid","code":"sk_secret123"}}"#;
        let mut err = ApiError::from_response(401, &HeaderMap::new(), body);
        err.redact_secret("sk_secret123");
        let shown = err.to_string();
        assert!(!shown.contains("sk_secret123"), "{shown}");
        assert!(shown.contains("key [redacted] is invalid"), "{shown}");
        assert_eq!(redact("abc", ""), "abc");
        assert_eq!(redact("a-k-k", "k"), "a-[redacted]-[redacted]");
    }

    #[test]
    fn displays_are_lowercase_and_name_what_failed() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::Connect { region: "eu".into(), source: Box::new(io) };
        assert_eq!(err.to_string(), "could not connect to region `eu`");
        assert_eq!(err.full_message(), "could not connect to region `eu`: refused");
        assert!(err.is_retryable());

        let err = Error::Timeout { phase: TimeoutPhase::PoolWait, limit: Duration::from_millis(250) };
        assert_eq!(err.to_string(), "pool wait timed out after 250ms");
        assert!(err.is_retryable());
        let err = Error::Timeout { phase: TimeoutPhase::Total, limit: Duration::from_secs(120) };
        assert_eq!(err.to_string(), "request timed out after 120s");
        assert!(!err.is_retryable());

        let err = Error::BreakerOpen { region: "us".into(), retry_in: Some(Duration::from_secs(5)) };
        assert_eq!(err.to_string(), "circuit breaker for region `us` is open; retry in 5s");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
        let err = Error::BreakerOpen { region: "us".into(), retry_in: None };
        assert_eq!(err.to_string(), "circuit breaker for region `us` is open");

        let err = Error::AllRegionsFailed {
            failures: vec![
                ("eu".into(), "connect timed out after 5s".into()),
                ("us".into(), "api error 503 (upstream error): busy".into()),
            ],
        };
        assert_eq!(
            err.to_string(),
            "all regions failed: `eu`: connect timed out after 5s; `us`: api error 503 (upstream error): busy"
        );
        assert!(!err.is_retryable());
        assert_eq!(Error::AllRegionsFailed { failures: vec![] }.to_string(), "all regions failed: no region was tried");

        let err = Error::Stream { what: "connection reset".into(), source: Some("eof".into()) };
        assert_eq!(err.full_message(), "stream error: connection reset: eof");
    }

    #[test]
    fn every_variant_has_a_lowercase_message_and_a_suggestion() {
        let all = vec![
            Error::Config { field: "pool.max".into(), problem: "must be in 1..=100, got 0".into() },
            Error::invalid_input("prompt is empty"),
            Error::Connect { region: "eu".into(), source: "dns".into() },
            Error::Timeout { phase: TimeoutPhase::Connect, limit: Duration::from_secs(1) },
            Error::Timeout { phase: TimeoutPhase::Read, limit: Duration::from_secs(1) },
            Error::PoolFull { region: "eu".into() },
            Error::BreakerOpen { region: "eu".into(), retry_in: None },
            Error::RateLimited { retry_after: Duration::from_secs(15) },
            Error::Api(ApiError::from_response(402, &HeaderMap::new(), b"")),
            Error::invalid_response("not json"),
            Error::EmptyResponse,
            Error::stream("line too long"),
            Error::BodyTooLarge { limit_bytes: 10 },
            Error::Http { source: "reset".into() },
            Error::AllRegionsFailed { failures: vec![] },
            Error::RedirectRefused { status: 301 },
            Error::TooManyRedirects { limit: 3 },
        ];
        let retryable: Vec<bool> = all.iter().map(Error::is_retryable).collect();
        assert_eq!(
            retryable,
            [
                false, false, true, true, true, true, true, true, false, true, true, true, false, true, false, false,
                false
            ]
        );
        for err in &all {
            let shown = err.to_string();
            assert!(shown.starts_with(|c: char| !c.is_uppercase()), "{shown}");
            assert!(!err.suggestion().is_empty());
        }
        assert_eq!(all[7].retry_after(), Some(Duration::from_secs(15)));
        assert_eq!(all[0].retry_after(), None);
    }

    #[test]
    fn suggestions_differ_by_status() {
        let s = |status| ApiError::from_response(status, &HeaderMap::new(), b"").suggestion();
        assert_ne!(s(401), s(403));
        assert_ne!(s(502), s(501));
        assert!(s(429).contains("retry_after"));
        assert!(s(402).contains("balance"));
    }
}
