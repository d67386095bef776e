//! Chat completions: `POST /v1/chat/completions` in the OpenAI shape.

use serde::Serialize;
use serde_json::Value;

use super::{ACCEPT_JSON, RequestSpec, check_model, check_range_f32, first_choice};
use crate::error::{Error, clean};

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user's turn.
    User,
    /// The model's earlier answers.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message { role, content: content.into() }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message::new(Role::Assistant, content)
    }
}

/// Options of a chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatOptions {
    /// Model name. Default: `openai`.
    pub model: String,
    /// Sampling temperature, in `0.0..=2.0`. Default: unset.
    pub temperature: Option<f32>,
    /// Upper bound on generated tokens (at least 1). Default: unset.
    pub max_tokens: Option<u32>,
    /// Seed for reproducible output. Default: unset.
    pub seed: Option<u64>,
    /// Nucleus sampling mass, in `0.0..=1.0`. Default: unset.
    pub top_p: Option<f32>,
    /// Sequences that end the answer. Default: none.
    pub stop: Vec<String>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            model: "openai".to_owned(),
            temperature: None,
            max_tokens: None,
            seed: None,
            top_p: None,
            stop: Vec::new(),
        }
    }
}

/// The request body, in the OpenAI shape.
#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

/// Builds `POST /v1/chat/completions` with a JSON body in the OpenAI shape (`"stream": true`
/// when `stream`, answered as server-sent events: decode with [`crate::sse::SseDecoder`]).
///
/// Refuses an empty conversation, a blank model, a temperature outside `0..=2`, a `top_p`
/// outside `0..=1` and `max_tokens` of 0.
pub fn chat_request(messages: &[Message], options: &ChatOptions, stream: bool) -> Result<RequestSpec, Error> {
    if messages.is_empty() {
        return Err(Error::invalid_input("`messages` is empty; give at least one user message"));
    }
    check_model(Some(&options.model))?;
    check_range_f32("temperature", options.temperature, 0.0, 2.0)?;
    check_range_f32("top_p", options.top_p, 0.0, 1.0)?;
    if options.max_tokens == Some(0) {
        return Err(Error::invalid_input("`max_tokens` must be at least 1, got 0"));
    }
    let body = ChatBody {
        model: &options.model,
        messages,
        temperature: options.temperature,
        max_tokens: options.max_tokens,
        seed: options.seed,
        top_p: options.top_p,
        stop: &options.stop,
        stream,
    };
    let json =
        serde_json::to_vec(&body).map_err(|e| Error::invalid_input(format!("cannot encode chat request: {e}")))?;
    Ok(RequestSpec {
        method: http::Method::POST,
        path_and_query: "/v1/chat/completions".to_owned(),
        body: Some(json.into()),
        content_type: Some("application/json"),
        accept: if stream { "text/event-stream" } else { ACCEPT_JSON },
        idempotent: true,
    })
}

/// The answer text of a `chat.completion` body: `choices[0].message.content` (a string, or an
/// array of `{"text"}` parts), else `reasoning_content`.
///
/// An empty body, or an answer with neither, is [`Error::EmptyResponse`] (Pollinations sometimes
/// sends empty 200s; a retry usually succeeds). Invalid JSON, or JSON without `choices`, is
/// [`Error::InvalidResponse`] (naming the body's `error` message if it has one).
pub fn parse_chat_response(body: &[u8]) -> Result<String, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::EmptyResponse);
    }
    // The usual answer, without a JSON tree of it; the full read below gives the same text.
    match first_choice(body).and_then(|choice| choice.message).filter(|text| !text.is_empty()) {
        Some(text) => Ok(text),
        None => parse_chat_in_full(body),
    }
}

/// [`parse_chat_response`] through a `serde_json::Value` of the whole body: every shape.
fn parse_chat_in_full(body: &[u8]) -> Result<String, Error> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| Error::invalid_response(format!("chat response is not json: {e}")))?;
    let Some(first) = root.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else {
        return Err(Error::invalid_response(match error_message(&root) {
            Some(msg) => format!("chat response has no choices; it says: {msg}"),
            None => "chat response has no choices".to_owned(),
        }));
    };
    let message = first.get("message").unwrap_or(&Value::Null);
    let content = content_text(message.get("content"));
    if !content.is_empty() {
        return Ok(content);
    }
    let reasoning = content_text(message.get("reasoning_content"));
    if !reasoning.is_empty() {
        return Ok(reasoning);
    }
    Err(Error::EmptyResponse)
}

/// The text of a `content` value: a string, or the concatenated `text` of an array of parts.
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.as_str().or_else(|| p.get("text").and_then(Value::as_str))).collect()
        }
        _ => String::new(),
    }
}

/// The `error` message of a JSON body (`{"error": "..."}` or `{"error": {"message": "..."}}`),
/// cleaned and truncated.
pub(crate) fn error_message(root: &Value) -> Option<String> {
    let err = root.get("error")?;
    let text = err.as_str().or_else(|| err.get("message").and_then(Value::as_str))?;
    Some(clean(text, 200))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(spec: &RequestSpec) -> Value {
        serde_json::from_slice(spec.body.as_ref().unwrap()).unwrap()
    }

    #[test]
    fn builds_the_openai_shape() {
        let messages =
            [Message::system("be brief"), Message::user("hi"), Message::assistant("hello"), Message::user("and?")];
        let spec = chat_request(&messages, &ChatOptions::default(), false).unwrap();
        assert_eq!(spec.method, http::Method::POST);
        assert_eq!(spec.path_and_query, "/v1/chat/completions");
        assert_eq!(
            (spec.content_type, spec.accept, spec.idempotent),
            (Some("application/json"), "application/json", true)
        );
        assert_eq!(
            body_json(&spec),
            serde_json::json!({
                "model": "openai",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "and?"},
                ],
            })
        );
    }

    #[test]
    fn includes_set_options_and_stream() {
        let options = ChatOptions {
            model: "mistral".into(),
            temperature: Some(0.7),
            max_tokens: Some(256),
            seed: Some(9),
            top_p: Some(0.9),
            stop: vec!["\n\n".into()],
        };
        let spec = chat_request(&[Message::user("x")], &options, true).unwrap();
        assert_eq!(spec.accept, "text/event-stream");
        let text = std::str::from_utf8(spec.body.as_ref().unwrap()).unwrap();
        assert!(text.contains(r#""temperature":0.7,"#), "{text}"); // f32 printed short, not 0.699999988
        assert_eq!(
            body_json(&spec),
            serde_json::json!({
                "model": "mistral",
                "messages": [{"role": "user", "content": "x"}],
                "temperature": 0.7,
                "max_tokens": 256,
                "seed": 9,
                "top_p": 0.9,
                "stop": ["\n\n"],
                "stream": true,
            })
        );
    }

    #[test]
    fn refuses_bad_requests() {
        let user = [Message::user("x")];
        assert!(matches!(chat_request(&[], &ChatOptions::default(), false), Err(Error::InvalidInput { .. })));
        let bad = [
            ChatOptions { model: String::new(), ..Default::default() },
            ChatOptions { temperature: Some(3.0), ..Default::default() },
            ChatOptions { top_p: Some(1.5), ..Default::default() },
            ChatOptions { max_tokens: Some(0), ..Default::default() },
        ];
        for options in bad {
            assert!(matches!(chat_request(&user, &options, false), Err(Error::InvalidInput { .. })), "{options:?}");
        }
    }

    #[test]
    fn parses_a_real_looking_completion() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1735689600,"model":"gpt-4.1-nano",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Paris.","refusal":null},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}"#;
        assert_eq!(parse_chat_response(body).unwrap(), "Paris.");
    }

    #[test]
    fn falls_back_to_reasoning_content_and_parts() {
        let body =
            br#"{"choices":[{"message":{"role":"assistant","content":null,"reasoning_content":"thinking..."}}]}"#;
        assert_eq!(parse_chat_response(body).unwrap(), "thinking...");
        let body = br#"{"choices":[{"message":{"content":"","reasoning_content":"r"}}]}"#;
        assert_eq!(parse_chat_response(body).unwrap(), "r");
        let body = br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#;
        assert_eq!(parse_chat_response(body).unwrap(), "ab");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        #[test]
        fn the_usual_read_gives_what_the_full_read_gives(body in crate::api::usual_near_body()) {
            let answer = |result: Result<String, Error>| result.map_err(|error| error.to_string());
            proptest::prop_assert_eq!(
                answer(parse_chat_response(body.as_bytes())),
                answer(parse_chat_in_full(body.as_bytes()))
            );
        }
    }

    #[test]
    fn classifies_bad_bodies() {
        assert!(matches!(parse_chat_response(b""), Err(Error::EmptyResponse)));
        assert!(matches!(parse_chat_response(b"\r\n"), Err(Error::EmptyResponse)));
        assert!(matches!(
            parse_chat_response(br#"{"choices":[{"message":{"content":""}}]}"#),
            Err(Error::EmptyResponse)
        ));
        assert!(matches!(parse_chat_response(br#"{"choices":[{"finish_reason":"stop"}]}"#), Err(Error::EmptyResponse)));
        for bad in [&b"{\"choices\":[{\"mess"[..], b"<html>oops</html>", b"{}", br#"{"choices":[]}"#, b"[1]"] {
            let err = parse_chat_response(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidResponse { .. }), "{err}");
            assert!(err.is_retryable());
        }
        let err = parse_chat_response(br#"{"error":{"message":"model overloaded"}}"#).unwrap_err();
        assert_eq!(err.to_string(), "invalid response: chat response has no choices; it says: model overloaded");
    }
}
