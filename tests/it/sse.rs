//! Server-Sent Events: `GET /v1/streams/{stream}/events`: replay with `id: <seq>` on every
//! message, `caught_up` and `gap` events, live tail, `Last-Event-ID` resume, keep-alive comments,
//! and the answers before the stream starts (404, 400).
//!
//! Events are parsed from reqwest's chunk stream; every read has a deadline.

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use crate::harness::{TestApp, Topology, json, problem, spawn_app, spawn_app_on, spawn_app_with};
use crate::ws::{READ_TIMEOUT, publish_direct, publish_many, stream_consumers};

const STREAM: &str = "ORDERS";

/// One block of an event stream (the lines up to a blank line).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct SseBlock {
    pub(crate) event: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) data: Vec<String>,
    /// Comment lines (`:` …), without the colon.
    comments: Vec<String>,
}

impl SseBlock {
    fn is_comment_only(&self) -> bool {
        self.event.is_none() && self.id.is_none() && self.data.is_empty()
    }

    /// The event type as `EventSource` sees it (`message` when unnamed).
    pub(crate) fn kind(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    /// The data lines as one JSON document.
    pub(crate) fn json(&self) -> Value {
        let data = self.data.join("\n");
        serde_json::from_str(&data).unwrap_or_else(|err| panic!("data is not JSON ({err}): {data}"))
    }
}

/// Reads an open `text/event-stream` response block by block.
pub(crate) struct SseReader {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: String,
}

impl SseReader {
    pub(crate) fn new(response: reqwest::Response) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next block, comment-only ones included; fails when the stream ends or after
    /// `timeout`.
    async fn next_block_within(&mut self, timeout: Duration) -> SseBlock {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let raw: String = self.buffer.drain(..end + 2).collect();
                return parse_block(&raw);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no complete event within {timeout:?}; buffered: {:?}",
                        self.buffer
                    )
                })
                .unwrap_or_else(|| panic!("the event stream ended; buffered: {:?}", self.buffer))
                .expect("read event stream");
            let text = std::str::from_utf8(&chunk).expect("UTF-8 event stream");
            self.buffer.push_str(&text.replace("\r\n", "\n"));
        }
    }

    /// The next event, skipping keep-alive comments.
    pub(crate) async fn next_event(&mut self) -> SseBlock {
        let deadline = Instant::now() + READ_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no event within {READ_TIMEOUT:?}");
            let block = self.next_block_within(left).await;
            if !block.is_comment_only() {
                return block;
            }
        }
    }

    /// Events up to and including the first of type `kind`.
    pub(crate) async fn until_kind(&mut self, kind: &str) -> Vec<SseBlock> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await;
            let done = event.kind() == kind;
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// Whether the stream ends (cleanly) within `timeout`, ignoring comments.
    async fn ends_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(chunk))) => {
                    self.buffer.push_str(&String::from_utf8_lossy(&chunk));
                }
            }
        }
    }
}

fn parse_block(raw: &str) -> SseBlock {
    let mut block = SseBlock::default();
    for line in raw.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix(':') {
            block.comments.push(comment.trim_start().to_owned());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "event" => block.event = Some(value),
            "id" => block.id = Some(value),
            "data" => block.data.push(value),
            "retry" => {}
            other => panic!("unknown SSE field {other:?} in {raw:?}"),
        }
    }
    block
}

/// GET the event stream of `ORDERS` with a query (`""` for none) and optional `Last-Event-ID`.
async fn get_events(app: &TestApp, query: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut path = format!("/v1/streams/{STREAM}/events");
    if !query.is_empty() {
        path = format!("{path}?{query}");
    }
    let mut request = app.http.get(app.url(&path));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.expect("events request")
}

/// Opens the event stream, asserting 200 and `text/event-stream`.
async fn open_events(app: &TestApp, query: &str, last_event_id: Option<&str>) -> SseReader {
    let response = get_events(app, query, last_event_id).await;
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("content type")
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "content-type {content_type}"
    );
    SseReader::new(response)
}

async fn orders_with(app: &TestApp, count: usize) {
    app.create_stream(STREAM, &["orders.>"]).await;
    publish_many(&app.js, "orders.new", count, |i| {
        Bytes::from(format!("m{}", i + 1))
    })
    .await;
}

/// `kind:id` of each event (`message:3`, `caught_up:`), for asserting the whole shape at once.
fn shape(events: &[SseBlock]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{}:{}", e.kind(), e.id.as_deref().unwrap_or("")))
        .collect()
}

async fn create_durable(app: &TestApp, body: &Value) {
    let response = app
        .http
        .put(app.url(&format!("/v1/streams/{STREAM}/consumers/workers")))
        .json(body)
        .send()
        .await
        .expect("put consumer");
    json(response, 201).await;
}

async fn durable_info(app: &TestApp) -> async_nats::jetstream::consumer::Info {
    app.js
        .get_stream(STREAM)
        .await
        .expect("stream")
        .consumer_info("workers")
        .await
        .expect("consumer info")
}

/// POST /v1/acks with one ack, asserting 200.
async fn ack(app: &TestApp, ack_id: &Value) -> Value {
    assert!(ack_id.is_string(), "no ack id: {ack_id}");
    let response = app
        .http
        .post(app.url("/v1/acks"))
        .json(&json!({"acks": [{"ack_id": ack_id, "action": "ack"}]}))
        .send()
        .await
        .expect("acks request");
    json(response, 200).await
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------

async fn events_replay_with_seq_ids_then_caught_up_then_live_as_text_event_stream(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    app.create_stream(STREAM, &["orders.>"]).await;
    for n in 1..=2 {
        let response = app
            .publish(
                "orders.new",
                format!(r#"{{"n":{n}}}"#),
                &[("content-type", "application/json")],
            )
            .await;
        json(response, 201).await;
    }
    let mut events = open_events(&app, "", None).await;

    let replayed = events.until_kind("caught_up").await;
    publish_direct(&app.js, "orders.new", "live").await;
    let live = events.next_event().await;

    assert_eq!(
        shape(&replayed),
        strings(&["message:1", "message:2", "caught_up:"])
    );
    let first = replayed[0].json();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["stream"], STREAM);
    assert_eq!(first["subject"], "orders.new");
    assert_eq!(first["data"], json!({"n": 1}));
    assert_eq!(first["encoding"], "json");
    assert_eq!(replayed[2].json(), json!({"seq": 2}));
    assert_eq!(shape(std::slice::from_ref(&live)), strings(&["message:3"]));
    assert_eq!(live.json()["seq"], 3);
    assert_eq!(live.json()["data"], "live");
}

async fn events_with_last_event_id_resume_with_exactly_the_rest(topology: Topology) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 5).await;
    let mut first = open_events(&app, "start_seq=1", None).await;
    let seen = [first.next_event().await, first.next_event().await];
    assert_eq!(shape(&seen), strings(&["message:1", "message:2"]));
    drop(first);

    // The URL of the first connection, as EventSource repeats it; Last-Event-ID wins.
    let mut resumed = open_events(&app, "start_seq=1", Some("2")).await;
    let mut rest = resumed.until_kind("caught_up").await;
    publish_direct(&app.js, "orders.new", "live").await;
    rest.push(resumed.next_event().await);

    assert_eq!(
        shape(&rest),
        strings(&[
            "message:3",
            "message:4",
            "message:5",
            "caught_up:",
            "message:6"
        ])
    );
    assert_eq!(rest[0].json()["data"], "m3");
    assert_eq!(rest[3].json(), json!({"seq": 5}));
}

#[tokio::test]
async fn events_send_keepalive_comments_while_idle() {
    let app = spawn_app_with(|config| config.sse_keepalive = Duration::from_millis(200)).await;
    orders_with(&app, 0).await;
    let mut events = open_events(&app, "deliver=new", None).await;
    let caught_up = events.next_event().await;

    let comment = loop {
        let block = events.next_block_within(Duration::from_secs(5)).await;
        assert!(
            block.is_comment_only(),
            "only comments while idle: {block:?}"
        );
        if !block.comments.is_empty() {
            break block;
        }
    };

    assert_eq!(caught_up.kind(), "caught_up");
    assert_eq!(comment.comments, ["keep-alive"]);
}

#[tokio::test]
async fn events_start_seq_before_the_first_message_after_a_purge_send_a_gap_event_then_the_rest() {
    let app = spawn_app().await;
    orders_with(&app, 4).await;
    let purged = app
        .http
        .post(app.url(&format!("/v1/streams/{STREAM}/purge")))
        .send()
        .await
        .expect("purge");
    json(purged, 200).await;
    publish_direct(&app.js, "orders.new", "after").await;
    let mut events = open_events(&app, "start_seq=1", None).await;

    let replayed = events.until_kind("caught_up").await;

    assert_eq!(
        shape(&replayed),
        strings(&["gap:", "message:5", "caught_up:"])
    );
    assert_eq!(replayed[0].json(), json!({"from": 1, "to": 4}));
    assert_eq!(replayed[1].json()["data"], "after");
}

async fn events_with_filter_send_only_matching_subjects(topology: Topology) {
    let app = spawn_app_on(topology).await;
    app.create_stream(STREAM, &["orders.>"]).await;
    for subject in ["orders.a", "orders.b", "orders.c", "orders.a"] {
        publish_direct(&app.js, subject, subject).await;
    }
    let mut events = open_events(&app, "filter=orders.a,orders.c", None).await;

    let replayed = events.until_kind("caught_up").await;

    assert_eq!(
        shape(&replayed),
        strings(&["message:1", "message:3", "message:4", "caught_up:"])
    );
}

async fn events_with_consumer_carry_ack_ids_and_an_ack_moves_the_ack_floor(topology: Topology) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 2).await;
    create_durable(&app, &json!({"ack_wait": "30s"})).await;
    let mut events = open_events(&app, "consumer=workers", None).await;

    let delivered = [events.next_event().await, events.next_event().await];
    let acked = ack(&app, &delivered[0].json()["ack_id"]).await;

    assert_eq!(shape(&delivered), strings(&["message:1", "message:2"]));
    assert_eq!(delivered[0].json()["delivered"], 1);
    assert_eq!(acked["results"][0]["status"], 200, "{acked}");
    let info = durable_info(&app).await;
    assert_eq!(info.ack_floor.stream_sequence, 1);
    assert_eq!(info.num_ack_pending, 1);
}

async fn events_with_consumer_reconnecting_with_last_event_id_continue_from_the_durable_consumer(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    orders_with(&app, 3).await;
    create_durable(&app, &json!({"ack_wait": "1s"})).await;
    let mut first = open_events(&app, "consumer=workers", None).await;
    let seen = first.next_event().await;
    assert_eq!(seen.id.as_deref(), Some("1"));
    ack(&app, &seen.json()["ack_id"]).await;
    drop(first);

    // EventSource reconnects to the same URL and sends the last id it saw.
    let response = get_events(&app, "consumer=workers", Some("1")).await;
    let status = response.status().as_u16();
    assert_eq!(
        status,
        200,
        "reconnect refused: {}",
        response.text().await.unwrap_or_default()
    );
    let next = SseReader::new(response).until_kind("message").await.pop();

    let next = next.expect("message event");
    assert_eq!(next.id.as_deref(), Some("2"), "{next:?}");
    assert!(next.json()["ack_id"].is_string());
}

#[tokio::test]
async fn events_for_a_durable_consumer_deleted_mid_stream_send_an_error_event_and_end() {
    let app = spawn_app_with(|config| config.replay_heartbeat = Duration::from_millis(500)).await;
    orders_with(&app, 1).await;
    create_durable(&app, &json!({"ack_wait": "30s"})).await;
    let mut events = open_events(&app, "consumer=workers", None).await;
    events.next_event().await;

    let stream = app.js.get_stream(STREAM).await.expect("stream");
    assert!(
        stream
            .delete_consumer("workers")
            .await
            .expect("delete")
            .success
    );
    let error = events.until_kind("error").await.pop().expect("error event");
    let ended = events.ends_within(READ_TIMEOUT).await;

    assert_eq!(error.json()["code"], "consumer_not_found", "{error:?}");
    assert_eq!(error.json()["status"], 404, "{error:?}");
    assert!(ended, "the event stream stayed open after its error event");
}

#[tokio::test]
async fn events_for_unknown_stream_return_404_problem() {
    let app = spawn_app().await;

    let response = app
        .http
        .get(app.url("/v1/streams/NOPE/events"))
        .send()
        .await
        .expect("events request");

    problem(response, 404, "stream_not_found").await;
}

#[tokio::test]
async fn events_with_invalid_query_or_last_event_id_return_400_problem_and_create_no_consumer() {
    let app = spawn_app().await;
    orders_with(&app, 1).await;

    for query in [
        "deliver=sideways",
        "start_seq=0",
        "start_seq=1&start_time=2024-01-01T00:00:00Z",
        "consumer=workers&deliver=all",
        "credit=5",
    ] {
        let response = get_events(&app, query, None).await;
        problem(response, 400, "invalid_parameter").await;
    }
    let response = get_events(&app, "", Some("not-a-seq")).await;
    problem(response, 400, "invalid_header").await;
    assert!(stream_consumers(&app, STREAM).await.is_empty());
}

#[tokio::test]
async fn gateway_shutdown_ends_an_open_event_stream() {
    let mut app = spawn_app().await;
    orders_with(&app, 1).await;
    let mut events = open_events(&app, "", None).await;
    events.until_kind("caught_up").await;

    let started = Instant::now();
    let ((), ended) = tokio::join!(
        app.stop_gateway(),
        events.ends_within(Duration::from_secs(5))
    );

    assert!(ended, "the event stream stayed open through shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
}

// Every test above that takes a topology runs on one server (R1) and on a 3-node cluster (R3).
crate::on_r1_and_r3!(
    events_replay_with_seq_ids_then_caught_up_then_live_as_text_event_stream,
    events_with_last_event_id_resume_with_exactly_the_rest,
    events_with_consumer_carry_ack_ids_and_an_ack_moves_the_ack_floor,
    events_with_consumer_reconnecting_with_last_event_id_continue_from_the_durable_consumer,
    events_with_filter_send_only_matching_subjects,
);
