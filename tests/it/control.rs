//! Consumer control: pausing, resuming and moving (seek) a durable consumer, on one node and on
//! an R3 cluster.
//!
//! What JetStream holds is read with the direct client (`app.js`): the consumer's `paused`,
//! `pause_until` and its ack floor. Long-poll fetches measure what a paused consumer delivers:
//! a fetch whose `wait` covers a window and answers empty shows that nothing was delivered in it.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer;
use bytes::Bytes;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::{TestApp, Topology, json, problem, spawn_app_on_with};

const STREAM: &str = "ORDERS";
const CONSUMER: &str = "workers";
const SECRET: &str = "control-test-secret";

async fn orders_app_on(topology: Topology) -> TestApp {
    let app = spawn_app_on_with(topology, |c| c.ack_secret = vec!["s3cret".into()]).await;
    app.create_stream(STREAM, &["orders.>"]).await;
    app
}

fn path(suffix: &str) -> String {
    format!("/v1/streams/{STREAM}/consumers/{CONSUMER}{suffix}")
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

async fn publish_direct(app: &TestApp, subject: &str, payload: &'static str) -> u64 {
    app.js
        .publish(subject.to_owned(), Bytes::from_static(payload.as_bytes()))
        .await
        .expect("publish")
        .await
        .expect("puback")
        .sequence
}

/// Fetches with `body`, asserting 200; answers the messages and how long the fetch took.
async fn fetch(app: &TestApp, body: Value) -> (Vec<Value>, Duration) {
    let start = Instant::now();
    let response = send(app, reqwest::Method::POST, &path("/fetch"), Some(body)).await;
    let elapsed = start.elapsed();
    let body = json(response, 200).await;
    (
        body["messages"].as_array().expect("messages").clone(),
        elapsed,
    )
}

/// The consumer as its leader reports it.
async fn server_consumer(app: &TestApp) -> consumer::Info {
    app.consumer_info(STREAM, CONSUMER).await
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap()
}

fn parse(text: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(text.as_str().expect("a time"), &Rfc3339).expect("RFC 3339")
}

// ---------------------------------------------------------------------------------------------
// Pause and resume

async fn paused_consumer_delivers_nothing_shows_the_pause_and_delivers_again_on_resume(
    topology: Topology,
) {
    let app = orders_app_on(topology).await;
    json(
        send(
            &app,
            reqwest::Method::PUT,
            &path(""),
            Some(json!({"ack_wait": "30s"})),
        )
        .await,
        201,
    )
    .await;
    let first = publish_direct(&app, "orders.new", "one").await;
    let second = publish_direct(&app, "orders.new", "two").await;
    let (before, _) = fetch(&app, json!({"max_messages": 1, "wait": "5s"})).await;
    assert_eq!(before[0]["seq"], first);
    let until = OffsetDateTime::now_utc() + time::Duration::hours(1);

    let pause = json(
        send(
            &app,
            reqwest::Method::POST,
            &path("/pause"),
            Some(json!({"pause_until": rfc3339(until)})),
        )
        .await,
        200,
    )
    .await;

    assert_eq!(pause["paused"], true, "{pause}");
    assert_eq!(
        parse(&pause["pause_until"]).unix_timestamp(),
        until.unix_timestamp()
    );
    assert!(pause["pause_remaining"].is_string(), "{pause}");
    let stored = server_consumer(&app).await;
    assert!(stored.paused, "JetStream has the consumer paused");
    assert_eq!(
        stored.config.pause_until.map(|t| t.unix_timestamp()),
        Some(until.unix_timestamp())
    );
    let info = json(send(&app, reqwest::Method::GET, &path(""), None).await, 200).await;
    assert_eq!(info["paused"], true, "{info}");
    assert_eq!(
        parse(&info["pause_until"]).unix_timestamp(),
        until.unix_timestamp()
    );
    assert_eq!(
        parse(&info["config"]["pause_until"]).unix_timestamp(),
        until.unix_timestamp()
    );
    assert!(info["pause_remaining"].is_string(), "{info}");

    // Paused: a long-poll covering two seconds gets nothing, though a message is pending.
    let (during, waited) = fetch(&app, json!({"max_messages": 10, "wait": "2s"})).await;
    assert!(during.is_empty(), "a paused consumer delivered {during:?}");
    assert!(
        waited >= Duration::from_millis(1900),
        "answered after {waited:?}"
    );
    assert_eq!(server_consumer(&app).await.num_pending, 1);
    // A message delivered before the pause can still be acked.
    let acked = json(
        send(
            &app,
            reqwest::Method::POST,
            "/v1/acks",
            Some(json!({"acks": [{"ack_id": before[0]["ack_id"], "action": "ack"}]})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(acked["results"][0]["status"], 200, "{acked}");
    assert_eq!(server_consumer(&app).await.ack_floor.stream_sequence, first);

    let resumed = json(
        send(&app, reqwest::Method::DELETE, &path("/pause"), None).await,
        200,
    )
    .await;

    assert_eq!(resumed["paused"], false, "{resumed}");
    assert!(resumed.get("pause_remaining").is_none(), "{resumed}");
    assert!(!server_consumer(&app).await.paused);
    let (after, _) = fetch(&app, json!({"max_messages": 10, "wait": "5s"})).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["seq"], second);
    let info = json(send(&app, reqwest::Method::GET, &path(""), None).await, 200).await;
    assert_eq!(info["paused"], false, "{info}");
}

async fn a_pause_that_ends_resumes_by_itself_and_a_waiting_fetch_then_gets_the_message(
    topology: Topology,
) {
    let app = orders_app_on(topology).await;
    json(
        send(&app, reqwest::Method::PUT, &path(""), Some(json!({}))).await,
        201,
    )
    .await;
    let seq = publish_direct(&app, "orders.new", "later").await;
    let until = OffsetDateTime::now_utc() + time::Duration::seconds(3);
    json(
        send(
            &app,
            reqwest::Method::POST,
            &path("/pause"),
            Some(json!({"pause_until": rfc3339(until)})),
        )
        .await,
        200,
    )
    .await;

    let (messages, _) = fetch(&app, json!({"max_messages": 1, "wait": "20s"})).await;

    let answered = OffsetDateTime::now_utc();
    assert_eq!(messages.len(), 1, "the pause ended within the wait");
    assert_eq!(messages[0]["seq"], seq);
    assert!(
        answered >= until - time::Duration::milliseconds(100),
        "delivered at {answered}, before the pause ended at {until}"
    );
    assert!(!server_consumer(&app).await.paused);
}

crate::on_r1_and_r3!(
    paused_consumer_delivers_nothing_shows_the_pause_and_delivers_again_on_resume,
    a_pause_that_ends_resumes_by_itself_and_a_waiting_fetch_then_gets_the_message,
);

#[tokio::test]
async fn a_consumer_created_paused_stays_paused_across_an_update_without_pause_until() {
    let app = orders_app_on(Topology::Single).await;
    let until = OffsetDateTime::now_utc() + time::Duration::hours(2);
    let created = json(
        send(
            &app,
            reqwest::Method::PUT,
            &path(""),
            Some(json!({"pause_until": rfc3339(until)})),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(created["paused"], true, "{created}");

    let updated = json(
        send(
            &app,
            reqwest::Method::PUT,
            &path(""),
            Some(json!({"description": "still paused"})),
        )
        .await,
        200,
    )
    .await;

    assert_eq!(updated["paused"], true, "{updated}");
    let stored = server_consumer(&app).await;
    assert!(stored.paused);
    assert_eq!(stored.config.description.as_deref(), Some("still paused"));
    assert_eq!(
        stored.config.pause_until.map(|t| t.unix_timestamp()),
        Some(until.unix_timestamp())
    );
}

#[tokio::test]
async fn pause_and_seek_refuse_bad_times_unknown_consumers_and_callers_without_admin() {
    let app = spawn_app_on_with(Topology::Single, |c| {
        c.no_auth = false;
        c.jwt_secret = vec![SECRET.to_owned()];
    })
    .await;
    app.create_stream(STREAM, &["orders.>"]).await;
    let admin = token(json!({"admin": true}));
    let reader = token(json!({"read": ["*"]}));
    let tenant_admin = token(json!({"admin": true, "prefix": "acme"}));
    let authed = |method: reqwest::Method, path: String, token: &str, body: Option<Value>| {
        let mut request = app.http.request(method, app.url(&path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    json(
        authed(reqwest::Method::PUT, path(""), &admin, Some(json!({})))
            .await
            .unwrap(),
        201,
    )
    .await;
    let later =
        json!({"pause_until": rfc3339(OffsetDateTime::now_utc() + time::Duration::hours(1))});

    problem(
        authed(
            reqwest::Method::POST,
            path("/pause"),
            &reader,
            Some(later.clone()),
        )
        .await
        .unwrap(),
        403,
        "forbidden",
    )
    .await;
    problem(
        authed(reqwest::Method::DELETE, path("/pause"), &reader, None)
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    // The consumer delivers the whole stream, not only the tenant's namespace.
    problem(
        authed(
            reqwest::Method::POST,
            path("/pause"),
            &tenant_admin,
            Some(later.clone()),
        )
        .await
        .unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert!(
        !server_consumer(&app).await.paused,
        "refused pauses changed nothing"
    );
    for bad in [
        json!({"pause_until": "tomorrow"}),
        json!({"pause_until": "2300-01-01T00:00:00Z"}),
        json!({}),
        json!({"pause_until": "2030-01-01T00:00:00Z", "extra": 1}),
    ] {
        let response = authed(
            reqwest::Method::POST,
            path("/pause"),
            &admin,
            Some(bad.clone()),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    problem(
        authed(
            reqwest::Method::POST,
            format!("/v1/streams/{STREAM}/consumers/nobody/pause"),
            &admin,
            Some(later.clone()),
        )
        .await
        .unwrap(),
        404,
        "consumer_not_found",
    )
    .await;
    assert!(!server_consumer(&app).await.paused);
    // Seeking needs admin too.
    problem(
        authed(
            reqwest::Method::POST,
            path("/seek"),
            &reader,
            Some(json!({"seq": 1})),
        )
        .await
        .unwrap(),
        403,
        "forbidden",
    )
    .await;
    problem(
        authed(
            reqwest::Method::POST,
            path("/seek"),
            &tenant_admin,
            Some(json!({"seq": 1})),
        )
        .await
        .unwrap(),
        403,
        "forbidden",
    )
    .await;
}

fn token(grants: Value) -> String {
    let claims = json!({
        "sub": "control",
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
        "jetway": grants,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Seek

async fn seek(app: &TestApp, body: Value) -> reqwest::Response {
    send(app, reqwest::Method::POST, &path("/seek"), Some(body)).await
}

async fn publish_n(app: &TestApp, count: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for _ in 0..count {
        seqs.push(publish_direct(app, "orders.new", "m").await);
    }
    seqs
}

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

async fn ack_all(app: &TestApp, messages: &[Value]) -> Value {
    let acks: Vec<Value> = messages
        .iter()
        .map(|m| json!({"ack_id": m["ack_id"], "action": "ack"}))
        .collect();
    let response = send(
        app,
        reqwest::Method::POST,
        "/v1/acks",
        Some(json!({"acks": acks})),
    )
    .await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json");
    assert!(status == 200 || status == 207, "{status}: {body}");
    body
}

async fn seek_rewinds_a_consumer_to_a_sequence_and_it_delivers_again_from_there(
    topology: Topology,
) {
    let app = orders_app_on(topology).await;
    json(
        send(&app, reqwest::Method::PUT, &path(""), Some(json!({}))).await,
        201,
    )
    .await;
    publish_n(&app, 5).await;
    let (all, _) = fetch(&app, json!({"max_messages": 10, "wait": "5s"})).await;
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
    ack_all(&app, &all).await;
    assert_eq!(server_consumer(&app).await.ack_floor.stream_sequence, 5);

    let moved = json(seek(&app, json!({"seq": 2})).await, 200).await;

    assert_eq!(moved["seq"], 2, "{moved}");
    assert_eq!(
        moved["consumer"]["state"]["ack_floor"]["stream_seq"], 1,
        "{moved}"
    );
    let stored = server_consumer(&app).await;
    assert_eq!(stored.ack_floor.stream_sequence, 1);
    assert_eq!(stored.num_pending, 4);
    assert_eq!(stored.num_ack_pending, 0);
    let (again, _) = fetch(&app, json!({"max_messages": 10, "wait": "5s"})).await;
    assert_eq!(seqs(&again), [2, 3, 4, 5]);
    assert!(again.iter().all(|m| m["delivered"] == 1), "{again:?}");
}

async fn seek_to_a_time_skips_older_messages_and_past_the_end_waits_for_new_ones(
    topology: Topology,
) {
    let app = orders_app_on(topology).await;
    json(
        send(&app, reqwest::Method::PUT, &path(""), Some(json!({}))).await,
        201,
    )
    .await;
    publish_n(&app, 5).await;
    let fourth = app.stored(STREAM).await[3].time;

    let moved = json(seek(&app, json!({"time": rfc3339(fourth)})).await, 200).await;

    assert_eq!(moved["seq"], 4, "{moved}");
    assert_eq!(server_consumer(&app).await.num_pending, 2);
    let (from_time, _) = fetch(&app, json!({"max_messages": 10, "wait": "5s"})).await;
    assert_eq!(seqs(&from_time), [4, 5]);

    // A time after the last message: the end of the stream.
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let moved = json(seek(&app, json!({"time": rfc3339(later)})).await, 200).await;
    assert_eq!(moved["seq"], 6, "{moved}");
    let (nothing, _) = fetch(&app, json!({"max_messages": 10, "wait": "1s"})).await;
    assert!(nothing.is_empty(), "{nothing:?}");
    let next = publish_direct(&app, "orders.new", "new").await;
    let (new, _) = fetch(&app, json!({"max_messages": 10, "wait": "5s"})).await;
    assert_eq!(seqs(&new), [next]);
}

async fn seek_forgets_deliveries_awaiting_their_ack(topology: Topology) {
    let app = orders_app_on(topology).await;
    json(
        send(
            &app,
            reqwest::Method::PUT,
            &path(""),
            Some(json!({"ack_wait": "60s"})),
        )
        .await,
        201,
    )
    .await;
    publish_n(&app, 6).await;
    let (in_flight, _) = fetch(&app, json!({"max_messages": 3, "wait": "5s"})).await;
    assert_eq!(seqs(&in_flight), [1, 2, 3]);
    assert_eq!(server_consumer(&app).await.num_ack_pending, 3);

    // Rewind into the deliveries awaiting their ack.
    json(seek(&app, json!({"seq": 2})).await, 200).await;

    assert_eq!(
        server_consumer(&app).await.num_ack_pending,
        0,
        "pending deliveries are forgotten"
    );
    let results = ack_all(&app, &in_flight).await;
    let statuses: Vec<u64> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    // Below the new position: already inside the ack floor, confirmed and harmless. At or after
    // it: JetStream no longer tracks the delivery and does not confirm.
    assert_eq!(statuses, [200, 410, 410], "{results}");
    assert_eq!(results["results"][1]["error"]["code"], "ack_not_confirmed");
    let stored = server_consumer(&app).await;
    assert_eq!(
        stored.ack_floor.stream_sequence, 1,
        "old ack ids moved nothing"
    );
    let (again, _) = fetch(&app, json!({"max_messages": 2, "wait": "5s"})).await;
    assert_eq!(
        seqs(&again),
        [2, 3],
        "delivered again from the new position"
    );
    assert!(
        again.iter().all(|m| m["delivered"] == 1),
        "counted as first deliveries: {again:?}"
    );

    // Fast-forward past deliveries awaiting their ack: their old ids are confirmed but change
    // nothing, and the skipped messages are never delivered.
    json(seek(&app, json!({"seq": 6})).await, 200).await;
    let results = ack_all(&app, &again).await;
    assert!(
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 200),
        "{results}"
    );
    let stored = server_consumer(&app).await;
    assert_eq!(stored.ack_floor.stream_sequence, 5);
    assert_eq!(stored.num_ack_pending, 0);
    let (rest, _) = fetch(&app, json!({"max_messages": 10, "wait": "2s"})).await;
    assert_eq!(seqs(&rest), [6]);
}

async fn seek_refuses_what_the_consumer_or_the_request_does_not_allow(topology: Topology) {
    let app = orders_app_on(topology).await;
    publish_n(&app, 5).await;
    json(
        send(
            &app,
            reqwest::Method::PUT,
            &path(""),
            Some(json!({"deliver_policy": "by_start_sequence", "opt_start_seq": 3})),
        )
        .await,
        201,
    )
    .await;
    let newest = "/v1/streams/ORDERS/consumers/newest";
    json(
        send(
            &app,
            reqwest::Method::PUT,
            newest,
            Some(json!({"deliver_policy": "new"})),
        )
        .await,
        201,
    )
    .await;

    problem(
        seek(&app, json!({"seq": 2})).await,
        409,
        "consumer_conflict",
    )
    .await;
    problem(
        send(
            &app,
            reqwest::Method::POST,
            &format!("{newest}/seek"),
            Some(json!({"seq": 1})),
        )
        .await,
        409,
        "consumer_conflict",
    )
    .await;
    for bad in [
        json!({}),
        json!({"seq": 2, "time": "2026-01-01T00:00:00Z"}),
        json!({"seq": 0}),
        json!({"seq": -1}),
        json!({"time": "yesterday"}),
        json!({"seq": 1, "extra": true}),
    ] {
        let response = seek(&app, bad.clone()).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    problem(
        send(
            &app,
            reqwest::Method::POST,
            "/v1/streams/ORDERS/consumers/nobody/seek",
            Some(json!({"seq": 1})),
        )
        .await,
        404,
        "consumer_not_found",
    )
    .await;
    // Nothing moved: the consumer starts at its start sequence.
    let stored = server_consumer(&app).await;
    assert_eq!(stored.num_pending, 3);
    assert_eq!(stored.delivered.stream_sequence, 2);
    let moved = json(seek(&app, json!({"seq": 4})).await, 200).await;
    assert_eq!(moved["seq"], 4);
}

crate::on_r1_and_r3!(
    seek_rewinds_a_consumer_to_a_sequence_and_it_delivers_again_from_there,
    seek_to_a_time_skips_older_messages_and_past_the_end_waits_for_new_ones,
    seek_forgets_deliveries_awaiting_their_ack,
    seek_refuses_what_the_consumer_or_the_request_does_not_allow,
);
