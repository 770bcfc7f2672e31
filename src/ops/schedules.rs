//! Message schedules: delayed and repeating messages that JetStream publishes itself
//! (`Nats-Schedule`, streams with `allow_msg_schedules`, nats-server 2.12+). A schedule is a
//! message on its own subject (the schedule's name); at the times it names, JetStream
//! publishes its payload to the target subject. JetStream keeps one schedule per subject (a new
//! one replaces the old), and cancelling one removes that subject's message.

use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;

use super::names::{StreamName, Subject};
use super::publish::BatchItem;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::nats::publish::{Stored, header};
use crate::nats::streams::PurgeRequest;
use crate::state::AppState;

/// Shortest repeat interval JetStream accepts.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// Longest cron expression or time-zone name accepted.
const MAX_PATTERN: usize = 128;

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum When {
    /// Once, at this RFC 3339 time.
    At(String),
    /// Repeatedly, this often (at least a second).
    Every(Duration),
    /// On a cron expression (six fields, seconds first, or `@hourly`, `@daily`…), optionally in
    /// an IANA time zone.
    Cron {
        expression: String,
        time_zone: Option<String>,
    },
}

impl When {
    /// The `Nats-Schedule` value and time zone.
    fn pattern(&self) -> Result<(String, Option<&str>), ApiError> {
        match self {
            Self::At(text) => {
                let time = crate::timestamp::parse_time(text)
                    .map_err(|err| ApiError::InvalidBody(format!("at: {err}")))?;
                let utc = time.to_offset(time::UtcOffset::UTC);
                let formatted = utc
                    .format(&time::format_description::well_known::Rfc3339)
                    .map_err(|err| ApiError::internal("format schedule time", err))?;
                Ok((format!("@at {formatted}"), None))
            }
            Self::Every(every) => {
                if *every < MIN_EVERY {
                    return Err(ApiError::InvalidBody(
                        "every must be at least 1s".to_owned(),
                    ));
                }
                Ok((format!("@every {}ms", every.as_millis()), None))
            }
            Self::Cron {
                expression,
                time_zone,
            } => {
                let printable = |text: &str| {
                    !text.is_empty()
                        && text.len() <= MAX_PATTERN
                        && text.chars().all(|c| c.is_ascii_graphic() || c == ' ')
                };
                if !printable(expression)
                    || expression.starts_with("@at")
                    || expression.starts_with("@every")
                {
                    return Err(ApiError::InvalidBody(format!(
                        "cron must be a cron expression of at most {MAX_PATTERN} printable \
                         characters (six fields, seconds first, or @hourly, @daily…)"
                    )));
                }
                if let Some(zone) = time_zone
                    && !printable(zone)
                {
                    return Err(ApiError::InvalidBody(
                        "time_zone must be an IANA time zone name such as Europe/Berlin".to_owned(),
                    ));
                }
                Ok((expression.clone(), time_zone.as_deref()))
            }
        }
    }
}

/// A schedule to store: what to publish, where, and when.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub target: String,
    pub when: When,
    /// The message JetStream publishes (its `subject` is ignored).
    pub message: BatchItem,
}

/// Stores a schedule on `subject` in `stream`, replacing one already there. Needs `publish`
/// on both the schedule's subject and its target (JetStream will publish there for the caller);
/// a tenant names both in its namespace.
pub async fn put(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    subject: &Subject,
    schedule: Schedule,
) -> Result<Stored, ApiError> {
    let target = Subject::parse(schedule.target)?;
    who.check_publish(subject)?;
    who.check_publish(&target)?;
    if target == *subject {
        return Err(ApiError::InvalidBody(
            "target must differ from the schedule's own subject".to_owned(),
        ));
    }
    let (pattern, time_zone) = schedule.when.pattern()?;
    let mut item = schedule.message;
    if item.idempotency_key.is_some()
        || item.expected_stream.is_some()
        || item.expected_last_sequence.is_some()
        || item.expected_last_subject_sequence.is_some()
        || item.expected_last_msg_id.is_some()
        || item.ttl.is_some()
    {
        return Err(ApiError::InvalidBody(
            "a schedule carries data, data_base64, content_type and headers only".to_owned(),
        ));
    }
    item.subject = who.subject_in(subject);
    let mut message = item.into_outgoing()?;
    message.schedule(&pattern, &who.subject_in(&target), time_zone)?;
    // Stored only by the stream the caller named (412 otherwise, nothing stored).
    message.expected_stream(stream)?;
    state.publish_limiter.check(&who.id, 1)?;
    super::publish::send(state, message).await
}

/// The schedule pending on `subject`, read through the stream leader.
pub async fn get(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    subject: &Subject,
) -> Result<StreamMessage, ApiError> {
    who.check_read(stream)?;
    pending(state, who, stream, subject).await
}

/// The schedule on `subject` right after `who` stored it (its answer), without `read` of the
/// stream: storing it needed `publish` on the subject.
pub async fn get_own(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    subject: &Subject,
) -> Result<StreamMessage, ApiError> {
    who.check_publish(subject)?;
    pending(state, who, stream, subject).await
}

/// Cancels the schedule on `subject`: it will not fire (again). Needs `publish` on the
/// schedule's subject, as creating it does.
pub async fn cancel(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    subject: &Subject,
) -> Result<(), ApiError> {
    who.check_publish(subject)?;
    pending(state, who, stream, subject).await?;
    let request = PurgeRequest {
        subject: Some(who.subject_in(subject)),
        ..PurgeRequest::default()
    };
    state.nats.purge_stream(stream, &request).await?;
    tracing::info!(
        stream.name = %stream,
        msg.subject = %subject,
        principal = %who.id,
        "message schedule cancelled"
    );
    Ok(())
}

async fn pending(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    subject: &Subject,
) -> Result<StreamMessage, ApiError> {
    let none = || {
        ApiError::MessageNotFound(format!(
            "no schedule is pending on '{subject}' in stream '{stream}' (never stored, fired, or cancelled)"
        ))
    };
    match state
        .nats
        .last_message(stream, &who.subject_in(subject))
        .await
    {
        Ok(message) if message.headers.get(header::SCHEDULE).is_some() => Ok(message),
        Ok(_) | Err(ApiError::MessageNotFound(_)) => Err(none()),
        Err(err) => Err(err),
    }
}
