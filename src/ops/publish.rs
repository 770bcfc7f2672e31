//! Publishing: one message, a pipelined batch with a result per item, or an atomic batch.
//! Every message passes the same rules here: a publishable subject, the caller's publish grant,
//! the tenant namespace, the per-principal publish rate, and a metric per outcome.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::names::Subject;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::nats::publish::{InFlight, Outgoing, Stored};
use crate::state::AppState;

/// One message of a batch. Give `data` (any JSON; a string is stored as its UTF-8 text, any
/// other value as compact JSON with `Content-Type: application/json`) or `data_base64`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"subject": "orders.new", "data": {"id": 1}, "idempotency_key": "order-1"}))]
pub struct BatchItem {
    pub subject: String,
    /// Any JSON value: a string is stored as its UTF-8 text, anything else as compact JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Headers stored with the message (not `Nats-*`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_stream: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expected_last_sequence: Option<u64>,
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expected_last_subject_sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_last_msg_id: Option<String>,
    /// Per-message TTL such as `30s`, or `never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

impl BatchItem {
    /// The message this item describes, validated.
    pub fn into_outgoing(mut self) -> Result<Outgoing, ApiError> {
        let data = match self.data.take() {
            None => None,
            Some(serde_json::Value::String(text)) => Some(ItemData::Text(Bytes::from(text))),
            Some(value) => Some(ItemData::Json(Bytes::from(
                serde_json::to_vec(&value).map_err(|e| ApiError::internal("encode data", e))?,
            ))),
        };
        self.as_ref(data).into_outgoing()
    }

    /// The item with its `data` already rendered.
    fn as_ref(&self, data: Option<ItemData>) -> ItemRef<'_> {
        ItemRef {
            subject: &self.subject,
            data,
            data_base64: self.data_base64.as_deref(),
            content_type: self.content_type.as_deref(),
            headers: &self.headers,
            idempotency_key: self.idempotency_key.as_deref(),
            expected_stream: self.expected_stream.as_deref(),
            expected_last_sequence: self.expected_last_sequence,
            expected_last_subject_sequence: self.expected_last_subject_sequence,
            expected_last_msg_id: self.expected_last_msg_id.as_deref(),
            ttl: self.ttl.as_deref(),
        }
    }
}

/// A [`BatchItem`]'s `data`, rendered as the payload it stands for.
#[derive(Debug, Clone)]
pub enum ItemData {
    /// A string: its UTF-8 text.
    Text(Bytes),
    /// Any other JSON value, compact (stored with `Content-Type: application/json` unless the
    /// item names another).
    Json(Bytes),
}

/// A [`BatchItem`] borrowed from wherever a transport read it (a WebSocket `publish` op reads
/// its strings in place): the same fields, checked by the same rules.
#[derive(Debug, Clone)]
pub struct ItemRef<'a> {
    pub subject: &'a str,
    pub data: Option<ItemData>,
    pub data_base64: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub headers: &'a std::collections::BTreeMap<String, String>,
    pub idempotency_key: Option<&'a str>,
    pub expected_stream: Option<&'a str>,
    pub expected_last_sequence: Option<u64>,
    pub expected_last_subject_sequence: Option<u64>,
    pub expected_last_msg_id: Option<&'a str>,
    pub ttl: Option<&'a str>,
}

impl<'a> ItemRef<'a> {
    /// An item to `subject` with `headers` and nothing else.
    pub fn new(subject: &'a str, headers: &'a std::collections::BTreeMap<String, String>) -> Self {
        Self {
            subject,
            data: None,
            data_base64: None,
            content_type: None,
            headers,
            idempotency_key: None,
            expected_stream: None,
            expected_last_sequence: None,
            expected_last_subject_sequence: None,
            expected_last_msg_id: None,
            ttl: None,
        }
    }

    /// The message this item describes, validated, to the subject as it is.
    fn into_outgoing(self) -> Result<Outgoing, ApiError> {
        self.to_subject(self.subject.to_owned())
    }

    /// The message this item describes, validated, to `subject`.
    fn to_subject(&self, subject: String) -> Result<Outgoing, ApiError> {
        let mut content_type = self.content_type;
        let payload = match (&self.data, self.data_base64) {
            (Some(_), Some(_)) => {
                return Err(ApiError::InvalidBody(
                    "give 'data' or 'data_base64', not both".to_owned(),
                ));
            }
            (None, None) => Bytes::new(),
            (None, Some(encoded)) => Bytes::from(BASE64.decode(encoded.trim()).map_err(|err| {
                ApiError::InvalidBody(format!("'data_base64' is not valid base64: {err}"))
            })?),
            (Some(ItemData::Text(text)), None) => text.clone(),
            (Some(ItemData::Json(json)), None) => {
                content_type.get_or_insert("application/json");
                json.clone()
            }
        };
        let mut message = Outgoing::from_subject(subject, payload)?;
        if let Some(content_type) = content_type {
            message.content_type(content_type)?;
        }
        for (name, value) in self.headers {
            message.user_header(name, value)?;
        }
        if let Some(key) = self.idempotency_key {
            message.idempotency_key(key)?;
        }
        if let Some(stream) = self.expected_stream {
            message.expected_stream(stream)?;
        }
        if let Some(seq) = self.expected_last_sequence {
            message.expected_last_sequence(seq)?;
        }
        if let Some(seq) = self.expected_last_subject_sequence {
            message.expected_last_subject_sequence(seq)?;
        }
        if let Some(id) = self.expected_last_msg_id {
            message.expected_last_msg_id(id)?;
        }
        if let Some(ttl) = self.ttl {
            message.ttl(ttl)?;
        }
        Ok(message)
    }
}

/// Publishes one message to `subject` with `payload`; `decorate` adds what the transport carries
/// besides the payload (headers, idempotency key, preconditions).
pub async fn one(
    state: &AppState,
    who: &Principal,
    subject: &Subject,
    payload: Bytes,
    decorate: impl FnOnce(&mut Outgoing) -> Result<(), ApiError>,
) -> Result<Stored, ApiError> {
    who.check_publish(subject)?;
    let limit = state.limits.body_limit(state.nats.max_payload());
    if payload.len() > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "request body of {} bytes is larger than this route accepts ({limit} bytes: \
             --max-body-bytes, never more than the NATS server's max_payload)",
            payload.len()
        )));
    }
    let mut message = Outgoing::new(&who.subject_in(subject), payload)?;
    state.publish_limiter.check(&who.id, 1)?;
    decorate(&mut message)?;
    send(state, message).await
}

/// Checks one batch item as a single publish is checked, and builds its message in the
/// caller's namespace.
pub fn authorize_item(who: &Principal, mut item: BatchItem) -> Result<Outgoing, ApiError> {
    let subject = Subject::parse(std::mem::take(&mut item.subject))?;
    who.check_publish(&subject)?;
    item.subject = who.subject_in(&subject);
    item.into_outgoing()
}

/// Checks one item of a long-lived session (WebSocket `publish`) as [`authorize_item`] does,
/// counted against the caller's publish rate, and builds its message; [`start`] sends it.
pub fn prepare_item(
    state: &AppState,
    who: &Principal,
    item: &ItemRef<'_>,
) -> Result<Outgoing, ApiError> {
    let subject = Subject::parse(item.subject)?;
    who.check_publish(&subject)?;
    let message = item.to_subject(who.subject_in(&subject))?;
    state.publish_limiter.check(&who.id, 1)?;
    Ok(message)
}

/// A long-lived session's publishes (WebSocket `publish` ops) in flight: messages prepared with
/// [`prepare_item`] are sent in order, and their answers come back, each with the caller's tag,
/// as their PubAcks arrive; every outcome is counted as a single publish's is.
pub struct Pipeline<T> {
    state: AppState,
    inner: crate::nats::pipeline::Pipeline<T>,
}

impl<T: Send + 'static> Pipeline<T> {
    pub fn new(state: &AppState) -> Self {
        Self {
            inner: crate::nats::pipeline::Pipeline::new(&state.nats),
            state: state.clone(),
        }
    }

    /// Publishes whose answer was not taken yet.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Nothing in flight and no answer left to take.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Sends a prepared message without waiting for its PubAck.
    pub async fn send(&mut self, message: Outgoing, tag: T) {
        self.inner.send(message, tag).await;
    }

    /// The next answer, `None` when nothing is in flight. Cancel-safe.
    pub async fn next(&mut self) -> Option<(T, Result<Stored, ApiError>)> {
        let (tag, result) = self.inner.next().await?;
        self.state.metrics.publish(outcome(&result));
        Some((tag, result))
    }
}

/// Sends a prepared message without waiting for its PubAck: messages started one after the
/// other are stored in that order. [`settle`] awaits the answer.
pub async fn start(state: &AppState, message: Outgoing) -> InFlight {
    state.nats.send_one(message).await
}

/// Awaits the PubAck of a message sent with [`start`] and records its outcome.
pub async fn settle(state: &AppState, in_flight: InFlight) -> Result<Stored, ApiError> {
    let stored = state.nats.settle(in_flight).await;
    state.metrics.publish(outcome(&stored));
    stored
}

/// Publishes a prepared message and records its outcome.
pub async fn send(state: &AppState, message: Outgoing) -> Result<Stored, ApiError> {
    let stored = state.nats.publish(message).await;
    state.metrics.publish(outcome(&stored));
    stored
}

/// Publishes a batch pipelined: one result per item, in order. An item that did not parse
/// keeps its error and the others are still published.
pub async fn batch(
    state: &AppState,
    who: &Principal,
    items: Vec<Result<BatchItem, ApiError>>,
) -> Result<Vec<Result<Stored, ApiError>>, ApiError> {
    state
        .publish_limiter
        .check(&who.id, u32::try_from(items.len()).unwrap_or(u32::MAX))?;
    let outgoing = items
        .into_iter()
        .map(|item| item.and_then(|item| authorize_item(who, item)))
        .collect();
    let results = state.nats.publish_all(outgoing).await;
    for result in &results {
        state.metrics.publish(outcome(result));
    }
    Ok(results)
}

/// Publishes a batch all-or-nothing (JetStream atomic batch publish): any invalid or refused
/// item refuses the batch, naming it.
pub async fn atomic(
    state: &AppState,
    who: &Principal,
    items: Vec<Result<BatchItem, ApiError>>,
) -> Result<Vec<Stored>, ApiError> {
    state
        .publish_limiter
        .check(&who.id, u32::try_from(items.len()).unwrap_or(u32::MAX))?;
    let messages = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            item.and_then(|item| authorize_item(who, item))
                .map_err(|err| match err {
                    ApiError::Forbidden(why) => ApiError::Forbidden(format!("item {index}: {why}")),
                    other => ApiError::InvalidBody(format!("item {index}: {other}")),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let stored = state.nats.publish_atomic(messages).await;
    match &stored {
        Ok(all) => all.iter().for_each(|_| state.metrics.publish("stored")),
        Err(err) => state.metrics.publish(err.code()),
    }
    stored
}

/// Publishes an endless series of items (a streaming publish) pipelined, with at most `window`
/// awaiting their PubAck, and yields one result per item in input order as the PubAcks arrive.
///
/// Items are checked and sent one after the other, in their order, so JetStream stores them in
/// that order; only a message JetStream asks to have sent again (its stream had no leader for
/// a moment) may be stored after later ones. The items are read only as fast as results make
/// room, so a slow JetStream slows the sender down; so does the publish rate (it waits instead
/// of refusing a line). An item that arrives after the caller's token expired is refused with
/// 401, as is every later one.
pub fn stream<S>(
    state: AppState,
    who: Principal,
    items: S,
    window: usize,
) -> impl futures::Stream<Item = Result<Stored, ApiError>> + Send + 'static
where
    S: futures::Stream<Item = Result<BatchItem, ApiError>> + Send + 'static,
{
    use futures::StreamExt;
    /// What the pipeline keeps between two results.
    struct Pipe<S> {
        items: std::pin::Pin<Box<S>>,
        /// Sent (or refused) items, oldest first, their results still to be given.
        queue: std::collections::VecDeque<Result<InFlight, ApiError>>,
        ended: bool,
    }
    let window = window.max(1);
    let pipe = Pipe {
        items: Box::pin(items),
        queue: std::collections::VecDeque::with_capacity(window.min(1024)),
        ended: false,
    };
    // One result per step: the oldest item's, while later items are read and sent as long as
    // the window has room. Only the oldest PubAck is awaited; the later ones are stored on
    // their way in the meantime.
    futures::stream::unfold(pipe, move |mut pipe| {
        let state = state.clone();
        let who = who.clone();
        async move {
            let oldest = match pipe.queue.pop_front() {
                Some(oldest) => oldest,
                None if pipe.ended => return None,
                None => begin(&state, &who, pipe.items.next().await?).await,
            };
            let result = async {
                match oldest {
                    Ok(in_flight) => settle(&state, in_flight).await,
                    Err(err) => Err(err),
                }
            };
            tokio::pin!(result);
            loop {
                let room = !pipe.ended && pipe.queue.len() + 1 < window;
                tokio::select! {
                    biased;
                    result = &mut result => return Some((result, pipe)),
                    item = pipe.items.next(), if room => match item {
                        Some(item) => {
                            let started = begin(&state, &who, item).await;
                            pipe.queue.push_back(started);
                        }
                        None => pipe.ended = true,
                    },
                }
            }
        }
    })
}

/// Checks and sends one item of a stream (see [`stream`]).
async fn begin(
    state: &AppState,
    who: &Principal,
    item: Result<BatchItem, ApiError>,
) -> Result<InFlight, ApiError> {
    if who.expired() {
        return Err(ApiError::Unauthorized(
            "the token expired while the request was streaming; reconnect with a fresh one"
                .to_owned(),
        ));
    }
    let message = authorize_item(who, item?)?;
    state.publish_limiter.wait(&who.id).await;
    Ok(start(state, message).await)
}

/// The metrics label of a publish result.
fn outcome(result: &Result<Stored, ApiError>) -> &'static str {
    match result {
        Ok(stored) if stored.duplicate => "duplicate",
        Ok(_) => "stored",
        Err(err) => err.code(),
    }
}
