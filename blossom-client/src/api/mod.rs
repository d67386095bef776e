//! Pollinations requests and responses, with no transport.
//!
//! Each endpoint is a pair of pure functions: one builds a [`RequestSpec`] (method, path and
//! query, body, headers that matter) from typed options, refusing bad input before anything is
//! sent; the other turns a success body into a typed value or a typed [`Error`]. The transport
//! joins `path_and_query` to a region's base URL, adds the `Authorization` header, and decides on
//! retries; nothing here knows about connections, clocks or keys.
//!
//! Prompts travel as one percent-encoded path segment ([`encode_segment`]): a `/`, `?` or `#`
//! in a prompt never changes which endpoint is called.
//!
//! ```
//! use blossom_client::{ImageOptions, image_request};
//! let spec = image_request("a red fox / at dawn?", &ImageOptions { seed: Some(7), ..Default::default() })?;
//! assert_eq!(spec.method, http::Method::GET);
//! assert_eq!(spec.path_and_query, "/image/a%20red%20fox%20%2F%20at%20dawn%3F?width=1024&height=1024&seed=7");
//! assert!(spec.idempotent);
//! # Ok::<(), blossom_client::Error>(())
//! ```

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::Error;

mod chat;
mod image;
mod models;
mod text;
mod usual;

pub use chat::{ChatOptions, Message, Role, chat_request, parse_chat_response};
pub(crate) use chat::{content_text, error_message};
pub use image::{Image, ImageOptions, Quality, check_image_response, image_request, image_url};
pub use models::{Model, ModelKind, models_request, parse_models};
pub use text::{TextOptions, parse_text_response, simple_text_request};
pub(crate) use usual::first_choice;
#[cfg(test)]
pub(crate) use usual::near_usual::body as usual_near_body;

/// `Accept` for JSON responses.
const ACCEPT_JSON: &str = "application/json";

/// Longest `path_and_query` sent, in bytes: edges (Cloudflare) refuse URLs of about 16 KiB and
/// more. Longer prompts belong in a chat request body.
pub const MAX_PATH_AND_QUERY_BYTES: usize = 16 * 1024;

/// One HTTP request to send, without the base URL and the credentials.
///
/// The transport adds the region's base URL in front of `path_and_query`, the `Authorization`
/// header, `Content-Type` (when set) and `Accept`.
///
/// `idempotent` says whether the transport may send the request again. Every request built here
/// is: Pollinations generations have no side effect per request beyond billing, so even the chat
/// `POST` is safe to repeat. The transport still retries only before any response byte arrived
/// or on a retryable status (see [`Error::is_retryable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// The HTTP method.
    pub method: http::Method,
    /// Path and query, starting with `/`, already percent-encoded.
    pub path_and_query: String,
    /// The request body, if any.
    pub body: Option<bytes::Bytes>,
    /// The `Content-Type` of `body`, if any.
    pub content_type: Option<&'static str>,
    /// The `Accept` header value.
    pub accept: &'static str,
    /// Whether sending the request twice is harmless.
    pub idempotent: bool,
}

impl RequestSpec {
    /// A bodiless, idempotent `GET`, refused if its URL would be too long.
    fn get(path_and_query: String, accept: &'static str) -> Result<Self, Error> {
        check_length(&path_and_query)?;
        Ok(RequestSpec {
            method: http::Method::GET,
            path_and_query,
            body: None,
            content_type: None,
            accept,
            idempotent: true,
        })
    }

    /// Refuses a spec that cannot go on the wire as given: a `path_and_query` that does not
    /// start with `/`, is not percent-encoded ASCII (`http` would send the raw bytes), holds a
    /// fragment (which `http` would drop) or is too long; the `CONNECT` method. What else a URI
    /// path may not hold (a space, a control) and the header values are refused where the
    /// request is built, which parses them anyway. The builders here make none of these.
    pub(crate) fn check(&self) -> Result<(), Error> {
        let path = &self.path_and_query;
        if !path.starts_with('/') || !path.is_ascii() || path.as_bytes().contains(&b'#') {
            return Err(Error::invalid_input(format!(
                "`path_and_query` must start with `/`, be percent-encoded ASCII and hold no fragment (`#`), got {path:?}"
            )));
        }
        check_length(path)?;
        if self.method == http::Method::CONNECT {
            return Err(Error::invalid_input("`method` CONNECT opens a tunnel, not a request; it is not sent"));
        }
        Ok(())
    }
}

/// Refuses a `path_and_query` longer than [`MAX_PATH_AND_QUERY_BYTES`].
fn check_length(path_and_query: &str) -> Result<(), Error> {
    if path_and_query.len() > MAX_PATH_AND_QUERY_BYTES {
        return Err(Error::invalid_input(format!(
            "`path_and_query` is {} bytes after encoding, more than the {MAX_PATH_AND_QUERY_BYTES} edges accept; \
             shorten the prompt or use a chat request",
            path_and_query.len()
        )));
    }
    Ok(())
}

/// Everything but the RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded: `/`,
/// `?`, `#`, `%`, `\`, spaces, controls, non-ASCII, and the sub-delimiters some servers treat
/// specially (`+`, `&`, `;`, ...).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes `prompt` as exactly one path segment.
///
/// Everything but `A-Z a-z 0-9 - . _ ~` is encoded (UTF-8, then `%XX`), so `/`, `?`, `#`, `%`,
/// `\`, whitespace, control and non-ASCII characters cannot split or end the path. A prompt of
/// exactly `.` or `..` is encoded as `%2E` / `%2E%2E` so it is not a dot segment that a client
/// library would resolve away (a proxy that normalises `%2E` may still do so: such prompts are
/// better sent through chat). Other dots (`...`, `a..b`) are left alone.
///
/// An empty prompt gives an empty string; the request builders refuse blank prompts.
pub fn encode_segment(prompt: &str) -> String {
    let mut out = String::with_capacity(prompt.len());
    push_segment(&mut out, prompt);
    out
}

fn push_segment(out: &mut String, prompt: &str) {
    match prompt {
        "." => out.push_str("%2E"),
        ".." => out.push_str("%2E%2E"),
        _ => out.extend(utf8_percent_encode(prompt, COMPONENT)),
    }
}

/// Appends `key=value` pairs to a path, encoding each value.
#[derive(Debug)]
struct Query {
    out: String,
    first: bool,
}

impl Query {
    fn new(path: String) -> Self {
        Query { out: path, first: true }
    }

    /// `{base}{prompt as one encoded segment}`; refuses a blank prompt.
    fn with_prompt(base: &str, prompt: &str) -> Result<Self, Error> {
        // What `trim().is_empty()` says, stopping at the first character that is not blank.
        if prompt.chars().all(char::is_whitespace) {
            return Err(Error::invalid_input("prompt is empty; give a prompt with some text"));
        }
        let mut out = String::with_capacity(base.len() + prompt.len() + 16);
        out.push_str(base);
        push_segment(&mut out, prompt);
        Ok(Query::new(out))
    }

    fn push(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        self.out.push(if self.first { '?' } else { '&' });
        self.first = false;
        self.out.push_str(key);
        self.out.push('=');
        let value = value.to_string();
        self.out.extend(utf8_percent_encode(&value, COMPONENT));
        self
    }

    fn push_opt(&mut self, key: &str, value: Option<impl std::fmt::Display>) -> &mut Self {
        if let Some(value) = value {
            self.push(key, value);
        }
        self
    }

    fn push_flag(&mut self, key: &str, on: bool) -> &mut Self {
        if on {
            self.push(key, "true");
        }
        self
    }

    fn finish(self) -> String {
        self.out
    }
}

/// Refuses a value of `name` outside `min..=max` (and NaN).
fn check_range_f32(name: &str, value: Option<f32>, min: f32, max: f32) -> Result<(), Error> {
    match value {
        Some(v) if !(min..=max).contains(&v) => {
            Err(Error::invalid_input(format!("`{name}` must be in {min}..={max}, got {v}")))
        }
        _ => Ok(()),
    }
}

/// Refuses a model name that is present but blank.
fn check_model(model: Option<&str>) -> Result<(), Error> {
    match model {
        Some(m) if m.trim().is_empty() => Err(Error::invalid_input("`model` is empty; leave it unset for the default")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_characters() {
        assert_eq!(encode_segment("a/b"), "a%2Fb");
        assert_eq!(encode_segment("what? #1"), "what%3F%20%231");
        assert_eq!(encode_segment("100% \\ real"), "100%25%20%5C%20real");
        assert_eq!(encode_segment("a+b&c=d;e"), "a%2Bb%26c%3Dd%3Be");
        assert_eq!(encode_segment("line\nbreak\ttab\0"), "line%0Abreak%09tab%00");
        assert_eq!(encode_segment("Keep-it_simple.~"), "Keep-it_simple.~");
    }

    #[test]
    fn encodes_unicode_as_utf8() {
        assert_eq!(encode_segment("café"), "caf%C3%A9");
        assert_eq!(encode_segment("猫"), "%E7%8C%AB");
        assert_eq!(encode_segment("🦊"), "%F0%9F%A6%8A");
    }

    #[test]
    fn dot_segments_are_encoded_but_other_dots_are_not() {
        assert_eq!(encode_segment("."), "%2E");
        assert_eq!(encode_segment(".."), "%2E%2E");
        assert_eq!(encode_segment("..."), "...");
        assert_eq!(encode_segment("a..b"), "a..b");
        assert_eq!(encode_segment("../etc"), "..%2Fetc");
    }

    #[test]
    fn blank_prompts_are_refused() {
        assert_eq!(encode_segment(""), "");
        for blank in ["", "   ", "\n\t"] {
            let err = Query::with_prompt("/text/", blank).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        }
        assert_eq!(Query::with_prompt("/text/", " x ").unwrap().finish(), "/text/%20x%20");
    }

    #[test]
    fn query_encodes_values_and_skips_unset() {
        let mut q = Query::new("/p".into());
        q.push("a", "x y&z=1")
            .push_opt("b", None::<u32>)
            .push_opt("c", Some(2))
            .push_flag("d", false)
            .push_flag("e", true);
        assert_eq!(q.finish(), "/p?a=x%20y%26z%3D1&c=2&e=true");
        assert_eq!(Query::new("/p".into()).finish(), "/p");
    }

    #[test]
    fn too_long_urls_are_refused() {
        assert!(RequestSpec::get("/".repeat(MAX_PATH_AND_QUERY_BYTES), ACCEPT_JSON).is_ok());
        let err = RequestSpec::get("/".repeat(MAX_PATH_AND_QUERY_BYTES + 1), ACCEPT_JSON).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }));
    }

    #[test]
    fn range_checks_refuse_nan() {
        assert!(check_range_f32("t", Some(f32::NAN), 0.0, 2.0).is_err());
        assert!(check_range_f32("t", Some(2.0), 0.0, 2.0).is_ok());
        assert!(check_range_f32("t", None, 0.0, 2.0).is_ok());
    }

    mod props {
        use super::super::encode_segment;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// The segment never contains a delimiter and decodes back to the prompt.
            #[test]
            fn segment_round_trips(prompt in any::<String>()) {
                let enc = encode_segment(&prompt);
                prop_assert!(enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
                prop_assert!(enc != "." && enc != "..");
                let decoded = percent_encoding::percent_decode_str(&enc).decode_utf8().unwrap();
                prop_assert_eq!(decoded, prompt);
            }
        }
    }
}
