//! Reading a chat answer's text: blossom's `parse_chat_response` against the baseline of a
//! `serde_json::Value` of the body (what the client read before: a tree of every key and value),
//! on the same OpenAI-shaped answer, in the same run.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;

/// An OpenAI-shaped chat answer of about 800 bytes (one line: pieces joined at compile time).
const ANSWER: &str = concat!(
    r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"#,
    r#""model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"#,
    r#""The capital of France is Paris. It is known for the Eiffel Tower, the Louvre, and its caf\u00e9s; "#,
    r#"about 2.1 million people live in the city itself.","refusal":null,"annotations":[]},"#,
    r#""logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"#,
    r#""total_tokens":1163,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"#,
    r#""completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"#,
    r#""rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#,
);

/// The baseline: the body as a `Value`, then the first choice's content.
fn through_value(body: &[u8]) -> String {
    let root: Value = serde_json::from_slice(body).expect("valid json");
    root["choices"][0]["message"]["content"].as_str().expect("a string").to_owned()
}

fn parse(c: &mut Criterion) {
    let answer = ANSWER.as_bytes();
    assert_eq!(blossom_client::parse_chat_response(answer).unwrap(), through_value(answer));
    let mut group = c.benchmark_group("parse");
    group.bench_function("chat_answer", |b| b.iter(|| blossom_client::parse_chat_response(black_box(answer))));
    group.bench_function("chat_answer_as_value", |b| b.iter(|| through_value(black_box(answer))));
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
