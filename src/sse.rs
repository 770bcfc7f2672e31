//! Server-Sent Events: `GET /v1/streams/{stream}/events`, the same replay as the WebSocket
//! bridge, for `curl -N` and the browser's `EventSource`.
//!
//! Every message is an event with `id: <seq>`, so a reconnecting `EventSource` sends
//! `Last-Event-ID` and resumes at the next sequence. Flow control is the connection itself: the
//! replay pulls from JetStream only as fast as the client reads.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};

use crate::auth::{ConnectionSlot, Principal};
use crate::edge::extract::{Path, SubscribeTo};
use crate::edge::responses::SubscribeErrors;
use crate::error::ApiError;
use crate::ops;
use crate::ops::authz::ConsumerGrants;
use crate::ops::feed::{Event, Tail};
use crate::ops::names::BucketName;
use crate::ops::subscribe::SubscriptionQuery;
use crate::state::AppState;

/// The SSE route, with its OpenAPI entry.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(stream_events))
        .routes(utoipa_axum::routes!(kv_events))
}

/// Replay and live-tail a stream as Server-Sent Events.
///
/// Same options as the WebSocket endpoint (`deliver`, `start_seq`, `start_time`, `filter`,
/// `consumer`, `encoding`). Each message is an event whose `data` is the message JSON and whose
/// `id` is its stream sequence; `Last-Event-ID` (sent by `EventSource` on reconnect) resumes
/// after that sequence. `event: caught_up` and `event: gap` carry `{"seq":N}` and
/// `{"from":A,"to":B}`. Comment lines keep idle connections open.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/events",
    tag = "streaming",
    operation_id = "stream_events",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this stream sequence"),
        SubscriptionQuery,
    ),
    responses(
        (status = 200, description = "An endless text/event-stream", content_type = "text/event-stream", body = String),
        SubscribeErrors,
    )
)]
pub async fn stream_events(
    State(state): State<AppState>,
    principal: Principal,
    SubscribeTo(stream, mut params): SubscribeTo,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if params.binary {
        return Err(ApiError::InvalidParameter(
            "encoding=binary frames messages as WebSocket binary messages; SSE carries text: \
             use encoding=auto or base64, or the WebSocket route"
                .to_owned(),
        ));
    }
    // With a durable consumer the consumer keeps its own position: a resume just reconnects.
    let last_event_id = headers
        .get("last-event-id")
        .filter(|_| params.consumer.is_none());
    if let Some(last) = last_event_id {
        let last: u64 = last
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                ApiError::InvalidHeader("Last-Event-ID must be a stream sequence".to_owned())
            })?;
        // A resume overrides the original start position.
        params.deliver = None;
        params.start_time = None;
        params.start_seq = Some(last.checked_add(1).ok_or_else(|| {
            ApiError::InvalidHeader("Last-Event-ID is past the largest sequence".to_owned())
        })?);
    }
    if params.credit.is_some() {
        return Err(ApiError::InvalidParameter(
            "credit is a WebSocket option; SSE flows as fast as the client reads".to_owned(),
        ));
    }
    let slot = state.connections.acquire(&principal.id)?;
    let mut grants = ConsumerGrants::default();
    let replay =
        ops::subscribe::subscribe(&state, &principal, &stream, &params, &mut grants).await?;
    let events = events(state.clone(), replay, slot);
    Ok(Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(state.config.sse_keepalive)
                .text("keep-alive"),
        )
        .into_response())
}

/// Watch keys of a key-value bucket as Server-Sent Events.
///
/// Each entry is an event whose `data` is the entry JSON (`bucket`, `key`, `revision`,
/// `operation`: put, delete or purge, `created`, and for a put `value` and `encoding`) and whose
/// `id` is its revision; `Last-Event-ID` (sent by `EventSource` on reconnect) resumes after that
/// revision. By default the latest revision of every matching key comes first, then
/// `event: caught_up`, then every change as it is written. Needs `kv_read` on the bucket.
#[utoipa::path(
    get,
    path = "/v1/kv/{bucket}/events",
    tag = "streaming",
    operation_id = "kv_events",
    params(
        ("bucket" = String, Path, description = "Bucket name", example = "flags"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this revision"),
        ops::kv::WatchQuery,
    ),
    responses(
        (status = 200, description = "An endless text/event-stream", content_type = "text/event-stream", body = String),
        SubscribeErrors,
    )
)]
pub async fn kv_events(
    State(state): State<AppState>,
    principal: Principal,
    Path(bucket): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let bucket = BucketName::parse(bucket)?;
    let mut watch = ops::kv::Watch::parse(uri.query())?;
    if watch.credit.is_some() {
        return Err(ApiError::InvalidParameter(
            "credit is a WebSocket option; SSE flows as fast as the client reads".to_owned(),
        ));
    }
    if let Some(last) = headers.get("last-event-id") {
        let last: u64 = last
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                ApiError::InvalidHeader("Last-Event-ID must be a revision".to_owned())
            })?;
        watch.from = ops::kv::WatchFrom::Revision(last.checked_add(1).ok_or_else(|| {
            ApiError::InvalidHeader("Last-Event-ID is past the largest revision".to_owned())
        })?);
    }
    let slot = state.connections.acquire(&principal.id)?;
    let tail = ops::kv::watch(
        &state,
        &principal,
        &bucket,
        watch.pattern.as_ref(),
        watch.from,
        watch.encoding,
    )
    .await?;
    Ok(Sse::new(events(state.clone(), tail, slot))
        .keep_alive(
            KeepAlive::new()
                .interval(state.config.sse_keepalive)
                .text("keep-alive"),
        )
        .into_response())
}

/// The event stream: ends after an error event, or at shutdown.
fn events(
    state: AppState,
    replay: Tail,
    slot: ConnectionSlot,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let guard = (state.metrics.sse_connection(), slot);
    let batch = state.config.replay_batch;
    let shutdown = state.shutdown.clone();
    stream::unfold(Some((replay, guard)), move |current| {
        let shutdown = shutdown.clone();
        let metrics = state.metrics.clone();
        async move {
            let (mut replay, guard) = current?;
            let next = tokio::select! {
                () = shutdown.cancelled() => return None,
                next = replay.next(batch) => next,
            };
            let event = match next {
                Ok(Event::Message(shown)) => {
                    metrics.sse_sent();
                    // Rendered once per message (per feed when shared).
                    SseEvent::default()
                        .id(shown.seq.to_string())
                        .data(&shown.json)
                }
                Ok(Event::CaughtUp { seq }) => SseEvent::default()
                    .event("caught_up")
                    .data(serde_json::json!({ "seq": seq }).to_string()),
                Ok(Event::Gap { from, to }) => SseEvent::default()
                    .event("gap")
                    .data(serde_json::json!({ "from": from, "to": to }).to_string()),
                Err(err) => {
                    let problem = serde_json::to_string(&err.problem()).unwrap_or_default();
                    // The last event: the client reconnects (EventSource does) and resumes.
                    return Some((Ok(SseEvent::default().event("error").data(problem)), None));
                }
            };
            Some((Ok(event), Some((replay, guard))))
        }
    })
}
