//! The one pull primitive: a single `CONSUMER.MSG.NEXT` request and every reply to it.
//!
//! Fetch, the WebSocket/SSE ack mode and ordered replays all pull through [`Pull`], so the rules
//! below live here once.
//!
//! Each pull has its own reply inbox, so a status that trails one request is never taken for an
//! answer to the next. A pull ends when the server has said so **and** every message it handed to
//! the pull has arrived. The order of the two is not fixed:
//!
//! - On a single server (R1), or a consumer without acks, messages are sent as they are
//!   delivered; the closing status (`404`, `408`, `409 Batch Completed`) follows them.
//! - On a replicated consumer (R3) with explicit acks, the leader sends a message only after its
//!   replicas agreed that it was delivered (nats-server `replicateDeliveries`), while statuses go
//!   out at once. A `409 Batch Completed` therefore routinely arrives *before* the messages of its
//!   pull. `408` and the no-wait end are held back by the server until the last replicated
//!   delivery went out, but other statuses are not.
//!
//! So the end is computed, not assumed: a closing status carries `Nats-Pending-Messages`, the part
//! of the batch the server did *not* hand out, and `batch - pending` messages are owed to this pull.
//! The pull keeps reading until they are all in, or until `grace` passes (a delivery the server
//! lost on a leader change is redelivered after `ack_wait`; it is never silently dropped by jetway).
//! Statuses without that header (`404 No Messages`, `409 Leadership Change`, `409 Consumer Deleted`)
//! are sent when nothing more is coming to this inbox.

use std::time::Duration;

use async_nats::Subscriber;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;

use super::Nats;
use crate::ackid::AckTarget;
use crate::error::ApiError;

/// Header of a closing pull status: messages of the batch the server did not hand out.
const PENDING_MESSAGES: &str = "Nats-Pending-Messages";

/// Header on a message delivered to the pinned client of a priority group.
pub const PIN_ID: &str = "Nats-Pin-Id";

/// A pull's priority group (consumers with a `priority_policy`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PullPriority<'a> {
    pub group: &'a str,
    /// `pinned_client`: the pin this client holds (`Nats-Pin-Id`), if any.
    pub pin: Option<&'a str>,
    /// `overflow`: serve this pull only while at least this many messages are pending.
    pub min_pending: Option<u64>,
    /// `overflow`: serve this pull only while at least this many messages await their ack.
    pub min_ack_pending: Option<u64>,
    /// `prioritized`: 0 (first) to 9.
    pub priority: Option<u8>,
}

/// What one pull request asks for.
#[derive(Debug, Clone, Copy)]
pub struct PullRequest<'a> {
    /// Most messages.
    pub batch: usize,
    /// Most bytes (as JetStream counts them), if limited.
    pub max_bytes: Option<usize>,
    /// How long the request waits at the server; `None` asks for what is there now (`no_wait`).
    pub expires: Option<Duration>,
    /// Idle heartbeat the server sends while the request waits.
    pub heartbeat: Option<Duration>,
    /// The priority group, on consumers with a priority policy.
    pub priority: Option<PullPriority<'a>>,
}

/// Why a pull is over.
#[derive(Debug)]
pub enum PullEnd {
    /// Complete, expired, or nothing (more) to deliver.
    Done,
    /// The next message is larger than `max_bytes`: ask for it without a byte limit.
    TooLarge,
    /// Cut short (consumer deleted or leaderless, leader change, too many waiting pulls, …). The
    /// messages received before it are valid deliveries.
    Failed(ApiError),
}

/// One reply of a pull that the caller needs to see.
#[derive(Debug)]
pub enum PullEvent {
    /// A delivered message and the ack reply subject it came with.
    Message(Box<async_nats::Message>, AckTarget),
    /// The pull is over; nothing more comes from it.
    End(PullEnd),
}

/// A pull request in flight.
pub struct Pull {
    replies: Subscriber,
    batch: usize,
    received: usize,
    /// Once the server closed the request: how many messages it handed to this pull.
    owed: Option<usize>,
    end: Option<PullEnd>,
    /// How long to wait for owed messages after the closing status.
    grace: Duration,
    grace_until: Option<Instant>,
    finished: bool,
}

impl Nats {
    /// Sends a pull request to `stream`'s consumer `consumer` and returns it in flight.
    pub async fn pull(
        &self,
        stream: &str,
        consumer: &str,
        request: PullRequest<'_>,
    ) -> Result<Pull, ApiError> {
        self.ensure_connected()?;
        let subject = format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}");
        let mut body = serde_json::json!({ "batch": request.batch.max(1) });
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match request.expires {
            Some(expires) => body["expires"] = nanos(expires).into(),
            None => body["no_wait"] = true.into(),
        }
        if let Some(max_bytes) = request.max_bytes {
            body["max_bytes"] = max_bytes.into();
        }
        if let Some(heartbeat) = request.heartbeat {
            body["idle_heartbeat"] = nanos(heartbeat).into();
        }
        if let Some(priority) = request.priority {
            body["group"] = priority.group.into();
            if let Some(pin) = priority.pin {
                body["id"] = pin.into();
            }
            if let Some(min) = priority.min_pending {
                body["min_pending"] = min.into();
            }
            if let Some(min) = priority.min_ack_pending {
                body["min_ack_pending"] = min.into();
            }
            if let Some(level) = priority.priority {
                body["priority"] = level.into();
            }
        }
        let payload =
            serde_json::to_vec(&body).map_err(|e| ApiError::internal("encode pull request", e))?;
        let inbox = self.client.new_inbox();
        let replies =
            self.client.subscribe(inbox.clone()).await.map_err(|err| {
                ApiError::Unavailable(format!("cannot subscribe for a pull: {err}"))
            })?;
        self.client
            .publish_with_reply(subject, inbox, payload.into())
            .await
            .map_err(|err| ApiError::Unavailable(format!("cannot send pull request: {err}")))?;
        Ok(Pull {
            replies,
            batch: request.batch.max(1),
            received: 0,
            owed: None,
            end: None,
            grace: self.api_timeout,
            grace_until: None,
            finished: false,
        })
    }
}

impl Pull {
    /// Messages this pull may still deliver.
    pub fn outstanding(&self) -> usize {
        if self.finished {
            return 0;
        }
        self.owed
            .unwrap_or(self.batch)
            .saturating_sub(self.received)
    }

    /// Messages received so far.
    pub fn received(&self) -> usize {
        self.received
    }

    /// The next message, or the end of the pull. `idle` is the longest wait for any reply
    /// (message, heartbeat or status) before the pull counts as lost; once the server closed the
    /// request, owed messages are awaited for the grace period instead.
    pub async fn next(&mut self, idle: Duration) -> PullEvent {
        loop {
            if let Some(end) = self.over() {
                return PullEvent::End(end);
            }
            // While a pull streams in, the next reply is usually there already: take it without
            // reading the clock or arming a timer.
            let ready = match self.replies.next().now_or_never() {
                Some(Some(reply)) => Some(reply),
                _ => None,
            };
            let waited = match ready {
                Some(reply) => Ok(Some(reply)),
                None => {
                    let deadline = self.grace_until.unwrap_or_else(|| Instant::now() + idle);
                    tokio::time::timeout_at(deadline, self.replies.next()).await
                }
            };
            let reply = match waited {
                Ok(Some(reply)) => reply,
                Ok(None) => {
                    self.finished = true;
                    return PullEvent::End(PullEnd::Failed(ApiError::Unavailable(
                        "the NATS connection closed".to_owned(),
                    )));
                }
                Err(_) => {
                    if let Some(owed) = self.owed {
                        tracing::warn!(
                            missing = owed - self.received,
                            "a pull ended without all the messages the server handed it; \
                             they are redelivered after ack_wait"
                        );
                        self.owed = Some(self.received);
                        continue;
                    }
                    self.finished = true;
                    return PullEvent::End(PullEnd::Failed(ApiError::Unavailable(
                        "JetStream stopped answering the pull (no message, status or heartbeat)"
                            .to_owned(),
                    )));
                }
            };
            if let Some(message) = self.take(reply) {
                return message;
            }
        }
    }

    /// The next message if one has arrived already, without waiting; `None` when nothing has
    /// (or the pull is over: [`Pull::next`] says how it ended). Statuses that arrived first are
    /// taken into account as [`Pull::next`] does.
    pub fn ready(&mut self) -> Option<PullEvent> {
        loop {
            if self.finished || self.owed.is_some_and(|owed| self.received >= owed) {
                return None;
            }
            let reply = self.replies.next().now_or_never()??;
            if let Some(message) = self.take(reply) {
                return Some(message);
            }
        }
    }

    /// How the pull ended, once it did.
    fn over(&mut self) -> Option<PullEnd> {
        if self.finished {
            return Some(PullEnd::Done);
        }
        if let Some(owed) = self.owed
            && self.received >= owed
        {
            self.finished = true;
            return Some(self.end.take().unwrap_or(PullEnd::Done));
        }
        None
    }

    /// Takes one reply in: a message is returned, a status or heartbeat is recorded.
    fn take(&mut self, reply: async_nats::Message) -> Option<PullEvent> {
        let Some(status) = reply.status else {
            let target = reply.reply.as_ref().and_then(|r| AckTarget::parse(r))?;
            self.received += 1;
            if self.received >= self.batch {
                self.owed = Some(self.batch);
            }
            return Some(PullEvent::Message(Box::new(reply), target));
        };
        let code = status.as_u16();
        if code == 100 {
            return None; // idle heartbeat
        }
        let description = reply.description.clone().unwrap_or_default();
        let pending = reply
            .headers
            .as_ref()
            .and_then(|h| h.get(PENDING_MESSAGES))
            .and_then(|v| v.as_str().trim().parse::<i64>().ok())
            .map(|p| usize::try_from(p.max(0)).unwrap_or(usize::MAX));
        let (end, more_may_come) = classify(code, &description);
        let owed = match pending {
            Some(pending) if more_may_come => self.batch.saturating_sub(pending),
            _ => self.received,
        };
        self.owed = Some(owed.max(self.received));
        if self.end.is_none() {
            self.end = Some(end);
        }
        if owed > self.received {
            self.grace_until = Some(Instant::now() + self.grace);
        }
        None
    }
}

/// What a closing status means, and whether deliveries it counts may still follow it.
fn classify(code: u16, description: &str) -> (PullEnd, bool) {
    let lower = description.to_ascii_lowercase();
    match code {
        404 | 408 => (PullEnd::Done, true),
        409 if lower.contains("batch completed") => (PullEnd::Done, true),
        409 if lower.contains("exceeds maxbytes") || lower.contains("message size exceeds") => {
            (PullEnd::TooLarge, true)
        }
        409 if lower.contains("maxwaiting") || lower.contains("max waiting") => (
            PullEnd::Failed(ApiError::RateLimited(
                "too many fetches are waiting on this consumer (its max_waiting); retry shortly"
                    .to_owned(),
            )),
            false,
        ),
        409 if lower.contains("exceeded maxrequest") || lower.contains("exceeded max request") => (
            PullEnd::Failed(ApiError::InvalidParameter(format!(
                "the consumer refuses this fetch: {description}; ask for less"
            ))),
            false,
        ),
        // Leader change, server shutdown, consumer deleted: the caller checks whether the
        // consumer is still there.
        409 => (
            PullEnd::Failed(ApiError::Unavailable(format!("pull ended: {description}"))),
            false,
        ),
        // Pinned clients: another client holds the pin (or the one given expired).
        423 => (
            PullEnd::Failed(ApiError::PinMismatch(format!(
                "{description}: this pin_id is not (or no longer) the consumer's pinned client; \
                 fetch without pin_id to wait on standby until the pin is free"
            ))),
            false,
        ),
        // A pull the consumer's priority policy refuses (group missing or unknown, options
        // of another policy).
        400 => (
            PullEnd::Failed(ApiError::InvalidParameter(format!(
                "the consumer refuses this fetch: {description}"
            ))),
            false,
        ),
        503 => (
            PullEnd::Failed(ApiError::Unavailable(
                "no JetStream consumer answered the pull (it may be electing a leader)".to_owned(),
            )),
            false,
        ),
        other => (
            PullEnd::Failed(ApiError::JetStream {
                detail: format!("unexpected pull status {other}: {description}"),
                jetstream_code: None,
            }),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_that_count_deliveries() {
        assert!(matches!(
            classify(408, "Request Timeout"),
            (PullEnd::Done, true)
        ));
        assert!(matches!(
            classify(409, "Batch Completed"),
            (PullEnd::Done, true)
        ));
        assert!(matches!(
            classify(409, "Message Size Exceeds MaxBytes"),
            (PullEnd::TooLarge, true)
        ));
        assert!(matches!(
            classify(409, "Leadership Change"),
            (PullEnd::Failed(ApiError::Unavailable(_)), false)
        ));
        assert!(matches!(
            classify(409, "Exceeded MaxWaiting"),
            (PullEnd::Failed(ApiError::RateLimited(_)), false)
        ));
        assert!(matches!(
            classify(503, ""),
            (PullEnd::Failed(ApiError::Unavailable(_)), false)
        ));
    }
}
