//! Push delivery: jetway POSTs a push subscription's messages to its URL, signed per Standard
//! Webhooks, acking on a 2xx and retrying or dead-lettering otherwise.
//!
//! Every replica runs the same supervisor: it watches the definitions in jetway's bucket (an
//! ordered replay of their last revisions, then their changes) and runs one worker per
//! subscription. The bucket is created with the first subscription; until then the supervisor
//! looks for it every few seconds, and at once when a subscription is saved through its replica. Workers on different replicas pull the same durable consumer; JetStream decides
//! who gets which message, and its `max_ack_pending` (the subscription's `max_in_flight`) bounds
//! the deliveries in progress across all of them. Nothing about delivery lives only in one
//! replica's memory: a replica that dies leaves its messages unacked, and JetStream hands them
//! to another after `ack_wait`.

mod client;
pub use client::trust_roots;
mod deliver;
pub mod sign;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::message::EncodingChoice;
use crate::nats::kv;
use crate::ops::push::{self as defs, BUCKET, Definition};
use crate::ops::replay::{Event, PULL_EXPIRES, Replay, ReplaySpec, Start};
use crate::state::AppState;

/// Longest wait before the supervisor tries again after a failure.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// What the workers of one replica share.
struct Shared {
    state: AppState,
    client: reqwest::Client,
    /// `--push-max-connections`: deliveries in progress on this replica.
    connections: Arc<Semaphore>,
}

struct Running {
    revision: u64,
    stop: CancellationToken,
}

/// Starts the push supervisor of this replica (until shutdown).
pub fn spawn(state: &AppState) {
    let destinations = Arc::new(state.push_destinations.clone());
    let client = match client::build(destinations, &state.push_roots) {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "push delivery disabled: cannot build the HTTP client");
            return;
        }
    };
    let shared = Arc::new(Shared {
        state: state.clone(),
        client,
        connections: Arc::new(Semaphore::new(state.config.push_max_connections)),
    });
    state.tasks.spawn(supervise(shared));
}

async fn supervise(shared: Arc<Shared>) {
    let state = shared.state.clone();
    let mut running: HashMap<(String, String), Running> = HashMap::new();
    let mut retry = Duration::from_millis(250);
    loop {
        let watched = watch(&shared, &mut running).await;
        if state.shutdown.is_cancelled() {
            break;
        }
        match watched {
            // No subscription was ever created: nothing to watch yet.
            Err(ApiError::BucketNotFound(_)) => retry = MAX_RETRY,
            Err(err) => {
                tracing::debug!(error = %err, "push definitions not readable yet");
                retry = (retry * 2).min(MAX_RETRY);
            }
            Ok(()) => {}
        }
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = state.push_saved.notified() => retry = Duration::from_millis(250),
            () = tokio::time::sleep(retry) => {}
        }
    }
    for (_, worker) in running.drain() {
        worker.stop.cancel();
    }
}

/// Follows the definitions until the watch fails or the replica shuts down.
async fn watch(
    shared: &Arc<Shared>,
    running: &mut HashMap<(String, String), Running>,
) -> Result<(), ApiError> {
    let state = &shared.state;
    state.nats.bucket_info(BUCKET).await?;
    let spec = ReplaySpec {
        stream: kv::stream_of(BUCKET),
        start: Start::LastPerSubject,
        filters: vec![defs::definitions_filter()],
        consumer: None,
        group: None,
        pull_expires: PULL_EXPIRES,
        encoding: EncodingChoice::Auto,
        binary: true,
        batch_messages: 256,
        batch_bytes: 4 * 1024 * 1024,
        heartbeat: state.config.replay_heartbeat,
    };
    let mut replay = Replay::start(state.nats.clone(), state.ack_keys.clone(), spec).await?;
    loop {
        let event = tokio::select! {
            () = state.shutdown.cancelled() => return Ok(()),
            event = replay.next(256) => event?,
        };
        let Event::Message(message) = event else {
            continue;
        };
        let Some(key) = defs::definition_of_subject(&message.subject) else {
            continue;
        };
        let removed = message
            .headers
            .iter()
            .any(|(name, value)| name.eq_ignore_ascii_case("KV-Operation") && value != "PUT");
        let definition = if removed {
            None
        } else {
            match message
                .raw
                .as_deref()
                .map(serde_json::from_slice::<Definition>)
            {
                Some(Ok(definition)) => Some(definition),
                _ => {
                    tracing::warn!(push.stream = %key.0, push.name = %key.1, "unreadable push definition; not delivering it");
                    None
                }
            }
        };
        match definition {
            Some(definition) => {
                if running.get(&key).is_some_and(|r| r.revision == message.seq) {
                    continue;
                }
                if let Some(old) = running.remove(&key) {
                    old.stop.cancel();
                }
                let stop = state.shutdown.child_token();
                tracing::info!(push.stream = %key.0, push.name = %key.1, revision = message.seq, "push subscription delivering");
                state.tasks.spawn(deliver::run(
                    shared.clone(),
                    Arc::new(definition),
                    stop.clone(),
                ));
                running.insert(
                    key,
                    Running {
                        revision: message.seq,
                        stop,
                    },
                );
            }
            None => {
                if let Some(old) = running.remove(&key) {
                    old.stop.cancel();
                    state.metrics.push_forget(&key.0, &key.1);
                    tracing::info!(push.stream = %key.0, push.name = %key.1, "push subscription stopped");
                }
            }
        }
    }
}
