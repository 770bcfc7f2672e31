//! System subjects and tenant isolation, through every transport: HTTP publish (one and batch),
//! the WebSocket `publish` op, dead-letter subjects, and every path that uses a durable consumer
//! (fetch, acks, WebSocket and SSE `consumer=`, multiplexed `subscribe`, consumer list and info).
//! What JetStream holds afterwards is checked with a direct client.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::harness::{TestApp, eventually, json, problem, spawn_app_with};
use crate::ws::{collect_until, connect, send, upgrade_request};

const SECRET: &str = "isolation-test-secret";
const STREAM: &str = "SHARED";

fn token(permissions: Value) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"sub": "t", "exp": now + 3600, "jetway": permissions});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// The "ingest" token of docs/security.md: publish anything, nothing else.
fn ingest() -> String {
    token(json!({"publish": [">"]}))
}

fn operator() -> String {
    token(json!({"admin": true, "read": ["*"], "publish": [">"]}))
}

fn acme() -> String {
    token(json!({"publish": [">"], "read": [STREAM], "prefix": "acme"}))
}

/// Auth on; `SHARED` holds one `acme.` and one `globex.` message; consumer `all` (no filter, made
/// by an operator) and `acme-only` (filter `acme.>`); and a stream `ORDERS` with one message.
async fn shared_app() -> TestApp {
    let app = spawn_app_with(|c| {
        c.no_auth = false;
        c.jwt_secret = vec![SECRET.into()];
    })
    .await;
    app.create_stream(STREAM, &["acme.>", "globex.>"]).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    for subject in ["acme.orders.1", "globex.orders.1", "orders.new"] {
        app.js
            .publish(subject, Bytes::from_static(b"x"))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let stream = app.js.get_stream(STREAM).await.unwrap();
    for (name, filter) in [("all", ""), ("acme-only", "acme.>")] {
        stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config {
                durable_name: Some(name.into()),
                filter_subject: filter.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    app
}

async fn send_as(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    app.http
        .request(method, app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn consumer_state(app: &TestApp, name: &str) -> (u64, usize) {
    let info = app
        .js
        .get_stream(STREAM)
        .await
        .unwrap()
        .consumer_info(name)
        .await
        .unwrap();
    (info.num_pending, info.num_ack_pending)
}

const SYSTEM_SUBJECTS: [&str; 7] = [
    "$JS.API.STREAM.DELETE.ORDERS",
    "$JS.API.STREAM.PURGE.ORDERS",
    "$JS.ACK.SHARED.all.1.1.1.1.0",
    "$SYS.REQ.SERVER.PING",
    "$KV.bucket.key",
    "$O.store.x",
    "_INBOX.abc.def",
];

#[tokio::test]
async fn a_publish_everything_grant_never_reaches_system_subjects_over_http_batch_or_websocket() {
    let app = shared_app().await;
    let ingest = ingest();

    for subject in SYSTEM_SUBJECTS {
        let one = app
            .http
            .post(app.url(&format!("/v1/publish/{subject}")))
            .bearer_auth(&ingest)
            .body("+ACK")
            .send()
            .await
            .unwrap();
        let body = problem(one, 400, "invalid_subject").await;
        assert!(
            body["detail"].as_str().unwrap().contains("NATS itself"),
            "{body}"
        );

        let batch = send_as(
            &app,
            &ingest,
            "POST",
            "/v1/publish",
            json!([{"subject": subject, "data": "+ACK"}]),
        )
        .await;
        let status = batch.status().as_u16();
        let body: Value = batch.json().await.unwrap();
        let item_status = body["results"][0]["status"]
            .as_u64()
            .or(body["status"].as_u64());
        assert!(
            matches!(status, 207 | 400) && item_status == Some(400),
            "batch to {subject}: {status} {body}"
        );
    }
    let mut ws = connect(&app, &format!("/v1/ws?access_token={ingest}")).await;
    for (n, subject) in SYSTEM_SUBJECTS.iter().enumerate() {
        let id = format!("p{n}");
        send(
            &mut ws,
            &json!({"op": "publish", "id": id, "subject": subject, "data": "+ACK"}),
        )
        .await;
        let frames = collect_until(&mut ws, Duration::from_secs(10), |frames| {
            frames.last().is_some_and(|f| f["id"] == id.as_str())
        })
        .await;
        let answer = frames.last().unwrap();
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["problem"]["code"], "invalid_subject", "{answer}");
    }

    // Nothing reached JetStream's API: both streams and their messages are there, nothing acked.
    let orders = app
        .js
        .get_stream("ORDERS")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(orders.state.messages, 1);
    assert_eq!(consumer_state(&app, "all").await, (2, 0));
}

#[tokio::test]
async fn system_subjects_are_refused_as_dead_letter_subjects_and_stream_subjects() {
    let app = shared_app().await;
    let operator = operator();

    for subject in ["$JS.API.STREAM.DELETE.ORDERS", "_INBOX.x"] {
        let response = send_as(
            &app,
            &operator,
            "PUT",
            &format!("/v1/streams/{STREAM}/consumers/dlq"),
            json!({"dead_letter_subject": subject}),
        )
        .await;
        problem(response, 400, "invalid_config").await;
        let response = send_as(
            &app,
            &operator,
            "PUT",
            "/v1/streams/SYSTEM",
            json!({"subjects": [format!("{subject}.>")]}),
        )
        .await;
        problem(response, 400, "invalid_config").await;
    }

    let consumers = app
        .js
        .get_stream(STREAM)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(consumers.state.consumer_count, 2, "no consumer was created");
    assert!(
        app.js.get_stream("SYSTEM").await.is_err(),
        "no stream was created"
    );
}

#[tokio::test]
async fn a_tenant_cannot_fetch_ack_or_stream_through_a_consumer_that_delivers_other_subjects() {
    let app = shared_app().await;
    let acme = acme();
    let fetch = |consumer: &str| format!("/v1/streams/{STREAM}/consumers/{consumer}/fetch");

    // Fetch.
    let refused = problem(
        send_as(
            &app,
            &acme,
            "POST",
            &fetch("all"),
            json!({"max_messages": 10}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    assert!(
        refused["detail"].as_str().unwrap().contains("acme."),
        "{refused}"
    );
    // Acks: an ack id of consumer `all` that an operator fetched.
    let fetched = json(
        send_as(
            &app,
            &operator(),
            "POST",
            &fetch("all"),
            json!({"max_messages": 1}),
        )
        .await,
        200,
    )
    .await;
    let ack_id = fetched["messages"][0]["ack_id"]
        .as_str()
        .unwrap()
        .to_owned();
    problem(
        send_as(
            &app,
            &acme,
            "POST",
            "/v1/acks",
            json!({"acks": [{"ack_id": ack_id, "action": "term"}]}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    // WebSocket (single stream), SSE.
    for path in [
        format!("/v1/streams/{STREAM}/ws?consumer=all&access_token={acme}"),
        format!("/v1/streams/{STREAM}/events?consumer=all&access_token={acme}"),
    ] {
        let response = if path.contains("/ws") {
            upgrade_request(&app, &path).await
        } else {
            app.http.get(app.url(&path)).send().await.unwrap()
        };
        problem(response, 403, "forbidden").await;
    }
    // Multiplexed subscribe and an ack op over the socket.
    let mut ws = connect(&app, &format!("/v1/ws?access_token={acme}")).await;
    send(
        &mut ws,
        &json!({"op": "subscribe", "id": "s1", "stream": STREAM, "consumer": "all"}),
    )
    .await;
    send(
        &mut ws,
        &json!({"op": "term", "ack_id": ack_id, "id": "t1"}),
    )
    .await;
    let frames = collect_until(&mut ws, Duration::from_secs(10), |frames| {
        frames.iter().filter(|f| f["type"] == "error").count() >= 2
    })
    .await;
    let errors: Vec<&Value> = frames.iter().filter(|f| f["type"] == "error").collect();
    assert!(
        errors.iter().all(|f| f["problem"]["code"] == "forbidden"),
        "{errors:?}"
    );
    assert!(frames.iter().all(|f| f["type"] != "msg"), "{frames:?}");

    // JetStream delivered nothing to the tenant and applied none of its acks: the operator's one
    // delivery is still pending an ack, the other message still undelivered.
    assert_eq!(consumer_state(&app, "all").await, (1, 1));
}

#[tokio::test]
async fn a_tenant_lists_sees_and_uses_only_consumers_inside_its_namespace() {
    let app = shared_app().await;
    let acme = acme();

    let list = json(
        send_as(
            &app,
            &acme,
            "GET",
            &format!("/v1/streams/{STREAM}/consumers"),
            Value::Null,
        )
        .await,
        200,
    )
    .await;
    let names: Vec<&str> = list["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme-only"]);
    problem(
        send_as(
            &app,
            &acme,
            "GET",
            &format!("/v1/streams/{STREAM}/consumers/all"),
            Value::Null,
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    let fetched = json(
        send_as(
            &app,
            &acme,
            "POST",
            &format!("/v1/streams/{STREAM}/consumers/acme-only/fetch"),
            json!({"max_messages": 10}),
        )
        .await,
        200,
    )
    .await;
    let messages = fetched["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{fetched}");
    assert_eq!(messages[0]["subject"], "orders.1");
    let acked = json(
        send_as(
            &app,
            &acme,
            "POST",
            "/v1/acks",
            json!({"acks": [{"ack_id": messages[0]["ack_id"], "action": "ack"}]}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(acked["results"][0]["status"], 200);
    eventually("the ack to be recorded", Duration::from_secs(5), || async {
        (consumer_state(&app, "acme-only").await == (0, 0)).then_some(())
    })
    .await;
    // The operator's view is untouched.
    assert_eq!(consumer_state(&app, "all").await, (2, 0));
}
