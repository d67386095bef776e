//! Model listings: `GET /text/models` and `GET /image/models`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::{ACCEPT_JSON, RequestSpec};
use crate::error::Error;

/// Which listing to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Text (and chat) models.
    Text,
    /// Image models.
    Image,
}

/// One model of a listing. Fields the client does not know are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The name to pass as `model`.
    pub name: String,
    /// A human description, if given.
    #[serde(default)]
    pub description: Option<String>,
    /// Other names the server accepts for this model.
    #[serde(default, deserialize_with = "string_or_list")]
    pub aliases: Vec<String>,
    /// What the model reads (`text`, `image`, `audio`, ...).
    #[serde(default, deserialize_with = "string_or_list")]
    pub input_modalities: Vec<String>,
    /// What the model writes.
    #[serde(default, deserialize_with = "string_or_list")]
    pub output_modalities: Vec<String>,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Model {
    /// A model known only by its name.
    pub fn named(name: impl Into<String>) -> Self {
        Model {
            name: name.into(),
            description: None,
            aliases: Vec::new(),
            input_modalities: Vec::new(),
            output_modalities: Vec::new(),
            extra: Map::new(),
        }
    }
}

/// Accepts `null`, a string or a list of strings.
fn string_or_list<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(de)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// Builds `GET /text/models` or `GET /image/models`.
pub fn models_request(kind: ModelKind) -> RequestSpec {
    let path = match kind {
        ModelKind::Text => "/text/models",
        ModelKind::Image => "/image/models",
    };
    RequestSpec {
        method: http::Method::GET,
        path_and_query: path.to_owned(),
        body: None,
        content_type: None,
        accept: ACCEPT_JSON,
        idempotent: true,
    }
}

/// Parses a model listing: a JSON array of model objects or of plain names, or an OpenAI-style
/// `{"data": [...]}` (where a missing `name` is taken from `id`).
///
/// An empty body is [`Error::EmptyResponse`]; anything else that does not fit, including an
/// entry without a name, is [`Error::InvalidResponse`].
pub fn parse_models(body: &[u8]) -> Result<Vec<Model>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::EmptyResponse);
    }
    let root: Value =
        serde_json::from_slice(body).map_err(|e| Error::invalid_response(format!("model list is not json: {e}")))?;
    let items = match root {
        Value::Array(items) => items,
        Value::Object(mut obj) => match obj.remove("data") {
            Some(Value::Array(items)) => items,
            _ => return Err(Error::invalid_response("model list is an object without a `data` array")),
        },
        _ => return Err(Error::invalid_response("model list is not an array")),
    };
    items.into_iter().enumerate().map(|(i, item)| parse_model(i, item)).collect()
}

fn parse_model(index: usize, item: Value) -> Result<Model, Error> {
    match item {
        Value::String(name) if !name.is_empty() => Ok(Model::named(name)),
        Value::Object(mut obj) => {
            if !obj.get("name").is_some_and(Value::is_string) {
                match obj.get("id").and_then(Value::as_str) {
                    Some(id) => {
                        let id = id.to_owned();
                        obj.insert("name".to_owned(), Value::String(id));
                    }
                    None => return Err(Error::invalid_response(format!("model #{index} has no name"))),
                }
            }
            serde_json::from_value(Value::Object(obj))
                .map_err(|e| Error::invalid_response(format!("model #{index} is malformed: {e}")))
        }
        _ => Err(Error::invalid_response(format!("model #{index} is neither a name nor an object"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_listing_requests() {
        let spec = models_request(ModelKind::Text);
        assert_eq!((spec.method, spec.path_and_query.as_str()), (http::Method::GET, "/text/models"));
        assert_eq!((spec.accept, spec.idempotent, spec.body), ("application/json", true, None));
        assert_eq!(models_request(ModelKind::Image).path_and_query, "/image/models");
    }

    #[test]
    fn parses_objects_and_keeps_unknown_fields() {
        let body = br#"[
            {"name":"openai","description":"OpenAI GPT-4.1 Nano","aliases":["gpt-4.1-nano"],
             "input_modalities":["text","image"],"output_modalities":["text"],"tools":true,"tier":"anonymous"},
            {"name":"mistral","aliases":"mistral-small","input_modalities":null}
        ]"#;
        let models = parse_models(body).unwrap();
        assert_eq!(models.len(), 2);
        assert_eq!(models[0].name, "openai");
        assert_eq!(models[0].description.as_deref(), Some("OpenAI GPT-4.1 Nano"));
        assert_eq!(models[0].aliases, ["gpt-4.1-nano"]);
        assert_eq!(models[0].input_modalities, ["text", "image"]);
        assert_eq!(models[0].output_modalities, ["text"]);
        assert_eq!(models[0].extra.get("tools"), Some(&Value::Bool(true)));
        assert_eq!(models[0].extra.get("tier"), Some(&Value::from("anonymous")));
        assert_eq!(models[1].aliases, ["mistral-small"]);
        assert!(models[1].input_modalities.is_empty() && models[1].description.is_none());
    }

    #[test]
    fn parses_plain_names_and_openai_lists() {
        let models = parse_models(br#"["flux","turbo"]"#).unwrap();
        assert_eq!(models, [Model::named("flux"), Model::named("turbo")]);
        let models = parse_models(br#"{"object":"list","data":[{"id":"openai","object":"model"}]}"#).unwrap();
        assert_eq!(models[0].name, "openai");
        assert_eq!(models[0].extra.get("id"), Some(&Value::from("openai")));
        assert!(parse_models(b"[]").unwrap().is_empty());
    }

    #[test]
    fn refuses_malformed_listings() {
        assert!(matches!(parse_models(b""), Err(Error::EmptyResponse)));
        for bad in [
            &b"not json"[..],
            b"{}",
            b"42",
            br#"[{"description":"x"}]"#,
            b"[1]",
            br#"[""]"#,
            br#"[{"name":"a","aliases":5}]"#,
        ] {
            let err = parse_models(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidResponse { .. }), "{}: {err}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn round_trips_through_serde() {
        let models = parse_models(br#"[{"name":"a","aliases":["b"],"extra_field":1}]"#).unwrap();
        let json = serde_json::to_vec(&models).unwrap();
        assert_eq!(parse_models(&json).unwrap(), models);
    }
}
