//! Extractors whose rejections are [`ApiError`]s, so that a malformed body, query or path is a
//! problem+json 400 (or 413 / 415) like every other error.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};

use crate::error::ApiError;
use crate::json::Object;
use crate::ops::names::StreamName;
use crate::ops::subscribe::Subscription;

/// `axum::Json` with problem+json rejections. Every JSON request body of this API is an object:
/// a struct is read from an object only ([`crate::json::Object`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(Object(value)) =
            axum::Json::<Object<T>>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` with problem+json rejections.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` with problem+json rejections.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// The raw request body, bounded by the route's `DefaultBodyLimit`.
#[derive(Debug, Clone, Default)]
pub struct Body(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        bytes::Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(ApiError::from)
    }
}

/// A JSON object that may be left out (then `T::default()`), for routes whose whole body is
/// optional (purge, fetch); `null` is not "left out", it is a 400. Its `Content-Type` must be JSON, or absent, even when the body is
/// empty: these routes change state, and what an HTML form sends
/// (`application/x-www-form-urlencoded`, `multipart/form-data`, `text/plain`) is exactly what a
/// page of another site can make a browser send (see [`super::origin`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonOrEmpty<T>(pub T);

impl<S, T> FromRequest<S> for JsonOrEmpty<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if let Some(value) = request.headers().get(axum::http::header::CONTENT_TYPE) {
            let text = value.to_str().unwrap_or("");
            if !is_json(text) {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Content-Type '{text}' is not accepted here: send JSON with 'Content-Type: \
                     application/json', or no body and no Content-Type (HTML forms, and curl -d \
                     without -H, send application/x-www-form-urlencoded)"
                )));
            }
        }
        let Body(bytes) = Body::from_request(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(|Object(value)| Self(value))
            .map_err(|err| ApiError::InvalidBody(format!("invalid JSON body: {err}")))
    }
}

/// `application/json`, or a `+json` type, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(err) => ApiError::InvalidBody(body_text(&err)),
            JsonRejection::JsonSyntaxError(err) => ApiError::InvalidBody(body_text(&err)),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "send the body as JSON with 'Content-Type: application/json'".to_owned(),
            ),
            JsonRejection::BytesRejection(err) => ApiError::from(err),
            other => ApiError::InvalidBody(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if let Some(timeout) = crate::server::BodyTimeout::find(&rejection) {
            return ApiError::RequestTimeout(format!(
                "{timeout}; send the whole body without long pauses"
            ));
        }
        let text = rejection.body_text();
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "request body is larger than this route accepts ({text})"
            ))
        } else {
            ApiError::InvalidBody(format!("cannot read request body: {text}"))
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::InvalidParameter(format!("invalid query: {}", rejection.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::InvalidParameter(format!("invalid path: {}", rejection.body_text()))
    }
}

/// The innermost message (serde's, which says what is wrong and where), once.
fn body_text(err: &dyn std::error::Error) -> String {
    let mut innermost = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        innermost = inner.to_string();
        source = inner.source();
    }
    format!("invalid JSON body: {innermost}")
}

/// The stream and the query of a subscription route (WebSocket or SSE), parsed once for every
/// streaming transport.
#[derive(Debug, Clone)]
pub struct SubscribeTo(pub StreamName, pub Subscription);

impl<S: Send + Sync> FromRequestParts<S> for SubscribeTo {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Path(stream) = Path::<String>::from_request_parts(parts, state).await?;
        let stream = StreamName::parse(stream)?;
        let subscription = Subscription::parse(parts.uri.query())?;
        Ok(Self(stream, subscription))
    }
}
