//! Counters: streams with `allow_msg_counter` keep, per subject, a running total that JetStream
//! itself adds up (`Nats-Incr`, nats-server 2.12+). An increment is a publish to the subject
//! (the caller's publish grant, its namespace, its publish rate); reading a total is a read of
//! the stream. Totals are arbitrary-precision integers, carried as decimal strings.

use async_nats::jetstream::stream;
use bytes::Bytes;
use serde::Deserialize;

use super::names::{StreamName, Subject};
use crate::auth::{Principal, subject_matches};
use crate::error::ApiError;
use crate::nats::publish::Outgoing;
use crate::state::AppState;

/// A subject's total.
#[derive(Debug, Clone)]
pub struct Total {
    /// The subject as the caller names it.
    pub subject: String,
    /// Decimal text; `0` for a subject never incremented.
    pub value: String,
    /// The stream sequence of the increment that produced this total; `None` when there is none.
    pub seq: Option<u64>,
    /// The increment was a repeat of an earlier one with the same `Idempotency-Key`, which was
    /// not applied again.
    pub duplicate: bool,
}

/// Checks that `stream` keeps counters and captures `subject` (the real one): JetStream refuses
/// `Nats-Expected-Stream` on increments, so this is how an increment is kept to the stream the
/// caller named.
async fn counter_stream(
    state: &AppState,
    stream: &StreamName,
    subject: Option<&str>,
) -> Result<stream::Info, ApiError> {
    let info = state.nats.stream_info(stream).await?;
    if !info.config.allow_message_counter {
        return Err(ApiError::CountersNotEnabled {
            detail: format!(
                "stream '{stream}' does not keep counters: create it with \"allow_msg_counter\": true"
            ),
            jetstream_code: None,
        });
    }
    if let Some(subject) = subject
        && !info
            .config
            .subjects
            .iter()
            .any(|pattern| subject_matches(pattern, subject))
    {
        return Err(ApiError::InvalidSubject(format!(
            "stream '{stream}' does not capture subject '{subject}': its subjects are {:?}",
            info.config.subjects
        )));
    }
    Ok(info)
}

/// Adds `by` (decimal text, negative to subtract) to the counter on `subject` in `stream`, and
/// answers the new total. With an `idempotency_key`, a repeat within the stream's duplicate
/// window is not added again; it answers the current total.
pub async fn increment(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    subject: &Subject,
    by: &str,
    idempotency_key: Option<&str>,
) -> Result<Total, ApiError> {
    who.check_publish(subject)?;
    let real = who.subject_in(subject);
    let mut message = Outgoing::new(&real, Bytes::new())?;
    message.increment(by)?;
    if let Some(key) = idempotency_key {
        message.idempotency_key(key)?;
    }
    state.publish_limiter.check(&who.id, 1)?;
    counter_stream(state, stream, Some(&real)).await?;
    let stored = super::publish::send(state, message).await?;
    if stored.stream != stream.as_str() {
        // Subjects of two streams never overlap, so this is a stream changed in between.
        return Err(ApiError::JetStream {
            detail: format!(
                "the increment was stored in stream '{}', not '{stream}'",
                stored.stream
            ),
            jetstream_code: None,
        });
    }
    let value = match stored.value {
        Some(value) => value,
        // A duplicate's PubAck carries no total: read the current one.
        None => read_total(state, stream, &real).await?.0,
    };
    Ok(Total {
        subject: subject.to_string(),
        value,
        seq: Some(stored.seq),
        duplicate: stored.duplicate,
    })
}

/// The total of the counter on `subject` in `stream`, read through the stream leader.
pub async fn get(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    subject: &Subject,
) -> Result<Total, ApiError> {
    who.check_read(stream)?;
    let real = who.subject_in(subject);
    counter_stream(state, stream, Some(&real)).await?;
    let (value, seq) = read_total(state, stream, &real).await?;
    Ok(Total {
        subject: subject.to_string(),
        value,
        seq,
        duplicate: false,
    })
}

/// The stored total on `subject` (the body of its last message is `{"val": "<total>"}`), `0`
/// when nothing was ever added.
async fn read_total(
    state: &AppState,
    stream: &StreamName,
    subject: &str,
) -> Result<(String, Option<u64>), ApiError> {
    #[derive(Deserialize)]
    struct Body {
        val: String,
    }
    match state.nats.last_message(stream, subject).await {
        Ok(message) => {
            let body: Body =
                serde_json::from_slice(&message.payload).map_err(|err| ApiError::JetStream {
                    detail: format!(
                        "the last message on '{subject}' is not a counter total ({err})"
                    ),
                    jetstream_code: None,
                })?;
            Ok((body.val, Some(message.sequence)))
        }
        Err(ApiError::MessageNotFound(_)) => Ok(("0".to_owned(), None)),
        Err(err) => Err(err),
    }
}
