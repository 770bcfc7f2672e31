//! Durable pull consumers: administration and long-poll fetch, with the tenant rules.

use std::time::Duration;

use async_nats::jetstream::consumer;

use super::authz;
use super::names::{ConsumerName, StreamName};
use crate::auth::Principal;
use crate::duration;
use crate::error::ApiError;
use crate::message::{EncodingChoice, Message};
use crate::nats::consumers::{
    ConsumerConfig, FetchSpec, PUSH_METADATA_KEY, PauseState, filter_subjects,
};
use crate::nats::messages::Start;
use crate::nats::pull::PullPriority;
use crate::state::AppState;

/// Shortest `ack_wait` (and backoff step): below a second, redeliveries race the client's own
/// processing and a typo such as `1ns` turns a consumer into a redelivery storm.
pub const MIN_ACK_WAIT: Duration = Duration::from_secs(1);
/// Longest `ack_wait` (and backoff step). A message that takes longer to process should report
/// `progress`, which restarts the wait.
pub const MAX_ACK_WAIT: Duration = Duration::from_secs(24 * 3600);
/// Most `backoff` steps (JetStream wants `max_deliver` above their count anyway).
pub const MAX_BACKOFF_STEPS: usize = 100;
/// Shortest `inactive_threshold`.
pub const MIN_INACTIVE_THRESHOLD: Duration = Duration::from_secs(1);
/// Longest `inactive_threshold`; leave it out for a consumer that is never removed.
pub const MAX_INACTIVE_THRESHOLD: Duration = Duration::from_secs(365 * 24 * 3600);

/// Checks the durations and the start time of a consumer configuration against jetway's
/// bounds, before JetStream sees them (it accepts `1ns`, and a start time past 2262 wraps
/// around).
fn check_bounds(config: &ConsumerConfig) -> Result<(), ApiError> {
    let invalid = |detail: String| ApiError::InvalidConfig {
        detail,
        jetstream_code: None,
    };
    let within = |field: &str, value: Duration, min: Duration, max: Duration| {
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(invalid(format!(
                "{field} of {} is outside {}..={}",
                duration::format(value),
                duration::format(min),
                duration::format(max)
            )))
        }
    };
    if let Some(ack_wait) = config.ack_wait {
        within("ack_wait", ack_wait, MIN_ACK_WAIT, MAX_ACK_WAIT)?;
    }
    if config.backoff.len() > MAX_BACKOFF_STEPS {
        return Err(invalid(format!(
            "backoff has {} steps; at most {MAX_BACKOFF_STEPS} are accepted",
            config.backoff.len()
        )));
    }
    for (index, step) in config.backoff.iter().enumerate() {
        within(
            &format!("backoff[{index}]"),
            *step,
            MIN_ACK_WAIT,
            MAX_ACK_WAIT,
        )?;
    }
    if let Some(threshold) = config.inactive_threshold {
        within(
            "inactive_threshold",
            threshold,
            MIN_INACTIVE_THRESHOLD,
            MAX_INACTIVE_THRESHOLD,
        )?;
    }
    if let Some(text) = &config.opt_start_time {
        crate::timestamp::parse_time(text)
            .map_err(|err| invalid(format!("opt_start_time: {err}")))?;
    }
    if let Some(text) = &config.pause_until {
        crate::timestamp::parse_time(text).map_err(|err| invalid(format!("pause_until: {err}")))?;
    }
    Ok(())
}

/// The consumers of `stream` that `who` may use (a tenant: those inside its namespace).
pub async fn list(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
) -> Result<Vec<consumer::Info>, ApiError> {
    who.check_read(stream)?;
    let mut consumers = state.nats.list_consumers(stream).await?;
    consumers.retain(|c| {
        who.check_consumer(stream, &c.name, &filter_subjects(&c.config))
            .is_ok()
    });
    Ok(consumers)
}

/// Creates or updates a durable consumer (administrators only); `true` when it was created. A
/// tenant names subjects in its namespace, as everywhere else.
pub async fn put(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    name: &ConsumerName,
    config: ConsumerConfig,
) -> Result<(consumer::Info, bool), ApiError> {
    who.check_admin()?;
    check_bounds(&config)?;
    let mut config = config;
    if who.permissions.prefix.is_some() {
        config.filter_subjects = who.filters_in(&config.filter_subjects);
        config.dead_letter_subject = config
            .dead_letter_subject
            .as_deref()
            .map(|s| who.subject_in(s));
    }
    let answer = state.nats.put_consumer(stream, name, &config).await?;
    state.dead_letters.forget(stream, name);
    Ok(answer)
}

/// A consumer's configuration and state.
pub async fn get(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    name: &ConsumerName,
) -> Result<consumer::Info, ApiError> {
    who.check_read(stream)?;
    let info = state.nats.consumer_info(stream, name).await?;
    who.check_consumer(stream, name, &filter_subjects(&info.config))?;
    Ok(info)
}

/// Deletes a consumer (administrators only).
pub async fn delete(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    name: &ConsumerName,
) -> Result<(), ApiError> {
    who.check_admin()?;
    let info = state.nats.consumer_info(stream, name).await?;
    if info.config.metadata.contains_key(PUSH_METADATA_KEY) {
        return Err(ApiError::ConsumerConflict {
            detail: format!(
                "consumer '{name}' of stream '{stream}' belongs to a push subscription; delete it \
                 with DELETE /v1/streams/{stream}/push/{name}"
            ),
            jetstream_code: None,
        });
    }
    state.nats.delete_consumer(stream, name).await?;
    state.dead_letters.forget(stream, name);
    Ok(())
}

/// Pauses a consumer until `until` (RFC 3339), or resumes it (`None`): administrators only,
/// and a tenant only a consumer inside its namespace. A time already past resumes it too.
pub async fn pause(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    name: &ConsumerName,
    until: Option<&str>,
) -> Result<PauseState, ApiError> {
    who.check_admin()?;
    let until = until
        .map(|text| body_time("pause_until", text))
        .transpose()?;
    authz::use_consumer(&state.nats, who, stream, name).await?;
    let answer = state.nats.pause_consumer(stream, name, until).await?;
    tracing::info!(
        stream.name = %stream,
        consumer.name = %name,
        paused = answer.paused,
        pause_until = answer.pause_until.as_deref().unwrap_or_default(),
        principal = %who.id,
        "consumer pause changed"
    );
    Ok(answer)
}

/// A time in a request body: problems with it are the body's.
fn body_time(field: &str, text: &str) -> Result<time::OffsetDateTime, ApiError> {
    crate::timestamp::parse_time(text)
        .map_err(|err| ApiError::InvalidBody(format!("{field}: {err}")))
}

/// Releases the pin of `group` on a `pinned_client` consumer (administrators only; a tenant
/// only on a consumer inside its namespace).
pub async fn unpin(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    name: &ConsumerName,
    group: &str,
) -> Result<(), ApiError> {
    who.check_admin()?;
    check_priority(&Fetch {
        group: Some(group.to_owned()),
        ..Fetch::default()
    })?;
    authz::use_consumer(&state.nats, who, stream, name).await?;
    state.nats.unpin_consumer(stream, name, group).await?;
    tracing::info!(stream.name = %stream, consumer.name = %name, group, principal = %who.id, "consumer pin released");
    Ok(())
}

/// Where to move a consumer.
#[derive(Debug, Clone)]
pub enum SeekTo {
    /// The first message at or after this stream sequence.
    Sequence(u64),
    /// The first message stored at or after this RFC 3339 time.
    Time(String),
}

/// Moves a durable consumer (administrators only; a tenant only a consumer inside its
/// namespace) so that it delivers next the first message at or after a sequence or a time.
/// A time after the last stored message moves it to the end: it delivers only new messages.
/// Answers the consumer afterwards and the stream sequence it was moved to.
pub async fn seek(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    name: &ConsumerName,
    to: SeekTo,
) -> Result<(consumer::Info, u64), ApiError> {
    who.check_admin()?;
    let seq = match &to {
        SeekTo::Sequence(seq) if *seq == 0 || i64::try_from(*seq).is_err() => {
            return Err(ApiError::InvalidBody(format!(
                "seq must be between 1 and {}",
                i64::MAX
            )));
        }
        SeekTo::Sequence(seq) => Some(*seq),
        SeekTo::Time(text) => {
            body_time("time", text)?;
            None
        }
    };
    // Asked first: JetStream does not answer a reset of a consumer that does not exist (the
    // request would time out), and a tenant may move only a consumer inside its namespace.
    let existing = state.nats.consumer_info(stream, name).await?;
    who.check_consumer(stream, name, &filter_subjects(&existing.config))?;
    let seq = match (seq, to) {
        (Some(seq), _) => seq,
        (None, SeekTo::Time(text)) => {
            let time = body_time("time", &text)?;
            match state
                .nats
                .first_sequence(stream, Start::Time(time), ">")
                .await?
            {
                Some(seq) => seq,
                None => {
                    let info = state.nats.stream_info(stream).await?;
                    info.state.last_sequence.saturating_add(1)
                }
            }
        }
        (None, SeekTo::Sequence(seq)) => seq,
    };
    let (info, moved_to) = state.nats.reset_consumer(stream, name, seq).await?;
    tracing::info!(
        stream.name = %stream,
        consumer.name = %name,
        msg.seq = moved_to,
        principal = %who.id,
        "consumer moved"
    );
    Ok((info, moved_to))
}

/// What a fetch asks for; `None` takes the default (one message, the byte limit, no wait).
#[derive(Debug, Clone, Default)]
pub struct Fetch {
    pub max_messages: Option<usize>,
    pub max_bytes: Option<usize>,
    pub wait: Option<Duration>,
    pub encoding: EncodingChoice,
    /// The priority group to fetch as (consumers with a `priority_policy`).
    pub group: Option<String>,
    /// `pinned_client`: the pin this worker holds, from an earlier fetch's answer.
    pub pin_id: Option<String>,
    pub min_pending: Option<u64>,
    pub min_ack_pending: Option<u64>,
    pub priority: Option<u8>,
}

/// Longest priority group name (JetStream's limit).
pub const MAX_GROUP: usize = 16;
/// Longest pin id accepted.
const MAX_PIN: usize = 64;

/// Checks the priority fields of a fetch.
fn check_priority(request: &Fetch) -> Result<(), ApiError> {
    let token = |field: &str, text: &str, max: usize| {
        if !text.is_empty()
            && text.len() <= max
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_/=".contains(&b))
        {
            Ok(())
        } else {
            Err(ApiError::InvalidBody(format!(
                "{field} must be 1 to {max} letters, digits or - _ / ="
            )))
        }
    };
    if let Some(group) = &request.group {
        token("group", group, MAX_GROUP)?;
    }
    if let Some(pin) = &request.pin_id {
        token("pin_id", pin, MAX_PIN)?;
    }
    let has_options = request.pin_id.is_some()
        || request.min_pending.is_some()
        || request.min_ack_pending.is_some()
        || request.priority.is_some();
    if has_options && request.group.is_none() {
        return Err(ApiError::InvalidBody(
            "pin_id, min_pending, min_ack_pending and priority need a group".to_owned(),
        ));
    }
    if request.priority.is_some_and(|p| p > 9) {
        return Err(ApiError::InvalidBody(
            "priority must be between 0 and 9".to_owned(),
        ));
    }
    Ok(())
}

/// Long-poll fetch from a durable consumer: messages with signed ack ids, as `who` sees them,
/// and the pin the fetch holds (a `pinned_client` consumer's priority group).
/// On shutdown a waiting fetch answers empty at once instead of holding the server up; a
/// message JetStream hands over meanwhile is redelivered after its ack wait.
pub async fn fetch(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    name: &ConsumerName,
    request: Fetch,
) -> Result<(Vec<Message>, Option<String>), ApiError> {
    who.check_read(stream)?;
    check_priority(&request)?;
    state.fetch_limiter.check(&who.id, 1)?;
    authz::use_consumer(&state.nats, who, stream, name).await?;
    let limits = state.limits;
    let max_messages = request.max_messages.unwrap_or(1);
    if max_messages == 0 || max_messages > limits.max_fetch_messages {
        return Err(ApiError::InvalidParameter(format!(
            "max_messages must be between 1 and {}",
            limits.max_fetch_messages
        )));
    }
    let max_bytes = request.max_bytes.unwrap_or(limits.max_fetch_bytes);
    if max_bytes == 0 || max_bytes > limits.max_fetch_bytes {
        return Err(ApiError::InvalidParameter(format!(
            "max_bytes must be between 1 and {}",
            limits.max_fetch_bytes
        )));
    }
    let wait = request.wait.unwrap_or_default();
    if wait > limits.max_fetch_wait {
        return Err(ApiError::InvalidParameter(format!(
            "wait must be at most {}",
            duration::format(limits.max_fetch_wait)
        )));
    }
    let spec = FetchSpec {
        max_messages,
        max_bytes: Some(max_bytes),
        wait,
        encoding: request.encoding,
    };
    let priority = request.group.as_deref().map(|group| PullPriority {
        group,
        pin: request.pin_id.as_deref(),
        min_pending: request.min_pending,
        min_ack_pending: request.min_ack_pending,
        priority: request.priority,
    });
    let (mut messages, pin) = tokio::select! {
        fetched = state.nats.fetch(stream, name, spec, priority, &state.ack_keys) => fetched?,
        () = state.shutdown.cancelled() => (Vec::new(), request.pin_id.clone()),
    };
    for message in &mut messages {
        who.present(message);
    }
    state.metrics.fetched(messages.len());
    Ok((messages, pin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> ConsumerConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn durations_inside_the_bounds_pass() {
        let ok = config(serde_json::json!({
            "ack_wait": "1s", "backoff": ["1s", "24h"], "inactive_threshold": "8760h",
            "max_deliver": 5, "deliver_policy": "by_start_time",
            "opt_start_time": "2262-04-11T23:47:16Z"
        }));
        assert!(check_bounds(&ok).is_ok());
    }

    #[test]
    fn durations_and_times_outside_the_bounds_are_invalid_config() {
        for bad in [
            serde_json::json!({"ack_wait": "1ns"}),
            serde_json::json!({"ack_wait": "999ms"}),
            serde_json::json!({"ack_wait": "25h"}),
            serde_json::json!({"backoff": ["1s", "10ms"], "max_deliver": 5}),
            serde_json::json!({"backoff": vec!["1s"; MAX_BACKOFF_STEPS + 1]}),
            serde_json::json!({"inactive_threshold": "500ms"}),
            serde_json::json!({"inactive_threshold": "8761h"}),
            serde_json::json!({"deliver_policy": "by_start_time", "opt_start_time": "2300-01-01T00:00:00Z"}),
            serde_json::json!({"deliver_policy": "by_start_time", "opt_start_time": "1969-12-31T23:59:59Z"}),
        ] {
            let err = check_bounds(&config(bad.clone())).unwrap_err();
            assert_eq!(err.code(), "invalid_config", "{bad}: {err}");
        }
    }
}
