//! Active health checks and warmup: connections opened or probed off the request path.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use pool_core::Outcome;

use crate::api::RequestSpec;
use crate::client::{BlossomClient, Completion, read_body};
use crate::driver::Shared;
use crate::error::Error;

/// Probes one region with the configured cheap request and reports the result to core.
pub(crate) async fn probe(shared: Arc<Shared>, endpoint: usize) {
    let started = shared.now();
    let limit = shared.config.session.health.check_timeout;
    let passed = matches!(tokio::time::timeout(limit, probe_once(&shared, endpoint)).await, Ok(Ok(())));
    let now = shared.now();
    let mut inner = shared.lock();
    inner.core.on_check_result(now, endpoint, passed, now.saturating_since(started));
    shared.settle(&mut inner);
    drop(inner);
    tracing::debug!(region = %shared.regions[endpoint].name, passed, "health check");
}

async fn probe_once(shared: &Arc<Shared>, endpoint: usize) -> Result<(), Error> {
    let deadline = shared.now() + shared.config.session.pool_timeout;
    let step = {
        let mut inner = shared.lock();
        let checkout = inner.core.pool_mut().checkout(shared.now(), endpoint, deadline);
        let step = shared.step(&mut inner, checkout);
        shared.settle(&mut inner);
        step
    };
    let lease = shared.acquire(endpoint, step, deadline, None).await?;
    let is_h2 = lease.sender.is_h2();
    let mut completion = Completion::lease_only(shared.clone(), lease);
    let spec = RequestSpec {
        method: http::Method::GET,
        path_and_query: shared.config.health_check_path.clone(),
        body: None,
        content_type: None,
        accept: "application/json",
        idempotent: true,
    };
    let request = shared.build_request(endpoint, &spec, &spec.path_and_query, is_h2, false)?;
    let response = completion.sender().send(request).await.map_err(|source| Error::Http { source })?;
    let status = response.status();
    completion.saw_response_head(response.headers());
    let read = read_body(
        &mut response.into_body(),
        1 << 20,
        shared.config.session.async_timeout_sock_read,
        crate::client::BodyBound::Timer(None),
    )
    .await;
    completion.complete(Outcome::Success, read.is_ok());
    // A 429 says the region is alive and busy: rate limits are the limiter's business, not health's.
    if (status == StatusCode::OK || status == StatusCode::TOO_MANY_REQUESTS) && read.is_ok() {
        Ok(())
    } else {
        Err(Error::InvalidResponse { what: format!("health check answered {status}") })
    }
}

/// What [`BlossomClient::warmup`] did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WarmupReport {
    /// Connections opened, per region, with how long each took (connect + TLS + HTTP handshake).
    pub opened: Vec<(String, Duration)>,
    /// Connections that could not be opened, with why.
    pub failed: Vec<(String, String)>,
    /// Connections not attempted because the pool was at its cap.
    pub skipped: usize,
}

impl fmt::Display for WarmupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Warmed up {} connection(s), {} failed, {} skipped (pool at cap)",
            self.opened.len(),
            self.failed.len(),
            self.skipped
        )?;
        for (region, took) in &self.opened {
            writeln!(f, "  {region}: connection warmup {:.2} ms", took.as_secs_f64() * 1000.0)?;
        }
        for (region, error) in &self.failed {
            writeln!(f, "  {region}: failed: {error}")?;
        }
        Ok(())
    }
}

impl BlossomClient {
    /// Opens `per_region` connections to every region ahead of traffic (no generation request is
    /// sent). Afterwards that many concurrent requests per region open no new connection, and the
    /// background task replaces warm connections that close (idle expiry, lifetime, validation)
    /// while the region may take traffic.
    pub async fn warmup(&self, per_region: usize) -> WarmupReport {
        let shared = &self.shared;
        let mut slots = Vec::new();
        let mut skipped = 0;
        {
            let mut inner = shared.lock();
            for endpoint in 0..shared.regions.len() {
                // Closed warm connections are replaced from now on (idle expiry, lifetime, checks).
                inner.core.pool_mut().set_warm_target(endpoint, u32::try_from(per_region).unwrap_or(u32::MAX));
                for reserved in 0..per_region {
                    match inner.core.pool_mut().reserve_warmup(endpoint) {
                        Some(id) => slots.push((endpoint, id)),
                        None => {
                            // The region's cap is reached: so are the rest (and the lock is held).
                            skipped += per_region - reserved;
                            break;
                        }
                    }
                }
            }
        }
        let opens = slots.into_iter().map(|(endpoint, id)| {
            let shared = shared.clone();
            async move {
                let started = shared.now();
                let result = shared.connect(endpoint, id, true, None).await;
                (endpoint, result.map(|_| shared.now().saturating_since(started)))
            }
        });
        let mut report = WarmupReport { opened: Vec::new(), failed: Vec::new(), skipped };
        for (endpoint, result) in futures_util::future::join_all(opens).await {
            let name = shared.regions[endpoint].name.clone();
            match result {
                Ok(took) => report.opened.push((name, took)),
                Err(error) => report.failed.push((name, error.to_string())),
            }
        }
        report
    }
}
