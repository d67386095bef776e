//! The Pollinations API on the client: text, chat (plain and streamed), image, models.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use http::header;
use http_body_util::BodyExt;
use pool_core::{Analysis, Outcome, SessionConfig};

use crate::api::{
    ChatOptions, Image, ImageOptions, Message, Model, ModelKind, TextOptions, chat_request, check_image_response,
    image_request, image_url, models_request, parse_chat_response, parse_models, parse_text_response,
    simple_text_request,
};
use crate::client::{BlossomClient, BodyBound, Completion, DRAIN_LIMIT, Streaming, read_body};
use crate::error::{Error, TimeoutPhase};
use crate::sse::{SseDecoder, SseItem};

/// Text and chat generation: `client.text()`.
#[derive(Debug, Clone, Copy)]
pub struct TextApi<'a> {
    client: &'a BlossomClient,
}

/// Image generation: `client.image()`.
#[derive(Debug, Clone, Copy)]
pub struct ImageApi<'a> {
    client: &'a BlossomClient,
}

/// A stream of text deltas from a streamed chat.
pub type TextStream = Pin<Box<dyn Stream<Item = Result<String, Error>> + Send>>;

impl BlossomClient {
    /// Text and chat generation.
    pub fn text(&self) -> TextApi<'_> {
        TextApi { client: self }
    }

    /// Image generation.
    pub fn image(&self) -> ImageApi<'_> {
        ImageApi { client: self }
    }

    /// The models available for text or images.
    pub async fn models(&self, kind: ModelKind) -> Result<Vec<Model>, Error> {
        self.execute(&models_request(kind), &|reply| parse_models(&reply.body)).await
    }
}

impl TextApi<'_> {
    /// Generates text for a prompt with the default model (`GET /text/{prompt}`).
    pub async fn generate(&self, prompt: &str) -> Result<String, Error> {
        // Not through `generate_with`: one future level less on the hottest call.
        let spec = simple_text_request(prompt, &TextOptions::default())?;
        self.client.execute(&spec, &|reply| parse_text_response(&reply.body)).await
    }

    /// Generates text with options (model, max_tokens, temperature, seed, system).
    pub async fn generate_with(&self, prompt: &str, options: &TextOptions) -> Result<String, Error> {
        let spec = simple_text_request(prompt, options)?;
        self.client.execute(&spec, &|reply| parse_text_response(&reply.body)).await
    }

    /// Answers a conversation (`POST /v1/chat/completions`).
    pub async fn chat(&self, messages: &[Message]) -> Result<String, Error> {
        self.chat_with(messages, &ChatOptions::default()).await
    }

    /// Answers a conversation with options.
    pub async fn chat_with(&self, messages: &[Message], options: &ChatOptions) -> Result<String, Error> {
        let spec = chat_request(messages, options, false)?;
        self.client.execute(&spec, &|reply| parse_chat_response(&reply.body)).await
    }

    /// Streams the answer as text deltas; ends on the server's `[DONE]`. Retries happen only
    /// before the first byte; then the read timeout applies between chunks, and lines are bounded.
    pub fn chat_stream(&self, messages: &[Message], options: &ChatOptions) -> TextStream {
        let client = self.client.clone();
        let spec = chat_request(messages, options, true);
        Box::pin(futures_util::stream::unfold(State::Start(client, spec), |state| async move {
            match state {
                State::Start(_, Err(error)) => Some((Err(error), State::Done)),
                State::Start(client, Ok(spec)) => match client.execute_streaming(&spec).await {
                    Err(error) => Some((Err(error), State::Done)),
                    Ok(streaming) => next_delta(Reading::new(streaming)).await,
                },
                State::Reading(reading) => next_delta(*reading).await,
                State::Done => None,
            }
        }))
    }
}

enum State {
    Start(BlossomClient, Result<crate::api::RequestSpec, Error>),
    Reading(Box<Reading>),
    Done,
}

struct Reading {
    body: crate::transport::Body,
    decoder: SseDecoder,
    done: Option<Completion<'static>>,
    read_timeout: Duration,
    ended: bool,
}

impl Reading {
    fn new(streaming: Streaming) -> Self {
        let read_timeout = streaming.done.read_timeout();
        let decoder = SseDecoder::new(streaming.done.max_line_bytes());
        Reading { body: streaming.body, decoder, done: Some(streaming.done), read_timeout, ended: false }
    }

    fn fail(mut self, mut error: Error, outcome: Outcome) -> Option<(Result<String, Error>, State)> {
        if let Some(mut done) = self.done.take() {
            // The stream's text may echo the key.
            done.redact(&mut error);
            done.fail(&error, outcome);
        }
        Some((Err(error), State::Done))
    }
}

async fn next_delta(mut r: Reading) -> Option<(Result<String, Error>, State)> {
    loop {
        match r.decoder.next_event() {
            Some(SseItem::Delta(text)) => return Some((Ok(text), State::Reading(Box::new(r)))),
            Some(SseItem::Done) => {
                // The caller's stream ends here, whatever follows on the wire.
                let mut done = r.done.take()?;
                if done.is_h2() {
                    // The stream alone: dropping the rest resets it, and the connection serves on.
                    drop(r.body);
                    done.complete(Outcome::Success, true);
                    return None;
                }
                // HTTP/1.1: the rest of the body is normally nothing, its end already read.
                let mut body = r.body;
                if let Some(reusable) = ended_now(&mut body) {
                    done.complete(Outcome::Success, reusable);
                    return None;
                }
                // Else the call is counted now, and the rest is drained in the background as a
                // redirect's is: the connection is reused only if it ends, in time and small.
                let mut connection = done.split_connection();
                done.complete(Outcome::Success, true);
                let read_timeout = r.read_timeout;
                tokio::spawn(async move {
                    let rest = read_body(&mut body, DRAIN_LIMIT, read_timeout, BodyBound::Timer(None)).await;
                    connection.complete(Outcome::Success, rest.is_ok());
                });
                return None;
            }
            None if r.ended => {
                return match r.decoder.finish() {
                    Err(error) => r.fail(error, Outcome::Failure),
                    Ok(()) if r.decoder.is_done() => {
                        if let Some(mut done) = r.done.take() {
                            done.complete(Outcome::Success, true);
                        }
                        None
                    }
                    Ok(()) => {
                        let error = Error::Stream { what: "the stream ended before [DONE]".into(), source: None };
                        r.fail(error, Outcome::Failure)
                    }
                };
            }
            None => {}
        }
        match tokio::time::timeout(r.read_timeout, r.body.frame()).await {
            Err(_) => {
                let error = Error::Timeout { phase: TimeoutPhase::Read, limit: r.read_timeout };
                return r.fail(error, Outcome::Timeout);
            }
            Ok(None) => r.ended = true,
            Ok(Some(Err(e))) => {
                let error = Error::Stream { what: "the stream broke off".into(), source: Some(e) };
                return r.fail(error, Outcome::Failure);
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if let Err(error) = r.decoder.feed(&data) {
                        return r.fail(error, Outcome::Failure);
                    }
                }
            }
        }
    }
}

/// Reads what is already there of `body`: whether it ended cleanly (`None` while more may come).
fn ended_now(body: &mut crate::transport::Body) -> Option<bool> {
    use futures_util::FutureExt;
    loop {
        match body.frame().now_or_never()? {
            None => return Some(true),
            Some(Ok(_)) => {}
            Some(Err(_)) => return Some(false),
        }
    }
}

impl ImageApi<'_> {
    /// Generates an image (`GET /image/{prompt}`): its bytes and content type.
    pub async fn generate(&self, prompt: &str, options: &ImageOptions) -> Result<Image, Error> {
        let spec = image_request(prompt, options)?;
        self.client
            .execute(&spec, &|reply| {
                let content_type = reply.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                check_image_response(content_type, reply.body)
            })
            .await
    }

    /// The URL of an image, for a browser or an `<img>` (the first region's base URL; never
    /// carries the API key).
    pub fn url(&self, prompt: &str, options: &ImageOptions) -> Result<String, Error> {
        let region = &self.client.shared.regions[0];
        let base = format!("{}://{}{}", region.scheme(), region.uri_authority, region.prefix);
        image_url(&base, prompt, options)
    }

    /// Generates an image and writes it to `path`.
    pub async fn save(&self, prompt: &str, options: &ImageOptions, path: impl AsRef<Path>) -> Result<Image, Error> {
        let image = self.generate(prompt, options).await?;
        let path = path.as_ref();
        tokio::fs::write(path, &image.bytes)
            .await
            .map_err(|e| Error::InvalidInput { what: format!("cannot write {}: {e}", path.display()) })?;
        Ok(image)
    }
}

/// The optimizer's view of the traffic seen: the analysis and the configuration it recommends.
#[derive(Debug, Clone)]
pub struct Optimization {
    /// `None` until a request has finished.
    pub analysis: Option<Analysis>,
    /// The client's configuration with the recommended pool sizes and timeouts applied.
    pub recommended: SessionConfig,
}

impl Optimization {
    pub(crate) fn from_core(core: &pool_core::Core) -> Self {
        let analysis = core.optimizer().analysis();
        let r = core.optimizer().recommendation();
        let recommended = SessionConfig {
            sync_pool_connections: r.sync_pool_connections,
            sync_pool_maxsize: r.sync_pool_maxsize,
            async_limit_total: r.async_limit_total,
            async_limit_per_host: r.async_limit_per_host.min(r.async_limit_total),
            sync_timeout_read: r.read_timeout,
            async_timeout_sock_read: r.read_timeout,
            timeout: r.total_timeout,
            ..core.config().clone()
        };
        Optimization { analysis, recommended }
    }
}

impl std::fmt::Display for Optimization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.analysis {
            None => write!(f, "No metrics available for analysis"),
            Some(analysis) => {
                writeln!(f, "{analysis}")?;
                write!(f, "Optimal pool size: {}", self.recommended.sync_pool_connections)
            }
        }
    }
}
