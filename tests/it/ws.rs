//! The WebSocket bridge: `GET /v1/streams/{stream}/ws` (one subscription per socket) and the
//! multiplexed `GET /v1/ws`: start positions and filters, `caught_up` and `gap` markers, resume,
//! ack mode on a durable consumer, credit and the per-socket byte bound, malformed frames, close
//! codes, a NATS restart mid-subscription, and the HTTP answers before an upgrade.
//!
//! Every read has a deadline. "Nothing more arrived" is shown with a ping/pong fence: the pong
//! travels the same queue as the subscription's frames, so whatever was queued before the ping
//! arrives before the pong; where that alone proves little, server state read with the direct
//! client (`app.js`) or a `/metrics` counter first shows the subscription is waiting.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::{SinkExt, StreamExt, TryStreamExt};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::harness::{
    TestApp, Topology, eventually, json, problem, spawn_app, spawn_app_on, spawn_app_with,
};

/// A client WebSocket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one expected frame may take.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(10);

const STREAM: &str = "ORDERS";

// ---------------------------------------------------------------------------------------------
// Helpers (shared with sse.rs where marked `pub(crate)`)

/// What the server sent next.
#[derive(Debug)]
enum Incoming {
    Frame(Value),
    /// A close frame (its code), or the connection ending without one (`None`).
    Closed(Option<u16>),
}

/// Opens a WebSocket to `path` on the gateway, asserting the upgrade succeeded.
pub(crate) async fn connect(app: &TestApp, path: &str) -> Ws {
    let url = format!("ws://{}{path}", app.addr);
    let (ws, response) = match connect_async(url.as_str()).await {
        Ok(connected) => connected,
        Err(tungstenite::Error::Http(response)) => {
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default());
            panic!(
                "WebSocket handshake to {path} refused with {}: {body}",
                response.status()
            )
        }
        Err(err) => panic!("WebSocket handshake to {path} failed: {err:?}"),
    };
    assert_eq!(response.status().as_u16(), 101);
    ws
}

/// The single-stream endpoint of `ORDERS` with a query (`""` for none).
fn stream_ws(query: &str) -> String {
    if query.is_empty() {
        format!("/v1/streams/{STREAM}/ws")
    } else {
        format!("/v1/streams/{STREAM}/ws?{query}")
    }
}

async fn next_incoming(ws: &mut Ws, timeout: Duration) -> Incoming {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("nothing from the server within {timeout:?}"));
        match next {
            None => return Incoming::Closed(None),
            Some(Err(err)) => match err {
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(_)
                | tungstenite::Error::Io(_) => return Incoming::Closed(None),
                other => panic!("WebSocket error: {other:?}"),
            },
            Some(Ok(Message::Text(text))) => {
                let frame = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|err| panic!("frame is not JSON ({err}): {text}"));
                return Incoming::Frame(frame);
            }
            Some(Ok(Message::Close(frame))) => {
                return Incoming::Closed(frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(Message::Binary(bytes))) => {
                panic!("the server sent a binary frame ({} bytes)", bytes.len())
            }
            Some(Ok(_)) => {} // WebSocket ping/pong
        }
    }
}

/// The next JSON frame; fails on a close or after [`READ_TIMEOUT`].
async fn next_frame(ws: &mut Ws) -> Value {
    next_frame_within(ws, READ_TIMEOUT).await
}

async fn next_frame_within(ws: &mut Ws, timeout: Duration) -> Value {
    match next_incoming(ws, timeout).await {
        Incoming::Frame(frame) => frame,
        Incoming::Closed(code) => panic!("socket closed ({code:?}) while a frame was expected"),
    }
}

/// Reads frames until `done` holds for everything read so far; answers them all.
pub(crate) async fn collect_until(
    ws: &mut Ws,
    timeout: Duration,
    mut done: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut frames = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "condition not met within {timeout:?}; frames so far: {frames:#?}"
        );
        frames.push(next_frame_within(ws, left).await);
        if done(&frames) {
            return frames;
        }
    }
}

/// Reads frames up to and including the first of type `kind`.
pub(crate) async fn until_type(ws: &mut Ws, kind: &str) -> Vec<Value> {
    collect_until(ws, READ_TIMEOUT, |frames| {
        frames.last().is_some_and(|f| f["type"] == kind)
    })
    .await
}

/// Reads frames until `count` `msg` frames have arrived.
async fn until_msgs(ws: &mut Ws, count: usize) -> Vec<Value> {
    collect_until(ws, READ_TIMEOUT, |frames| msgs(frames).len() >= count).await
}

pub(crate) async fn send(ws: &mut Ws, op: &Value) {
    ws.send(Message::text(op.to_string()))
        .await
        .expect("send frame");
}

/// Sends a ping with a fresh id and answers every frame that arrived before its pong.
async fn fence(ws: &mut Ws) -> Vec<Value> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = format!("fence-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    send(ws, &json!({"op": "ping", "id": id})).await;
    let mut frames = collect_until(ws, READ_TIMEOUT, |frames| {
        frames
            .last()
            .is_some_and(|f| f["type"] == "pong" && f["id"] == id.as_str())
    })
    .await;
    frames.pop();
    frames
}

/// Reads until the server closes the socket; answers the frames before it and the close code.
async fn until_close(ws: &mut Ws, timeout: Duration) -> (Vec<Value>, Option<u16>) {
    let deadline = Instant::now() + timeout;
    let mut frames = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no close within {timeout:?}; frames: {frames:#?}"
        );
        match next_incoming(ws, left).await {
            Incoming::Frame(frame) => frames.push(frame),
            Incoming::Closed(code) => return (frames, code),
        }
    }
}

/// The `msg` frames among `frames`.
fn msgs(frames: &[Value]) -> Vec<&Value> {
    frames.iter().filter(|f| f["type"] == "msg").collect()
}

/// Stream sequences of the `msg` frames among `frames`, in arrival order.
fn seqs(frames: &[Value]) -> Vec<u64> {
    msgs(frames)
        .iter()
        .map(|f| f["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {f}")))
        .collect()
}

/// Frame types in arrival order, with the sequence of `msg` frames (`msg:3`), for asserting the
/// whole shape of a conversation at once.
fn shape(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f["type"].as_str().unwrap_or("?") {
            "msg" => format!("msg:{}", f["seq"]),
            "caught_up" => format!("caught_up:{}", f["seq"]),
            "gap" => format!("gap:{}-{}", f["from"], f["to"]),
            other => other.to_owned(),
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Publishes directly with async-nats and answers the stream sequence.
pub(crate) async fn publish_direct(
    js: &jetstream::Context,
    subject: &str,
    payload: impl Into<Bytes>,
) -> u64 {
    js.publish(subject.to_owned(), payload.into())
        .await
        .expect("publish")
        .await
        .expect("puback")
        .sequence
}

/// Publishes `count` messages (`payload(i)`) directly, pipelined in chunks below async-nats'
/// limit of unacknowledged publishes.
pub(crate) async fn publish_many(
    js: &jetstream::Context,
    subject: &str,
    count: usize,
    payload: impl Fn(usize) -> Bytes,
) {
    let mut sent = 0;
    while sent < count {
        let chunk = (count - sent).min(1000);
        let mut acks = Vec::with_capacity(chunk);
        for i in sent..sent + chunk {
            acks.push(
                js.publish(subject.to_owned(), payload(i))
                    .await
                    .expect("publish"),
            );
        }
        for ack in acks {
            ack.await.expect("puback");
        }
        sent += chunk;
    }
}

/// Creates `ORDERS` on `orders.>` holding `count` messages (`m1`, `m2`, … on `orders.new`).
async fn orders_with(app: &TestApp, count: usize) {
    app.create_stream(STREAM, &["orders.>"]).await;
    publish_many(&app.js, "orders.new", count, |i| {
        Bytes::from(format!("m{}", i + 1))
    })
    .await;
}

/// The consumers JetStream holds on a stream.
pub(crate) async fn stream_consumers(app: &TestApp, stream: &str) -> Vec<consumer::Info> {
    app.js
        .get_stream(stream)
        .await
        .expect("stream")
        .consumers()
        .try_collect()
        .await
        .expect("list consumers")
}

/// The one consumer on a stream (a replay's ordered consumer).
async fn only_consumer(app: &TestApp, stream: &str) -> consumer::Info {
    let mut consumers = stream_consumers(app, stream).await;
    assert_eq!(
        consumers.len(),
        1,
        "expected exactly one consumer on {stream}: {consumers:#?}"
    );
    consumers.remove(0)
}

/// A value from `/metrics`.
async fn metric(app: &TestApp, name: &str) -> i64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics request")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// A GET that asks for a WebSocket upgrade, sent with reqwest so that a refusal can be read as
/// a problem document.
pub(crate) async fn upgrade_request(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("upgrade request")
}

/// PUT /v1/streams/{stream}/consumers/{consumer}, asserting 201.
async fn create_durable(app: &TestApp, consumer: &str, body: &Value) {
    let response = app
        .http
        .put(app.url(&format!("/v1/streams/{STREAM}/consumers/{consumer}")))
        .json(body)
        .send()
        .await
        .expect("put consumer");
    json(response, 201).await;
}

fn url_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// Start positions and filters

async fn replay_with_deliver_all_sends_every_stored_message_in_order_then_caught_up(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 5).await;
    let mut ws = connect(&app, &stream_ws("deliver=all")).await;

    let frames = until_type(&mut ws, "caught_up").await;

    assert_eq!(
        shape(&frames),
        strings(&["msg:1", "msg:2", "msg:3", "msg:4", "msg:5", "caught_up:5"])
    );
    let first = &frames[0];
    assert_eq!(first["stream"], STREAM);
    assert_eq!(first["subject"], "orders.new");
    assert_eq!(first["data"], "m1");
    assert_eq!(first["encoding"], "utf8");
    assert!(first["time"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(first.get("ack_id").is_none(), "no ack id without consumer");
    assert!(fence(&mut ws).await.is_empty());
}

async fn replay_from_start_seq_sends_that_message_and_the_rest_without_a_gap(topology: Topology) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 5).await;
    let mut ws = connect(&app, &stream_ws("start_seq=3")).await;

    let frames = until_type(&mut ws, "caught_up").await;

    assert_eq!(
        shape(&frames),
        strings(&["msg:3", "msg:4", "msg:5", "caught_up:5"])
    );
    assert!(fence(&mut ws).await.is_empty());
}

async fn replay_from_start_time_of_a_stored_message_starts_at_that_message(topology: Topology) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 4).await;
    let stored = app
        .js
        .get_stream(STREAM)
        .await
        .expect("stream")
        .get_raw_message(3)
        .await
        .expect("message 3");
    let start_time = stored.time.format(&Rfc3339).expect("format time");
    let mut ws = connect(
        &app,
        &stream_ws(&format!("start_time={}", url_encode(&start_time))),
    )
    .await;

    let frames = until_type(&mut ws, "caught_up").await;

    assert_eq!(shape(&frames), strings(&["msg:3", "msg:4", "caught_up:4"]));
    assert!(fence(&mut ws).await.is_empty());
}

async fn replay_with_deliver_last_sends_only_the_last_message_then_live_ones(topology: Topology) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 3).await;
    let mut ws = connect(&app, &stream_ws("deliver=last")).await;

    let replayed = until_type(&mut ws, "caught_up").await;
    publish_direct(&app.js, "orders.new", "live").await;
    let live = until_msgs(&mut ws, 1).await;

    assert_eq!(shape(&replayed), strings(&["msg:3", "caught_up:3"]));
    assert_eq!(shape(&live), strings(&["msg:4"]));
    assert_eq!(live[0]["data"], "live");
}

async fn replay_with_deliver_new_sends_caught_up_at_once_and_only_live_messages(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 3).await;
    let mut ws = connect(&app, &stream_ws("deliver=new")).await;

    let first = next_frame(&mut ws).await;
    publish_direct(&app.js, "orders.new", "live 1").await;
    publish_direct(&app.js, "orders.new", "live 2").await;
    let live = until_msgs(&mut ws, 2).await;

    assert_eq!(first["type"], "caught_up", "{first}");
    assert_eq!(first["seq"], 3, "{first}");
    assert_eq!(shape(&live), strings(&["msg:4", "msg:5"]));
    assert_eq!(live[0]["data"], "live 1");
    assert!(fence(&mut ws).await.is_empty());
}

async fn replay_with_deliver_last_per_subject_sends_the_last_message_of_each_subject_in_order(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    app.create_stream(STREAM, &["orders.>"]).await;
    for (subject, payload) in [
        ("orders.a", "a1"),
        ("orders.b", "b1"),
        ("orders.a", "a2"),
        ("orders.a", "a3"),
    ] {
        publish_direct(&app.js, subject, payload).await;
    }
    let mut ws = connect(&app, &stream_ws("deliver=last_per_subject")).await;

    let frames = until_type(&mut ws, "caught_up").await;

    assert_eq!(shape(&frames), strings(&["msg:2", "msg:4", "caught_up:4"]));
    assert_eq!(frames[0]["data"], "b1");
    assert_eq!(frames[1]["data"], "a3");
}

#[tokio::test]
async fn replay_with_deliver_last_per_subject_and_a_filter_sends_the_last_message_of_each_matching_subject()
 {
    let app = spawn_app().await;
    app.create_stream(STREAM, &["orders.>"]).await;
    for (subject, payload) in [
        ("orders.a", "a1"),
        ("orders.b", "b1"),
        ("orders.c", "c1"),
        ("orders.a", "a2"),
        ("orders.c", "c2"),
    ] {
        publish_direct(&app.js, subject, payload).await;
    }
    let mut ws = connect(
        &app,
        &stream_ws("deliver=last_per_subject&filter=orders.a,orders.b"),
    )
    .await;

    let frames = until_type(&mut ws, "caught_up").await;

    assert_eq!(shape(&frames), strings(&["msg:2", "msg:4", "caught_up:4"]));
    assert_eq!(frames[0]["data"], "b1");
    assert_eq!(frames[1]["data"], "a2");
}

async fn replay_with_one_filter_sends_only_that_subject_stored_and_live(topology: Topology) {
    let app = spawn_app_on(topology).await;
    app.create_stream(STREAM, &["orders.>"]).await;
    for subject in ["orders.a", "orders.b", "orders.a", "orders.c"] {
        publish_direct(&app.js, subject, subject).await;
    }
    let mut ws = connect(&app, &stream_ws("filter=orders.a")).await;

    let replayed = until_type(&mut ws, "caught_up").await;
    publish_direct(&app.js, "orders.b", "other").await;
    publish_direct(&app.js, "orders.a", "wanted").await;
    let live = until_msgs(&mut ws, 1).await;

    assert_eq!(
        shape(&replayed),
        strings(&["msg:1", "msg:3", "caught_up:3"])
    );
    assert!(msgs(&replayed).iter().all(|m| m["subject"] == "orders.a"));
    assert_eq!(shape(&live), strings(&["msg:6"]));
    assert_eq!(live[0]["data"], "wanted");
}

#[tokio::test]
async fn replay_with_two_filters_repeated_or_comma_separated_sends_both_subjects_only() {
    let app = spawn_app().await;
    app.create_stream(STREAM, &["orders.>"]).await;
    for subject in ["orders.a", "orders.b", "orders.c", "orders.a", "orders.c"] {
        publish_direct(&app.js, subject, subject).await;
    }

    for query in [
        "filter=orders.a&filter=orders.c",
        "filter=orders.a%2Corders.c",
    ] {
        let mut ws = connect(&app, &stream_ws(query)).await;
        let frames = until_type(&mut ws, "caught_up").await;

        assert_eq!(
            shape(&frames),
            strings(&["msg:1", "msg:3", "msg:4", "msg:5", "caught_up:5"]),
            "query {query}"
        );
        assert!(fence(&mut ws).await.is_empty(), "query {query}");
    }
}

#[tokio::test]
async fn replay_with_base64_encoding_sends_payload_bytes_in_base64() {
    let app = spawn_app().await;
    app.create_stream(STREAM, &["orders.>"]).await;
    publish_direct(&app.js, "orders.new", Bytes::from_static(&[0, 159, 255])).await;
    let mut ws = connect(&app, &stream_ws("encoding=base64")).await;

    let frame = next_frame(&mut ws).await;

    assert_eq!(frame["type"], "msg", "{frame}");
    assert_eq!(frame["encoding"], "base64");
    assert_eq!(frame["data"], "AJ//");
}

// ---------------------------------------------------------------------------------------------
// caught_up, live tail, gaps, resume

async fn caught_up_is_sent_once_after_the_replayed_messages_and_before_live_ones(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 3).await;
    let mut ws = connect(&app, &stream_ws("")).await;

    let replayed = until_type(&mut ws, "caught_up").await;
    for i in 0..3 {
        let response = app.publish("orders.new", format!("live {i}"), &[]).await;
        json(response, 201).await;
    }
    let mut live = until_msgs(&mut ws, 3).await;
    live.extend(fence(&mut ws).await);

    assert_eq!(
        shape(&replayed),
        strings(&["msg:1", "msg:2", "msg:3", "caught_up:3"])
    );
    assert_eq!(shape(&live), strings(&["msg:4", "msg:5", "msg:6"]));
    assert_eq!(live[2]["data"], "live 2");
}

#[tokio::test]
async fn empty_stream_sends_caught_up_0_then_live_messages() {
    let app = spawn_app().await;
    orders_with(&app, 0).await;
    let mut ws = connect(&app, &stream_ws("")).await;

    let first = next_frame(&mut ws).await;
    publish_direct(&app.js, "orders.new", r#"{"id":1}"#).await;
    let live = until_msgs(&mut ws, 1).await;

    assert_eq!(first, json!({"type": "caught_up", "seq": 0}));
    assert_eq!(shape(&live), strings(&["msg:1"]));
    assert_eq!(live[0]["data"], json!({"id": 1}));
    assert_eq!(live[0]["encoding"], "json");
}

async fn start_seq_before_the_first_message_after_a_purge_sends_a_gap_then_the_rest(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 5).await;
    let purged = app
        .http
        .post(app.url(&format!("/v1/streams/{STREAM}/purge")))
        .send()
        .await
        .expect("purge");
    assert_eq!(json(purged, 200).await, json!({"purged": 5}));
    publish_many(&app.js, "orders.new", 3, |i| {
        Bytes::from(format!("after {i}"))
    })
    .await;
    let mut ws = connect(&app, &stream_ws("start_seq=2")).await;

    let frames = until_type(&mut ws, "caught_up").await;

    assert_eq!(
        shape(&frames),
        strings(&["gap:2-5", "msg:6", "msg:7", "msg:8", "caught_up:8"])
    );
    assert_eq!(frames[1]["data"], "after 0");
    assert!(fence(&mut ws).await.is_empty());
}

async fn message_deleted_in_the_middle_is_reported_as_a_gap_between_its_neighbours(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 5).await;
    let stream = app.js.get_stream(STREAM).await.expect("stream");
    assert!(stream.delete_message(3).await.expect("delete message 3"));
    let mut ws = connect(&app, &stream_ws("")).await;

    let frames = until_type(&mut ws, "caught_up").await;

    assert_eq!(
        shape(&frames),
        strings(&["msg:1", "msg:2", "gap:3-3", "msg:4", "msg:5", "caught_up:5"])
    );
}

#[tokio::test]
async fn start_seq_at_a_deleted_message_reports_it_as_a_gap_before_the_next_message() {
    let app = spawn_app().await;
    orders_with(&app, 5).await;
    let stream = app.js.get_stream(STREAM).await.expect("stream");
    assert!(stream.delete_message(3).await.expect("delete message 3"));
    let mut ws = connect(&app, &stream_ws("start_seq=3")).await;

    let frames = until_type(&mut ws, "caught_up").await;

    assert_eq!(
        shape(&frames),
        strings(&["gap:3-3", "msg:4", "msg:5", "caught_up:5"])
    );
}

async fn resume_with_start_seq_after_the_last_seen_gets_exactly_the_rest(topology: Topology) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 10).await;
    let mut first = connect(&app, &stream_ws("")).await;
    let seen = seqs(&until_msgs(&mut first, 4).await);
    assert_eq!(seen, [1, 2, 3, 4]);
    first.close(None).await.expect("close");
    drop(first);

    let mut second = connect(&app, &stream_ws("start_seq=5")).await;
    let mut rest = until_type(&mut second, "caught_up").await;
    publish_direct(&app.js, "orders.new", "live").await;
    rest.extend(until_msgs(&mut second, 1).await);
    rest.extend(fence(&mut second).await);

    assert_eq!(
        shape(&rest),
        strings(&[
            "msg:5",
            "msg:6",
            "msg:7",
            "msg:8",
            "msg:9",
            "msg:10",
            "caught_up:10",
            "msg:11"
        ])
    );
    let all: BTreeSet<u64> = seen.iter().copied().chain(seqs(&rest)).collect();
    assert_eq!(all.len(), seen.len() + seqs(&rest).len(), "duplicates");
    assert_eq!(all, (1..=11).collect());
}

// ---------------------------------------------------------------------------------------------
// Ack mode

/// A consumer whose `max_ack_pending` is far below the replay's pull size: every message the
/// server hands over must reach the client, so that its acks make room for the next ones. (A
/// second pull kept open next to the first would get every other message, unread behind the
/// first pull, and the subscription would stall until that pull expired.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_mode_with_a_small_max_ack_pending_keeps_delivering_as_acks_make_room() {
    const COUNT: usize = 1_200;
    let app = spawn_app_on(Topology::Single).await;
    orders_with(&app, COUNT).await;
    create_durable(&app, "workers", &json!({"max_ack_pending": 10})).await;
    let mut ws = connect(&app, &stream_ws("consumer=workers")).await;
    let mut seen = BTreeSet::new();
    let started = std::time::Instant::now();
    while seen.len() < COUNT {
        let frames = until_msgs(&mut ws, 1).await;
        for message in msgs(&frames) {
            seen.insert(message["seq"].as_u64().expect("seq"));
            send(
                &mut ws,
                &json!({"op": "ack", "ack_id": message["ack_id"], "id": format!("a{}", message["seq"])}),
            )
            .await;
        }
    }
    assert_eq!(seen, (1..=COUNT as u64).collect());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{COUNT} messages took {:?}",
        started.elapsed()
    );
}

async fn ack_mode_ack_over_the_socket_moves_the_ack_floor_and_unacked_message_is_redelivered(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 2).await;
    create_durable(&app, "workers", &json!({"ack_wait": "1s"})).await;
    let mut ws = connect(&app, &stream_ws("consumer=workers")).await;

    let delivered = until_msgs(&mut ws, 2).await;
    let delivered = msgs(&delivered);
    assert_eq!(delivered[0]["seq"], 1);
    assert_eq!(delivered[0]["delivered"], 1);
    assert_eq!(delivered[1]["seq"], 2);
    let ack_id = delivered[0]["ack_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no ack_id: {}", delivered[0]))
        .to_owned();
    assert!(delivered[1]["ack_id"].is_string(), "{}", delivered[1]);
    send(&mut ws, &json!({"op": "ack", "ack_id": ack_id, "id": "a1"})).await;
    let until_result = collect_until(&mut ws, READ_TIMEOUT, |frames| {
        frames
            .last()
            .is_some_and(|f| f["type"] == "ack_result" && f["id"] == "a1")
    })
    .await;
    let result = until_result.last().expect("ack_result");
    let redelivery = collect_until(&mut ws, READ_TIMEOUT, |frames| {
        frames
            .last()
            .is_some_and(|f| f["type"] == "msg" && f["seq"] == 2 && f["delivered"] == 2)
    })
    .await;

    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["action"], "ack");
    assert_eq!(result["ack_id"], ack_id.as_str());
    assert!(result.get("error").is_none(), "{result}");
    let info = app.consumer_info(STREAM, "workers").await;
    assert_eq!(info.ack_floor.stream_sequence, 1, "{info:?}");
    assert_eq!(info.num_ack_pending, 1, "{info:?}");
    let redelivered = redelivery.last().expect("redelivery");
    assert!(redelivered["ack_id"].is_string());
    assert!(info.num_redelivered >= 1, "{info:?}");
}

async fn ack_mode_nak_with_delay_over_the_socket_redelivers_after_the_delay(topology: Topology) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 1).await;
    create_durable(&app, "workers", &json!({"ack_wait": "30s"})).await;
    let mut ws = connect(&app, &stream_ws("consumer=workers")).await;
    let first = until_msgs(&mut ws, 1).await;
    let first = msgs(&first)[0].clone();
    assert_eq!(first["delivered"], 1);

    let nak_sent = Instant::now();
    send(
        &mut ws,
        &json!({"op": "nak", "ack_id": first["ack_id"], "delay": "1s", "id": "n1"}),
    )
    .await;
    let frames = collect_until(&mut ws, READ_TIMEOUT, |frames| {
        frames.iter().any(|f| f["type"] == "ack_result") && !msgs(frames).is_empty()
    })
    .await;
    let since_nak = nak_sent.elapsed();

    let result = frames
        .iter()
        .find(|f| f["type"] == "ack_result")
        .expect("ack_result");
    assert_eq!(result["id"], "n1");
    assert_eq!(result["action"], "nak");
    assert_eq!(result["status"], 200, "{result}");
    let again = msgs(&frames)[0];
    assert_eq!(again["seq"], 1);
    assert_eq!(again["delivered"], 2);
    assert!(
        since_nak >= Duration::from_millis(950),
        "redelivered {since_nak:?} after a nak with a 1s delay"
    );
    let info = app.consumer_info(STREAM, "workers").await;
    assert_eq!(info.num_redelivered, 1);
    assert_eq!(info.num_ack_pending, 1);
}

async fn multiplexed_subscribe_with_consumer_delivers_ack_ids_and_acks_over_the_socket(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 1).await;
    create_durable(&app, "workers", &json!({"ack_wait": "30s"})).await;
    let mut ws = connect(&app, "/v1/ws").await;

    send(
        &mut ws,
        &json!({"op": "subscribe", "id": "w", "stream": STREAM, "consumer": "workers"}),
    )
    .await;
    let delivered = until_msgs(&mut ws, 1).await;
    let message = msgs(&delivered)[0].clone();
    send(
        &mut ws,
        &json!({"op": "ack", "ack_id": message["ack_id"], "id": "a1"}),
    )
    .await;
    let result = until_type(&mut ws, "ack_result")
        .await
        .pop()
        .expect("ack_result");

    assert_eq!(message["sub"], "w");
    assert_eq!(message["seq"], 1);
    assert_eq!(message["delivered"], 1);
    assert_eq!(result["id"], "a1");
    assert_eq!(result["status"], 200, "{result}");
    let info = app.consumer_info(STREAM, "workers").await;
    assert_eq!(info.ack_floor.stream_sequence, 1);
    assert_eq!(info.num_ack_pending, 0);
}

#[tokio::test]
async fn durable_consumer_deleted_mid_subscription_sends_an_error_and_closes_1011() {
    let app = spawn_app_with(|config| config.replay_heartbeat = Duration::from_millis(500)).await;
    orders_with(&app, 1).await;
    create_durable(&app, "workers", &json!({"ack_wait": "30s"})).await;
    let mut ws = connect(&app, &stream_ws("consumer=workers")).await;
    until_msgs(&mut ws, 1).await;

    let stream = app.js.get_stream(STREAM).await.expect("stream");
    assert!(
        stream
            .delete_consumer("workers")
            .await
            .expect("delete")
            .success
    );
    let (frames, code) = until_close(&mut ws, Duration::from_secs(15)).await;

    let error = frames
        .iter()
        .find(|f| f["type"] == "error")
        .unwrap_or_else(|| panic!("no error frame before the close: {frames:#?}"));
    assert_eq!(error["problem"]["code"], "consumer_not_found", "{error}");
    assert_eq!(code, Some(1011));
}

// ---------------------------------------------------------------------------------------------
// Multiplexed endpoint

async fn multiplexed_two_subscriptions_and_publish_answer_publish_ack_and_deliver_to_the_matching_sub(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    app.create_stream("EVENTS", &["events.>"]).await;
    publish_direct(&app.js, "orders.new", "o1").await;
    publish_direct(&app.js, "events.new", "e1").await;
    let mut ws = connect(&app, "/v1/ws").await;

    send(
        &mut ws,
        &json!({"op": "subscribe", "id": "o", "stream": "ORDERS"}),
    )
    .await;
    send(
        &mut ws,
        &json!({"op": "subscribe", "id": "e", "stream": "EVENTS"}),
    )
    .await;
    let started = collect_until(&mut ws, READ_TIMEOUT, |frames| {
        frames.iter().filter(|f| f["type"] == "caught_up").count() == 2
    })
    .await;
    send(
        &mut ws,
        &json!({"op": "publish", "id": "p1", "subject": "events.created", "data": {"n": 1}}),
    )
    .await;
    let mut after = collect_until(&mut ws, READ_TIMEOUT, |frames| {
        frames.iter().any(|f| f["type"] == "publish_ack")
            && frames.iter().any(|f| f["type"] == "msg")
    })
    .await;
    after.extend(fence(&mut ws).await);

    for sub in ["o", "e"] {
        let of_sub: Vec<Value> = started
            .iter()
            .filter(|f| f["sub"] == sub)
            .cloned()
            .collect();
        assert_eq!(
            shape(&of_sub),
            strings(&["subscribed", "msg:1", "caught_up:1"]),
            "sub {sub}: {started:#?}"
        );
    }
    let ack = after
        .iter()
        .find(|f| f["type"] == "publish_ack")
        .expect("publish_ack");
    assert_eq!(
        *ack,
        json!({"type": "publish_ack", "id": "p1", "stream": "EVENTS", "seq": 2, "duplicate": false})
    );
    let delivered = msgs(&after);
    assert_eq!(delivered.len(), 1, "{after:#?}");
    assert_eq!(delivered[0]["sub"], "e");
    assert_eq!(delivered[0]["stream"], "EVENTS");
    assert_eq!(delivered[0]["seq"], 2);
    assert_eq!(delivered[0]["subject"], "events.created");
    assert_eq!(delivered[0]["data"], json!({"n": 1}));
    let stored = app.stored("EVENTS").await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].payload.as_ref(), br#"{"n":1}"#);
}

#[tokio::test]
async fn multiplexed_subscribe_with_start_seq_and_filter_replays_the_matching_rest() {
    let app = spawn_app().await;
    app.create_stream(STREAM, &["orders.>"]).await;
    for subject in ["orders.a", "orders.b", "orders.a", "orders.b", "orders.a"] {
        publish_direct(&app.js, subject, subject).await;
    }
    let mut ws = connect(&app, "/v1/ws").await;

    send(
        &mut ws,
        &json!({"op": "subscribe", "id": "s", "stream": STREAM, "start_seq": 2, "filter": ["orders.a"]}),
    )
    .await;
    let frames = until_type(&mut ws, "caught_up").await;

    assert_eq!(
        shape(&frames),
        strings(&["subscribed", "msg:3", "msg:5", "caught_up:5"])
    );
    assert!(frames.iter().all(|f| f["sub"] == "s"), "{frames:#?}");
}

async fn unsubscribe_deletes_the_replay_consumer_and_stops_its_messages(topology: Topology) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 0).await;
    let mut ws = connect(&app, "/v1/ws").await;
    // Different filters: two live feeds, one consumer each once their replays handed over.
    send(
        &mut ws,
        &json!({"op": "subscribe", "id": "gone", "stream": STREAM, "filter": ["orders.new"]}),
    )
    .await;
    send(
        &mut ws,
        &json!({"op": "subscribe", "id": "control", "stream": STREAM}),
    )
    .await;
    collect_until(&mut ws, READ_TIMEOUT, |frames| {
        frames.iter().filter(|f| f["type"] == "caught_up").count() == 2
    })
    .await;
    eventually(
        "one consumer per subscription",
        Duration::from_secs(10),
        || async { (stream_consumers(&app, STREAM).await.len() == 2).then_some(()) },
    )
    .await;

    send(&mut ws, &json!({"op": "unsubscribe", "id": "gone"})).await;
    let unsubscribed = until_type(&mut ws, "unsubscribed").await;
    eventually(
        "the unsubscribed replay's consumer to be deleted",
        Duration::from_secs(10),
        || async { (stream_consumers(&app, STREAM).await.len() == 1).then_some(()) },
    )
    .await;
    let seq = publish_direct(&app.js, "orders.new", "after").await;
    let mut after = collect_until(&mut ws, READ_TIMEOUT, |frames| {
        frames
            .iter()
            .any(|f| f["type"] == "msg" && f["sub"] == "control")
    })
    .await;
    after.extend(fence(&mut ws).await);

    assert_eq!(unsubscribed.last().expect("frame")["sub"], "gone");
    let delivered = msgs(&after);
    assert_eq!(delivered.len(), 1, "{after:#?}");
    assert_eq!(delivered[0]["sub"], "control");
    assert_eq!(delivered[0]["seq"], seq);
}

async fn multiplexed_credit_for_a_subscription_grants_exactly_that_many_more_messages(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 6).await;
    let mut ws = connect(&app, "/v1/ws").await;

    send(
        &mut ws,
        &json!({"op": "subscribe", "id": "c", "stream": STREAM, "credit": 2}),
    )
    .await;
    let first = until_msgs(&mut ws, 2).await;
    eventually(
        "the subscription to wait for credit",
        Duration::from_secs(10),
        || async { (metric(&app, "jetway_ws_credit_stalls_total").await >= 1).then_some(()) },
    )
    .await;
    let between = fence(&mut ws).await;
    send(&mut ws, &json!({"op": "credit", "id": "c", "n": 3})).await;
    let second = until_msgs(&mut ws, 3).await;
    eventually(
        "the subscription to wait for credit again",
        Duration::from_secs(10),
        || async { (metric(&app, "jetway_ws_credit_stalls_total").await >= 2).then_some(()) },
    )
    .await;
    let after = fence(&mut ws).await;

    assert_eq!(shape(&first), strings(&["subscribed", "msg:1", "msg:2"]));
    assert!(between.is_empty(), "sent beyond the credit: {between:#?}");
    assert_eq!(shape(&second), strings(&["msg:3", "msg:4", "msg:5"]));
    assert!(second.iter().all(|f| f["sub"] == "c"), "{second:#?}");
    assert!(after.is_empty(), "sent beyond the credit: {after:#?}");
}

/// A binary `msg` frame split into its JSON header and payload; any other frame is text.
enum Framed {
    Binary(Value, Vec<u8>),
    Text(Value),
}

async fn next_framed(ws: &mut Ws) -> Framed {
    loop {
        let next = tokio::time::timeout(READ_TIMEOUT, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        match next {
            Message::Binary(bytes) => {
                let len = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
                let header: Value =
                    serde_json::from_slice(&bytes[4..4 + len]).expect("a JSON header");
                return Framed::Binary(header, bytes[4 + len..].to_vec());
            }
            Message::Text(text) => {
                return Framed::Text(serde_json::from_str(text.as_str()).expect("JSON text"));
            }
            Message::Close(close) => panic!("closed: {close:?}"),
            _ => {}
        }
    }
}

async fn binary_encoding_carries_each_payload_as_it_is_after_a_json_header(topology: Topology) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 0).await;
    let payloads: [&[u8]; 3] = [&[0, 159, 255, b'"', b'\\'], b"plain text", br#"{"a":1}"#];
    for payload in payloads {
        publish_direct(&app.js, "orders.new", Bytes::copy_from_slice(payload)).await;
    }

    // The single-stream endpoint: replay, caught_up (text), then a live message.
    let mut ws = connect(&app, &stream_ws("encoding=binary")).await;
    for (i, payload) in payloads.iter().enumerate() {
        let Framed::Binary(header, body) = next_framed(&mut ws).await else {
            panic!("message {i} is not a binary frame");
        };
        assert_eq!(header["type"], "msg", "{header}");
        assert_eq!(header["seq"], i as u64 + 1, "{header}");
        assert_eq!(header["stream"], STREAM);
        assert_eq!(header["subject"], "orders.new");
        assert!(header["time"].is_string(), "{header}");
        assert!(
            header.get("data").is_none() && header.get("encoding").is_none(),
            "{header}"
        );
        assert!(header.get("sub").is_none(), "{header}");
        assert_eq!(body, *payload, "payload {i} byte for byte");
    }
    let Framed::Text(caught_up) = next_framed(&mut ws).await else {
        panic!("caught_up is text");
    };
    assert_eq!(caught_up["type"], "caught_up");
    publish_direct(
        &app.js,
        "orders.new",
        Bytes::from_static(b"live \x00 bytes"),
    )
    .await;
    let Framed::Binary(header, body) = next_framed(&mut ws).await else {
        panic!("the live message is not a binary frame");
    };
    assert_eq!(header["seq"], 4);
    assert_eq!(body, b"live \x00 bytes");

    // The multiplexed endpoint: the subscription id is in the header.
    let mut mux = connect(&app, "/v1/ws").await;
    send(
        &mut mux,
        &json!({"op": "subscribe", "id": "raw", "stream": STREAM, "start_seq": 3, "encoding": "binary"}),
    )
    .await;
    let Framed::Text(subscribed) = next_framed(&mut mux).await else {
        panic!("subscribed is text");
    };
    assert_eq!(subscribed["type"], "subscribed");
    for seq in [3u64, 4] {
        let Framed::Binary(header, body) = next_framed(&mut mux).await else {
            panic!("message {seq} is not a binary frame");
        };
        assert_eq!(header["sub"], "raw", "{header}");
        assert_eq!(header["seq"], seq, "{header}");
        let expected: &[u8] = if seq == 3 {
            payloads[2]
        } else {
            b"live \x00 bytes"
        };
        assert_eq!(body, expected);
    }

    // SSE carries text only.
    let refused = app
        .http
        .get(app.url(&format!("/v1/streams/{STREAM}/events?encoding=binary")))
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), 400);
}

async fn multiplexed_publish_ops_sent_back_to_back_are_all_acked_and_stored_in_op_order(
    topology: Topology,
) {
    const OPS: usize = 1000;
    let app = spawn_app_on(topology).await;
    orders_with(&app, 0).await;
    let mut ws = connect(&app, "/v1/ws").await;
    // More than the 256 the socket keeps in flight, without waiting for any answer.
    for i in 0..OPS {
        ws.feed(Message::text(
            json!({"op": "publish", "id": format!("p{i}"), "subject": "orders.new", "data": format!("op {i}")})
                .to_string(),
        ))
        .await
        .expect("queue frame");
    }
    ws.flush().await.expect("send frames");
    let frames = collect_until(&mut ws, Duration::from_secs(60), |frames| {
        frames.len() >= OPS
    })
    .await;
    let mut seq_of = std::collections::HashMap::new();
    for frame in &frames {
        assert_eq!(frame["type"], "publish_ack", "{frame}");
        let id = frame["id"].as_str().expect("id").to_owned();
        let seq = frame["seq"].as_u64().expect("seq");
        assert!(seq_of.insert(id, seq).is_none(), "answered twice: {frame}");
    }
    let stored = app.stored(STREAM).await;
    assert_eq!(stored.len(), OPS, "each op stored once");
    // Stored in the order the ops were sent, and each ack names its own message.
    for (i, message) in stored.iter().enumerate() {
        assert_eq!(message.payload.as_ref(), format!("op {i}").as_bytes());
        assert_eq!(seq_of[&format!("p{i}")], message.sequence);
    }
}

/// A publish JetStream refuses is answered, for its op alone, with the problem the HTTP publish
/// answers; the ops around it are stored.
async fn multiplexed_publish_refused_by_jetstream_gets_the_http_problem_and_its_neighbours_are_stored(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    app.create_stream_with(jetstream::stream::Config {
        name: "CAPPED".to_owned(),
        subjects: vec!["capped.>".to_owned()],
        max_messages: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await;
    orders_with(&app, 0).await;
    let mut ws = connect(&app, "/v1/ws").await;
    for (id, subject) in [
        ("o1", "orders.new"),
        ("c1", "capped.a"),
        ("c2", "capped.a"),
        ("o2", "orders.new"),
    ] {
        ws.feed(Message::text(
            json!({"op": "publish", "id": id, "subject": subject, "data": id}).to_string(),
        ))
        .await
        .expect("queue frame");
    }
    ws.flush().await.expect("send frames");
    let frames = collect_until(&mut ws, READ_TIMEOUT, |frames| frames.len() >= 4).await;
    let by_id: std::collections::HashMap<&str, &Value> = frames
        .iter()
        .map(|f| (f["id"].as_str().expect("an answer names its op"), f))
        .collect();
    for id in ["o1", "c1", "o2"] {
        assert_eq!(by_id[id]["type"], "publish_ack", "{:?}", by_id[id]);
    }
    let refused = by_id["c2"];
    assert_eq!(refused["type"], "error", "{refused}");

    // The same refusal over HTTP.
    let http = app
        .http
        .post(app.url("/v1/publish/capped.a"))
        .body("c3")
        .send()
        .await
        .expect("answer");
    let status = http.status().as_u16();
    let http_problem: Value = http.json().await.expect("problem");
    assert_eq!(
        refused["problem"]["status"], status,
        "{refused} vs {http_problem}"
    );
    assert_eq!(refused["problem"]["type"], http_problem["type"]);
    assert_eq!(
        refused["problem"]["jetstream_code"], http_problem["jetstream_code"],
        "{refused} vs {http_problem}"
    );
    assert_eq!(
        (status, &refused["problem"]["jetstream_code"]),
        (507, &json!(10077)),
        "JetStream's 'maximum messages exceeded': {refused}"
    );

    let payloads: Vec<Bytes> = app
        .stored(STREAM)
        .await
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(payloads, [Bytes::from("o1"), Bytes::from("o2")]);
    let capped: Vec<Bytes> = app
        .stored("CAPPED")
        .await
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(capped, [Bytes::from("c1")]);
}

/// A publish to a subject a plain NATS subscriber takes (no stream) gets no PubAck: the op is
/// answered 504 after the publish timeout. A reply that is not a PubAck is answered 503. The
/// socket keeps publishing meanwhile.
#[tokio::test]
async fn multiplexed_publish_without_a_pub_ack_times_out_and_a_reply_that_is_not_one_is_refused() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let app = spawn_app_with(|config| config.publish_timeout = TIMEOUT).await;
    orders_with(&app, 0).await;
    let mut impostor = app.nats.subscribe("plain.>").await.expect("subscribe");
    app.nats.flush().await.expect("flush");
    let answering = app.nats.clone();
    let replier = tokio::spawn(async move {
        while let Some(message) = impostor.next().await {
            if message.subject.as_str() == "plain.answered"
                && let Some(reply) = message.reply
            {
                answering
                    .publish(reply, Bytes::from_static(b"not a PubAck"))
                    .await
                    .expect("reply");
            }
        }
    });

    let mut ws = connect(&app, "/v1/ws").await;
    let started = Instant::now();
    for (id, subject) in [
        ("silent", "plain.silent"),
        ("answered", "plain.answered"),
        ("stored", "orders.new"),
    ] {
        send(
            &mut ws,
            &json!({"op": "publish", "id": id, "subject": subject, "data": id}),
        )
        .await;
    }
    let mut frames = collect_until(&mut ws, READ_TIMEOUT, |frames| frames.len() >= 2).await;
    let quick = started.elapsed();
    frames.extend(collect_until(&mut ws, READ_TIMEOUT, |_| true).await);
    let waited = started.elapsed();
    replier.abort();

    let ids: Vec<&str> = frames
        .iter()
        .map(|f| f["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        ids[2], "silent",
        "the unanswered op is answered last: {frames:#?}"
    );
    let by_id: std::collections::HashMap<&str, &Value> = ids.iter().copied().zip(&frames).collect();
    assert_eq!(by_id["stored"]["type"], "publish_ack", "{frames:#?}");
    assert_eq!(by_id["answered"]["problem"]["status"], 503, "{frames:#?}");
    let silent = by_id["silent"];
    assert_eq!(silent["problem"]["status"], 504, "{silent}");
    assert!(
        silent["problem"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Idempotency-Key")),
        "{silent}"
    );
    assert!(
        quick < TIMEOUT,
        "the other ops waited for the silent one: {quick:?}"
    );
    assert!(
        waited >= TIMEOUT && waited < TIMEOUT * 3,
        "timed out after {waited:?}, publish timeout {TIMEOUT:?}"
    );
    assert_eq!(app.stored(STREAM).await.len(), 1);

    // The socket still publishes.
    send(
        &mut ws,
        &json!({"op": "publish", "id": "after", "subject": "orders.new", "data": "after"}),
    )
    .await;
    let after = until_type(&mut ws, "publish_ack").await;
    assert_eq!(after.last().expect("ack")["seq"], 2);
}

/// A replay keeps two pulls open, whose deliveries JetStream interleaves: read in the order they
/// arrive, they make a gap-free sequence, and the replay never has to recreate its consumer.
async fn a_long_replay_reads_every_message_in_order_without_recreating_its_consumer(
    topology: Topology,
) {
    const COUNT: usize = 30_000;
    let app = spawn_app_on(topology).await;
    app.create_stream(STREAM, &["orders.>"]).await;
    publish_many(&app.js, "orders.new", COUNT, |i| {
        Bytes::from(format!("{:0>512}", i + 1))
    })
    .await;
    let mut ws = connect(&app, &stream_ws("start_seq=1")).await;
    let mut next_seq = 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next_seq <= COUNT as u64 {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{} of {COUNT} read", next_seq - 1);
        let frame = next_frame_within(&mut ws, left).await;
        if frame["type"] != "msg" {
            continue;
        }
        assert_eq!(frame["seq"], next_seq, "out of order or a gap");
        assert_eq!(
            frame["data"].as_str().map(|d| d.trim_start_matches('0')),
            Some(next_seq.to_string().as_str())
        );
        next_seq += 1;
    }
    assert_eq!(
        metric(&app, "jetway_replay_recoveries_total").await,
        0,
        "the replay recreated its consumer"
    );
}

async fn multiplexed_publish_with_a_repeated_idempotency_key_answers_duplicate_with_the_same_seq(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 0).await;
    let mut ws = connect(&app, "/v1/ws").await;

    let mut acks = Vec::new();
    for id in ["p1", "p2"] {
        send(
            &mut ws,
            &json!({"op": "publish", "id": id, "subject": "orders.new", "data": "once", "idempotency_key": "k-1"}),
        )
        .await;
        // One at a time: the second must find the first stored.
        acks.push(until_type(&mut ws, "publish_ack").await.pop().expect("ack"));
    }
    send(
        &mut ws,
        &json!({"op": "publish", "id": "p3", "subject": "nowhere.captured", "data": "x"}),
    )
    .await;
    let failed = until_type(&mut ws, "error").await;

    assert_eq!(
        acks,
        [
            json!({"type": "publish_ack", "id": "p1", "stream": STREAM, "seq": 1, "duplicate": false}),
            json!({"type": "publish_ack", "id": "p2", "stream": STREAM, "seq": 1, "duplicate": true}),
        ]
    );
    let stored = app.stored(STREAM).await;
    assert_eq!(
        stored.len(),
        1,
        "the repeat must not store a second message"
    );
    assert_eq!(
        stored[0].headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some("k-1")
    );
    let error = failed.last().expect("error frame");
    assert_eq!(error["id"], "p3");
    assert_eq!(error["problem"]["status"], 404, "{error}");
}

#[tokio::test]
async fn subscribe_to_unknown_stream_on_multiplexed_socket_answers_an_error_frame_and_stays_open() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/v1/ws").await;

    send(
        &mut ws,
        &json!({"op": "subscribe", "id": "s1", "stream": "NOPE"}),
    )
    .await;
    let error = next_frame(&mut ws).await;
    let rest = fence(&mut ws).await;

    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "s1");
    assert_eq!(error["problem"]["status"], 404);
    assert_eq!(error["problem"]["code"], "stream_not_found");
    assert!(rest.is_empty(), "{rest:#?}");
}

// ---------------------------------------------------------------------------------------------
// Flow control

async fn credit_3_sends_exactly_3_messages_until_more_credit_is_granted(topology: Topology) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 10).await;
    let mut ws = connect(&app, &stream_ws("credit=3")).await;

    let first = until_msgs(&mut ws, 3).await;
    eventually(
        "the subscription to wait for credit",
        Duration::from_secs(10),
        || async { (metric(&app, "jetway_ws_credit_stalls_total").await >= 1).then_some(()) },
    )
    .await;
    let between = fence(&mut ws).await;
    send(&mut ws, &json!({"op": "credit", "n": 2})).await;
    let second = until_msgs(&mut ws, 2).await;
    eventually(
        "the subscription to wait for credit again",
        Duration::from_secs(10),
        || async { (metric(&app, "jetway_ws_credit_stalls_total").await >= 2).then_some(()) },
    )
    .await;
    let after = fence(&mut ws).await;

    assert_eq!(shape(&first), strings(&["msg:1", "msg:2", "msg:3"]));
    assert!(between.is_empty(), "sent beyond the credit: {between:#?}");
    assert_eq!(shape(&second), strings(&["msg:4", "msg:5"]));
    assert!(after.is_empty(), "sent beyond the credit: {after:#?}");
}

#[tokio::test]
async fn client_that_reads_nothing_holds_buffered_bytes_under_the_bound_and_pauses_the_replay() {
    const BOUND: i64 = 64 * 1024;
    const COUNT: u64 = 20_000;
    let app = spawn_app_with(|config| {
        config.ws_max_buffered_bytes = u64::try_from(BOUND).expect("bound");
    })
    .await;
    app.create_stream(STREAM, &["orders.>"]).await;
    let count = usize::try_from(COUNT).expect("count");
    publish_many(&app.js, "orders.new", count, |i| {
        Bytes::from(format!("{i:0>1024}"))
    })
    .await;

    let mut ws = connect(&app, &stream_ws("")).await;
    let app = &app;
    // Read nothing: wait until the gateway's queue and the replay's consumer stop moving.
    let last: Arc<Mutex<Option<(i64, u64)>>> = Arc::default();
    let (buffered, paused) = eventually(
        "the buffered bytes and the replay to settle",
        Duration::from_secs(30),
        || {
            let last = last.clone();
            async move {
                let buffered = metric(app, "jetway_ws_buffered_bytes").await;
                let consumer = stream_consumers(app, STREAM).await.pop()?;
                let now = (buffered, consumer.num_pending);
                let before = last.lock().expect("lock").replace(now);
                (buffered > 0 && before == Some(now)).then_some((buffered, consumer))
            }
        },
    )
    .await;
    let mut samples = vec![buffered];
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for _ in 0..5 {
        tick.tick().await;
        samples.push(metric(app, "jetway_ws_buffered_bytes").await);
    }

    assert!(
        samples.iter().all(|&b| b > 0 && b <= BOUND),
        "buffered bytes outside (0, {BOUND}]: {samples:?}"
    );
    assert!(
        paused.num_pending > 0 && paused.delivered.stream_sequence < COUNT,
        "the replay delivered everything to a client that reads nothing: {paused:?}"
    );
    let only = only_consumer(app, STREAM).await;
    assert!(only.num_pending > 0, "{only:?}");

    let mut expected = 1;
    loop {
        let frame = next_frame(&mut ws).await;
        match frame["type"].as_str() {
            Some("msg") => {
                assert_eq!(frame["seq"], expected, "out of order or missing");
                expected += 1;
            }
            Some("caught_up") => {
                assert_eq!(frame["seq"], COUNT);
                break;
            }
            _ => panic!("unexpected frame: {frame}"),
        }
    }
    assert_eq!(expected, COUNT + 1);
    assert!(fence(&mut ws).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Malformed frames and close codes

#[tokio::test]
async fn malformed_frames_get_error_frames_and_the_connection_stays_open() {
    let app = spawn_app().await;
    orders_with(&app, 0).await;

    for path in [stream_ws("deliver=new"), "/v1/ws".to_owned()] {
        let mut ws = connect(&app, &path).await;
        if path.contains("deliver") {
            assert_eq!(next_frame(&mut ws).await["type"], "caught_up");
        }
        ws.send(Message::text("this is not json"))
            .await
            .expect("send");
        let not_json = next_frame(&mut ws).await;
        send(&mut ws, &json!({"op": "explode", "id": "x1"})).await;
        let unknown_op = next_frame(&mut ws).await;
        ws.send(Message::binary(vec![1u8, 2, 3]))
            .await
            .expect("send");
        let binary = next_frame(&mut ws).await;
        send(&mut ws, &json!({"op": "ack"})).await;
        let missing_field = next_frame(&mut ws).await;
        send(&mut ws, &json!({"op": "ping", "id": "still-there"})).await;
        let pong = next_frame(&mut ws).await;

        for error in [&not_json, &unknown_op, &binary, &missing_field] {
            assert_eq!(error["type"], "error", "{path}: {error}");
            assert_eq!(error["problem"]["status"], 400, "{path}: {error}");
            assert!(
                error["problem"]["detail"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{path}: {error}"
            );
        }
        assert_eq!(unknown_op["id"], "x1", "{path}");
        assert_eq!(pong, json!({"type": "pong", "id": "still-there"}), "{path}");
    }
}

#[tokio::test]
async fn forged_ack_id_over_the_socket_answers_ack_result_400_and_the_connection_stays_open() {
    let app = spawn_app().await;
    orders_with(&app, 0).await;
    let mut ws = connect(&app, "/v1/ws").await;

    send(
        &mut ws,
        &json!({"op": "ack", "ack_id": "not-a-real-ack-id", "id": "f1"}),
    )
    .await;
    let answer = next_frame(&mut ws).await;
    let rest = fence(&mut ws).await;

    assert!(
        answer["type"] == "error" || answer["type"] == "ack_result",
        "{answer}"
    );
    assert_eq!(answer["id"], "f1", "{answer}");
    let status = answer["problem"]["status"]
        .as_u64()
        .or_else(|| answer["status"].as_u64());
    assert_eq!(status, Some(400), "{answer}");
    assert!(rest.is_empty(), "{rest:#?}");
}

#[tokio::test]
async fn frame_bigger_than_ws_max_message_bytes_closes_the_socket_with_1009() {
    let app = spawn_app_with(|config| config.ws_max_message_bytes = 1024).await;
    let mut ws = connect(&app, "/v1/ws").await;

    let big = json!({"op": "ping", "id": "x".repeat(4096)});
    send(&mut ws, &big).await;
    let (frames, code) = until_close(&mut ws, READ_TIMEOUT).await;

    assert!(frames.is_empty(), "{frames:#?}");
    assert_eq!(code, Some(1009));
}

#[tokio::test]
async fn close_op_closes_the_socket_with_1000() {
    let app = spawn_app().await;
    orders_with(&app, 0).await;

    for path in [stream_ws("deliver=new"), "/v1/ws".to_owned()] {
        let mut ws = connect(&app, &path).await;
        send(&mut ws, &json!({"op": "close"})).await;
        let (frames, code) = until_close(&mut ws, READ_TIMEOUT).await;

        assert!(
            frames.iter().all(|f| f["type"] == "caught_up"),
            "{path}: {frames:#?}"
        );
        assert_eq!(code, Some(1000), "{path}");
    }
}

#[tokio::test]
async fn gateway_shutdown_closes_open_sockets_with_1001() {
    let mut app = spawn_app().await;
    orders_with(&app, 1).await;
    let mut simple = connect(&app, &stream_ws("")).await;
    until_type(&mut simple, "caught_up").await;
    let mut multiplexed = connect(&app, "/v1/ws").await;
    assert_eq!(fence(&mut multiplexed).await, Vec::<Value>::new());

    let started = Instant::now();
    let ((), (_, simple_code), (_, multiplexed_code)) = tokio::join!(
        app.stop_gateway(),
        until_close(&mut simple, Duration::from_secs(5)),
        until_close(&mut multiplexed, Duration::from_secs(5)),
    );

    assert_eq!(simple_code, Some(1001));
    assert_eq!(multiplexed_code, Some(1001));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// NATS outage

#[tokio::test]
async fn nats_server_restart_mid_subscription_keeps_delivering_without_gap_or_duplicate() {
    let mut app =
        spawn_app_with(|config| config.replay_heartbeat = Duration::from_millis(500)).await;
    orders_with(&app, 3).await;
    let mut ws = connect(&app, &stream_ws("")).await;
    let before = until_type(&mut ws, "caught_up").await;
    assert_eq!(
        shape(&before),
        strings(&["msg:1", "msg:2", "msg:3", "caught_up:3"])
    );
    // The replay hands over to the live feed once caught up: one consumer remains.
    let lost = eventually(
        "the replay to run on one consumer",
        Duration::from_secs(10),
        || async {
            let consumers = stream_consumers(&app, STREAM).await;
            (consumers.len() == 1).then(|| consumers[0].name.clone())
        },
    )
    .await;

    app.server.stop();
    app.server.restart().await;
    let client = async_nats::connect(app.server.url())
        .await
        .expect("fresh client");
    let js = jetstream::new(client);
    eventually(
        "JetStream to recover the stream",
        Duration::from_secs(20),
        || async { js.get_stream(STREAM).await.ok().map(|_| ()) },
    )
    .await;
    publish_many(&js, "orders.new", 3, |i| Bytes::from(format!("after {i}"))).await;
    let mut after = collect_until(&mut ws, Duration::from_secs(30), |frames| {
        frames.iter().any(|f| f["type"] == "msg" && f["seq"] == 6)
            || frames.iter().any(|f| f["type"] == "error")
    })
    .await;
    after.extend(fence(&mut ws).await);

    assert_eq!(
        shape(&after),
        strings(&["msg:4", "msg:5", "msg:6"]),
        "{after:#?}"
    );
    assert_eq!(after[0]["data"], "after 0");
    let consumers: Vec<consumer::Info> = js
        .get_stream(STREAM)
        .await
        .expect("stream")
        .consumers()
        .try_collect()
        .await
        .expect("list consumers");
    assert_eq!(consumers.len(), 1, "{consumers:#?}");
    assert_ne!(
        consumers[0].name, lost,
        "the replay's consumer was not recreated"
    );
    assert_eq!(consumers[0].delivered.stream_sequence, 6);
}

// ---------------------------------------------------------------------------------------------
// HTTP answers before the upgrade

#[tokio::test]
async fn websocket_to_unknown_stream_is_refused_with_404_problem_before_the_upgrade() {
    let app = spawn_app().await;

    let refused = connect_async(format!("ws://{}/v1/streams/NOPE/ws", app.addr)).await;
    let problem_response = upgrade_request(&app, "/v1/streams/NOPE/ws").await;

    match refused {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 404);
        }
        Err(other) => panic!("handshake failed otherwise: {other:?}"),
        Ok(_) => panic!("handshake to an unknown stream succeeded"),
    }
    let body = problem(problem_response, 404, "stream_not_found").await;
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("NOPE")),
        "{body}"
    );
}

#[tokio::test]
async fn websocket_with_unknown_consumer_is_refused_with_404_problem_before_the_upgrade() {
    let app = spawn_app().await;
    orders_with(&app, 1).await;

    let response = upgrade_request(&app, &stream_ws("consumer=nobody")).await;

    problem(response, 404, "consumer_not_found").await;
}

#[tokio::test]
async fn get_without_upgrade_returns_426_problem() {
    let app = spawn_app().await;
    orders_with(&app, 0).await;

    for path in [stream_ws(""), "/v1/ws".to_owned()] {
        let response = app.http.get(app.url(&path)).send().await.expect("get");
        problem(response, 426, "upgrade_required").await;
    }
    assert!(stream_consumers(&app, STREAM).await.is_empty());
}

#[tokio::test]
async fn invalid_query_is_refused_with_400_problem_before_the_upgrade() {
    let app = spawn_app().await;
    orders_with(&app, 1).await;
    create_durable(&app, "workers", &json!({})).await;

    for query in [
        "deliver=sideways",
        "start_seq=0",
        "start_seq=1&start_time=2024-01-01T00:00:00Z",
        "consumer=workers&start_seq=1",
        "start_seq=abc",
        "encoding=hex",
        "bogus=1",
    ] {
        let response = upgrade_request(&app, &stream_ws(query)).await;
        let body = problem(response, 400, "invalid_parameter").await;
        assert!(body["detail"].is_string(), "{query}: {body}");
    }
    let consumers = stream_consumers(&app, STREAM).await;
    assert_eq!(consumers.len(), 1, "only the durable: {consumers:#?}");
}

// Every test above that takes a topology runs on one server (R1) and on a 3-node cluster (R3).
crate::on_r1_and_r3!(
    replay_with_deliver_all_sends_every_stored_message_in_order_then_caught_up,
    replay_from_start_seq_sends_that_message_and_the_rest_without_a_gap,
    replay_from_start_time_of_a_stored_message_starts_at_that_message,
    replay_with_deliver_last_sends_only_the_last_message_then_live_ones,
    replay_with_deliver_new_sends_caught_up_at_once_and_only_live_messages,
    replay_with_deliver_last_per_subject_sends_the_last_message_of_each_subject_in_order,
    replay_with_one_filter_sends_only_that_subject_stored_and_live,
    caught_up_is_sent_once_after_the_replayed_messages_and_before_live_ones,
    start_seq_before_the_first_message_after_a_purge_sends_a_gap_then_the_rest,
    message_deleted_in_the_middle_is_reported_as_a_gap_between_its_neighbours,
    resume_with_start_seq_after_the_last_seen_gets_exactly_the_rest,
    ack_mode_ack_over_the_socket_moves_the_ack_floor_and_unacked_message_is_redelivered,
    ack_mode_nak_with_delay_over_the_socket_redelivers_after_the_delay,
    multiplexed_subscribe_with_consumer_delivers_ack_ids_and_acks_over_the_socket,
    multiplexed_two_subscriptions_and_publish_answer_publish_ack_and_deliver_to_the_matching_sub,
    multiplexed_credit_for_a_subscription_grants_exactly_that_many_more_messages,
    multiplexed_publish_with_a_repeated_idempotency_key_answers_duplicate_with_the_same_seq,
    multiplexed_publish_ops_sent_back_to_back_are_all_acked_and_stored_in_op_order,
    a_long_replay_reads_every_message_in_order_without_recreating_its_consumer,
    multiplexed_publish_refused_by_jetstream_gets_the_http_problem_and_its_neighbours_are_stored,
    binary_encoding_carries_each_payload_as_it_is_after_a_json_header,
    credit_3_sends_exactly_3_messages_until_more_credit_is_granted,
    unsubscribe_deletes_the_replay_consumer_and_stops_its_messages,
);
