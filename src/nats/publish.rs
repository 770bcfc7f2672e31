//! Publishing with JetStream acknowledgement: one message, a pipelined batch, or an atomic batch.
//!
//! [`Outgoing`] is the single place where client input becomes NATS headers. JetStream matches
//! header names case-sensitively while HTTP delivers them lowercased, so every mapped header is
//! written here with its canonical spelling and clients can never set any other `Nats-*` header.

use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::response::Response;
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::join_all;

use super::Nats;
use super::errors::{self, Checks};
use crate::error::ApiError;

/// Canonical JetStream header names jetway writes.
pub mod header {
    pub const MSG_ID: &str = "Nats-Msg-Id";
    pub const EXPECTED_STREAM: &str = "Nats-Expected-Stream";
    pub const EXPECTED_LAST_SEQUENCE: &str = "Nats-Expected-Last-Sequence";
    pub const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
    pub const EXPECTED_LAST_MSG_ID: &str = "Nats-Expected-Last-Msg-Id";
    pub const TTL: &str = "Nats-TTL";
    pub const BATCH_ID: &str = "Nats-Batch-Id";
    pub const BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
    pub const BATCH_COMMIT: &str = "Nats-Batch-Commit";
    pub const CONTENT_TYPE: &str = "Content-Type";
    pub const INCR: &str = "Nats-Incr";
    pub const SCHEDULE: &str = "Nats-Schedule";
    pub const SCHEDULE_TARGET: &str = "Nats-Schedule-Target";
    pub const SCHEDULE_TIME_ZONE: &str = "Nats-Schedule-Time-Zone";
}

/// The `Nats-*` headers a client may send, by their lowercase HTTP spelling, and the canonical
/// spelling jetway writes.
pub const CLIENT_NATS_HEADERS: [(&str, &str); 5] = [
    ("nats-expected-stream", header::EXPECTED_STREAM),
    (
        "nats-expected-last-sequence",
        header::EXPECTED_LAST_SEQUENCE,
    ),
    (
        "nats-expected-last-subject-sequence",
        header::EXPECTED_LAST_SUBJECT_SEQUENCE,
    ),
    ("nats-expected-last-msg-id", header::EXPECTED_LAST_MSG_ID),
    ("nats-ttl", header::TTL),
];

/// A message ready to publish: subject, validated headers, payload, and the preconditions it
/// carries (to name the failing one in an error).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
    pub checks: Checks,
}

impl Outgoing {
    /// Starts a message to a validated publish subject.
    pub fn new(subject: &str, payload: Bytes) -> Result<Self, ApiError> {
        Self::from_subject(subject.to_owned(), payload)
    }

    /// [`Outgoing::new`] for a subject the caller already holds as its own string.
    pub fn from_subject(subject: String, payload: Bytes) -> Result<Self, ApiError> {
        crate::validate::publish_subject(&subject)?;
        Ok(Self {
            subject,
            headers: HeaderMap::new(),
            payload,
            checks: Checks::default(),
        })
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), ApiError> {
        self.write(name, value, false)
    }

    /// Validates and stores a header, replacing earlier values or (`append`) next to them.
    fn write(&mut self, name: &str, value: &str, append: bool) -> Result<(), ApiError> {
        crate::validate::header(name, value)?;
        let name = HeaderName::try_from(name)
            .map_err(|_| ApiError::InvalidHeader(format!("invalid header name '{name}'")))?;
        let value: HeaderValue = value
            .parse()
            .map_err(|_| ApiError::InvalidHeader(format!("invalid value for header '{name}'")))?;
        if append {
            self.headers.append(name, value);
        } else {
            self.headers.insert(name, value);
        }
        Ok(())
    }

    /// A user header, stored as given. `Nats-*` names are refused: they would let a client
    /// steer the server (`Nats-Rollup` erases a stream).
    pub fn user_header(&mut self, name: &str, value: &str) -> Result<(), ApiError> {
        refuse_nats(name)?;
        self.write(name, value, false)
    }

    /// Another value of a user header (kept next to earlier ones).
    pub fn append_user_header(&mut self, name: &str, value: &str) -> Result<(), ApiError> {
        refuse_nats(name)?;
        self.write(name, value, true)
    }

    /// `Idempotency-Key` → `Nats-Msg-Id`.
    pub fn idempotency_key(&mut self, key: &str) -> Result<(), ApiError> {
        if key.is_empty() || key.len() > 256 {
            return Err(ApiError::InvalidHeader(
                "Idempotency-Key must be 1 to 256 characters".to_owned(),
            ));
        }
        self.set(header::MSG_ID, key)
    }

    /// The payload's `Content-Type`. A media range with a wildcard (`*/*`, `text/*`: what a
    /// client sends when it has no type to name, such as a browser's generic fetch) names no
    /// type: it is not stored, and the message has no `Content-Type`.
    pub fn content_type(&mut self, value: &str) -> Result<(), ApiError> {
        let essence = value.split(';').next().unwrap_or_default();
        if essence.split('/').any(|part| part.trim() == "*") {
            return Ok(());
        }
        self.set(header::CONTENT_TYPE, value)
    }

    pub fn expected_stream(&mut self, stream: &str) -> Result<(), ApiError> {
        crate::validate::name("stream", stream)?;
        self.checks.expected_stream = Some(stream.to_owned());
        self.set(header::EXPECTED_STREAM, stream)
    }

    pub fn expected_last_sequence(&mut self, seq: u64) -> Result<(), ApiError> {
        self.checks.expected_last_sequence = Some(seq);
        self.set(header::EXPECTED_LAST_SEQUENCE, &seq.to_string())
    }

    pub fn expected_last_subject_sequence(&mut self, seq: u64) -> Result<(), ApiError> {
        self.checks.expected_last_subject_sequence = Some(seq);
        self.set(header::EXPECTED_LAST_SUBJECT_SEQUENCE, &seq.to_string())
    }

    pub fn expected_last_msg_id(&mut self, id: &str) -> Result<(), ApiError> {
        self.checks.expected_last_msg_id = Some(id.to_owned());
        self.set(header::EXPECTED_LAST_MSG_ID, id)
    }

    /// A counter increment (`Nats-Incr`): a whole number, negative to decrement, as decimal
    /// text of at most [`MAX_INCREMENT_DIGITS`] digits (JetStream counters are arbitrary
    /// precision). The message carries no payload.
    pub fn increment(&mut self, by: &str) -> Result<(), ApiError> {
        let digits = by.strip_prefix(['+', '-']).unwrap_or(by);
        if digits.is_empty()
            || digits.len() > MAX_INCREMENT_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ApiError::InvalidBody(format!(
                "increment must be a whole number of at most {MAX_INCREMENT_DIGITS} digits, \
                 optionally signed ('5', '-3', '+12'), got '{by}'"
            )));
        }
        self.payload = Bytes::new();
        self.set(header::INCR, by)
    }

    /// Makes this message a schedule (`Nats-Schedule`, nats-server 2.12+): at the times
    /// `pattern` names (`@at <RFC 3339>`, `@every <duration>`, a cron expression), JetStream
    /// publishes its payload and headers to `target`. `time_zone` (IANA name) only with cron.
    pub fn schedule(
        &mut self,
        pattern: &str,
        target: &str,
        time_zone: Option<&str>,
    ) -> Result<(), ApiError> {
        crate::validate::publish_subject(target)?;
        self.set(header::SCHEDULE, pattern)?;
        self.set(header::SCHEDULE_TARGET, target)?;
        if let Some(zone) = time_zone {
            self.set(header::SCHEDULE_TIME_ZONE, zone)?;
        }
        Ok(())
    }

    /// Per-message TTL: `never`, or a whole number of seconds, minutes or hours from 1 to 999999
    /// (`30s`, `5m`, `2h`; the OpenAPI document's pattern), stored in seconds.
    pub fn ttl(&mut self, text: &str) -> Result<(), ApiError> {
        if text == "never" {
            return self.set(header::TTL, "never");
        }
        let seconds = ttl_seconds(text).ok_or_else(|| ApiError::InvalidTtl {
            detail: format!(
                "Nats-TTL '{text}' must be a whole number of seconds, minutes or hours from 1 to \
                 999999 ('30s', '5m', '2h'), or 'never'"
            ),
            jetstream_code: None,
        })?;
        self.set(header::TTL, &format!("{seconds}s"))
    }

    /// Applies a client-sent `Nats-*` header, identified by its lowercase name.
    pub fn client_nats_header(
        &mut self,
        lowercase_name: &str,
        value: &str,
    ) -> Result<(), ApiError> {
        // Decimal digits only (`+5` would parse too), as the OpenAPI document's pattern says.
        let parse_seq = |v: &str| {
            let v = v.trim();
            v.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| {
                    ApiError::InvalidHeader(format!(
                        "{lowercase_name} must be a sequence number (decimal digits), got '{v}'"
                    ))
                })
        };
        match lowercase_name {
            "nats-expected-stream" => self.expected_stream(value.trim()),
            "nats-expected-last-sequence" => self.expected_last_sequence(parse_seq(value)?),
            "nats-expected-last-subject-sequence" => {
                self.expected_last_subject_sequence(parse_seq(value)?)
            }
            "nats-expected-last-msg-id" => self.expected_last_msg_id(value),
            "nats-ttl" => self.ttl(value),
            other => Err(forbidden(other)),
        }
    }
}

fn refuse_nats(name: &str) -> Result<(), ApiError> {
    if name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-") {
        return Err(forbidden(name));
    }
    Ok(())
}

fn forbidden(name: &str) -> ApiError {
    let hint = if name.eq_ignore_ascii_case("nats-msg-id") {
        " (use the Idempotency-Key header for deduplication)"
    } else {
        ""
    };
    ApiError::ForbiddenHeader(format!(
        "header '{name}' may not be set by clients{hint}; allowed Nats-* headers: \
         Nats-Expected-Stream, Nats-Expected-Last-Sequence, Nats-Expected-Last-Subject-Sequence, \
         Nats-Expected-Last-Msg-Id, Nats-TTL"
    ))
}

/// Most digits of a counter increment.
pub const MAX_INCREMENT_DIGITS: usize = 100;

/// A stored message's place in its stream.
#[derive(Debug, Clone)]
pub struct Stored {
    pub stream: String,
    pub seq: u64,
    pub duplicate: bool,
    /// A counter's value after an increment (`val` in the PubAck), as decimal text.
    pub value: Option<String>,
}

impl From<PublishAck> for Stored {
    fn from(ack: PublishAck) -> Self {
        Self {
            stream: ack.stream,
            seq: ack.sequence,
            duplicate: ack.duplicate,
            value: ack.value,
        }
    }
}

/// A message sent with [`Nats::send_one`], its PubAck still to come.
pub struct InFlight {
    sent: Sent,
    /// To send it again when JetStream asks for that.
    copy: Option<Outgoing>,
}

/// A publish that was sent (its PubAck still to come) or that failed before it could be.
enum Sent {
    Pending {
        ack: PublishAckFuture,
        subject: String,
        checks: Checks,
    },
    Failed(ApiError),
}

impl Nats {
    async fn send(&self, message: Outgoing) -> Sent {
        if message.checks.expected_last_msg_id.is_some()
            && let Err(err) =
                Box::pin(self.refuse_last_msg_id_on_replicated(&message.subject)).await
        {
            return Sent::Failed(err);
        }
        let Outgoing {
            subject,
            headers,
            payload,
            checks,
        } = message;
        let publish = async_nats::jetstream::message::PublishMessage::build()
            .payload(payload)
            .headers(headers);
        match self.js_publish.send_publish(subject.clone(), publish).await {
            Ok(ack) => Sent::Pending {
                ack,
                subject,
                checks,
            },
            Err(err) => Sent::Failed(errors::from_publish(
                &err,
                &subject,
                &checks,
                self.publish_timeout,
            )),
        }
    }

    /// Sends one message without waiting for its PubAck, for callers that keep many in flight
    /// and need them sent in their order; [`Nats::settle`] awaits the answer.
    pub async fn send_one(&self, message: Outgoing) -> InFlight {
        if let Err(down) = self.ensure_connected() {
            return InFlight {
                sent: Sent::Failed(ApiError::Unavailable(down.to_string())),
                copy: None,
            };
        }
        let copy = message.clone();
        InFlight {
            sent: self.send(message).await,
            copy: Some(copy),
        }
    }

    /// Awaits the PubAck of a message sent with [`Nats::send_one`]. An answer that
    /// [`Nats::publish_all`] retries (no leader yet, the same `Idempotency-Key` still being
    /// stored) is handed to it, which sends the message again: such a message may then be
    /// stored after messages sent after it.
    pub async fn settle(&self, in_flight: InFlight) -> Result<Stored, ApiError> {
        let result = match in_flight.sent {
            Sent::Pending {
                ack,
                subject,
                checks,
            } => ack
                .await
                .map(Stored::from)
                .map_err(|err| errors::from_publish(&err, &subject, &checks, self.publish_timeout)),
            Sent::Failed(err) => Err(err),
        };
        match (result, in_flight.copy) {
            (Err(ApiError::SubjectNotCaptured(_) | ApiError::PublishInProgress(_)), Some(copy)) => {
                // Boxed: the retrying path is rare and large, and would make every message in
                // flight as large as it.
                Box::pin(self.publish_all(vec![Ok(copy)]))
                    .await
                    .pop()
                    .unwrap_or_else(|| {
                        Err(ApiError::Internal("publish produced no result".to_owned()))
                    })
            }
            (result, _) => result,
        }
    }

    /// Publishes one message and waits for JetStream's PubAck, retrying as
    /// [`Nats::publish_all`] does (only when the first answer asks for it).
    pub async fn publish(&self, message: Outgoing) -> Result<Stored, ApiError> {
        let in_flight = self.send_one(message).await;
        self.settle(in_flight).await
    }

    /// Publishes every valid message pipelined (all sent before any PubAck is awaited) and
    /// answers one result per input, in order. Invalid inputs keep their error.
    ///
    /// Two answers are transient and are retried, with back-off, within the publish timeout:
    /// - "no responders" while a stream captures the subject: the stream is electing a leader
    ///   (nothing received the message, so sending it again cannot store it twice);
    /// - JetStream 10158: an earlier attempt with the same `Idempotency-Key` is still being
    ///   stored (a retry that overtook a slow first attempt); the answer is then the original
    ///   PubAck (`duplicate: true`) or the first attempt's error.
    ///
    /// What is still undecided at the timeout is answered 503 with `Retry-After`.
    pub async fn publish_all(
        &self,
        messages: Vec<Result<Outgoing, ApiError>>,
    ) -> Vec<Result<Stored, ApiError>> {
        if let Err(down) = self.ensure_connected() {
            return messages
                .into_iter()
                .map(|m| {
                    Err(m
                        .err()
                        .unwrap_or_else(|| ApiError::Unavailable(down.to_string())))
                })
                .collect();
        }
        let retry_until = tokio::time::Instant::now() + self.publish_timeout;
        let copies: Vec<Option<Outgoing>> =
            messages.iter().map(|m| m.as_ref().ok().cloned()).collect();
        let mut results = self.send_all(messages).await;
        let mut backoff = Duration::from_millis(20);
        loop {
            let (refined, leaderless) = self.refine_not_captured(results).await;
            results = refined;
            let again: Vec<usize> = results
                .iter()
                .enumerate()
                .filter(|(i, r)| {
                    let in_progress = matches!(r, Err(ApiError::PublishInProgress(_)));
                    (in_progress || leaderless.contains(i)) && copies[*i].is_some()
                })
                .map(|(i, _)| i)
                .collect();
            if again.is_empty() || tokio::time::Instant::now() + backoff >= retry_until {
                return results;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
            let resend = again
                .iter()
                .map(|i| {
                    copies[*i]
                        .clone()
                        .ok_or_else(|| ApiError::Internal("no copy".into()))
                })
                .collect();
            for (i, result) in again.into_iter().zip(self.send_all(resend).await) {
                results[i] = result;
            }
        }
    }

    /// Sends every valid message, then awaits every PubAck.
    async fn send_all(
        &self,
        messages: Vec<Result<Outgoing, ApiError>>,
    ) -> Vec<Result<Stored, ApiError>> {
        let mut sent = Vec::with_capacity(messages.len());
        for message in messages {
            sent.push(match message {
                Ok(message) => self.send(message).await,
                Err(err) => Sent::Failed(err),
            });
        }
        let timeout = self.publish_timeout;
        join_all(sent.into_iter().map(|sent| async move {
            match sent {
                Sent::Pending {
                    ack,
                    subject,
                    checks,
                } => ack
                    .await
                    .map(Stored::from)
                    .map_err(|err| errors::from_publish(&err, &subject, &checks, timeout)),
                Sent::Failed(err) => Err(err),
            }
        }))
        .await
    }

    /// "No responders" on publish means that no stream captures the subject, or that one does
    /// and cannot take the message right now: JetStream is down, or the stream has no leader
    /// (an election on a cluster, which JetStream's own ping does not reveal). Asking which
    /// streams capture each such subject tells the two apart; only "none" is a 404.
    ///
    /// Answers the refined results and the indices of those whose stream exists but has no
    /// leader (worth sending again).
    async fn refine_not_captured(
        &self,
        mut results: Vec<Result<Stored, ApiError>>,
    ) -> (Vec<Result<Stored, ApiError>>, Vec<usize>) {
        let mut subjects: Vec<String> = results
            .iter()
            .filter_map(|r| match r {
                Err(ApiError::SubjectNotCaptured(subject)) => Some(subject.clone()),
                _ => None,
            })
            .collect();
        if subjects.is_empty() {
            return (results, Vec::new());
        }
        subjects.sort_unstable();
        subjects.dedup();
        let verdicts: std::collections::HashMap<String, Option<(bool, ApiError)>> = futures::stream::iter(
            subjects,
        )
        .map(|subject| async move {
            let verdict = self.capturing_streams(&subject).await;
            (subject, verdict)
        })
        .buffer_unordered(8)
        .map(|(subject, verdict)| {
            let err = match verdict {
                Ok(streams) if streams.is_empty() => None,
                Ok(streams) => Some((true, ApiError::Unavailable(format!(
                    "stream '{}' captures subject '{subject}' but cannot store it right now \
                             (no leader: it may be electing one); nothing was stored, retry with \
                             the same Idempotency-Key",
                    streams.join("', '")
                )))),
                Err(err) => Some((false, ApiError::Unavailable(format!(
                    "JetStream did not store the message and cannot be asked why right \
                             now ({err}); retry with the same Idempotency-Key"
                )))),
            };
            (subject, err)
        })
        .collect()
        .await;
        let mut leaderless = Vec::new();
        for (index, result) in results.iter_mut().enumerate() {
            if let Err(ApiError::SubjectNotCaptured(subject)) = result
                && let Some(Some((retry, err))) = verdicts.get(subject.as_str())
            {
                if *retry {
                    leaderless.push(index);
                }
                *result = Err(clone_unavailable(err));
            }
        }
        (results, leaderless)
    }

    /// nats-server (2.15.1, and its source as of this writing) checks
    /// `Nats-Expected-Last-Msg-Id` on a replicated stream only when the replicas apply the
    /// message, and treats a failed check there as a critical write error: the stream stops
    /// taking writes and loses its leader. One bad precondition would take the stream down for
    /// every client, so jetway refuses the header for streams with more than one replica.
    pub(super) async fn refuse_last_msg_id_on_replicated(
        &self,
        subject: &str,
    ) -> Result<(), ApiError> {
        #[derive(serde::Deserialize)]
        struct Info {
            config: InfoConfig,
        }
        #[derive(serde::Deserialize)]
        struct InfoConfig {
            #[serde(default)]
            num_replicas: usize,
        }
        let Some(stream) = self.capturing_streams(subject).await?.into_iter().next() else {
            return Ok(()); // nothing captures it: the publish answers 404
        };
        let info: Info = self
            .api(
                &format!("STREAM.INFO.{stream}"),
                &serde_json::json!({}),
                super::Op::Stream(&stream),
            )
            .await?;
        if info.config.num_replicas > 1 {
            return Err(ApiError::NotSupportedByServer {
                detail: format!(
                    "Nats-Expected-Last-Msg-Id is refused on stream '{stream}' because it has {} \
                     replicas: nats-server stops a replicated stream when this check fails. Use \
                     Nats-Expected-Last-Subject-Sequence or Nats-Expected-Last-Sequence instead; \
                     nothing was stored",
                    info.config.num_replicas
                ),
                jetstream_code: None,
            });
        }
        Ok(())
    }

    /// Names of the streams whose subjects match `subject`.
    async fn capturing_streams(&self, subject: &str) -> Result<Vec<String>, ApiError> {
        #[derive(serde::Deserialize)]
        struct Names {
            #[serde(default)]
            streams: Option<Vec<String>>,
        }
        let names: Names = self
            .api(
                "STREAM.NAMES",
                &serde_json::json!({ "subject": subject }),
                super::Op::Account,
            )
            .await?;
        Ok(names.streams.unwrap_or_default())
    }

    /// Publishes all messages as one JetStream atomic batch: every message is stored, or none.
    pub async fn publish_atomic(&self, messages: Vec<Outgoing>) -> Result<Vec<Stored>, ApiError> {
        self.ensure_connected()?;
        let count = messages.len();
        if count == 0 {
            return Ok(Vec::new());
        }
        let version = self.client.server_info().version;
        if !server_at_least(&version, 2, 12) {
            return Err(ApiError::NotSupportedByServer {
                detail: format!(
                    "atomic batch publish needs nats-server 2.12 or newer; connected server is {version}"
                ),
                jetstream_code: None,
            });
        }
        let batch_id = nuid::next().to_string();
        let mut last_answer = None;
        for (index, mut message) in messages.into_iter().enumerate() {
            let position = index + 1;
            let batch_headers = [
                (header::BATCH_ID, batch_id.clone()),
                (header::BATCH_SEQUENCE, position.to_string()),
            ];
            for (name, value) in batch_headers {
                message.set(name, &value)?;
            }
            let last = position == count;
            if last {
                message.set(header::BATCH_COMMIT, "1")?;
            }
            // The first message is a request so that a refusal (atomic not enabled, no stream)
            // is known before the rest is sent; the middle ones are plain publishes; the last
            // one is a request whose answer is the batch's PubAck.
            if position == 1 || last {
                let reply = tokio::time::timeout(
                    self.publish_timeout,
                    self.client
                        .request_with_headers(message.subject.clone(), message.headers.clone(), message.payload.clone()),
                )
                .await
                .map_err(|_| {
                    ApiError::Timeout(format!(
                        "no answer from JetStream within {} for atomic batch message {position}; \
                         the batch was abandoned unless it was committed: check the stream before retrying",
                        crate::duration::format(self.publish_timeout)
                    ))
                })?;
                let reply = match reply {
                    Ok(reply) => reply,
                    Err(err) if err.kind() == async_nats::RequestErrorKind::NoResponders => {
                        let not_captured = ApiError::SubjectNotCaptured(message.subject.clone());
                        let (refined, _) = self.refine_not_captured(vec![Err(not_captured)]).await;
                        return Err(refined
                            .into_iter()
                            .next()
                            .and_then(Result::err)
                            .unwrap_or_else(|| {
                                ApiError::SubjectNotCaptured(message.subject.clone())
                            }));
                    }
                    Err(err) => {
                        return Err(ApiError::Unavailable(format!(
                            "atomic batch publish failed: {err}"
                        )));
                    }
                };
                if reply.payload.is_empty() {
                    continue;
                }
                let answer: Response<PublishAck> = serde_json::from_slice(&reply.payload)
                    .map_err(|err| ApiError::internal("cannot decode atomic batch answer", err))?;
                match answer {
                    Response::Err { error } => {
                        return Err(
                            match errors::from_jetstream(
                                &error,
                                super::Op::Publish(&message.checks),
                            ) {
                                ApiError::JetStream {
                                    detail,
                                    jetstream_code,
                                } => ApiError::AtomicBatchFailed {
                                    detail,
                                    jetstream_code,
                                },
                                other => other,
                            },
                        );
                    }
                    Response::Ok(ack) => last_answer = Some(ack),
                }
            } else {
                self.client
                    .publish_with_headers(
                        message.subject.clone(),
                        message.headers.clone(),
                        message.payload.clone(),
                    )
                    .await
                    .map_err(|err| {
                        ApiError::Unavailable(format!("atomic batch publish failed: {err}"))
                    })?;
            }
        }
        let Some(ack) = last_answer else {
            return Err(ApiError::JetStream {
                detail: "JetStream did not acknowledge the atomic batch commit".to_owned(),
                jetstream_code: None,
            });
        };
        let first_seq = ack.sequence + 1 - count as u64;
        Ok((0..count as u64)
            .map(|i| Stored {
                stream: ack.stream.clone(),
                seq: first_seq + i,
                duplicate: false,
                value: None,
            })
            .collect())
    }
}

fn clone_unavailable(err: &ApiError) -> ApiError {
    ApiError::Unavailable(err.to_string())
}

/// Is `version` (`2.15.1`, `2.12.0-beta.1`) at least `major.minor`?
fn server_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let have_major = parts
        .next()
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0);
    let have_minor = parts
        .next()
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0);
    (have_major, have_minor) >= (major, minor)
}

/// `30s`, `5m`, `2h` in seconds: 1 to 6 digits without a leading zero, then the unit.
fn ttl_seconds(text: &str) -> Option<u64> {
    let (digits, scale) = if let Some(digits) = text.strip_suffix('s') {
        (digits, 1)
    } else if let Some(digits) = text.strip_suffix('m') {
        (digits, 60)
    } else {
        (text.strip_suffix('h')?, 3600)
    };
    let valid = (1..=6).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    valid
        .then(|| digits.parse::<u64>().ok())
        .flatten()
        .map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions() {
        assert!(server_at_least("2.15.1", 2, 12));
        assert!(server_at_least("2.12.0-beta.1", 2, 12));
        assert!(!server_at_least("2.11.9", 2, 12));
        assert!(!server_at_least("", 2, 12));
    }

    #[test]
    fn mapped_headers_use_canonical_spelling() {
        let mut message = Outgoing::new("a.b", Bytes::new()).unwrap();
        message
            .client_nats_header("nats-expected-last-sequence", "7")
            .unwrap();
        message.client_nats_header("nats-ttl", "30s").unwrap();
        message.idempotency_key("k1").unwrap();
        let names: Vec<String> = message.headers.iter().map(|(n, _)| n.to_string()).collect();
        for canonical in ["Nats-Expected-Last-Sequence", "Nats-TTL", "Nats-Msg-Id"] {
            assert!(
                names.iter().any(|n| n == canonical),
                "{canonical} missing from {names:?}"
            );
        }
    }

    #[test]
    fn other_nats_headers_are_refused() {
        let mut message = Outgoing::new("a.b", Bytes::new()).unwrap();
        let err = message
            .client_nats_header("nats-rollup", "all")
            .unwrap_err();
        assert_eq!(err.code(), "forbidden_header");
        assert!(message.user_header("NATS-Rollup", "all").is_err());
    }

    #[test]
    fn ttl_needs_whole_seconds() {
        let mut message = Outgoing::new("a.b", Bytes::new()).unwrap();
        for bad in [
            "1500ms", "0s", "05s", "1h 30m", "1000000s", "NEVER", " 5s", "s", "", "5d",
        ] {
            assert!(message.ttl(bad).is_err(), "{bad}");
        }
        assert!(message.ttl("999999h").is_ok());
        assert!(message.ttl("never").is_ok());
        assert!(message.ttl("2m").is_ok());
        assert_eq!(message.headers.get("Nats-TTL").unwrap().as_str(), "120s");
    }
}
