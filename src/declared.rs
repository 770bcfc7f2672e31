//! Streams declared in the configuration (`[[streams]]`) and whether they are ensured.
//!
//! When NATS answers at start-up, [`DeclaredStreams::ensure_at_start`] ensures them before
//! serving, and a declaration that conflicts with the existing stream stops start-up. When it
//! does not (NATS not reachable yet, JetStream without a leader), jetway serves anyway and a
//! tracked task ensures the rest once JetStream answers, retrying with backoff. A conflict
//! found then cannot stop start-up: it is logged as an error, keeps `/readyz` at 503 with the
//! reason, and is checked again, so fixing the stream (or the file) makes jetway ready.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::StreamSpec;
use crate::nats::Nats;
use crate::nats::streams::{EnsureError, PutOutcome};

/// First delay between rounds while JetStream does not answer or a stream conflicts.
const RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest delay between rounds (also how often a conflict is checked again).
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often the task looks at the connection while it is down (async-nats reconnects with
/// its own backoff; this only notices it).
const CONNECTION_POLL: Duration = Duration::from_millis(250);

/// The declared streams and what is known about them. Cheap to clone.
#[derive(Clone)]
pub struct DeclaredStreams {
    specs: Arc<[StreamSpec]>,
    status: Arc<watch::Sender<Status>>,
}

/// Where ensuring the declared streams stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Status {
    /// Streams not checked yet, in declaration order.
    pending: Vec<String>,
    /// Why the last round stopped early (JetStream did not answer).
    unavailable: Option<String>,
    /// Streams that cannot be ensured as declared: name and reason.
    rejected: Vec<(String, String)>,
}

/// Why start-up cannot go on: a declared stream conflicts with the existing one, or is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("declared stream: {0}")]
pub struct Rejected(String);

impl DeclaredStreams {
    /// Nothing ensured yet.
    pub fn new(specs: Vec<StreamSpec>) -> Self {
        let status = Status {
            pending: specs.iter().map(|s| s.name.clone()).collect(),
            ..Status::default()
        };
        Self {
            specs: specs.into(),
            status: Arc::new(watch::channel(status).0),
        }
    }

    /// Ensures the declared streams now if NATS is connected, stopping at the first one that
    /// conflicts or is invalid. Streams JetStream did not answer for stay pending, for
    /// [`DeclaredStreams::spawn`].
    pub async fn ensure_at_start(&self, nats: &Nats) -> Result<(), Rejected> {
        if !nats.is_connected() {
            return Ok(());
        }
        let mut status = self.status.borrow().clone();
        while let Some(name) = status.pending.first().cloned() {
            match self.ensure_one(nats, &name).await {
                Ok(()) => {
                    status.pending.remove(0);
                }
                Err(EnsureError::Rejected(reason)) => return Err(Rejected(reason)),
                Err(EnsureError::Unavailable(reason)) => {
                    tracing::warn!(
                        error = %reason,
                        "declared streams not ensured yet: serving anyway, /readyz answers 503 \
                         until they are; retrying with backoff"
                    );
                    status.unavailable = Some(reason);
                    break;
                }
            }
        }
        self.status.send_replace(status);
        Ok(())
    }

    /// Ensures what is still pending in a tracked task, until done or shutdown.
    pub fn spawn(&self, nats: Nats, tasks: &TaskTracker, shutdown: CancellationToken) {
        if self.is_ensured() {
            return;
        }
        let this = self.clone();
        tasks.spawn(async move {
            let mut delay = RETRY_MIN;
            loop {
                let wait = if nats.is_connected() {
                    if this.round(&nats).await {
                        return;
                    }
                    let wait = delay;
                    delay = (delay * 2).min(RETRY_MAX);
                    wait
                } else {
                    CONNECTION_POLL
                };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    /// One round over the streams not ensured yet, rejected ones included (someone may have
    /// fixed them); answers whether all are ensured now.
    async fn round(&self, nats: &Nats) -> bool {
        let before = self.status.borrow().clone();
        let mut todo: Vec<String> = before
            .rejected
            .iter()
            .map(|(name, _)| name.clone())
            .chain(before.pending)
            .collect();
        let mut status = Status::default();
        while !todo.is_empty() {
            let name = todo.remove(0);
            match self.ensure_one(nats, &name).await {
                Ok(()) => {}
                Err(EnsureError::Rejected(reason)) => {
                    let known = before.rejected.contains(&(name.clone(), reason.clone()));
                    if known {
                        tracing::warn!(
                            stream.name = %name,
                            "declared stream still cannot be ensured: {reason}"
                        );
                    } else {
                        tracing::error!(
                            stream.name = %name,
                            "declared stream cannot be ensured: {reason}; /readyz answers 503 \
                             until it can (checked again every {}s at most)",
                            RETRY_MAX.as_secs()
                        );
                    }
                    status.rejected.push((name, reason));
                }
                Err(EnsureError::Unavailable(reason)) => {
                    tracing::debug!(error = %reason, "declared streams not ensured yet");
                    status.pending.push(name);
                    status.pending.append(&mut todo);
                    status.unavailable = Some(reason);
                }
            }
        }
        let done = status == Status::default();
        self.status.send_replace(status);
        done
    }

    async fn ensure_one(&self, nats: &Nats, name: &str) -> Result<(), EnsureError> {
        let Some(spec) = self.specs.iter().find(|s| s.name == name) else {
            return Ok(());
        };
        match nats.ensure_stream(&spec.name, &spec.config).await? {
            PutOutcome::Created => {
                tracing::info!(stream.name = %spec.name, "created declared stream")
            }
            PutOutcome::Unchanged | PutOutcome::Updated => {
                tracing::info!(stream.name = %spec.name, "declared stream exists as configured")
            }
        }
        Ok(())
    }

    /// Every declared stream exists as declared.
    pub fn is_ensured(&self) -> bool {
        *self.status.borrow() == Status::default()
    }

    /// Why the declared streams keep jetway from being ready, or `None` once they are ensured.
    pub fn problem(&self) -> Option<String> {
        let status = self.status.borrow();
        let mut parts = Vec::new();
        if !status.pending.is_empty() {
            let reason = status
                .unavailable
                .as_ref()
                .map(|r| format!(" ({r}); retrying"))
                .unwrap_or_default();
            parts.push(format!(
                "declared streams not yet ensured: {}{reason}",
                status.pending.join(", ")
            ));
        }
        for (_, reason) in &status.rejected {
            parts.push(format!("declared stream cannot be ensured: {reason}"));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}
