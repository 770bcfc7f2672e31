//! What every transport shares at the HTTP edge: extractors whose rejections are problems, the
//! authentication and cross-origin checks of `/v1`, and the router-wide layers (request id,
//! tracing, request metrics, panics, header limits, CORS, fallbacks). It imports no transport.

pub mod extract;
pub mod origin;
pub mod responses;

use std::any::Any;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::auth::{Principal, request_token};
use crate::error::ApiError;
use crate::state::AppState;

/// Header carrying the request id (generated when the client sends none, always echoed).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `/v1` routes (of every transport) in one layer: state-changing requests from pages of
/// other origins are refused (auth on or off), then the caller is authenticated (an
/// unrestricted [`Principal`] with `--no-auth`).
pub fn guard_v1(v1: Router<AppState>, state: &AppState) -> Router<AppState> {
    v1.route_layer(middleware::from_fn_with_state(state.clone(), guard))
}

/// Adds the router-wide layers and fallbacks. Outermost first: request id (set, then echoed),
/// tracing with it (route template only: tokens in query strings never reach the logs), request
/// metrics and header limits, panics as problem+json 500s, CORS for the configured origins.
pub fn finish(router: Router<AppState>, state: AppState) -> Router {
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, NuidRequestId))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(make_span))
        .layer(middleware::from_fn_with_state(state.clone(), track_http))
        .layer(CatchPanicLayer::custom(panic_response))
        .option_layer(cors(&state.config.cors_origin));
    router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(layers)
        .with_state(state)
}

/// Middleware of `/v1`: the cross-origin check, then authentication, which stores the
/// [`Principal`].
async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if let Err(err) = origin::refuse_cross_origin(&request, &state.config.cors_origin) {
        return err.into_response();
    }
    let principal = match &state.auth {
        None => Principal::unrestricted(),
        Some(auth) => {
            let token = request_token(request.headers(), request.uri().query());
            let Some(token) = token else {
                return ApiError::Unauthorized(
                    "authentication required: send 'Authorization: Bearer <token>' (browsers: the \
                     access_token query parameter on WebSocket and SSE)"
                        .to_owned(),
                )
                .into_response();
            };
            match auth.verify(&token).await {
                Ok(principal) => principal,
                Err(err) => return err.into_response(),
            }
        }
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
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

/// Counts every request by route template, method and status, with its latency; a request with
/// too many or too large headers is answered 431 here (and counted).
async fn track_http(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = match headers_too_large(&state, request.headers()) {
        Some(err) => err.into_response(),
        None => next.run(request).await,
    };
    state.metrics.http_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Too many or too large headers (a 431 problem)?
fn headers_too_large(state: &AppState, headers: &HeaderMap) -> Option<ApiError> {
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let max_bytes = usize::try_from(state.config.max_header_bytes).unwrap_or(usize::MAX);
    (headers.len() > state.config.max_headers || bytes > max_bytes).then(|| {
        ApiError::HeadersTooLarge(format!(
            "{} headers, {bytes} bytes: at most {} headers and {max_bytes} bytes are accepted",
            headers.len(),
            state.config.max_headers
        ))
    })
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
