//! The HTTP surface: routes, layers, and the OpenAPI document.

pub mod acks;
pub mod console;
pub mod consumers;
pub mod extract;
pub mod health;
pub mod messages;
pub mod openapi;
pub mod origin;
pub mod publish;
pub mod responses;
pub mod streams;

use std::any::Any;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::state::AppState;

/// Header carrying the request id (generated when the client sends none, always echoed).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Bodies of routes that take small JSON documents (stream config, purge).
const SMALL_BODY: usize = 64 * 1024;

/// Body of `POST /v1/acks` (room for the most acks per request).
const ACKS_BODY: usize = 2 * 1024 * 1024;

/// Routes reachable without authentication. Everything else requires a token unless the server
/// runs with `--no-auth`.
pub const PUBLIC_ROUTES: [&str; 6] = [
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
];

/// Builds the router with every route and layer.
pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    let v1 = Router::new()
        .route(
            "/v1/publish/{subject}",
            post(publish::publish_message).layer(DefaultBodyLimit::max(limits.max_body)),
        )
        .route(
            "/v1/publish",
            post(publish::publish_batch).layer(DefaultBodyLimit::max(limits.max_batch_bytes)),
        )
        .route("/v1/streams", get(streams::list_streams))
        .route(
            "/v1/streams/{stream}",
            get(streams::get_stream)
                .put(streams::put_stream)
                .delete(streams::delete_stream)
                .layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/streams/{stream}/purge",
            post(streams::purge_stream).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/streams/{stream}/messages",
            get(messages::list_messages),
        )
        .route(
            "/v1/streams/{stream}/messages/last",
            get(messages::get_last_message),
        )
        .route(
            "/v1/streams/{stream}/messages/{seq}",
            get(messages::get_message),
        )
        .route(
            "/v1/streams/{stream}/consumers",
            get(consumers::list_consumers),
        )
        .route(
            "/v1/streams/{stream}/consumers/{consumer}",
            get(consumers::get_consumer)
                .put(consumers::put_consumer)
                .delete(consumers::delete_consumer)
                .layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/streams/{stream}/consumers/{consumer}/fetch",
            post(consumers::fetch_messages).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/acks",
            post(acks::ack_messages).layer(DefaultBodyLimit::max(ACKS_BODY)),
        )
        .route("/v1/streams/{stream}/ws", get(crate::ws::stream_websocket))
        .route("/v1/ws", get(crate::ws::multiplexed_websocket))
        .route(
            "/v1/streams/{stream}/events",
            get(crate::ws::sse::stream_events),
        );

    let public = Router::new()
        .route("/", get(console::console))
        .route(console::ASSETS_ROUTE, get(console::asset))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi::document()));

    // Layers, outermost first: request id (set, then echoed), tracing with it, panics as
    // problem+json 500s.
    // Every /v1 route refuses state-changing requests from pages of other origins (auth on or
    // off), then authenticates (a no-op Principal with --no-auth); public routes do neither.
    let v1 = v1
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            origin::refuse_cross_origin,
        ));

    // Layers, outermost first: request id (set, then echoed), tracing with it (route template
    // only: tokens in query strings never reach the logs), panics as problem+json 500s, header
    // limits, CORS for the configured origins.
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, NuidRequestId))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(make_span))
        .layer(middleware::from_fn_with_state(state.clone(), track_http))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(state.clone(), limit_headers))
        .option_layer(cors(&state.config.cors_origin));

    Router::new()
        .merge(v1)
        .merge(public)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(layers)
        .with_state(state)
}

/// CORS for the configured browser origins; none configured, no CORS headers (same-origin only).
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim()).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods(AllowMethods::any())
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers([
                axum::http::header::LOCATION,
                axum::http::header::RETRY_AFTER,
                REQUEST_ID,
                HeaderName::from_static("jetway-stream"),
                HeaderName::from_static("jetway-seq"),
                HeaderName::from_static("jetway-subject"),
                HeaderName::from_static("jetway-time"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Counts every request by route template, method and status, with its latency.
async fn track_http(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: middleware::Next,
) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state.metrics.http_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Refuses requests with too many or too large headers (431 problem).
async fn limit_headers(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: middleware::Next,
) -> Response {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let max_bytes = usize::try_from(state.config.max_header_bytes).unwrap_or(usize::MAX);
    if headers.len() > state.config.max_headers || bytes > max_bytes {
        return ApiError::HeadersTooLarge(format!(
            "{} headers, {bytes} bytes: at most {} headers and {max_bytes} bytes are accepted",
            headers.len(),
            state.config.max_headers
        ))
        .into_response();
    }
    next.run(request).await
}

/// Request ids: NUIDs (unique, unguessable enough for correlation, no extra dependency).
#[derive(Clone, Copy)]
struct NuidRequestId;

impl MakeRequestId for NuidRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        // A generator per thread: the global one behind `nuid::next()` is a contended lock.
        thread_local! {
            static NUID: std::cell::RefCell<nuid::NUID> = const { std::cell::RefCell::new(nuid::NUID::new()) };
        }
        let id = NUID.with(|n| n.borrow_mut().next());
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// The span of a request: method, route template (never the raw path, which may carry ids) and
/// request id.
fn make_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", http.method = %request.method(), http.route = route, request.id = id)
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::internal("handler panicked", message).into_response()
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not accept {method}", uri.path()))
}
