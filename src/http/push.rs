//! Push subscriptions: jetway POSTs a stream's messages to an HTTPS endpoint, signed per
//! Standard Webhooks, with retries and dead letters (see docs/push.md).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::edge::extract::{Json, JsonOrEmpty, Path};
use crate::edge::responses::{ReadErrors, WriteErrors};
use crate::error::ApiError;
use crate::nats::consumers::PauseState;
use crate::ops;
use crate::ops::names::{ConsumerName, StreamName};
use crate::ops::push::{PAUSE_FOREVER, PushConfig, PushInfo, PushList};
use crate::state::AppState;

fn names(stream: String, name: String) -> Result<(StreamName, ConsumerName), ApiError> {
    Ok((StreamName::parse(stream)?, ConsumerName::parse(name)?))
}

/// List a stream's push subscriptions.
///
/// Each with its settings (never its headers' values or signing secret) and state.
/// Administrators only; a tenant sees its own.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/push",
    tag = "push",
    operation_id = "list_push",
    params(("stream" = String, Path, description = "Stream name", example = "ORDERS")),
    responses((status = 200, description = "The push subscriptions", body = PushList), ReadErrors)
)]
pub async fn list_push(
    State(state): State<AppState>,
    principal: Principal,
    Path(stream): Path<String>,
) -> Result<Json<PushList>, ApiError> {
    let stream = StreamName::parse(stream)?;
    let push = ops::push::list(&state, &principal, &stream).await?;
    Ok(Json(PushList { push }))
}

/// Create or update a push subscription.
///
/// jetway POSTs every message of the stream (or of `filter_subjects`) to `url`: the payload as
/// the body under its stored `Content-Type`, signed per Standard Webhooks (`webhook-id`,
/// `webhook-timestamp`, `webhook-signature`), with `Jetway-Stream`, `Jetway-Seq`,
/// `Jetway-Subject`, `Jetway-Time`, `Jetway-Delivery-Count`, `Jetway-Push` and each stored header
/// as `X-Msg-<Name>`. A 2xx acknowledges the message; anything else is retried after `backoff`
/// (or the receiver's `Retry-After`), and after `max_deliver` attempts the message goes to
/// `dead_letter_subject`. Creating answers 201 with the signing `secret` (generated unless
/// given), shown this once; updating answers 200. The destination must be admitted by the
/// gateway's `--push-allow` (403 `destination_not_allowed` otherwise). Administrators only.
#[utoipa::path(
    put,
    path = "/v1/streams/{stream}/push/{name}",
    tag = "push",
    operation_id = "put_push",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("name" = String, Path, description = "Push subscription name (also its durable consumer's)", example = "orders-webhook"),
    ),
    request_body = PushConfig,
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = PushInfo),
        (status = 200, description = "Updated", body = PushInfo),
        WriteErrors,
    )
)]
pub async fn put_push(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, name)): Path<(String, String)>,
    Json(config): Json<PushConfig>,
) -> Result<Response, ApiError> {
    let (stream, name) = names(stream, name)?;
    let (info, created) = ops::push::put(&state, &principal, &stream, &name, config).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(info)).into_response())
}

/// Get a push subscription.
///
/// Settings and state: `lag`, `in_flight`, the counts of attempts (`delivered`, `acked`,
/// `failed`, `dead_lettered`, added up over every replica about once a second), the last
/// status and error, the last success, `consecutive_failures` and `paused`.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/push/{name}",
    tag = "push",
    operation_id = "get_push",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("name" = String, Path, description = "Push subscription name", example = "orders-webhook"),
    ),
    responses((status = 200, description = "The push subscription", body = PushInfo), ReadErrors)
)]
pub async fn get_push(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, name)): Path<(String, String)>,
) -> Result<Json<PushInfo>, ApiError> {
    let (stream, name) = names(stream, name)?;
    Ok(Json(
        ops::push::get(&state, &principal, &stream, &name).await?,
    ))
}

/// Delete a push subscription.
///
/// Every replica stops delivering it; its durable consumer and status are deleted (the
/// messages stay in the stream).
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}/push/{name}",
    tag = "push",
    operation_id = "delete_push",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("name" = String, Path, description = "Push subscription name", example = "orders-webhook"),
    ),
    responses((status = 204, description = "Deleted"), WriteErrors)
)]
pub async fn delete_push(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (stream, name) = names(stream, name)?;
    ops::push::delete(&state, &principal, &stream, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Until when to pause a push subscription.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"pause_until": "2026-11-26T12:00:00Z"}))]
pub struct PushPauseRequest {
    /// When deliveries resume by themselves (RFC 3339). Left out: paused until resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
}

/// Pause a push subscription.
///
/// No new delivery starts until `pause_until`, or until resumed without a body (the answer then
/// has no `pause_until`); deliveries in progress finish. Messages keep accumulating in the
/// stream (see `lag`).
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/push/{name}/pause",
    tag = "push",
    operation_id = "pause_push",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("name" = String, Path, description = "Push subscription name", example = "orders-webhook"),
    ),
    request_body(content = Option<PushPauseRequest>, description = "Optional: until when"),
    responses((status = 200, description = "The pause state", body = PauseState), WriteErrors)
)]
pub async fn pause_push(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, name)): Path<(String, String)>,
    JsonOrEmpty(request): JsonOrEmpty<PushPauseRequest>,
) -> Result<Json<PauseState>, ApiError> {
    let (stream, name) = names(stream, name)?;
    let until = request.pause_until.as_deref().unwrap_or(PAUSE_FOREVER);
    Ok(Json(
        ops::push::pause(&state, &principal, &stream, &name, Some(until)).await?,
    ))
}

/// Resume a push subscription.
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}/push/{name}/pause",
    tag = "push",
    operation_id = "resume_push",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("name" = String, Path, description = "Push subscription name", example = "orders-webhook"),
    ),
    responses((status = 200, description = "The pause state", body = PauseState), WriteErrors)
)]
pub async fn resume_push(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, name)): Path<(String, String)>,
) -> Result<Json<PauseState>, ApiError> {
    let (stream, name) = names(stream, name)?;
    Ok(Json(
        ops::push::pause(&state, &principal, &stream, &name, None).await?,
    ))
}
