//! The OpenAPI document and the server agree on inputs: each bound or dependency the document
//! states is one the server enforces (a problem+json 400), and what JSON Schema counts as valid
//! the server accepts. Each case is one that schemathesis found (tests/it/sdk.rs runs it).

use serde_json::{Value, json};

use crate::harness::{TestApp, json, problem, spawn_app, spawn_app_with};

async fn document(app: &TestApp) -> Value {
    json(
        app.http.get(app.url("/openapi.json")).send().await.unwrap(),
        200,
    )
    .await
}

fn property<'a>(doc: &'a Value, schema: &str, field: &str) -> &'a Value {
    &doc["components"]["schemas"][schema]["properties"][field]
}

fn parameter<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name))
        .map(|p| &p["schema"])
        .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
}

async fn post_json(app: &TestApp, path: &str, body: &str) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn with_orders() -> TestApp {
    let app = spawn_app().await;
    app.create_stream_with(async_nats::jetstream::stream::Config {
        name: "ORDERS".to_owned(),
        subjects: vec!["orders.>".to_owned()],
        allow_message_ttl: true,
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await;
    app
}

#[tokio::test]
async fn a_body_given_as_an_array_instead_of_an_object_is_refused() {
    let app = with_orders().await;
    for n in 0..3 {
        json(app.publish("orders.new", format!("{n}"), &[]).await, 201).await;
    }

    // serde would read `[null, null]` as an empty purge request, purging everything.
    problem(
        post_json(&app, "/v1/streams/ORDERS/purge", "[null, null]").await,
        400,
        "invalid_body",
    )
    .await;
    problem(
        post_json(&app, "/v1/streams/ORDERS/consumers/c/fetch", "[1]").await,
        400,
        "invalid_body",
    )
    .await;
    let put = app
        .http
        .put(app.url("/v1/streams/OTHER"))
        .header("content-type", "application/json")
        .body(r#"[["other.>"]]"#)
        .send()
        .await
        .unwrap();
    problem(put, 400, "invalid_body").await;
    problem(
        post_json(&app, "/v1/acks", r#"{"acks": [["id", "ack"]]}"#).await,
        400,
        "invalid_body",
    )
    .await;
    // A batch item given as an array is that item's own error.
    let batch = post_json(
        &app,
        "/v1/publish",
        r#"[["orders.new"], {"subject": "orders.new"}]"#,
    )
    .await;
    let results = json(batch, 207).await;
    assert_eq!(
        results["results"][0]["error"]["code"], "invalid_body",
        "{results}"
    );
    assert_eq!(results["results"][1]["status"], 201, "{results}");

    assert_eq!(app.stored("ORDERS").await.len(), 4, "nothing purged");
}

#[tokio::test]
async fn whole_numbers_written_with_a_zero_fraction_are_accepted() {
    let app = with_orders().await;
    for n in 0..4 {
        json(app.publish("orders.new", format!("{n}"), &[]).await, 201).await;
    }

    let batch = post_json(
        &app,
        "/v1/publish",
        r#"[{"subject": "orders.new", "data": 4, "expected_last_sequence": 4.0}]"#,
    )
    .await;
    let results = json(batch, 200).await;
    assert_eq!(results["results"][0]["seq"], 5, "{results}");
    let purged = json(
        post_json(&app, "/v1/streams/ORDERS/purge", r#"{"up_to_seq": 3.0}"#).await,
        200,
    )
    .await;
    assert_eq!(purged["purged"], 2);
    problem(
        post_json(&app, "/v1/streams/ORDERS/purge", r#"{"up_to_seq": 3.5}"#).await,
        400,
        "invalid_body",
    )
    .await;
}

#[tokio::test]
async fn an_optional_body_is_left_out_never_null() {
    let app = with_orders().await;
    json(app.publish("orders.new", "1", &[]).await, 201).await;
    let doc = document(&app).await;
    for path in [
        "/v1/streams/{stream}/purge",
        "/v1/streams/{stream}/consumers/{consumer}/fetch",
    ] {
        let body = &doc["paths"][path]["post"]["requestBody"];
        assert_ne!(body["required"], true, "{path}: {body}");
        let schema = &body["content"]["application/json"]["schema"];
        assert!(schema["$ref"].is_string(), "{path}: {schema}");
    }

    problem(
        post_json(&app, "/v1/streams/ORDERS/purge", "null").await,
        400,
        "invalid_body",
    )
    .await;
    problem(
        post_json(&app, "/v1/streams/ORDERS/consumers/c/fetch", "null").await,
        400,
        "invalid_body",
    )
    .await;
    assert_eq!(app.stored("ORDERS").await.len(), 1, "nothing purged");
}

#[tokio::test]
async fn counts_and_sequences_have_the_bounds_the_document_states() {
    let app = spawn_app_with(|c| {
        c.max_page_messages = 50;
        c.max_fetch_messages = 20;
    })
    .await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    json(app.publish("orders.new", "1", &[]).await, 201).await;
    let consumer = app
        .http
        .put(app.url("/v1/streams/ORDERS/consumers/c"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    json(consumer, 201).await;
    let doc = document(&app).await;

    // The served document carries this server's configured bounds.
    let limit = parameter(&doc, "/v1/streams/{stream}/messages", "get", "limit");
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&json!(1), &json!(50))
    );
    let start_seq = parameter(&doc, "/v1/streams/{stream}/messages", "get", "start_seq");
    assert_eq!(start_seq["minimum"], 1);
    let max_messages = property(&doc, "FetchRequest", "max_messages");
    assert_eq!(
        (&max_messages["minimum"], &max_messages["maximum"]),
        (&json!(1), &json!(20))
    );
    assert_eq!(property(&doc, "FetchRequest", "max_bytes")["minimum"], 1);
    assert_eq!(property(&doc, "AcksRequest", "acks")["minItems"], 1);
    assert_eq!(property(&doc, "PurgeRequest", "up_to_seq")["minimum"], 1);
    let batch = &doc["paths"]["/v1/publish"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(batch["minItems"], 1, "{batch}");

    for query in [
        "limit=0",
        "limit=51",
        "start_seq=0",
        "start_seq=9223372036854775808",
    ] {
        let page = app
            .http
            .get(app.url(&format!("/v1/streams/ORDERS/messages?{query}")))
            .send()
            .await
            .unwrap();
        problem(page, 400, "invalid_parameter").await;
    }
    for body in [
        r#"{"max_messages": 0}"#,
        r#"{"max_messages": 21}"#,
        r#"{"max_bytes": 0}"#,
    ] {
        problem(
            post_json(&app, "/v1/streams/ORDERS/consumers/c/fetch", body).await,
            400,
            "invalid_parameter",
        )
        .await;
    }
    problem(
        post_json(&app, "/v1/acks", r#"{"acks": []}"#).await,
        400,
        "invalid_body",
    )
    .await;
    problem(
        post_json(&app, "/v1/publish", "[]").await,
        400,
        "invalid_body",
    )
    .await;
    problem(
        post_json(&app, "/v1/streams/ORDERS/purge", r#"{"up_to_seq": 0}"#).await,
        400,
        "invalid_body",
    )
    .await;
    assert_eq!(app.stored("ORDERS").await.len(), 1, "nothing purged");
}

#[tokio::test]
async fn subjects_ttls_and_sequences_in_headers_follow_the_documented_patterns() {
    let app = with_orders().await;
    let doc = document(&app).await;
    let ttl = parameter(&doc, "/v1/publish/{subject}", "post", "Nats-TTL");
    assert_eq!(ttl["minLength"], 1, "{ttl}");
    let pattern = ttl["pattern"].as_str().expect("a TTL pattern");
    assert_eq!(property(&doc, "BatchItem", "ttl")["pattern"], pattern);
    assert_eq!(property(&doc, "BatchItem", "subject")["minLength"], 1);

    for (ttl, status) in [
        ("30s", 201),
        ("5m", 201),
        ("never", 201),
        ("", 400),
        ("1h 30m", 400),
    ] {
        let response = app.publish("orders.ttl", "x", &[("nats-ttl", ttl)]).await;
        assert_eq!(response.status().as_u16(), status, "Nats-TTL '{ttl}'");
    }
    // Digits only: Rust's own parser would take `+5`.
    problem(
        app.publish("orders.new", "x", &[("nats-expected-last-sequence", "+5")])
            .await,
        400,
        "invalid_header",
    )
    .await;
    // An atomic batch refuses an item with an empty subject, as the schema says it would.
    let atomic = post_json(
        &app,
        "/v1/publish?atomic=true",
        r#"[{"subject": "", "data": 1}]"#,
    )
    .await;
    problem(atomic, 400, "invalid_body").await;
    assert_eq!(app.stored("ORDERS").await.len(), 3);
}

#[tokio::test]
async fn fields_that_go_with_another_choice_are_dependent_schemas_the_server_enforces() {
    let app = with_orders().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["AckItem"]["dependentSchemas"]["delay"].is_object());
    assert!(schemas["PurgeRequest"]["dependentSchemas"]["keep"].is_object());
    for field in ["opt_start_seq", "opt_start_time", "deliver_policy"] {
        assert!(
            schemas["ConsumerConfig"]["dependentSchemas"][field].is_object(),
            "{field}"
        );
    }

    problem(
        post_json(
            &app,
            "/v1/acks",
            r#"{"acks": [{"ack_id": "x", "action": "ack", "delay": "10s"}]}"#,
        )
        .await,
        400,
        "invalid_body",
    )
    .await;
    problem(
        post_json(
            &app,
            "/v1/streams/ORDERS/purge",
            r#"{"keep": 1, "up_to_seq": 2}"#,
        )
        .await,
        400,
        "invalid_body",
    )
    .await;
    for config in [
        json!({"opt_start_seq": 2}),
        json!({"deliver_policy": "by_start_sequence"}),
        json!({"deliver_policy": "by_start_time"}),
        json!({"deliver_policy": "all", "opt_start_time": "2026-01-01T00:00:00Z"}),
    ] {
        let put = app
            .http
            .put(app.url("/v1/streams/ORDERS/consumers/c"))
            .json(&config)
            .send()
            .await
            .unwrap();
        problem(put, 400, "invalid_config").await;
    }
}

#[tokio::test]
async fn numbers_past_int64_and_storage_jetstream_cannot_reserve_are_400_not_503() {
    let app = with_orders().await;
    json(app.publish("orders.new", "1", &[]).await, 201).await;
    let doc = document(&app).await;
    assert_eq!(property(&doc, "PurgeRequest", "keep")["format"], "int64");
    // A header is sent or left out, never null.
    let ttl = parameter(&doc, "/v1/publish/{subject}", "post", "Nats-TTL");
    assert_eq!(ttl["type"], "string", "{ttl}");

    problem(
        post_json(
            &app,
            "/v1/streams/ORDERS/purge",
            r#"{"keep": 9223372036854775808}"#,
        )
        .await,
        400,
        "invalid_body",
    )
    .await;
    let huge = app
        .http
        .put(app.url("/v1/streams/HUGE"))
        .json(&json!({"subjects": ["huge.>"], "max_bytes": 9_223_372_036_854_775_806_u64}))
        .send()
        .await
        .unwrap();
    problem(huge, 400, "invalid_config").await;
    assert_eq!(app.stored("ORDERS").await.len(), 1, "nothing purged");
}
