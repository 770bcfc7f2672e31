//! One push subscription's worker on this replica: pull from its durable consumer, POST each
//! message, then ack (2xx), nak with the retry delay, or dead-letter and term.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::ackid::AckTarget;
use crate::error::ApiError;
use crate::message::{EncodingChoice, Message};
use crate::nats::consumers::AckAction;
use crate::ops::acks;
use crate::ops::push::{self as defs, Counts, Definition, MAX_BACKOFF};
use crate::ops::replay::{Event, Replay, ReplaySpec, Start};

/// How long one pull waits at the server.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// Most bytes of a receiver's answer read (for the error text of a failure).
const MAX_ANSWER_BYTES: usize = 4 * 1024;
/// How often a replica adds its counts to the subscription's status record.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait before pulling again after the consumer could not be reached.
const MAX_RETRY: Duration = Duration::from_secs(5);
/// Most messages one pull asks for. JetStream hands a pull no more than the consumer's
/// `max_ack_pending` (the subscription's `max_in_flight`, over every replica) leaves room for,
/// and a durable consumer is pulled one request at a time, so a pull larger than
/// `max_in_flight` never makes a message wait for a free slot here: it stays open and receives
/// the next message as soon as an ack makes room, instead of one pull (a subscription at the
/// server) per message.
const PULL_BATCH: usize = 256;
/// A message that waited this long for a connection has its `ack_wait` restarted first.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// Header names of a delivery.
pub mod header {
    pub const ID: &str = "webhook-id";
    pub const TIMESTAMP: &str = "webhook-timestamp";
    pub const SIGNATURE: &str = "webhook-signature";
    pub const STREAM: &str = "jetway-stream";
    pub const SEQUENCE: &str = "jetway-seq";
    pub const SUBJECT: &str = "jetway-subject";
    pub const TIME: &str = "jetway-time";
    pub const DELIVERY: &str = "jetway-delivery-count";
    pub const PUSH: &str = "jetway-push";
    /// Stored message headers go out as `x-msg-<name>`.
    pub const MSG_PREFIX: &str = "x-msg-";
    /// On a dead-letter copy.
    pub const LAST_STATUS: &str = "Jetway-Push-Last-Status";
    pub const LAST_ERROR: &str = "Jetway-Push-Last-Error";
}

/// What one attempt came to.
#[derive(Debug)]
struct Attempt {
    /// The receiver's status, when it answered.
    status: Option<u16>,
    /// Why it failed; `None` on a 2xx.
    error: Option<String>,
    /// The receiver's `Retry-After`, in seconds.
    retry_after: Option<Duration>,
    /// A 4xx other than 408 and 429.
    client_error: bool,
}

/// The state of one worker, shared with its deliveries.
struct Worker {
    shared: Arc<Shared>,
    definition: Arc<Definition>,
    url: reqwest::Url,
    /// `max_in_flight` on this replica.
    slots: Arc<Semaphore>,
    counts: Mutex<Counts>,
}

/// Delivers `definition` until `stop` is cancelled.
pub async fn run(shared: Arc<Shared>, definition: Arc<Definition>, stop: CancellationToken) {
    let url = match reqwest::Url::parse(&definition.url) {
        Ok(url) => url,
        Err(err) => {
            tracing::warn!(push.name = %definition.name, error = %err, "push url unreadable; not delivering");
            return;
        }
    };
    let worker = Arc::new(Worker {
        slots: Arc::new(Semaphore::new(
            usize::try_from(definition.max_in_flight)
                .unwrap_or(1)
                .max(1),
        )),
        shared,
        definition,
        url,
        counts: Mutex::new(Counts::default()),
    });
    let flusher = {
        let worker = worker.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let stopped = tokio::select! {
                    () = stop.cancelled() => true,
                    () = tokio::time::sleep(STATUS_INTERVAL) => false,
                };
                worker.flush().await;
                if stopped {
                    return;
                }
            }
        })
    };
    let mut retry = Duration::from_millis(250);
    let mut last_problem = String::new();
    while !stop.is_cancelled() {
        match worker.pull(&stop).await {
            Ok(()) => retry = Duration::from_millis(250),
            Err(err) => {
                // A problem is logged when it starts (or changes), not at every retry.
                let problem = err.to_string();
                if problem != last_problem {
                    tracing::warn!(
                        push.stream = %worker.definition.stream,
                        push.name = %worker.definition.name,
                        error = %err,
                        "push subscription cannot pull; trying again"
                    );
                    last_problem = problem;
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
    // Deliveries in progress finish (they hold the slots); then the last counts are written.
    let all = u32::try_from(worker.definition.max_in_flight).unwrap_or(1);
    let _ = worker.slots.acquire_many(all).await;
    let _ = flusher.await;
    worker.flush().await;
}

impl Worker {
    /// Pulls and delivers until `stop`, or until the consumer cannot be pulled.
    async fn pull(self: &Arc<Self>, stop: &CancellationToken) -> Result<(), ApiError> {
        let state = &self.shared.state;
        let definition = &self.definition;
        let batch = usize::try_from(definition.max_in_flight)
            .unwrap_or(1)
            .max(PULL_BATCH);
        let spec = ReplaySpec {
            stream: definition.stream.clone(),
            start: Start::All,
            filters: Vec::new(),
            consumer: Some(definition.name.clone()),
            group: None,
            pull_expires: PULL_EXPIRES,
            encoding: EncodingChoice::Auto,
            binary: true,
            batch_messages: batch,
            batch_bytes: usize::try_from(state.config.max_fetch_bytes).unwrap_or(usize::MAX),
            heartbeat: state.config.replay_heartbeat.min(PULL_EXPIRES / 2),
        };
        let mut replay = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            replay = Replay::start(state.nats.clone(), state.ack_keys.clone(), spec) => replay?,
        };
        loop {
            let slot = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                slot = self.slots.clone().acquire_owned() => slot,
            };
            let Ok(slot) = slot else { return Ok(()) };
            // JetStream bounds what arrives by max_ack_pending (see PULL_BATCH).
            let event = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                event = replay.next(batch) => event?,
            };
            let Event::Message(message) = event else {
                continue;
            };
            let worker = self.clone();
            state
                .tasks
                .spawn(async move { worker.deliver(*message, slot).await });
        }
    }

    /// Adds this replica's counts to the status record.
    async fn flush(&self) {
        let delta = match self.counts.lock() {
            Ok(mut counts) if !counts.is_empty() => std::mem::take(&mut *counts),
            _ => return,
        };
        let definition = &self.definition;
        if let Err(err) = defs::record(&self.shared.state.nats, definition, &delta).await {
            tracing::debug!(error = %err, push.name = %definition.name, "push status not written; kept for the next write");
            if let Ok(mut counts) = self.counts.lock() {
                let newer = std::mem::take(&mut *counts);
                *counts = delta;
                counts.merge(&newer);
            }
        }
    }

    /// Delivers one message and settles it with JetStream.
    async fn deliver(&self, message: Message, _slot: OwnedSemaphorePermit) {
        let state = &self.shared.state;
        let definition = &self.definition;
        let Some(target) = message
            .ack_id
            .as_deref()
            .and_then(|id| state.ack_keys.verify(id).ok())
        else {
            return;
        };
        if let Some(lag) = message.pending {
            state
                .metrics
                .push_lag(&definition.stream, &definition.name, lag);
        }
        let waiting = Instant::now();
        let Ok(_connection) = self.shared.connections.clone().acquire_owned().await else {
            return;
        };
        if waiting.elapsed() > PROGRESS_AFTER {
            // The delivery's own ack_wait started when JetStream handed the message over.
            let _ = acks::apply(state, &target, AckAction::Progress, None).await;
        }
        let started = Instant::now();
        let attempt = self.post(&message, target.delivered).await;
        let took = started.elapsed();
        let final_attempt = target.delivered >= definition.max_deliver
            || (attempt.client_error && definition.dead_letter_on_client_error);
        let outcome = if attempt.error.is_none() {
            "acked"
        } else if final_attempt {
            "dead_lettered"
        } else {
            "retry"
        };
        state
            .metrics
            .push_delivery(&definition.stream, &definition.name, outcome, took);
        if let Some(error) = &attempt.error {
            tracing::warn!(
                push.stream = %definition.stream,
                push.name = %definition.name,
                msg.seq = target.stream_seq,
                delivery = target.delivered,
                status = attempt.status.unwrap_or_default(),
                error = %error,
                outcome,
                "push delivery failed"
            );
        }
        let settled = match (&attempt.error, final_attempt) {
            (None, _) => acks::apply(state, &target, AckAction::Ack, None).await,
            (Some(error), true) => self.give_up(&target, attempt.status, error).await,
            (Some(_), false) => {
                let mut delay = definition.retry_delay(target.delivered);
                if let Some(asked) = attempt.retry_after {
                    delay = delay.max(asked.min(MAX_BACKOFF));
                }
                acks::apply(state, &target, AckAction::Nak, Some(delay)).await
            }
        };
        match settled {
            Ok(()) => {}
            // The subscription was deleted meanwhile: nothing is left to settle.
            Err(ApiError::ConsumerNotFound { .. } | ApiError::StreamNotFound(_)) => {
                tracing::debug!(push.name = %definition.name, msg.seq = target.stream_seq, "push consumer gone before the delivery was settled");
            }
            // Unsettled, the message comes back after ack_wait: delivered again, not lost.
            Err(err) => {
                tracing::warn!(push.name = %definition.name, msg.seq = target.stream_seq, error = %err, "push delivery not settled with JetStream; it will be redelivered");
            }
        }
        if let Ok(mut counts) = self.counts.lock() {
            counts.attempt(attempt.status, attempt.error.clone());
            if final_attempt && attempt.error.is_some() {
                counts.dead_lettered += 1;
            }
        }
    }

    async fn give_up(
        &self,
        target: &AckTarget,
        status: Option<u16>,
        error: &str,
    ) -> Result<(), ApiError> {
        let mut extra = vec![(header::LAST_ERROR, header_safe(error))];
        if let Some(status) = status {
            extra.push((header::LAST_STATUS, status.to_string()));
        }
        acks::give_up(&self.shared.state, target, &extra).await?;
        Ok(())
    }

    /// One signed POST of `message`.
    async fn post(&self, message: &Message, delivery: u64) -> Attempt {
        let failed = |error: String| Attempt {
            status: None,
            error: Some(error),
            retry_after: None,
            client_error: false,
        };
        let destinations = &self.shared.state.push_destinations;
        if self.url.scheme() == "http" && !destinations.allows_http() {
            return failed(
                "http:// URLs are no longer allowed (the gateway runs without --push-allow-http)"
                    .to_owned(),
            );
        }
        match self.url.host() {
            Some(url::Host::Ipv4(ip)) => {
                if let Err(err) = destinations.check_ip(ip.into()) {
                    return failed(err.to_string());
                }
            }
            Some(url::Host::Ipv6(ip)) => {
                if let Err(err) = destinations.check_ip(ip.into()) {
                    return failed(err.to_string());
                }
            }
            _ => {}
        }
        let definition = &self.definition;
        let body = message.raw.clone().unwrap_or_default();
        let id = format!("msg_{}_{}", message.stream, message.seq);
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = super::sign::signature(&definition.signing_key(), &id, timestamp, &body);
        let mut request = self
            .shared
            .client
            .post(self.url.clone())
            .timeout(definition.timeout);
        let mut content_type = "application/octet-stream";
        for (name, value) in &message.headers {
            if name.eq_ignore_ascii_case("content-type") {
                content_type = value;
            } else if !name.to_ascii_lowercase().starts_with("nats-") {
                request = request.header(format!("{}{name}", header::MSG_PREFIX), value.as_str());
            }
        }
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(header::ID, &id)
            .header(header::TIMESTAMP, timestamp.to_string())
            .header(header::SIGNATURE, signature)
            .header(header::STREAM, &message.stream)
            .header(header::SEQUENCE, message.seq.to_string())
            .header(header::SUBJECT, definition.shown(&message.subject))
            .header(header::TIME, &message.time)
            .header(header::DELIVERY, delivery.to_string())
            .header(header::PUSH, &definition.name);
        for (name, value) in &definition.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut response = match request.body(body).send().await {
            Ok(response) => response,
            Err(err) => return failed(describe(&err)),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt {
                status: Some(status.as_u16()),
                error: None,
                retry_after: None,
                client_error: false,
            };
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut answer = Vec::new();
        while answer.len() < MAX_ANSWER_BYTES {
            match tokio::time::timeout(definition.timeout, response.chunk()).await {
                Ok(Ok(Some(chunk))) => answer.extend_from_slice(&chunk),
                _ => break,
            }
        }
        answer.truncate(MAX_ANSWER_BYTES);
        let text = String::from_utf8_lossy(&answer);
        let mut error = format!("HTTP {}", status.as_u16());
        if let Some(location) = location.filter(|_| status.is_redirection()) {
            error.push_str(&format!(" (redirect to {location} not followed)"));
        }
        let text = text.trim();
        if !text.is_empty() {
            error.push_str(": ");
            error.push_str(text);
        }
        let code = status.as_u16();
        Attempt {
            status: Some(code),
            error: Some(error),
            retry_after,
            client_error: status.is_client_error() && code != 408 && code != 429,
        }
    }
}

/// A delivery error as one line, with its cause (`error sending request` alone says nothing).
fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Text that a NATS header value can carry: one line, printable.
fn header_safe(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut line = line.trim().to_owned();
    if line.len() > 256 {
        let mut end = 256;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// A `Retry-After` value: delay seconds, or an HTTP-date (the time left until it; none once it
/// passed).
fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(now).ok().filter(|left| !left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("date");
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), None);
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), None);
        for bad in ["", "-1", "1.5", "tomorrow", "Sun, 06 Nov 1994 08:50:07"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }
}
