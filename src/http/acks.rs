//! `POST /v1/acks`: ack, nak (with delay), term and in-progress, by ack id, on any replica.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::duration;
use crate::edge::extract::Json;
use crate::edge::responses::AckErrors;
use crate::error::{ApiError, Problem};
use crate::nats::consumers::AckAction;
use crate::ops;
use crate::ops::acks::Ack;
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
    /// At least one (at most the server's `--max-acks`, 1000 by default); each an object.
    #[serde(deserialize_with = "crate::json::objects")]
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
    let asked: Vec<Ack<'_>> = request
        .acks
        .iter()
        .map(|item| Ack {
            ack_id: &item.ack_id,
            action: item.action,
            delay: item.delay,
        })
        .collect();
    let targets = ops::acks::verify_all(&state, &principal, &asked).await?;
    let results = join_all(request.acks.iter().zip(targets).map(|(item, target)| {
        let state = &state;
        async move {
            let outcome = ops::acks::apply(state, &target, item.action, item.delay).await;
            AckResult {
                status: outcome
                    .as_ref()
                    .map_or_else(|e| e.status().as_u16(), |()| 200),
                error: outcome.err().map(|e| e.problem()),
                ack_id: item.ack_id.clone(),
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
