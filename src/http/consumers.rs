//! Durable pull consumers: administration, pause and resume, seek, and long-poll fetch.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::duration;
use crate::edge::extract::{Json, JsonOrEmpty, Path};
use crate::edge::responses::{FetchErrors, ReadErrors, WriteErrors};
use crate::error::ApiError;
use crate::message::{EncodingChoice, Message};
use crate::nats::consumers::{ConsumerConfig, ConsumerInfo, ConsumerList, PauseState};
use crate::ops;
use crate::ops::consumers::{Fetch, SeekTo};
use crate::ops::names::{ConsumerName, StreamName};
use crate::state::AppState;

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
    let stream = StreamName::parse(stream)?;
    let consumers = ops::consumers::list(&state, &principal, &stream).await?;
    Ok(Json(ConsumerList {
        consumers: consumers.iter().map(ConsumerInfo::from_nats).collect(),
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
    let (stream, consumer) = names(stream, consumer)?;
    let (info, created) =
        ops::consumers::put(&state, &principal, &stream, &consumer, config).await?;
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
    let (stream, consumer) = names(stream, consumer)?;
    let info = ops::consumers::get(&state, &principal, &stream, &consumer).await?;
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
    let (stream, consumer) = names(stream, consumer)?;
    ops::consumers::delete(&state, &principal, &stream, &consumer).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Until when to pause a consumer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"pause_until": "2026-11-26T12:00:00Z"}))]
pub struct PauseRequest {
    /// When the pause ends (RFC 3339, 1970 to 2262). A time already past resumes the consumer.
    pub pause_until: String,
}

/// Pause a consumer.
///
/// The consumer delivers nothing until `pause_until`, then resumes by itself. While paused,
/// a fetch waits its `wait` and answers an empty list (`200`), WebSocket and SSE subscriptions
/// bound to the consumer receive nothing, and acks of messages delivered before the pause still
/// work; messages already delivered keep their `ack_wait` and are redelivered once the pause
/// ends. Pausing again moves the end. Administrators only.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/consumers/{consumer}/pause",
    tag = "consumers",
    operation_id = "pause_consumer",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("consumer" = String, Path, description = "Durable consumer name", example = "workers"),
    ),
    request_body = PauseRequest,
    responses((status = 200, description = "The consumer's pause state", body = PauseState), WriteErrors)
)]
pub async fn pause_consumer(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, consumer)): Path<(String, String)>,
    Json(request): Json<PauseRequest>,
) -> Result<Json<PauseState>, ApiError> {
    let (stream, consumer) = names(stream, consumer)?;
    let pause = ops::consumers::pause(
        &state,
        &principal,
        &stream,
        &consumer,
        Some(&request.pause_until),
    )
    .await?;
    Ok(Json(pause))
}

/// Resume a consumer.
///
/// Ends a pause at once: the consumer delivers again (waiting fetches get messages). Resuming
/// a consumer that is not paused changes nothing. Administrators only.
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}/consumers/{consumer}/pause",
    tag = "consumers",
    operation_id = "resume_consumer",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("consumer" = String, Path, description = "Durable consumer name", example = "workers"),
    ),
    responses((status = 200, description = "The consumer's pause state", body = PauseState), WriteErrors)
)]
pub async fn resume_consumer(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, consumer)): Path<(String, String)>,
) -> Result<Json<PauseState>, ApiError> {
    let (stream, consumer) = names(stream, consumer)?;
    let pause = ops::consumers::pause(&state, &principal, &stream, &consumer, None).await?;
    Ok(Json(pause))
}

/// Where to move a consumer: exactly one of `seq` and `time`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"seq": 42}))]
pub struct SeekRequest {
    /// Deliver next the first message at or after this stream sequence (at least 1).
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub seq: Option<u64>,
    /// Deliver next the first message stored at or after this RFC 3339 time (1970 to 2262).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// Where a consumer was moved, and the consumer afterwards.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SeekResult {
    /// The stream sequence the consumer delivers from next (the first message at or after it
    /// that matches its filters).
    pub seq: u64,
    pub consumer: ConsumerInfo,
}

/// Move a consumer to a sequence or a time.
///
/// Rewinds (replay) or fast-forwards (skip) a durable consumer with JetStream's consumer reset
/// (nats-server 2.14 or later): the next fetch starts at the first message at or after `seq`,
/// or stored at or after `time` (a time after the last message moves it to the end). Every
/// delivery still awaiting its ack is forgotten: those at or after the new position are
/// delivered again (as first deliveries) and their old ack ids answer `410 ack_not_confirmed`;
/// old ack ids before it answer `200` and change nothing. The ack floor becomes the position
/// minus one. Consumers with
/// `deliver_policy` `last`, `new` or `last_per_subject` cannot be moved, nor can a consumer be
/// moved before its `opt_start_seq`/`opt_start_time` (`409`). Administrators only.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/consumers/{consumer}/seek",
    tag = "consumers",
    operation_id = "seek_consumer",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("consumer" = String, Path, description = "Durable consumer name", example = "workers"),
    ),
    request_body = SeekRequest,
    responses((status = 200, description = "Moved", body = SeekResult), WriteErrors)
)]
pub async fn seek_consumer(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, consumer)): Path<(String, String)>,
    Json(request): Json<SeekRequest>,
) -> Result<Json<SeekResult>, ApiError> {
    let (stream, consumer) = names(stream, consumer)?;
    let to = match (request.seq, request.time) {
        (Some(seq), None) => SeekTo::Sequence(seq),
        (None, Some(time)) => SeekTo::Time(time),
        _ => {
            return Err(ApiError::InvalidBody(
                "give exactly one of seq and time".to_owned(),
            ));
        }
    };
    let (info, seq) = ops::consumers::seek(&state, &principal, &stream, &consumer, to).await?;
    Ok(Json(SeekResult {
        seq,
        consumer: ConsumerInfo::from_nats(&info),
    }))
}

/// What to fetch. Every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"max_messages": 100, "max_bytes": 1048576, "wait": "5s"}))]
pub struct FetchRequest {
    /// Most messages to return (default 1; at most the server's `--max-fetch-messages`, 1000
    /// by default).
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_messages: Option<usize>,
    /// Most bytes to return, counting subject, headers and payload (default and maximum: the
    /// server's `--max-fetch-bytes`, 8 MiB by default).
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
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
    /// The priority group to fetch as: required on consumers with a `priority_policy`, one of
    /// their `priority_groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `pinned_client`: the `pin_id` an earlier fetch of this worker answered. Without it the
    /// fetch waits on standby while another worker holds the pin (and takes the pin when it is
    /// free); with another worker's or an expired pin it answers `409 pin_mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_id: Option<String>,
    /// `overflow`: serve this fetch only while at least this many messages are pending.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_pending: Option<u64>,
    /// `overflow`: serve this fetch only while at least this many messages await their ack.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_ack_pending: Option<u64>,
    /// `prioritized`: 0 (served first) to 9.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub priority: Option<u8>,
}

/// Fetched messages; empty when none arrived within `wait`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FetchResponse {
    pub messages: Vec<Message>,
    /// `pinned_client` consumers: the pin this worker holds; send it as `pin_id` with every
    /// later fetch, more often than the consumer's `priority_timeout`, to keep the messages
    /// coming to this worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_id: Option<String>,
}

/// Which priority group's pin to release.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"group": "workers"}))]
pub struct UnpinRequest {
    pub group: String,
}

/// Release a consumer's pin.
///
/// Takes the pin of a `pinned_client` consumer's priority group from the worker holding it
/// (say, one known to be stuck): a worker fetching on standby gets the pin, and the old pin id
/// answers `409 pin_mismatch` from then on. Administrators only.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/consumers/{consumer}/unpin",
    tag = "consumers",
    operation_id = "unpin_consumer",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("consumer" = String, Path, description = "Durable consumer name", example = "workers"),
    ),
    request_body = UnpinRequest,
    responses((status = 204, description = "Released"), WriteErrors)
)]
pub async fn unpin_consumer(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, consumer)): Path<(String, String)>,
    Json(request): Json<UnpinRequest>,
) -> Result<StatusCode, ApiError> {
    let (stream, consumer) = names(stream, consumer)?;
    ops::consumers::unpin(&state, &principal, &stream, &consumer, &request.group).await?;
    Ok(StatusCode::NO_CONTENT)
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
    let (stream, consumer) = names(stream, consumer)?;
    let fetch = Fetch {
        max_messages: request.max_messages,
        max_bytes: request.max_bytes,
        wait: request.wait,
        encoding: request.encoding,
        group: request.group,
        pin_id: request.pin_id,
        min_pending: request.min_pending,
        min_ack_pending: request.min_ack_pending,
        priority: request.priority,
    };
    let (messages, pin_id) =
        ops::consumers::fetch(&state, &principal, &stream, &consumer, fetch).await?;
    Ok(Json(FetchResponse { messages, pin_id }))
}

fn names(stream: String, consumer: String) -> Result<(StreamName, ConsumerName), ApiError> {
    Ok((StreamName::parse(stream)?, ConsumerName::parse(consumer)?))
}
