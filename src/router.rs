//! The composition root: every transport's routes under one router, with the shared edge
//! layers ([`crate::edge`]) and the OpenAPI document.

use axum::Router;
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;
use crate::{edge, http, openapi, sse, ws};

/// Routes reachable without authentication. Everything else requires a token unless the server
/// runs with `--no-auth`.
pub const PUBLIC_ROUTES: [&str; 7] = [
    "/",
    http::console::ASSETS_ROUTE,
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
];

/// Builds the router with every route and layer.
pub fn router(state: AppState) -> Router {
    let v1 = http::v1_routes(&state.limits)
        .merge(ws::routes())
        .merge(sse::routes());
    let public = http::public_routes()
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi::document()));
    edge::finish(edge::guard_v1(v1, &state).merge(public), state)
}
