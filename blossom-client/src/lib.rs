//! blossom-client: the pooled hyper client that speaks the Pollinations API.
//!
//! Work in progress: the transport lands in a later change. Today this crate re-exports
//! the configuration that the client will accept.

pub use pool_core::PoolConfig;
