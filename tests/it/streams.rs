//! Stream administration: PUT (create, update, unchanged, conflicts), GET, list, DELETE, purge,
//! and the streams declared in the configuration file.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::stream::{self, StorageType};
use futures::StreamExt;
use jetway::config::{Cli, Config, StreamSpec};
use jetway::nats::streams::StreamConfig;
use serde_json::{Value, json};

use crate::harness::{NatsServer, TestApp, json, problem, spawn_app, spawn_app_with};

/// PUT /v1/streams/{name} with a JSON body.
async fn put_stream(app: &TestApp, name: &str, body: &Value) -> reqwest::Response {
    app.http
        .put(app.url(&format!("/v1/streams/{name}")))
        .json(body)
        .send()
        .await
        .expect("put stream request")
}

/// POST /v1/streams/{name}/purge, with a JSON body or none.
async fn purge_stream(app: &TestApp, name: &str, body: Option<&Value>) -> reqwest::Response {
    let mut request = app.http.post(app.url(&format!("/v1/streams/{name}/purge")));
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("purge request")
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .send()
        .await
        .expect("get request")
}

/// The stream's configuration and state as JetStream reports it.
async fn stored_info(app: &TestApp, name: &str) -> stream::Info {
    let stream = app.js.get_stream(name).await.expect("stream exists");
    stream.get_info().await.expect("stream info")
}

/// Publishes `count` messages on `subject` through the gateway.
async fn publish_many(app: &TestApp, subject: &str, count: usize) {
    for i in 0..count {
        let response = app.publish(subject, format!("message {i}"), &[]).await;
        assert_eq!(response.status().as_u16(), 201, "publish {i} to {subject}");
    }
}

/// Builds a second gateway on an existing server (the first app's), declaring `streams`.
async fn build_gateway(
    server: &NatsServer,
    streams: Vec<StreamSpec>,
) -> Result<jetway::App, jetway::StartError> {
    let mut config = Config::defaults();
    config.nats_url = vec![server.url()];
    config.no_auth = true;
    config.streams = streams;
    jetway::build(config).await
}

/// The JetStream API subjects the server handled while `act` ran, in order, from the server's
/// API audit advisories. The server sends each advisory right after its answer, through one
/// queue, so requests on two marker subjects bracket the window: advisories of calls made
/// before `act` (still queued when we subscribe) arrive before the opening marker, and every
/// call `act` made is reported before the closing one.
async fn api_calls_during(app: &TestApp, act: impl Future<Output = ()>) -> Vec<String> {
    const OPEN: &str = "$JS.API.STREAM.INFO.AUDIT_WINDOW_OPEN";
    const CLOSE: &str = "$JS.API.STREAM.INFO.AUDIT_WINDOW_CLOSE";
    let mut audit = app.nats.subscribe("$JS.EVENT.ADVISORY.API").await.unwrap();
    app.nats.flush().await.unwrap();
    app.nats.request(OPEN, "".into()).await.unwrap();
    act.await;
    app.nats.request(CLOSE, "".into()).await.unwrap();
    let mut calls = Vec::new();
    let mut open = false;
    loop {
        let advisory = tokio::time::timeout(Duration::from_secs(10), audit.next())
            .await
            .expect("API audit advisory within 10s")
            .expect("subscription open");
        let event: Value = serde_json::from_slice(&advisory.payload).unwrap();
        let subject = event["subject"].as_str().unwrap_or_default().to_owned();
        match subject.as_str() {
            OPEN => open = true,
            CLOSE => return calls,
            _ if open => calls.push(subject),
            _ => {}
        }
    }
}

/// Calls that change a stream.
fn changes(calls: &[String]) -> Vec<&String> {
    calls
        .iter()
        .filter(|c| {
            c.contains(".STREAM.CREATE.")
                || c.contains(".STREAM.UPDATE.")
                || c.contains(".STREAM.DELETE.")
        })
        .collect()
}

/// A declared stream, as a `[[streams]]` table would give it.
fn spec(name: &str, config: Value) -> StreamSpec {
    let config: StreamConfig = serde_json::from_value(config).expect("valid stream config");
    StreamSpec {
        name: name.to_owned(),
        config,
    }
}

// ---------------------------------------------------------------------------------------------
// PUT

#[tokio::test]
async fn put_new_stream_returns_201_with_config_echoed_and_creates_it() {
    let app = spawn_app().await;

    let response = put_stream(
        &app,
        "ORDERS",
        &json!({
            "subjects": ["orders.>"],
            "max_age": "72h",
            "duplicate_window": "30s",
            "allow_msg_ttl": true,
            "description": "Order events"
        }),
    )
    .await;

    let body = json(response, 201).await;
    assert_eq!(body["name"], "ORDERS");
    let config = &body["config"];
    assert_eq!(config["subjects"], json!(["orders.>"]));
    assert_eq!(config["max_age"], "72h");
    assert_eq!(config["duplicate_window"], "30s");
    assert_eq!(config["allow_msg_ttl"], true);
    assert_eq!(config["description"], "Order events");
    assert_eq!(config["storage"], "file");
    assert_eq!(config["retention"], "limits");
    assert!(
        config.get("max_msgs").is_none(),
        "unlimited limits are omitted: {config}"
    );
    assert_eq!(body["state"]["messages"], 0);
    let stored = stored_info(&app, "ORDERS").await.config;
    assert_eq!(stored.subjects, ["orders.>"]);
    assert_eq!(stored.max_age, Duration::from_secs(72 * 3600));
    assert_eq!(stored.duplicate_window, Duration::from_secs(30));
    assert!(stored.allow_message_ttl);
    assert_eq!(stored.description.as_deref(), Some("Order events"));
    assert_eq!(stored.storage, StorageType::File);
}

#[tokio::test]
async fn put_same_config_again_returns_200_and_changes_nothing() {
    let app = spawn_app().await;
    let config = json!({"subjects": ["orders.>"], "max_age": "72h", "description": "Order events"});
    let first = json(put_stream(&app, "ORDERS", &config).await, 201).await;
    let before = stored_info(&app, "ORDERS").await;

    let mut response = None;
    let calls = api_calls_during(&app, async {
        response = Some(put_stream(&app, "ORDERS", &config).await)
    })
    .await;

    let second = json(response.unwrap(), 200).await;
    assert_eq!(second["created"], first["created"]);
    assert_eq!(second["config"], first["config"]);
    assert!(
        calls.contains(&"$JS.API.STREAM.INFO.ORDERS".to_owned()),
        "audit saw: {calls:?}"
    );
    assert!(
        changes(&calls).is_empty(),
        "an unchanged PUT changed the stream: {calls:?}"
    );
    let after = stored_info(&app, "ORDERS").await;
    assert_eq!(after.created, before.created);
    assert_eq!(after.config, before.config);
}

#[tokio::test]
async fn put_with_changed_max_msgs_returns_200_and_applies_the_limit() {
    let app = spawn_app().await;
    json(
        put_stream(
            &app,
            "ORDERS",
            &json!({"subjects": ["orders.>"], "max_msgs": 100}),
        )
        .await,
        201,
    )
    .await;

    let response = put_stream(
        &app,
        "ORDERS",
        &json!({"subjects": ["orders.>"], "max_msgs": 5}),
    )
    .await;

    let body = json(response, 200).await;
    assert_eq!(body["config"]["max_msgs"], 5);
    assert_eq!(stored_info(&app, "ORDERS").await.config.max_messages, 5);
}

#[tokio::test]
async fn put_changing_storage_file_to_memory_returns_409_and_keeps_the_stream() {
    let app = spawn_app().await;
    json(
        put_stream(
            &app,
            "ORDERS",
            &json!({"subjects": ["orders.>"], "storage": "file"}),
        )
        .await,
        201,
    )
    .await;

    let response = put_stream(
        &app,
        "ORDERS",
        &json!({"subjects": ["orders.>"], "storage": "memory"}),
    )
    .await;

    problem(response, 409, "stream_conflict").await;
    assert_eq!(
        stored_info(&app, "ORDERS").await.config.storage,
        StorageType::File
    );
}

#[tokio::test]
async fn put_with_subjects_overlapping_another_stream_returns_409() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let response = put_stream(&app, "EU_ORDERS", &json!({"subjects": ["orders.eu.*"]})).await;

    problem(response, 409, "stream_conflict").await;
    assert!(
        app.js.get_stream("EU_ORDERS").await.is_err(),
        "no stream may be created"
    );
}

#[tokio::test]
async fn put_with_unknown_field_returns_400_invalid_body() {
    let app = spawn_app().await;

    let response = put_stream(
        &app,
        "ORDERS",
        &json!({"subjects": ["orders.>"], "max_mesages": 5}),
    )
    .await;

    let body = problem(response, 400, "invalid_body").await;
    assert!(
        body["detail"].as_str().unwrap().contains("max_mesages"),
        "{body}"
    );
    assert!(
        app.js.get_stream("ORDERS").await.is_err(),
        "no stream may be created"
    );
}

#[tokio::test]
async fn put_with_bad_duration_returns_400_invalid_body() {
    let app = spawn_app().await;

    let response = put_stream(
        &app,
        "ORDERS",
        &json!({"subjects": ["orders.>"], "max_age": "soon"}),
    )
    .await;

    let body = problem(response, 400, "invalid_body").await;
    assert!(body["detail"].as_str().unwrap().contains("soon"), "{body}");
    assert!(
        app.js.get_stream("ORDERS").await.is_err(),
        "no stream may be created"
    );
}

#[tokio::test]
async fn put_with_invalid_stream_name_returns_400_invalid_name() {
    let app = spawn_app().await;

    for name in ["a.b", "a*", "a>", "a%20b"] {
        let response = put_stream(&app, name, &json!({"subjects": ["orders.>"]})).await;

        problem(response, 400, "invalid_name").await;
    }
    let names: Vec<String> = {
        use futures::TryStreamExt;
        app.js.stream_names().try_collect().await.unwrap()
    };
    assert!(names.is_empty(), "no stream may be created: {names:?}");
}

#[tokio::test]
async fn put_update_preserves_fields_the_api_does_not_model() {
    let app = spawn_app().await;
    app.create_stream_with(stream::Config {
        name: "ORDERS".to_owned(),
        subjects: vec!["orders.>".to_owned()],
        allow_rollup: true,
        deny_delete: true,
        metadata: HashMap::from([("owner".to_owned(), "team-a".to_owned())]),
        ..Default::default()
    })
    .await;

    let response = put_stream(
        &app,
        "ORDERS",
        &json!({"subjects": ["orders.>"], "max_msgs": 10}),
    )
    .await;

    json(response, 200).await;
    let stored = stored_info(&app, "ORDERS").await.config;
    assert_eq!(stored.max_messages, 10, "the modelled change is applied");
    assert!(stored.allow_rollup, "allow_rollup was reset");
    assert!(stored.deny_delete, "deny_delete was reset");
    assert_eq!(
        stored.metadata.get("owner").map(String::as_str),
        Some("team-a"),
        "metadata was reset"
    );
}

#[tokio::test]
async fn put_without_a_limit_it_had_makes_it_unlimited() {
    let app = spawn_app().await;
    json(
        put_stream(
            &app,
            "ORDERS",
            &json!({"subjects": ["orders.>"], "max_msgs": 5, "max_bytes": 4096}),
        )
        .await,
        201,
    )
    .await;

    let response = put_stream(
        &app,
        "ORDERS",
        &json!({"subjects": ["orders.>"], "max_bytes": null}),
    )
    .await;

    let body = json(response, 200).await;
    assert!(body["config"].get("max_msgs").is_none(), "{body}");
    assert!(body["config"].get("max_bytes").is_none(), "{body}");
    let stored = stored_info(&app, "ORDERS").await.config;
    assert_eq!(stored.max_messages, -1);
    assert_eq!(stored.max_bytes, -1);
}

#[tokio::test]
async fn put_without_subjects_captures_the_stream_name_and_repeats_unchanged() {
    let app = spawn_app().await;
    let first = json(put_stream(&app, "EVENTS", &json!({})).await, 201).await;

    let mut response = None;
    let calls = api_calls_during(&app, async {
        response = Some(put_stream(&app, "EVENTS", &json!({})).await)
    })
    .await;

    assert_eq!(first["config"]["subjects"], json!(["EVENTS"]));
    assert_eq!(first["config"]["duplicate_window"], "2m");
    json(response.unwrap(), 200).await;
    assert!(
        changes(&calls).is_empty(),
        "defaults compared unequal: {calls:?}"
    );
    assert_eq!(
        stored_info(&app, "EVENTS").await.config.subjects,
        ["EVENTS"]
    );
}

#[tokio::test]
async fn put_with_zero_limits_repeated_leaves_the_stream_unchanged() {
    let app = spawn_app().await;
    // JetStream reads 0 as "unlimited" / "default" and stores -1 / 0 / 2m.
    let config =
        json!({"subjects": ["orders.>"], "max_msgs": 0, "max_age": "0s", "duplicate_window": "0s"});
    json(put_stream(&app, "ORDERS", &config).await, 201).await;

    let mut response = None;
    let calls = api_calls_during(&app, async {
        response = Some(put_stream(&app, "ORDERS", &config).await)
    })
    .await;

    json(response.unwrap(), 200).await;
    assert!(
        changes(&calls).is_empty(),
        "a repeated PUT updated the stream: {calls:?}"
    );
}

#[tokio::test]
async fn put_update_whose_subjects_overlap_another_stream_returns_409() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    app.create_stream("BILLING", &["billing.>"]).await;

    let response = put_stream(
        &app,
        "BILLING",
        &json!({"subjects": ["billing.>", "orders.eu"]}),
    )
    .await;

    problem(response, 409, "stream_conflict").await;
    assert_eq!(
        stored_info(&app, "BILLING").await.config.subjects,
        ["billing.>"]
    );
}

#[tokio::test]
async fn put_with_more_replicas_than_servers_returns_400_invalid_config() {
    let app = spawn_app().await;

    let response = put_stream(
        &app,
        "ORDERS",
        &json!({"subjects": ["orders.>"], "replicas": 3}),
    )
    .await;

    let body = problem(response, 400, "invalid_config").await;
    assert!(
        body["jetstream_code"].as_u64().is_some(),
        "JetStream's code is passed on: {body}"
    );
    assert!(
        app.js.get_stream("ORDERS").await.is_err(),
        "no stream may be created"
    );
}

#[tokio::test]
async fn put_with_invalid_subject_returns_400_invalid_config() {
    let app = spawn_app().await;

    let response = put_stream(&app, "ORDERS", &json!({"subjects": ["orders..new"]})).await;

    let body = problem(response, 400, "invalid_config").await;
    assert!(
        body["detail"].as_str().unwrap().contains("orders..new"),
        "{body}"
    );
    assert!(
        app.js.get_stream("ORDERS").await.is_err(),
        "no stream may be created"
    );
}

/// JetStream counts limits as signed 64-bit numbers, and the document says int64: a larger one
/// is a body that does not match the schema (400 invalid_body, naming the field), never a 503
/// from a request JetStream cannot parse.
#[tokio::test]
async fn put_with_limits_past_the_signed_64_bit_range_returns_400_invalid_body() {
    let app = spawn_app().await;

    for field in ["max_bytes", "max_msgs", "max_msgs_per_subject"] {
        let mut config = json!({"subjects": ["orders.>"]});
        config[field] = json!(u64::MAX);
        let response = put_stream(&app, "ORDERS", &config).await;

        let body = problem(response, 400, "invalid_body").await;
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(field),
            "{body}"
        );
    }
    assert!(
        app.js.get_stream("ORDERS").await.is_err(),
        "no stream may be created"
    );
    let at_the_bound = put_stream(
        &app,
        "ORDERS",
        &json!({"subjects": ["orders.>"], "max_msgs": i64::MAX}),
    )
    .await;
    assert_eq!(at_the_bound.status(), 201);
}

#[tokio::test]
async fn put_with_duplicate_window_longer_than_max_age_returns_400_invalid_config() {
    let app = spawn_app().await;

    let response = put_stream(
        &app,
        "ORDERS",
        &json!({"subjects": ["orders.>"], "max_age": "30s", "duplicate_window": "1m"}),
    )
    .await;

    problem(response, 400, "invalid_config").await;
    assert!(
        app.js.get_stream("ORDERS").await.is_err(),
        "no stream may be created"
    );
}

#[tokio::test]
async fn put_without_json_content_type_returns_415_unsupported_media_type() {
    let app = spawn_app().await;

    let response = app
        .http
        .put(app.url("/v1/streams/ORDERS"))
        .header("content-type", "text/plain")
        .body(r#"{"subjects": ["orders.>"]}"#)
        .send()
        .await
        .unwrap();

    problem(response, 415, "unsupported_media_type").await;
    assert!(
        app.js.get_stream("ORDERS").await.is_err(),
        "no stream may be created"
    );
}

#[tokio::test]
async fn put_with_malformed_json_returns_400_invalid_body() {
    let app = spawn_app().await;

    let response = app
        .http
        .put(app.url("/v1/streams/ORDERS"))
        .header("content-type", "application/json")
        .body(r#"{"subjects": ["orders.>"]"#)
        .send()
        .await
        .unwrap();

    problem(response, 400, "invalid_body").await;
}

#[tokio::test]
async fn put_with_body_over_64_kib_returns_413_payload_too_large() {
    let app = spawn_app().await;
    let description = "x".repeat(70 * 1024);

    let response = put_stream(
        &app,
        "ORDERS",
        &json!({"subjects": ["orders.>"], "description": description}),
    )
    .await;

    problem(response, 413, "payload_too_large").await;
    assert!(
        app.js.get_stream("ORDERS").await.is_err(),
        "no stream may be created"
    );
}

// ---------------------------------------------------------------------------------------------
// GET, list, DELETE

#[tokio::test]
async fn get_stream_shows_state_after_publishing() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.new", 2).await;
    publish_many(&app, "orders.paid", 1).await;
    let stream = app.js.get_stream("ORDERS").await.unwrap();
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("worker".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();

    let response = get(&app, "/v1/streams/ORDERS").await;

    let body = json(response, 200).await;
    assert_eq!(body["name"], "ORDERS");
    assert_eq!(body["config"]["subjects"], json!(["orders.>"]));
    let state = &body["state"];
    assert_eq!(state["messages"], 3);
    assert!(state["bytes"].as_u64().unwrap() > 0, "{state}");
    assert_eq!(state["first_seq"], 1);
    assert_eq!(state["last_seq"], 3);
    assert_eq!(state["num_subjects"], 2);
    assert_eq!(state["consumer_count"], 1);
    assert_eq!(state["num_deleted"], 0);
    let stored = app.stored("ORDERS").await;
    let first_time = time::OffsetDateTime::parse(
        state["first_time"].as_str().expect("first_time present"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let last_time = time::OffsetDateTime::parse(
        state["last_time"].as_str().expect("last_time present"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(first_time, stored[0].time);
    assert_eq!(last_time, stored[2].time);
    assert!(
        body["created"].as_str().is_some_and(|c| !c.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn get_empty_stream_omits_first_and_last_time() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let body = json(get(&app, "/v1/streams/ORDERS").await, 200).await;

    assert_eq!(body["state"]["messages"], 0);
    assert!(body["state"].get("first_time").is_none(), "{body}");
    assert!(body["state"].get("last_time").is_none(), "{body}");
}

#[tokio::test]
async fn get_stream_counts_messages_deleted_inside_the_range() {
    let app = spawn_app().await;
    let stream = app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.new", 3).await;
    stream.delete_message(2).await.unwrap();

    let body = json(get(&app, "/v1/streams/ORDERS").await, 200).await;

    assert_eq!(body["state"]["messages"], 2);
    assert_eq!(body["state"]["first_seq"], 1);
    assert_eq!(body["state"]["last_seq"], 3);
    assert_eq!(body["state"]["num_deleted"], 1);
}

#[tokio::test]
async fn list_streams_returns_every_stream() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    app.create_stream("PAYMENTS", &["payments.>"]).await;
    app.create_stream("AUDIT", &["audit.>"]).await;

    let response = get(&app, "/v1/streams").await;

    let body = json(response, 200).await;
    let mut names: Vec<&str> = body["streams"]
        .as_array()
        .expect("streams array")
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["AUDIT", "ORDERS", "PAYMENTS"]);
    let payments = body["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "PAYMENTS")
        .unwrap();
    assert_eq!(payments["config"]["subjects"], json!(["payments.>"]));
}

#[tokio::test]
async fn list_streams_returns_streams_beyond_one_jetstream_page() {
    let app = spawn_app().await;
    // JetStream answers STREAM.LIST in pages of 256.
    for i in 0..260 {
        app.create_stream_with(stream::Config {
            name: format!("S{i:03}"),
            subjects: vec![format!("s{i:03}")],
            storage: StorageType::Memory,
            ..Default::default()
        })
        .await;
    }

    let body = json(get(&app, "/v1/streams").await, 200).await;

    let mut names: Vec<&str> = body["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 260);
}

#[tokio::test]
async fn list_streams_without_streams_returns_empty_list() {
    let app = spawn_app().await;

    let body = json(get(&app, "/v1/streams").await, 200).await;

    assert_eq!(body, json!({"streams": []}));
}

#[tokio::test]
async fn get_unknown_stream_returns_404_stream_not_found() {
    let app = spawn_app().await;

    let response = get(&app, "/v1/streams/NOPE").await;

    let body = problem(response, 404, "stream_not_found").await;
    assert!(body["detail"].as_str().unwrap().contains("NOPE"), "{body}");
}

#[tokio::test]
async fn get_stream_with_invalid_name_returns_400_invalid_name() {
    let app = spawn_app().await;

    let response = get(&app, "/v1/streams/a.b").await;

    problem(response, 400, "invalid_name").await;
}

#[tokio::test]
async fn delete_stream_returns_204_and_then_get_returns_404() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.new", 2).await;

    let response = app
        .http
        .delete(app.url("/v1/streams/ORDERS"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 204);
    assert!(response.text().await.unwrap().is_empty());
    assert!(
        app.js.get_stream("ORDERS").await.is_err(),
        "stream still exists"
    );
    problem(
        get(&app, "/v1/streams/ORDERS").await,
        404,
        "stream_not_found",
    )
    .await;
}

#[tokio::test]
async fn delete_unknown_stream_returns_404_stream_not_found() {
    let app = spawn_app().await;

    let response = app
        .http
        .delete(app.url("/v1/streams/NOPE"))
        .send()
        .await
        .unwrap();

    problem(response, 404, "stream_not_found").await;
}

// ---------------------------------------------------------------------------------------------
// Purge

#[tokio::test]
async fn purge_without_body_removes_every_message() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.new", 3).await;
    publish_many(&app, "orders.paid", 2).await;

    let response = purge_stream(&app, "ORDERS", None).await;

    assert_eq!(json(response, 200).await, json!({"purged": 5}));
    let state = stored_info(&app, "ORDERS").await.state;
    assert_eq!(state.messages, 0);
    assert_eq!(state.last_sequence, 5, "sequences are not reused");
}

#[tokio::test]
async fn purge_with_empty_object_removes_every_message() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.new", 3).await;

    let response = purge_stream(&app, "ORDERS", Some(&json!({}))).await;

    assert_eq!(json(response, 200).await, json!({"purged": 3}));
    assert_eq!(stored_info(&app, "ORDERS").await.state.messages, 0);
}

#[tokio::test]
async fn purge_by_subject_removes_only_that_subject() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.new", 3).await;
    publish_many(&app, "orders.paid", 2).await;

    let response = purge_stream(&app, "ORDERS", Some(&json!({"subject": "orders.new"}))).await;

    assert_eq!(json(response, 200).await, json!({"purged": 3}));
    let stored = app.stored("ORDERS").await;
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|m| m.subject.as_str() == "orders.paid"));
}

#[tokio::test]
async fn purge_keep_n_keeps_the_newest_n() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.new", 5).await;

    let response = purge_stream(&app, "ORDERS", Some(&json!({"keep": 2}))).await;

    assert_eq!(json(response, 200).await, json!({"purged": 3}));
    let seqs: Vec<u64> = app
        .stored("ORDERS")
        .await
        .iter()
        .map(|m| m.sequence)
        .collect();
    assert_eq!(seqs, [4, 5]);
}

#[tokio::test]
async fn purge_up_to_seq_removes_messages_below_it() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.new", 5).await;

    let response = purge_stream(&app, "ORDERS", Some(&json!({"up_to_seq": 4}))).await;

    assert_eq!(json(response, 200).await, json!({"purged": 3}));
    let seqs: Vec<u64> = app
        .stored("ORDERS")
        .await
        .iter()
        .map(|m| m.sequence)
        .collect();
    assert_eq!(seqs, [4, 5]);
}

#[tokio::test]
async fn purge_subject_wildcard_with_keep_keeps_the_newest_matching_messages() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.cart.a", 3).await; // 1..=3
    publish_many(&app, "orders.cart.b", 2).await; // 4..=5
    publish_many(&app, "orders.paid", 2).await; // 6..=7

    let response = purge_stream(
        &app,
        "ORDERS",
        Some(&json!({"subject": "orders.cart.*", "keep": 1})),
    )
    .await;

    // `keep` counts across every message the filter matches (JetStream's semantics).
    assert_eq!(json(response, 200).await, json!({"purged": 4}));
    let seqs: Vec<u64> = app
        .stored("ORDERS")
        .await
        .iter()
        .map(|m| m.sequence)
        .collect();
    assert_eq!(seqs, [5, 6, 7]);
}

#[tokio::test]
async fn purge_with_invalid_subject_returns_400_invalid_subject_and_purges_nothing() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.new", 2).await;

    let response = purge_stream(&app, "ORDERS", Some(&json!({"subject": "orders..new"}))).await;

    problem(response, 400, "invalid_subject").await;
    assert_eq!(stored_info(&app, "ORDERS").await.state.messages, 2);
}

#[tokio::test]
async fn purge_with_malformed_json_returns_400_invalid_body_and_purges_nothing() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.new", 2).await;

    let response = app
        .http
        .post(app.url("/v1/streams/ORDERS/purge"))
        .header("content-type", "application/json")
        .body("{\"keep\": ")
        .send()
        .await
        .unwrap();

    problem(response, 400, "invalid_body").await;
    assert_eq!(stored_info(&app, "ORDERS").await.state.messages, 2);
}

#[tokio::test]
async fn purge_with_keep_and_up_to_seq_returns_400_and_purges_nothing() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.new", 3).await;

    let response = purge_stream(&app, "ORDERS", Some(&json!({"keep": 1, "up_to_seq": 2}))).await;

    problem(response, 400, "invalid_body").await;
    assert_eq!(stored_info(&app, "ORDERS").await.state.messages, 3);
}

#[tokio::test]
async fn purge_with_unknown_field_returns_400_and_purges_nothing() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_many(&app, "orders.new", 3).await;

    let response = purge_stream(&app, "ORDERS", Some(&json!({"subjects": "orders.new"}))).await;

    problem(response, 400, "invalid_body").await;
    assert_eq!(stored_info(&app, "ORDERS").await.state.messages, 3);
}

#[tokio::test]
async fn purge_unknown_stream_returns_404_stream_not_found() {
    let app = spawn_app().await;

    let response = purge_stream(&app, "NOPE", None).await;

    problem(response, 404, "stream_not_found").await;
}

// ---------------------------------------------------------------------------------------------
// Streams declared in the configuration file

#[tokio::test]
async fn declared_stream_is_created_at_start_up_when_absent() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("jetway.toml");
    std::fs::write(
        &path,
        "[[streams]]\nname = \"ORDERS\"\nsubjects = [\"orders.>\"]\nmax_age = \"72h\"\n\
         max_msgs_per_subject = 3\ndescription = \"declared\"\n",
    )
    .unwrap();
    let declared = Cli::load(["jetway", "--config", path.to_str().unwrap()])
        .unwrap()
        .config
        .streams;

    let app = spawn_app_with(|config| config.streams = declared).await;

    let stored = stored_info(&app, "ORDERS").await.config;
    assert_eq!(stored.subjects, ["orders.>"]);
    assert_eq!(stored.max_age, Duration::from_secs(72 * 3600));
    assert_eq!(stored.max_messages_per_subject, 3);
    assert_eq!(stored.description.as_deref(), Some("declared"));
}

#[tokio::test]
async fn declared_stream_equal_to_existing_is_left_untouched() {
    let declared = spec(
        "ORDERS",
        json!({"subjects": ["orders.>"], "max_age": "72h", "max_msgs": 100}),
    );
    let app = spawn_app_with(|config| config.streams = vec![declared.clone()]).await;
    publish_many(&app, "orders.new", 2).await;
    let before = stored_info(&app, "ORDERS").await;

    let mut second = None;
    let calls = api_calls_during(&app, async {
        second = Some(build_gateway(&app.server, vec![declared]).await)
    })
    .await;

    let second = second.unwrap();
    assert!(second.is_ok(), "start-up failed: {}", second.err().unwrap());
    assert!(
        calls.contains(&"$JS.API.STREAM.INFO.ORDERS".to_owned()),
        "audit saw: {calls:?}"
    );
    assert!(
        changes(&calls).is_empty(),
        "start-up changed an equal stream: {calls:?}"
    );
    let after = stored_info(&app, "ORDERS").await;
    assert_eq!(after.created, before.created, "the stream was recreated");
    assert_eq!(after.config, before.config);
    assert_eq!(after.state.messages, 2);
}

#[tokio::test]
async fn declared_stream_with_zero_limits_is_accepted_again_on_the_next_start_up() {
    let declared = spec(
        "ORDERS",
        json!({"subjects": ["orders.>"], "max_msgs": 0, "max_age": "0s", "duplicate_window": "0s"}),
    );
    let app = spawn_app_with(|config| config.streams = vec![declared.clone()]).await;

    let restarted = build_gateway(&app.server, vec![declared]).await;

    assert!(
        restarted.is_ok(),
        "the same config file fails on the next start-up: {}",
        restarted.err().unwrap()
    );
}

#[tokio::test]
async fn declared_stream_omitting_defaults_equals_stream_created_with_jetstream_defaults() {
    let app = spawn_app().await;
    // JetStream fills in subjects = [name] and duplicate_window = max_age when that is under 2m.
    app.create_stream_with(stream::Config {
        name: "TICKS".to_owned(),
        max_age: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let before = stored_info(&app, "TICKS").await;

    let mut second = None;
    let calls = api_calls_during(&app, async {
        second =
            Some(build_gateway(&app.server, vec![spec("TICKS", json!({"max_age": "30s"}))]).await);
    })
    .await;

    let second = second.unwrap();
    assert!(second.is_ok(), "start-up failed: {}", second.err().unwrap());
    assert!(
        changes(&calls).is_empty(),
        "start-up changed an equal stream: {calls:?}"
    );
    assert_eq!(stored_info(&app, "TICKS").await.config, before.config);
}

#[tokio::test]
async fn declared_stream_conflicting_with_existing_fails_start_up_naming_the_field() {
    let app = spawn_app().await;
    app.create_stream_with(stream::Config {
        name: "ORDERS".to_owned(),
        subjects: vec!["orders.>".to_owned()],
        max_messages: 10,
        ..Default::default()
    })
    .await;

    let declared = vec![spec(
        "ORDERS",
        json!({"subjects": ["orders.>"], "max_msgs": 20}),
    )];

    let mut result = None;
    let calls = api_calls_during(&app, async {
        result = Some(build_gateway(&app.server, declared).await)
    })
    .await;

    let Some(Err(err)) = result else {
        panic!("start-up succeeded against a conflicting stream")
    };
    assert!(
        changes(&calls).is_empty(),
        "start-up changed a conflicting stream: {calls:?}"
    );
    let message = err.to_string();
    assert!(message.contains("ORDERS"), "{message}");
    assert!(message.contains("max_msgs"), "{message}");
    assert!(
        !message.contains("subjects"),
        "only differing fields are named: {message}"
    );
    assert_eq!(
        stored_info(&app, "ORDERS").await.config.max_messages,
        10,
        "the stream was changed"
    );
}
