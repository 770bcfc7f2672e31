//! The composition root: every transport's routes (from [`openapi::routes`], which registers
//! each with its OpenAPI entry) under one router, `/v1` behind the shared edge guard
//! ([`crate::edge`]), and the document served at `/openapi.json`.

use axum::Router;
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;
use crate::{edge, http, openapi};

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
    let (v1, public) = openapi::routes(&state.limits);
    let (v1, v1_doc) = v1.split_for_parts();
    let (public, public_doc) = public.split_for_parts();
    let mut doc = v1_doc;
    doc.merge(public_doc);
    let public = public
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi::complete(doc, &state.limits)));
    edge::finish(edge::guard_v1(v1, &state).merge(public), state)
}
