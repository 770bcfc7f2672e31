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
    /// The named key-value bucket does not exist.
    #[error("key-value bucket '{0}' does not exist")]
    BucketNotFound(String),
    /// The key has no value (never written, deleted or purged, or outside the caller's
    /// namespace).
    #[error("{0}")]
    KeyNotFound(String),
    /// No push subscription of that name on the stream.
    #[error("{0}")]
    PushNotFound(String),
    /// A push destination that `--push-allow` does not admit.
    #[error("{0}")]
    DestinationNotAllowed(String),
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
    /// A counter increment or read on a stream without `allow_msg_counter`.
    #[error("{detail}")]
    CountersNotEnabled {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// A message schedule on a stream without `allow_msg_schedules`.
    #[error("{detail}")]
    SchedulesNotEnabled {
        detail: String,
        jetstream_code: Option<u64>,
    },
    /// A fetch with a pin id that is not the consumer's pinned client.
    #[error("{0}")]
    PinMismatch(String),
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
    /// Stable machine-readable error code (the last part of `type`). Codes are never renamed;
    /// a new jetway version may add codes, so a client should treat an unknown one by its
    /// `status`.
    #[schema(value_type = ProblemCode)]
    pub code: String,
    /// JetStream's own error code (`err_code`), when JetStream produced the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jetstream_code: Option<u64>,
}

/// The stable error codes: the `code` member of every problem document, and the last part of
/// its `type` (`urn:jetway:problem:<code>`). docs/errors.md says what a client should do about
/// each. Never renamed; new ones may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    Unauthorized,
    Forbidden,
    CrossOrigin,
    InvalidSubject,
    InvalidName,
    InvalidHeader,
    ForbiddenHeader,
    InvalidBody,
    InvalidParameter,
    InvalidConfig,
    InvalidTtl,
    TtlNotEnabled,
    InvalidAckId,
    PayloadTooLarge,
    UnsupportedMediaType,
    UpgradeRequired,
    HeadersTooLarge,
    RequestTimeout,
    RouteNotFound,
    MethodNotAllowed,
    StreamNotFound,
    ConsumerNotFound,
    AckNotConfirmed,
    MessageNotFound,
    BucketNotFound,
    KeyNotFound,
    PushNotFound,
    DestinationNotAllowed,
    SubjectNotCaptured,
    StreamConflict,
    ConsumerConflict,
    PreconditionFailed,
    CountersNotEnabled,
    SchedulesNotEnabled,
    PinMismatch,
    AtomicNotEnabled,
    AtomicBatchFailed,
    NotSupportedByServer,
    StoreFailed,
    RateLimited,
    JetstreamUnavailable,
    PublishInProgress,
    JetstreamTimeout,
    JetstreamError,
    Internal,
}

impl ProblemCode {
    /// Every code, in the order of [`ApiError`]'s variants.
    pub const ALL: [Self; 45] = [
        Self::Unauthorized,
        Self::Forbidden,
        Self::CrossOrigin,
        Self::InvalidSubject,
        Self::InvalidName,
        Self::InvalidHeader,
        Self::ForbiddenHeader,
        Self::InvalidBody,
        Self::InvalidParameter,
        Self::InvalidConfig,
        Self::InvalidTtl,
        Self::TtlNotEnabled,
        Self::InvalidAckId,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::UpgradeRequired,
        Self::HeadersTooLarge,
        Self::RequestTimeout,
        Self::RouteNotFound,
        Self::MethodNotAllowed,
        Self::StreamNotFound,
        Self::ConsumerNotFound,
        Self::AckNotConfirmed,
        Self::MessageNotFound,
        Self::BucketNotFound,
        Self::KeyNotFound,
        Self::PushNotFound,
        Self::DestinationNotAllowed,
        Self::SubjectNotCaptured,
        Self::StreamConflict,
        Self::ConsumerConflict,
        Self::PreconditionFailed,
        Self::CountersNotEnabled,
        Self::SchedulesNotEnabled,
        Self::PinMismatch,
        Self::AtomicNotEnabled,
        Self::AtomicBatchFailed,
        Self::NotSupportedByServer,
        Self::StoreFailed,
        Self::RateLimited,
        Self::JetstreamUnavailable,
        Self::PublishInProgress,
        Self::JetstreamTimeout,
        Self::JetstreamError,
        Self::Internal,
    ];

    /// The code as it appears in problem documents.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::CrossOrigin => "cross_origin",
            Self::InvalidSubject => "invalid_subject",
            Self::InvalidName => "invalid_name",
            Self::InvalidHeader => "invalid_header",
            Self::ForbiddenHeader => "forbidden_header",
            Self::InvalidBody => "invalid_body",
            Self::InvalidParameter => "invalid_parameter",
            Self::InvalidConfig => "invalid_config",
            Self::InvalidTtl => "invalid_ttl",
            Self::TtlNotEnabled => "ttl_not_enabled",
            Self::InvalidAckId => "invalid_ack_id",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UpgradeRequired => "upgrade_required",
            Self::HeadersTooLarge => "headers_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::StreamNotFound => "stream_not_found",
            Self::ConsumerNotFound => "consumer_not_found",
            Self::AckNotConfirmed => "ack_not_confirmed",
            Self::MessageNotFound => "message_not_found",
            Self::BucketNotFound => "bucket_not_found",
            Self::KeyNotFound => "key_not_found",
            Self::PushNotFound => "push_not_found",
            Self::DestinationNotAllowed => "destination_not_allowed",
            Self::SubjectNotCaptured => "subject_not_captured",
            Self::StreamConflict => "stream_conflict",
            Self::ConsumerConflict => "consumer_conflict",
            Self::PreconditionFailed => "precondition_failed",
            Self::CountersNotEnabled => "counters_not_enabled",
            Self::SchedulesNotEnabled => "schedules_not_enabled",
            Self::PinMismatch => "pin_mismatch",
            Self::AtomicNotEnabled => "atomic_not_enabled",
            Self::AtomicBatchFailed => "atomic_batch_failed",
            Self::NotSupportedByServer => "not_supported_by_server",
            Self::StoreFailed => "store_failed",
            Self::RateLimited => "rate_limited",
            Self::JetstreamUnavailable => "jetstream_unavailable",
            Self::PublishInProgress => "publish_in_progress",
            Self::JetstreamTimeout => "jetstream_timeout",
            Self::JetstreamError => "jetstream_error",
            Self::Internal => "internal",
        }
    }
}

/// Status, code and title of an error kind.
struct Parts {
    status: StatusCode,
    code: ProblemCode,
    title: &'static str,
    jetstream_code: Option<u64>,
}

impl ApiError {
    fn parts(&self) -> Parts {
        use ProblemCode as C;
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
            Self::Unauthorized(_) => p(S::UNAUTHORIZED, C::Unauthorized, "Authentication required"),
            Self::Forbidden(_) => p(S::FORBIDDEN, C::Forbidden, "Not permitted"),
            Self::CrossOrigin(_) => p(S::FORBIDDEN, C::CrossOrigin, "Cross-origin request refused"),
            Self::InvalidSubject(_) => p(S::BAD_REQUEST, C::InvalidSubject, "Invalid subject"),
            Self::InvalidName(_) => p(S::BAD_REQUEST, C::InvalidName, "Invalid name"),
            Self::InvalidHeader(_) => p(S::BAD_REQUEST, C::InvalidHeader, "Invalid header"),
            Self::ForbiddenHeader(_) => p(S::BAD_REQUEST, C::ForbiddenHeader, "Header not allowed"),
            Self::InvalidBody(_) => p(S::BAD_REQUEST, C::InvalidBody, "Invalid request body"),
            Self::InvalidParameter(_) => {
                p(S::BAD_REQUEST, C::InvalidParameter, "Invalid parameter")
            }
            Self::InvalidConfig { jetstream_code, .. } => js(
                S::BAD_REQUEST,
                C::InvalidConfig,
                "Invalid configuration",
                jetstream_code,
            ),
            Self::InvalidTtl { jetstream_code, .. } => js(
                S::BAD_REQUEST,
                C::InvalidTtl,
                "Invalid message TTL",
                jetstream_code,
            ),
            Self::TtlNotEnabled { jetstream_code, .. } => js(
                S::BAD_REQUEST,
                C::TtlNotEnabled,
                "Per-message TTL not enabled on the stream",
                jetstream_code,
            ),
            Self::InvalidAckId(_) => p(S::BAD_REQUEST, C::InvalidAckId, "Invalid ack id"),
            Self::PayloadTooLarge(_) => p(
                S::PAYLOAD_TOO_LARGE,
                C::PayloadTooLarge,
                "Payload too large",
            ),
            Self::UnsupportedMediaType(_) => p(
                S::UNSUPPORTED_MEDIA_TYPE,
                C::UnsupportedMediaType,
                "Unsupported media type",
            ),
            Self::UpgradeRequired(_) => p(
                S::UPGRADE_REQUIRED,
                C::UpgradeRequired,
                "WebSocket upgrade required",
            ),
            Self::HeadersTooLarge(_) => p(
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                C::HeadersTooLarge,
                "Request headers too large",
            ),
            Self::RequestTimeout(_) => p(
                S::REQUEST_TIMEOUT,
                C::RequestTimeout,
                "Request body not received in time",
            ),
            Self::RouteNotFound(_) => p(S::NOT_FOUND, C::RouteNotFound, "Route not found"),
            Self::MethodNotAllowed(_) => p(
                S::METHOD_NOT_ALLOWED,
                C::MethodNotAllowed,
                "Method not allowed",
            ),
            Self::StreamNotFound(_) => p(S::NOT_FOUND, C::StreamNotFound, "Stream not found"),
            Self::ConsumerNotFound { .. } => {
                p(S::NOT_FOUND, C::ConsumerNotFound, "Consumer not found")
            }
            Self::AckNotConfirmed(_) => p(S::GONE, C::AckNotConfirmed, "Ack not confirmed"),
            Self::MessageNotFound(_) => p(S::NOT_FOUND, C::MessageNotFound, "Message not found"),
            Self::BucketNotFound(_) => p(S::NOT_FOUND, C::BucketNotFound, "Bucket not found"),
            Self::KeyNotFound(_) => p(S::NOT_FOUND, C::KeyNotFound, "Key not found"),
            Self::PushNotFound(_) => {
                p(S::NOT_FOUND, C::PushNotFound, "Push subscription not found")
            }
            Self::DestinationNotAllowed(_) => p(
                S::FORBIDDEN,
                C::DestinationNotAllowed,
                "Push destination not allowed",
            ),
            Self::SubjectNotCaptured(_) => p(
                S::NOT_FOUND,
                C::SubjectNotCaptured,
                "Subject not captured by any stream",
            ),
            Self::StreamConflict { jetstream_code, .. } => js(
                S::CONFLICT,
                C::StreamConflict,
                "Conflicting stream configuration",
                jetstream_code,
            ),
            Self::ConsumerConflict { jetstream_code, .. } => js(
                S::CONFLICT,
                C::ConsumerConflict,
                "Conflicting consumer configuration",
                jetstream_code,
            ),
            Self::PreconditionFailed { jetstream_code, .. } => js(
                S::PRECONDITION_FAILED,
                C::PreconditionFailed,
                "Precondition failed",
                jetstream_code,
            ),
            Self::CountersNotEnabled { jetstream_code, .. } => js(
                S::BAD_REQUEST,
                C::CountersNotEnabled,
                "Counters not enabled on the stream",
                jetstream_code,
            ),
            Self::PinMismatch(_) => p(S::CONFLICT, C::PinMismatch, "Not the pinned client"),
            Self::SchedulesNotEnabled { jetstream_code, .. } => js(
                S::BAD_REQUEST,
                C::SchedulesNotEnabled,
                "Message schedules not enabled on the stream",
                jetstream_code,
            ),
            Self::AtomicNotEnabled { jetstream_code, .. } => js(
                S::BAD_REQUEST,
                C::AtomicNotEnabled,
                "Atomic batch publish not enabled on the stream",
                jetstream_code,
            ),
            Self::AtomicBatchFailed { jetstream_code, .. } => js(
                S::BAD_REQUEST,
                C::AtomicBatchFailed,
                "Atomic batch rejected",
                jetstream_code,
            ),
            Self::NotSupportedByServer { jetstream_code, .. } => js(
                S::NOT_IMPLEMENTED,
                C::NotSupportedByServer,
                "Not supported by the NATS server",
                jetstream_code,
            ),
            Self::StoreFailed { jetstream_code, .. } => js(
                S::INSUFFICIENT_STORAGE,
                C::StoreFailed,
                "JetStream could not store the message",
                jetstream_code,
            ),
            Self::RateLimited(_) | Self::RateLimitedFor { .. } => {
                p(S::TOO_MANY_REQUESTS, C::RateLimited, "Too many requests")
            }
            Self::Unavailable(_) => p(
                S::SERVICE_UNAVAILABLE,
                C::JetstreamUnavailable,
                "JetStream unavailable",
            ),
            Self::PublishInProgress(_) => p(
                S::SERVICE_UNAVAILABLE,
                C::PublishInProgress,
                "Publish with this Idempotency-Key in progress",
            ),
            Self::Timeout(_) => p(
                S::GATEWAY_TIMEOUT,
                C::JetstreamTimeout,
                "Timed out waiting for JetStream",
            ),
            Self::JetStream { jetstream_code, .. } => js(
                S::BAD_GATEWAY,
                C::JetstreamError,
                "JetStream error",
                jetstream_code,
            ),
            Self::Internal(_) => p(S::INTERNAL_SERVER_ERROR, C::Internal, "Internal error"),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.parts().status
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        self.parts().code.as_str()
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
            kind: format!("urn:jetway:problem:{}", parts.code.as_str()),
            title: parts.title.to_owned(),
            status: parts.status.as_u16(),
            detail,
            code: parts.code.as_str().to_owned(),
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
    fn problem_codes_serialize_as_their_str() {
        for code in ProblemCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().to_owned())
            );
        }
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
