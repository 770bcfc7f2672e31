//! Every way a request can fail, and how each becomes an RFC 9457 `application/problem+json` answer.
//!
//! The variant fixes the HTTP status and a stable snake_case `code` that clients switch on; codes
//! are never renamed. The one exhaustive `match` in [`ApiError::parts`] is the only place that
//! decides those, so adding a variant forces a decision about its status and code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Result type of handlers and of the NATS layer.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Seconds a client is told to wait (`Retry-After`) when JetStream is unavailable.
const RETRY_AFTER_UNAVAILABLE_SECS: u64 = 2;

/// Why a request failed. `detail` strings are written for the client: they say what was wrong and,
/// where the client can act, what to do.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid token: missing, malformed, expired, wrongly signed.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token that does not grant the action.
    #[error("{0}")]
    Forbidden(String),
    /// A browser request from a page of another origin to a route that changes state.
    #[error("{0}")]
    CrossOrigin(String),
    /// A subject in the path or body is not a valid NATS publish subject.
    #[error("{0}")]
    InvalidSubject(String),
    /// A stream or consumer name is not valid.
    #[error("{0}")]
    InvalidName(String),
    /// A request header has a value jetway cannot use.
    #[error("{0}")]
    InvalidHeader(String),
    /// A `Nats-*` request header that clients may not set.
    #[error("{0}")]
    ForbiddenHeader(String),
    /// The body is not what the route accepts (malformed JSON, wrong shape).
    #[error("{0}")]
    InvalidBody(String),
    /// A path or query parameter is invalid.
    #[error("{0}")]
    InvalidParameter(String),
    /// JetStream rejected a stream or consumer configuration as invalid.
    #[error("{detail}")]
    InvalidConfig {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// JetStream rejected the per-message TTL value.
    #[error("{detail}")]
    InvalidTtl {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// The stream does not allow per-message TTLs.
    #[error("{detail}")]
    TtlNotEnabled {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// An ack id that was altered, forged, truncated or signed with an unknown key.
    #[error("{0}")]
    InvalidAckId(String),
    /// The body (or message) is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request's `Content-Type` is not one the route accepts.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A WebSocket route was requested without a WebSocket upgrade.
    #[error("{0}")]
    UpgradeRequired(String),
    /// Too many or too large request headers.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// The request body did not arrive in time (it stalled, or trickled for too long).
    #[error("{0}")]
    RequestTimeout(String),
    /// No route matches the path.
    #[error("no route matches {0}")]
    RouteNotFound(String),
    /// The route exists but not for this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The named stream does not exist.
    #[error("stream '{0}' does not exist")]
    StreamNotFound(String),
    /// The named consumer does not exist on the stream.
    #[error("consumer '{consumer}' does not exist on stream '{stream}'")]
    ConsumerNotFound { stream: String, consumer: String },
    /// JetStream did not confirm an ack: the consumer no longer tracks that delivery.
    #[error("{0}")]
    AckNotConfirmed(String),
    /// No stored message matches.
    #[error("{0}")]
    MessageNotFound(String),
    /// No stream captures the subject, so nothing could store the message.
    #[error("no stream captures subject '{0}'; create a stream whose subjects match it")]
    SubjectNotCaptured(String),
    /// The change conflicts with the existing configuration or another stream.
    #[error("{detail}")]
    StreamConflict {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// The change conflicts with the existing consumer's configuration.
    #[error("{detail}")]
    ConsumerConflict {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// A publish precondition (`Nats-Expected-*`) did not hold.
    #[error("{detail}")]
    PreconditionFailed {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// Atomic batch publish asked of a stream without `allow_atomic`.
    #[error("{detail}")]
    AtomicNotEnabled {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// JetStream refused an atomic batch; nothing of it was stored.
    #[error("{detail}")]
    AtomicBatchFailed {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// The NATS server is too old for the feature asked for.
    #[error("{detail}")]
    NotSupportedByServer {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// JetStream could not store the message (stream full with `discard: new`, store failure).
    #[error("{detail}")]
    StoreFailed {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// Too many requests; retry after the `Retry-After` delay.
    #[error("{0}")]
    RateLimited(String),
    /// A rate limit with a known wait.
    #[error("{detail}")]
    RateLimitedFor { detail: String, retry_after: u64 },
    /// NATS is disconnected or JetStream does not answer; safe to retry later.
    #[error("{0}")]
    Unavailable(String),
    /// JetStream did not answer in time; the outcome is unknown.
    #[error("{0}")]
    Timeout(String),
    /// An earlier publish with the same `Idempotency-Key` is still being stored; retry with the
    /// same key to learn its outcome.
    #[error("{0}")]
    PublishInProgress(String),
    /// JetStream answered with an error jetway has no better mapping for.
    #[error("{detail}")]
    JetStream {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// A fault inside jetway; the cause is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The RFC 9457 body. Extension members: `code` (stable, snake_case) and `jetstream_code`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:jetway:problem:subject_not_captured",
    "title": "Subject not captured by any stream",
    "status": 404,
    "detail": "no stream captures subject 'billing.new'; create a stream whose subjects match it",
    "code": "subject_not_captured"
}))]
pub struct Problem {
    /// `urn:jetway:problem:<code>`; stable per error kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the error kind.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong in this request, and what to do about it.
    pub detail: String,
    /// Stable machine-readable error code (the last part of `type`).
    pub code: String,
    /// JetStream's own error code (`err_code`), when JetStream produced the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jetstream_code: Option<u64>,
}

/// Status, code and title of an error kind.
struct Parts {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    jetstream_code: Option<u64>,
}

impl ApiError {
    fn parts(&self) -> Parts {
        use StatusCode as S;
        let p = |status, code, title| Parts {
            status,
            code,
            title,
            jetstream_code: None,
        };
        let js = |status, code, title, jetstream_code: &Option<u64>| Parts {
            status,
            code,
            title,
            jetstream_code: *jetstream_code,
        };
        match self {
            Self::Unauthorized(_) => p(S::UNAUTHORIZED, "unauthorized", "Authentication required"),
            Self::Forbidden(_) => p(S::FORBIDDEN, "forbidden", "Not permitted"),
            Self::CrossOrigin(_) => p(S::FORBIDDEN, "cross_origin", "Cross-origin request refused"),
            Self::InvalidSubject(_) => p(S::BAD_REQUEST, "invalid_subject", "Invalid subject"),
            Self::InvalidName(_) => p(S::BAD_REQUEST, "invalid_name", "Invalid name"),
            Self::InvalidHeader(_) => p(S::BAD_REQUEST, "invalid_header", "Invalid header"),
            Self::ForbiddenHeader(_) => p(S::BAD_REQUEST, "forbidden_header", "Header not allowed"),
            Self::InvalidBody(_) => p(S::BAD_REQUEST, "invalid_body", "Invalid request body"),
            Self::InvalidParameter(_) => {
                p(S::BAD_REQUEST, "invalid_parameter", "Invalid parameter")
            }
            Self::InvalidConfig { jetstream_code, .. } => js(
                S::BAD_REQUEST,
                "invalid_config",
                "Invalid configuration",
                jetstream_code,
            ),
            Self::InvalidTtl { jetstream_code, .. } => js(
                S::BAD_REQUEST,
                "invalid_ttl",
                "Invalid message TTL",
                jetstream_code,
            ),
            Self::TtlNotEnabled { jetstream_code, .. } => js(
                S::BAD_REQUEST,
                "ttl_not_enabled",
                "Per-message TTL not enabled on the stream",
                jetstream_code,
            ),
            Self::InvalidAckId(_) => p(S::BAD_REQUEST, "invalid_ack_id", "Invalid ack id"),
            Self::PayloadTooLarge(_) => p(
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            Self::UnsupportedMediaType(_) => p(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            Self::UpgradeRequired(_) => p(
                S::UPGRADE_REQUIRED,
                "upgrade_required",
                "WebSocket upgrade required",
            ),
            Self::HeadersTooLarge(_) => p(
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "Request headers too large",
            ),
            Self::RequestTimeout(_) => p(
                S::REQUEST_TIMEOUT,
                "request_timeout",
                "Request body not received in time",
            ),
            Self::RouteNotFound(_) => p(S::NOT_FOUND, "route_not_found", "Route not found"),
            Self::MethodNotAllowed(_) => p(
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            Self::StreamNotFound(_) => p(S::NOT_FOUND, "stream_not_found", "Stream not found"),
            Self::ConsumerNotFound { .. } => {
                p(S::NOT_FOUND, "consumer_not_found", "Consumer not found")
            }
            Self::AckNotConfirmed(_) => p(S::GONE, "ack_not_confirmed", "Ack not confirmed"),
            Self::MessageNotFound(_) => p(S::NOT_FOUND, "message_not_found", "Message not found"),
            Self::SubjectNotCaptured(_) => p(
                S::NOT_FOUND,
                "subject_not_captured",
                "Subject not captured by any stream",
            ),
            Self::StreamConflict { jetstream_code, .. } => js(
                S::CONFLICT,
                "stream_conflict",
                "Conflicting stream configuration",
                jetstream_code,
            ),
            Self::ConsumerConflict { jetstream_code, .. } => js(
                S::CONFLICT,
                "consumer_conflict",
                "Conflicting consumer configuration",
                jetstream_code,
            ),
            Self::PreconditionFailed { jetstream_code, .. } => js(
                S::PRECONDITION_FAILED,
                "precondition_failed",
                "Precondition failed",
                jetstream_code,
            ),
            Self::AtomicNotEnabled { jetstream_code, .. } => js(
                S::BAD_REQUEST,
                "atomic_not_enabled",
                "Atomic batch publish not enabled on the stream",
                jetstream_code,
            ),
            Self::AtomicBatchFailed { jetstream_code, .. } => js(
                S::BAD_REQUEST,
                "atomic_batch_failed",
                "Atomic batch rejected",
                jetstream_code,
            ),
            Self::NotSupportedByServer { jetstream_code, .. } => js(
                S::NOT_IMPLEMENTED,
                "not_supported_by_server",
                "Not supported by the NATS server",
                jetstream_code,
            ),
            Self::StoreFailed { jetstream_code, .. } => js(
                S::INSUFFICIENT_STORAGE,
                "store_failed",
                "JetStream could not store the message",
                jetstream_code,
            ),
            Self::RateLimited(_) | Self::RateLimitedFor { .. } => {
                p(S::TOO_MANY_REQUESTS, "rate_limited", "Too many requests")
            }
            Self::Unavailable(_) => p(
                S::SERVICE_UNAVAILABLE,
                "jetstream_unavailable",
                "JetStream unavailable",
            ),
            Self::PublishInProgress(_) => p(
                S::SERVICE_UNAVAILABLE,
                "publish_in_progress",
                "Publish with this Idempotency-Key in progress",
            ),
            Self::Timeout(_) => p(
                S::GATEWAY_TIMEOUT,
                "jetstream_timeout",
                "Timed out waiting for JetStream",
            ),
            Self::JetStream { jetstream_code, .. } => js(
                S::BAD_GATEWAY,
                "jetstream_error",
                "JetStream error",
                jetstream_code,
            ),
            Self::Internal(_) => p(S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.parts().status
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        self.parts().code
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let parts = self.parts();
        let detail = match self {
            // The cause of an internal fault is logged where it happens, not sent.
            Self::Internal(_) => "an internal error occurred; it has been logged".to_owned(),
            other => other.to_string(),
        };
        Problem {
            kind: format!("urn:jetway:problem:{}", parts.code),
            title: parts.title.to_owned(),
            status: parts.status.as_u16(),
            detail,
            code: parts.code.to_owned(),
            jetstream_code: parts.jetstream_code,
        }
    }

    /// Shorthand for an internal error whose cause is logged here, once.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::Internal(format!("{context}: {err}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = problem.code, detail = %self, "request failed");
        }
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            Self::RateLimitedFor { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            Self::Unauthorized(detail) => {
                let challenge = format!(
                    "Bearer realm=\"jetway\", error=\"invalid_token\", error_description=\"{}\"",
                    detail.replace(['"', '\\'], "'")
                );
                let value = HeaderValue::from_str(&challenge)
                    .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"jetway\""));
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
            // The rest of the body is still on its way, or never comes: the connection is of
            // no further use.
            Self::RequestTimeout(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::TOO_MANY_REQUESTS =>
            {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(RETRY_AFTER_UNAVAILABLE_SECS),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_carries_code_in_type_and_member() {
        let problem = ApiError::SubjectNotCaptured("a.b".into()).problem();
        assert_eq!(problem.kind, "urn:jetway:problem:subject_not_captured");
        assert_eq!(problem.code, "subject_not_captured");
        assert_eq!(problem.status, 404);
        assert!(problem.detail.contains("a.b"));
    }

    #[test]
    fn internal_detail_does_not_leak_cause() {
        let problem = ApiError::Internal("secret path /etc/x".into()).problem();
        assert!(!problem.detail.contains("/etc/x"));
        assert_eq!(problem.status, 500);
    }

    #[test]
    fn unavailable_sets_retry_after() {
        let response = ApiError::Unavailable("down".into()).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
