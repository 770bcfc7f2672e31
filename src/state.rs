//! Shared application state: cheap clones only.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ackid::AckKeys;
use crate::auth::{Authenticator, ConnectionLimits, RateLimiter};
use crate::config::Config;
use crate::deadletter::DeadLetters;
use crate::declared::DeclaredStreams;
use crate::fanout::Feeds;
use crate::metrics::Metrics;
use crate::nats::Nats;

/// What every handler can reach. axum clones the state several times per request (router,
/// each stateful layer, each extractor), so it is one `Arc`: a clone is a reference count,
/// not a copy of NATS client handles.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state's contents.
pub struct Shared {
    pub nats: Nats,
    pub config: Arc<Config>,
    pub limits: Limits,
    /// Keys that sign and verify ack ids.
    pub ack_keys: AckKeys,
    /// Dead-letter subjects and copies.
    pub dead_letters: DeadLetters,
    /// The streams declared in the configuration, and whether they are ensured (readiness).
    pub declared: DeclaredStreams,
    /// Counters and gauges for `/metrics`.
    pub metrics: Metrics,
    /// The live feeds on this replica, each shared by its live subscribers.
    pub feeds: Feeds,
    /// Verifies client tokens; `None` with `--no-auth`.
    pub auth: Option<Authenticator>,
    /// Per-principal publish rate (messages per second).
    pub publish_limiter: RateLimiter,
    /// Per-principal fetch rate (requests per second).
    pub fetch_limiter: RateLimiter,
    /// Open WebSocket and SSE connections, in total and per principal.
    pub connections: ConnectionLimits,
    /// Where push subscriptions may deliver (`--push-allow`).
    pub push_destinations: crate::destinations::Destinations,
    /// CA certificates push receivers may chain to besides the web roots (`--push-ca`).
    pub push_roots: Vec<reqwest::Certificate>,
    /// Woken when a push subscription was saved through this replica, so that its deliveries
    /// start at once (other replicas follow jetway's bucket).
    pub push_saved: Arc<tokio::sync::Notify>,
    /// Cancelled when the server starts shutting down; long-lived tasks select on it.
    pub shutdown: CancellationToken,
    /// Long-lived tasks (streams, sockets), awaited during shutdown.
    pub tasks: TaskTracker,
}

/// Size limits from the configuration. The single-publish body limit is also bounded by the
/// NATS server's `max_payload`, known only once connected: see [`Limits::body_limit`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single-message publish body as configured (the route's body limit).
    pub max_body: usize,
    /// Largest batch publish body.
    pub max_batch_bytes: usize,
    /// Most messages per batch.
    pub max_batch_messages: usize,
    /// Most messages per page of stored messages.
    pub max_page_messages: usize,
    /// Most messages per fetch.
    pub max_fetch_messages: usize,
    /// Most bytes per fetch.
    pub max_fetch_bytes: usize,
    /// Longest fetch long-poll.
    pub max_fetch_wait: std::time::Duration,
    /// Most acks per request.
    pub max_acks: usize,
}

impl Limits {
    pub fn new(config: &Config) -> Self {
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Self {
            max_body: to_usize(config.max_body_bytes),
            max_batch_bytes: to_usize(config.max_batch_bytes),
            max_batch_messages: config.max_batch_messages,
            max_page_messages: config.max_page_messages,
            max_fetch_messages: config.max_fetch_messages,
            max_fetch_bytes: to_usize(config.max_fetch_bytes),
            max_fetch_wait: config.max_fetch_wait,
            max_acks: config.max_acks,
        }
    }

    /// The largest single-message body accepted now: the configured limit, never more than
    /// the server's `max_payload` once it is known (`None` before the first connection, when
    /// a publish answers 503 anyway: a 413 then could be wrong and would say "do not retry").
    pub fn body_limit(&self, server_max_payload: Option<usize>) -> usize {
        match server_max_payload {
            Some(server) if server > 0 => self.max_body.min(server),
            _ => self.max_body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_limit_is_the_configured_one_until_the_server_is_known_then_never_more() {
        let mut config = Config::defaults();
        config.max_body_bytes = 8 << 20;
        let limits = Limits::new(&config);

        assert_eq!(limits.body_limit(None), 8 << 20);
        assert_eq!(limits.body_limit(Some(1 << 20)), 1 << 20);
        assert_eq!(limits.body_limit(Some(64 << 20)), 8 << 20);
    }
}
