//! Simple text generation: `GET /text/{prompt}`, answered in `text/plain`.

use super::{Query, RequestSpec, check_model, check_range_f32};
use crate::error::Error;

/// Options of a simple text request. `Default` sends only the prompt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextOptions {
    /// Model name (`openai`, `mistral`, ...). Default: unset (the server's default).
    pub model: Option<String>,
    /// Upper bound on generated tokens, sent as `max_tokens` (servers that do not know it ignore
    /// it). Default: unset.
    pub max_tokens: Option<u32>,
    /// Sampling temperature, in `0.0..=2.0`. Default: unset.
    pub temperature: Option<f32>,
    /// Seed for reproducible output. Default: unset.
    pub seed: Option<u64>,
    /// System prompt. Default: unset.
    pub system: Option<String>,
    /// Ask for a JSON answer (`json=true`). Default: false.
    pub json: bool,
}

/// Builds `GET /text/{prompt}?model=..&seed=..&system=..&temperature=..&max_tokens=..&json=true`
/// (unset options are left out; every value is percent-encoded).
///
/// Refuses a blank prompt, a blank model, a temperature outside `0..=2`, `max_tokens` of 0 and
/// URLs longer than [`super::MAX_PATH_AND_QUERY_BYTES`].
pub fn simple_text_request(prompt: &str, options: &TextOptions) -> Result<RequestSpec, Error> {
    check_model(options.model.as_deref())?;
    check_range_f32("temperature", options.temperature, 0.0, 2.0)?;
    if options.max_tokens == Some(0) {
        return Err(Error::invalid_input("`max_tokens` must be at least 1, got 0"));
    }
    let mut q = Query::with_prompt("/text/", prompt)?;
    q.push_opt("model", options.model.as_deref())
        .push_opt("seed", options.seed)
        .push_opt("system", options.system.as_deref())
        .push_opt("temperature", options.temperature)
        .push_opt("max_tokens", options.max_tokens)
        .push_flag("json", options.json);
    let accept = if options.json { "application/json" } else { "text/plain" };
    RequestSpec::get(q.finish(), accept)
}

/// The text of a simple text response; refuses an empty body ([`Error::EmptyResponse`]) and
/// one that is not UTF-8 ([`Error::InvalidResponse`]).
pub fn parse_text_response(body: &[u8]) -> Result<String, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::EmptyResponse);
    }
    String::from_utf8(body.to_vec()).map_err(|e| Error::invalid_response(format!("text response is not utf-8: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_bare_request() {
        let spec = simple_text_request("hello world", &TextOptions::default()).unwrap();
        assert_eq!(spec.method, http::Method::GET);
        assert_eq!(spec.path_and_query, "/text/hello%20world");
        assert_eq!((spec.body, spec.content_type, spec.accept, spec.idempotent), (None, None, "text/plain", true));
    }

    #[test]
    fn builds_the_query_in_a_stable_order() {
        let options = TextOptions {
            model: Some("openai-large".into()),
            max_tokens: Some(100),
            temperature: Some(0.7),
            seed: Some(42),
            system: Some("be brief & kind".into()),
            json: true,
        };
        let spec = simple_text_request("2+2=?", &options).unwrap();
        assert_eq!(
            spec.path_and_query,
            "/text/2%2B2%3D%3F?model=openai-large&seed=42&system=be%20brief%20%26%20kind&temperature=0.7&max_tokens=100&json=true"
        );
        assert_eq!(spec.accept, "application/json");
    }

    #[test]
    fn refuses_bad_options() {
        let bad = [
            TextOptions { temperature: Some(2.5), ..Default::default() },
            TextOptions { temperature: Some(-0.1), ..Default::default() },
            TextOptions { temperature: Some(f32::NAN), ..Default::default() },
            TextOptions { max_tokens: Some(0), ..Default::default() },
            TextOptions { model: Some(" ".into()), ..Default::default() },
        ];
        for options in bad {
            let err = simple_text_request("hi", &options).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{options:?}: {err}");
            assert!(!err.is_retryable());
        }
        assert!(simple_text_request("", &TextOptions::default()).is_err());
        assert!(simple_text_request("hi", &TextOptions { temperature: Some(2.0), ..Default::default() }).is_ok());
    }

    #[test]
    fn refuses_prompts_too_long_for_a_url() {
        let err = simple_text_request(&"猫".repeat(2000), &TextOptions::default()).unwrap_err();
        assert!(err.to_string().contains("chat"), "{err}");
        assert!(simple_text_request(&"a".repeat(5000), &TextOptions::default()).is_ok());
    }

    #[test]
    fn parses_text_bodies() {
        assert_eq!(parse_text_response("Paris.".as_bytes()).unwrap(), "Paris.");
        assert!(matches!(parse_text_response(b""), Err(Error::EmptyResponse)));
        assert!(matches!(parse_text_response(b" \n"), Err(Error::EmptyResponse)));
        assert!(matches!(parse_text_response(&[0xff, 0x00]), Err(Error::InvalidResponse { .. })));
    }
}
