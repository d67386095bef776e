//! The usual shape of a chat answer or stream chunk, read straight from its JSON: the first
//! choice's `message` and `delta` contents when they are strings. A `serde_json::Value` of the
//! whole body allocates for every key and value in it; this allocates the content alone. Any
//! other shape is refused here, and the caller reads that body in full.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A first choice's contents, `None` where absent or `null`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FirstChoice {
    pub(crate) message: Option<String>,
    pub(crate) delta: Option<String>,
}

/// The first choice of `json` when it has the usual shape: an object whose `choices` is an array
/// whose first element is an object, in which `message` and `delta` are absent, `null`, or
/// objects whose `content` is absent, `null` or a string. `None` for anything else. A key given
/// twice counts as its last value, as in a full read.
pub(crate) fn first_choice(json: &[u8]) -> Option<FirstChoice> {
    serde_json::from_slice::<Object<Root>>(json).ok()?.0.0
}

/// The keys read at some level; the others are skipped unread.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Key {
    Choices,
    Message,
    Delta,
    Content,
    #[serde(other)]
    Other,
}

/// What an object of the usual shape holds at one level, filled key by key.
trait Fields: Default {
    /// Takes the value of `key` if this level reads it; `false` leaves it to be skipped.
    fn take<'de, A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<bool, A::Error>;
}

#[derive(Default)]
struct Root(Option<FirstChoice>);

#[derive(Default)]
struct Text(Option<String>);

impl Fields for Root {
    fn take<'de, A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<bool, A::Error> {
        let Key::Choices = key else { return Ok(false) };
        self.0 = map.next_value::<Choices>()?.0;
        Ok(true)
    }
}

impl Fields for FirstChoice {
    fn take<'de, A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<bool, A::Error> {
        let field = match key {
            Key::Message => &mut self.message,
            Key::Delta => &mut self.delta,
            _ => return Ok(false),
        };
        *field = map.next_value::<Option<Object<Text>>>()?.and_then(|text| text.0.0);
        Ok(true)
    }
}

impl Fields for Text {
    fn take<'de, A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<bool, A::Error> {
        let Key::Content = key else { return Ok(false) };
        self.0 = map.next_value::<Option<String>>()?;
        Ok(true)
    }
}

/// A [`Fields`] read from an object only: a struct derived by serde would also take an array of
/// its fields in order, which a full read does not.
struct Object<T>(T);

impl<'de, T: Fields> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Fields> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<T>, A::Error> {
                let mut fields = T::default();
                while let Some(key) = map.next_key::<Key>()? {
                    if !fields.take(key, &mut map)? {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Object(fields))
            }
        }
        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// The first element of an array, read as a choice; the others are skipped unread.
struct Choices(Option<FirstChoice>);

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoicesVisitor;
        impl<'de> Visitor<'de> for ChoicesVisitor {
            type Value = Choices;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices, A::Error> {
                let first = seq.next_element::<Object<FirstChoice>>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Choices(first.map(|choice| choice.0)))
            }
        }
        deserializer.deserialize_seq(ChoicesVisitor)
    }
}

/// Bodies near the usual shape, for tests that hold this read to the full one: random values
/// under its keys, arrays where objects belong, duplicate keys, extra keys.
#[cfg(test)]
pub(crate) mod near_usual {
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("choices"),
            Just("message"),
            Just("delta"),
            Just("content"),
            Just("reasoning_content"),
            Just("error"),
            Just("text"),
            Just("x"),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null"),
            Just("5"),
            Just(r#""""#),
            Just(r#""a""#),
            Just(r#""Par\nis \"x\"""#),
            Just(r#""\u00e9t\u00e9""#),
        ]
        .prop_map(str::to_owned);
        leaf.prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..3).prop_map(|items| format!("[{}]", items.join(","))),
                vec((key(), inner), 0..3).prop_map(|entries| object(&entries)),
            ]
        })
    }

    fn object(entries: &[(&str, String)]) -> String {
        let entries: Vec<String> = entries.iter().map(|(key, value)| format!("\"{key}\":{value}")).collect();
        format!("{{{}}}", entries.join(","))
    }

    /// An object of `entries` then `extra`, or (if `as_array`) an array of their values.
    fn shaped(mut entries: Vec<(&'static str, String)>, extra: Vec<(&'static str, String)>, as_array: bool) -> String {
        entries.extend(extra);
        if as_array {
            let values: Vec<&str> = entries.iter().map(|(_, value)| value.as_str()).collect();
            format!("[{}]", values.join(","))
        } else {
            object(&entries)
        }
    }

    /// A chat answer or stream chunk, or something near one.
    pub(crate) fn body() -> impl Strategy<Value = String> {
        let extra = || vec((key(), value()), 0..2);
        let as_array = || prop::bool::weighted(0.1);
        let text = || {
            (value(), extra(), as_array())
                .prop_map(|(content, extra, as_array)| shaped(vec![("content", content)], extra, as_array))
        };
        let part = || prop_oneof![3 => text(), 1 => value()];
        let choice = (part(), part(), extra(), as_array()).prop_map(|(message, delta, extra, as_array)| {
            shaped(vec![("message", message), ("delta", delta)], extra, as_array)
        });
        let choices =
            vec(prop_oneof![3 => choice, 1 => value()], 0..3).prop_map(|items| format!("[{}]", items.join(",")));
        (prop_oneof![4 => choices, 1 => value()], extra(), as_array())
            .prop_map(|(choices, extra, as_array)| shaped(vec![("choices", choices)], extra, as_array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(message: Option<&str>, delta: Option<&str>) -> Option<FirstChoice> {
        Some(FirstChoice { message: message.map(str::to_owned), delta: delta.map(str::to_owned) })
    }

    #[test]
    fn reads_the_usual_shapes() {
        let answer = br#"{"id":"c1","choices":[{"index":0,"message":{"role":"assistant","content":"Paris.\n"},
            "finish_reason":"stop"},{"message":{"content":[1]}}],"usage":{"total_tokens":14}}"#;
        assert_eq!(first_choice(answer), choice(Some("Paris.\n"), None));
        let chunk = br#"{"choices":[{"delta":{"content":"Pa"}}]}"#;
        assert_eq!(first_choice(chunk), choice(None, Some("Pa")));
        let nulls = br#"{"choices":[{"message":null,"delta":{"content":null}}]}"#;
        assert_eq!(first_choice(nulls), choice(None, None));
        // A key given twice: the last value, as a full read keeps it.
        let twice = br#"{"choices":[{"message":{"content":"a","content":"b"}}],"x":1,"choices":[{"delta":{}}]}"#;
        assert_eq!(first_choice(twice), choice(None, None));
        assert_eq!(
            first_choice(br#"{"choices":[{"message":{"content":"a","content":"b"}}]}"#),
            choice(Some("b"), None)
        );
    }

    #[test]
    fn refuses_every_other_shape() {
        let others: [&[u8]; 9] = [
            br#"{"choices":[]}"#,
            br#"{"error":{"message":"overloaded"}}"#,
            br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"}]}}]}"#,
            br#"{"choices":[{"message":"hi"}]}"#,
            br#"{"choices":[null]}"#,
            // Arrays where objects belong: serde's derived structs would read these in order.
            br#"[[{"content":"x"}]]"#,
            br#"{"choices":[[{"content":"x"}]]}"#,
            br#"{"choices":[{"message":["x"]}]}"#,
            // The last `choices` counts, and it has none.
            br#"{"choices":[{"message":{"content":"a"}}],"choices":[]}"#,
        ];
        for body in others {
            assert_eq!(first_choice(body), None, "{}", String::from_utf8_lossy(body));
        }
    }
}
