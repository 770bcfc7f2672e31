//! The WebSocket bridge: `GET /v1/streams/{stream}/ws` (one subscription per socket) and
//! `GET /v1/ws` (multiplexed protocol). Each client op is a call into the operations core
//! ([`crate::ops`]); this module owns the socket: framing, credit, the byte budget, timeouts.
//!
//! One session per socket: a writer task owns the socket's sending half and drains a queue of
//! frames; the session loop reads client frames; each subscription runs as a task that pulls
//! from its [`Tail`] only while the client has credit and the socket's byte budget has room.
//! The budget is a semaphore of `--ws-max-buffered-bytes` permits: a frame holds its size in
//! permits from the moment it is queued until it is written, so a client that stops reading
//! stops its subscriptions and never grows the gateway's memory.

pub mod kv;
pub mod protocol;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{
    CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code,
};
use axum::response::Response;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::auth::{ConnectionSlot, Principal};
use crate::edge::extract::SubscribeTo;
use crate::edge::responses::SubscribeErrors;
use crate::error::ApiError;
use crate::metrics::GaugeGuard;
use crate::ops;
use crate::ops::authz::ConsumerGrants;
use crate::ops::feed::{Event, Tail};
use crate::ops::names::StreamName;
use crate::ops::publish::{ItemData, ItemRef};
use crate::ops::subscribe::{Subscription, SubscriptionQuery};
use crate::state::AppState;
use protocol::{ClientOp, PublishData, PublishOp, ServerFrame};

/// A publish whose PubAck arrived (or failed): the op's id and the outcome.
type Settled = (String, Result<crate::nats::publish::Stored, ApiError>);

/// Most frames queued for the writer at once (publish answers, or messages at hand).
const FRAMES_PER_PUSH: usize = 64;

/// Bytes of frames a socket gathers before writing them out (flushed as soon as its queue is
/// empty, so a lone frame is never held back).
const WRITE_BUFFER: usize = 64 * 1024;

/// The WebSocket routes, with their OpenAPI entries: one stream, and the multiplexed socket.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(stream_websocket))
        .routes(utoipa_axum::routes!(multiplexed_websocket))
        .routes(utoipa_axum::routes!(kv::kv_websocket))
}

/// Initial read buffer of a WebSocket.
const READ_BUFFER: usize = 4 * 1024;

/// Most publishes and acks of one socket in flight at once; further ops wait.
const MAX_INFLIGHT_OPS: usize = 256;

fn configure(ws: WebSocketUpgrade, state: &AppState) -> WebSocketUpgrade {
    let max_in = usize::try_from(state.config.ws_max_message_bytes).unwrap_or(usize::MAX);
    // Browsers pass the token as a `bearer.<token>` protocol next to `jetway.v1`; the server
    // must select one protocol the client offered, and selects `jetway.v1`.
    ws.protocols(["jetway.v1"])
        // Idle sockets are the common case: start the read buffer small (it grows for big
        // frames) instead of tungstenite's 128 KiB per connection.
        .read_buffer_size(READ_BUFFER)
        .max_message_size(max_in)
        .max_frame_size(max_in)
        .write_buffer_size(WRITE_BUFFER)
}

/// Replay and live-tail one stream over a WebSocket.
///
/// Query: `deliver` (`all`, `last`, `new`, `last_per_subject`) or `start_seq` or `start_time`
/// (RFC 3339); `filter` (repeatable or comma-separated, wildcards allowed); `consumer` for ack
/// mode; `encoding=base64`, or `encoding=binary` for binary `msg` frames carrying the payload as it
/// is; `credit` for explicit flow control. Every server frame is JSON text
/// with a `type`: `msg`, `caught_up`, `gap`, `ack_result`, `error`, `pong`. The client may send
/// `ack`/`nak`/`term`/`progress`, `credit` and `ping` ops. An unknown stream or consumer answers
/// 404 before the upgrade. See docs/websocket.md.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/ws",
    tag = "streaming",
    operation_id = "stream_websocket",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        SubscriptionQuery,
        ("credit" = Option<u64>, Query, description = "Initial credit: messages sent before the client grants more"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol (frames: openapi/asyncapi.yaml)"),
        (status = 426, description = "Not a WebSocket upgrade request", body = crate::error::Problem, content_type = "application/problem+json"),
        SubscribeErrors,
    )
)]
pub async fn stream_websocket(
    State(state): State<AppState>,
    principal: Principal,
    SubscribeTo(stream, subscription): SubscribeTo,
    headers: axum::http::HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(upgrade_required)?;
    crate::auth::check_origin(&headers, &state.config.cors_origin)?;
    let slot = state.connections.acquire(&principal.id)?;
    let mut grants = ConsumerGrants::default();
    let replay =
        ops::subscribe::subscribe(&state, &principal, &stream, &subscription, &mut grants).await?;
    let credit = subscription.credit;
    let tasks = state.tasks.clone();
    Ok(configure(ws, &state).on_upgrade(move |socket| {
        tasks.track_future(async move {
            let mut session = Session::new(state, socket, true, principal, slot);
            session.grants = grants;
            session.add_subscription(None, replay, credit);
            session.run().await;
        })
    }))
}

/// Multiplexed WebSocket: many subscriptions, acks and publishes on one socket.
///
/// Client ops (JSON text with an `op`): `subscribe`, `unsubscribe`, `ack`, `nak`, `term`,
/// `progress`, `credit`, `publish`, `ping`, `close`. Server frames (JSON text with a `type`):
/// `msg`, `caught_up`, `gap`, `subscribed`, `unsubscribed`, `ack_result`, `publish_ack`, `error`,
/// `pong`. The protocol is in docs/websocket.md and openapi/asyncapi.yaml.
#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "streaming",
    operation_id = "multiplexed_websocket",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol (frames: openapi/asyncapi.yaml)"),
        (status = 426, description = "Not a WebSocket upgrade request", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn multiplexed_websocket(
    State(state): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(upgrade_required)?;
    crate::auth::check_origin(&headers, &state.config.cors_origin)?;
    let slot = state.connections.acquire(&principal.id)?;
    let tasks = state.tasks.clone();
    Ok(configure(ws, &state).on_upgrade(move |socket| {
        tasks.track_future(async move {
            Session::new(state, socket, false, principal, slot)
                .run()
                .await;
        })
    }))
}

fn upgrade_required(rejection: WebSocketUpgradeRejection) -> ApiError {
    ApiError::UpgradeRequired(format!(
        "this route speaks WebSocket: connect with a WebSocket client (ws://…) ({})",
        rejection.body_text()
    ))
}

/// What the writer sends: a JSON text frame, a binary `msg` frame, or several frames queued
/// at once (written one after the other and flushed together; never nested).
enum Out {
    Text(String),
    Binary(bytes::Bytes),
    Many(Vec<Out>),
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Binary(bytes) => bytes.len(),
            Self::Many(frames) => frames.iter().map(Self::len).sum(),
        }
    }

    /// The WebSocket message of a single frame (`None` for [`Out::Many`]).
    fn into_message(self) -> Option<WsMessage> {
        match self {
            Self::Text(text) => Some(WsMessage::Text(Utf8Bytes::from(text))),
            Self::Binary(bytes) => Some(WsMessage::Binary(bytes)),
            Self::Many(_) => None,
        }
    }
}

impl From<String> for Out {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

/// A frame queued for the writer, holding its share of the socket's byte budget.
struct Outbound {
    frame: Out,
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
    _gauge: Option<GaugeGuard>,
}

/// The writer's queue and the socket's byte budget. Cheap to clone into tasks.
#[derive(Clone)]
struct Queue {
    out: mpsc::UnboundedSender<Outbound>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    metrics: crate::metrics::Metrics,
}

impl Queue {
    /// Queues a frame once the budget has room for it; `false` when the session has ended.
    async fn push(&self, frame: impl Into<Out>) -> bool {
        let frame = frame.into();
        let cost = frame.len().clamp(1, self.budget_bytes);
        let Ok(permit) = self
            .budget
            .clone()
            .acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX))
            .await
        else {
            return false;
        };
        let gauge = self.metrics.ws_buffered(cost);
        self.out
            .send(Outbound {
                frame,
                _budget: Some(permit),
                _gauge: Some(gauge),
            })
            .is_ok()
    }

    /// Asks the writer to close the socket after what is queued (outside the budget: it must
    /// get through).
    fn close(&self, code: u16, reason: &str) {
        let _ = self.out.send(Outbound {
            frame: Out::Text(close_marker(code, reason)),
            _budget: None,
            _gauge: None,
        });
    }
}

/// A subscription's handles kept by the session.
struct SubHandle {
    /// Cancelled to stop it, and by the subscription itself when it ends.
    cancel: CancellationToken,
    credit: Option<Arc<Semaphore>>,
}

struct Session {
    state: AppState,
    /// Sending half, moved into the writer task by `run`.
    socket: Option<WebSocket>,
    simple: bool,
    queue: Queue,
    out_rx: Option<mpsc::UnboundedReceiver<Outbound>>,
    subs: HashMap<String, SubHandle>,
    inflight: Arc<Semaphore>,
    /// Publishes awaiting their PubAck (and then queueing their answer), polled by the
    /// session's loop.
    publishes: ops::publish::Pipeline<String>,
    /// Cancelled when the session ends (any reason).
    done: CancellationToken,
    /// Who is connected: every subscribe, publish and ack is checked against it.
    principal: Principal,
    /// Durable consumers this (tenant) session was allowed to use, and when that was checked.
    /// The tenant consumer checks this session made.
    grants: ConsumerGrants,
    _connection: (GaugeGuard, ConnectionSlot),
}

impl Session {
    fn new(
        state: AppState,
        socket: WebSocket,
        simple: bool,
        principal: Principal,
        slot: ConnectionSlot,
    ) -> Self {
        let (out, out_rx) = mpsc::unbounded_channel();
        let budget_bytes =
            usize::try_from(state.config.ws_max_buffered_bytes).unwrap_or(usize::MAX);
        let connection = state.metrics.ws_connection();
        let queue = Queue {
            out,
            budget: Arc::new(Semaphore::new(budget_bytes.min(Semaphore::MAX_PERMITS))),
            budget_bytes: budget_bytes.min(Semaphore::MAX_PERMITS),
            metrics: state.metrics.clone(),
        };
        Self {
            socket: Some(socket),
            simple,
            queue,
            out_rx: Some(out_rx),
            subs: HashMap::new(),
            inflight: Arc::new(Semaphore::new(MAX_INFLIGHT_OPS)),
            publishes: ops::publish::Pipeline::new(&state),
            done: state.shutdown.child_token(),
            principal,
            grants: ConsumerGrants::default(),
            _connection: (connection, slot),
            state,
        }
    }

    /// Queues a frame, waiting for room in the socket's byte budget: replies to a client that
    /// sends ops but never reads cannot grow the gateway's memory either. (The future owns what
    /// it needs, so the session is not borrowed across the wait.)
    fn send(&self, frame: &ServerFrame) -> impl std::future::Future<Output = ()> + Send + use<> {
        let queue = self.queue.clone();
        let text = frame.to_text();
        async move {
            queue.push(text).await;
        }
    }

    fn error(
        &self,
        id: Option<&str>,
        sub: Option<&str>,
        err: &ApiError,
    ) -> impl std::future::Future<Output = ()> + Send + use<> {
        self.send(&ServerFrame::Error {
            id: id.map(str::to_owned),
            sub: sub.map(str::to_owned),
            problem: err.problem(),
        })
    }

    /// Forgets subscriptions that ended by themselves (their ids may be used again).
    fn prune(&mut self) {
        self.subs.retain(|_, sub| !sub.cancel.is_cancelled());
    }

    /// Starts a subscription task feeding the writer.
    fn add_subscription(&mut self, sub: Option<String>, mut replay: Tail, credit: Option<u64>) {
        let key = sub.clone().unwrap_or_default();
        let cancel = self.done.child_token();
        let credit = credit.map(|n| {
            Arc::new(Semaphore::new(
                usize::try_from(n)
                    .unwrap_or(Semaphore::MAX_PERMITS)
                    .min(Semaphore::MAX_PERMITS),
            ))
        });
        self.subs.insert(
            key,
            SubHandle {
                cancel: cancel.clone(),
                credit: credit.clone(),
            },
        );
        let queue = self.queue.clone();
        let metrics = self.state.metrics.clone();
        let simple = self.simple;
        let batch = self.state.config.replay_batch;
        self.state.tasks.spawn(async move {
            let _active = metrics.ws_subscription();
            let outcome = tokio::select! {
                () = cancel.cancelled() => Ok(()),
                result = feed(&mut replay, sub.as_deref(), &queue, credit.as_deref(), &metrics, batch) => result,
            };
            if let Err(err) = outcome {
                let frame = ServerFrame::Error { id: None, sub: sub.clone(), problem: err.problem() };
                queue.push(frame.to_text()).await;
                if simple {
                    // The socket exists for this one subscription: close it.
                    queue.close(close_code::ERROR, "subscription failed");
                } else if let Some(sub) = &sub {
                    let frame = ServerFrame::Unsubscribed { sub: sub.clone(), reason: Some(err.to_string()) };
                    queue.push(frame.to_text()).await;
                }
            }
            // Marks the subscription ended, so that the session forgets it.
            cancel.cancel();
            replay.close().await;
        });
    }

    async fn run(mut self) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        let Some(out_rx) = self.out_rx.take() else {
            return;
        };
        let (sink, mut incoming) = socket.split();
        let writer = self.state.tasks.spawn(write_loop(
            sink,
            out_rx,
            self.done.clone(),
            self.state.shutdown.clone(),
            self.state.config.ws_ping_interval,
            self.state.config.ws_idle_timeout,
            self.state.metrics.clone(),
        ));
        let idle = self.state.config.ws_idle_timeout;
        // A connection lives no longer than its token: it closes with 1008 when the token expires.
        let expires = self.principal.expires_at.map(|exp| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            tokio::time::Instant::now() + Duration::from_secs(exp.saturating_sub(now))
        });
        let expired = async move {
            match expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        let close = loop {
            let next = tokio::select! {
                () = self.done.cancelled() => break None,
                () = &mut expired => break Some((close_code::POLICY, "token expired")),
                Some(settled) = self.publishes.next(), if !self.publishes.is_empty() => {
                    self.answer(settled).await;
                    continue;
                }
                next = tokio::time::timeout(idle, incoming.next()) => next,
            };
            match next {
                Err(_) => {
                    self.state.metrics.ws_idle_disconnect();
                    break Some((close_code::NORMAL, "idle timeout"));
                }
                Ok(None) => break None,
                Ok(Some(Err(err))) => {
                    let too_big = err.to_string().to_ascii_lowercase().contains("too long")
                        || err.to_string().to_ascii_lowercase().contains("too big");
                    break if too_big {
                        Some((close_code::SIZE, "frame too big"))
                    } else {
                        None
                    };
                }
                Ok(Some(Ok(WsMessage::Text(text)))) => {
                    if self.handle_text(text).await {
                        break Some((close_code::NORMAL, "bye"));
                    }
                }
                Ok(Some(Ok(WsMessage::Binary(_)))) => {
                    self.error(
                        None,
                        None,
                        &ApiError::InvalidBody(
                            "binary frames are not part of the protocol: send JSON text".to_owned(),
                        ),
                    )
                    .await
                }
                Ok(Some(Ok(WsMessage::Close(_)))) => break None,
                Ok(Some(Ok(_))) => {} // ping/pong: answered by the library, counted as activity
            }
        };
        // A client that says `close` gets the answers of its publishes still in flight first
        // (each bounded by the publish timeout).
        if matches!(close, Some((_, "bye"))) {
            while let Some(settled) = self.publishes.next().await {
                self.answer(settled).await;
            }
        }
        for (_, sub) in self.subs.drain() {
            sub.cancel.cancel();
        }
        if let Some((code, reason)) = close {
            self.queue.close(code, reason);
        }
        self.done.cancel();
        let _ = writer.await;
    }

    /// Handles one client frame; answers whether the client asked to close.
    async fn handle_text(&mut self, frame: Utf8Bytes) -> bool {
        self.prune();
        let text = frame.as_str();
        if let Some(op) = PublishOp::parse(text) {
            self.publish_op(&frame, op).await;
            return false;
        }
        let op: ClientOp = match serde_json::from_str(text) {
            Ok(op) => op,
            Err(err) => {
                // The id is echoed only when it is one a valid op could carry.
                let id = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned))
                    .filter(|id| protocol::check_id(id).is_ok());
                self.error(
                    id.as_deref(),
                    None,
                    &ApiError::InvalidBody(format!("invalid frame: {err}")),
                )
                .await;
                return false;
            }
        };
        if let Some(Err(why)) = op.id().map(protocol::check_id) {
            let detail = format!("invalid 'id': {why}; the op was not carried out");
            self.error(None, None, &ApiError::InvalidParameter(detail))
                .await;
            return false;
        }
        if let Some((ack_id, action, delay, id)) = op.ack() {
            self.ack(ack_id.to_owned(), action, delay, id.map(str::to_owned))
                .await;
            return false;
        }
        match op {
            ClientOp::Close => return true,
            ClientOp::Ping { id } => self.send(&ServerFrame::Pong { id }).await,
            ClientOp::Credit { id, n } => {
                let key = if self.simple {
                    String::new()
                } else {
                    id.clone().unwrap_or_default()
                };
                match self.subs.get(&key) {
                    Some(SubHandle {
                        credit: Some(credit),
                        ..
                    }) => {
                        let room = Semaphore::MAX_PERMITS - credit.available_permits();
                        credit.add_permits(usize::try_from(n).unwrap_or(room).min(room));
                    }
                    Some(_) => {} // not in credit mode: nothing to grant
                    None => {
                        self.error(
                            id.as_deref(),
                            id.as_deref(),
                            &ApiError::InvalidParameter(format!(
                                "no subscription '{}'",
                                id.as_deref().unwrap_or("")
                            )),
                        )
                        .await
                    }
                }
            }
            ClientOp::Subscribe {
                id,
                stream,
                deliver,
                start_seq,
                start_time,
                filter,
                consumer,
                group,
                credit,
                encoding,
            } => {
                if self.simple {
                    self.error(
                        Some(&id),
                        None,
                        &ApiError::InvalidBody(
                            "this socket has its one subscription; use /v1/ws to subscribe"
                                .to_owned(),
                        ),
                    )
                    .await;
                } else if self.subs.contains_key(&id) {
                    self.error(
                        Some(&id),
                        Some(&id),
                        &ApiError::InvalidParameter(format!("subscription '{id}' exists")),
                    )
                    .await;
                } else if self.subs.len() >= self.state.config.ws_max_subscriptions {
                    self.error(
                        Some(&id),
                        None,
                        &ApiError::RateLimited(format!(
                            "at most {} subscriptions per socket",
                            self.state.config.ws_max_subscriptions
                        )),
                    )
                    .await;
                } else {
                    let (encoding, binary) = encoding.split();
                    let subscription = Subscription {
                        deliver,
                        start_seq,
                        start_time,
                        filters: filter,
                        consumer,
                        group,
                        encoding,
                        binary,
                        credit,
                    };
                    let started = match StreamName::parse(stream) {
                        Ok(stream) => {
                            ops::subscribe::subscribe(
                                &self.state,
                                &self.principal,
                                &stream,
                                &subscription,
                                &mut self.grants,
                            )
                            .await
                        }
                        Err(err) => Err(err),
                    };
                    match started {
                        Ok(replay) => {
                            self.send(&ServerFrame::Subscribed { sub: id.clone() })
                                .await;
                            self.add_subscription(Some(id), replay, credit);
                        }
                        Err(err) => self.error(Some(&id), None, &err).await,
                    }
                }
            }
            ClientOp::Unsubscribe { id } => match self.subs.remove(&id) {
                Some(sub) => {
                    sub.cancel.cancel();
                    self.send(&ServerFrame::Unsubscribed {
                        sub: id,
                        reason: None,
                    })
                    .await;
                }
                None => {
                    self.error(
                        Some(&id),
                        None,
                        &ApiError::InvalidParameter(format!("no subscription '{id}'")),
                    )
                    .await
                }
            },
            ClientOp::Publish {
                id,
                subject,
                data,
                data_base64,
                content_type,
                headers,
                idempotency_key,
            } => {
                // A publish op the fast path did not read (its `op` written with escapes).
                let data = match data {
                    None => None,
                    Some(serde_json::Value::String(text)) => {
                        Some(ItemData::Text(bytes::Bytes::from(text)))
                    }
                    Some(value) => match serde_json::to_vec(&value) {
                        Ok(json) => Some(ItemData::Json(bytes::Bytes::from(json))),
                        Err(err) => {
                            let err = ApiError::internal("encode data", err);
                            self.error(Some(&id), None, &err).await;
                            return false;
                        }
                    },
                };
                let mut item = ItemRef::new(&subject, &headers);
                item.data = data;
                item.data_base64 = data_base64.as_deref();
                item.content_type = content_type.as_deref();
                item.idempotency_key = idempotency_key.as_deref();
                self.publish(&id, &item).await;
            }
            ClientOp::Ack { .. }
            | ClientOp::Nak { .. }
            | ClientOp::Term { .. }
            | ClientOp::Progress { .. } => {}
        }
        false
    }

    /// A `publish` op read by the fast path ([`PublishOp`]): its payload is a slice of the
    /// frame when the op's `data` is a string without escapes.
    async fn publish_op(&mut self, frame: &Utf8Bytes, op: PublishOp<'_>) {
        if let Err(why) = protocol::check_id(&op.id) {
            let detail = format!("invalid 'id': {why}; the op was not carried out");
            self.error(None, None, &ApiError::InvalidParameter(detail))
                .await;
            return;
        }
        let data = match op.data() {
            Ok(None) => None,
            Ok(Some(PublishData::Borrowed(text))) => Some(ItemData::Text(
                bytes::Bytes::from(frame.clone()).slice_ref(text.as_bytes()),
            )),
            Ok(Some(PublishData::Owned(text))) => Some(ItemData::Text(bytes::Bytes::from(text))),
            Ok(Some(PublishData::Json(json))) => Some(ItemData::Json(bytes::Bytes::from(json))),
            Err(err) => {
                let err = ApiError::internal("encode data", err);
                self.error(Some(&op.id), None, &err).await;
                return;
            }
        };
        let mut item = ItemRef::new(&op.subject, &op.headers);
        item.data = data;
        item.data_base64 = op.data_base64.as_deref();
        item.content_type = op.content_type.as_deref();
        item.idempotency_key = op.idempotency_key.as_deref();
        self.publish(&op.id, &item).await;
    }

    /// Checks and sends one published message; its answer is queued when its PubAck arrives.
    async fn publish(&mut self, id: &str, item: &ItemRef<'_>) {
        let message = match ops::publish::prepare_item(&self.state, &self.principal, item) {
            Ok(message) => message,
            Err(err) => {
                self.error(Some(id), None, &err).await;
                return;
            }
        };
        // At most --publish-stream-window await their PubAck: answer some first.
        while self.publishes.len() >= self.state.config.publish_stream_window {
            match self.publishes.next().await {
                Some(settled) => self.answer(settled).await,
                None => break,
            }
        }
        // Sent here, in the order of the ops, so that JetStream stores them in that order;
        // the PubAck is awaited by the session's loop.
        self.publishes.send(message, id.to_owned()).await;
    }

    /// Queues the answers of `first` and of every other publish already settled, together: one
    /// share of the byte budget, one hand-over to the writer, one flush.
    async fn answer(&mut self, first: Settled) {
        let mut frames = Vec::with_capacity(4);
        let mut next = Some(first);
        while let Some((id, result)) = next {
            let frame = match result {
                Ok(stored) => ServerFrame::PublishAck {
                    id,
                    stream: stored.stream,
                    seq: stored.seq,
                    duplicate: stored.duplicate,
                },
                Err(err) => ServerFrame::Error {
                    id: Some(id),
                    sub: None,
                    problem: err.problem(),
                },
            };
            frames.push(Out::Text(frame.to_text()));
            if frames.len() >= FRAMES_PER_PUSH {
                break;
            }
            next = self.publishes.next().now_or_never().flatten();
        }
        let out = match frames.pop() {
            Some(only) if frames.is_empty() => only,
            Some(last) => {
                frames.push(last);
                Out::Many(frames)
            }
            None => return,
        };
        self.queue.push(out).await;
    }

    async fn ack(
        &mut self,
        ack_id: String,
        action: crate::nats::consumers::AckAction,
        delay: Option<Duration>,
        id: Option<String>,
    ) {
        let asked = ops::acks::Ack {
            ack_id: &ack_id,
            action,
            delay,
        };
        let target = match ops::acks::verify_one(
            &self.state,
            &self.principal,
            &mut self.grants,
            asked,
        )
        .await
        {
            Ok(target) => target,
            Err(err) => return self.error(id.as_deref(), None, &err).await,
        };
        let Ok(permit) = self.inflight.clone().acquire_owned().await else {
            return;
        };
        let state = self.state.clone();
        let queue = self.queue.clone();
        self.state.tasks.spawn(async move {
            let _permit = permit;
            let outcome = ops::acks::apply(&state, &target, action, delay).await;
            let frame = ServerFrame::AckResult {
                id,
                ack_id,
                action,
                status: outcome
                    .as_ref()
                    .map_or_else(|e| e.status().as_u16(), |()| 200),
                error: outcome.err().map(|e| e.problem()),
            };
            queue.push(frame.to_text()).await;
        });
    }
}

/// Marks a close request in the writer queue (a frame text no JSON frame can start with).
fn close_marker(code: u16, reason: &str) -> String {
    format!("\u{0}close:{code}:{reason}")
}

/// Takes events from the subscription while credit and budget allow, and queues their frames:
/// with the first event, those already at hand (up to [`FRAMES_PER_PUSH`] or
/// [`WRITE_BUFFER`] bytes), which the writer then writes with one flush.
async fn feed(
    replay: &mut Tail,
    sub: Option<&str>,
    queue: &Queue,
    credit: Option<&Semaphore>,
    metrics: &crate::metrics::Metrics,
    batch: usize,
) -> Result<(), ApiError> {
    loop {
        let want = credit.map_or(batch, |c| c.available_permits().clamp(1, batch));
        let event = replay.next(want).await?;
        let Some(first) = frame(event, sub, credit, metrics).await else {
            return Ok(());
        };
        let mut bytes = first.len();
        let mut more = Vec::new();
        while more.len() + 1 < FRAMES_PER_PUSH
            && bytes < WRITE_BUFFER
            && credit.is_none_or(|c| c.available_permits() > 0)
        {
            let Some(event) = replay.ready(want) else {
                break;
            };
            let Some(frame) = frame(event, sub, credit, metrics).await else {
                return Ok(());
            };
            bytes += frame.len();
            more.push(frame);
        }
        let out = if more.is_empty() {
            first
        } else {
            more.insert(0, first);
            Out::Many(more)
        };
        if !queue.push(out).await {
            return Ok(());
        }
    }
}

/// The frame of one event for subscription `sub`, once the client's credit allows a message
/// (`None` when the subscription ended while waiting for credit).
async fn frame(
    event: Event,
    sub: Option<&str>,
    credit: Option<&Semaphore>,
    metrics: &crate::metrics::Metrics,
) -> Option<Out> {
    Some(match event {
        Event::Message(shown) => {
            if let Some(credit) = credit {
                if credit.available_permits() == 0 {
                    metrics.ws_credit_stall();
                }
                // One credit per message; granted by the client with `credit` ops.
                credit.acquire().await.ok()?.forget();
            }
            // Rendered once per message (per feed when shared), framed per socket.
            match &shown.binary {
                Some(binary) => Out::Binary(ServerFrame::msg_binary(sub, binary)),
                None => Out::Text(ServerFrame::msg_text(sub, &shown.json)),
            }
        }
        Event::Gap { from, to } => ServerFrame::Gap {
            sub: sub.map(str::to_owned),
            from,
            to,
        }
        .to_text()
        .into(),
        Event::CaughtUp { seq } => ServerFrame::CaughtUp {
            sub: sub.map(str::to_owned),
            seq,
        }
        .to_text()
        .into(),
    })
}

/// Writes queued frames and pings until the session ends; closes with 1001 on shutdown.
///
/// A write that does not complete within `stall` (a client that stopped reading while its TCP
/// buffers are full) ends the connection: the client resumes from the last sequence it saw.
async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocket, WsMessage>,
    mut queue: mpsc::UnboundedReceiver<Outbound>,
    done: CancellationToken,
    shutdown: CancellationToken,
    ping_every: Duration,
    stall: Duration,
    metrics: crate::metrics::Metrics,
) {
    /// Sends one message unless shutdown comes first or the client stalls; `false` to stop.
    ///
    /// With `flush` false the frame may wait in the socket's write buffer: frames that follow
    /// each other go out in one write instead of one system call each.
    async fn write(
        sink: &mut futures::stream::SplitSink<WebSocket, WsMessage>,
        message: WsMessage,
        flush: bool,
        shutdown: &CancellationToken,
        stall: Duration,
        metrics: &crate::metrics::Metrics,
    ) -> bool {
        let send = async {
            sink.feed(message).await?;
            if flush { sink.flush().await } else { Ok(()) }
        };
        tokio::select! {
            () = shutdown.cancelled() => false,
            sent = tokio::time::timeout(stall, send) => match sent {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false,
                Err(_) => {
                    metrics.ws_slow_disconnect();
                    false
                }
            },
        }
    }
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    let close = |code: u16, reason: &str| {
        WsMessage::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason.to_owned()),
        }))
    };
    // A close frame is best effort: it must not wait behind a client that does not read.
    let close_timeout = Duration::from_secs(1);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                let _ = tokio::time::timeout(close_timeout, sink.send(close(close_code::AWAY, "gateway shutting down"))).await;
                break;
            }
            frame = queue.recv() => {
                let Some(frame) = frame else { break };
                if let Out::Text(text) = &frame.frame
                    && let Some(rest) = text.strip_prefix("\u{0}close:")
                {
                    let (code, reason) = rest.split_once(':').unwrap_or((rest, ""));
                    let code = code.parse().unwrap_or(close_code::NORMAL);
                    let _ = tokio::time::timeout(close_timeout, sink.send(close(code, reason))).await;
                    break;
                }
                // Flush once the queue is drained; while frames keep coming they share writes.
                let flush = queue.is_empty();
                let (single, many) = match frame.frame {
                    Out::Many(frames) => (None, frames),
                    single => (Some(single), Vec::new()),
                };
                let last = (usize::from(single.is_some()) + many.len()).saturating_sub(1);
                let mut sent = true;
                for (i, frame) in single.into_iter().chain(many).enumerate() {
                    let len = frame.len();
                    let Some(message) = frame.into_message() else {
                        continue;
                    };
                    sent = write(&mut sink, message, flush && i == last, &shutdown, stall, &metrics).await;
                    if !sent {
                        break;
                    }
                    metrics.ws_sent(len);
                }
                if !sent {
                    if shutdown.is_cancelled() {
                        let _ = tokio::time::timeout(close_timeout, sink.send(close(close_code::AWAY, "gateway shutting down"))).await;
                    }
                    break;
                }
            }
            _ = ping.tick() => {
                let ping = WsMessage::Ping(bytes::Bytes::from_static(b"jetway"));
                if !write(&mut sink, ping, true, &shutdown, stall, &metrics).await {
                    break;
                }
            }
            () = done.cancelled(), if queue.is_empty() => {
                let _ = tokio::time::timeout(close_timeout, sink.send(close(close_code::NORMAL, ""))).await;
                break;
            }
        }
    }
    done.cancel();
}
