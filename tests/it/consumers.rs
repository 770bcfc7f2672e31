//! Durable pull consumers: administration, long-poll fetch, acks (ack, nak with delay, term,
//! progress) across gateway replicas and restarts, ack id integrity, and dead letters.
//!
//! Server-side state is read with the direct client (`app.js`): the consumer's ack floor,
//! `num_ack_pending`, `num_pending`, `num_redelivered`, and what a dead-letter stream stores.
//! Timing checks measure elapsed time around long-poll fetches instead of sleeping: a fetch
//! whose `wait` covers a window and returns empty shows that nothing was delivered in it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::harness::{
    Gateway, TestApp, Topology, eventually, json, problem, spawn_app_on_with, spawn_app_with,
    spawn_gateway,
};

/// The ack secret gateways share in these tests.
const SECRET: &str = "s3cret";
const STREAM: &str = "ORDERS";
const CONSUMER: &str = "workers";

/// A gateway reachable over HTTP: the test app's or a further replica.
trait Endpoint {
    fn client(&self) -> &reqwest::Client;
    fn endpoint(&self, path: &str) -> String;
}

impl Endpoint for TestApp {
    fn client(&self) -> &reqwest::Client {
        &self.http
    }
    fn endpoint(&self, path: &str) -> String {
        self.url(path)
    }
}

impl Endpoint for Gateway {
    fn client(&self) -> &reqwest::Client {
        &self.http
    }
    fn endpoint(&self, path: &str) -> String {
        self.url(path)
    }
}

/// A gateway with the shared ack secret and an `ORDERS` stream on `orders.>`.
async fn orders_app() -> TestApp {
    orders_app_on(Topology::Single).await
}

/// The same on `topology` (an R3 stream on a cluster).
async fn orders_app_on(topology: Topology) -> TestApp {
    let app = spawn_app_on_with(topology, |config| config.ack_secret = vec![SECRET.into()]).await;
    app.create_stream(STREAM, &["orders.>"]).await;
    app
}

fn consumer_path(stream: &str, consumer: &str) -> String {
    format!("/v1/streams/{stream}/consumers/{consumer}")
}

async fn put_consumer(
    gw: &impl Endpoint,
    stream: &str,
    consumer: &str,
    body: &Value,
) -> reqwest::Response {
    gw.client()
        .put(gw.endpoint(&consumer_path(stream, consumer)))
        .json(body)
        .send()
        .await
        .expect("put consumer request")
}

/// Creates `ORDERS/<consumer>` through the gateway, asserting 201.
async fn create_consumer(gw: &impl Endpoint, consumer: &str, body: Value) -> Value {
    json(put_consumer(gw, STREAM, consumer, &body).await, 201).await
}

async fn get(gw: &impl Endpoint, path: &str) -> reqwest::Response {
    gw.client()
        .get(gw.endpoint(path))
        .send()
        .await
        .expect("get request")
}

async fn delete(gw: &impl Endpoint, path: &str) -> reqwest::Response {
    gw.client()
        .delete(gw.endpoint(path))
        .send()
        .await
        .expect("delete request")
}

/// POST …/fetch with a JSON body.
async fn fetch(gw: &impl Endpoint, consumer: &str, body: &Value) -> reqwest::Response {
    gw.client()
        .post(gw.endpoint(&format!("{}/fetch", consumer_path(STREAM, consumer))))
        .json(body)
        .send()
        .await
        .expect("fetch request")
}

/// Fetches from `ORDERS/<consumer>`, asserting 200; answers the messages and how long it took.
async fn fetch_timed(gw: &impl Endpoint, consumer: &str, body: Value) -> (Vec<Value>, Duration) {
    let start = Instant::now();
    let response = fetch(gw, consumer, &body).await;
    let elapsed = start.elapsed();
    let body = json(response, 200).await;
    let messages = body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages array: {body}"))
        .clone();
    (messages, elapsed)
}

async fn fetch_ok(gw: &impl Endpoint, consumer: &str, body: Value) -> Vec<Value> {
    fetch_timed(gw, consumer, body).await.0
}

async fn post_acks(gw: &impl Endpoint, body: &Value) -> reqwest::Response {
    gw.client()
        .post(gw.endpoint("/v1/acks"))
        .json(body)
        .send()
        .await
        .expect("acks request")
}

/// Applies one action to one ack id, asserting the request answers `status`; answers the
/// single result.
async fn ack_one(gw: &impl Endpoint, ack_id: &str, action: &str, status: u16) -> Value {
    let body = json(
        post_acks(gw, &json!({"acks": [{"ack_id": ack_id, "action": action}]})).await,
        status,
    )
    .await;
    let results = body["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 1, "{body}");
    results[0].clone()
}

fn ack_id(message: &Value) -> String {
    message["ack_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no ack_id: {message}"))
        .to_owned()
}

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

/// Publishes directly with async-nats and answers the stream sequence.
async fn publish_direct(app: &TestApp, subject: &str, payload: impl Into<Bytes>) -> u64 {
    app.js
        .publish(subject.to_owned(), payload.into())
        .await
        .expect("publish")
        .await
        .expect("puback")
        .sequence
}

async fn publish_many(app: &TestApp, subject: &str, count: usize) {
    // Pipelined: every message is sent before any PubAck is awaited.
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        pending.push(
            app.js
                .publish(subject.to_owned(), Bytes::from(format!("message {i}")))
                .await
                .expect("publish"),
        );
    }
    for ack in pending {
        ack.await.expect("puback");
    }
}

/// Stores `count` messages on `subject` at one instant, with a JetStream atomic batch.
async fn publish_atomic_batch(app: &TestApp, subject: &str, count: usize) {
    for position in 1..=count {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Batch-Id", "batch-1");
        headers.insert("Nats-Batch-Sequence", position.to_string().as_str());
        let payload = Bytes::from(format!("message {position}"));
        if position < count {
            app.nats
                .publish_with_headers(subject.to_owned(), headers, payload)
                .await
                .expect("batch publish");
        } else {
            headers.insert("Nats-Batch-Commit", "1");
            let answer = app
                .nats
                .request_with_headers(subject.to_owned(), headers, payload)
                .await
                .expect("batch commit");
            let ack: Value = serde_json::from_slice(&answer.payload).expect("batch ack");
            assert_eq!(ack["count"], count, "batch not committed: {ack}");
        }
    }
}

/// Messages a stream stores, as JetStream reports it.
async fn stored_count(app: &TestApp, stream: &str) -> u64 {
    let stream = app.js.get_stream(stream).await.expect("stream");
    stream.get_info().await.expect("stream info").state.messages
}

fn header<'a>(message: &'a async_nats::jetstream::message::StreamMessage, name: &str) -> &'a str {
    message.headers.get(name).map_or_else(
        || panic!("no {name} header: {:?}", message.headers),
        |v| v.as_str(),
    )
}

// ---------------------------------------------------------------------------------------------
// Administration

#[tokio::test]
async fn consumer_admin_round_trip_creates_201_repeats_200_updates_200_lists_gets_and_deletes_204()
{
    let app = orders_app().await;
    publish_many(&app, "orders.new", 3).await;
    let config = json!({
        "deliver_policy": "all",
        "filter_subjects": ["orders.>"],
        "ack_wait": "45s",
        "max_deliver": 5,
        "max_ack_pending": 100,
        "max_waiting": 64,
        "inactive_threshold": "1h",
        "description": "order workers",
        "metadata": {"team": "orders"},
        "dead_letter_subject": "dlq.orders"
    });

    let created = json(put_consumer(&app, STREAM, CONSUMER, &config).await, 201).await;

    assert_eq!(created["stream"], STREAM);
    assert_eq!(created["name"], CONSUMER);
    assert_eq!(created["config"], config, "config not echoed as sent");
    assert_eq!(created["state"]["num_pending"], 3);
    assert_eq!(created["state"]["num_ack_pending"], 0);
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.config.durable_name.as_deref(), Some(CONSUMER));
    assert_eq!(stored.config.ack_policy, consumer::AckPolicy::Explicit);
    assert_eq!(stored.config.ack_wait, Duration::from_secs(45));
    assert_eq!(stored.config.max_deliver, 5);
    assert_eq!(stored.config.max_ack_pending, 100);
    assert_eq!(stored.config.max_waiting, 64);
    assert_eq!(stored.config.inactive_threshold, Duration::from_secs(3600));
    assert_eq!(
        stored
            .config
            .metadata
            .get("jetway.dead_letter_subject")
            .map(String::as_str),
        Some("dlq.orders")
    );
    assert_eq!(
        stored.config.metadata.get("team").map(String::as_str),
        Some("orders")
    );

    // The same PUT again: 200, nothing changes.
    let repeated = json(put_consumer(&app, STREAM, CONSUMER, &config).await, 200).await;
    assert_eq!(repeated["config"], config);
    assert_eq!(repeated["created"], created["created"]);

    // A compatible change: 200 and applied.
    let mut described = config.clone();
    described["description"] = json!("EU order workers");
    let updated = json(put_consumer(&app, STREAM, CONSUMER, &described).await, 200).await;
    assert_eq!(updated["config"]["description"], "EU order workers");
    assert_eq!(updated["created"], created["created"], "recreated");
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(
        stored.config.description.as_deref(),
        Some("EU order workers")
    );

    // An incompatible change: 409 and the consumer is left as it was.
    let mut from_new = described.clone();
    from_new["deliver_policy"] = json!("new");
    problem(
        put_consumer(&app, STREAM, CONSUMER, &from_new).await,
        409,
        "consumer_conflict",
    )
    .await;
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.config.deliver_policy, consumer::DeliverPolicy::All);

    let list = json(
        get(&app, &format!("/v1/streams/{STREAM}/consumers")).await,
        200,
    )
    .await;
    let names: Vec<&str> = list["consumers"]
        .as_array()
        .expect("consumers")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, [CONSUMER]);
    assert_eq!(list["consumers"][0]["config"], described);

    let got = json(get(&app, &consumer_path(STREAM, CONSUMER)).await, 200).await;
    assert_eq!(got["config"], described);
    assert_eq!(got["state"]["num_pending"], 3);
    assert_eq!(got["state"]["num_ack_pending"], 0);
    assert_eq!(got["state"]["ack_floor"]["stream_seq"], 0);

    let deleted = delete(&app, &consumer_path(STREAM, CONSUMER)).await;
    assert_eq!(deleted.status().as_u16(), 204);
    problem(
        get(&app, &consumer_path(STREAM, CONSUMER)).await,
        404,
        "consumer_not_found",
    )
    .await;
    let stream = app.js.get_stream(STREAM).await.expect("stream");
    assert!(
        stream.consumer_info(CONSUMER).await.is_err(),
        "the consumer still exists on the server"
    );
}

#[tokio::test]
async fn consumer_routes_on_unknown_stream_return_404_stream_not_found() {
    let app = orders_app().await;

    problem(
        put_consumer(&app, "NOPE", CONSUMER, &json!({})).await,
        404,
        "stream_not_found",
    )
    .await;
    problem(
        get(&app, "/v1/streams/NOPE/consumers").await,
        404,
        "stream_not_found",
    )
    .await;
    problem(
        get(&app, &consumer_path("NOPE", CONSUMER)).await,
        404,
        "stream_not_found",
    )
    .await;
    problem(
        delete(&app, &consumer_path("NOPE", CONSUMER)).await,
        404,
        "stream_not_found",
    )
    .await;
    let fetched = app
        .http
        .post(app.url(&format!("{}/fetch", consumer_path("NOPE", CONSUMER))))
        .json(&json!({"wait": "1s"}))
        .send()
        .await
        .expect("fetch request");
    problem(fetched, 404, "stream_not_found").await;

    assert!(app.js.get_stream("NOPE").await.is_err(), "stream created");
}

#[tokio::test]
async fn unknown_consumer_returns_404_consumer_not_found_for_get_delete_and_fetch() {
    let app = orders_app().await;
    publish_direct(&app, "orders.new", "x").await;

    problem(
        get(&app, &consumer_path(STREAM, "ghost")).await,
        404,
        "consumer_not_found",
    )
    .await;
    problem(
        delete(&app, &consumer_path(STREAM, "ghost")).await,
        404,
        "consumer_not_found",
    )
    .await;
    problem(
        fetch(&app, "ghost", &json!({"wait": "1s"})).await,
        404,
        "consumer_not_found",
    )
    .await;

    let stream = app.js.get_stream(STREAM).await.expect("stream");
    assert!(
        stream.consumer_info("ghost").await.is_err(),
        "a consumer was created"
    );
}

#[tokio::test]
async fn put_consumer_with_bad_duration_returns_400_invalid_body_and_creates_nothing() {
    let app = orders_app().await;

    for body in [
        json!({"ack_wait": "soon"}),
        json!({"backoff": ["1s", "later"], "max_deliver": 5}),
        json!({"inactive_threshold": 30}),
    ] {
        problem(
            put_consumer(&app, STREAM, CONSUMER, &body).await,
            400,
            "invalid_body",
        )
        .await;
    }

    let stream = app.js.get_stream(STREAM).await.expect("stream");
    assert!(stream.consumer_info(CONSUMER).await.is_err(), "created");
}

#[tokio::test]
async fn put_consumer_with_unknown_field_returns_400_invalid_body_and_creates_nothing() {
    let app = orders_app().await;

    problem(
        put_consumer(&app, STREAM, CONSUMER, &json!({"ack_wiat": "30s"})).await,
        400,
        "invalid_body",
    )
    .await;

    let stream = app.js.get_stream(STREAM).await.expect("stream");
    assert!(stream.consumer_info(CONSUMER).await.is_err(), "created");
}

#[tokio::test]
async fn put_consumer_by_start_sequence_without_opt_start_seq_returns_400_invalid_config() {
    let app = orders_app().await;

    problem(
        put_consumer(
            &app,
            STREAM,
            CONSUMER,
            &json!({"deliver_policy": "by_start_sequence"}),
        )
        .await,
        400,
        "invalid_config",
    )
    .await;

    let stream = app.js.get_stream(STREAM).await.expect("stream");
    assert!(stream.consumer_info(CONSUMER).await.is_err(), "created");
}

#[tokio::test]
async fn consumer_by_start_sequence_delivers_from_that_sequence() {
    let app = orders_app().await;
    publish_many(&app, "orders.new", 4).await;

    let created = create_consumer(
        &app,
        CONSUMER,
        json!({"deliver_policy": "by_start_sequence", "opt_start_seq": 3}),
    )
    .await;
    let messages = fetch_ok(&app, CONSUMER, json!({"max_messages": 10})).await;

    assert_eq!(created["config"]["opt_start_seq"], 3);
    assert_eq!(seqs(&messages), [3, 4]);
}

#[tokio::test]
async fn consumer_with_two_filter_subjects_delivers_only_messages_on_those_subjects() {
    let app = orders_app().await;
    for subject in [
        "orders.eu.1",
        "orders.us.1",
        "orders.asia.1",
        "orders.eu.2",
        "orders.us.2",
    ] {
        publish_direct(&app, subject, subject.to_owned()).await;
    }

    let created = create_consumer(
        &app,
        CONSUMER,
        json!({"filter_subjects": ["orders.eu.>", "orders.us.>"]}),
    )
    .await;
    let messages = fetch_ok(&app, CONSUMER, json!({"max_messages": 10})).await;

    assert_eq!(
        created["config"]["filter_subjects"],
        json!(["orders.eu.>", "orders.us.>"])
    );
    assert_eq!(created["state"]["num_pending"], 4);
    let subjects: Vec<&str> = messages
        .iter()
        .map(|m| m["subject"].as_str().expect("subject"))
        .collect();
    assert_eq!(
        subjects,
        ["orders.eu.1", "orders.us.1", "orders.eu.2", "orders.us.2"]
    );
    assert_eq!(seqs(&messages), [1, 2, 4, 5]);
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_pending, 0, "the asia message is not for it");
    assert_eq!(stored.num_ack_pending, 4);
}

// ---------------------------------------------------------------------------------------------
// Fetch

async fn fetch_then_ack_returns_delivery_metadata_and_moves_the_ack_floor(topology: Topology) {
    let app = orders_app_on(topology).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Trace", "t-1");
    app.js
        .publish_with_headers("orders.new", headers, Bytes::from_static(br#"{"id":1}"#))
        .await
        .expect("publish")
        .await
        .expect("puback");
    publish_many(&app, "orders.new", 2).await;
    create_consumer(&app, CONSUMER, json!({})).await;

    let messages = fetch_ok(&app, CONSUMER, json!({"max_messages": 10})).await;

    assert_eq!(seqs(&messages), [1, 2, 3]);
    let first = &messages[0];
    assert_eq!(first["stream"], STREAM);
    assert_eq!(first["subject"], "orders.new");
    assert_eq!(first["data"], json!({"id": 1}));
    assert_eq!(first["encoding"], "json");
    assert_eq!(first["headers"]["X-Trace"], "t-1");
    assert_eq!(first["delivered"], 1);
    assert_eq!(first["consumer_seq"], 1);
    assert_eq!(first["pending"], 2);
    assert!(first["time"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(messages[1]["data"], "message 0");
    assert_eq!(messages[1]["encoding"], "utf8");
    // On a cluster a busy machine can make the consumer change leader; its state is what the
    // new leader has once it answers.
    let before = eventually(
        "3 messages ack-pending",
        Duration::from_secs(10),
        || async {
            let info = app.consumer_info(STREAM, CONSUMER).await;
            (info.num_ack_pending == 3).then_some(info)
        },
    )
    .await;
    assert_eq!(before.num_pending, 0);
    assert_eq!(before.ack_floor.stream_sequence, 0);

    let acks: Vec<Value> = messages
        .iter()
        .map(|m| json!({"ack_id": m["ack_id"], "action": "ack"}))
        .collect();
    let body = json(post_acks(&app, &json!({ "acks": acks })).await, 200).await;

    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    for (result, message) in results.iter().zip(&messages) {
        assert_eq!(result["ack_id"], message["ack_id"]);
        assert_eq!(result["action"], "ack");
        assert_eq!(result["status"], 200);
        assert_eq!(result["stream"], STREAM);
        assert_eq!(result["consumer"], CONSUMER);
        assert_eq!(result["stream_seq"], message["seq"]);
        assert_eq!(result["delivered"], 1);
        assert!(result.get("error").is_none(), "{result}");
    }
    let after = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(after.num_ack_pending, 0);
    assert_eq!(after.ack_floor.stream_sequence, 3);
    assert_eq!(after.ack_floor.consumer_sequence, 3);
    assert_eq!(after.num_redelivered, 0);
}

/// A worker loop of fetch + ack gets every message exactly once, for batch sizes 1, 10 and 100,
/// and leaves nothing ack-pending. On an R3 consumer JetStream sends a pull's closing status
/// before its messages; a fetch that stops at the status loses them.
async fn fetch_and_ack_loop_gets_every_message_once_for_batches_of_1_10_and_100(
    topology: Topology,
) {
    const COUNT: usize = 200;
    let app = orders_app_on(topology).await;
    publish_many(&app, "orders.new", COUNT).await;
    for batch in [1usize, 10, 100] {
        let consumer = format!("loop{batch}");
        create_consumer(&app, &consumer, json!({"ack_wait": "30s"})).await;
        let mut seen = BTreeSet::new();
        let mut fetches = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < COUNT {
            assert!(
                Instant::now() < deadline,
                "batch {batch}: got {} of {COUNT} messages in {fetches} fetches",
                seen.len()
            );
            let messages = fetch_ok(
                &app,
                &consumer,
                json!({"max_messages": batch, "wait": "1s"}),
            )
            .await;
            fetches += 1;
            assert!(messages.len() <= batch);
            for seq in seqs(&messages) {
                assert!(seen.insert(seq), "batch {batch}: seq {seq} delivered twice");
            }
            if messages.is_empty() {
                continue;
            }
            let acks: Vec<Value> = messages
                .iter()
                .map(|m| json!({"ack_id": m["ack_id"], "action": "ack"}))
                .collect();
            json(post_acks(&app, &json!({ "acks": acks })).await, 200).await;
        }
        println!("batch {batch}: {COUNT} of {COUNT} messages in {fetches} fetches");
        assert_eq!(seen.len(), COUNT);
        let info = app.consumer_info(STREAM, &consumer).await;
        assert_eq!(info.num_ack_pending, 0, "batch {batch}");
        assert_eq!(info.num_pending, 0, "batch {batch}");
        assert_eq!(info.num_redelivered, 0, "batch {batch}");
        assert_eq!(
            info.ack_floor.stream_sequence, COUNT as u64,
            "batch {batch}"
        );
    }
}

async fn fetch_with_max_messages_returns_at_most_that_many_in_stream_order(topology: Topology) {
    let app = orders_app_on(topology).await;
    publish_many(&app, "orders.new", 5).await;
    create_consumer(&app, CONSUMER, json!({})).await;

    let first = fetch_ok(&app, CONSUMER, json!({"max_messages": 3})).await;
    let second = fetch_ok(&app, CONSUMER, json!({"max_messages": 3})).await;
    let third = fetch_ok(&app, CONSUMER, json!({"max_messages": 3})).await;

    assert_eq!(seqs(&first), [1, 2, 3]);
    let pending: Vec<u64> = first
        .iter()
        .map(|m| m["pending"].as_u64().expect("pending"))
        .collect();
    assert_eq!(pending, [4, 3, 2]);
    assert_eq!(seqs(&second), [4, 5]);
    assert!(third.is_empty(), "{third:?}");
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 5);
    assert_eq!(stored.delivered.stream_sequence, 5);
}

async fn fetch_with_empty_body_returns_one_message_without_waiting(topology: Topology) {
    let app = orders_app_on(topology).await;
    publish_many(&app, "orders.new", 2).await;
    create_consumer(&app, CONSUMER, json!({})).await;

    let response = app
        .http
        .post(app.url(&format!("{}/fetch", consumer_path(STREAM, CONSUMER))))
        .send()
        .await
        .expect("fetch request");

    let body = json(response, 200).await;
    assert_eq!(seqs(body["messages"].as_array().expect("messages")), [1]);
    assert_eq!(app.consumer_info(STREAM, CONSUMER).await.num_ack_pending, 1);
}

async fn long_poll_fetch_returns_as_soon_as_a_message_is_published(topology: Topology) {
    let app = orders_app_on(topology).await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let url = app.url(&format!("{}/fetch", consumer_path(STREAM, CONSUMER)));
    let http = app.http.clone();
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        let response = http
            .post(url)
            .json(&json!({"max_messages": 5, "wait": "20s"}))
            .send()
            .await
            .expect("fetch request");
        (json(response, 200).await, started.elapsed())
    });
    eventually(
        "the fetch to wait on the consumer",
        Duration::from_secs(10),
        || async { (app.consumer_info(STREAM, CONSUMER).await.num_waiting > 0).then_some(()) },
    )
    .await;

    publish_direct(&app, "orders.new", "late").await;
    let (body, elapsed) = waiting.await.expect("fetch task");

    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(seqs(messages), [1]);
    assert_eq!(messages[0]["data"], "late");
    assert!(
        elapsed < Duration::from_secs(10),
        "the fetch waited {elapsed:?} of its 20s after the message arrived"
    );
}

async fn fetch_with_wait_returns_empty_list_when_nothing_arrives(topology: Topology) {
    let app = orders_app_on(topology).await;
    create_consumer(&app, CONSUMER, json!({})).await;

    let (messages, elapsed) = fetch_timed(&app, CONSUMER, json!({"wait": "500ms"})).await;

    assert!(messages.is_empty(), "{messages:?}");
    assert!(
        elapsed >= Duration::from_millis(450),
        "answered after {elapsed:?}, before the wait ended"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.delivered.stream_sequence, 0);
}

async fn fetch_with_max_bytes_returns_only_the_messages_that_fit(topology: Topology) {
    let app = orders_app_on(topology).await;
    for _ in 0..5 {
        publish_direct(&app, "orders.big", vec![b'x'; 1000]).await;
    }
    create_consumer(&app, CONSUMER, json!({})).await;

    let messages = fetch_ok(
        &app,
        CONSUMER,
        json!({"max_messages": 10, "max_bytes": 2500}),
    )
    .await;

    // Each message counts its 1000-byte payload plus subject and reply: two fit, three do not.
    assert_eq!(seqs(&messages), [1, 2]);
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 2);
    assert_eq!(stored.num_pending, 3);
}

async fn fetch_when_the_next_message_exceeds_max_bytes_returns_400_and_delivers_nothing(
    topology: Topology,
) {
    let app = orders_app_on(topology).await;
    publish_direct(&app, "orders.big", vec![b'x'; 2000]).await;
    create_consumer(&app, CONSUMER, json!({})).await;

    problem(
        fetch(&app, CONSUMER, &json!({"max_bytes": 500, "wait": "1s"})).await,
        400,
        "invalid_parameter",
    )
    .await;

    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 0);
    assert_eq!(stored.num_pending, 1);
    let messages = fetch_ok(&app, CONSUMER, json!({"max_bytes": 5000})).await;
    assert_eq!(seqs(&messages), [1], "a large enough max_bytes receives it");
}

#[tokio::test]
async fn fetch_with_out_of_bounds_parameters_returns_400_invalid_parameter_and_delivers_nothing() {
    let app = spawn_app_with(|config| {
        config.ack_secret = vec![SECRET.into()];
        config.max_fetch_messages = 10;
        config.max_fetch_bytes = 4096;
        config.max_fetch_wait = Duration::from_secs(2);
    })
    .await;
    app.create_stream(STREAM, &["orders.>"]).await;
    publish_many(&app, "orders.new", 3).await;
    create_consumer(&app, CONSUMER, json!({})).await;

    for body in [
        json!({"max_messages": 0}),
        json!({"max_messages": 11}),
        json!({"max_bytes": 0}),
        json!({"max_bytes": 4097}),
        json!({"wait": "3s"}),
    ] {
        let response = fetch(&app, CONSUMER, &body).await;
        problem(response, 400, "invalid_parameter").await;
    }
    for body in [
        json!({"wait": "soon"}),
        json!({"max_msgs": 1}),
        json!({"max_messages": -1}),
    ] {
        let response = fetch(&app, CONSUMER, &body).await;
        problem(response, 400, "invalid_body").await;
    }

    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(
        stored.delivered.stream_sequence, 0,
        "something was delivered"
    );
    // The limits themselves are accepted.
    let messages = fetch_ok(
        &app,
        CONSUMER,
        json!({"max_messages": 10, "max_bytes": 4096, "wait": "2s"}),
    )
    .await;
    assert_eq!(seqs(&messages), [1, 2, 3]);
}

async fn concurrent_fetches_of_available_messages_split_them_without_duplicates(
    topology: Topology,
) {
    let app = orders_app_on(topology).await;
    publish_many(&app, "orders.new", 20).await;
    create_consumer(&app, CONSUMER, json!({})).await;

    let batches = futures::future::join_all(
        (0..4).map(|_| fetch_ok(&app, CONSUMER, json!({"max_messages": 5, "wait": "5s"}))),
    )
    .await;

    let mut all: Vec<u64> = batches.iter().flat_map(|b| seqs(b)).collect();
    for batch in &batches {
        assert!(!batch.is_empty() && batch.len() <= 5, "batch {batch:?}");
    }
    all.sort_unstable();
    assert_eq!(all, (1..=20).collect::<Vec<_>>(), "duplicates or gaps");
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 20);
    assert_eq!(stored.num_redelivered, 0);
}

async fn concurrent_long_poll_fetches_never_return_the_same_stream_sequence_twice(
    topology: Topology,
) {
    let app = orders_app_on(topology).await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let url = app.url(&format!("{}/fetch", consumer_path(STREAM, CONSUMER)));
    let fetches: Vec<_> = (0..4)
        .map(|_| {
            let http = app.http.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let response = http
                    .post(url)
                    .json(&json!({"max_messages": 5, "wait": "20s"}))
                    .send()
                    .await
                    .expect("fetch request");
                json(response, 200).await
            })
        })
        .collect();
    eventually(
        "4 fetches waiting on the consumer",
        Duration::from_secs(10),
        || async { (app.consumer_info(STREAM, CONSUMER).await.num_waiting == 4).then_some(()) },
    )
    .await;

    publish_many(&app, "orders.new", 20).await;
    let mut in_flight = Vec::new();
    for fetched in fetches {
        let body = fetched.await.expect("fetch task");
        let messages = body["messages"].as_array().expect("messages").clone();
        assert!(
            !messages.is_empty() && messages.len() <= 5,
            "batch {messages:?}"
        );
        in_flight.extend(seqs(&messages));
    }

    let unique: BTreeSet<u64> = in_flight.iter().copied().collect();
    assert_eq!(
        unique.len(),
        in_flight.len(),
        "a sequence was returned twice: {in_flight:?}"
    );
    // The rest of the 20 come with later fetches, still without repeats.
    let mut all = in_flight.clone();
    while all.len() < 20 {
        let more = fetch_ok(&app, CONSUMER, json!({"max_messages": 20, "wait": "5s"})).await;
        if more.is_empty() {
            let stored = app.consumer_info(STREAM, CONSUMER).await;
            panic!(
                "only {} of 20 returned ({all:?}); JetStream delivered up to stream seq {} with {} \
                 awaiting ack: the rest were handed to the gateway and not returned",
                all.len(),
                stored.delivered.stream_sequence,
                stored.num_ack_pending
            );
        }
        all.extend(seqs(&more));
    }
    all.sort_unstable();
    assert_eq!(all, (1..=20).collect::<Vec<_>>());
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 20);
    assert_eq!(stored.num_redelivered, 0);
}

/// A long-poll that wakes for one message tops its batch up with what else is there. Every
/// message JetStream hands over for it must be in the answer; one that is not sits
/// unacknowledged, invisible to every client, until its ack wait expires (and it counts a
/// delivery towards max_deliver).
#[tokio::test]
async fn long_poll_fetch_returns_every_message_jetstream_handed_over_for_it() {
    let app = spawn_app_with(|config| config.ack_secret = vec![SECRET.into()]).await;
    app.create_stream_with(async_nats::jetstream::stream::Config {
        name: STREAM.to_owned(),
        subjects: vec!["orders.>".to_owned()],
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await;
    create_consumer(&app, CONSUMER, json!({"ack_wait": "30s"})).await;
    let url = app.url(&format!("{}/fetch", consumer_path(STREAM, CONSUMER)));
    let http = app.http.clone();
    let waiting = tokio::spawn(async move {
        let response = http
            .post(url)
            .json(&json!({"max_messages": 5, "wait": "10s"}))
            .send()
            .await
            .expect("fetch request");
        json(response, 200).await
    });
    eventually("the fetch to wait", Duration::from_secs(10), || async {
        (app.consumer_info(STREAM, CONSUMER).await.num_waiting == 1).then_some(())
    })
    .await;

    // All five become available at once: the waiting fetch wakes for one and tops up.
    publish_atomic_batch(&app, "orders.new", 5).await;
    let body = waiting.await.expect("fetch task");
    let again = body["messages"].as_array().expect("messages").clone();
    // What a client fetches next at once; afterwards JetStream has processed every pull of both.
    let (next, _) = fetch_timed(&app, CONSUMER, json!({"max_messages": 5})).await;

    let stored = app.consumer_info(STREAM, CONSUMER).await;
    let mut returned = seqs(&again);
    returned.extend(seqs(&next));
    assert_eq!(
        stored.num_ack_pending,
        returned.len(),
        "JetStream delivered up to stream seq {} ({} awaiting ack) but the long-poll returned {:?} \
         and the next fetch {:?}: the rest await an ack nobody can send",
        stored.delivered.stream_sequence,
        stored.num_ack_pending,
        seqs(&again),
        seqs(&next)
    );
    returned.sort_unstable();
    assert_eq!(returned, [1, 2, 3, 4, 5]);
    assert_eq!(
        seqs(&again),
        [1, 2, 3, 4, 5],
        "the long-poll answered with less than was available when it woke"
    );
}

// ---------------------------------------------------------------------------------------------
// Nak, ack wait, progress, term

async fn nak_with_delay_redelivers_after_the_delay_and_not_before(topology: Topology) {
    let app = orders_app_on(topology).await;
    publish_direct(&app, "orders.new", "retry me").await;
    create_consumer(&app, CONSUMER, json!({"ack_wait": "30s"})).await;
    let first = fetch_ok(&app, CONSUMER, json!({})).await;
    assert_eq!(first[0]["delivered"], 1);

    let nak_sent = Instant::now();
    let body = json(
        post_acks(
            &app,
            &json!({"acks": [{"ack_id": first[0]["ack_id"], "action": "nak", "delay": "2s"}]}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(body["results"][0]["status"], 200);
    assert_eq!(body["results"][0]["action"], "nak");

    let (early, _) = fetch_timed(&app, CONSUMER, json!({"wait": "300ms"})).await;
    assert!(
        early.is_empty(),
        "redelivered {:?} after the nak, before its 2s delay: {early:?}",
        nak_sent.elapsed()
    );
    let (again, _) = fetch_timed(&app, CONSUMER, json!({"wait": "10s"})).await;
    let since_nak = nak_sent.elapsed();

    assert_eq!(seqs(&again), [1]);
    assert_eq!(again[0]["delivered"], 2);
    assert!(
        since_nak >= Duration::from_millis(1950),
        "redelivered {since_nak:?} after the nak"
    );
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 1);
    assert_eq!(stored.num_redelivered, 1);
    ack_one(&app, &ack_id(&again[0]), "ack", 200).await;
    assert_eq!(
        app.consumer_info(STREAM, CONSUMER)
            .await
            .ack_floor
            .stream_sequence,
        1
    );
}

async fn nak_without_delay_redelivers_at_once_with_delivered_2(topology: Topology) {
    let app = orders_app_on(topology).await;
    publish_direct(&app, "orders.new", "retry me").await;
    create_consumer(&app, CONSUMER, json!({"ack_wait": "30s"})).await;
    let first = fetch_ok(&app, CONSUMER, json!({})).await;

    ack_one(&app, &ack_id(&first[0]), "nak", 200).await;
    let (again, elapsed) = fetch_timed(&app, CONSUMER, json!({"wait": "10s"})).await;

    assert_eq!(seqs(&again), [1]);
    assert_eq!(again[0]["delivered"], 2);
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(app.consumer_info(STREAM, CONSUMER).await.num_redelivered, 1);
}

#[tokio::test]
async fn delay_with_an_action_other_than_nak_returns_400_and_applies_nothing() {
    let app = orders_app().await;
    publish_direct(&app, "orders.new", "x").await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let messages = fetch_ok(&app, CONSUMER, json!({})).await;

    for action in ["ack", "term", "progress"] {
        problem(
            post_acks(
                &app,
                &json!({"acks": [{"ack_id": messages[0]["ack_id"], "action": action, "delay": "1s"}]}),
            )
            .await,
            400,
            "invalid_body",
        )
        .await;
    }

    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 1);
    assert_eq!(stored.ack_floor.stream_sequence, 0);
}

async fn unacked_message_is_redelivered_after_ack_wait_and_not_before(topology: Topology) {
    let app = orders_app_on(topology).await;
    publish_direct(&app, "orders.new", "slow").await;
    create_consumer(&app, CONSUMER, json!({"ack_wait": "2s"})).await;
    let fetch_sent = Instant::now();
    let first = fetch_ok(&app, CONSUMER, json!({})).await;
    assert_eq!(first[0]["delivered"], 1);

    let (early, _) = fetch_timed(&app, CONSUMER, json!({"wait": "300ms"})).await;
    let (again, _) = fetch_timed(&app, CONSUMER, json!({"wait": "10s"})).await;
    let since_first = fetch_sent.elapsed();

    assert!(early.is_empty(), "redelivered before ack_wait: {early:?}");
    assert_eq!(seqs(&again), [1]);
    assert_eq!(again[0]["delivered"], 2);
    assert!(
        since_first >= Duration::from_secs(2),
        "redelivered {since_first:?} after the first fetch was sent"
    );
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_redelivered, 1);
    assert_eq!(stored.num_ack_pending, 1);
}

async fn progress_keeps_a_message_from_redelivery_past_its_ack_wait(topology: Topology) {
    let app = orders_app_on(topology).await;
    publish_direct(&app, "orders.new", "long job").await;
    create_consumer(&app, CONSUMER, json!({"ack_wait": "2s"})).await;
    let delivered_at = Instant::now();
    let messages = fetch_ok(&app, CONSUMER, json!({})).await;
    let id = ack_id(&messages[0]);

    // Every 500ms (a fetch that waits that long), report progress: well within the 2s ack wait.
    for round in 0..6 {
        let (redelivered, _) = fetch_timed(&app, CONSUMER, json!({"wait": "500ms"})).await;
        assert!(
            redelivered.is_empty(),
            "redelivered in round {round}: {redelivered:?}"
        );
        let result = ack_one(&app, &id, "progress", 200).await;
        assert_eq!(result["status"], 200);
        assert_eq!(result["action"], "progress");
    }
    // The whole window since the delivery is more than ack_wait plus a margin.
    let (redelivered, _) = fetch_timed(&app, CONSUMER, json!({"wait": "1s"})).await;
    assert!(redelivered.is_empty(), "redelivered: {redelivered:?}");
    let window = delivered_at.elapsed();
    assert!(window >= Duration::from_secs(3), "only {window:?} covered");

    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_redelivered, 0);
    assert_eq!(stored.num_ack_pending, 1);
    assert_eq!(stored.delivered.consumer_sequence, 1, "delivered again");
    ack_one(&app, &id, "ack", 200).await;
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.ack_floor.stream_sequence, 1);
    assert_eq!(stored.num_ack_pending, 0);
}

async fn term_stops_redelivery_past_ack_wait(topology: Topology) {
    let app = orders_app_on(topology).await;
    publish_direct(&app, "orders.new", "poison").await;
    create_consumer(&app, CONSUMER, json!({"ack_wait": "1s"})).await;
    let messages = fetch_ok(&app, CONSUMER, json!({})).await;

    let result = ack_one(&app, &ack_id(&messages[0]), "term", 200).await;

    assert_eq!(result["status"], 200);
    assert_eq!(result["action"], "term");
    let (redelivered, elapsed) = fetch_timed(&app, CONSUMER, json!({"wait": "2500ms"})).await;
    assert!(
        redelivered.is_empty(),
        "redelivered after term: {redelivered:?}"
    );
    assert!(elapsed >= Duration::from_secs(2), "window only {elapsed:?}");
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 0);
    assert_eq!(stored.num_redelivered, 0);
    assert_eq!(stored.ack_floor.stream_sequence, 1);
}

// ---------------------------------------------------------------------------------------------
// Dead letters

async fn message_reaching_max_deliver_is_dead_lettered_once_with_origin_headers_by_two_gateways(
    topology: Topology,
) {
    let app = orders_app_on(topology).await;
    let second = spawn_gateway(&app.server, |c| c.ack_secret = vec![SECRET.into()]).await;
    app.create_stream("DLQ", &["dlq.>"]).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Trace", "t-7");
    headers.insert("Content-Type", "application/json");
    headers.insert("Nats-Msg-Id", "order-7");
    app.js
        .publish_with_headers("orders.eu.new", headers, Bytes::from_static(br#"{"id":7}"#))
        .await
        .expect("publish")
        .await
        .expect("puback");
    create_consumer(
        &app,
        CONSUMER,
        json!({"ack_wait": "30s", "max_deliver": 2, "dead_letter_subject": "dlq.orders"}),
    )
    .await;

    for delivery in 1..=2 {
        let messages = fetch_ok(&app, CONSUMER, json!({"wait": "5s"})).await;
        assert_eq!(seqs(&messages), [1]);
        assert_eq!(messages[0]["delivered"], delivery);
        ack_one(&app, &ack_id(&messages[0]), "nak", 200).await;
    }
    // No third delivery; a pending fetch also lets JetStream notice the exhausted message.
    let (third, _) = fetch_timed(&second, CONSUMER, json!({"wait": "1s"})).await;
    assert!(third.is_empty(), "delivered past max_deliver: {third:?}");

    eventually("the dead-letter copy", Duration::from_secs(10), || async {
        (stored_count(&app, "DLQ").await > 0).then_some(())
    })
    .await;
    let copies = app.stored("DLQ").await;
    assert_eq!(copies.len(), 1);
    let copy = &copies[0];
    assert_eq!(copy.subject.as_str(), "dlq.orders");
    assert_eq!(copy.payload.as_ref(), br#"{"id":7}"#);
    assert_eq!(header(copy, "X-Trace"), "t-7");
    assert_eq!(header(copy, "Content-Type"), "application/json");
    assert_eq!(header(copy, "Jetway-Origin-Stream"), STREAM);
    assert_eq!(header(copy, "Jetway-Origin-Sequence"), "1");
    assert_eq!(header(copy, "Jetway-Origin-Subject"), "orders.eu.new");
    assert_eq!(header(copy, "Jetway-Origin-Consumer"), CONSUMER);
    assert_eq!(header(copy, "Jetway-Deliveries"), "2");
    assert_eq!(header(copy, "Jetway-Dead-Letter-Reason"), "max_deliveries");
    assert_eq!(header(copy, "Nats-Msg-Id"), "jetway-dlq:ORDERS:workers:1");

    // Both gateways watch the advisories; after a further wait there is still one copy.
    let (later, _) = fetch_timed(&second, CONSUMER, json!({"wait": "1s"})).await;
    assert!(later.is_empty());
    assert_eq!(stored_count(&app, "DLQ").await, 1, "more than one copy");
    assert_eq!(stored_count(&app, STREAM).await, 1, "the original is kept");
}

async fn term_with_dead_letter_subject_stores_the_copy_before_terminating(topology: Topology) {
    let app = orders_app_on(topology).await;
    app.create_stream("DLQ", &["dlq.>"]).await;
    publish_direct(&app, "orders.new", "poison").await;
    create_consumer(
        &app,
        CONSUMER,
        json!({"ack_wait": "1s", "dead_letter_subject": "dlq.orders"}),
    )
    .await;
    let messages = fetch_ok(&app, CONSUMER, json!({})).await;

    let result = ack_one(&app, &ack_id(&messages[0]), "term", 200).await;

    assert_eq!(result["status"], 200);
    // Stored by the time the term is confirmed: no polling.
    let copies = app.stored("DLQ").await;
    assert_eq!(
        copies.len(),
        1,
        "not exactly one copy when the term was confirmed"
    );
    let copy = &copies[0];
    // The copy was stored before JetStream applied the term (the advisory copy would be later).
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    let termed_at = stored.ack_floor.last_active.expect("ack floor time");
    assert!(
        copy.time <= termed_at,
        "copy stored at {} after the term at {termed_at}",
        copy.time
    );
    assert_eq!(copy.subject.as_str(), "dlq.orders");
    assert_eq!(copy.payload.as_ref(), b"poison");
    assert_eq!(header(copy, "Jetway-Dead-Letter-Reason"), "terminated");
    assert_eq!(header(copy, "Jetway-Deliveries"), "1");
    assert_eq!(header(copy, "Jetway-Origin-Sequence"), "1");
    assert_eq!(header(copy, "Jetway-Origin-Stream"), STREAM);
    assert_eq!(header(copy, "Jetway-Origin-Subject"), "orders.new");
    assert_eq!(header(copy, "Jetway-Origin-Consumer"), CONSUMER);
    assert_eq!(header(copy, "Nats-Msg-Id"), "jetway-dlq:ORDERS:workers:1");
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 0);
    assert_eq!(stored.ack_floor.stream_sequence, 1);
    // Past the ack wait: not redelivered, and the advisory watcher added no second copy.
    let (redelivered, _) = fetch_timed(&app, CONSUMER, json!({"wait": "2s"})).await;
    assert!(
        redelivered.is_empty(),
        "redelivered after term: {redelivered:?}"
    );
    assert_eq!(stored_count(&app, "DLQ").await, 1);
}

/// Server semantics (nats-server 2.15): when the last allowed delivery of a redelivered message
/// expires, JetStream keeps it ack-pending and sends the max-deliveries advisory only once a
/// pull request is waiting on the consumer, so the copy is made at the next fetch.
async fn message_whose_last_delivery_expires_is_dead_lettered_at_the_next_fetch_not_before(
    topology: Topology,
) {
    let app = orders_app_on(topology).await;
    app.create_stream("DLQ", &["dlq.>"]).await;
    publish_direct(&app, "orders.new", "crashy").await;
    create_consumer(
        &app,
        CONSUMER,
        json!({"ack_wait": "1s", "max_deliver": 2, "dead_letter_subject": "dlq.orders"}),
    )
    .await;
    // A consumer that never has messages: its long-poll is the test's clock.
    create_consumer(&app, "clock", json!({"filter_subjects": ["orders.none"]})).await;
    let first = fetch_ok(&app, CONSUMER, json!({})).await;
    assert_eq!(first[0]["delivered"], 1);
    let second = fetch_ok(&app, CONSUMER, json!({"wait": "10s"})).await;
    assert_eq!(second[0]["delivered"], 2);

    // The second delivery's ack wait passes with nobody fetching.
    let (ticks, waited) = fetch_timed(&app, "clock", json!({"wait": "2500ms"})).await;
    assert!(ticks.is_empty() && waited >= Duration::from_secs(2));
    assert_eq!(stored_count(&app, "DLQ").await, 0, "copied without a fetch");
    assert_eq!(app.consumer_info(STREAM, CONSUMER).await.num_ack_pending, 1);

    let (third, _) = fetch_timed(&app, CONSUMER, json!({"wait": "1s"})).await;
    assert!(third.is_empty(), "delivered past max_deliver: {third:?}");
    eventually("the dead-letter copy", Duration::from_secs(10), || async {
        (stored_count(&app, "DLQ").await > 0).then_some(())
    })
    .await;

    let copies = app.stored("DLQ").await;
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].payload.as_ref(), b"crashy");
    assert_eq!(
        header(&copies[0], "Jetway-Dead-Letter-Reason"),
        "max_deliveries"
    );
    assert_eq!(header(&copies[0], "Jetway-Deliveries"), "2");
    assert_eq!(app.consumer_info(STREAM, CONSUMER).await.num_ack_pending, 0);
}

#[tokio::test]
async fn term_when_no_stream_captures_the_dead_letter_subject_is_not_applied_and_message_is_redelivered()
 {
    let app = orders_app().await;
    publish_direct(&app, "orders.new", "poison").await;
    create_consumer(
        &app,
        CONSUMER,
        json!({"ack_wait": "2s", "dead_letter_subject": "dlq.orders"}),
    )
    .await;
    let messages = fetch_ok(&app, CONSUMER, json!({})).await;

    let result = ack_one(&app, &ack_id(&messages[0]), "term", 207).await;

    assert_ne!(result["status"], 200, "{result}");
    assert_eq!(result["status"], 503, "{result}");
    assert_eq!(result["error"]["code"], "jetstream_unavailable", "{result}");
    assert_eq!(result["error"]["status"], result["status"]);
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 1, "terminated without a copy");
    assert_eq!(stored.ack_floor.stream_sequence, 0);
    let (again, _) = fetch_timed(&app, CONSUMER, json!({"wait": "10s"})).await;
    assert_eq!(seqs(&again), [1], "not redelivered after its ack wait");
    assert_eq!(again[0]["delivered"], 2);
}

// ---------------------------------------------------------------------------------------------
// Ack ids across replicas, restarts, tampering

async fn ack_id_from_one_gateway_is_accepted_by_another_with_the_same_secret(topology: Topology) {
    let app = orders_app_on(topology).await;
    let other = spawn_gateway(&app.server, |c| c.ack_secret = vec![SECRET.into()]).await;
    publish_many(&app, "orders.new", 2).await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let messages = fetch_ok(&app, CONSUMER, json!({"max_messages": 2})).await;

    let result = ack_one(&other, &ack_id(&messages[0]), "ack", 200).await;

    assert_eq!(result["status"], 200);
    assert_eq!(result["stream_seq"], 1);
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.ack_floor.stream_sequence, 1);
    assert_eq!(stored.num_ack_pending, 1);
}

#[tokio::test]
async fn ack_id_is_rejected_with_400_by_a_gateway_with_a_different_secret() {
    let app = orders_app().await;
    let stranger = spawn_gateway(&app.server, |c| c.ack_secret = vec!["other".into()]).await;
    publish_direct(&app, "orders.new", "x").await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let messages = fetch_ok(&app, CONSUMER, json!({})).await;

    problem(
        post_acks(
            &stranger,
            &json!({"acks": [{"ack_id": messages[0]["ack_id"], "action": "ack"}]}),
        )
        .await,
        400,
        "invalid_ack_id",
    )
    .await;

    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 1);
    assert_eq!(stored.ack_floor.stream_sequence, 0);
}

#[tokio::test]
async fn gateway_with_rotated_secrets_accepts_ack_ids_signed_with_the_old_secret() {
    let app = spawn_app_with(|c| c.ack_secret = vec!["old".into()]).await;
    app.create_stream(STREAM, &["orders.>"]).await;
    let rotated = spawn_gateway(&app.server, |c| {
        c.ack_secret = vec!["new".into(), "old".into()];
    })
    .await;
    publish_many(&app, "orders.new", 2).await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let from_old = fetch_ok(&app, CONSUMER, json!({})).await;
    let from_rotated = fetch_ok(&rotated, CONSUMER, json!({})).await;

    let result = ack_one(&rotated, &ack_id(&from_old[0]), "ack", 200).await;

    assert_eq!(result["stream_seq"], 1);
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.ack_floor.stream_sequence, 1);
    // The rotated gateway signs with the new secret, which the old one does not know yet.
    problem(
        post_acks(
            &app,
            &json!({"acks": [{"ack_id": from_rotated[0]["ack_id"], "action": "ack"}]}),
        )
        .await,
        400,
        "invalid_ack_id",
    )
    .await;
    assert_eq!(app.consumer_info(STREAM, CONSUMER).await.num_ack_pending, 1);
    ack_one(&rotated, &ack_id(&from_rotated[0]), "ack", 200).await;
    assert_eq!(
        app.consumer_info(STREAM, CONSUMER)
            .await
            .ack_floor
            .stream_sequence,
        2
    );
}

#[tokio::test]
async fn gateway_restarted_mid_processing_never_redelivers_the_acked_message_and_redelivers_the_unacked_one()
 {
    let mut app = orders_app().await;
    publish_many(&app, "orders.new", 2).await;
    create_consumer(&app, CONSUMER, json!({"ack_wait": "2s"})).await;
    let fetched_at = Instant::now();
    let messages = fetch_ok(&app, CONSUMER, json!({"max_messages": 2})).await;
    assert_eq!(seqs(&messages), [1, 2]);
    ack_one(&app, &ack_id(&messages[0]), "ack", 200).await;

    app.stop_gateway().await;
    let restarted = spawn_gateway(&app.server, |c| c.ack_secret = vec![SECRET.into()]).await;
    let (again, _) = fetch_timed(
        &restarted,
        CONSUMER,
        json!({"max_messages": 10, "wait": "10s"}),
    )
    .await;

    assert_eq!(seqs(&again), [2], "only the unacked message comes back");
    assert_eq!(again[0]["delivered"], 2);
    assert!(
        fetched_at.elapsed() >= Duration::from_secs(2),
        "redelivered before ack_wait"
    );
    // The ack id the stopped gateway issued still works on the restarted one.
    ack_one(&restarted, &ack_id(&messages[1]), "ack", 200).await;
    let (later, _) = fetch_timed(
        &restarted,
        CONSUMER,
        json!({"max_messages": 10, "wait": "2500ms"}),
    )
    .await;
    assert!(later.is_empty(), "redelivered: {later:?}");
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.ack_floor.stream_sequence, 2);
    assert_eq!(stored.num_ack_pending, 0);
    assert_eq!(stored.num_redelivered, 0);
    assert_eq!(
        stored.delivered.consumer_sequence, 3,
        "seq 1 was delivered again"
    );
}

/// The ack id with the stream sequence in its subject replaced, keeping the signature.
fn with_stream_seq(id: &str, seq: u64) -> String {
    let (subject, mac) = id.split_once('.').expect("ack id has a dot");
    let subject = String::from_utf8(B64.decode(subject).expect("base64")).expect("utf8");
    let mut tokens: Vec<String> = subject.split('.').map(str::to_owned).collect();
    let index = if tokens.len() == 9 { 5 } else { 7 };
    tokens[index] = seq.to_string();
    format!("{}.{mac}", B64.encode(tokens.join(".")))
}

#[tokio::test]
async fn ack_request_with_a_forged_altered_or_truncated_id_returns_400_and_applies_none_of_its_acks()
 {
    let app = orders_app().await;
    publish_many(&app, "orders.new", 2).await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let messages = fetch_ok(&app, CONSUMER, json!({"max_messages": 2})).await;
    let valid = ack_id(&messages[0]);
    let altered = with_stream_seq(&valid, 2);
    let truncated = valid[..valid.len() - 4].to_owned();
    let forged = format!(
        "{}.{}",
        B64.encode("$JS.ACK.ORDERS.workers.1.2.2.1764147600000000000.0"),
        B64.encode([7u8; 16])
    );

    for bad in [&altered, &truncated, &forged, &"not-an-ack-id".to_owned()] {
        for acks in [
            json!([{"ack_id": valid, "action": "ack"}, {"ack_id": bad, "action": "ack"}]),
            json!([{"ack_id": bad, "action": "term"}, {"ack_id": valid, "action": "ack"}]),
        ] {
            problem(
                post_acks(&app, &json!({ "acks": acks })).await,
                400,
                "invalid_ack_id",
            )
            .await;
        }
    }

    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 2, "an ack was applied");
    assert_eq!(stored.ack_floor.stream_sequence, 0);
    // The valid id was valid all along.
    ack_one(&app, &valid, "ack", 200).await;
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 1);
    assert_eq!(stored.ack_floor.stream_sequence, 1);
}

#[tokio::test]
async fn ack_of_an_already_acked_message_returns_200_again_because_jetstream_confirms_repeated_acks()
 {
    let app = orders_app().await;
    publish_direct(&app, "orders.new", "x").await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let messages = fetch_ok(&app, CONSUMER, json!({})).await;
    ack_one(&app, &ack_id(&messages[0]), "ack", 200).await;

    let again = ack_one(&app, &ack_id(&messages[0]), "ack", 200).await;

    assert_eq!(again["status"], 200);
    assert!(again.get("error").is_none(), "{again}");
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.ack_floor.stream_sequence, 1);
    assert_eq!(stored.num_ack_pending, 0);
}

async fn ack_id_from_an_earlier_delivery_acks_the_redelivered_message(topology: Topology) {
    let app = orders_app_on(topology).await;
    publish_direct(&app, "orders.new", "x").await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let first = fetch_ok(&app, CONSUMER, json!({})).await;
    ack_one(&app, &ack_id(&first[0]), "nak", 200).await;
    let second = fetch_ok(&app, CONSUMER, json!({"wait": "5s"})).await;
    assert_eq!(second[0]["delivered"], 2);

    let result = ack_one(&app, &ack_id(&first[0]), "ack", 200).await;

    assert_eq!(result["delivered"], 1);
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 0);
    assert_eq!(stored.ack_floor.stream_sequence, 1);
}

async fn ack_for_a_deleted_consumer_returns_207_with_per_result_404_consumer_not_found(
    topology: Topology,
) {
    let app = orders_app_on(topology).await;
    app.create_stream("DLQ", &["dlq.>"]).await;
    publish_many(&app, "orders.new", 2).await;
    create_consumer(&app, CONSUMER, json!({"dead_letter_subject": "dlq.orders"})).await;
    let messages = fetch_ok(&app, CONSUMER, json!({"max_messages": 2})).await;
    let deleted = delete(&app, &consumer_path(STREAM, CONSUMER)).await;
    assert_eq!(deleted.status().as_u16(), 204);

    let body = json(
        post_acks(
            &app,
            &json!({"acks": [
                {"ack_id": messages[0]["ack_id"], "action": "ack"},
                {"ack_id": messages[1]["ack_id"], "action": "term"},
            ]}),
        )
        .await,
        207,
    )
    .await;

    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    for result in results {
        assert_eq!(result["status"], 404, "{result}");
        assert_eq!(result["error"]["code"], "consumer_not_found", "{result}");
        assert_eq!(result["error"]["status"], 404, "{result}");
        assert_eq!(result["consumer"], CONSUMER);
    }
    assert_eq!(
        stored_count(&app, "DLQ").await,
        0,
        "dead-lettered a message"
    );
}

#[tokio::test]
async fn ack_request_with_malformed_body_returns_400_problem_json_and_applies_nothing() {
    let app = orders_app().await;
    publish_direct(&app, "orders.new", "x").await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let messages = fetch_ok(&app, CONSUMER, json!({})).await;
    let id = ack_id(&messages[0]);

    for body in [
        json!({"acks": []}),
        json!({}),
        json!({"acks": [{"ack_id": id, "action": "finish"}]}),
        json!({"acks": [{"ack_id": id, "action": "ack", "note": "x"}]}),
        json!({"acks": [{"ack_id": id, "action": "nak", "delay": "soon"}]}),
        json!({"acks": [{"action": "ack"}]}),
    ] {
        problem(post_acks(&app, &body).await, 400, "invalid_body").await;
    }
    let syntax = app
        .http
        .post(app.url("/v1/acks"))
        .header("content-type", "application/json")
        .body("{\"acks\": [")
        .send()
        .await
        .expect("acks request");
    problem(syntax, 400, "invalid_body").await;
    let untyped = app
        .http
        .post(app.url("/v1/acks"))
        .body(json!({"acks": [{"ack_id": id, "action": "ack"}]}).to_string())
        .send()
        .await
        .expect("acks request");
    problem(untyped, 415, "unsupported_media_type").await;

    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 1);
    assert_eq!(stored.ack_floor.stream_sequence, 0);
}

// ---------------------------------------------------------------------------------------------
// Edge cases

/// JetStream replaces `ack_wait` with the first backoff step; the echo shows what applies.
#[tokio::test]
async fn put_consumer_with_backoff_echoes_ack_wait_as_the_first_backoff_step_and_repeats_with_200()
{
    let app = orders_app().await;
    let config = json!({"ack_wait": "5s", "max_deliver": 4, "backoff": ["1s", "5s", "10s"]});

    let created = create_consumer(&app, CONSUMER, config.clone()).await;
    let repeated = json(put_consumer(&app, STREAM, CONSUMER, &config).await, 200).await;

    assert_eq!(created["config"]["backoff"], json!(["1s", "5s", "10s"]));
    assert_eq!(created["config"]["ack_wait"], "1s");
    assert_eq!(repeated["config"], created["config"]);
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(
        stored.config.backoff,
        [1, 5, 10].map(Duration::from_secs).to_vec()
    );
    assert_eq!(stored.config.ack_wait, Duration::from_secs(1));
}

#[tokio::test]
async fn put_consumer_with_invalid_name_returns_400_invalid_name() {
    let app = orders_app().await;

    for name in ["a.b", "a*", "a>"] {
        problem(
            put_consumer(&app, STREAM, name, &json!({})).await,
            400,
            "invalid_name",
        )
        .await;
    }

    let stream = app.js.get_stream(STREAM).await.expect("stream");
    let mut names = stream.consumer_names();
    assert!(names.next().await.is_none(), "a consumer was created");
}

async fn fetch_waiting_past_max_waiting_returns_429_rate_limited_with_retry_after(
    topology: Topology,
) {
    let app = orders_app_on(topology).await;
    create_consumer(&app, CONSUMER, json!({"max_waiting": 1})).await;
    let url = app.url(&format!("{}/fetch", consumer_path(STREAM, CONSUMER)));
    let http = app.http.clone();
    // Long enough to still be waiting when the message comes however slow the machine is; it
    // ends as soon as the message is there.
    let first = tokio::spawn(async move {
        let response = http
            .post(url)
            .json(&json!({"wait": "25s"}))
            .send()
            .await
            .expect("fetch request");
        json(response, 200).await
    });
    eventually(
        "the first fetch to wait",
        Duration::from_secs(10),
        || async { (app.consumer_info(STREAM, CONSUMER).await.num_waiting == 1).then_some(()) },
    )
    .await;

    let response = fetch(&app, CONSUMER, &json!({"wait": "1s"})).await;

    assert!(
        response.headers().contains_key("retry-after"),
        "no Retry-After: {:?}",
        response.headers()
    );
    problem(response, 429, "rate_limited").await;
    publish_direct(&app, "orders.new", "x").await;
    let body = first.await.expect("first fetch");
    assert_eq!(seqs(body["messages"].as_array().expect("messages")), [1]);
}

async fn fetch_waiting_on_a_consumer_that_is_deleted_returns_404_consumer_not_found(
    topology: Topology,
) {
    let app = orders_app_on(topology).await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let url = app.url(&format!("{}/fetch", consumer_path(STREAM, CONSUMER)));
    let http = app.http.clone();
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        http.post(url)
            .json(&json!({"wait": "20s"}))
            .send()
            .await
            .expect("fetch request")
    });
    eventually("the fetch to wait", Duration::from_secs(10), || async {
        (app.consumer_info(STREAM, CONSUMER).await.num_waiting == 1).then_some(())
    })
    .await;

    let deleted = delete(&app, &consumer_path(STREAM, CONSUMER)).await;
    assert_eq!(deleted.status().as_u16(), 204);
    let response = waiting.await.expect("fetch task");

    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the fetch waited out its 20s"
    );
    problem(response, 404, "consumer_not_found").await;
}

#[tokio::test]
async fn fetch_with_base64_encoding_returns_payload_bytes_in_base64() {
    let app = orders_app().await;
    publish_direct(&app, "orders.new", &b"{\"id\":1}"[..]).await;
    create_consumer(&app, CONSUMER, json!({})).await;

    let messages = fetch_ok(&app, CONSUMER, json!({"encoding": "base64"})).await;

    assert_eq!(messages[0]["encoding"], "base64");
    assert_eq!(messages[0]["data"], "eyJpZCI6MX0=");
}

#[tokio::test]
async fn fetched_message_time_is_when_the_stream_stored_it() {
    let app = orders_app().await;
    publish_direct(&app, "orders.new", "x").await;
    create_consumer(&app, CONSUMER, json!({})).await;

    let messages = fetch_ok(&app, CONSUMER, json!({})).await;

    let stored = app.stored(STREAM).await;
    let fetched = time::OffsetDateTime::parse(
        messages[0]["time"].as_str().expect("time"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339 time");
    assert_eq!(fetched, stored[0].time);
}

#[tokio::test]
async fn term_of_a_message_deleted_from_the_stream_is_applied_without_a_copy() {
    let app = orders_app().await;
    app.create_stream("DLQ", &["dlq.>"]).await;
    publish_many(&app, "orders.new", 2).await;
    create_consumer(
        &app,
        CONSUMER,
        json!({"ack_wait": "30s", "dead_letter_subject": "dlq.orders"}),
    )
    .await;
    let messages = fetch_ok(&app, CONSUMER, json!({})).await;
    let stream = app.js.get_stream(STREAM).await.expect("stream");
    stream.delete_message(1).await.expect("delete message 1");

    let body = json(
        post_acks(
            &app,
            &json!({"acks": [{"ack_id": messages[0]["ack_id"], "action": "term"}]}),
        )
        .await,
        200,
    )
    .await;

    assert_eq!(body["results"][0]["status"], 200, "{body}");
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 0, "still pending: term not applied");
}

#[tokio::test]
async fn ack_id_of_a_deleted_and_recreated_consumer_for_an_undelivered_message_returns_207_with_410()
 {
    let app = orders_app().await;
    publish_many(&app, "orders.new", 2).await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let messages = fetch_ok(&app, CONSUMER, json!({})).await;
    assert_eq!(seqs(&messages), [1]);
    let deleted = delete(&app, &consumer_path(STREAM, CONSUMER)).await;
    assert_eq!(deleted.status().as_u16(), 204);
    create_consumer(&app, CONSUMER, json!({})).await;

    let result = ack_one(&app, &ack_id(&messages[0]), "ack", 207).await;

    assert_eq!(result["status"], 410, "{result}");
    assert_eq!(result["error"]["code"], "ack_not_confirmed");
    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(
        stored.ack_floor.stream_sequence, 0,
        "the stale id acked the new consumer"
    );
    assert_eq!(stored.num_pending, 2);
}

#[tokio::test]
async fn dead_letter_copy_keeps_every_value_of_a_repeated_header() {
    let app = orders_app().await;
    // Read back with a direct get: `get_raw_message` keeps only the last value of a header.
    app.create_stream_with(async_nats::jetstream::stream::Config {
        name: "DLQ".to_owned(),
        subjects: vec!["dlq.>".to_owned()],
        allow_direct: true,
        ..Default::default()
    })
    .await;
    let mut headers = async_nats::HeaderMap::new();
    headers.append("X-Tag", "a");
    headers.append("X-Tag", "b");
    app.js
        .publish_with_headers("orders.new", headers, Bytes::from_static(b"tagged"))
        .await
        .expect("publish")
        .await
        .expect("puback");
    create_consumer(&app, CONSUMER, json!({"dead_letter_subject": "dlq.orders"})).await;
    let messages = fetch_ok(&app, CONSUMER, json!({})).await;
    assert_eq!(messages[0]["headers"]["X-Tag"], "a, b");

    ack_one(&app, &ack_id(&messages[0]), "term", 200).await;

    let dlq = app.js.get_stream("DLQ").await.expect("stream");
    let copy = dlq.direct_get(1).await.expect("the dead-letter copy");
    let values: Vec<&str> = copy.headers.get_all("X-Tag").map(|v| v.as_str()).collect();
    assert_eq!(values, ["a", "b"], "the copy lost header values");
    assert_eq!(copy.payload.as_ref(), b"tagged");
}

#[tokio::test]
async fn ack_request_with_more_than_max_acks_returns_413_and_applies_nothing() {
    let app = spawn_app_with(|config| {
        config.ack_secret = vec![SECRET.into()];
        config.max_acks = 2;
    })
    .await;
    app.create_stream(STREAM, &["orders.>"]).await;
    publish_many(&app, "orders.new", 3).await;
    create_consumer(&app, CONSUMER, json!({})).await;
    let messages = fetch_ok(&app, CONSUMER, json!({"max_messages": 3})).await;
    let acks: Vec<Value> = messages
        .iter()
        .map(|m| json!({"ack_id": m["ack_id"], "action": "ack"}))
        .collect();

    problem(
        post_acks(&app, &json!({ "acks": acks })).await,
        413,
        "payload_too_large",
    )
    .await;

    let stored = app.consumer_info(STREAM, CONSUMER).await;
    assert_eq!(stored.num_ack_pending, 3);
    let body = json(post_acks(&app, &json!({ "acks": acks[..2] })).await, 200).await;
    assert_eq!(body["results"].as_array().expect("results").len(), 2);
    assert_eq!(app.consumer_info(STREAM, CONSUMER).await.num_ack_pending, 1);
}

// Every test above that takes a topology runs on one server (R1) and on a 3-node cluster (R3).
crate::on_r1_and_r3!(
    fetch_and_ack_loop_gets_every_message_once_for_batches_of_1_10_and_100,
    fetch_then_ack_returns_delivery_metadata_and_moves_the_ack_floor,
    fetch_with_max_messages_returns_at_most_that_many_in_stream_order,
    fetch_with_empty_body_returns_one_message_without_waiting,
    long_poll_fetch_returns_as_soon_as_a_message_is_published,
    fetch_with_wait_returns_empty_list_when_nothing_arrives,
    fetch_with_max_bytes_returns_only_the_messages_that_fit,
    fetch_when_the_next_message_exceeds_max_bytes_returns_400_and_delivers_nothing,
    concurrent_fetches_of_available_messages_split_them_without_duplicates,
    concurrent_long_poll_fetches_never_return_the_same_stream_sequence_twice,
    nak_with_delay_redelivers_after_the_delay_and_not_before,
    nak_without_delay_redelivers_at_once_with_delivered_2,
    unacked_message_is_redelivered_after_ack_wait_and_not_before,
    progress_keeps_a_message_from_redelivery_past_its_ack_wait,
    term_stops_redelivery_past_ack_wait,
    message_reaching_max_deliver_is_dead_lettered_once_with_origin_headers_by_two_gateways,
    term_with_dead_letter_subject_stores_the_copy_before_terminating,
    message_whose_last_delivery_expires_is_dead_lettered_at_the_next_fetch_not_before,
    ack_id_from_one_gateway_is_accepted_by_another_with_the_same_secret,
    ack_id_from_an_earlier_delivery_acks_the_redelivered_message,
    ack_for_a_deleted_consumer_returns_207_with_per_result_404_consumer_not_found,
    fetch_waiting_past_max_waiting_returns_429_rate_limited_with_retry_after,
    fetch_waiting_on_a_consumer_that_is_deleted_returns_404_consumer_not_found,
);
