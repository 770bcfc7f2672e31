//! Stream administration: list, create-or-update, info, delete, purge.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::auth::Principal;
use crate::edge::extract::{Json, JsonOrEmpty, Path};
use crate::edge::responses::{ReadErrors, WriteErrors};
use crate::error::ApiError;
use crate::nats::streams::{
    PurgeRequest, PurgeResult, PutOutcome, StreamConfig, StreamInfo, StreamList,
};
use crate::ops;
use crate::ops::names::StreamName;
use crate::state::AppState;

/// List streams.
///
/// Every stream with its configuration and state.
#[utoipa::path(
    get,
    path = "/v1/streams",
    tag = "streams",
    operation_id = "list_streams",
    responses((status = 200, description = "The streams", body = StreamList), ReadErrors)
)]
pub async fn list_streams(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<StreamList>, ApiError> {
    let streams = ops::streams::list(&state, &principal).await?;
    Ok(Json(StreamList {
        streams: streams.iter().map(StreamInfo::from_nats).collect(),
    }))
}

/// Create or update a stream.
///
/// Idempotent: creates the stream (201), updates it when the configuration differs (200), or
/// leaves it alone when it is already so configured (200). A change JetStream cannot make in
/// place (storage, retention…) or subjects overlapping another stream answer 409. Fields this
/// API does not model (sources, mirrors, placement) are kept as they are.
#[utoipa::path(
    put,
    path = "/v1/streams/{stream}",
    tag = "streams",
    operation_id = "put_stream",
    params(("stream" = String, Path, description = "Stream name", example = "ORDERS")),
    request_body = StreamConfig,
    responses(
        (status = 201, description = "Created", body = StreamInfo),
        (status = 200, description = "Updated, or already configured so", body = StreamInfo),
        WriteErrors,
    )
)]
pub async fn put_stream(
    State(state): State<AppState>,
    principal: Principal,
    Path(stream): Path<String>,
    Json(config): Json<StreamConfig>,
) -> Result<Response, ApiError> {
    let stream = StreamName::parse(stream)?;
    let (info, outcome) = ops::streams::put(&state, &principal, &stream, &config).await?;
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Updated | PutOutcome::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(StreamInfo::from_nats(&info))).into_response())
}

/// Get a stream.
///
/// Configuration and state: message and byte counts, first and last sequence and time,
/// consumer count.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}",
    tag = "streams",
    operation_id = "get_stream",
    params(("stream" = String, Path, description = "Stream name", example = "ORDERS")),
    responses((status = 200, description = "The stream", body = StreamInfo), ReadErrors)
)]
pub async fn get_stream(
    State(state): State<AppState>,
    principal: Principal,
    Path(stream): Path<String>,
) -> Result<Json<StreamInfo>, ApiError> {
    let stream = StreamName::parse(stream)?;
    let info = ops::streams::get(&state, &principal, &stream).await?;
    Ok(Json(StreamInfo::from_nats(&info)))
}

/// Delete a stream.
///
/// Deletes the stream, its consumers and every message in it.
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}",
    tag = "streams",
    operation_id = "delete_stream",
    params(("stream" = String, Path, description = "Stream name", example = "ORDERS")),
    responses((status = 204, description = "Deleted"), WriteErrors)
)]
pub async fn delete_stream(
    State(state): State<AppState>,
    principal: Principal,
    Path(stream): Path<String>,
) -> Result<StatusCode, ApiError> {
    let stream = StreamName::parse(stream)?;
    ops::streams::delete(&state, &principal, &stream).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Purge a stream.
///
/// Removes messages: all of them (empty body), those on a `subject`, all but the newest `keep`,
/// or those below `up_to_seq`. `subject` combines with either of the other two.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/purge",
    tag = "streams",
    operation_id = "purge_stream",
    params(("stream" = String, Path, description = "Stream name", example = "ORDERS")),
    request_body(content = Option<PurgeRequest>, description = "What to purge; omit to purge everything"),
    responses((status = 200, description = "Purged", body = PurgeResult), WriteErrors)
)]
pub async fn purge_stream(
    State(state): State<AppState>,
    principal: Principal,
    Path(stream): Path<String>,
    JsonOrEmpty(request): JsonOrEmpty<PurgeRequest>,
) -> Result<Json<PurgeResult>, ApiError> {
    let stream = StreamName::parse(stream)?;
    let purged = ops::streams::purge(&state, &principal, &stream, &request).await?;
    Ok(Json(PurgeResult { purged }))
}
