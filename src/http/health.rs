//! Liveness and readiness.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::edge::extract::Json;
use crate::error::ApiError;
use crate::state::AppState;

/// Health answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// `ok` (alive) or `ready` (can serve).
    pub status: String,
}

/// Liveness.
///
/// 200 while the process runs; does not look at NATS.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// Readiness.
///
/// 200 when the NATS connection is up, JetStream answers and the streams declared in the
/// configuration exist as declared; 503 (with `Retry-After`) otherwise, with the reason in
/// `detail`, so that a load balancer sends no traffic to a gateway that cannot serve it.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not connected to NATS, JetStream not answering, or declared streams not ensured", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let declared = state.declared.problem();
    if let Some(connection) = state.nats.connection_problem() {
        let detail = match declared {
            Some(declared) => format!("{connection}; {declared}"),
            None => connection,
        };
        return Err(ApiError::Unavailable(detail));
    }
    state.nats.ping_jetstream().await.map_err(|err| match err {
        ApiError::Unavailable(_) => err,
        other => ApiError::Unavailable(format!("JetStream is not answering: {other}")),
    })?;
    if let Some(declared) = declared {
        return Err(ApiError::Unavailable(declared));
    }
    Ok(Json(Health {
        status: "ready".to_owned(),
    }))
}

/// Metrics.
///
/// OpenMetrics text (Prometheus scrapes it): HTTP requests and latency by route, publishes, fetches,
/// acks, dead letters, the NATS connection, consumer lag, WebSocket and SSE connections, subscriptions, messages and bytes
/// sent, bytes queued for slow clients, credit stalls.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    operation_id = "metrics",
    responses((status = 200, description = "OpenMetrics text exposition (Prometheus scrapes it as is)", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        state.metrics.render(),
    )
}
