//! `POST /v1/publish/{subject}` (one message, raw body) and `POST /v1/publish` (a batch).

use axum::extract::{FromRequest, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::edge::extract::{Body, Path, Query};
use crate::edge::responses::{BatchErrors, PublishErrors};
use crate::error::{ApiError, Problem};
use crate::json::Object;
use crate::nats::publish::{Outgoing, Stored};
use crate::ops;
use crate::ops::names::Subject;
use crate::ops::publish::BatchItem;
use crate::state::AppState;

/// Request-header prefix whose headers are stored with the message (prefix removed).
pub const MSG_HEADER_PREFIX: &str = "x-msg-";
/// W3C trace-context headers stored as they are.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Where JetStream stored a message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"stream": "ORDERS", "seq": 42, "duplicate": false}))]
pub struct PublishResult {
    /// Stream that stored the message.
    pub stream: String,
    /// Its stream sequence.
    pub seq: u64,
    /// True when the `Idempotency-Key` was seen within the duplicate window: nothing new was
    /// stored and `seq` is the original message's.
    pub duplicate: bool,
}

impl From<Stored> for PublishResult {
    fn from(stored: Stored) -> Self {
        Self {
            stream: stored.stream,
            seq: stored.seq,
            duplicate: stored.duplicate,
        }
    }
}

/// Publish one message.
///
/// The body is stored byte-exact as the payload (it may be empty) and the request
/// `Content-Type` is stored as a header. A 2xx answer means JetStream acknowledged the message:
/// it is durable. `Idempotency-Key` becomes `Nats-Msg-Id`: a repeat within the stream's
/// duplicate window answers 200 with the original sequence and `duplicate: true`. Preconditions
/// use JetStream's own header names (`Nats-Expected-Stream`, `Nats-Expected-Last-Sequence`,
/// `Nats-Expected-Last-Subject-Sequence`, `Nats-Expected-Last-Msg-Id`) and fail with 412;
/// `Nats-TTL` (`30s`, `5m`, `never`) sets a per-message TTL. Headers named `X-Msg-<Name>` are
/// stored as `<Name>`; `traceparent` and `tracestate` are stored as they are. Any other `Nats-*`
/// header is refused. On 504 the outcome is unknown: retry with the same `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/v1/publish/{subject}",
    tag = "publish",
    operation_id = "publish_message",
    params(
        ("subject" = String, Path, description = "Subject to publish to (no wildcards)", example = "orders.new"),
        ("Idempotency-Key" = Option<String>, Header, description = "Deduplication key, stored as Nats-Msg-Id"),
        ("Nats-Expected-Stream" = Option<String>, Header, description = "Fail with 412 unless this stream stores the subject"),
        ("Nats-Expected-Last-Sequence" = Option<String>, Header, description = "Fail with 412 unless the stream's last sequence is this (a decimal number)", example = "41"),
        ("Nats-Expected-Last-Subject-Sequence" = Option<String>, Header, description = "Fail with 412 unless the subject's last sequence is this (a decimal number; 0: no message on the subject yet)", example = "7"),
        ("Nats-Expected-Last-Msg-Id" = Option<String>, Header, description = "Fail with 412 unless the stream's last Nats-Msg-Id is this"),
        ("Nats-TTL" = Option<String>, Header, description = "Per-message TTL such as 30s or 5m, or never (stream needs allow_msg_ttl)"),
    ),
    request_body(
        description = "The payload, stored byte-exact. Its Content-Type is stored with it (none \
            when the request has none; a wildcard such as `*/*` names no type and is not stored); \
            any type is accepted, the three listed are the usual ones.",
        content(
            (String = "application/octet-stream"),
            (String = "application/json"),
            (String = "text/plain"),
        )
    ),
    responses(
        (status = 201, description = "Stored", body = PublishResult,
            headers(("Location" = String, description = "URL of the stored message"))),
        (status = 200, description = "Duplicate of a message stored earlier with the same Idempotency-Key", body = PublishResult),
        PublishErrors,
    )
)]
pub async fn publish_message(
    State(state): State<AppState>,
    principal: Principal,
    Path(subject): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let subject = Subject::parse(subject)?;
    let stored = ops::publish::one(&state, &principal, &subject, body, |message| {
        apply_request_headers(message, &headers)
    })
    .await?;
    Ok(stored_response(stored))
}

/// 201 with `Location` for a new message, 200 for a duplicate.
fn stored_response(stored: Stored) -> Response {
    let status = if stored.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = format!("/v1/streams/{}/messages/{}", stored.stream, stored.seq);
    let mut response = (status, axum::Json(PublishResult::from(stored))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Maps HTTP request headers onto the message (see [`publish_message`]).
fn apply_request_headers(message: &mut Outgoing, headers: &HeaderMap) -> Result<(), ApiError> {
    for (name, value) in headers {
        let name = name.as_str(); // lowercase, as HTTP delivers it
        let mapped = name == "idempotency-key"
            || name == "content-type"
            || name.starts_with("nats-")
            || name.starts_with(MSG_HEADER_PREFIX)
            || TRACE_HEADERS.contains(&name);
        if !mapped {
            continue;
        }
        let value = value.to_str().map_err(|_| {
            ApiError::InvalidHeader(format!("header '{name}' must be visible ASCII"))
        })?;
        match name {
            "idempotency-key" => message.idempotency_key(value)?,
            "content-type" => message.content_type(value)?,
            _ if name.starts_with("nats-") => message.client_nats_header(name, value)?,
            _ if TRACE_HEADERS.contains(&name) => message.user_header(name, value)?,
            _ => {
                let stored = title_case(&name[MSG_HEADER_PREFIX.len()..]);
                if stored.is_empty() {
                    return Err(ApiError::InvalidHeader(format!(
                        "'{name}' names no header: use {MSG_HEADER_PREFIX}<Name>"
                    )));
                }
                message.user_header(&stored, value)?;
            }
        }
    }
    Ok(())
}

/// `order-type` → `Order-Type`: HTTP lowercases header names; NATS users expect this spelling.
pub fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Options of a batch publish.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchParams {
    /// Store all messages or none, with JetStream atomic batch publish (stream needs
    /// `allow_atomic: true`, nats-server 2.12+). At most 1000 messages, one stream.
    #[serde(default)]
    pub atomic: bool,
}

/// The outcome of one batch item.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ItemResult {
    /// Position of the item in the request (from 0).
    pub index: usize,
    /// The status this item would have had on its own: 201, 200 (duplicate) or an error status.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    /// Why this item was not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// Per-item results of a batch publish, in request order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "results": [
        {"index": 0, "status": 201, "stream": "ORDERS", "seq": 7, "duplicate": false},
        {"index": 1, "status": 400, "error": {"type": "urn:jetway:problem:invalid_subject",
            "title": "Invalid subject", "status": 400, "code": "invalid_subject",
            "detail": "invalid subject 'orders..x': it has an empty token (leading, trailing or double '.')"}}
    ],
    "stored": 1,
    "failed": 1
}))]
pub struct BatchResult {
    pub results: Vec<ItemResult>,
    /// Items stored (including duplicates).
    pub stored: usize,
    /// Items not stored.
    pub failed: usize,
}

/// Publish a batch of messages, or stream them.
///
/// The body is a JSON array of items, or NDJSON (one item per line) with
/// `Content-Type: application/x-ndjson`. Messages are published pipelined and each item gets its
/// own result, in order: the answer is 200 when every item was stored and 207 when some were
/// not; failures are never hidden. With `?atomic=true` the batch is stored all-or-nothing with
/// JetStream atomic batch publish; a failure then answers one problem and nothing is stored.
///
/// **Streaming:** an NDJSON body sent with `Accept: application/x-ndjson` is read as it
/// arrives, for as long as the client sends (no limit on lines or duration), and answered 200
/// at once with an NDJSON body: one `ItemResult` line per input line, in input order, each
/// written as soon as JetStream stored that line's message. A bad line gets its own error
/// result and the stream goes on. At most `--publish-stream-window` lines await their
/// acknowledgement; a line is at most `--max-batch-bytes`; a blank line keeps a quiet stream
/// open past `--body-idle-timeout`. The answer ends after the last line's result, once the
/// client has ended its body.
#[utoipa::path(
    post,
    path = "/v1/publish",
    tag = "publish",
    operation_id = "publish_batch",
    params(BatchParams),
    request_body(
        description = "JSON array of items, or NDJSON (application/x-ndjson) with one item per line",
        content(
            (Vec<BatchItem> = "application/json"),
            (String = "application/x-ndjson"),
        )
    ),
    responses(
        (status = 200, description = "Every item stored. (A streaming answer is \
            `application/x-ndjson`, one `ItemResult` per line; it is left out of the response \
            types so that generated clients keep one JSON result type.)", body = BatchResult),
        (status = 207, description = "Some items not stored; see each item's status and error", body = BatchResult),
        BatchErrors,
    )
)]
pub async fn publish_batch(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<BatchParams>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    if crate::server::streams_both_ways(&headers) {
        if params.atomic {
            return Err(ApiError::InvalidParameter(
                "atomic=true stores a bounded batch all-or-nothing and cannot stream: send the \
                 batch without 'Accept: application/x-ndjson', or stream without atomic"
                    .to_owned(),
            ));
        }
        return Ok(super::stream_publish::respond(
            state,
            principal,
            request.into_body(),
        ));
    }
    let Body(body) = Body::from_request(request, &state).await?;
    let items = parse_batch(&headers, &body, state.limits.max_batch_messages)?;
    let count = items.len();
    if params.atomic {
        let stored = ops::publish::atomic(&state, &principal, items).await?;
        let results: Vec<ItemResult> = stored
            .into_iter()
            .enumerate()
            .map(|(index, stored)| ok_item(index, stored))
            .collect();
        return Ok(axum::Json(BatchResult {
            results,
            stored: count,
            failed: 0,
        })
        .into_response());
    }
    let results: Vec<ItemResult> = ops::publish::batch(&state, &principal, items)
        .await?
        .into_iter()
        .enumerate()
        .map(|(index, result)| item_result(index, result))
        .collect();
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    let status = if failed == 0 {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok((
        status,
        axum::Json(BatchResult {
            results,
            stored: count - failed,
            failed,
        }),
    )
        .into_response())
}

/// The result of item `index`.
pub fn item_result(index: usize, result: Result<Stored, ApiError>) -> ItemResult {
    match result {
        Ok(stored) => ok_item(index, stored),
        Err(err) => ItemResult {
            index,
            status: err.status().as_u16(),
            stream: None,
            seq: None,
            duplicate: None,
            error: Some(err.problem()),
        },
    }
}

fn ok_item(index: usize, stored: Stored) -> ItemResult {
    ItemResult {
        index,
        status: if stored.duplicate { 200 } else { 201 },
        stream: Some(stored.stream),
        seq: Some(stored.seq),
        duplicate: Some(stored.duplicate),
        error: None,
    }
}

/// Splits a batch body into items; an item that does not parse keeps its error so that the
/// others are still published.
fn parse_batch(
    headers: &HeaderMap,
    body: &[u8],
    max: usize,
) -> Result<Vec<Result<BatchItem, ApiError>>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // Items are parsed straight from their text (no intermediate JSON tree), each on its own
    // so that one bad item does not sink the others.
    let parse_item = |text: &str| {
        serde_json::from_str::<Object<BatchItem>>(text)
            .map(|Object(item)| item)
            .map_err(|err| ApiError::InvalidBody(format!("invalid item: {err}")))
    };
    let items: Vec<Result<BatchItem, ApiError>> = match content_type.as_str() {
        ndjson if crate::server::is_ndjson(ndjson) => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::InvalidBody("NDJSON body is not UTF-8".to_owned()))?;
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            check_count(lines.len(), max)?;
            lines.into_iter().map(parse_item).collect()
        }
        "application/json" | "" => {
            let values: Vec<&serde_json::value::RawValue> =
                serde_json::from_slice(body).map_err(|err| {
                    ApiError::InvalidBody(format!("body must be a JSON array of messages: {err}"))
                })?;
            check_count(values.len(), max)?;
            values
                .into_iter()
                .map(|raw| parse_item(raw.get()))
                .collect()
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type '{other}' is not accepted here: send a JSON array (application/json) \
                 or NDJSON (application/x-ndjson)"
            )));
        }
    };
    Ok(items)
}

fn check_count(count: usize, max: usize) -> Result<(), ApiError> {
    if count == 0 {
        return Err(ApiError::InvalidBody("the batch is empty".to_owned()));
    }
    if count > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "the batch has {count} messages; at most {max} are accepted per request"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_cases_header_names() {
        assert_eq!(title_case("order-type"), "Order-Type");
        assert_eq!(title_case("x"), "X");
    }
}
