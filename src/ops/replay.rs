//! Replay and live tail of a stream, for the WebSocket and SSE bridges.
//!
//! Without a durable consumer, a replay is an *ordered consumer* that jetway runs itself: an
//! ephemeral, memory-stored, ack-less consumer that jetway pulls from, checking that every
//! delivery's consumer sequence follows the previous one. On a gap, a lost heartbeat, a deleted
//! consumer or a reconnect it recreates the consumer from the last delivered stream sequence + 1,
//! so the client sees every message once, in order. With a durable consumer (ack mode) it pulls
//! from that consumer and signs ack ids. Every pull goes through [`crate::nats::pull`], which
//! waits for each message the server handed to a pull, whatever order statuses arrive in.
//!
//! Flow control is pull-based: jetway asks JetStream for more only when the caller asks for the
//! next event, at most `batch_messages` messages and `batch_bytes` bytes at a time, so a client
//! that stops reading stops the consumer instead of growing the gateway's memory.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, ReplayPolicy};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::ackid::{AckKeys, AckTarget};
use crate::error::ApiError;
use crate::message::{EncodingChoice, Message};
use crate::nats::pull::{PIN_ID, PullEnd, PullEvent, PullPriority, PullRequest, Pulls};
use crate::nats::{Nats, Op};

/// Named start positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayFrom {
    All,
    Last,
    New,
    LastPerSubject,
}

/// How long an ordered consumer outlives a gateway that stopped pulling from it.
const ORDERED_INACTIVE_THRESHOLD: Duration = Duration::from_secs(60);
/// How long one pull request waits at the server.
pub const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// Longest back-off between attempts to recreate a lost consumer.
const MAX_RECREATE_BACKOFF: Duration = Duration::from_secs(2);
/// Give up recreating a lost consumer (and tell the client) after this long.
const RECREATE_GIVE_UP: Duration = Duration::from_secs(120);

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    All,
    Last,
    New,
    LastPerSubject,
    Sequence(u64),
    Time(OffsetDateTime),
}

impl Start {
    /// From the API's three ways of saying where to start (at most one may be given).
    pub fn parse(
        deliver: Option<ReplayFrom>,
        start_seq: Option<u64>,
        start_time: Option<&str>,
    ) -> Result<Self, ApiError> {
        match (deliver, start_seq, start_time) {
            (None, None, None) | (Some(ReplayFrom::All), None, None) => Ok(Self::All),
            (Some(ReplayFrom::Last), None, None) => Ok(Self::Last),
            (Some(ReplayFrom::New), None, None) => Ok(Self::New),
            (Some(ReplayFrom::LastPerSubject), None, None) => Ok(Self::LastPerSubject),
            (None, Some(0), None) => Err(ApiError::InvalidParameter(
                "start_seq starts at 1".to_owned(),
            )),
            (None, Some(seq), None) => Ok(Self::Sequence(seq)),
            (None, None, Some(text)) => Ok(Self::Time(crate::timestamp::parse_time(text)?)),
            _ => Err(ApiError::InvalidParameter(
                "give at most one of deliver, start_seq and start_time".to_owned(),
            )),
        }
    }

    fn policy(self) -> DeliverPolicy {
        match self {
            Self::All => DeliverPolicy::All,
            Self::Last => DeliverPolicy::Last,
            Self::New => DeliverPolicy::New,
            Self::LastPerSubject => DeliverPolicy::LastPerSubject,
            Self::Sequence(seq) => DeliverPolicy::ByStartSequence {
                start_sequence: seq,
            },
            Self::Time(start_time) => DeliverPolicy::ByStartTime { start_time },
        }
    }
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplaySpec {
    pub stream: String,
    pub start: Start,
    pub filters: Vec<String>,
    /// Durable consumer for ack mode; `None` for an ordered replay.
    pub consumer: Option<String>,
    /// With a durable consumer: the priority group its pulls name.
    pub group: Option<String>,
    /// How long one pull waits at the server ([`PULL_EXPIRES`], shorter on a pinned consumer so
    /// that the pin is renewed within its priority timeout).
    pub pull_expires: Duration,
    pub encoding: EncodingChoice,
    /// Keep each payload as it is (WebSocket binary frames) instead of rendering `data`.
    pub binary: bool,
    /// Most messages asked of JetStream at a time.
    pub batch_messages: usize,
    /// Most bytes asked of JetStream at a time.
    pub batch_bytes: usize,
    /// Idle heartbeat of pull requests; two missed ones mean the pull is lost.
    pub heartbeat: Duration,
}

/// What a replay produces.
#[derive(Debug, Clone)]
pub enum Event {
    Message(Box<Message>),
    /// Sequences that will never be delivered.
    Gap {
        from: u64,
        to: u64,
    },
    /// The end of the stream as it was at subscribe time was reached.
    CaughtUp {
        seq: u64,
    },
}

/// A running replay. Dropping it stops pulling; call [`Replay::close`] to also delete the
/// ordered consumer right away (it expires by itself otherwise).
pub struct Replay {
    nats: Nats,
    keys: AckKeys,
    spec: ReplaySpec,
    consumer_name: String,
    /// Pull requests in flight, on one reply subscription. Up to two for an ordered replay, so
    /// that the next batch is on its way while the current one is read; one for a durable
    /// consumer (see [`Replay::pull_due`]).
    pulls: Pulls,
    last_stream_seq: u64,
    last_consumer_seq: u64,
    caught_up_sent: bool,
    queue: VecDeque<Event>,
    /// After a "message larger than max_bytes" answer, the next pull asks for one message
    /// without a byte limit.
    oversized: bool,
    /// An ordered replay is caught up once it delivered this stream sequence: the last message
    /// it had to replay when it started, read from the stream leader. (Its ephemeral consumer
    /// may sit on a replica that lags the leader for a moment, so the consumer's own pending
    /// count can say "nothing pending" too early on a cluster.) `None` for a durable consumer,
    /// whose leader's pending count is used.
    caught_up_at: Option<u64>,
    /// The pin this replay holds on a `pinned_client` consumer's group (from `Nats-Pin-Id`).
    pin: Option<String>,
    /// A loss [`Replay::ready`] found (an ordered delivery gap), for [`Replay::next`] to
    /// recover from.
    loss: Option<ApiError>,
}

#[derive(serde::Deserialize)]
struct StreamState {
    state: StreamCounts,
}

#[derive(serde::Deserialize)]
struct StreamCounts {
    messages: u64,
    first_seq: u64,
    last_seq: u64,
}

/// The stream's last sequence, from its leader (`0` when it never stored a message).
pub async fn last_sequence(nats: &Nats, stream: &str) -> Result<u64, ApiError> {
    crate::validate::name("stream", stream)?;
    let counts: StreamState = nats
        .api(
            &format!("STREAM.INFO.{stream}"),
            &serde_json::json!({}),
            Op::Stream(stream),
        )
        .await?;
    Ok(counts.state.last_seq)
}

impl Replay {
    /// Checks the stream (and consumer), creates the ordered consumer, and queues a `gap` when
    /// the requested start lies before the first stored message.
    pub async fn start(nats: Nats, keys: AckKeys, spec: ReplaySpec) -> Result<Self, ApiError> {
        crate::validate::name("stream", &spec.stream)?;
        for filter in &spec.filters {
            crate::validate::subject_filter(filter)?;
        }
        let stream = spec.stream.clone();
        let counts: StreamState = nats
            .api(
                &format!("STREAM.INFO.{stream}"),
                &serde_json::json!({}),
                Op::Stream(&stream),
            )
            .await?;
        let mut replay = Self {
            nats,
            keys,
            consumer_name: String::new(),
            pin: None,
            pulls: Pulls::new(),
            last_stream_seq: 0,
            last_consumer_seq: 0,
            caught_up_sent: false,
            queue: VecDeque::new(),
            oversized: false,
            caught_up_at: None,
            loss: None,
            spec,
        };
        let info = match replay.spec.consumer.clone() {
            Some(durable) => {
                crate::validate::name("consumer", &durable)?;
                replay.consumer_name = durable.clone();
                replay.nats.consumer_info(&stream, &durable).await?
            }
            None => {
                if let Start::Sequence(seq) = replay.spec.start {
                    let state = &counts.state;
                    let first_kept = if state.messages == 0 {
                        state.last_seq + 1
                    } else {
                        state.first_seq
                    };
                    if seq < first_kept {
                        replay.queue.push_back(Event::Gap {
                            from: seq,
                            to: first_kept - 1,
                        });
                    }
                    // Deliveries are compared with the sequence before the start, so that a
                    // deleted message right at the start is reported as a gap too.
                    replay.last_stream_seq = seq.max(first_kept) - 1;
                }
                replay.caught_up_at = replay.catch_up_point().await?;
                let info = replay.create_ordered(replay.spec.start).await?;
                if replay.caught_up_at.is_some() {
                    return Ok(replay);
                }
                info
            }
        };
        if info.num_pending == 0 || replay.spec.consumer.is_none() {
            replay.caught_up_sent = true;
            let seq = info.delivered.stream_sequence.max(match replay.spec.start {
                Start::New => counts.state.last_seq,
                _ => 0,
            });
            replay.queue.push_back(Event::CaughtUp { seq });
        }
        Ok(replay)
    }

    /// An ordered replay of every message after stream sequence `after`, for a live feed: no
    /// catch-up point and no `caught_up` event, a `gap` when messages right after `after` are
    /// gone. `spec.start` is replaced.
    pub async fn after(
        nats: Nats,
        keys: AckKeys,
        mut spec: ReplaySpec,
        after: u64,
    ) -> Result<Self, ApiError> {
        crate::validate::name("stream", &spec.stream)?;
        for filter in &spec.filters {
            crate::validate::subject_filter(filter)?;
        }
        spec.consumer = None;
        spec.start = Start::Sequence(after.saturating_add(1));
        let start = spec.start;
        let mut replay = Self {
            nats,
            keys,
            consumer_name: String::new(),
            pulls: Pulls::new(),
            last_stream_seq: after,
            last_consumer_seq: 0,
            caught_up_sent: true,
            queue: VecDeque::new(),
            oversized: false,
            caught_up_at: None,
            pin: None,
            loss: None,
            spec,
        };
        replay.create_ordered(start).await?;
        Ok(replay)
    }

    /// The last stream sequence an ordered replay must deliver before it is caught up, from the
    /// stream leader; `None` when there is nothing to replay.
    async fn catch_up_point(&self) -> Result<Option<u64>, ApiError> {
        use crate::nats::messages::Start as From;
        let stream = &self.spec.stream;
        let filters: Vec<String> = if self.spec.filters.is_empty() {
            vec![">".to_owned()]
        } else {
            self.spec.filters.clone()
        };
        let from = match self.spec.start {
            Start::New => return Ok(None),
            Start::Last | Start::LastPerSubject => None,
            Start::All => Some(From::Sequence(1)),
            Start::Sequence(seq) => Some(From::Sequence(seq)),
            Start::Time(time) => Some(From::Time(time)),
        };
        let mut last = None;
        for filter in &filters {
            if let Some(from) = from
                && self
                    .nats
                    .first_sequence(stream, from, filter)
                    .await?
                    .is_none()
            {
                continue; // nothing on this filter from the start on
            }
            if let Some(seq) = self.nats.last_sequence(stream, filter).await? {
                last = last.max(Some(seq));
            }
        }
        Ok(last)
    }

    /// Creates (or recreates) the ordered consumer starting at `start`.
    async fn create_ordered(&mut self, start: Start) -> Result<consumer::Info, ApiError> {
        let name = format!("jetway_{}", nuid::next());
        let (filter_subject, filter_subjects) = match self.spec.filters.as_slice() {
            // JetStream wants a filter with last_per_subject: every subject is `>`.
            [] if start == Start::LastPerSubject => (">".to_owned(), Vec::new()),
            [one] => (one.clone(), Vec::new()),
            many => (String::new(), many.to_vec()),
        };
        let config = consumer::Config {
            name: Some(name.clone()),
            deliver_policy: start.policy(),
            ack_policy: AckPolicy::None,
            replay_policy: ReplayPolicy::Instant,
            filter_subject,
            filter_subjects,
            inactive_threshold: ORDERED_INACTIVE_THRESHOLD,
            num_replicas: 1,
            memory_storage: true,
            description: Some("jetway replay (ordered, ephemeral)".to_owned()),
            ..Default::default()
        };
        let stream = self.spec.stream.clone();
        let body =
            serde_json::json!({ "stream_name": stream, "config": config, "action": "create" });
        let info: consumer::Info = self
            .nats
            .api(
                &format!("CONSUMER.CREATE.{stream}.{name}"),
                &body,
                Op::ConsumerCreate(&stream, &name),
            )
            .await?;
        self.consumer_name = name;
        self.last_consumer_seq = 0;
        self.pulls.clear();
        Ok(info)
    }

    /// Recreates a lost ordered consumer from the last delivered message, retrying with
    /// back-off while NATS is away.
    async fn recreate(&mut self) -> Result<(), ApiError> {
        let old = std::mem::take(&mut self.consumer_name);
        self.delete_consumer(&old).await;
        let start = if self.last_stream_seq == 0 {
            self.spec.start
        } else {
            Start::Sequence(self.last_stream_seq + 1)
        };
        let give_up = tokio::time::Instant::now() + RECREATE_GIVE_UP;
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.create_ordered(start).await {
                Ok(_) => {
                    tracing::debug!(stream.name = %self.spec.stream, from = ?start, "ordered consumer recreated");
                    return Ok(());
                }
                Err(err @ ApiError::StreamNotFound(_)) => return Err(err),
                Err(err) if tokio::time::Instant::now() >= give_up => {
                    return Err(ApiError::Unavailable(format!(
                        "the replay lost its consumer and could not recreate it: {err}; resume with start_seq={}",
                        self.last_stream_seq + 1
                    )));
                }
                Err(err) => {
                    tracing::debug!(error = %err, "recreating ordered consumer");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_RECREATE_BACKOFF);
                }
            }
        }
    }

    async fn delete_consumer(&self, name: &str) {
        if name.is_empty() || self.spec.consumer.is_some() {
            return;
        }
        let stream = &self.spec.stream;
        let deleted: Result<serde_json::Value, ApiError> = self
            .nats
            .api(
                &format!("CONSUMER.DELETE.{stream}.{name}"),
                &serde_json::json!({}),
                Op::Consumer(stream, name),
            )
            .await;
        if let Err(err) = deleted {
            tracing::debug!(error = %err, consumer.name = name, "ordered consumer not deleted; it expires by itself");
        }
    }

    /// Deletes the ordered consumer now.
    pub async fn close(mut self) {
        let name = std::mem::take(&mut self.consumer_name);
        self.delete_consumer(&name).await;
    }

    async fn pull(&mut self, want: usize) -> Result<(), ApiError> {
        let batch = if self.oversized {
            1
        } else {
            want.clamp(1, self.spec.batch_messages)
        };
        let request = PullRequest {
            batch,
            // Two pulls may be in flight: each gets half of the byte budget. After a "message
            // larger than max_bytes" answer, one message without a byte limit.
            max_bytes: (!self.oversized).then(|| (self.spec.batch_bytes / 2).max(1)),
            expires: Some(self.spec.pull_expires),
            heartbeat: Some(self.spec.heartbeat),
            priority: self.spec.group.as_deref().map(|group| PullPriority {
                group,
                pin: self.pin.as_deref(),
                ..PullPriority::default()
            }),
        };
        self.oversized = false;
        self.nats
            .pull_into(
                &mut self.pulls,
                &self.spec.stream,
                &self.consumer_name,
                request,
            )
            .await
    }

    /// The next event. `want` is how many messages the caller could take now (its credit); it
    /// sizes the next pull request.
    pub async fn next(&mut self, want: usize) -> Result<Event, ApiError> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Ok(event);
            }
            if let Some(why) = self.loss.take() {
                self.lost(why).await?;
                continue;
            }
            if let Some(expected) = self.pull_due(want)
                && let Err(err) = self.pull(want.saturating_sub(expected).max(1)).await
            {
                self.lost(err).await?;
                continue;
            }
            if self.pulls.is_empty() {
                continue;
            }
            // Neither messages nor heartbeats for this long: the pulls (or the consumer) are gone.
            let idle = self.spec.heartbeat * 2 + Duration::from_secs(1);
            let (reply, target) = match self.pulls.next(idle).await {
                PullEvent::Message(reply, target) => (reply, target),
                PullEvent::End(end) => {
                    match end {
                        PullEnd::Done => {}
                        PullEnd::TooLarge => self.oversized = true,
                        PullEnd::Failed(err) => self.lost(err).await?,
                    }
                    continue;
                }
            };
            if target.consumer != self.consumer_name {
                continue; // a late reply to a consumer already replaced
            }
            if self.spec.consumer.is_none() && target.consumer_seq != self.last_consumer_seq + 1 {
                self.lost(ApiError::Unavailable("ordered delivery gap".to_owned()))
                    .await?;
                continue;
            }
            self.accept(&reply, &target);
        }
    }

    /// The next event if it is at hand without waiting and without asking JetStream for more:
    /// `None` when [`Replay::next`] has to be called (nothing arrived yet, a pull is due, a pull
    /// ended or the replay has to recover). Taking what is there this way spares the caller a
    /// future per message.
    pub fn ready(&mut self, want: usize) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.loss.is_some() || self.pull_due(want).is_some() {
                return None;
            }
            let PullEvent::Message(reply, target) = self.pulls.ready()? else {
                return None;
            };
            if target.consumer != self.consumer_name {
                continue; // a late reply to a consumer already replaced
            }
            if self.spec.consumer.is_none() && target.consumer_seq != self.last_consumer_seq + 1 {
                self.loss = Some(ApiError::Unavailable("ordered delivery gap".to_owned()));
                return None;
            }
            self.accept(&reply, &target);
        }
    }

    /// Whether to ask for more now, and how many messages are already on their way: more are
    /// asked for while those run low, if the caller can take more than that.
    ///
    /// A durable consumer is pulled one request at a time. JetStream serves the waiting pulls of
    /// a consumer in turn, one message each (nats-server requeues a partly served request at
    /// the end of its wait queue), and a durable consumer hands out no more than its
    /// `max_ack_pending` leaves room for: with a second pull open, every other message would
    /// wait unread behind the first pull, unacknowledged, and once they fill `max_ack_pending`
    /// the first pull would get nothing until it expired. An ordered consumer has no such limit:
    /// the messages of its two pulls interleave, and arrive in the consumer's order on the one
    /// reply subscription of [`Pulls`].
    fn pull_due(&self, want: usize) -> Option<usize> {
        let expected = self.pulls.outstanding();
        let top_up = self.pulls.len() < 2
            && self.spec.consumer.is_none()
            && !self.oversized
            && expected < want
            && expected <= self.spec.batch_messages / 2;
        (self.pulls.is_empty() || top_up).then_some(expected)
    }

    /// Reacts to a lost pull: an ordered replay recreates its consumer; a durable one pulls
    /// again unless the consumer is gone.
    async fn lost(&mut self, why: ApiError) -> Result<(), ApiError> {
        self.pulls.clear();
        if matches!(why, ApiError::InvalidParameter(_)) {
            // The consumer refuses this kind of pull (a priority group missing or unknown, a
            // request above its limits): pulling again would be refused again.
            return Err(why);
        }
        if matches!(why, ApiError::PinMismatch(_)) {
            // The pin went to another worker (this one did not pull for the priority timeout,
            // or it was released): pull on standby until it is free again.
            tracing::info!(reason = %why, "pin lost; pulling on standby");
            self.pin = None;
            return Ok(());
        }
        if self.spec.consumer.is_none() {
            tracing::debug!(reason = %why, "replay recovering");
            self.nats.metrics().replay_recovery();
            return self.recreate().await;
        }
        let (stream, durable) = (self.spec.stream.clone(), self.consumer_name.clone());
        match self.nats.consumer_info(&stream, &durable).await {
            Ok(_) => Ok(()),
            Err(err @ (ApiError::ConsumerNotFound { .. } | ApiError::StreamNotFound(_))) => {
                Err(err)
            }
            Err(_) => {
                // Not reachable right now: wait a little before pulling again.
                tokio::time::sleep(MAX_RECREATE_BACKOFF).await;
                Ok(())
            }
        }
    }

    fn accept(&mut self, reply: &async_nats::Message, target: &AckTarget) {
        if let Some(pin) = reply.headers.as_ref().and_then(|h| h.get(PIN_ID)) {
            self.pin = Some(pin.as_str().to_owned());
        }
        // Stream sequences of an unfiltered replay are contiguous except where messages were
        // deleted; last-per-subject skips on purpose.
        let unfiltered = self.spec.filters.is_empty()
            && self.spec.consumer.is_none()
            && self.spec.start != Start::LastPerSubject;
        if unfiltered && self.last_stream_seq > 0 && target.stream_seq > self.last_stream_seq + 1 {
            self.queue.push_back(Event::Gap {
                from: self.last_stream_seq + 1,
                to: target.stream_seq - 1,
            });
        }
        self.last_consumer_seq = target.consumer_seq;
        self.last_stream_seq = self.last_stream_seq.max(target.stream_seq);
        let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(target.timestamp_ns))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let mut message = Message::new(
            &self.spec.stream,
            reply.subject.as_str(),
            target.stream_seq,
            time,
            reply.headers.as_ref(),
            // Binary frames carry the payload as it is: nothing to render.
            if self.spec.binary {
                &[]
            } else {
                &reply.payload
            },
            self.spec.encoding,
        );
        if self.spec.binary {
            message.raw = Some(reply.payload.clone());
        }
        if self.spec.consumer.is_some() {
            message.delivered = Some(target.delivered);
            message.consumer_seq = Some(target.consumer_seq);
            message.pending = Some(target.pending);
            message.ack_id = Some(self.keys.sign(&target.subject));
        }
        message.size = reply.length;
        self.queue.push_back(Event::Message(Box::new(message)));
        let caught_up = match self.caught_up_at {
            Some(last) => target.stream_seq >= last,
            None => target.pending == 0,
        };
        if caught_up && !self.caught_up_sent {
            self.caught_up_sent = true;
            self.queue.push_back(Event::CaughtUp {
                seq: target.stream_seq,
            });
        }
    }
}

impl Drop for Replay {
    /// A replay dropped without `close` (a client that went away) deletes its ordered consumer
    /// in the background rather than leaving it to expire.
    fn drop(&mut self) {
        if self.consumer_name.is_empty() || self.spec.consumer.is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let nats = self.nats.clone();
        let stream = self.spec.stream.clone();
        let name = std::mem::take(&mut self.consumer_name);
        runtime.spawn(async move {
            let _: Result<serde_json::Value, ApiError> = nats
                .api(
                    &format!("CONSUMER.DELETE.{stream}.{name}"),
                    &serde_json::json!({}),
                    Op::Consumer(&stream, &name),
                )
                .await;
        });
    }
}
