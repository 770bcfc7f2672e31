//! Publishes of a long-lived session, pipelined on one reply subscription.
//!
//! [`Nats::send_one`] goes through async-nats' JetStream publish, which gives each message its
//! own reply subject, answer channel, timer and future. A session that keeps hundreds of
//! publishes in flight pays for all of that per message. A [`Pipeline`] instead subscribes once
//! to a reply prefix of its own, numbers its messages under it, reads each PubAck in place and
//! times out what is left unanswered with one periodic sweep. Every answer is classified as a
//! single publish's is, and the answers a single publish retries (no stream leader yet, the same
//! `Idempotency-Key` still being stored) are retried the same way, by [`Nats::publish_all`].

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::pin::Pin;
use std::time::Duration;

use async_nats::{StatusCode, Subject, Subscriber};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use serde::Deserialize;
use tokio::time::{Instant, Sleep};

use super::Nats;
use super::errors::{self, Checks, Op};
use super::publish::{Outgoing, Stored};
use crate::error::ApiError;

/// One publish's outcome, with the caller's tag.
pub type Answer<T> = (T, Result<Stored, ApiError>);

/// Most often the unanswered publishes are checked for their timeout, and least.
const SWEEP_MIN: Duration = Duration::from_millis(10);
const SWEEP_MAX: Duration = Duration::from_secs(1);

/// A publish sent, its PubAck still to come: what to answer it with, and what to send again if
/// JetStream asks for that.
struct Waiting<T> {
    tag: T,
    sent: Sent,
}

/// A message handed to NATS.
struct Sent {
    deadline: Instant,
    subject: Subject,
    headers: async_nats::HeaderMap,
    payload: bytes::Bytes,
    checks: Checks,
}

impl Sent {
    fn into_outgoing(self) -> Outgoing {
        Outgoing {
            subject: self.subject.to_string(),
            headers: self.headers,
            payload: self.payload,
            checks: self.checks,
        }
    }
}

/// A session's publishes in flight. Messages are sent in the order of [`Pipeline::send`]
/// calls, so JetStream stores them in that order; answers come out of [`Pipeline::next`] as
/// their PubAcks arrive, which for messages to different streams (or retried ones) is not
/// necessarily the order they were sent in.
pub struct Pipeline<T> {
    nats: Nats,
    /// `<inbox>.`: a message's reply subject is this and its number.
    prefix: String,
    /// Subscribed with the first message sent.
    replies: Option<Subscriber>,
    /// The number the next message gets.
    number: u64,
    waiting: HashMap<u64, Waiting<T>>,
    /// Answers known without a PubAck to wait for (refused before sending, timed out).
    ready: VecDeque<Answer<T>>,
    /// Publishes sent again by [`Nats::publish_all`].
    retries: FuturesUnordered<BoxFuture<'static, Answer<T>>>,
    /// Wakes the timeout sweep; armed while messages wait.
    sweep: Pin<Box<Sleep>>,
    sweep_every: Duration,
}

/// What woke [`Pipeline::next`].
enum Woken<T> {
    Reply(Option<async_nats::Message>),
    Retried(Answer<T>),
    Sweep,
}

impl<T: Send + 'static> Pipeline<T> {
    pub fn new(nats: &Nats) -> Self {
        let sweep_every = (nats.publish_timeout / 8).clamp(SWEEP_MIN, SWEEP_MAX);
        let mut prefix = nats.client.new_inbox();
        prefix.push('.');
        Self {
            nats: nats.clone(),
            prefix,
            replies: None,
            number: 0,
            waiting: HashMap::new(),
            ready: VecDeque::new(),
            retries: FuturesUnordered::new(),
            sweep: Box::pin(tokio::time::sleep(sweep_every)),
            sweep_every,
        }
    }

    /// Publishes whose answer was not taken yet: sent, being retried, or answered and waiting
    /// for [`Pipeline::next`]. A caller that bounds this bounds the pipeline's memory.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.retries.len() + self.ready.len()
    }

    /// Nothing in flight and no answer left to take.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends `message` without waiting for its PubAck; its answer comes out of
    /// [`Pipeline::next`] with `tag`.
    pub async fn send(&mut self, message: Outgoing, tag: T) {
        let number = self.number;
        match self.try_send(message, number).await {
            Ok(sent) => {
                self.number += 1;
                if self.waiting.is_empty() {
                    self.sweep.as_mut().reset(Instant::now() + self.sweep_every);
                }
                self.waiting.insert(number, Waiting { tag, sent });
            }
            Err(err) => self.ready.push_back((tag, Err(err))),
        }
    }

    async fn try_send(&mut self, message: Outgoing, number: u64) -> Result<Sent, ApiError> {
        self.nats.ensure_connected()?;
        if message.checks.expected_last_msg_id.is_some() {
            Box::pin(self.nats.refuse_last_msg_id_on_replicated(&message.subject)).await?;
        }
        if self.replies.is_none() {
            let subscribed = self
                .nats
                .client
                .subscribe(format!("{}*", self.prefix))
                .await
                .map_err(|err| {
                    ApiError::Unavailable(format!("cannot subscribe to PubAcks: {err}"))
                })?;
            self.replies = Some(subscribed);
        }
        let mut reply = String::with_capacity(self.prefix.len() + 20);
        reply.push_str(&self.prefix);
        let _ = write!(reply, "{number}");
        let Outgoing {
            subject,
            headers,
            payload,
            checks,
        } = message;
        let subject = Subject::from(subject);
        self.nats
            .client
            .publish_with_reply_and_headers(
                subject.clone(),
                Subject::from(reply),
                headers.clone(),
                payload.clone(),
            )
            .await
            .map_err(|err| ApiError::Unavailable(format!("publish failed: {err}")))?;
        Ok(Sent {
            deadline: Instant::now() + self.nats.publish_timeout,
            subject,
            headers,
            payload,
            checks,
        })
    }

    /// The next answer: a PubAck read, a retry finished, or a timeout. `None` when nothing is
    /// in flight. Cancel-safe: an answer is never lost to a dropped call.
    pub async fn next(&mut self) -> Option<Answer<T>> {
        loop {
            if let Some(answer) = self.ready.pop_front() {
                return Some(answer);
            }
            if self.waiting.is_empty() && self.retries.is_empty() {
                return None;
            }
            let waiting = !self.waiting.is_empty();
            let woken = tokio::select! {
                reply = next_reply(&mut self.replies), if waiting => Woken::Reply(reply),
                Some(answer) = self.retries.next(), if !self.retries.is_empty() => {
                    Woken::Retried(answer)
                }
                () = &mut self.sweep, if waiting => Woken::Sweep,
            };
            match woken {
                Woken::Reply(Some(reply)) => {
                    if let Some(answer) = self.receive(&reply) {
                        return Some(answer);
                    }
                }
                Woken::Reply(None) => self.fail_all(),
                Woken::Retried(answer) => return Some(answer),
                Woken::Sweep => self.expire(),
            }
        }
    }

    /// The answer a reply settles, unless it is retried or is for no message waiting.
    fn receive(&mut self, reply: &async_nats::Message) -> Option<Answer<T>> {
        let number = reply
            .subject
            .as_str()
            .strip_prefix(self.prefix.as_str())?
            .parse::<u64>()
            .ok()?;
        let waiting = self.waiting.remove(&number)?;
        let result = if reply.status == Some(StatusCode::NO_RESPONDERS) {
            Err(ApiError::SubjectNotCaptured(
                waiting.sent.subject.to_string(),
            ))
        } else {
            read_pub_ack(&reply.payload, &waiting.sent.checks)
        };
        match result {
            Err(ApiError::SubjectNotCaptured(_) | ApiError::PublishInProgress(_)) => {
                let nats = self.nats.clone();
                let (tag, message) = (waiting.tag, waiting.sent.into_outgoing());
                // Boxed and rare: no stream leader yet, or a retry that overtook its original.
                self.retries.push(Box::pin(async move {
                    let result = nats.publish_all(vec![Ok(message)]).await.pop();
                    let result = result.unwrap_or_else(|| {
                        Err(ApiError::Internal("publish produced no result".to_owned()))
                    });
                    (tag, result)
                }));
                None
            }
            result => Some((waiting.tag, result)),
        }
    }

    /// Answers every message past its deadline with a timeout, and re-arms the sweep.
    fn expire(&mut self) {
        let now = Instant::now();
        let mut expired: Vec<Waiting<T>> = self
            .waiting
            .extract_if(|_, waiting| waiting.sent.deadline <= now)
            .map(|(_, waiting)| waiting)
            .collect();
        expired.sort_by_key(|waiting| waiting.sent.deadline);
        let timeout = self.nats.publish_timeout;
        for waiting in expired {
            let err = errors::publish_timed_out(timeout);
            self.ready.push_back((waiting.tag, Err(err)));
        }
        self.sweep.as_mut().reset(now + self.sweep_every);
    }

    /// The reply subscription ended (the client is closing): nothing waiting can be answered.
    fn fail_all(&mut self) {
        self.replies = None;
        let mut lost: Vec<(u64, Waiting<T>)> = self.waiting.drain().collect();
        lost.sort_by_key(|(number, _)| *number);
        for (_, waiting) in lost {
            let err = ApiError::Unavailable(
                "the NATS connection closed before JetStream acknowledged the message; \
                 retry with the same Idempotency-Key"
                    .to_owned(),
            );
            self.ready.push_back((waiting.tag, Err(err)));
        }
    }
}

async fn next_reply(replies: &mut Option<Subscriber>) -> Option<async_nats::Message> {
    match replies {
        Some(replies) => replies.next().await,
        None => None,
    }
}

/// A PubAck, read in place: `{"stream":…,"seq":…}` or `{"error":{…}}`.
#[derive(Deserialize)]
struct PubAck<'a> {
    #[serde(default, borrow)]
    stream: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    val: Option<String>,
    #[serde(default)]
    error: Option<async_nats::jetstream::Error>,
}

/// Classifies a PubAck as a single publish's answer is classified.
fn read_pub_ack(payload: &[u8], checks: &Checks) -> Result<Stored, ApiError> {
    let ack: PubAck<'_> = serde_json::from_slice(payload).map_err(|err| {
        ApiError::Unavailable(format!(
            "JetStream's answer to the publish could not be read ({err}); the message may or \
             may not be stored: retry with the same Idempotency-Key"
        ))
    })?;
    if let Some(error) = ack.error {
        return Err(errors::from_jetstream(&error, Op::Publish(checks)));
    }
    match ack.stream {
        Some(stream) => Ok(Stored {
            stream: stream.into_owned(),
            seq: ack.seq,
            duplicate: ack.duplicate,
            value: ack.val,
        }),
        None => Err(ApiError::Unavailable(
            "JetStream's answer to the publish named no stream; the message may or may not be \
             stored: retry with the same Idempotency-Key"
                .to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pub_acks_are_read_as_single_publishes_read_them() {
        let checks = Checks::default();
        let stored = read_pub_ack(br#"{"stream":"ORDERS","seq":7,"duplicate":true}"#, &checks)
            .expect("stored");
        assert_eq!(
            (stored.stream.as_str(), stored.seq, stored.duplicate),
            ("ORDERS", 7, true)
        );
        let counter = read_pub_ack(br#"{"stream":"C","seq":2,"val":"12"}"#, &checks).expect("ok");
        assert_eq!(counter.value.as_deref(), Some("12"));
        let checks = Checks {
            expected_last_sequence: Some(3),
            ..Checks::default()
        };
        let refused = read_pub_ack(
            br#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"}}"#,
            &checks,
        )
        .expect_err("refused");
        assert_eq!(refused.code(), "precondition_failed");
        let in_progress = read_pub_ack(
            br#"{"error":{"code":503,"err_code":10158,"description":"in progress"}}"#,
            &checks,
        )
        .expect_err("in progress");
        assert!(matches!(in_progress, ApiError::PublishInProgress(_)));
        for garbage in [&b"not json"[..], b"{}", b"[1]"] {
            assert_eq!(
                read_pub_ack(garbage, &checks).expect_err("garbage").code(),
                "jetstream_unavailable"
            );
        }
    }
}
