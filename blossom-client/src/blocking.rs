//! A blocking client, as reqwest has: the async client on a runtime of its own.
//!
//! Configured by the `sync_*` fields: `sync_pool_maxsize` connections per region,
//! `sync_timeout_connect`, `sync_timeout_read`, and `sync_pool_block` (wait for a connection, or
//! fail at once with a pool-full error). Called from inside an async runtime it still works, but
//! it blocks the caller's thread: on a multi-thread runtime the worker hands its other tasks to
//! another thread first (`tokio::task::block_in_place`); on a current-thread runtime nothing else
//! runs until the call ends. Use [`BlossomClient::as_async`] there.

use std::future::Future;
use std::sync::Arc;

use crate::api::{ChatOptions, Image, ImageOptions, Message, Model, ModelKind, RequestSpec, TextOptions};
use crate::client::Reply;
use crate::config::ClientConfig;
use crate::error::Error;
use crate::stats::Stats;

/// The blocking client. Cheap to clone; clones share the pool.
#[derive(Debug, Clone)]
pub struct BlossomClient {
    inner: crate::BlossomClient,
    runtime: Arc<OwnRuntime>,
}

/// The client's runtime, shut down without waiting when the last clone goes: dropping a runtime
/// waits for its blocking threads (a name lookup), and inside an async context it panics.
#[derive(Debug)]
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("taken only on drop")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl BlossomClient {
    /// A client configured from the environment.
    pub fn new() -> Result<Self, Error> {
        let mut config = ClientConfig::default();
        config.apply_env()?;
        Self::with_config(config)
    }

    /// A client from a configuration; its `sync_*` settings are the ones in force.
    pub fn with_config(mut config: ClientConfig) -> Result<Self, Error> {
        config.validate()?;
        config.session = config.session.for_blocking();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("blossom-blocking")
            .enable_all()
            .build()
            .map_err(|e| Error::Config { field: "runtime".into(), problem: e.to_string() })?;
        let runtime = OwnRuntime(Some(runtime));
        let inner = {
            let _entered = runtime.get().enter();
            crate::BlossomClient::builder().config(config).build()?
        };
        Ok(BlossomClient { inner, runtime: Arc::new(runtime) })
    }

    /// Runs `call` to its end on the client's runtime. Inside another runtime, where `block_on`
    /// would panic: on a multi-thread one, the caller's worker first hands its other tasks to
    /// another thread (`block_in_place`); on a current-thread one, which has no other, the call
    /// runs on a thread of its own while the caller's waits.
    fn run<T: Send>(&self, call: impl Future<Output = Result<T, Error>> + Send) -> Result<T, Error> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let runtime = self.runtime.get();
        match Handle::try_current().map(|caller| caller.runtime_flavor()) {
            Err(_) => runtime.block_on(call),
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| runtime.block_on(call)),
            Ok(_) => std::thread::scope(|scope| scope.spawn(|| runtime.block_on(call)).join())
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        }
    }

    /// Generates text for a prompt.
    pub fn generate(&self, prompt: &str, options: &TextOptions) -> Result<String, Error> {
        self.run(self.inner.text().generate_with(prompt, options))
    }

    /// Answers a conversation.
    pub fn chat(&self, messages: &[Message], options: &ChatOptions) -> Result<String, Error> {
        self.run(self.inner.text().chat_with(messages, options))
    }

    /// Generates an image.
    pub fn image(&self, prompt: &str, options: &ImageOptions) -> Result<Image, Error> {
        self.run(self.inner.image().generate(prompt, options))
    }

    /// Lists models.
    pub fn models(&self, kind: ModelKind) -> Result<Vec<Model>, Error> {
        self.run(self.inner.models(kind))
    }

    /// Sends a request as it is and returns the 2xx answer unparsed (see
    /// [`crate::BlossomClient::send`]).
    pub fn send(&self, spec: &RequestSpec) -> Result<Reply, Error> {
        self.run(self.inner.send(spec))
    }

    /// Statistics.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The async client underneath (same pool).
    pub fn as_async(&self) -> &crate::BlossomClient {
        &self.inner
    }
}
