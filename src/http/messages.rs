//! Reading stored messages without a consumer (by sequence, last on a subject, or a page), and
//! deleting one.

use async_nats::jetstream::message::StreamMessage;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::publish::MSG_HEADER_PREFIX;
use crate::auth::Principal;
use crate::edge::extract::{Json, Path, Query};
use crate::edge::responses::{ReadErrors, WriteErrors};
use crate::error::ApiError;
use crate::message::{EncodingChoice, Message};
use crate::ops;
use crate::ops::messages::PageQuery;
use crate::ops::names::StreamName;
use crate::state::AppState;
use crate::timestamp::format_time;

/// How to encode `data`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EncodingParams {
    /// `auto` (JSON, text or base64, whichever is lossless) or `base64` (always).
    #[serde(default)]
    pub encoding: EncodingChoice,
}

/// Which subject's last message.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LastParams {
    /// Subject (wildcards allowed: the newest message on any matching subject).
    pub subject: String,
    #[serde(default)]
    pub encoding: EncodingChoice,
}

/// Where a page starts and what it holds.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// First sequence to return (at least 1, default 1). Not with `start_time`.
    pub start_seq: Option<u64>,
    /// Return messages stored at or after this RFC 3339 time (1971 to 2261). Not with
    /// `start_seq`.
    pub start_time: Option<String>,
    /// Only messages on this subject (wildcards allowed).
    pub subject: Option<String>,
    /// Most messages to return (default 100, at most the server's configured maximum, 1000 by default).
    pub limit: Option<usize>,
    #[serde(default)]
    pub encoding: EncodingChoice,
}

/// A page of stored messages.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// Pass as `start_seq` for the next page; `null` when this page reached the end of the stream.
    pub next_seq: Option<u64>,
}

/// Does the client ask for the raw payload?
pub(super) fn wants_raw(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/octet-stream"))
}

/// The payload as the body; metadata and stored headers as response headers.
fn raw_response(stream: &str, message: &StreamMessage, principal: &Principal) -> Response {
    let mut headers = HeaderMap::new();
    let mut put = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    };
    put("jetway-stream", stream);
    put("jetway-seq", &message.sequence.to_string());
    put("jetway-subject", principal.shown(message.subject.as_str()));
    put("jetway-time", &format_time(message.time));
    let mut content_type = "application/octet-stream".to_owned();
    for (name, values) in message.headers.iter() {
        let name = name.to_string();
        for value in values {
            if name.eq_ignore_ascii_case("content-type") {
                content_type = value.as_str().to_owned();
            } else {
                put(&format!("{MSG_HEADER_PREFIX}{name}"), value.as_str());
            }
        }
    }
    put("content-type", &content_type);
    (headers, message.payload.clone()).into_response()
}

/// Get a message by sequence.
///
/// Answers the JSON representation, or with `Accept: application/octet-stream` the payload
/// byte-exact with `Content-Type` as stored, `Jetway-Stream`, `Jetway-Seq`, `Jetway-Subject`,
/// `Jetway-Time` and each stored header as `X-Msg-<Name>`. Reads go through the stream leader,
/// so a message is readable as soon as its publish was acknowledged.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/messages/{seq}",
    tag = "messages",
    operation_id = "get_message",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("seq" = u64, Path, description = "Stream sequence", example = 1),
        EncodingParams,
    ),
    responses(
        (status = 200, description = "The message: its JSON representation, or with \
            `Accept: application/octet-stream` the payload byte-exact under the Content-Type it \
            was stored with (`application/octet-stream` when it has none), metadata in the \
            `Jetway-*` headers and stored headers as `X-Msg-<Name>`", content(
            (Message = "application/json"),
            (Vec<u8> = "application/octet-stream"),
            (String = "text/plain"),
        )),
        ReadErrors,
    )
)]
pub async fn get_message(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, seq)): Path<(String, u64)>,
    Query(params): Query<EncodingParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let stream = StreamName::parse(stream)?;
    let message = ops::messages::get(&state, &principal, &stream, seq).await?;
    Ok(message_response(
        &stream,
        &message,
        params.encoding,
        &principal,
        &headers,
    ))
}

/// Whether to erase a deleted message's bytes.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// `true`: JetStream overwrites the message's stored bytes with random data before freeing
    /// them (secure erase; slower). `false` (default): the message is removed from the stream
    /// at once and its bytes are reclaimed when the store compacts.
    #[serde(default)]
    pub erase: bool,
}

/// Delete a message.
///
/// Removes the message at `seq` from the stream, for data-protection requests. Administrators
/// only. With `erase=true` JetStream also overwrites its stored bytes. The sequence is not
/// reused; reads of it answer 404 from then on, consumers skip it. A tenant deletes only
/// messages in its namespace (others answer 404 and stay). A stream with `deny_delete` or a
/// sealed stream answers 409.
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}/messages/{seq}",
    tag = "messages",
    operation_id = "delete_message",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("seq" = u64, Path, description = "Stream sequence", example = 1),
        DeleteParams,
    ),
    responses((status = 204, description = "Deleted"), WriteErrors)
)]
pub async fn delete_message(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, seq)): Path<(String, u64)>,
    Query(params): Query<DeleteParams>,
) -> Result<StatusCode, ApiError> {
    let stream = StreamName::parse(stream)?;
    ops::messages::delete(&state, &principal, &stream, seq, params.erase).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Get the last message on a subject.
///
/// The newest stored message on `subject` (wildcards match the newest on any matching subject).
/// Like get-by-sequence, `Accept: application/octet-stream` answers the raw payload.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/messages/last",
    tag = "messages",
    operation_id = "get_last_message",
    params(("stream" = String, Path, description = "Stream name", example = "ORDERS"), LastParams),
    responses(
        (status = 200, description = "The message: its JSON representation, or with \
            `Accept: application/octet-stream` the payload byte-exact under the Content-Type it \
            was stored with (`application/octet-stream` when it has none), metadata in the \
            `Jetway-*` headers and stored headers as `X-Msg-<Name>`", content(
            (Message = "application/json"),
            (Vec<u8> = "application/octet-stream"),
            (String = "text/plain"),
        )),
        ReadErrors,
    )
)]
pub async fn get_last_message(
    State(state): State<AppState>,
    principal: Principal,
    Path(stream): Path<String>,
    Query(params): Query<LastParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let stream = StreamName::parse(stream)?;
    let message = ops::messages::last(&state, &principal, &stream, &params.subject).await?;
    Ok(message_response(
        &stream,
        &message,
        params.encoding,
        &principal,
        &headers,
    ))
}

/// The message as JSON, or its raw payload when the client accepts `application/octet-stream`.
fn message_response(
    stream: &str,
    message: &StreamMessage,
    encoding: EncodingChoice,
    principal: &Principal,
    headers: &HeaderMap,
) -> Response {
    if wants_raw(headers) {
        return raw_response(stream, message, principal);
    }
    Json(ops::messages::present(principal, stream, message, encoding)).into_response()
}

/// List stored messages.
///
/// A page of messages in stream order from `start_seq` (default 1) or `start_time`, optionally
/// only on `subject`. Continue with `start_seq = next_seq` until `next_seq` is `null`.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/messages",
    tag = "messages",
    operation_id = "list_messages",
    params(("stream" = String, Path, description = "Stream name", example = "ORDERS"), PageParams),
    responses((status = 200, description = "A page of messages", body = MessagePage), ReadErrors)
)]
pub async fn list_messages(
    State(state): State<AppState>,
    principal: Principal,
    Path(stream): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<Json<MessagePage>, ApiError> {
    let stream = StreamName::parse(stream)?;
    let query = PageQuery {
        start_seq: params.start_seq,
        start_time: params.start_time,
        subject: params.subject,
        limit: params.limit,
    };
    let page = ops::messages::page(&state, &principal, &stream, &query).await?;
    Ok(Json(MessagePage {
        messages: page
            .messages
            .iter()
            .map(|m| ops::messages::present(&principal, &stream, m, params.encoding))
            .collect(),
        next_seq: page.next_seq,
    }))
}
