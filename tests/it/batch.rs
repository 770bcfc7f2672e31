//! POST /v1/publish (batches: JSON array, NDJSON, atomic).

use async_nats::jetstream::stream::Config as StreamConfig;
use serde_json::json as j;

use crate::harness::{TestApp, Topology, json, problem, spawn_app, spawn_app_on, spawn_app_with};

async fn post_batch(
    app: &TestApp,
    query: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/v1/publish{query}")))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn atomic_stream(app: &TestApp, allow_atomic: bool) {
    app.create_stream_with(StreamConfig {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        allow_atomic_publish: allow_atomic,
        ..Default::default()
    })
    .await;
}

async fn json_batch_stores_every_item_in_order_with_per_item_results(topology: Topology) {
    let app = spawn_app_on(topology).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let items = j!([
        {"subject": "orders.a", "data": {"id": 1}},
        {"subject": "orders.b", "data": "plain text", "headers": {"Region": "eu"}},
        {"subject": "orders.c", "data_base64": "AP8=", "idempotency_key": "k3"},
    ]);

    let body = json(
        post_batch(&app, "", "application/json", items.to_string()).await,
        200,
    )
    .await;

    assert_eq!(body["stored"], 3);
    assert_eq!(body["failed"], 0);
    let seqs: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 201)
    );
    let stored = app.stored("ORDERS").await;
    assert_eq!(stored[0].payload.as_ref(), br#"{"id":1}"#);
    assert_eq!(
        stored[0].headers.get("Content-Type").unwrap().as_str(),
        "application/json"
    );
    assert_eq!(stored[1].payload.as_ref(), b"plain text");
    assert_eq!(stored[1].headers.get("Region").unwrap().as_str(), "eu");
    assert_eq!(stored[2].payload.as_ref(), &[0x00, 0xff]);
    assert_eq!(stored[2].headers.get("Nats-Msg-Id").unwrap().as_str(), "k3");
}

async fn batch_with_one_bad_item_returns_207_and_stores_the_others(topology: Topology) {
    let app = spawn_app_on(topology).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let items = j!([
        {"subject": "orders.a", "data": 1},
        {"subject": "orders..bad", "data": 2},
        {"subject": "billing.x", "data": 3},
        {"subject": "orders.d", "data": 4, "headers": {"Nats-Rollup": "all"}},
        {"subject": "orders.e", "data": 5},
    ]);

    let body = json(
        post_batch(&app, "", "application/json", items.to_string()).await,
        207,
    )
    .await;

    let results = body["results"].as_array().unwrap();
    assert_eq!(body["stored"], 2);
    assert_eq!(body["failed"], 3);
    assert_eq!(results[0]["status"], 201);
    assert_eq!(results[1]["status"], 400);
    assert_eq!(results[1]["error"]["code"], "invalid_subject");
    assert_eq!(results[2]["status"], 404);
    assert_eq!(results[2]["error"]["code"], "subject_not_captured");
    assert_eq!(results[3]["error"]["code"], "forbidden_header");
    assert_eq!(results[4]["status"], 201);
    let indexes: Vec<u64> = results
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 2, 3, 4]);
    let stored = app.stored("ORDERS").await;
    let subjects: Vec<&str> = stored.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, ["orders.a", "orders.e"]);
}

#[tokio::test]
async fn batch_item_that_is_not_an_item_is_reported_per_item() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let items = j!([{"subject": "orders.a"}, {"subjct": "orders.b"}, 42]);

    let body = json(
        post_batch(&app, "", "application/json", items.to_string()).await,
        207,
    )
    .await;

    assert_eq!(body["results"][0]["status"], 201);
    assert_eq!(body["results"][1]["error"]["code"], "invalid_body");
    assert_eq!(body["results"][2]["error"]["code"], "invalid_body");
    assert_eq!(app.stored("ORDERS").await.len(), 1);
}

#[tokio::test]
async fn ndjson_batch_is_accepted() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let body = "{\"subject\":\"orders.a\",\"data\":1}\n\n{\"subject\":\"orders.b\",\"data\":2}\nnot json\n";

    let answer = json(
        post_batch(&app, "", "application/x-ndjson", body).await,
        207,
    )
    .await;

    assert_eq!(answer["stored"], 2);
    assert_eq!(answer["results"][2]["error"]["code"], "invalid_body");
    assert_eq!(app.stored("ORDERS").await.len(), 2);
}

async fn duplicate_idempotency_keys_in_a_batch_store_once(topology: Topology) {
    let app = spawn_app_on(topology).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let items = j!([
        {"subject": "orders.a", "data": 1, "idempotency_key": "same"},
        {"subject": "orders.a", "data": 1, "idempotency_key": "same"},
    ]);

    let body = json(
        post_batch(&app, "", "application/json", items.to_string()).await,
        200,
    )
    .await;

    assert_eq!(body["results"][1]["duplicate"], true);
    assert_eq!(body["results"][1]["status"], 200);
    assert_eq!(body["results"][1]["seq"], body["results"][0]["seq"]);
    assert_eq!(app.stored("ORDERS").await.len(), 1);
}

#[tokio::test]
async fn malformed_empty_oversized_and_wrong_type_batches_are_rejected() {
    let app = spawn_app_with(|c| c.max_batch_messages = 3).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let four = j!([{"subject":"orders.a"},{"subject":"orders.a"},{"subject":"orders.a"},{"subject":"orders.a"}]);

    problem(
        post_batch(&app, "", "application/json", "[{").await,
        400,
        "invalid_body",
    )
    .await;
    problem(
        post_batch(&app, "", "application/json", "{\"subject\":\"orders.a\"}").await,
        400,
        "invalid_body",
    )
    .await;
    problem(
        post_batch(&app, "", "application/json", "[]").await,
        400,
        "invalid_body",
    )
    .await;
    problem(
        post_batch(&app, "", "application/json", four.to_string()).await,
        413,
        "payload_too_large",
    )
    .await;
    problem(
        post_batch(&app, "", "text/csv", "a,b").await,
        415,
        "unsupported_media_type",
    )
    .await;
    problem(
        post_batch(&app, "?atomic=maybe", "application/json", "[]").await,
        400,
        "invalid_parameter",
    )
    .await;

    assert!(app.stored("ORDERS").await.is_empty());
}

#[tokio::test]
async fn batch_body_over_limit_returns_413() {
    let app = spawn_app_with(|c| c.max_batch_bytes = 1024).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let items = j!([{"subject": "orders.a", "data": "x".repeat(2000)}]);

    problem(
        post_batch(&app, "", "application/json", items.to_string()).await,
        413,
        "payload_too_large",
    )
    .await;
}

async fn atomic_batch_stores_all_messages_with_consecutive_sequences(topology: Topology) {
    let app = spawn_app_on(topology).await;
    atomic_stream(&app, true).await;
    json(app.publish("orders.before", "x", &[]).await, 201).await;
    let items = j!([
        {"subject": "orders.a", "data": 1},
        {"subject": "orders.b", "data": 2},
        {"subject": "orders.c", "data": 3},
    ]);

    let body = json(
        post_batch(&app, "?atomic=true", "application/json", items.to_string()).await,
        200,
    )
    .await;

    let seqs: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3, 4]);
    let stored = app.stored("ORDERS").await;
    let subjects: Vec<&str> = stored.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["orders.before", "orders.a", "orders.b", "orders.c"]
    );
}

#[tokio::test]
async fn atomic_batch_of_one_message_is_stored() {
    let app = spawn_app().await;
    atomic_stream(&app, true).await;

    let body = json(
        post_batch(
            &app,
            "?atomic=true",
            "application/json",
            j!([{"subject": "orders.a", "data": 1}]).to_string(),
        )
        .await,
        200,
    )
    .await;

    assert_eq!(body["results"][0]["seq"], 1);
    assert_eq!(app.stored("ORDERS").await.len(), 1);
}

#[tokio::test]
async fn atomic_batch_on_stream_without_allow_atomic_returns_400_and_stores_nothing() {
    let app = spawn_app().await;
    atomic_stream(&app, false).await;
    let items = j!([{"subject": "orders.a", "data": 1}, {"subject": "orders.b", "data": 2}]);

    let body = problem(
        post_batch(&app, "?atomic=true", "application/json", items.to_string()).await,
        400,
        "atomic_not_enabled",
    )
    .await;

    assert_eq!(body["jetstream_code"], 10174);
    assert!(app.stored("ORDERS").await.is_empty());
}

#[tokio::test]
async fn atomic_batch_with_an_invalid_item_stores_nothing() {
    let app = spawn_app().await;
    atomic_stream(&app, true).await;
    let items = j!([{"subject": "orders.a", "data": 1}, {"subject": "orders.*", "data": 2}]);

    let body = problem(
        post_batch(&app, "?atomic=true", "application/json", items.to_string()).await,
        400,
        "invalid_body",
    )
    .await;

    assert!(
        body["detail"].as_str().unwrap().contains("item 1"),
        "{body}"
    );
    assert!(app.stored("ORDERS").await.is_empty());
}

#[tokio::test]
async fn atomic_batch_with_a_failing_precondition_stores_nothing() {
    let app = spawn_app().await;
    atomic_stream(&app, true).await;
    let items = j!([
        {"subject": "orders.a", "data": 1, "expected_last_sequence": 0},
        {"subject": "orders.b", "data": 2, "expected_last_subject_sequence": 7},
    ]);

    let body = problem(
        post_batch(&app, "?atomic=true", "application/json", items.to_string()).await,
        412,
        "precondition_failed",
    )
    .await;

    assert_eq!(body["jetstream_code"], 10071);
    assert!(
        app.stored("ORDERS").await.is_empty(),
        "an atomic batch is all or nothing"
    );
}

#[tokio::test]
async fn atomic_batch_to_uncaptured_subject_returns_404() {
    let app = spawn_app().await;
    atomic_stream(&app, true).await;

    problem(
        post_batch(
            &app,
            "?atomic=true",
            "application/json",
            j!([{"subject": "billing.a"}]).to_string(),
        )
        .await,
        404,
        "subject_not_captured",
    )
    .await;
}

// Every test above that takes a topology runs on one server (R1) and on a 3-node cluster (R3).
crate::on_r1_and_r3!(
    json_batch_stores_every_item_in_order_with_per_item_results,
    duplicate_idempotency_keys_in_a_batch_store_once,
    atomic_batch_stores_all_messages_with_consecutive_sequences,
    batch_with_one_bad_item_returns_207_and_stores_the_others,
);
