//! Dead letters: copies of messages that a consumer gave up on, published to the consumer's
//! `dead_letter_subject`.
//!
//! Two paths lead here. A `term` through `POST /v1/acks` copies the message *before* the term is
//! sent, so a failed copy leaves the message unterminated (nothing is lost). JetStream's
//! advisories for max deliveries and terminations (also from clients that are not jetway) are
//! watched by every replica. Every copy carries `Nats-Msg-Id: jetway-dlq:<stream>:<consumer>:<seq>`,
//! so however many replicas and paths produce one, the dead-letter stream stores it once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ApiError;
use crate::nats::Nats;
use crate::nats::consumers::DEAD_LETTER_METADATA_KEY;
use crate::nats::publish::Outgoing;

/// How long a consumer's dead-letter subject is cached.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Most consumers cached; the cache is cleared when it would grow past this.
const CACHE_MAX: usize = 10_000;

const MAX_DELIVERIES_ADVISORY: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>";
const TERMINATED_ADVISORY: &str = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>";

/// Header names on a dead-letter copy.
pub mod header {
    pub const STREAM: &str = "Jetway-Origin-Stream";
    pub const SEQUENCE: &str = "Jetway-Origin-Sequence";
    pub const SUBJECT: &str = "Jetway-Origin-Subject";
    pub const CONSUMER: &str = "Jetway-Origin-Consumer";
    pub const DELIVERIES: &str = "Jetway-Deliveries";
    pub const REASON: &str = "Jetway-Dead-Letter-Reason";
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MaxDeliveries,
    Terminated,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::MaxDeliveries => "max_deliveries",
            Self::Terminated => "terminated",
        }
    }
}

type CacheKey = (String, String);
/// (stream, consumer) → its dead-letter subject and when it was looked up.
type Cache = HashMap<CacheKey, (Option<String>, Instant)>;

/// Looks up dead-letter subjects and publishes copies. Cheap to clone.
#[derive(Clone)]
pub struct DeadLetters {
    nats: Nats,
    cache: Arc<Mutex<Cache>>,
}

#[derive(Deserialize)]
struct Advisory {
    stream: String,
    consumer: String,
    stream_seq: u64,
    #[serde(default)]
    deliveries: u64,
}

impl DeadLetters {
    pub fn new(nats: Nats) -> Self {
        Self {
            nats,
            cache: Arc::default(),
        }
    }

    /// Drops a cached entry (the consumer was changed or deleted through this replica).
    pub fn forget(&self, stream: &str, consumer: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&(stream.to_owned(), consumer.to_owned()));
        }
    }

    /// The consumer's dead-letter subject, if it has one.
    pub async fn subject_for(
        &self,
        stream: &str,
        consumer: &str,
    ) -> Result<Option<String>, ApiError> {
        let key = (stream.to_owned(), consumer.to_owned());
        if let Ok(cache) = self.cache.lock()
            && let Some((subject, at)) = cache.get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(subject.clone());
        }
        let info = self.nats.consumer_info(stream, consumer).await?;
        let subject = info.config.metadata.get(DEAD_LETTER_METADATA_KEY).cloned();
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (subject.clone(), Instant::now()));
        }
        Ok(subject)
    }

    /// Publishes the dead-letter copy of `stream_seq` when the consumer has a dead-letter
    /// subject; answers whether it has one. `extra` headers are added to the copy.
    pub async fn copy(
        &self,
        stream: &str,
        consumer: &str,
        stream_seq: u64,
        deliveries: u64,
        reason: Reason,
        extra: &[(&str, String)],
    ) -> Result<bool, ApiError> {
        let Some(target) = self.subject_for(stream, consumer).await? else {
            return Ok(false);
        };
        let original = self.nats.get_message(stream, stream_seq).await?;
        let mut copy = Outgoing::new(&target, original.payload.clone())?;
        for (name, values) in original.headers.iter() {
            let name = name.to_string();
            // JetStream control headers would act again on the copy (dedup, expectations, TTL).
            if name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-") {
                continue;
            }
            for value in values {
                copy.append_user_header(&name, value.as_str())?;
            }
        }
        copy.idempotency_key(&format!("jetway-dlq:{stream}:{consumer}:{stream_seq}"))?;
        copy.user_header(header::STREAM, stream)?;
        copy.user_header(header::SEQUENCE, &stream_seq.to_string())?;
        copy.user_header(header::SUBJECT, original.subject.as_str())?;
        copy.user_header(header::CONSUMER, consumer)?;
        copy.user_header(header::DELIVERIES, &deliveries.to_string())?;
        copy.user_header(header::REASON, reason.as_str())?;
        for (name, value) in extra {
            copy.user_header(name, value)?;
        }
        let stored = self.nats.publish(copy).await?;
        self.nats.metrics().dead_lettered();
        tracing::info!(
            stream.name = stream,
            consumer.name = consumer,
            msg.seq = stream_seq,
            dead_letter.subject = %target,
            dead_letter.seq = stored.seq,
            duplicate = stored.duplicate,
            reason = reason.as_str(),
            "dead-lettered message"
        );
        Ok(true)
    }

    /// Watches JetStream's advisories and dead-letters what they report, until shutdown.
    pub async fn spawn_watcher(
        &self,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<(), ApiError> {
        let client = self.nats.client().clone();
        let subscribe = |subject: &'static str| {
            let client = client.clone();
            async move {
                client.subscribe(subject).await.map_err(|err| {
                    ApiError::Unavailable(format!("cannot subscribe to {subject}: {err}"))
                })
            }
        };
        let max_deliveries = subscribe(MAX_DELIVERIES_ADVISORY).await?;
        let terminated = subscribe(TERMINATED_ADVISORY).await?;
        let events = futures::stream::select(
            max_deliveries.map(|m| (Reason::MaxDeliveries, m)),
            terminated.map(|m| (Reason::Terminated, m)),
        );
        let this = self.clone();
        tasks.spawn(async move {
            let mut events = std::pin::pin!(events);
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => return,
                    event = events.next() => event,
                };
                let Some((reason, message)) = event else {
                    return;
                };
                let Ok(advisory) = serde_json::from_slice::<Advisory>(&message.payload) else {
                    tracing::warn!(subject = %message.subject, "unreadable consumer advisory");
                    continue;
                };
                let result = this
                    .copy(
                        &advisory.stream,
                        &advisory.consumer,
                        advisory.stream_seq,
                        advisory.deliveries,
                        reason,
                        &[],
                    )
                    .await;
                if let Err(err) = result {
                    tracing::warn!(
                        stream.name = %advisory.stream,
                        consumer.name = %advisory.consumer,
                        msg.seq = advisory.stream_seq,
                        error = %err,
                        "cannot dead-letter message"
                    );
                }
            }
        });
        Ok(())
    }
}
