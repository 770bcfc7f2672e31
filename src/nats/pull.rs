//! The one pull primitive: `CONSUMER.MSG.NEXT` requests and every reply to them.
//!
//! Fetch, the WebSocket/SSE ack mode, push and ordered replays all pull through [`Pulls`], so
//! the rules below live here once.
//!
//! Each pull has its own reply subject, so a status that trails one request is never taken for an
//! answer to the next. The pulls of one [`Pulls`] share a subscription (one subject each under
//! it), so that their messages are read in the order the server sent them.
//!
//! A pull ends when the server has said so **and** every message it handed to
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

/// What is known of one pull request: how many messages it may still deliver, and how it ended.
struct PullState {
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

impl PullState {
    fn new(batch: usize, grace: Duration) -> Self {
        Self {
            batch: batch.max(1),
            received: 0,
            owed: None,
            end: None,
            grace,
            grace_until: None,
            finished: false,
        }
    }
}

/// Pull requests in flight on one reply subscription, each with a reply subject of its own
/// under it (`<inbox>.<n>`), so that every reply still names its request.
///
/// JetStream serves the waiting pulls of a consumer in turn, one message each, so the messages
/// of two pulls open at once interleave. On separate subscriptions they could only be read one
/// pull after the other, out of the consumer's order; on one subscription they arrive in the
/// order the server sent them, whichever pull each answers.
pub struct Pulls {
    replies: Option<Subscriber>,
    /// `<inbox>.`, chosen with the first pull.
    prefix: String,
    next_id: u64,
    /// Open requests, oldest first, by number.
    open: std::collections::VecDeque<(u64, PullState)>,
}

impl Nats {
    /// Sends a pull request to `stream`'s consumer `consumer` and returns it in flight.
    /// Sends a pull request to `stream`'s consumer `consumer`, its replies to come through
    /// `pulls`.
    pub async fn pull_into(
        &self,
        pulls: &mut Pulls,
        stream: &str,
        consumer: &str,
        request: PullRequest<'_>,
    ) -> Result<(), ApiError> {
        self.ensure_connected()?;
        let payload = request_body(&request)?;
        if pulls.replies.is_none() {
            let mut prefix = self.client.new_inbox();
            prefix.push('.');
            let replies = self
                .client
                .subscribe(format!("{prefix}*"))
                .await
                .map_err(|err| {
                    ApiError::Unavailable(format!("cannot subscribe for a pull: {err}"))
                })?;
            pulls.prefix = prefix;
            pulls.replies = Some(replies);
        }
        let id = pulls.next_id;
        pulls.next_id += 1;
        let reply = format!("{}{id}", pulls.prefix);
        self.client
            .publish_with_reply(next_subject(stream, consumer), reply, payload.into())
            .await
            .map_err(|err| ApiError::Unavailable(format!("cannot send pull request: {err}")))?;
        pulls
            .open
            .push_back((id, PullState::new(request.batch, self.api_timeout)));
        Ok(())
    }
}

fn next_subject(stream: &str, consumer: &str) -> String {
    format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}")
}

/// The JSON body of a `CONSUMER.MSG.NEXT` request.
fn request_body(request: &PullRequest<'_>) -> Result<Vec<u8>, ApiError> {
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
    serde_json::to_vec(&body).map_err(|e| ApiError::internal("encode pull request", e))
}

impl Pulls {
    pub fn new() -> Self {
        Self {
            replies: None,
            prefix: String::new(),
            next_id: 0,
            open: std::collections::VecDeque::new(),
        }
    }

    /// Open pull requests.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Messages the open pulls may still deliver.
    pub fn outstanding(&self) -> usize {
        self.open.iter().map(|(_, pull)| pull.outstanding()).sum()
    }

    /// Forgets every open pull. Replies to them that still arrive are read as any other: a
    /// message is a valid delivery of its consumer, a status is ignored.
    pub fn clear(&mut self) {
        self.open.clear();
    }

    /// The next message (of whichever pull), or the end of one pull. `idle` is the longest wait
    /// for any reply before the pulls count as lost; a pull the server closed waits for its owed
    /// messages for the grace period instead.
    pub async fn next(&mut self, idle: Duration) -> PullEvent {
        loop {
            if let Some(end) = self.over() {
                return PullEvent::End(end);
            }
            let Some(replies) = self.replies.as_mut() else {
                return PullEvent::End(PullEnd::Done);
            };
            let waited = match replies.next().now_or_never() {
                Some(Some(reply)) => Ok(Some(reply)),
                _ => {
                    let deadline = self
                        .open
                        .iter()
                        .filter_map(|(_, pull)| pull.grace_until)
                        .min()
                        .unwrap_or_else(|| Instant::now() + idle);
                    tokio::time::timeout_at(deadline, replies.next()).await
                }
            };
            let reply = match waited {
                Ok(Some(reply)) => reply,
                Ok(None) => {
                    self.replies = None;
                    self.open.clear();
                    return PullEvent::End(PullEnd::Failed(connection_closed()));
                }
                Err(_) => {
                    let now = Instant::now();
                    let mut gave_up = false;
                    for (_, pull) in &mut self.open {
                        if pull.grace_until.is_some_and(|until| until <= now) {
                            gave_up |= pull.give_up_owed();
                        }
                    }
                    if gave_up {
                        continue;
                    }
                    self.open.clear();
                    return PullEvent::End(PullEnd::Failed(stopped_answering()));
                }
            };
            if let Some(message) = self.take(reply) {
                return message;
            }
        }
    }

    /// The next message if one has arrived already, without waiting; `None` when nothing has,
    /// or when a pull is over ([`Pulls::next`] says how it ended).
    pub fn ready(&mut self) -> Option<PullEvent> {
        loop {
            if self.open.iter().any(|(_, pull)| {
                pull.finished || pull.owed.is_some_and(|owed| pull.received >= owed)
            }) {
                return None;
            }
            let reply = self.replies.as_mut()?.next().now_or_never()??;
            if let Some(message) = self.take(reply) {
                return Some(message);
            }
        }
    }

    /// The end of the first open pull that is over, which is then forgotten.
    fn over(&mut self) -> Option<PullEnd> {
        let (index, end) = self
            .open
            .iter_mut()
            .enumerate()
            .find_map(|(index, (_, pull))| Some((index, pull.over()?)))?;
        self.open.remove(index);
        Some(end)
    }

    /// Takes one reply in. A status names its pull by its reply subject. A message does not
    /// (JetStream sends it under its own subject): it is counted to the oldest open pull with
    /// room for it, which keeps the count of every pull right once the earlier ones are done.
    fn take(&mut self, reply: async_nats::Message) -> Option<PullEvent> {
        if reply.status.is_none() {
            let target = reply.reply.as_ref().and_then(|r| AckTarget::parse(r))?;
            if let Some((_, pull)) = self.open.iter_mut().find(|(_, p)| p.outstanding() > 0) {
                pull.count_message();
            }
            // Without a pull to count it to, a late delivery: still a delivery of its consumer.
            return Some(PullEvent::Message(Box::new(reply), target));
        }
        let id = reply
            .subject
            .as_str()
            .strip_prefix(self.prefix.as_str())
            .and_then(|id| id.parse::<u64>().ok());
        if let Some((_, pull)) =
            id.and_then(|id| self.open.iter_mut().find(|(open, _)| *open == id))
        {
            pull.take(reply);
            self.rebalance();
        }
        None
    }

    /// Moves messages counted to a pull beyond what the server says it handed that pull on to
    /// the pulls after it.
    fn rebalance(&mut self) {
        let mut excess = 0;
        for (_, pull) in &mut self.open {
            if excess > 0 {
                let moved = excess.min(pull.outstanding());
                for _ in 0..moved {
                    pull.count_message();
                }
                excess -= moved;
            }
            if let Some(owed) = pull.owed
                && pull.received > owed
            {
                excess += pull.received - owed;
                pull.received = owed;
            }
        }
    }
}

impl Default for Pulls {
    fn default() -> Self {
        Self::new()
    }
}

fn connection_closed() -> ApiError {
    ApiError::Unavailable("the NATS connection closed".to_owned())
}

fn stopped_answering() -> ApiError {
    ApiError::Unavailable(
        "JetStream stopped answering the pull (no message, status or heartbeat)".to_owned(),
    )
}

impl PullState {
    fn outstanding(&self) -> usize {
        if self.finished {
            return 0;
        }
        self.owed
            .unwrap_or(self.batch)
            .saturating_sub(self.received)
    }

    /// After the grace period: the messages still owed are not coming (the server lost them on
    /// a leader change; they are redelivered after `ack_wait`). False when nothing was owed.
    fn give_up_owed(&mut self) -> bool {
        let Some(owed) = self.owed else {
            return false;
        };
        tracing::warn!(
            missing = owed.saturating_sub(self.received),
            "a pull ended without all the messages the server handed it; \
             they are redelivered after ack_wait"
        );
        self.owed = Some(self.received);
        self.grace_until = None;
        true
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

    /// One more message received.
    fn count_message(&mut self) {
        self.received += 1;
        if self.received >= self.batch {
            self.owed = Some(self.batch);
        }
    }

    /// Takes one reply in: a message is returned, a status or heartbeat is recorded.
    fn take(&mut self, reply: async_nats::Message) -> Option<PullEvent> {
        let Some(status) = reply.status else {
            let target = reply.reply.as_ref().and_then(|r| AckTarget::parse(r))?;
            self.count_message();
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
        // A pull may have been counted another pull's message (see [`Pulls::take`]):
        // [`Pulls::rebalance`] moves it on.
        self.owed = Some(owed);
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

    fn delivery(cseq: u64) -> async_nats::Message {
        async_nats::Message {
            subject: "orders.new".into(),
            reply: Some(format!("$JS.ACK.ORDERS.c.1.{cseq}.{cseq}.1700000000000000000.0").into()),
            payload: bytes::Bytes::new(),
            headers: None,
            status: None,
            description: None,
            length: 0,
        }
    }

    fn status(
        pulls: &Pulls,
        id: u64,
        code: u16,
        description: &str,
        pending: Option<usize>,
    ) -> async_nats::Message {
        let headers = pending.map(|pending| {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(PENDING_MESSAGES, pending.to_string().as_str());
            headers
        });
        async_nats::Message {
            subject: format!("{}{id}", pulls.prefix).into(),
            reply: None,
            payload: bytes::Bytes::new(),
            headers,
            status: Some(async_nats::StatusCode::from_u16(code).expect("status")),
            description: Some(description.to_owned()),
            length: 0,
        }
    }

    fn open(pulls: &mut Pulls, batch: usize) {
        let id = pulls.next_id;
        pulls.next_id += 1;
        pulls
            .open
            .push_back((id, PullState::new(batch, Duration::from_secs(1))));
    }

    #[test]
    fn interleaved_messages_of_two_pulls_are_counted_oldest_first() {
        let mut pulls = Pulls::new();
        pulls.prefix = "_INBOX.x.".to_owned();
        open(&mut pulls, 3);
        open(&mut pulls, 3);
        for cseq in 1..=4 {
            assert!(matches!(
                pulls.take(delivery(cseq)),
                Some(PullEvent::Message(..))
            ));
        }
        assert_eq!(pulls.outstanding(), 2);
        assert!(
            matches!(pulls.over(), Some(PullEnd::Done)),
            "the first pull is full"
        );
        assert_eq!(pulls.len(), 1);
        assert!(pulls.over().is_none());
        // A message beyond every open pull is still a delivery.
        for cseq in 5..=7 {
            assert!(matches!(
                pulls.take(delivery(cseq)),
                Some(PullEvent::Message(..))
            ));
        }
        assert!(matches!(pulls.over(), Some(PullEnd::Done)));
        assert!(pulls.is_empty());
    }

    #[test]
    fn a_pull_that_got_fewer_than_counted_hands_the_rest_to_the_next() {
        let mut pulls = Pulls::new();
        pulls.prefix = "_INBOX.x.".to_owned();
        open(&mut pulls, 4);
        open(&mut pulls, 4);
        // Three messages arrive, all counted to the first pull; then the server says the first
        // pull expired with two of its four undelivered: one of the three was the second's.
        for cseq in 1..=3 {
            pulls.take(delivery(cseq));
        }
        let expired = status(&pulls, 0, 408, "Request Timeout", Some(2));
        assert!(pulls.take(expired).is_none());
        assert!(matches!(pulls.over(), Some(PullEnd::Done)));
        assert_eq!(
            pulls.outstanding(),
            3,
            "the second pull received one of its four"
        );
        // A status for a pull already forgotten changes nothing.
        let late = status(&pulls, 0, 409, "Batch Completed", Some(0));
        assert!(pulls.take(late).is_none());
        assert_eq!(pulls.outstanding(), 3);
    }

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
