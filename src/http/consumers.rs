//! Durable pull consumers: administration and long-poll fetch.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Json, JsonOrEmpty, Path};
use super::responses::{FetchErrors, ReadErrors, WriteErrors};
use crate::auth::Principal;
use crate::duration;
use crate::error::ApiError;
use crate::message::{EncodingChoice, Message};
use crate::nats::consumers::{
    ConsumerConfig, ConsumerInfo, ConsumerList, FetchSpec, filter_subjects,
};
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
        crate::http::messages::parse_time(text)
            .map_err(|err| invalid(format!("opt_start_time: {err}")))?;
    }
    Ok(())
}

fn check_names(stream: &str, consumer: &str) -> Result<(), ApiError> {
    crate::validate::name("stream", stream)?;
    crate::validate::name("consumer", consumer)
}

/// List a stream's consumers.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/consumers",
    tag = "consumers",
    operation_id = "list_consumers",
    params(("stream" = String, Path, description = "Stream name", example = "ORDERS")),
    responses((status = 200, description = "The consumers", body = ConsumerList), ReadErrors)
)]
pub async fn list_consumers(
    State(state): State<AppState>,
    principal: Principal,
    Path(stream): Path<String>,
) -> Result<Json<ConsumerList>, ApiError> {
    crate::validate::name("stream", &stream)?;
    principal.check_read(&stream)?;
    let consumers = state.nats.list_consumers(&stream).await?;
    // A tenant sees only the consumers it may use.
    Ok(Json(ConsumerList {
        consumers: consumers
            .iter()
            .filter(|c| {
                principal
                    .check_consumer(&stream, &c.name, &filter_subjects(&c.config))
                    .is_ok()
            })
            .map(ConsumerInfo::from_nats)
            .collect(),
    }))
}

/// Create or update a durable pull consumer.
///
/// Idempotent: creates the consumer (201) or applies the configuration to the existing one
/// (200). Changes JetStream cannot make in place (deliver policy, start position…) answer 409.
/// Acks are always explicit. A `dead_letter_subject` makes jetway copy every message that
/// reaches `max_deliver` or is terminated to that subject.
#[utoipa::path(
    put,
    path = "/v1/streams/{stream}/consumers/{consumer}",
    tag = "consumers",
    operation_id = "put_consumer",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("consumer" = String, Path, description = "Durable consumer name", example = "workers"),
    ),
    request_body = ConsumerConfig,
    responses(
        (status = 201, description = "Created", body = ConsumerInfo),
        (status = 200, description = "Updated, or already configured so", body = ConsumerInfo),
        WriteErrors,
    )
)]
pub async fn put_consumer(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, consumer)): Path<(String, String)>,
    Json(config): Json<ConsumerConfig>,
) -> Result<Response, ApiError> {
    check_names(&stream, &consumer)?;
    principal.check_admin()?;
    check_bounds(&config)?;
    // A tenant names subjects in its namespace, as everywhere else.
    let mut config = config;
    if principal.permissions.prefix.is_some() {
        config.filter_subjects = principal.filters_in(&config.filter_subjects);
        config.dead_letter_subject = config
            .dead_letter_subject
            .as_deref()
            .map(|s| principal.subject_in(s));
    }
    let (info, created) = state.nats.put_consumer(&stream, &consumer, &config).await?;
    state.dead_letters.forget(&stream, &consumer);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ConsumerInfo::from_nats(&info))).into_response())
}

/// Get a consumer.
///
/// Configuration and state: `num_pending` (lag), `num_ack_pending`, `num_redelivered`,
/// `num_waiting`, the delivered position and the ack floor.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/consumers/{consumer}",
    tag = "consumers",
    operation_id = "get_consumer",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("consumer" = String, Path, description = "Durable consumer name", example = "workers"),
    ),
    responses((status = 200, description = "The consumer", body = ConsumerInfo), ReadErrors)
)]
pub async fn get_consumer(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, consumer)): Path<(String, String)>,
) -> Result<Json<ConsumerInfo>, ApiError> {
    check_names(&stream, &consumer)?;
    principal.check_read(&stream)?;
    let info = state.nats.consumer_info(&stream, &consumer).await?;
    principal.check_consumer(&stream, &consumer, &filter_subjects(&info.config))?;
    Ok(Json(ConsumerInfo::from_nats(&info)))
}

/// Delete a consumer.
///
/// Its unacknowledged messages stay in the stream; their ack ids stop working.
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}/consumers/{consumer}",
    tag = "consumers",
    operation_id = "delete_consumer",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("consumer" = String, Path, description = "Durable consumer name", example = "workers"),
    ),
    responses((status = 204, description = "Deleted"), WriteErrors)
)]
pub async fn delete_consumer(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, consumer)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_names(&stream, &consumer)?;
    principal.check_admin()?;
    state.nats.delete_consumer(&stream, &consumer).await?;
    state.dead_letters.forget(&stream, &consumer);
    Ok(StatusCode::NO_CONTENT)
}

/// What to fetch. Every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"max_messages": 100, "max_bytes": 1048576, "wait": "5s"}))]
pub struct FetchRequest {
    /// Most messages to return (default 1; at most the server's `--max-fetch-messages`, 1000
    /// by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<usize>,
    /// Most bytes to return, counting subject, headers and payload (default and maximum: the
    /// server's `--max-fetch-bytes`, 8 MiB by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
    /// Long-poll: how long to wait when no message is available (default `0s`: answer at once;
    /// at most the server's `--max-fetch-wait`, 30s by default). The answer comes as soon as at
    /// least one message is there.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "5s")]
    pub wait: Option<Duration>,
    /// `auto` (JSON, text or base64) or `base64` (always).
    #[serde(default)]
    pub encoding: EncodingChoice,
}

/// Fetched messages; empty when none arrived within `wait`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FetchResponse {
    pub messages: Vec<Message>,
}

/// Fetch messages from a durable consumer.
///
/// Long-poll: answers as soon as at least one message is available, with up to `max_messages`
/// of those available then, or with an empty list when `wait` elapses (not an error). Each
/// message carries `delivered`, `consumer_seq`, `pending` and an `ack_id` to pass to
/// `POST /v1/acks` on any jetway replica. The consumer's `ack_wait` starts when JetStream hands
/// the message to jetway. Concurrent fetches never receive the same message while it awaits
/// its ack.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/consumers/{consumer}/fetch",
    tag = "consumers",
    operation_id = "fetch_messages",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("consumer" = String, Path, description = "Durable consumer name", example = "workers"),
    ),
    request_body(content = Option<FetchRequest>, description = "What to fetch; an empty body fetches one message without waiting"),
    responses((status = 200, description = "Messages (possibly none)", body = FetchResponse), FetchErrors)
)]
pub async fn fetch_messages(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, consumer)): Path<(String, String)>,
    JsonOrEmpty(request): JsonOrEmpty<FetchRequest>,
) -> Result<Json<FetchResponse>, ApiError> {
    check_names(&stream, &consumer)?;
    principal.check_read(&stream)?;
    state.fetch_limiter.check(&principal.id, 1)?;
    crate::ops::authz::use_consumer(&state.nats, &principal, &stream, &consumer).await?;
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
    // On shutdown a waiting fetch answers empty at once instead of holding the server up; a
    // message JetStream hands over meanwhile is redelivered after its ack wait.
    let messages = tokio::select! {
        fetched = state.nats.fetch(&stream, &consumer, spec, &state.ack_keys) => fetched?,
        () = state.shutdown.cancelled() => Vec::new(),
    };
    let mut messages = messages;
    for message in &mut messages {
        principal.present(message);
    }
    state.metrics.fetched(messages.len());
    Ok(Json(FetchResponse { messages }))
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
