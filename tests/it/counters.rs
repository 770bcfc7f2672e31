//! Counters: streams with `allow_msg_counter`, increments and decrements through the gateway,
//! totals read back, on one node and on an R3 cluster. What JetStream stored is read with the
//! direct client: the last message on the subject holds `{"val": "<total>"}` and the increment
//! in `Nats-Incr`.

use serde_json::{Value, json};

use crate::harness::{TestApp, Topology, json, problem, spawn_app_on_with, spawn_app_with};

const SECRET: &str = "counter-test-secret";

async fn counter_stream(app: &TestApp, name: &str, subjects: &[&str]) {
    let response = app
        .http
        .put(app.url(&format!("/v1/streams/{name}")))
        .json(&json!({"subjects": subjects, "allow_msg_counter": true, "replicas": app.replicas()}))
        .send()
        .await
        .unwrap();
    let info = json(response, 201).await;
    assert_eq!(info["config"]["allow_msg_counter"], true, "{info}");
}

async fn add(app: &TestApp, path: &str, increment: Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .json(&json!({"increment": increment}))
        .send()
        .await
        .unwrap()
}

/// The total JetStream stores for `subject`, read directly.
async fn stored_total(app: &TestApp, stream: &str, subject: &str) -> (String, String) {
    let stream = app.js.get_stream(stream).await.unwrap();
    let message = stream
        .get_last_raw_message_by_subject(subject)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&message.payload).unwrap();
    let incr = message
        .headers
        .get("Nats-Incr")
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    (body["val"].as_str().unwrap().to_owned(), incr)
}

async fn increments_and_decrements_add_up_and_read_back_as_strings(topology: Topology) {
    let app = spawn_app_on_with(topology, |_| {}).await;
    counter_stream(&app, "HITS", &["hits.>"]).await;
    let path = "/v1/streams/HITS/counters/hits.home";

    let mut totals = Vec::new();
    for increment in [json!("5"), json!(-2), json!("+10"), json!("-1")] {
        let body = json(add(&app, path, increment).await, 200).await;
        assert_eq!(body["stream"], "HITS");
        assert_eq!(body["subject"], "hits.home");
        totals.push(body["value"].as_str().unwrap().to_owned());
    }

    assert_eq!(totals, ["5", "3", "13", "12"]);
    assert_eq!(
        stored_total(&app, "HITS", "hits.home").await,
        ("12".to_owned(), "-1".to_owned())
    );
    let read = json(app.http.get(app.url(path)).send().await.unwrap(), 200).await;
    assert_eq!(read["value"], "12", "{read}");
    assert_eq!(read["seq"], 4, "{read}");
    // A subject never incremented totals 0.
    let fresh = json(
        app.http
            .get(app.url("/v1/streams/HITS/counters/hits.about"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(fresh["value"], "0", "{fresh}");
    assert!(fresh.get("seq").is_none(), "{fresh}");

    // Beyond 64 bits: JetStream's totals are arbitrary precision.
    let big = "/v1/streams/HITS/counters/hits.big";
    for _ in 0..3 {
        json(add(&app, big, json!("9223372036854775807")).await, 200).await;
    }
    let body = json(add(&app, big, json!("18446744073709551615")).await, 200).await;
    assert_eq!(body["value"], "46116860184273879036", "{body}");
    assert_eq!(
        stored_total(&app, "HITS", "hits.big").await.0,
        "46116860184273879036"
    );
}

async fn concurrent_increments_through_two_requests_at_a_time_lose_nothing(topology: Topology) {
    let app = spawn_app_on_with(topology, |_| {}).await;
    counter_stream(&app, "HITS", &["hits.>"]).await;
    let path = "/v1/streams/HITS/counters/hits.home";

    let requests = (0..40).map(|_| add(&app, path, json!(1)));
    let answers = futures::future::join_all(requests).await;

    let mut seen = Vec::new();
    for answer in answers {
        let body = json(answer, 200).await;
        seen.push(body["value"].as_str().unwrap().parse::<u64>().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=40).collect::<Vec<_>>(),
        "each increment saw its own total"
    );
    assert_eq!(stored_total(&app, "HITS", "hits.home").await.0, "40");
}

crate::on_r1_and_r3!(
    increments_and_decrements_add_up_and_read_back_as_strings,
    concurrent_increments_through_two_requests_at_a_time_lose_nothing,
);

#[tokio::test]
async fn an_increment_repeated_with_its_idempotency_key_is_added_once() {
    let app = spawn_app_with(|_| {}).await;
    counter_stream(&app, "HITS", &["hits.>"]).await;
    let send = || {
        app.http
            .post(app.url("/v1/streams/HITS/counters/hits.home"))
            .header("Idempotency-Key", "visit-1")
            .json(&json!({"increment": "7"}))
            .send()
    };

    let first = json(send().await.unwrap(), 200).await;
    let repeat = json(send().await.unwrap(), 200).await;

    assert_eq!(first["value"], "7");
    assert!(first.get("duplicate").is_none(), "{first}");
    assert_eq!(repeat["value"], "7", "{repeat}");
    assert_eq!(repeat["duplicate"], true, "{repeat}");
    assert_eq!(repeat["seq"], first["seq"]);
    // A counter stream takes increments only.
    problem(
        app.publish("hits.home", "plain", &[]).await,
        400,
        "invalid_body",
    )
    .await;
    let info = app
        .js
        .get_stream("HITS")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.state.messages, 1);
}

#[tokio::test]
async fn counters_refuse_streams_without_them_bad_increments_and_foreign_subjects() {
    let app = spawn_app_with(|_| {}).await;
    counter_stream(&app, "HITS", &["hits.>"]).await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    problem(
        add(&app, "/v1/streams/ORDERS/counters/orders.count", json!("1")).await,
        400,
        "counters_not_enabled",
    )
    .await;
    problem(
        app.http
            .get(app.url("/v1/streams/ORDERS/counters/orders.count"))
            .send()
            .await
            .unwrap(),
        400,
        "counters_not_enabled",
    )
    .await;
    problem(
        add(&app, "/v1/streams/HITS/counters/orders.count", json!("1")).await,
        400,
        "invalid_subject",
    )
    .await;
    problem(
        add(&app, "/v1/streams/NOPE/counters/hits.home", json!("1")).await,
        404,
        "stream_not_found",
    )
    .await;
    problem(
        add(&app, "/v1/streams/HITS/counters/hits.*", json!("1")).await,
        400,
        "invalid_subject",
    )
    .await;
    for bad in [
        json!("abc"),
        json!("1.5"),
        json!(""),
        json!("+"),
        json!("1".repeat(101)),
        json!(1.5),
        json!(null),
        json!(18446744073709551615_u64),
    ] {
        let response = add(&app, "/v1/streams/HITS/counters/hits.home", bad.clone()).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    let info = app
        .js
        .get_stream("HITS")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.state.messages, 0, "nothing was added");
    // The counter setting is fixed at creation.
    let response = app
        .http
        .put(app.url("/v1/streams/HITS"))
        .json(&json!({"subjects": ["hits.>"], "allow_msg_counter": false}))
        .send()
        .await
        .unwrap();
    problem(response, 409, "stream_conflict").await;
}

fn token(grants: Value) -> String {
    let claims = json!({
        "sub": "counters",
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

#[tokio::test]
async fn incrementing_needs_publish_reading_needs_read_and_tenants_count_in_their_namespace() {
    let app = spawn_app_with(|c| {
        c.no_auth = false;
        c.jwt_secret = vec![SECRET.to_owned()];
    })
    .await;
    app.js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "HITS".to_owned(),
            subjects: vec!["hits.>".to_owned(), "acme.>".to_owned()],
            allow_message_counter: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let writer = token(json!({"publish": ["hits.>"]}));
    let reader = token(json!({"read": ["HITS"]}));
    let tenant = token(json!({"publish": ["hits.>"], "read": ["HITS"], "prefix": "acme"}));
    let post = |token: &str, subject: &str| {
        app.http
            .post(app.url(&format!("/v1/streams/HITS/counters/{subject}")))
            .bearer_auth(token)
            .json(&json!({"increment": "2"}))
            .send()
    };
    let get = |token: &str, subject: &str| {
        app.http
            .get(app.url(&format!("/v1/streams/HITS/counters/{subject}")))
            .bearer_auth(token)
            .send()
    };

    json(post(&writer, "hits.home").await.unwrap(), 200).await;
    problem(get(&writer, "hits.home").await.unwrap(), 403, "forbidden").await;
    problem(post(&reader, "hits.home").await.unwrap(), 403, "forbidden").await;
    let read = json(get(&reader, "hits.home").await.unwrap(), 200).await;
    assert_eq!(read["value"], "2");

    let tenant_total = json(post(&tenant, "hits.home").await.unwrap(), 200).await;
    assert_eq!(
        tenant_total["value"], "2",
        "the tenant's own counter: {tenant_total}"
    );
    assert_eq!(tenant_total["subject"], "hits.home");
    assert_eq!(stored_total(&app, "HITS", "acme.hits.home").await.0, "2");
    assert_eq!(stored_total(&app, "HITS", "hits.home").await.0, "2");
    let seen = json(get(&tenant, "hits.home").await.unwrap(), 200).await;
    assert_eq!(seen["value"], "2");
    assert_eq!(seen["subject"], "hits.home");
}
