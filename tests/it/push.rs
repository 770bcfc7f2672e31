//! Push subscriptions: jetway POSTs a stream's messages to a real HTTP receiver on loopback,
//! signed per Standard Webhooks (verified with the `standardwebhooks` reference library from
//! PyPI, not with jetway's code), retried with backoff, dead-lettered after `max_deliver`,
//! strictly ordered with `max_in_flight: 1` across receiver failures, several replicas and a
//! replica killed with SIGKILL, and refused for destinations outside `--push-allow`.
//!
//! What JetStream holds (the consumer's ack floor, the dead-letter copies) is read with the
//! direct client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::harness::{
    NatsServer, TestApp, Topology, eventually, free_tcp_port, installed_tool, json, problem,
    spawn_app_on_with, spawn_app_with, spawn_gateway,
};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    headers: BTreeMap<String, String>,
    body: Bytes,
    seq: u64,
    attempt: u64,
    /// What the receiver answered.
    status: u16,
}

/// How the receiver answers a delivery (by its sequence and attempt number).
#[derive(Debug, Clone)]
enum Reply {
    Status(u16),
    /// A status and headers (`Retry-After`, `Location`).
    StatusWith(u16, Vec<(&'static str, String)>),
    /// Answer after a while.
    Slow(Duration, u16),
    /// Never answer; the sequence is reported on the hang channel.
    Hang,
}

type Script = Arc<dyn Fn(u64, u64) -> Reply + Send + Sync>;

struct Inner {
    script: Script,
    deliveries: Mutex<Vec<Delivery>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    hung: mpsc::UnboundedSender<u64>,
}

/// A webhook receiver on loopback that records every request.
struct Receiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
    hung: mpsc::UnboundedReceiver<u64>,
}

impl Receiver {
    async fn start(script: impl Fn(u64, u64) -> Reply + Send + Sync + 'static) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            script: Arc::new(script),
            deliveries: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            hung: tx,
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(inner.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            inner,
            hung: rx,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.inner.deliveries.lock().unwrap().clone()
    }

    /// Sequences the receiver accepted (2xx), in the order it accepted them.
    fn accepted(&self) -> Vec<u64> {
        self.deliveries()
            .iter()
            .filter(|d| (200..300).contains(&d.status))
            .map(|d| d.seq)
            .collect()
    }

    fn most_in_flight(&self) -> usize {
        self.inner.most_in_flight.load(Ordering::SeqCst)
    }

    async fn wait_accepted(&self, count: usize) -> Vec<u64> {
        eventually(
            &format!("{count} accepted deliveries"),
            Duration::from_secs(60),
            || async {
                let accepted = self.accepted();
                (accepted.len() >= count).then_some(accepted)
            },
        )
        .await
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default()
    };
    let (seq, attempt) = (number("jetway-seq"), number("jetway-delivery-count"));
    let reply = (inner.script)(seq, attempt);
    if matches!(reply, Reply::Hang) {
        inner.deliveries.lock().unwrap().push(Delivery {
            headers: headers.clone(),
            body: body.clone(),
            seq,
            attempt,
            status: 0,
        });
        let _ = inner.hung.send(seq);
        std::future::pending::<()>().await;
    }
    let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inner.most_in_flight.fetch_max(now, Ordering::SeqCst);
    let (status, extra) = match reply {
        Reply::Status(status) => (status, Vec::new()),
        Reply::StatusWith(status, extra) => (status, extra),
        Reply::Slow(wait, status) => {
            tokio::time::sleep(wait).await;
            (status, Vec::new())
        }
        Reply::Hang => (0, Vec::new()),
    };
    inner.deliveries.lock().unwrap().push(Delivery {
        headers,
        body,
        seq,
        attempt,
        status,
    });
    inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response = (
        axum::http::StatusCode::from_u16(status).unwrap(),
        format!("receiver says {status}"),
    )
        .into_response();
    for (name, value) in extra {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// Runs the Standard Webhooks reference library over `deliveries`: (all verified, its report).
fn standardwebhooks_verdict(secret: &str, deliveries: &[Delivery]) -> (bool, String) {
    let library = installed_tool("standardwebhooks", "push");
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("deliveries.json");
    let recorded = json!({
        "secret": secret,
        "deliveries": deliveries.iter().map(|d| json!({
            "headers": d.headers,
            "body": base64::engine::general_purpose::STANDARD.encode(&d.body),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(&file, serde_json::to_vec(&recorded).unwrap()).unwrap();
    let output = std::process::Command::new("python3")
        .arg(crate::harness::repo_root().join("tests/push/verify.py"))
        .arg(&file)
        .env("PYTHONPATH", &library)
        .output()
        .expect("run python3");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let all = output.status.success() && report.matches(": verified ").count() == deliveries.len();
    (all, report)
}

/// Asserts that every delivery's signature verifies with the reference library.
fn verify_with_standardwebhooks(secret: &str, deliveries: &[Delivery]) {
    let (verified, report) = standardwebhooks_verdict(secret, deliveries);
    assert!(verified, "standardwebhooks rejected a signature:\n{report}");
}

fn allow_loopback(config: &mut jetway::config::Config) {
    config.push_allow = vec!["127.0.0.1".to_owned()];
    config.push_allow_http = true;
}

async fn put_push(base: &str, stream: &str, name: &str, body: Value, status: u16) -> Value {
    let response = reqwest::Client::new()
        .put(format!("{base}/v1/streams/{stream}/push/{name}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    json(response, status).await
}

async fn get_push(app: &TestApp, stream: &str, name: &str) -> Value {
    let response = app
        .http
        .get(app.url(&format!("/v1/streams/{stream}/push/{name}")))
        .send()
        .await
        .unwrap();
    json(response, 200).await
}

/// Waits until the subscription's status shows `check`.
async fn wait_state(
    app: &TestApp,
    stream: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, Duration::from_secs(60), || async {
        let info = get_push(app, stream, name).await;
        check(&info["state"]).then_some(info)
    })
    .await
}

async fn publish_n(app: &TestApp, subject: &str, count: u64) {
    for i in 1..=count {
        let response = app
            .publish(
                subject,
                format!("{{\"n\":{i}}}"),
                &[
                    ("content-type", "application/json"),
                    ("x-msg-origin", "test"),
                ],
            )
            .await;
        assert_eq!(response.status().as_u16(), 201, "publish {i}");
    }
}

async fn consumer_state(app: &TestApp, stream: &str, name: &str) -> (u64, usize) {
    let stream = app.js.get_stream(stream).await.unwrap();
    let info = stream.consumer_info(name).await.unwrap();
    (info.ack_floor.stream_sequence, info.num_ack_pending)
}

// ---------------------------------------------------------------------------------------------

async fn deliveries_are_signed_carry_the_message_and_are_acked(topology: Topology) {
    let app = spawn_app_on_with(topology, allow_loopback).await;
    app.create_stream("PUSHSIG", &["sig.>"]).await;
    let receiver = Receiver::start(|_, _| Reply::Status(204)).await;
    let created = put_push(
        &app.url(""),
        "PUSHSIG",
        "hook",
        json!({"url": receiver.url(), "headers": {"Authorization": "Bearer receiver-token"}}),
        201,
    )
    .await;
    let secret = created["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(created["config"]["header_names"], json!(["Authorization"]));
    assert_eq!(created["config"]["max_in_flight"], 1);
    publish_n(&app, "sig.orders", 5).await;
    let accepted = receiver.wait_accepted(5).await;
    assert_eq!(accepted, vec![1, 2, 3, 4, 5], "in order, once each");
    let deliveries = receiver.deliveries();
    let first = &deliveries[0];
    assert_eq!(first.body, Bytes::from_static(b"{\"n\":1}"));
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(first.headers["authorization"], "Bearer receiver-token");
    assert_eq!(first.headers["jetway-stream"], "PUSHSIG");
    assert_eq!(first.headers["jetway-seq"], "1");
    assert_eq!(first.headers["jetway-subject"], "sig.orders");
    assert_eq!(first.headers["jetway-delivery-count"], "1");
    assert_eq!(first.headers["jetway-push"], "hook");
    assert_eq!(first.headers["x-msg-origin"], "test");
    assert!(first.headers["webhook-signature"].starts_with("v1,"));
    assert_eq!(first.headers["webhook-id"], "msg_PUSHSIG_1");
    assert_eq!(first.attempt, 1);
    verify_with_standardwebhooks(&secret, &deliveries);
    // A tampered body fails the same verification: the check can fail.
    let mut tampered = deliveries[0].clone();
    tampered.body = Bytes::from_static(b"{\"n\":99}");
    let (verified, report) = standardwebhooks_verdict(&secret, &[tampered]);
    assert!(
        !verified && report.contains("NOT verified"),
        "a tampered body must not verify: {report}"
    );

    // JetStream holds every message as acknowledged.
    eventually("the ack floor at 5", Duration::from_secs(30), || async {
        (consumer_state(&app, "PUSHSIG", "hook").await == (5, 0)).then_some(())
    })
    .await;
    let info = wait_state(&app, "PUSHSIG", "hook", "5 acked in the status", |s| {
        s["acked"] == 5
    })
    .await;
    let state = &info["state"];
    assert_eq!(state["delivered"], 5, "{info}");
    assert_eq!(state["failed"], 0, "{info}");
    assert_eq!(state["lag"], 0, "{info}");
    assert_eq!(state["in_flight"], 0, "{info}");
    assert_eq!(state["last_status"], 204, "{info}");
    assert_eq!(state["consecutive_failures"], 0, "{info}");
    assert!(state["last_success_at"].is_string(), "{info}");
    assert!(
        info.get("secret").is_none(),
        "the secret is shown once: {info}"
    );
    let text = info.to_string();
    assert!(
        !text.contains("receiver-token") && !text.contains(&secret),
        "{text}"
    );

    // Updating keeps the secret and headers unless given; the next delivery still verifies.
    put_push(
        &app.url(""),
        "PUSHSIG",
        "hook",
        json!({"url": receiver.url(), "description": "orders"}),
        200,
    )
    .await;
    publish_n(&app, "sig.more", 1).await;
    receiver.wait_accepted(6).await;
    let deliveries = receiver.deliveries();
    let last = deliveries.last().unwrap();
    assert_eq!(last.headers["authorization"], "Bearer receiver-token");
    verify_with_standardwebhooks(&secret, std::slice::from_ref(last));

    // Metrics per subscription.
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "jetway_push_deliveries_total{stream=\"PUSHSIG\",push=\"hook\",outcome=\"acked\"} 6"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("jetway_push_delivery_seconds_count{stream=\"PUSHSIG\",push=\"hook\"} 6")
    );

    // Deleting stops the deliveries and removes the consumer.
    let deleted = app
        .http
        .delete(app.url("/v1/streams/PUSHSIG/push/hook"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let stream = app.js.get_stream("PUSHSIG").await.unwrap();
    assert!(
        stream.consumer_info("hook").await.is_err(),
        "consumer deleted"
    );
    problem(
        app.http
            .get(app.url("/v1/streams/PUSHSIG/push/hook"))
            .send()
            .await
            .unwrap(),
        404,
        "push_not_found",
    )
    .await;
}

async fn failed_deliveries_are_retried_with_backoff_then_acked_once(topology: Topology) {
    let app = spawn_app_on_with(topology, allow_loopback).await;
    app.create_stream("PUSHRETRY", &["retry.>"]).await;
    // 500, 429 with Retry-After: 1, 503 with Retry-After as an HTTP-date 2 s ahead, then 200.
    let receiver = Receiver::start(|_, attempt| match attempt {
        1 => Reply::Status(500),
        2 => Reply::StatusWith(429, vec![("retry-after", "1".to_owned())]),
        3 => {
            let at = std::time::SystemTime::now() + Duration::from_secs(2);
            Reply::StatusWith(503, vec![("retry-after", httpdate::fmt_http_date(at))])
        }
        _ => Reply::Status(200),
    })
    .await;
    put_push(
        &app.url(""),
        "PUSHRETRY",
        "hook",
        json!({"url": receiver.url(), "backoff": ["100ms"], "max_deliver": 5}),
        201,
    )
    .await;
    publish_n(&app, "retry.one", 1).await;
    receiver.wait_accepted(1).await;
    let deliveries = receiver.deliveries();
    let statuses: Vec<u16> = deliveries.iter().map(|d| d.status).collect();
    assert_eq!(
        statuses,
        vec![500, 429, 503, 200],
        "four deliveries, acked once"
    );
    let attempts: Vec<u64> = deliveries.iter().map(|d| d.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3, 4]);
    let ids: Vec<&str> = deliveries
        .iter()
        .map(|d| d.headers["webhook-id"].as_str())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "webhook-id is stable: {ids:?}"
    );
    let gap = |a: &Delivery, b: &Delivery| {
        b.headers["webhook-timestamp"].parse::<i64>().unwrap()
            - a.headers["webhook-timestamp"].parse::<i64>().unwrap()
    };
    // Retry-After: 1 outweighs the 100ms backoff (timestamps are whole seconds), and so does
    // a date at least a second ahead.
    assert!(gap(&deliveries[1], &deliveries[2]) >= 1, "{deliveries:?}");
    assert!(gap(&deliveries[2], &deliveries[3]) >= 1, "{deliveries:?}");
    eventually("the ack floor at 1", Duration::from_secs(30), || async {
        (consumer_state(&app, "PUSHRETRY", "hook").await == (1, 0)).then_some(())
    })
    .await;
    let info = wait_state(&app, "PUSHRETRY", "hook", "the status counts", |s| {
        s["delivered"] == 4
    })
    .await;
    let state = &info["state"];
    assert_eq!(
        (state["acked"].clone(), state["failed"].clone()),
        (json!(1), json!(3)),
        "{info}"
    );
    assert_eq!(state["consecutive_failures"], 0, "{info}");
    assert_eq!(state["last_status"], 200, "{info}");
}

async fn a_receiver_that_stays_down_gets_the_message_dead_lettered_once(topology: Topology) {
    let app = spawn_app_on_with(topology, allow_loopback).await;
    app.create_stream("PUSHDOWN", &["down.>"]).await;
    app.create_stream("PUSHDLQ", &["dlq.>"]).await;
    // A second replica delivers too: the copy is still stored once.
    let _second = spawn_gateway(&app.server, allow_loopback).await;
    let closed = format!("http://127.0.0.1:{}/hook", free_tcp_port());
    put_push(
        &app.url(""),
        "PUSHDOWN",
        "hook",
        json!({"url": closed, "backoff": ["100ms", "200ms"], "max_deliver": 3,
               "dead_letter_subject": "dlq.down", "timeout": "1s"}),
        201,
    )
    .await;
    publish_n(&app, "down.x", 2).await;
    eventually(
        "two dead-letter copies",
        Duration::from_secs(60),
        || async {
            let info = app
                .js
                .get_stream("PUSHDLQ")
                .await
                .ok()?
                .get_info()
                .await
                .ok()?;
            (info.state.messages >= 2).then_some(())
        },
    )
    .await;
    eventually(
        "both messages terminated",
        Duration::from_secs(30),
        || async { (consumer_state(&app, "PUSHDOWN", "hook").await == (2, 0)).then_some(()) },
    )
    .await;
    let info = wait_state(&app, "PUSHDOWN", "hook", "two dead-lettered", |s| {
        s["dead_lettered"] == 2
    })
    .await;
    let state = &info["state"];
    assert_eq!(state["failed"], 6, "3 attempts each: {info}");
    assert_eq!(state["acked"], 0, "{info}");
    assert!(
        state["consecutive_failures"].as_u64().unwrap() >= 6,
        "{info}"
    );
    let error = state["last_error"].as_str().unwrap();
    assert!(error.contains("connection"), "{error}");
    assert!(
        state.get("last_status").is_none(),
        "no answer, no status: {info}"
    );
    let copies = app.stored("PUSHDLQ").await;
    assert_eq!(copies.len(), 2, "one copy per message across both replicas");
    for copy in &copies {
        let header = |name: &str| {
            copy.headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(header("Jetway-Origin-Stream"), "PUSHDOWN");
        assert_eq!(header("Jetway-Deliveries"), "3");
        assert!(
            header("Jetway-Push-Last-Error").contains("connection"),
            "{:?}",
            copy.headers
        );
        assert_eq!(header("Jetway-Push-Last-Status"), "");
    }
}

async fn max_in_flight_one_keeps_order_across_a_failing_receiver(topology: Topology) {
    let app = spawn_app_on_with(topology, allow_loopback).await;
    app.create_stream("PUSHORDER", &["order.>"]).await;
    // A second replica pulls the same consumer.
    let _second = spawn_gateway(&app.server, allow_loopback).await;
    // Message 3 fails twice, message 7 once; every answer takes a little while.
    let receiver = Receiver::start(|seq, attempt| match (seq, attempt) {
        (3, 1 | 2) | (7, 1) => Reply::Status(503),
        _ => Reply::Slow(Duration::from_millis(20), 200),
    })
    .await;
    put_push(
        &app.url(""),
        "PUSHORDER",
        "hook",
        json!({"url": receiver.url(), "max_in_flight": 1, "backoff": ["100ms"]}),
        201,
    )
    .await;
    publish_n(&app, "order.x", 12).await;
    let accepted = receiver.wait_accepted(12).await;
    assert_eq!(accepted, (1..=12).collect::<Vec<_>>());
    let seen: Vec<u64> = receiver.deliveries().iter().map(|d| d.seq).collect();
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(seen, sorted, "no message overtook a failing one: {seen:?}");
    assert_eq!(seen.len(), 15, "12 messages, 3 retries: {seen:?}");
    assert_eq!(receiver.most_in_flight(), 1, "never two deliveries at once");
}

async fn max_in_flight_many_delivers_concurrently_across_replicas(topology: Topology) {
    let app = spawn_app_on_with(topology, allow_loopback).await;
    app.create_stream("PUSHMANY", &["many.>"]).await;
    let _second = spawn_gateway(&app.server, allow_loopback).await;
    let receiver = Receiver::start(|_, _| Reply::Slow(Duration::from_millis(100), 200)).await;
    put_push(
        &app.url(""),
        "PUSHMANY",
        "hook",
        json!({"url": receiver.url(), "max_in_flight": 8}),
        201,
    )
    .await;
    publish_n(&app, "many.x", 40).await;
    let mut accepted = receiver.wait_accepted(40).await;
    accepted.sort_unstable();
    accepted.dedup();
    assert_eq!(accepted, (1..=40).collect::<Vec<_>>());
    let most = receiver.most_in_flight();
    assert!(
        (2..=8).contains(&most),
        "concurrent, within max_in_flight: {most}"
    );
}

crate::on_r1_and_r3!(
    deliveries_are_signed_carry_the_message_and_are_acked,
    failed_deliveries_are_retried_with_backoff_then_acked_once,
    a_receiver_that_stays_down_gets_the_message_dead_lettered_once,
    max_in_flight_one_keeps_order_across_a_failing_receiver,
    max_in_flight_many_delivers_concurrently_across_replicas,
);

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_dead_letters_at_once_when_configured_and_redirects_are_not_followed() {
    let app = spawn_app_with(allow_loopback).await;
    app.create_stream("PUSH4XX", &["c4.>"]).await;
    app.create_stream("PUSH4XXDLQ", &["c4dlq.>"]).await;
    let receiver = Receiver::start(|seq, _| match seq {
        1 => Reply::Status(422),
        _ => Reply::StatusWith(
            302,
            vec![("location", "http://10.0.0.1/elsewhere".to_owned())],
        ),
    })
    .await;
    put_push(
        &app.url(""),
        "PUSH4XX",
        "hook",
        json!({"url": receiver.url(), "dead_letter_on_client_error": true, "max_deliver": 2,
               "backoff": ["100ms"], "dead_letter_subject": "c4dlq.x"}),
        201,
    )
    .await;
    publish_n(&app, "c4.x", 2).await;
    eventually(
        "two dead-letter copies",
        Duration::from_secs(30),
        || async {
            let info = app
                .js
                .get_stream("PUSH4XXDLQ")
                .await
                .ok()?
                .get_info()
                .await
                .ok()?;
            (info.state.messages >= 2).then_some(())
        },
    )
    .await;
    let deliveries = receiver.deliveries();
    let per_seq = |seq: u64| deliveries.iter().filter(|d| d.seq == seq).count();
    assert_eq!(per_seq(1), 1, "422 dead-letters at once");
    assert_eq!(
        per_seq(2),
        2,
        "a redirect is a failure, retried up to max_deliver"
    );
    let copies = app.stored("PUSH4XXDLQ").await;
    let status_of = |i: usize| {
        copies[i]
            .headers
            .get("Jetway-Push-Last-Status")
            .map(|v| v.as_str().to_owned())
    };
    assert_eq!(status_of(0).as_deref(), Some("422"));
    assert_eq!(status_of(1).as_deref(), Some("302"));
    let error = copies[1]
        .headers
        .get("Jetway-Push-Last-Error")
        .unwrap()
        .as_str()
        .to_owned();
    assert!(error.contains("not followed"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_holds_deliveries_and_resuming_delivers_them() {
    let app = spawn_app_with(allow_loopback).await;
    app.create_stream("PUSHPAUSE", &["pause.>"]).await;
    let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
    put_push(
        &app.url(""),
        "PUSHPAUSE",
        "hook",
        json!({"url": receiver.url()}),
        201,
    )
    .await;
    let paused = app
        .http
        .post(app.url("/v1/streams/PUSHPAUSE/push/hook/pause"))
        .send()
        .await
        .unwrap();
    let paused = json(paused, 200).await;
    assert_eq!(paused["paused"], true, "{paused}");
    assert!(
        paused.get("pause_until").is_none(),
        "until resumed: {paused}"
    );
    publish_n(&app, "pause.x", 3).await;
    let info = wait_state(&app, "PUSHPAUSE", "hook", "a lag of 3 while paused", |s| {
        s["lag"] == 3
    })
    .await;
    assert_eq!(info["state"]["paused"], true, "{info}");
    assert!(
        receiver.deliveries().is_empty(),
        "nothing delivered while paused"
    );
    let resumed = app
        .http
        .delete(app.url("/v1/streams/PUSHPAUSE/push/hook/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(resumed, 200).await["paused"], false);
    assert_eq!(receiver.wait_accepted(3).await, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_outside_the_allowlist_and_bad_settings_are_refused() {
    let app = spawn_app_with(|config| {
        config.push_allow = vec!["127.0.0.1".to_owned(), "hooks.example.com".to_owned()];
        config.push_allow_http = true;
    })
    .await;
    app.create_stream("PUSHBAD", &["bad.>"]).await;
    let put = |body: Value| {
        let http = app.http.clone();
        let url = app.url("/v1/streams/PUSHBAD/push/hook");
        async move { http.put(url).json(&body).send().await.unwrap() }
    };
    for url in [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/hook",
        "http://127.0.0.2/hook",
        "http://0.0.0.0/hook",
        "https://8.8.8.8/hook",
    ] {
        let body = problem(
            put(json!({"url": url})).await,
            403,
            "destination_not_allowed",
        )
        .await;
        assert!(
            body["detail"].as_str().unwrap().contains("--push-allow"),
            "{url}: {body}"
        );
    }
    for (body, field) in [
        (json!({"url": "ftp://127.0.0.1/x"}), "scheme"),
        (json!({"url": "http://user:pw@127.0.0.1/x"}), "credentials"),
        (json!({"url": "not a url"}), "absolute URL"),
        (
            json!({"url": "http://127.0.0.1/x", "max_in_flight": 0}),
            "max_in_flight",
        ),
        (
            json!({"url": "http://127.0.0.1/x", "timeout": "5m"}),
            "timeout",
        ),
        (
            json!({"url": "http://127.0.0.1/x", "max_deliver": 0}),
            "max_deliver",
        ),
        (
            json!({"url": "http://127.0.0.1/x", "backoff": []}),
            "backoff",
        ),
        (
            json!({"url": "http://127.0.0.1/x", "secret": "whsec_c2hvcnQ="}),
            "secret",
        ),
        (
            json!({"url": "http://127.0.0.1/x", "headers": {"Webhook-Id": "x"}}),
            "reserved",
        ),
        (
            json!({"url": "http://127.0.0.1/x", "headers": {"Host": "x"}}),
            "reserved",
        ),
        (
            json!({"url": "http://127.0.0.1/x", "headers": {"bad header": "x"}}),
            "header name",
        ),
        (
            json!({"url": "http://127.0.0.1/x", "filter_subjects": ["$JS.API.>"]}),
            "filter",
        ),
    ] {
        let answer = problem(put(body.clone()).await, 400, "invalid_config").await;
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains(field), "{body}: {detail}");
    }
    problem(
        put(json!({"url": "http://127.0.0.1/x", "surprise": 1})).await,
        400,
        "invalid_body",
    )
    .await;
    // A push cannot take over an ordinary consumer's name, nor be changed as a consumer.
    let consumer = app
        .http
        .put(app.url("/v1/streams/PUSHBAD/consumers/workers"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(consumer.status().as_u16(), 201);
    problem(
        app.http
            .put(app.url("/v1/streams/PUSHBAD/push/workers"))
            .json(&json!({"url": "http://127.0.0.1:9/x"}))
            .send()
            .await
            .unwrap(),
        409,
        "consumer_conflict",
    )
    .await;
    json(put(json!({"url": "http://127.0.0.1:9/x"})).await, 201).await;
    problem(
        app.http
            .put(app.url("/v1/streams/PUSHBAD/consumers/hook"))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        409,
        "consumer_conflict",
    )
    .await;
    problem(
        app.http
            .delete(app.url("/v1/streams/PUSHBAD/consumers/hook"))
            .send()
            .await
            .unwrap(),
        409,
        "consumer_conflict",
    )
    .await;
    let consumer = json(
        app.http
            .get(app.url("/v1/streams/PUSHBAD/consumers/hook"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(consumer["push_subscription"], true, "{consumer}");
    assert!(
        consumer["config"]["metadata"].get("jetway.push").is_none(),
        "{consumer}"
    );
    // jetway's own bucket (definitions and secrets) is not readable through the API.
    problem(
        app.http
            .get(app.url("/v1/kv/jetway_push"))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_name",
    )
    .await;
    problem(
        app.http
            .get(app.url("/v1/streams/KV_jetway_push/messages/1"))
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    let streams = json(
        app.http.get(app.url("/v1/streams")).send().await.unwrap(),
        200,
    )
    .await;
    assert!(!streams.to_string().contains("jetway_push"), "{streams}");
    // Unknown subscriptions and streams.
    for path in [
        "/v1/streams/PUSHBAD/push/nope",
        "/v1/streams/PUSHBAD/push/nope/pause",
    ] {
        let response = if path.ends_with("pause") {
            app.http.post(app.url(path)).send().await.unwrap()
        } else {
            app.http.get(app.url(path)).send().await.unwrap()
        };
        problem(response, 404, "push_not_found").await;
    }
    problem(
        app.http
            .get(app.url("/v1/streams/NOPE/push"))
            .send()
            .await
            .unwrap(),
        404,
        "stream_not_found",
    )
    .await;
    let listed = json(
        app.http
            .get(app.url("/v1/streams/PUSHBAD/push"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(listed["push"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["push"][0]["name"], "hook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_an_allowlist_or_without_http_refuses_every_push() {
    let app = spawn_app_with(|_| {}).await;
    app.create_stream("PUSHNONE", &["none.>"]).await;
    let https = problem(
        app.http
            .put(app.url("/v1/streams/PUSHNONE/push/hook"))
            .json(&json!({"url": "https://hooks.example.com/x"}))
            .send()
            .await
            .unwrap(),
        403,
        "destination_not_allowed",
    )
    .await;
    assert!(
        https["detail"].as_str().unwrap().contains("--push-allow"),
        "{https}"
    );
    let http = problem(
        app.http
            .put(app.url("/v1/streams/PUSHNONE/push/hook"))
            .json(&json!({"url": "http://127.0.0.1/x"}))
            .send()
            .await
            .unwrap(),
        403,
        "destination_not_allowed",
    )
    .await;
    assert!(
        http["detail"]
            .as_str()
            .unwrap()
            .contains("--push-allow-http"),
        "{http}"
    );
}

// ---------------------------------------------------------------------------------------------
// A replica killed with SIGKILL mid-delivery: the other takes over, in order, nothing lost.

struct Replica {
    child: tokio::process::Child,
    base: String,
}

async fn start_replica(server: &NatsServer, log: &std::path::Path) -> Replica {
    let listen = format!("127.0.0.1:{}", free_tcp_port());
    let child = crate::harness::jetway_server_command(log)
        .args(["--listen", &listen, "--no-auth"])
        .env("JETWAY_NATS_URL", server.urls().join(","))
        .env("JETWAY_PUSH_ALLOW", "127.0.0.1")
        .env("JETWAY_PUSH_ALLOW_HTTP", "true")
        .env("JETWAY_ACK_SECRET", "shared-by-both-replicas")
        .env("JETWAY_API_TIMEOUT", "20s")
        .env("JETWAY_PUBLISH_TIMEOUT", "20s")
        .env("JETWAY_ACK_TIMEOUT", "10s")
        .spawn()
        .expect("spawn jetway");
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    eventually(
        "a jetway replica ready",
        Duration::from_secs(30),
        || async {
            let response = http.get(format!("{base}/readyz")).send().await.ok()?;
            (response.status().as_u16() == 200).then_some(())
        },
    )
    .await;
    Replica { child, base }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_delivery_hands_over_in_order_without_loss() {
    // Two gateway processes beside a cluster: no other cluster runs meanwhile.
    let server = NatsServer::cluster_alone().await;
    let logs = tempfile::TempDir::new().unwrap();
    let mut first = start_replica(&server, &logs.path().join("first.log")).await;
    let http = reqwest::Client::new();
    // An R3 stream through the first replica.
    let created = http
        .put(format!("{}/v1/streams/PUSHKILL", first.base))
        .json(&json!({"subjects": ["kill.>"], "replicas": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    // The first delivery of message 4 never gets an answer.
    let mut receiver = Receiver::start(|seq, attempt| match (seq, attempt) {
        (4, 1) => Reply::Hang,
        _ => Reply::Status(200),
    })
    .await;
    put_push(
        &first.base,
        "PUSHKILL",
        "hook",
        json!({"url": receiver.url(), "max_in_flight": 1, "timeout": "2s", "backoff": ["100ms"]}),
        201,
    )
    .await;
    for i in 1..=8 {
        eventually(
            "a publish through the first replica",
            Duration::from_secs(30),
            || async {
                let response = http
                    .post(format!("{}/v1/publish/kill.x", first.base))
                    .header("idempotency-key", format!("kill-{i}"))
                    .body(format!("{i}"))
                    .send()
                    .await
                    .ok()?;
                (response.status().as_u16() == 200).then_some(())
            },
        )
        .await;
    }
    // Only the first replica runs: it has message 4 in hand when the second one starts.
    let hung = tokio::time::timeout(Duration::from_secs(60), receiver.hung.recv())
        .await
        .expect("message 4 delivered")
        .unwrap();
    assert_eq!(hung, 4);
    let second = start_replica(&server, &logs.path().join("second.log")).await;
    first.child.start_kill().expect("SIGKILL the first replica");
    let _ = first.child.wait().await;
    let accepted = receiver.wait_accepted(8).await;
    assert_eq!(
        accepted,
        (1..=8).collect::<Vec<_>>(),
        "in order, nothing lost"
    );
    let deliveries = receiver.deliveries();
    let fours: Vec<u64> = deliveries
        .iter()
        .filter(|d| d.seq == 4)
        .map(|d| d.attempt)
        .collect();
    assert_eq!(
        fours,
        vec![1, 2],
        "message 4 again, from the surviving replica"
    );
    let seen: Vec<u64> = deliveries.iter().map(|d| d.seq).collect();
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(seen, sorted, "{seen:?}");
    assert_eq!(receiver.most_in_flight(), 1);
    // The survivor's view: everything acknowledged.
    let info = eventually("the survivor's status", Duration::from_secs(30), || async {
        let response = http
            .get(format!("{}/v1/streams/PUSHKILL/push/hook", second.base))
            .send()
            .await
            .ok()?;
        let info: Value = response.json().await.ok()?;
        let state = &info["state"];
        let settled = state["lag"] == 0 && state["in_flight"] == 0;
        // The survivor delivered 4 to 8; the killed replica's last counts may be lost.
        (settled && state["acked"].as_u64()? >= 5).then_some(info)
    })
    .await;
    assert_eq!(info["state"]["dead_lettered"], 0, "{info}");
}

// ---------------------------------------------------------------------------------------------
// docs/push.md's receivers, run as printed.

/// The first fenced block of `language` after `heading` in docs/push.md.
fn docs_block(heading: &str, language: &str) -> String {
    let text = std::fs::read_to_string(crate::harness::repo_root().join("docs/push.md")).unwrap();
    let after = &text[text
        .find(heading)
        .unwrap_or_else(|| panic!("docs/push.md: {heading}"))..];
    let open = format!("```{language}\n");
    let start = after.find(&open).expect("the block") + open.len();
    let end = start + after[start..].find("\n```").expect("the block's end");
    after[start..=end].to_owned()
}

/// Runs a receiver of docs/push.md and checks that it accepts jetway's deliveries and refuses a
/// forged one.
async fn docs_receiver_verifies_deliveries(
    program: &str,
    file: &str,
    code: String,
    env: &[(&str, String)],
) {
    let app = spawn_app_with(allow_loopback).await;
    let stream = format!("PUSHDOCS{}", file.replace('.', "").to_uppercase());
    app.create_stream(&stream, &[&format!("{}.>", stream.to_lowercase())])
        .await;
    let dir = tempfile::TempDir::new().unwrap();
    let script = dir.path().join(file);
    std::fs::write(&script, code).unwrap();
    let port = free_tcp_port();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(*b"docs-receiver-secret-32-bytes!!!")
    );
    let mut command = tokio::process::Command::new(program);
    command
        .arg(&script)
        .env("WEBHOOK_SECRET", &secret)
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{program}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut reader = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let url = format!("http://127.0.0.1:{port}/hook");
    let http = reqwest::Client::new();
    // A forged delivery is refused with 400 (the receiver is up once it answers).
    let forged = eventually(
        "the receiver to answer",
        Duration::from_secs(30),
        || async {
            http.post(&url)
                .header("webhook-id", "msg_forged_1")
                .header(
                    "webhook-timestamp",
                    time::OffsetDateTime::now_utc().unix_timestamp().to_string(),
                )
                .header(
                    "webhook-signature",
                    "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                )
                .body("forged")
                .send()
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(
        forged.status().as_u16(),
        400,
        "a forged signature is refused"
    );
    put_push(
        &app.url(""),
        &stream,
        "docs",
        json!({"url": url, "secret": secret}),
        201,
    )
    .await;
    let subject = format!("{}.x", stream.to_lowercase());
    publish_n(&app, &subject, 3).await;
    let printed = eventually(
        "three verified deliveries",
        Duration::from_secs(30),
        || async {
            let lines = lines.lock().unwrap().clone();
            (lines.len() >= 3).then_some(lines)
        },
    )
    .await;
    assert_eq!(
        printed,
        vec![
            format!("msg_{stream}_1 1 {{\"n\":1}}"),
            format!("msg_{stream}_2 2 {{\"n\":2}}"),
            format!("msg_{stream}_3 3 {{\"n\":3}}"),
        ]
    );
    let info = wait_state(&app, &stream, "docs", "three acked", |s| s["acked"] == 3).await;
    assert_eq!(info["state"]["failed"], 0, "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_receiver_of_the_docs_verifies_deliveries() {
    let library = installed_tool("standardwebhooks", "push");
    let code = docs_block("### Verify the signature: Python", "python");
    docs_receiver_verifies_deliveries(
        "python3",
        "receiver.py",
        code,
        &[("PYTHONPATH", library.display().to_string())],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_receiver_of_the_docs_verifies_deliveries() {
    installed_tool("node/node_modules/standardwebhooks", "push");
    let code = docs_block("### Verify the signature: Node.js", "js");
    docs_receiver_verifies_deliveries(
        &crate::node::node_bin().display().to_string(),
        "receiver.js",
        code,
        &[(
            "NODE_PATH",
            crate::harness::repo_root()
                .join(".tools/node/node_modules")
                .display()
                .to_string(),
        )],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Tenants and TLS.

const TENANT_SECRET: &str = "push-tenant-secret";

fn tenant_admin(sub: &str, prefix: Option<&str>) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut grants = json!({"publish": ["orders.>"], "read": ["PUSHTEN"], "admin": true});
    if let Some(prefix) = prefix {
        grants["prefix"] = json!(prefix);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": now + 3600, "jetway": grants}),
        &jsonwebtoken::EncodingKey::from_secret(TENANT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_push_delivers_only_its_namespace_and_is_its_own() {
    let app = spawn_app_with(|config| {
        allow_loopback(config);
        config.no_auth = false;
        config.jwt_secret = vec![TENANT_SECRET.to_owned()];
    })
    .await;
    app.create_stream("PUSHTEN", &["acme.>", "globex.>"]).await;
    let acme = tenant_admin("acme-admin", Some("acme"));
    let globex = tenant_admin("globex-admin", Some("globex"));
    let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
    let created = app
        .http
        .put(app.url("/v1/streams/PUSHTEN/push/acme-hook"))
        .bearer_auth(&acme)
        .json(&json!({"url": receiver.url(), "dead_letter_subject": "orders.dlq"}))
        .send()
        .await
        .unwrap();
    let created = json(created, 201).await;
    assert_eq!(
        created["config"]["dead_letter_subject"], "orders.dlq",
        "{created}"
    );
    let publish = |token: String, subject: &'static str| {
        let request = app
            .http
            .post(app.url(&format!("/v1/publish/{subject}")))
            .bearer_auth(token)
            .body("{}");
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(publish(globex.clone(), "orders.theirs").await, 201);
    assert_eq!(publish(acme.clone(), "orders.ours").await, 201);
    let accepted = receiver.wait_accepted(1).await;
    assert_eq!(accepted, vec![2], "only the tenant's message");
    let delivery = &receiver.deliveries()[0];
    assert_eq!(
        delivery.headers["jetway-subject"], "orders.ours",
        "shown without the prefix"
    );
    // The stored consumer delivers only acme's namespace; the dead-letter subject is inside it.
    let stream = app.js.get_stream("PUSHTEN").await.unwrap();
    let info = stream.consumer_info("acme-hook").await.unwrap();
    assert_eq!(info.config.filter_subject, "acme.>");
    // Another tenant neither sees nor changes it.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/streams/PUSHTEN/push/acme-hook"),
        (
            reqwest::Method::DELETE,
            "/v1/streams/PUSHTEN/push/acme-hook",
        ),
        (
            reqwest::Method::POST,
            "/v1/streams/PUSHTEN/push/acme-hook/pause",
        ),
    ] {
        let response = app
            .http
            .request(method.clone(), app.url(path))
            .bearer_auth(&globex)
            .send()
            .await
            .unwrap();
        problem(response, 403, "forbidden").await;
    }
    let taken = app
        .http
        .put(app.url("/v1/streams/PUSHTEN/push/acme-hook"))
        .bearer_auth(&globex)
        .json(&json!({"url": receiver.url()}))
        .send()
        .await
        .unwrap();
    problem(taken, 403, "forbidden").await;
    let listed = app
        .http
        .get(app.url("/v1/streams/PUSHTEN/push"))
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap();
    assert_eq!(json(listed, 200).await["push"], json!([]));
    // A reader without admin manages nothing.
    let now = jsonwebtoken::get_current_timestamp();
    let reader = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "reader", "exp": now + 3600, "jetway": {"read": ["PUSHTEN"]}}),
        &jsonwebtoken::EncodingKey::from_secret(TENANT_SECRET.as_bytes()),
    )
    .unwrap();
    let listed = app
        .http
        .get(app.url("/v1/streams/PUSHTEN/push"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    problem(listed, 403, "forbidden").await;
}

/// An HTTPS receiver on loopback with `certificate` (chain and key), answering every request
/// 204 and closing; answers its port and a count of the requests it read.
async fn https_receiver(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> (u16, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // The request head, then its body by Content-Length.
                let mut read = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                    if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8_lossy(&read[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while read.len() < head_end + length {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let answer =
                    b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = tls.write_all(answer).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, requests)
}

/// A receiver whose certificate a private CA issued is trusted once `--push-ca` names the CA;
/// a `--push-ca` file that holds no certificate stops the start, naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_certified_by_a_private_ca_is_trusted_with_push_ca() {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "jetway push test CA");
    let ca =
        rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("key"))
            .expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &*ca)
        .expect("leaf");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    let key = rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key");
    let (port, requests) = https_receiver(vec![leaf.der().clone(), ca.der().clone()], key).await;

    let app = spawn_app_with(|config| {
        allow_loopback(config);
        config.push_ca = Some(ca_file.clone());
    })
    .await;
    app.create_stream("PUSHCA", &["ca.>"]).await;
    put_push(
        &app.url(""),
        "PUSHCA",
        "hook",
        json!({"url": format!("https://127.0.0.1:{port}/hook"), "backoff": ["100ms"]}),
        201,
    )
    .await;
    publish_n(&app, "ca.x", 2).await;
    eventually("both messages acked", Duration::from_secs(30), || async {
        (consumer_state(&app, "PUSHCA", "hook").await == (2, 0)).then_some(())
    })
    .await;
    assert_eq!(requests.load(Ordering::SeqCst), 2, "one POST per message");
    let info = wait_state(&app, "PUSHCA", "hook", "the status counts", |s| {
        s["acked"] == 2
    })
    .await;
    assert_eq!(info["state"]["failed"], 0, "{info}");

    // The start refuses a file without a certificate, and a missing one.
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, leaf_key.serialize_pem()).expect("write key");
    for bad in [key_file, dir.path().join("absent.pem")] {
        let mut config = jetway::config::Config::defaults();
        config.nats_url = app.server.urls();
        config.no_auth = true;
        config.push_ca = Some(bad.clone());
        let Err(err) = jetway::build(config).await else {
            panic!("started with --push-ca {bad:?}");
        };
        assert!(err.to_string().contains("--push-ca"), "{bad:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_the_delivery_and_long_answers_are_cut() {
    let app = spawn_app_with(allow_loopback).await;
    app.create_stream("PUSHTLS", &["tls.>"]).await;
    // An HTTPS receiver with a self-signed certificate for 127.0.0.1.
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                if acceptor.accept(tcp).await.is_ok() {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    put_push(
        &app.url(""),
        "PUSHTLS",
        "hook",
        json!({"url": format!("https://127.0.0.1:{port}/hook"), "backoff": ["1h"]}),
        201,
    )
    .await;
    publish_n(&app, "tls.x", 1).await;
    let info = wait_state(&app, "PUSHTLS", "hook", "a failed attempt", |s| {
        s["failed"] == 1
    })
    .await;
    let error = info["state"]["last_error"].as_str().unwrap().to_lowercase();
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "no TLS session was completed"
    );

    // A receiver answering 500 with a megabyte: the error keeps a bounded part of it.
    let big_body = "x".repeat(1024 * 1024);
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let body = big_body.clone();
            async move { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, body) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    put_push(
        &app.url(""),
        "PUSHTLS",
        "big",
        json!({"url": format!("http://{addr}/hook"), "backoff": ["1h"]}),
        201,
    )
    .await;
    let info = wait_state(&app, "PUSHTLS", "big", "a failed attempt", |s| {
        s["failed"] == 1
    })
    .await;
    let error = info["state"]["last_error"].as_str().unwrap();
    assert!(error.starts_with("HTTP 500: xxx"), "{error}");
    assert!(error.len() <= 512, "{} bytes kept", error.len());
}

// ---------------------------------------------------------------------------------------------
// JetStream faults on the R3 cluster.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_push_across_a_consumer_leader_kill_delivers_every_message_in_order() {
    const COUNT: u64 = 40;
    let mut app = spawn_app_on_with(Topology::Cluster, allow_loopback).await;
    app.create_stream("PUSHFAULT", &["fault.>"]).await;
    let receiver = Receiver::start(|_, _| Reply::Slow(Duration::from_millis(10), 200)).await;
    put_push(
        &app.url(""),
        "PUSHFAULT",
        "hook",
        json!({"url": receiver.url(), "max_in_flight": 1, "timeout": "2s", "backoff": ["100ms"]}),
        201,
    )
    .await;
    publish_n(&app, "fault.x", COUNT).await;
    receiver.wait_accepted(10).await;
    let leader = app.consumer_leader("PUSHFAULT", "hook").await;
    app.server.kill_node(leader);
    let accepted = eventually(
        "every message accepted",
        Duration::from_secs(90),
        || async {
            let mut accepted = receiver.accepted();
            accepted.dedup();
            (accepted.len() >= COUNT as usize).then_some(accepted)
        },
    )
    .await;
    assert_eq!(
        accepted,
        (1..=COUNT).collect::<Vec<_>>(),
        "in order, nothing lost"
    );
    let seen: Vec<u64> = receiver.deliveries().iter().map(|d| d.seq).collect();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "a message overtook another: {seen:?}"
    );
    assert_eq!(receiver.most_in_flight(), 1);
    eprintln!(
        "ordered push across a kill of consumer leader n{leader}: {} deliveries for {COUNT} messages",
        seen.len()
    );
}
