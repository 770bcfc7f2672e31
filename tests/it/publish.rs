//! POST /v1/publish/{subject}.

use std::time::Duration;

use crate::harness::{
    Topology, eventually, json, problem, spawn_app, spawn_app_on, spawn_app_with,
};

async fn publish_stores_body_byte_exact_and_answers_201_with_location(topology: Topology) {
    let app = spawn_app_on(topology).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let payload: Vec<u8> = (0..=255u8).chain([0, 13, 10, 0xff]).collect();

    let response = app
        .publish(
            "orders.new",
            payload.clone(),
            &[("content-type", "application/octet-stream")],
        )
        .await;

    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body = json(response, 201).await;
    assert_eq!(
        body,
        serde_json::json!({"stream": "ORDERS", "seq": 1, "duplicate": false})
    );
    assert_eq!(location, "/v1/streams/ORDERS/messages/1");
    let stored = app.stored("ORDERS").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload.as_ref(), payload.as_slice());
    assert_eq!(stored[0].subject.as_str(), "orders.new");
    assert_eq!(
        stored[0].headers.get("Content-Type").unwrap().as_str(),
        "application/octet-stream"
    );
}

#[tokio::test]
async fn publish_with_empty_body_is_stored() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let body = json(
        app.publish("orders.empty", Vec::<u8>::new(), &[]).await,
        201,
    )
    .await;

    assert_eq!(body["seq"], 1);
    let stored = app.stored("ORDERS").await;
    assert!(stored[0].payload.is_empty());
}

async fn repeated_lowercase_idempotency_key_stores_one_message_and_answers_200_duplicate(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let first = json(
        app.publish("orders.new", "a", &[("idempotency-key", "order-1")])
            .await,
        201,
    )
    .await;
    let second = app
        .publish("orders.new", "a", &[("idempotency-key", "order-1")])
        .await;
    assert!(second.headers().contains_key("location"));
    let second = json(second, 200).await;

    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["seq"], first["seq"]);
    let stored = app.stored("ORDERS").await;
    assert_eq!(
        stored.len(),
        1,
        "the repeat must not store a second message"
    );
    assert_eq!(
        stored[0].headers.get("Nats-Msg-Id").unwrap().as_str(),
        "order-1"
    );
}

#[tokio::test]
async fn publishes_without_idempotency_key_store_each_message() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    json(app.publish("orders.new", "a", &[]).await, 201).await;
    json(app.publish("orders.new", "a", &[]).await, 201).await;

    assert_eq!(app.stored("ORDERS").await.len(), 2);
}

async fn lowercase_expected_last_sequence_is_enforced(topology: Topology) {
    let app = spawn_app_on(topology).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    json(app.publish("orders.a", "1", &[]).await, 201).await;

    let failed = problem(
        app.publish("orders.a", "2", &[("nats-expected-last-sequence", "999")])
            .await,
        412,
        "precondition_failed",
    )
    .await;
    let ok = json(
        app.publish("orders.a", "2", &[("nats-expected-last-sequence", "1")])
            .await,
        201,
    )
    .await;

    assert_eq!(failed["jetstream_code"], 10071);
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("Nats-Expected-Last-Sequence"),
        "{failed}"
    );
    assert_eq!(ok["seq"], 2);
    assert_eq!(
        app.stored("ORDERS").await.len(),
        2,
        "the failed publish stored nothing"
    );
}

async fn lowercase_expected_last_subject_sequence_is_enforced_and_named(topology: Topology) {
    let app = spawn_app_on(topology).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    json(app.publish("orders.a", "1", &[]).await, 201).await;
    json(app.publish("orders.b", "2", &[]).await, 201).await;

    let failed = problem(
        app.publish(
            "orders.a",
            "3",
            &[("nats-expected-last-subject-sequence", "2")],
        )
        .await,
        412,
        "precondition_failed",
    )
    .await;
    let ok = json(
        app.publish(
            "orders.a",
            "3",
            &[("nats-expected-last-subject-sequence", "1")],
        )
        .await,
        201,
    )
    .await;

    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("Nats-Expected-Last-Subject-Sequence"),
        "{failed}"
    );
    assert_eq!(ok["seq"], 3);
    assert_eq!(app.stored("ORDERS").await.len(), 3);
}

#[tokio::test]
async fn expected_last_msg_id_on_a_replicated_stream_returns_501_stores_nothing_and_the_stream_keeps_working()
 {
    // nats-server stops a replicated stream when this check fails at its replicas.
    let app = spawn_app_on(Topology::Cluster).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    json(
        app.publish("orders.a", "1", &[("idempotency-key", "m1")])
            .await,
        201,
    )
    .await;

    let refused = problem(
        app.publish("orders.a", "2", &[("nats-expected-last-msg-id", "other")])
            .await,
        501,
        "not_supported_by_server",
    )
    .await;
    let after = json(app.publish("orders.a", "3", &[]).await, 201).await;

    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("Nats-Expected-Last-Subject-Sequence"),
        "{refused}"
    );
    assert_eq!(after["seq"], 2);
    assert_eq!(app.stored("ORDERS").await.len(), 2);
}

#[tokio::test]
async fn lowercase_expected_last_msg_id_is_enforced() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    json(
        app.publish("orders.a", "1", &[("idempotency-key", "m1")])
            .await,
        201,
    )
    .await;

    let failed = problem(
        app.publish("orders.a", "2", &[("nats-expected-last-msg-id", "other")])
            .await,
        412,
        "precondition_failed",
    )
    .await;
    json(
        app.publish("orders.a", "2", &[("nats-expected-last-msg-id", "m1")])
            .await,
        201,
    )
    .await;

    assert_eq!(failed["jetstream_code"], 10070);
    assert_eq!(app.stored("ORDERS").await.len(), 2);
}

#[tokio::test]
async fn lowercase_expected_stream_is_enforced() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let failed = problem(
        app.publish("orders.a", "1", &[("nats-expected-stream", "BILLING")])
            .await,
        412,
        "precondition_failed",
    )
    .await;
    json(
        app.publish("orders.a", "1", &[("nats-expected-stream", "ORDERS")])
            .await,
        201,
    )
    .await;

    assert_eq!(failed["jetstream_code"], 10060);
    assert_eq!(app.stored("ORDERS").await.len(), 1);
}

#[tokio::test]
async fn other_nats_headers_are_rejected_and_nothing_is_stored() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    for (name, value) in [
        ("nats-rollup", "all"),
        ("nats-msg-id", "x"),
        ("Nats-Batch-Id", "b"),
    ] {
        let body = problem(
            app.publish("orders.a", "1", &[(name, value)]).await,
            400,
            "forbidden_header",
        )
        .await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains(&name.to_ascii_lowercase()),
            "{body}"
        );
    }

    assert!(app.stored("ORDERS").await.is_empty());
}

#[tokio::test]
async fn invalid_precondition_value_returns_400() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    problem(
        app.publish("orders.a", "1", &[("nats-expected-last-sequence", "abc")])
            .await,
        400,
        "invalid_header",
    )
    .await;

    assert!(app.stored("ORDERS").await.is_empty());
}

#[tokio::test]
async fn prefixed_and_trace_headers_round_trip_and_others_are_not_stored() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    json(
        app.publish(
            "orders.a",
            "{}",
            &[
                ("x-msg-order-type", "express"),
                ("traceparent", traceparent),
                ("x-other", "not stored"),
                ("content-type", "application/json"),
            ],
        )
        .await,
        201,
    )
    .await;

    let stored = &app.stored("ORDERS").await[0];
    assert_eq!(
        stored.headers.get("Order-Type").unwrap().as_str(),
        "express"
    );
    assert_eq!(
        stored.headers.get("traceparent").unwrap().as_str(),
        traceparent
    );
    assert_eq!(
        stored.headers.get("Content-Type").unwrap().as_str(),
        "application/json"
    );
    assert!(stored.headers.get("x-other").is_none());
    assert!(stored.headers.get("User-Agent").is_none());
    let message = json(
        app.http
            .get(app.url("/v1/streams/ORDERS/messages/1"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(message["headers"]["Order-Type"], "express");
    assert_eq!(message["headers"]["traceparent"], traceparent);
}

#[tokio::test]
async fn ttl_on_stream_without_allow_msg_ttl_returns_400() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let body = problem(
        app.publish("orders.a", "1", &[("nats-ttl", "5s")]).await,
        400,
        "ttl_not_enabled",
    )
    .await;

    assert_eq!(body["jetstream_code"], 10166);
    assert!(app.stored("ORDERS").await.is_empty());
}

#[tokio::test]
async fn invalid_ttl_returns_400() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    for ttl in ["soon", "500ms", "0s"] {
        problem(
            app.publish("orders.a", "1", &[("nats-ttl", ttl)]).await,
            400,
            "invalid_ttl",
        )
        .await;
    }
}

async fn message_with_ttl_expires(topology: Topology) {
    let app = spawn_app_on(topology).await;
    app.create_stream_with(async_nats::jetstream::stream::Config {
        name: "EPHEMERAL".into(),
        subjects: vec!["eph.>".into()],
        allow_message_ttl: true,
        ..Default::default()
    })
    .await;

    json(
        app.publish("eph.a", "short", &[("nats-ttl", "1s")]).await,
        201,
    )
    .await;
    json(
        app.publish("eph.a", "long", &[("nats-ttl", "1h")]).await,
        201,
    )
    .await;

    let stream = app.js.get_stream("EPHEMERAL").await.unwrap();
    let first = stream.get_raw_message(1).await.unwrap();
    assert_eq!(first.headers.get("Nats-TTL").unwrap().as_str(), "1s");
    eventually("the 1s message to expire", Duration::from_secs(10), || {
        let stream = stream.clone();
        async move { stream.get_raw_message(1).await.is_err().then_some(()) }
    })
    .await;
    assert!(
        stream.get_raw_message(2).await.is_ok(),
        "the 1h message is still there"
    );
}

#[tokio::test]
async fn invalid_subjects_return_400() {
    let app = spawn_app().await;
    app.create_stream("ALL", &["a.>", "a"]).await;
    let long = "a".repeat(1025);

    for subject in [
        "a..b",
        "a.*",
        "a.>",
        "a%20b",
        "a%09b",
        ".a",
        "a.",
        long.as_str(),
    ] {
        problem(app.publish(subject, "x", &[]).await, 400, "invalid_subject").await;
    }

    assert!(app.stored("ALL").await.is_empty());
}

#[tokio::test]
async fn body_over_configured_limit_returns_413() {
    let app = spawn_app_with(|c| c.max_body_bytes = 1024).await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    problem(
        app.publish("orders.a", vec![b'x'; 2048], &[]).await,
        413,
        "payload_too_large",
    )
    .await;
    json(app.publish("orders.a", vec![b'x'; 1024], &[]).await, 201).await;

    assert_eq!(app.stored("ORDERS").await.len(), 1);
}

#[tokio::test]
async fn body_limit_never_exceeds_server_max_payload() {
    // nats-server's default max_payload is 1 MiB; ask for 8 MiB.
    let app = spawn_app_with(|c| c.max_body_bytes = 8 << 20).await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    problem(
        app.publish("orders.a", vec![b'x'; (1 << 20) + 512], &[])
            .await,
        413,
        "payload_too_large",
    )
    .await;

    assert!(app.stored("ORDERS").await.is_empty());
}

async fn subject_captured_by_no_stream_returns_404(topology: Topology) {
    let app = spawn_app_on(topology).await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let body = problem(
        app.publish("billing.new", "x", &[]).await,
        404,
        "subject_not_captured",
    )
    .await;

    assert!(body["detail"].as_str().unwrap().contains("billing.new"));
}

#[tokio::test]
async fn no_puback_in_time_returns_504() {
    let app = spawn_app_with(|c| c.publish_timeout = Duration::from_millis(300)).await;
    // A core subscriber that never answers stands in for a JetStream that does not ack.
    let _silent = app.nats.subscribe("slow.x").await.unwrap();
    // A round trip on the same connection: the server has processed the SUB once it answers.
    app.js.query_account().await.unwrap();

    let body = problem(
        app.publish("slow.x", "x", &[("idempotency-key", "k")])
            .await,
        504,
        "jetstream_timeout",
    )
    .await;

    assert!(
        body["detail"].as_str().unwrap().contains("Idempotency-Key"),
        "{body}"
    );
}

async fn jetstream_down_returns_503_with_retry_after_then_recovers(topology: Topology) {
    let mut app = spawn_app_on(topology).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    json(app.publish("orders.a", "before", &[]).await, 201).await;

    app.server.stop();
    let response = eventually(
        "publish to fail with 503",
        Duration::from_secs(10),
        || async {
            let response = app.publish("orders.a", "during", &[]).await;
            (response.status() == 503).then_some(response)
        },
    )
    .await;
    assert!(response.headers().contains_key("retry-after"));
    problem(response, 503, "jetstream_unavailable").await;

    app.server.restart().await;
    let stored = eventually(
        "publish to succeed after restart",
        Duration::from_secs(30),
        || async {
            let response = app.publish("orders.a", "after", &[]).await;
            if response.status() == 201 {
                Some(response.json::<serde_json::Value>().await.unwrap())
            } else {
                None
            }
        },
    )
    .await;

    assert_eq!(
        stored["seq"], 2,
        "the outage stored nothing and lost nothing"
    );
}

// Every test above that takes a topology runs on one server (R1) and on a 3-node cluster (R3).
crate::on_r1_and_r3!(
    publish_stores_body_byte_exact_and_answers_201_with_location,
    repeated_lowercase_idempotency_key_stores_one_message_and_answers_200_duplicate,
    lowercase_expected_last_sequence_is_enforced,
    lowercase_expected_last_subject_sequence_is_enforced_and_named,
    message_with_ttl_expires,
    subject_captured_by_no_stream_returns_404,
    jetstream_down_returns_503_with_retry_after_then_recovers,
);
