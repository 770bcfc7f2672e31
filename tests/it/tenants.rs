//! Tenant subject prefixes: two principals share a stream without seeing each other's subjects.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestApp, json, problem, spawn_app_with};

const SECRET: &str = "tenant-test-secret";

fn token(sub: &str, prefix: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "sub": sub,
        "exp": now + 3600,
        "jetway": {"publish": ["orders.>"], "read": ["SHARED"], "prefix": prefix}
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn tenant_app() -> TestApp {
    let app = spawn_app_with(|c| {
        c.no_auth = false;
        c.jwt_secret = vec![SECRET.into()];
    })
    .await;
    app.create_stream("SHARED", &["acme.>", "globex.>"]).await;
    app
}

async fn publish(app: &TestApp, token: &str, subject: &str, body: &str) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/v1/publish/{subject}")))
        .bearer_auth(token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn get(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn publishes_are_stored_under_the_tenant_prefix_and_reads_see_only_the_tenants_subjects() {
    let app = tenant_app().await;
    let acme = token("acme-app", "acme");
    let globex = token("globex-app", "globex");

    json(publish(&app, &acme, "orders.new", "a1").await, 201).await;
    json(publish(&app, &globex, "orders.new", "g1").await, 201).await;
    json(publish(&app, &acme, "orders.paid", "a2").await, 201).await;

    let stored: Vec<String> = app
        .stored("SHARED")
        .await
        .iter()
        .map(|m| m.subject.to_string())
        .collect();
    assert_eq!(
        stored,
        ["acme.orders.new", "globex.orders.new", "acme.orders.paid"]
    );
    let page = json(get(&app, &acme, "/v1/streams/SHARED/messages").await, 200).await;
    let seen: Vec<(&str, &str)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["subject"].as_str().unwrap(), m["data"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [("orders.new", "a1"), ("orders.paid", "a2")]);
    let filtered = json(
        get(
            &app,
            &globex,
            "/v1/streams/SHARED/messages?subject=orders.>",
        )
        .await,
        200,
    )
    .await;
    assert_eq!(filtered["messages"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["messages"][0]["data"], "g1");
}

#[tokio::test]
async fn a_tenant_cannot_read_another_tenants_message_by_sequence_or_subject() {
    let app = tenant_app().await;
    let acme = token("acme-app", "acme");
    let globex = token("globex-app", "globex");
    json(publish(&app, &globex, "orders.new", "secret").await, 201).await;
    json(publish(&app, &acme, "orders.new", "mine").await, 201).await;

    problem(
        get(&app, &acme, "/v1/streams/SHARED/messages/1").await,
        404,
        "message_not_found",
    )
    .await;
    let own = json(get(&app, &acme, "/v1/streams/SHARED/messages/2").await, 200).await;
    let last = json(
        get(
            &app,
            &acme,
            "/v1/streams/SHARED/messages/last?subject=orders.new",
        )
        .await,
        200,
    )
    .await;

    assert_eq!(own["subject"], "orders.new");
    assert_eq!(last["data"], "mine");
    assert_eq!(last["seq"], 2);
}

#[tokio::test]
async fn a_tenants_event_stream_carries_only_its_subjects_without_the_prefix() {
    let app = tenant_app().await;
    let acme = token("acme-app", "acme");
    let globex = token("globex-app", "globex");
    json(publish(&app, &globex, "orders.new", "g1").await, 201).await;
    json(publish(&app, &acme, "orders.new", "a1").await, 201).await;

    let mut events = get(&app, &acme, "/v1/streams/SHARED/events").await;
    assert_eq!(events.status(), 200);
    let mut text = String::new();
    while !text.contains("event: caught_up") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }

    let messages: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v.get("seq").is_some() && v.get("subject").is_some())
        .collect();
    assert_eq!(messages.len(), 1, "{text}");
    assert_eq!(messages[0]["subject"], "orders.new");
    assert_eq!(messages[0]["data"], "a1");
}

#[tokio::test]
async fn publish_grants_apply_to_the_subject_the_tenant_names() {
    let app = tenant_app().await;
    let acme = token("acme-app", "acme");

    problem(
        publish(&app, &acme, "billing.new", "x").await,
        403,
        "forbidden",
    )
    .await;

    assert!(app.stored("SHARED").await.is_empty());
}
