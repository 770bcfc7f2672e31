//! `POST /v1/acks`: ack, nak (with delay), term and in-progress, by ack id, on any replica.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::Json;
use super::responses::AckErrors;
use crate::ackid::AckTarget;
use crate::auth::Principal;
use crate::deadletter::Reason;
use crate::duration;
use crate::error::{ApiError, Problem};
use crate::nats::consumers::AckAction;
use crate::state::AppState;

/// One ack.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckItem {
    /// The `ack_id` of a fetched message.
    pub ack_id: String,
    /// `ack` (done), `nak` (redeliver, after `delay` if given), `term` (never redeliver;
    /// dead-letter it if the consumer has a dead-letter subject), `progress` (restart the ack wait).
    pub action: AckAction,
    /// With `nak` only: redeliver after this long (`10s`, `5m`).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "10s")]
    pub delay: Option<Duration>,
}

/// Acks to apply, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"acks": [
    {"ack_id": "JEpTLkFDSy5PUkRFUlMud29ya2Vycy4xLjEuMS4xNzY0MTQ3NjAwMDAwMDAwMDAwLjA.6IDqWmsdxJzqMX6l7GqVWg", "action": "ack"},
    {"ack_id": "JEpTLkFDSy5PUkRFUlMud29ya2Vycy4xLjIuMi4xNzY0MTQ3NjAwMDAwMDAwMDAwLjA.Qm1f0mJ0v8bS1cYyQ0o0Nw", "action": "nak", "delay": "10s"}
]}))]
pub struct AcksRequest {
    pub acks: Vec<AckItem>,
}

/// The outcome of one ack.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AckResult {
    pub ack_id: String,
    pub action: AckAction,
    /// 200 when JetStream confirmed it; otherwise the error's status.
    pub status: u16,
    pub stream: String,
    pub consumer: String,
    /// The message's stream sequence.
    pub stream_seq: u64,
    /// The delivery count of the delivery this ack id came from.
    pub delivered: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// Per-ack results, in request order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AcksResponse {
    pub results: Vec<AckResult>,
}

/// Ack, nak, term or extend fetched messages.
///
/// Every ack id is verified first: one altered, forged or truncated id rejects the whole
/// request with 400 and nothing is applied. Then all acks are sent at once and each result says
/// whether JetStream confirmed it (a double ack: 200 means the server recorded it). The answer
/// is 200 when every ack was confirmed and 207 otherwise. JetStream applies an ack by stream
/// sequence: an ack id from an earlier delivery still acks the message, and acking twice
/// answers 200 twice (see docs/consumers.md). A `term` on a consumer with a dead-letter subject
/// first stores the copy; if that fails the message is not terminated.
#[utoipa::path(
    post,
    path = "/v1/acks",
    tag = "consumers",
    operation_id = "ack_messages",
    request_body = AcksRequest,
    responses(
        (status = 200, description = "Every ack confirmed by JetStream", body = AcksResponse),
        (status = 207, description = "Some acks not confirmed; see each result", body = AcksResponse),
        AckErrors,
    )
)]
pub async fn ack_messages(
    State(state): State<AppState>,
    principal: Principal,
    Json(request): Json<AcksRequest>,
) -> Result<Response, ApiError> {
    let max = state.limits.max_acks;
    if request.acks.is_empty() {
        return Err(ApiError::InvalidBody("'acks' is empty".to_owned()));
    }
    if request.acks.len() > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} acks in one request; at most {max} are accepted",
            request.acks.len()
        )));
    }
    let mut targets = Vec::with_capacity(request.acks.len());
    for (index, item) in request.acks.iter().enumerate() {
        check_delay(item.action, item.delay)
            .map_err(|why| ApiError::InvalidBody(format!("acks[{index}]: {why}")))?;
        let target = state
            .ack_keys
            .verify(&item.ack_id)
            .map_err(|err| ApiError::InvalidAckId(format!("acks[{index}]: {err}")))?;
        // An ack id names its stream: acking needs read permission on it.
        principal
            .check_read(&target.stream)
            .map_err(|err| ApiError::Forbidden(format!("acks[{index}]: {err}")))?;
        targets.push(target);
    }
    // A tenant acks only through consumers inside its namespace; one check per consumer named.
    let mut checked: Vec<(&str, &str)> = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        let key = (target.stream.as_str(), target.consumer.as_str());
        if checked.contains(&key) {
            continue;
        }
        match crate::ops::authz::use_consumer(&state.nats, &principal, key.0, key.1).await {
            Ok(()) => {}
            // A consumer that is gone cannot take acks: each result says so (404).
            Err(ApiError::ConsumerNotFound { .. } | ApiError::StreamNotFound(_)) => {}
            Err(ApiError::Forbidden(why)) => {
                return Err(ApiError::Forbidden(format!("acks[{index}]: {why}")));
            }
            // Unchecked is not allowed: nothing is applied.
            Err(other) => return Err(other),
        }
        checked.push(key);
    }
    let timeout = state.config.ack_timeout;
    let results = join_all(request.acks.into_iter().zip(targets).map(|(item, target)| {
        let state = state.clone();
        async move {
            let outcome = apply(&state, &target, item.action, item.delay, timeout).await;
            AckResult {
                status: outcome
                    .as_ref()
                    .map_or_else(|e| e.status().as_u16(), |()| 200),
                error: outcome.err().map(|e| e.problem()),
                ack_id: item.ack_id,
                action: item.action,
                stream: target.stream,
                consumer: target.consumer,
                stream_seq: target.stream_seq,
                delivered: target.delivered,
            }
        }
    }))
    .await;
    let status = if results.iter().all(|r| r.status == 200) {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok((status, Json(AcksResponse { results })).into_response())
}

/// Longest `nak` delay. A longer wait is better served by `term` and a re-publish; past about
/// 292 years the delay would not even fit JetStream's nanoseconds.
pub const MAX_NAK_DELAY: Duration = Duration::from_secs(24 * 3600);

/// A `delay` goes with `nak` only, and is at most [`MAX_NAK_DELAY`] (the REST and WebSocket
/// paths share this).
pub(crate) fn check_delay(action: AckAction, delay: Option<Duration>) -> Result<(), String> {
    match delay {
        Some(_) if action != AckAction::Nak => {
            Err("'delay' goes with action 'nak' only".to_owned())
        }
        Some(delay) if delay > MAX_NAK_DELAY => Err(format!(
            "'delay' of {} is longer than the {} jetway accepts",
            duration::format(delay),
            duration::format(MAX_NAK_DELAY)
        )),
        _ => Ok(()),
    }
}

/// Applies one verified ack (the REST and WebSocket paths share it).
async fn apply_unrecorded(
    state: &AppState,
    target: &AckTarget,
    action: AckAction,
    delay: Option<Duration>,
    timeout: Duration,
) -> Result<(), ApiError> {
    if action == AckAction::Term {
        // The copy comes first: if it cannot be stored, the message stays deliverable.
        let copied = state
            .dead_letters
            .copy(
                &target.stream,
                &target.consumer,
                target.stream_seq,
                target.delivered,
                Reason::Terminated,
            )
            .await;
        match copied {
            Ok(_) => {}
            // Nothing left to copy (deleted, purged or expired): the term still applies.
            Err(ApiError::MessageNotFound(_)) => {
                tracing::info!(stream.name = %target.stream, msg.seq = target.stream_seq, "terminated message no longer stored; no dead-letter copy");
            }
            Err(err @ (ApiError::ConsumerNotFound { .. } | ApiError::StreamNotFound(_))) => {
                return Err(err);
            }
            Err(other) => {
                return Err(ApiError::Unavailable(format!(
                    "the dead-letter copy could not be stored ({other}); the message was not terminated, retry"
                )));
            }
        }
    }
    state.nats.ack(target, action, delay, timeout).await
}

/// [`apply_unrecorded`], counted in the metrics by action and outcome.
pub(crate) async fn apply(
    state: &AppState,
    target: &AckTarget,
    action: AckAction,
    delay: Option<Duration>,
    timeout: Duration,
) -> Result<(), ApiError> {
    let outcome = apply_unrecorded(state, target, action, delay, timeout).await;
    let label = match action {
        AckAction::Ack => "ack",
        AckAction::Nak => "nak",
        AckAction::Term => "term",
        AckAction::Progress => "progress",
    };
    state.metrics.ack(
        label,
        outcome.as_ref().map_or_else(|e| e.code(), |()| "confirmed"),
    );
    outcome
}
