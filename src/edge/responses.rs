//! The error responses of each group of routes (of every transport), listed once and referenced
//! by the handlers' OpenAPI annotations. Every error body is an RFC 9457 problem (`application/problem+json`).

#![allow(
    dead_code,
    reason = "these types exist only to describe responses in the OpenAPI document"
)]

use utoipa::IntoResponses;

use crate::error::Problem;

/// Errors of `POST /v1/publish/{subject}`.
#[derive(IntoResponses)]
pub enum PublishErrors {
    /// Invalid subject or header, a forbidden `Nats-*` header, an invalid TTL, or TTLs not enabled on the stream.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No stream captures the subject.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// A `Nats-Expected-*` precondition did not hold; nothing was stored.
    #[response(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(Problem),
    /// The body is larger than the limit (default 1 MiB, never more than the server's max_payload).
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// JetStream is unavailable; retry after `Retry-After` seconds with the same Idempotency-Key.
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    Unavailable(Problem),
    /// No PubAck in time: the outcome is unknown; retry with the same Idempotency-Key.
    #[response(status = 504, content_type = "application/problem+json")]
    Timeout(Problem),
}

/// Errors of `POST /v1/publish`.
#[derive(IntoResponses)]
pub enum BatchErrors {
    /// The body is not a JSON array or NDJSON of items, the batch is empty, or (atomic) an item is invalid or the stream refused the batch.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// (atomic) No stream captures the subject.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// (atomic) A precondition did not hold; nothing was stored.
    #[response(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(Problem),
    /// Too many messages or bytes in one request.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The Content-Type is neither JSON nor NDJSON.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// (atomic) The NATS server is older than 2.12.
    #[response(status = 501, content_type = "application/problem+json")]
    NotImplemented(Problem),
    /// JetStream is unavailable; retry later.
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    Unavailable(Problem),
    /// (atomic) No answer in time.
    #[response(status = 504, content_type = "application/problem+json")]
    Timeout(Problem),
}

/// Errors of `POST /v1/streams/{stream}/counters/{subject}`.
#[derive(IntoResponses)]
pub enum CounterErrors {
    /// Invalid name, subject or increment, the stream does not keep counters (`counters_not_enabled`) or does not capture the subject.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// The stream does not exist.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// JetStream is unavailable; retry after `Retry-After` seconds with the same Idempotency-Key.
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    Unavailable(Problem),
    /// No PubAck in time: the increment may or may not be applied; retry with the same Idempotency-Key.
    #[response(status = 504, content_type = "application/problem+json")]
    Timeout(Problem),
}

/// Errors of `PUT /v1/streams/{stream}/schedules/{subject}`.
#[derive(IntoResponses)]
pub enum ScheduleErrors {
    /// Invalid name, subject, time, interval, cron expression or time zone; the stream does not hold schedules (`schedules_not_enabled`) or does not capture the target.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No stream captures the schedule's subject.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The schedule's subject belongs to another stream than the one named; nothing was stored.
    #[response(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(Problem),
    /// The message is larger than the server accepts.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// JetStream is unavailable; retry later (a repeat replaces the schedule).
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    Unavailable(Problem),
    /// No answer in time: the schedule may or may not be stored; repeat the request (it replaces it).
    #[response(status = 504, content_type = "application/problem+json")]
    Timeout(Problem),
}

/// Errors of routes that read a stream or its messages.
#[derive(IntoResponses)]
pub enum ReadErrors {
    /// Invalid name, subject or parameter.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// The stream or message does not exist.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// JetStream is unavailable; retry later.
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    Unavailable(Problem),
    /// JetStream did not answer in time.
    #[response(status = 504, content_type = "application/problem+json")]
    Timeout(Problem),
}

/// Errors of routes that change a stream.
#[derive(IntoResponses)]
pub enum WriteErrors {
    /// Invalid name or configuration.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// The stream does not exist.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The change is incompatible with the existing stream, or its subjects overlap another stream's.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// JetStream is unavailable; retry later.
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    Unavailable(Problem),
    /// JetStream did not answer in time.
    #[response(status = 504, content_type = "application/problem+json")]
    Timeout(Problem),
}

/// Errors of `POST /v1/streams/{stream}/consumers/{consumer}/fetch`.
#[derive(IntoResponses)]
pub enum FetchErrors {
    /// Invalid name, body or bounds (`max_messages`, `max_bytes`, `wait`), or the next message is larger than `max_bytes`.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// The stream or consumer does not exist.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// Too many fetches are waiting on the consumer (`max_waiting`); retry after `Retry-After`.
    #[response(status = 429, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    TooMany(Problem),
    /// JetStream is unavailable; retry later.
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    Unavailable(Problem),
}

/// Errors of `POST /v1/acks` (before any ack is applied).
#[derive(IntoResponses)]
pub enum AckErrors {
    /// Malformed body, `delay` with an action other than `nak`, or an altered, forged or truncated ack id (nothing was applied).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// Too many acks in one request.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
}

/// Errors of the subscription routes (WebSocket and SSE), answered before the stream starts.
#[derive(IntoResponses)]
pub enum SubscribeErrors {
    /// Invalid parameter.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// Unknown stream or consumer.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// JetStream unavailable.
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    Unavailable(Problem),
}

/// Errors of the key-value routes that read.
#[derive(IntoResponses)]
pub enum KvReadErrors {
    /// Invalid bucket name, key, pattern or parameter.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// The bucket does not exist (`bucket_not_found`), or the key has no value (`key_not_found`: never written, deleted or purged).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// JetStream is unavailable; retry later.
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    Unavailable(Problem),
    /// JetStream did not answer in time.
    #[response(status = 504, content_type = "application/problem+json")]
    Timeout(Problem),
}

/// Errors of the key-value routes that write a key.
#[derive(IntoResponses)]
pub enum KvWriteErrors {
    /// Invalid bucket name, key, TTL or conditional header; a TTL on a bucket without `limit_marker_ttl`.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// The bucket does not exist.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// `If-Match` or `If-None-Match` did not hold: the detail says the key's current revision. Nothing was written.
    #[response(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(Problem),
    /// The value is larger than the body limit or the bucket's `max_value_size`.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// JetStream is unavailable; retry later.
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    Unavailable(Problem),
    /// No answer in time: the write may or may not be stored; read the key to see.
    #[response(status = 504, content_type = "application/problem+json")]
    Timeout(Problem),
}
