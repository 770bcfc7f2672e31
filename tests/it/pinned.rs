//! Pinned workers: a `pinned_client` consumer delivers to one fetching worker at a time (the
//! holder of the pin, carried by `pin_id`), the others wait on standby, and one of them takes
//! over once the pinned worker stops fetching for `priority_timeout`, or at once on unpin. On one
//! node and on an R3 cluster; the pin JetStream holds is read with the direct client.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::harness::{TestApp, Topology, eventually, json, problem, spawn_app_on_with};

const PATH: &str = "/v1/streams/ORDERS/consumers/workers";
/// Long enough that a standby fetch shorter than it never outlasts a pin on a busy machine.
const PRIORITY_TIMEOUT: Duration = Duration::from_secs(4);

async fn pinned_app_on(topology: Topology) -> TestApp {
    let app = spawn_app_on_with(topology, |c| c.ack_secret = vec!["s3cret".into()]).await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let created = json(
        app.http
            .put(app.url(PATH))
            .json(
                &json!({"priority_policy": "pinned_client", "priority_groups": ["workers"],
                          "priority_timeout": "4s", "ack_wait": "30s"}),
            )
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    assert_eq!(
        created["config"]["priority_policy"], "pinned_client",
        "{created}"
    );
    assert_eq!(created["config"]["priority_groups"], json!(["workers"]));
    assert_eq!(created["config"]["priority_timeout"], "4s");
    app
}

async fn publish(app: &TestApp, count: usize) {
    for i in 0..count {
        app.js
            .publish("orders.new", Bytes::from(format!("m{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

async fn fetch(app: &TestApp, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(&format!("{PATH}/fetch")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A fetch answered 200: its sequences and pin.
async fn fetch_ok(app: &TestApp, body: Value) -> (Vec<u64>, Option<String>) {
    let answer = json(fetch(app, body).await, 200).await;
    let seqs = answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    (seqs, answer["pin_id"].as_str().map(str::to_owned))
}

/// The pin JetStream holds for `workers`, read directly.
async fn server_pin(app: &TestApp) -> Option<String> {
    let info: consumer::Info = eventually("consumer info", Duration::from_secs(15), || async {
        let stream = app.js.get_stream("ORDERS").await.ok()?;
        stream.consumer_info("workers").await.ok()
    })
    .await;
    info.priority_groups
        .iter()
        .find(|g| g.group == "workers")
        .and_then(|g| g.pinned_client_id.clone())
        .filter(|id| !id.is_empty())
}

async fn one_worker_at_a_time_gets_the_messages_and_a_standby_takes_over_after_the_timeout(
    topology: Topology,
) {
    let app = pinned_app_on(topology).await;
    publish(&app, 3).await;

    // Worker A takes the pin with its first fetch.
    let (first, pin_a) = fetch_ok(
        &app,
        json!({"group": "workers", "max_messages": 1, "wait": "2s"}),
    )
    .await;
    let a_last_fetch = Instant::now();
    assert_eq!(first, [1]);
    let pin_a = pin_a.expect("a pin for worker A");
    assert_eq!(server_pin(&app).await.as_deref(), Some(pin_a.as_str()));
    let info = json(app.http.get(app.url(PATH)).send().await.unwrap(), 200).await;
    assert_eq!(info["priority_groups"][0]["group"], "workers", "{info}");
    assert_eq!(info["priority_groups"][0]["pinned"], true, "{info}");
    assert!(
        !info.to_string().contains(&pin_a),
        "the pin id is not shown: {info}"
    );

    // Worker B, without the pin, waits on standby although two messages are pending.
    let (standby, pin_b) = fetch_ok(
        &app,
        json!({"group": "workers", "max_messages": 10, "wait": "1500ms"}),
    )
    .await;
    assert!(standby.is_empty(), "a standby worker got {standby:?}");
    assert!(pin_b.is_none());
    assert!(
        a_last_fetch.elapsed() < PRIORITY_TIMEOUT,
        "machine too slow for this check"
    );
    // Another pin is refused.
    problem(
        fetch(
            &app,
            json!({"group": "workers", "pin_id": "not-the-pin", "wait": "1s"}),
        )
        .await,
        409,
        "pin_mismatch",
    )
    .await;

    // A keeps fetching with its pin.
    let (second, again) = fetch_ok(
        &app,
        json!({"group": "workers", "pin_id": pin_a, "max_messages": 1, "wait": "2s"}),
    )
    .await;
    let a_last_fetch = Instant::now();
    assert_eq!(second, [2]);
    assert_eq!(again.as_deref(), Some(pin_a.as_str()));

    // A stops. B's waiting fetch gets the next message once A's pin expired, with a new pin.
    let (third, pin_b) = fetch_ok(
        &app,
        json!({"group": "workers", "max_messages": 10, "wait": "20s"}),
    )
    .await;
    let since_a = a_last_fetch.elapsed();
    assert_eq!(third, [3]);
    assert!(
        since_a >= PRIORITY_TIMEOUT - Duration::from_millis(250),
        "B took over {since_a:?} after A's last fetch, before the priority timeout"
    );
    let pin_b = pin_b.expect("a pin for worker B");
    assert_ne!(pin_b, pin_a);
    assert_eq!(server_pin(&app).await.as_deref(), Some(pin_b.as_str()));
    // A's old pin no longer fetches.
    problem(
        fetch(
            &app,
            json!({"group": "workers", "pin_id": pin_a, "wait": "1s"}),
        )
        .await,
        409,
        "pin_mismatch",
    )
    .await;
}

async fn unpin_hands_the_pin_to_a_standby_worker_at_once(topology: Topology) {
    let app = pinned_app_on(topology).await;
    publish(&app, 2).await;
    let (first, pin_a) = fetch_ok(&app, json!({"group": "workers", "wait": "2s"})).await;
    assert_eq!(first, [1]);
    let pin_a = pin_a.unwrap();

    let released = app
        .http
        .post(app.url(&format!("{PATH}/unpin")))
        .json(&json!({"group": "workers"}))
        .send()
        .await
        .unwrap();

    assert_eq!(released.status(), 204);
    let started = Instant::now();
    let (next, pin_b) = fetch_ok(&app, json!({"group": "workers", "wait": "10s"})).await;
    assert_eq!(next, [2]);
    assert!(
        started.elapsed() < PRIORITY_TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
    assert_ne!(pin_b.unwrap(), pin_a);
    problem(
        fetch(&app, json!({"group": "workers", "pin_id": pin_a})).await,
        409,
        "pin_mismatch",
    )
    .await;
}

crate::on_r1_and_r3!(
    one_worker_at_a_time_gets_the_messages_and_a_standby_takes_over_after_the_timeout,
    unpin_hands_the_pin_to_a_standby_worker_at_once,
);

#[tokio::test]
async fn fetches_from_a_pinned_consumer_must_name_one_of_its_groups() {
    let app = pinned_app_on(Topology::Single).await;
    publish(&app, 1).await;

    problem(
        fetch(&app, json!({"wait": "1s"})).await,
        400,
        "invalid_parameter",
    )
    .await;
    problem(
        fetch(&app, json!({"group": "others", "wait": "1s"})).await,
        400,
        "invalid_parameter",
    )
    .await;
    problem(
        fetch(&app, json!({"pin_id": "abc"})).await,
        400,
        "invalid_body",
    )
    .await;
    problem(
        fetch(&app, json!({"group": "bad group!"})).await,
        400,
        "invalid_body",
    )
    .await;
    problem(
        fetch(&app, json!({"group": "workers", "priority": 10})).await,
        400,
        "invalid_body",
    )
    .await;
    assert!(
        server_pin(&app).await.is_none(),
        "no refused fetch took the pin"
    );
    let info: consumer::Info = app
        .js
        .get_stream("ORDERS")
        .await
        .unwrap()
        .consumer_info("workers")
        .await
        .unwrap();
    assert_eq!(info.num_ack_pending, 0, "nothing was delivered");
    assert_eq!(
        info.config.priority_policy,
        consumer::PriorityPolicy::PinnedClient
    );
    assert_eq!(info.config.priority_timeout, PRIORITY_TIMEOUT);
}

// ---------------------------------------------------------------------------------------------
// WebSocket ack mode

/// The `msg` frames a socket receives within `window` (reading stops at its end).
async fn msgs_within(ws: &mut crate::ws::Ws, window: Duration) -> Vec<u64> {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + window;
    let mut seqs = Vec::new();
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            let frame: Value = serde_json::from_str(text.as_str()).unwrap();
            if frame["type"] == "msg" {
                seqs.push(frame["seq"].as_u64().unwrap());
            }
        }
    }
    seqs
}

async fn over_websockets_one_socket_gets_the_messages_and_another_takes_over_when_it_closes(
    topology: Topology,
) {
    let app = pinned_app_on(topology).await;
    let path = "/v1/streams/ORDERS/ws?consumer=workers&group=workers";
    let mut a = crate::ws::connect(&app, path).await;
    let mut b = crate::ws::connect(&app, path).await;

    publish(&app, 4).await;
    let (got_a, got_b) = tokio::join!(
        msgs_within(&mut a, Duration::from_secs(3)),
        msgs_within(&mut b, Duration::from_secs(3))
    );

    // Exactly one socket holds the pin and gets all four; the other gets none.
    let (mut pinned, mut standby) = if got_a.is_empty() { (b, a) } else { (a, b) };
    let (got_pinned, got_standby) = if got_a.is_empty() {
        (got_b, got_a)
    } else {
        (got_a, got_b)
    };
    assert_eq!(got_pinned, [1, 2, 3, 4], "standby got {got_standby:?}");
    assert!(got_standby.is_empty(), "{got_standby:?}");
    assert!(server_pin(&app).await.is_some());
    // More messages keep going to the pinned socket.
    publish(&app, 1).await;
    assert_eq!(msgs_within(&mut pinned, Duration::from_secs(2)).await, [5]);

    // The pinned worker goes away. Its pin lapses once its subscription stopped pulling for
    // the priority timeout (a message published before that could still reach the closing
    // subscription, and would come back only after ack_wait).
    let pin = server_pin(&app).await.expect("a pin");
    pinned.close(None).await.ok();
    drop(pinned);
    eventually(
        "the closed socket's pin to lapse",
        Duration::from_secs(20),
        || async { (server_pin(&app).await.as_deref() != Some(pin.as_str())).then_some(()) },
    )
    .await;
    let freed = Instant::now();
    publish(&app, 1).await;
    // The standby socket takes over: it receives the new message (and, after ack_wait, the
    // unacknowledged ones).
    let mut taken_over = Vec::new();
    while !taken_over.contains(&6) && freed.elapsed() < Duration::from_secs(10) {
        taken_over.extend(msgs_within(&mut standby, Duration::from_secs(1)).await);
    }
    assert!(
        taken_over.contains(&6),
        "the standby socket got {taken_over:?}"
    );
    let new_pin = server_pin(&app).await;
    assert!(new_pin.is_some() && new_pin.as_deref() != Some(pin.as_str()));
}

crate::on_r1_and_r3!(
    over_websockets_one_socket_gets_the_messages_and_another_takes_over_when_it_closes,
);

#[tokio::test]
async fn a_websocket_group_needs_a_consumer_and_a_pinned_consumer_needs_a_group() {
    use futures::StreamExt;
    let app = pinned_app_on(Topology::Single).await;
    // Without a group the consumer refuses every pull: the subscription fails with an error
    // frame instead of pulling in a loop.
    let mut ws = crate::ws::connect(&app, "/v1/streams/ORDERS/ws?consumer=workers").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut error = Value::Null;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            let frame: Value = serde_json::from_str(text.as_str()).unwrap();
            if frame["type"] == "error" {
                error = frame;
                break;
            }
        }
    }
    assert_eq!(error["problem"]["code"], "invalid_parameter", "{error}");
    let response = app
        .http
        .get(app.url("/v1/streams/ORDERS/events?group=workers"))
        .send()
        .await
        .unwrap();
    problem(response, 400, "invalid_parameter").await;
}
