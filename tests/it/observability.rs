//! /metrics, request ids and trace context across producer → stream → consumer.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestApp, eventually, json, spawn_app, spawn_app_with};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn metrics(app: &TestApp) -> String {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The value of the first sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_publishes_by_outcome_and_requests_by_route_template() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    json(
        app.publish("orders.a", "1", &[("idempotency-key", "k")])
            .await,
        201,
    )
    .await;
    json(
        app.publish("orders.a", "1", &[("idempotency-key", "k")])
            .await,
        200,
    )
    .await;
    app.publish("billing.a", "1", &[]).await;
    let text = metrics(&app).await;

    assert_eq!(
        sample(&text, r#"jetway_publishes_total{outcome="stored"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"jetway_publishes_total{outcome="duplicate"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"jetway_publishes_total{outcome="subject_not_captured"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"jetway_http_requests_total{route="/v1/publish/{subject}",method="POST",status="201"}"#
        ),
        Some(1.0),
        "route templates, never raw paths: {text}"
    );
    assert!(!text.contains("orders.a"), "no raw subjects in labels");
    assert_eq!(
        sample(
            &text,
            r#"jetway_http_request_duration_seconds_count{route="/v1/publish/{subject}",method="POST"}"#
        ),
        Some(3.0)
    );
    assert_eq!(sample(&text, "jetway_nats_connected"), Some(1.0));
}

#[tokio::test]
async fn metrics_count_fetches_acks_and_export_consumer_gauges() {
    let app = spawn_app_with(|c| c.consumer_metrics_interval = Duration::from_millis(100)).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    for i in 0..3 {
        json(app.publish("orders.a", format!("{i}"), &[]).await, 201).await;
    }
    let put = app
        .http
        .put(app.url("/v1/streams/ORDERS/consumers/workers"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    json(put, 201).await;
    let fetched = app
        .http
        .post(app.url("/v1/streams/ORDERS/consumers/workers/fetch"))
        .json(&json!({"max_messages": 2}))
        .send()
        .await
        .unwrap();
    let fetched = json(fetched, 200).await;
    let ack_id = fetched["messages"][0]["ack_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let acked = app
        .http
        .post(app.url("/v1/acks"))
        .json(&json!({"acks": [{"ack_id": ack_id, "action": "ack"}]}))
        .send()
        .await
        .unwrap();
    json(acked, 200).await;

    let text = eventually(
        "consumer gauges to show 1 pending, 1 awaiting ack",
        Duration::from_secs(10),
        || async {
            let text = metrics(&app).await;
            let pending = sample(
                &text,
                r#"jetway_consumer_num_pending{stream="ORDERS",consumer="workers"}"#,
            );
            let ack_pending = sample(
                &text,
                r#"jetway_consumer_num_ack_pending{stream="ORDERS",consumer="workers"}"#,
            );
            (pending == Some(1.0) && ack_pending == Some(1.0)).then_some(text)
        },
    )
    .await;

    assert_eq!(sample(&text, "jetway_fetch_requests_total"), Some(1.0));
    assert_eq!(sample(&text, "jetway_fetched_messages_total"), Some(2.0));
    assert_eq!(
        sample(
            &text,
            r#"jetway_acks_total{action="ack",outcome="confirmed"}"#
        ),
        Some(1.0)
    );
    let consumers: Vec<Value> = app
        .http
        .get(app.url("/v1/streams/ORDERS/consumers/workers"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .map(|v| vec![v])
        .unwrap();
    assert!(
        consumers[0]["config"].get("metadata").is_none(),
        "jetway's own metadata keys stay out of the API: {}",
        consumers[0]
    );
}

#[tokio::test]
async fn request_id_is_generated_or_echoed() {
    let app = spawn_app().await;

    let generated = app.http.get(app.url("/healthz")).send().await.unwrap();
    let echoed = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();

    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert!(id.len() >= 16, "{id}");
    assert_eq!(echoed.headers()["x-request-id"], "req-42");
}

#[tokio::test]
async fn traceparent_of_a_publish_is_handed_back_by_fetch_and_sse() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    json(
        app.publish("orders.a", "{}", &[("traceparent", TRACEPARENT)])
            .await,
        201,
    )
    .await;
    let put = app
        .http
        .put(app.url("/v1/streams/ORDERS/consumers/workers"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    json(put, 201).await;

    let fetched = app
        .http
        .post(app.url("/v1/streams/ORDERS/consumers/workers/fetch"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let fetched = json(fetched, 200).await;
    let mut events = app
        .http
        .get(app.url("/v1/streams/ORDERS/events?start_seq=1"))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }

    assert_eq!(
        fetched["messages"][0]["headers"]["traceparent"],
        TRACEPARENT
    );
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let message: Value = serde_json::from_str(data).unwrap();
    assert_eq!(message["headers"]["traceparent"], TRACEPARENT);
}
