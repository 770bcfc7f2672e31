//! `GET /v1/kv/{bucket}/ws`: watch keys of a key-value bucket over a WebSocket, one watch per
//! socket, with the same framing, credit and byte budget as a stream's socket.

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::response::Response;

use super::{Session, configure, upgrade_required};
use crate::auth::Principal;
use crate::edge::extract::Path;
use crate::edge::responses::SubscribeErrors;
use crate::error::ApiError;
use crate::ops;
use crate::ops::kv::Watch;
use crate::ops::names::BucketName;
use crate::state::AppState;

/// Watch keys of a key-value bucket over a WebSocket.
///
/// Query as for the SSE watch (`key`, `deliver`, `start_revision`, `encoding`) plus `credit`.
/// Each entry is a `msg` frame whose fields are the entry (`bucket`, `key`, `revision`,
/// `operation`, `created`, `value`, `encoding`); `caught_up` follows the entries stored when the
/// watch started. The client may send `credit` and `ping` ops. Needs `kv_read` on the bucket;
/// an unknown bucket answers 404 before the upgrade. See docs/kv.md.
#[utoipa::path(
    get,
    path = "/v1/kv/{bucket}/ws",
    tag = "streaming",
    operation_id = "kv_websocket",
    params(
        ("bucket" = String, Path, description = "Bucket name", example = "flags"),
        ops::kv::WatchQuery,
        ("credit" = Option<u64>, Query, description = "Initial credit: entries sent before the client grants more"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol (frames: openapi/asyncapi.yaml)"),
        (status = 426, description = "Not a WebSocket upgrade request", body = crate::error::Problem, content_type = "application/problem+json"),
        SubscribeErrors,
    )
)]
pub async fn kv_websocket(
    State(state): State<AppState>,
    principal: Principal,
    Path(bucket): Path<String>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(upgrade_required)?;
    crate::auth::check_origin(&headers, &state.config.cors_origin)?;
    let bucket = BucketName::parse(bucket)?;
    let watch = Watch::parse(uri.query())?;
    let slot = state.connections.acquire(&principal.id)?;
    let tail = ops::kv::watch(
        &state,
        &principal,
        &bucket,
        watch.pattern.as_ref(),
        watch.from,
        watch.encoding,
    )
    .await?;
    let tasks = state.tasks.clone();
    Ok(configure(ws, &state).on_upgrade(move |socket| {
        tasks.track_future(async move {
            let mut session = Session::new(state, socket, true, principal, slot);
            session.add_subscription(None, tail, watch.credit);
            session.run().await;
        })
    }))
}
