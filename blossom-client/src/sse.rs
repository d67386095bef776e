//! Decoding of streamed chat completions (server-sent events), fed with byte chunks.
//!
//! The transport hands over body chunks as they arrive, split anywhere (inside a line, between
//! `\r` and `\n`); [`SseDecoder`] reassembles lines, groups `data:` lines into events as the SSE
//! spec says, and turns each `chat.completion.chunk` into its text delta. Memory stays bounded:
//! a line or event longer than the limit is a stream error, not an ever-growing buffer
//! (Pollinations warns that chunks can be very large, so the default limit is 1 MiB).
//!
//! A stream that ends without `data: [DONE]` was cut off; [`SseDecoder::finish`] says so, so the
//! caller never mistakes a truncated answer for a complete one.
//!
//! ```
//! use blossom_client::{SseDecoder, SseItem};
//! let mut sse = SseDecoder::default();
//! sse.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"con")?;
//! sse.feed(b"tent\":\"lo\"}}]}\r\n\r\ndata: [DONE]\n\n")?;
//! let mut text = String::new();
//! while let Some(item) = sse.next_event() {
//!     match item {
//!         SseItem::Delta(delta) => text.push_str(&delta),
//!         SseItem::Done => break,
//!         _ => {} // later kinds of items
//!     }
//! }
//! sse.finish()?;
//! assert_eq!(text, "Hello");
//! # Ok::<(), blossom_client::Error>(())
//! ```

use std::collections::VecDeque;

use serde_json::Value;

use crate::api::{content_text, error_message, first_choice};
use crate::error::Error;

/// Default longest line or event, in bytes: 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// What a stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseItem {
    /// The next piece of the answer text (never empty). Append it to what came before.
    Delta(String),
    /// `data: [DONE]`: the answer is complete. Nothing follows.
    Done,
}

/// Turns SSE body chunks into [`SseItem`]s.
///
/// Call [`feed`](Self::feed) with each chunk, then drain [`next_event`](Self::next_event) (or
/// iterate); call [`finish`](Self::finish) when the body ends. After an error the decoder stays
/// failed: items decoded before the error can still be drained, but every later `feed` or
/// `finish` returns an error.
#[derive(Debug)]
pub struct SseDecoder {
    /// Longest line, and longest event (its data lines together), in bytes.
    max_line_bytes: usize,
    /// The unfinished line carried over from earlier chunks.
    line: Vec<u8>,
    /// The last chunk ended in `\r`: a `\n` starting the next one belongs to it.
    skip_lf: bool,
    /// No line has completed yet (a UTF-8 BOM may lead the first one).
    first_line: bool,
    /// The data lines of the current event, joined with `\n`.
    data: String,
    /// The current event has at least one data line.
    has_data: bool,
    /// Decoded items not yet taken.
    items: VecDeque<SseItem>,
    /// `[DONE]` was seen.
    done: bool,
    /// An error was returned; the stream is unusable.
    failed: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder::new(DEFAULT_MAX_LINE_BYTES)
    }
}

impl SseDecoder {
    /// A decoder refusing lines (and events) longer than `max_line_bytes` (at least 16).
    pub fn new(max_line_bytes: usize) -> Self {
        SseDecoder {
            max_line_bytes: max_line_bytes.max(16),
            line: Vec::new(),
            skip_lf: false,
            first_line: true,
            data: String::new(),
            has_data: false,
            items: VecDeque::new(),
            done: false,
            failed: false,
        }
    }

    /// Decodes the next chunk of the body.
    ///
    /// Fails with [`Error::Stream`] on a line or event longer than the limit, bytes that are not
    /// UTF-8, data that is not a JSON chunk, or an `error` object sent in the stream. Bytes after
    /// `[DONE]` are ignored.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), Error> {
        if self.failed {
            return Err(Error::stream("the stream already failed"));
        }
        while !chunk.is_empty() && !self.done {
            if std::mem::take(&mut self.skip_lf) && chunk[0] == b'\n' {
                chunk = &chunk[1..];
                continue;
            }
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.check_line_len(end)?;
                    self.skip_lf = chunk[end] == b'\r';
                    let result = if self.line.is_empty() {
                        self.on_line(&chunk[..end])
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(&chunk[..end]);
                        let result = self.on_line(&line);
                        line.clear();
                        self.line = line; // keep the allocation for the next carried-over line
                        result
                    };
                    chunk = &chunk[end + 1..];
                    result.inspect_err(|_| self.failed = true)?;
                }
                None => {
                    self.check_line_len(chunk.len())?;
                    self.line.extend_from_slice(chunk);
                    chunk = &[];
                }
            }
        }
        Ok(())
    }

    /// Ends the stream: decodes a last unterminated line and event, then fails with
    /// [`Error::Stream`] if `[DONE]` never came (the body was cut off).
    pub fn finish(&mut self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::stream("the stream already failed"));
        }
        if !self.done && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.on_line(&line).inspect_err(|_| self.failed = true)?;
        }
        if !self.done {
            self.dispatch().inspect_err(|_| self.failed = true)?;
        }
        if !self.done {
            self.failed = true;
            return Err(Error::stream("stream ended before `data: [DONE]`; the answer is truncated"));
        }
        Ok(())
    }

    /// The next decoded item, if any.
    pub fn next_event(&mut self) -> Option<SseItem> {
        self.items.pop_front()
    }

    /// Whether `[DONE]` has been decoded.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Refuses a line that would grow past the limit with `more` bytes.
    fn check_line_len(&mut self, more: usize) -> Result<(), Error> {
        if self.line.len() + more > self.max_line_bytes {
            self.failed = true;
            self.line = Vec::new(); // give the memory back
            return Err(Error::stream(format!("sse line longer than {} bytes", self.max_line_bytes)));
        }
        Ok(())
    }

    /// Handles one complete line, without its terminator.
    fn on_line(&mut self, mut line: &[u8]) -> Result<(), Error> {
        if std::mem::take(&mut self.first_line) {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return Ok(()); // comment (keep-alive)
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        if field != b"data" {
            return Ok(()); // `event`, `id`, `retry` and unknown fields carry nothing we use
        }
        let value = value.strip_prefix(b" ").unwrap_or(value);
        // As the SSE standard decodes: a byte that is not UTF-8 becomes U+FFFD, not an error.
        let value = String::from_utf8_lossy(value);
        if self.has_data {
            self.data.push('\n');
        }
        if self.data.len() + value.len() > self.max_line_bytes {
            self.data = String::new();
            return Err(Error::stream(format!("sse event longer than {} bytes", self.max_line_bytes)));
        }
        self.data.push_str(&value);
        self.has_data = true;
        Ok(())
    }

    /// Ends the current event: decodes its data, if any.
    fn dispatch(&mut self) -> Result<(), Error> {
        if !std::mem::take(&mut self.has_data) {
            return Ok(());
        }
        let data = std::mem::take(&mut self.data);
        if data.trim() == "[DONE]" {
            self.done = true;
            self.line = Vec::new();
            self.items.push_back(SseItem::Done);
            return Ok(());
        }
        if let Some(delta) = chunk_delta(&data)? {
            self.items.push_back(SseItem::Delta(delta));
        }
        Ok(())
    }
}

/// The text a chunk adds: its first choice's `delta` content, if any. Role-only, usage-only and
/// empty chunks carry none; an `error` chunk is an error.
fn chunk_delta(data: &str) -> Result<Option<String>, Error> {
    // The usual chunk, without a JSON tree of it; the full read below gives the same text.
    match first_choice(data.as_bytes()) {
        Some(choice) => Ok(choice.delta.filter(|delta| !delta.is_empty())),
        None => chunk_delta_in_full(data),
    }
}

/// [`chunk_delta`] through a `serde_json::Value` of the whole chunk: every shape.
fn chunk_delta_in_full(data: &str) -> Result<Option<String>, Error> {
    let chunk: Value = serde_json::from_str(data).map_err(|e| {
        Error::stream(format!("sse data is not a json chunk ({e}): {}", crate::error::clean(data, 100)))
    })?;
    if let Some(choice) = chunk.get("choices").and_then(Value::as_array).and_then(|c| c.first()) {
        let delta = content_text(choice.get("delta").and_then(|d| d.get("content")));
        return Ok((!delta.is_empty()).then_some(delta));
    }
    match error_message(&chunk) {
        Some(message) => Err(Error::stream(format!("server sent an error: {message}"))),
        None => Ok(None),
    }
}

impl Iterator for SseDecoder {
    type Item = SseItem;

    /// Same as [`SseDecoder::next_event`].
    fn next(&mut self) -> Option<SseItem> {
        self.next_event()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(text: &str) -> String {
        let json = serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "openai",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}],
        });
        format!("data: {json}\n\n")
    }

    /// A realistic stream: role chunk, comments, text chunks, a usage chunk, `[DONE]`.
    fn stream(texts: &[&str]) -> String {
        let mut s = String::from(": keep-alive\n\n");
        s.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n");
        for t in texts {
            s.push_str(&chunk(t));
        }
        s.push_str("data: {\"choices\":[],\"usage\":{\"total_tokens\":9}}\n\n");
        s.push_str("data: [DONE]\n\n");
        s
    }

    fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<Vec<SseItem>, Error> {
        let mut sse = SseDecoder::default();
        let mut start = 0;
        let mut items = Vec::new();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        for cut in cuts.into_iter().chain([bytes.len()]) {
            sse.feed(&bytes[start..cut])?;
            items.extend(&mut sse);
            start = cut;
        }
        sse.finish()?;
        items.extend(&mut sse);
        Ok(items)
    }

    fn deltas(texts: &[&str]) -> Vec<SseItem> {
        texts.iter().filter(|t| !t.is_empty()).map(|t| SseItem::Delta((*t).to_owned())).chain([SseItem::Done]).collect()
    }

    #[test]
    fn decodes_a_whole_stream() {
        let texts = ["Hel", "lo", "", ", wörld 🦊", "\n"];
        let items = decode_in_pieces(stream(&texts).as_bytes(), &[]).unwrap();
        assert_eq!(items, deltas(&texts));
    }

    #[test]
    fn a_byte_that_is_not_utf8_becomes_the_replacement_character() {
        let bytes = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\xffb\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(decode_in_pieces(bytes, &[]).unwrap(), [SseItem::Delta("a\u{FFFD}b".into()), SseItem::Done]);
    }

    #[test]
    fn decodes_byte_by_byte() {
        let texts = ["a", "b\r\nc", "猫"];
        let bytes = stream(&texts).replace('\n', "\r\n");
        let cuts: Vec<usize> = (0..bytes.len()).collect();
        assert_eq!(decode_in_pieces(bytes.as_bytes(), &cuts).unwrap(), deltas(&texts));
    }

    #[test]
    fn handles_crlf_split_across_chunks_and_lone_cr() {
        let mut sse = SseDecoder::default();
        sse.feed(b"data:{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\r").unwrap();
        sse.feed(b"\n\r").unwrap();
        assert_eq!(sse.next_event(), Some(SseItem::Delta("x".into())));
        sse.feed(b"\ndata: [DONE]\r\r").unwrap();
        assert_eq!(sse.next_event(), Some(SseItem::Done));
        sse.finish().unwrap();
    }

    #[test]
    fn joins_multi_line_data_and_ignores_other_fields() {
        let text = "\u{feff}event: message\nid: 7\nretry: 100\ndata: {\"choices\":\ndata: [{\"delta\":{\"content\":\"y\"}}]}\nunknown\n\n";
        let mut sse = SseDecoder::default();
        sse.feed(text.as_bytes()).unwrap();
        assert_eq!(sse.next_event(), Some(SseItem::Delta("y".into())));
        assert_eq!(sse.next_event(), None);
    }

    #[test]
    fn done_ends_the_stream_and_later_bytes_are_ignored() {
        let mut sse = SseDecoder::default();
        sse.feed(b"data: [DONE]\n\ndata: not json\n\n").unwrap();
        assert!(sse.is_done());
        assert_eq!(sse.collect::<Vec<_>>(), [SseItem::Done]);
    }

    #[test]
    fn done_without_a_final_blank_line_is_accepted() {
        let mut sse = SseDecoder::default();
        sse.feed(b"data: [DONE]").unwrap();
        assert!(!sse.is_done());
        sse.finish().unwrap();
        assert_eq!(sse.next_event(), Some(SseItem::Done));
    }

    #[test]
    fn a_stream_without_done_is_truncated() {
        let mut sse = SseDecoder::default();
        sse.feed(chunk("partial").as_bytes()).unwrap();
        let err = sse.finish().unwrap_err();
        assert!(matches!(err, Error::Stream { .. }) && err.to_string().contains("truncated"), "{err}");
        assert!(err.is_retryable());
        assert_eq!(sse.next_event(), Some(SseItem::Delta("partial".into())));

        let mut sse = SseDecoder::default();
        sse.feed(b"data: {\"choices\":[{\"delta\":{\"cont").unwrap();
        assert!(matches!(sse.finish(), Err(Error::Stream { .. })));
        assert!(SseDecoder::default().finish().is_err());
    }

    #[test]
    fn over_long_lines_fail_without_buffering_them() {
        let mut sse = SseDecoder::new(64);
        sse.feed(&[b'a'; 40]).unwrap();
        let err = sse.feed(&[b'a'; 40]).unwrap_err();
        assert!(err.to_string().contains("longer than 64 bytes"), "{err}");
        assert_eq!(sse.line.capacity(), 0);
        assert!(sse.feed(b"\n").is_err(), "a failed decoder stays failed");
        assert!(sse.finish().is_err());

        let mut sse = SseDecoder::new(64);
        let long_line = format!("data: {}\n", "b".repeat(100));
        assert!(sse.feed(long_line.as_bytes()).is_err(), "a long line inside one chunk fails too");

        let mut sse = SseDecoder::new(64);
        let many = "data: 0123456789012345678901234567890123456789\n".repeat(3);
        let err = sse.feed(many.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("event longer"), "{err}");
    }

    #[test]
    fn bad_data_is_a_stream_error() {
        for bad in [&b"data: {oops}\n\n"[..], b"data: \xff\n\n", br#"data: {"error":{"message":"upstream 502"}}"#] {
            let mut sse = SseDecoder::default();
            let mut bytes = bad.to_vec();
            bytes.extend_from_slice(b"\n\n");
            let err = sse.feed(&bytes).unwrap_err();
            assert!(matches!(err, Error::Stream { .. }), "{err}");
        }
        let mut sse = SseDecoder::default();
        let err =
            sse.feed(br#"data: {"error":"model overloaded"}"#.as_slice()).and_then(|()| sse.feed(b"\n\n")).unwrap_err();
        assert_eq!(err.to_string(), "stream error: server sent an error: model overloaded");
    }

    #[test]
    fn items_before_an_error_can_still_be_drained() {
        let mut sse = SseDecoder::default();
        let mut bytes = chunk("ok").into_bytes();
        bytes.extend_from_slice(b"data: nope\n\n");
        assert!(sse.feed(&bytes).is_err());
        assert_eq!(sse.next_event(), Some(SseItem::Delta("ok".into())));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// A chunk read the usual way gives what the full read gives.
            #[test]
            fn the_usual_chunk_read_gives_what_the_full_read_gives(data in crate::api::usual_near_body()) {
                let text = |result: Result<Option<String>, Error>| result.map_err(|error| error.to_string());
                prop_assert_eq!(text(chunk_delta(&data)), text(chunk_delta_in_full(&data)));
            }

            /// Any split of any stream decodes to the same items as the whole.
            #[test]
            fn chunk_boundaries_do_not_matter(
                texts in proptest::collection::vec(any::<String>(), 0..6),
                cuts in proptest::collection::vec(any::<usize>(), 0..12),
                crlf in any::<bool>(),
            ) {
                let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                let mut bytes = stream(&texts);
                if crlf {
                    bytes = bytes.replace('\n', "\r\n");
                }
                prop_assert_eq!(decode_in_pieces(bytes.as_bytes(), &cuts).unwrap(), deltas(&texts));
            }

            /// Arbitrary bytes never panic, and a line over the limit is always refused.
            #[test]
            fn arbitrary_bytes_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let mut sse = SseDecoder::new(32);
                let fed = sse.feed(&bytes);
                let longest = bytes.split(|&b| b == b'\n' || b == b'\r').map(<[u8]>::len).max().unwrap_or(0);
                if longest > 32 && bytes.windows(4).all(|w| w != b"DONE") {
                    prop_assert!(fed.is_err());
                }
            }
        }
    }
}
