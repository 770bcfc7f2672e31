//! The operator console (`web/`, served at `/` and `/console/{file}`).
//!
//! - Without a browser: every file is served with its content type, a validator and a strict
//!   Content-Security-Policy, and every file the page and its modules reference is served.
//! - In a real browser (Debian's headless chromium driven by playwright-core through
//!   `tests/browser/console.mjs`), one scenario per test: creating, editing and deleting
//!   streams; publishing through the form into the live tail; exact replay ranges; the gap
//!   after a purge; consumer lag after a fetch and acks through the API; push subscriptions
//!   shown, paused, resumed and deleted; authentication with a pasted token; thousands of
//!   messages a second. Each test arranges JetStream directly, asserts on what the page showed
//!   and on what JetStream stored, and fails on any console error, uncaught exception, failed
//!   request or page wider than a phone.
//!
//! Screenshots of every page at 1280 and 390 px wide land in `target/console-screenshots/`
//! (git-ignored). Needs `scripts/install-tools.sh browser` (make test runs it).

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use crate::harness::{TestApp, eventually, json, spawn_app, spawn_app_with};
use crate::node;

const SCRIPT: &str = "tests/browser/console.mjs";
/// Items the live tail keeps to scroll back through (`KEPT` in `web/tail.js`).
const KEPT: u64 = 1000;
/// Rows the tail's virtual view may have in the DOM: what fits on screen, plus a few.
const MAX_DOM_ROWS: u64 = 64;
const SECRET: &str = "jetway-console-tests-hmac-secret-0123456789";

/// One chromium at a time: the machines that run the suite have few cores, and several
/// browsers at once make every deadline in the scripts tighter.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn screenshot_dir() -> PathBuf {
    node::repo().join("target/console-screenshots")
}

/// Runs a scenario of `tests/browser/console.mjs` against `app` and answers its report, after
/// checking that it ran to its end and that the page had nothing to complain about. `allowed`
/// says which console errors a scenario expects (the browser logs every 4xx answer).
async fn scenario(app: &TestApp, name: &str, extra: &[&str], allowed: fn(&str) -> bool) -> Value {
    let _one_browser = BROWSER.lock().await;
    let base = app.url("");
    let dir = screenshot_dir();
    let dir = dir.to_string_lossy();
    let mut args = vec!["--base", &base, "--scenario", name, "--screenshots", &dir];
    args.extend_from_slice(extra);
    let output = node::run(SCRIPT, &args, Duration::from_secs(240)).await;
    let report = node::stdout_json(SCRIPT, &output);
    assert!(
        report["missing"] != true,
        "{}: run scripts/install-tools.sh browser (make test does)",
        report["error"]
    );
    assert_eq!(
        report["ok"],
        true,
        "scenario {name} failed at {}\nstderr: {}\nreport: {report:#}",
        report["error"],
        String::from_utf8_lossy(&output.stderr)
    );
    let errors: Vec<&str> = strings(&report["console_errors"])
        .into_iter()
        .filter(|e| !allowed(e))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    for key in [
        "page_errors",
        "console_warnings",
        "failed_requests",
        "overflow",
    ] {
        assert_eq!(report[key], json!([]), "{key}: {report:#}");
    }
    // State-changing calls say they carry JSON, so the gateway can tell them from form posts.
    for request in report["v1_requests"].as_array().unwrap() {
        if request["method"] != "GET" {
            let content_type = request["content_type"].as_str().unwrap_or_default();
            assert!(
                content_type.starts_with("application/json"),
                "a state-changing request without a JSON content type: {request}"
            );
        }
    }
    assert!(
        !strings(&report["screenshots"]).is_empty(),
        "no screenshots: {report:#}"
    );
    report
}

fn no_errors(_: &str) -> bool {
    false
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn seqs(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list of sequences: {value}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

async fn publish_json(app: &TestApp, subject: &str, body: Value) -> u64 {
    let response = app
        .publish(
            subject,
            body.to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    json(response, 201).await["seq"].as_u64().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Served files

#[tokio::test]
async fn console_files_are_served_with_content_types_validators_and_a_strict_policy() {
    let app = spawn_app().await;

    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(!csp.contains("unsafe-eval"), "{csp}");
    let host = app.addr.to_string();
    assert!(
        csp.contains(&format!("connect-src 'self' ws://{host} wss://{host}")),
        "{csp}"
    );
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>"), "inline script in the page");
    assert!(!html.contains("<style"), "inline style in the page");
    assert!(
        !html.contains("style="),
        "inline style attribute in the page"
    );

    // Every file the page and its modules reference is served, with its type and a validator
    // that answers 304 when unchanged.
    let mut pending = references(&html);
    let mut served = Vec::new();
    while let Some(path) = pending.pop() {
        if served.contains(&path) {
            continue;
        }
        let response = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let headers = response.headers().clone();
        let content_type = headers["content-type"].to_str().unwrap().to_owned();
        let expected = if path.ends_with(".css") {
            "text/css; charset=utf-8"
        } else {
            "text/javascript; charset=utf-8"
        };
        assert_eq!(content_type, expected, "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let etag = headers["etag"].to_str().unwrap().to_owned();
        let again = app
            .http
            .get(app.url(&path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status().as_u16(), 304, "{path} with If-None-Match");
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("innerHTML"),
            "{path} writes HTML from strings"
        );
        if path.ends_with(".js") {
            pending.extend(references(&body));
        }
        served.push(path);
    }
    assert!(
        served.len() >= 3,
        "the page references too little: {served:?}"
    );

    let missing = app
        .http
        .get(app.url("/console/nothing.js"))
        .send()
        .await
        .unwrap();
    crate::harness::problem(missing, 404, "route_not_found").await;
}

/// `/console/…` paths named by `src=`/`href=` attributes and `from "./x.js"` imports.
fn references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for marker in ["src=\"", "href=\"", "from \"./"] {
        for (at, _) in text.match_indices(marker) {
            let rest = &text[at + marker.len()..];
            let Some(end) = rest.find('"') else { continue };
            let target = &rest[..end];
            if marker.starts_with("from") {
                out.push(format!("/console/{target}"));
            } else if target.starts_with("/console/") {
                out.push(target.to_owned());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// In the browser

#[tokio::test]
async fn streams_are_created_edited_and_deleted_through_the_console() {
    let app = spawn_app().await;
    app.create_stream("TEMP", &["temp.>"]).await;

    let report = scenario(&app, "streams", &[], no_errors).await;

    let seen = &report["observed"];
    assert_eq!(
        seen["edit_form"],
        json!({"name_disabled": true, "max_age": "24h", "max_bytes": "1048576", "dup_window": "5m"}),
        "the edit form shows what the create form stored: {report:#}"
    );
    assert_eq!(seen["confirm_disabled_before_typing"], true);
    assert_eq!(seen["confirm_disabled_when_mistyped"], true);
    assert_eq!(seen["rows"], json!(["AUDIT"]), "{report:#}");
    assert_ne!(
        seen["colours"]["light"], seen["colours"]["dark"],
        "prefers-color-scheme: dark changes the page's colours"
    );

    let mut audit = app.js.get_stream("AUDIT").await.expect("AUDIT was created");
    let config = audit.info().await.unwrap().config.clone();
    assert_eq!(config.subjects, vec!["audit.>".to_owned()]);
    assert_eq!(config.description.as_deref(), Some("Audit trail"));
    assert_eq!(config.max_age, Duration::from_secs(24 * 3600));
    assert_eq!(config.duplicate_window, Duration::from_secs(300));
    assert_eq!(config.max_bytes, 1024 * 1024);
    assert_eq!(config.max_messages, 1000, "the edit was applied");
    assert!(app.js.get_stream("TEMP").await.is_err(), "TEMP was deleted");
}

#[tokio::test]
async fn a_message_published_through_the_form_arrives_in_the_live_tail_and_is_inspected() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish_json(&app, "orders.new", json!({"order_id": 1})).await;
    let text = app
        .publish(
            "orders.note",
            "hello world",
            &[("content-type", "text/plain")],
        )
        .await;
    json(text, 201).await;
    let binary = app
        .publish(
            "orders.raw",
            vec![0x00u8, 0xff, 0x10, 0x80, b'A'],
            &[("content-type", "application/octet-stream")],
        )
        .await;
    json(binary, 201).await;

    let report = scenario(&app, "tail", &[], no_errors).await;
    let seen = &report["observed"];

    assert_eq!(seqs(&seen["initial_rows"]), [1, 2, 3]);
    assert_eq!(seen["inspect_json"]["kind"], "json");
    assert_eq!(seen["inspect_json"]["payload"], "{\n  \"order_id\": 1\n}");
    assert_eq!(seen["inspect_text"]["kind"], "text");
    assert_eq!(seen["inspect_text"]["payload"], "hello world");
    assert_eq!(seen["inspect_binary"]["kind"], "hex");
    assert_eq!(
        seen["inspect_binary"]["payload"],
        format!("00000000  {:<47}  ....A", "00 ff 10 80 41")
    );

    assert_eq!(seen["published"]["seq"], 4, "{report:#}");
    assert_eq!(seen["published"]["duplicate"], false);
    let published = &seen["inspect_published"];
    assert_eq!(published["title"], "Message #4");
    assert_eq!(published["headers"]["Order-Type"], "express");
    assert_eq!(published["headers"]["Nats-Msg-Id"], "order-42");
    assert_eq!(published["headers"]["Content-Type"], "application/json");
    assert_eq!(
        published["payload"],
        "{\n  \"order_id\": 42,\n  \"items\": [\n    1,\n    2\n  ]\n}"
    );
    assert_eq!(seen["republished"]["seq"], 4);
    assert_eq!(seen["republished"]["duplicate"], true);

    // Paused: the message waited in the page, not on screen, until resumed.
    assert_eq!(seen["paused_publish"]["seq"], 5);
    assert_eq!(seen["paused_rows_has_new"], false);
    assert!(
        seen["paused_text"]
            .as_str()
            .unwrap()
            .contains("1 message waiting"),
        "{report:#}"
    );
    assert_eq!(seen["resumed_state"], "live");

    // problem+json shown as title and detail.
    assert_eq!(seen["error"]["problem"], true);
    assert_eq!(
        seen["error"]["title"],
        "404 Subject not captured by any stream"
    );
    assert!(
        seen["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("nowhere.else"),
        "{report:#}"
    );
    assert_eq!(seen["keyboard_inspected"], "Message #2");
    assert_eq!(seen["unlabelled"], json!([]), "inputs without a label");
    assert_eq!(seen["publish_page"]["seq"], 6);

    // Copy as curl: the command publishes the same message again (same key: a duplicate).
    let curl = seen["curl"].as_str().unwrap();
    assert_eq!(seen["curl_shown"], curl);
    assert!(curl.contains("/v1/publish/orders.new"), "{curl}");
    assert!(curl.contains("X-Msg-Order-Type: express"), "{curl}");
    assert!(curl.contains("Idempotency-Key: order-42"), "{curl}");
    let run = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{curl} -s"))
        .output()
        .await
        .expect("run the copied curl command");
    let answer: Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&run.stdout)));
    assert_eq!(
        answer,
        json!({"stream": "ORDERS", "seq": 4, "duplicate": true})
    );

    let stored = app.stored("ORDERS").await;
    assert_eq!(stored.len(), 6, "the duplicate stored nothing");
    let fourth = &stored[3];
    assert_eq!(fourth.sequence, 4);
    assert_eq!(fourth.subject.as_str(), "orders.new");
    assert_eq!(&fourth.payload[..], br#"{"order_id": 42, "items": [1, 2]}"#);
    let headers = &fourth.headers;
    assert_eq!(
        headers.get("Order-Type").map(|v| v.as_str()),
        Some("express")
    );
    assert_eq!(
        headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some("order-42")
    );
}

#[tokio::test]
async fn a_replay_from_a_sequence_shows_exactly_the_requested_range() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    for n in 1..=30u64 {
        let subject = if n % 2 == 1 { "orders.a" } else { "orders.b" };
        assert_eq!(publish_json(&app, subject, json!({ "n": n })).await, n);
    }

    let report = scenario(&app, "replay", &[], no_errors).await;
    let seen = &report["observed"];

    assert_eq!(seqs(&seen["from_seq"]), (11..=30).collect::<Vec<_>>());
    assert!(
        strings(&seen["from_seq_markers"])
            .iter()
            .any(|m| m.starts_with("Caught up at #30")),
        "{report:#}"
    );
    assert_eq!(
        seqs(&seen["filtered"]),
        (11..=30).filter(|n| n % 2 == 0).collect::<Vec<_>>()
    );
    assert!(
        strings(&seen["filtered_subjects"])
            .iter()
            .all(|s| *s == "orders.b")
    );
    assert_eq!(seqs(&seen["from_time"]), (1..=30).collect::<Vec<_>>());
    assert_eq!(seqs(&seen["last"]), [30]);
    assert_eq!(seqs(&seen["new_before"]), Vec::<u64>::new());
    assert_eq!(seen["new_published"], 31);
    assert_eq!(seqs(&seen["new_after"]), [31]);
    assert_eq!(seqs(&seen["all"]), (1..=31).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_gap_after_a_purge_is_shown_plainly() {
    let app = spawn_app().await;
    let stream = app.create_stream("ORDERS", &["orders.>"]).await;
    for n in 1..=10 {
        publish_json(&app, "orders.new", json!({ "n": n })).await;
    }
    stream.delete_message(8).await.unwrap();

    let report = scenario(&app, "gap", &[], no_errors).await;
    let seen = &report["observed"];

    assert_eq!(seqs(&seen["rows"]), [6, 7, 9, 10], "{report:#}");
    let gaps: Vec<(u64, u64)> = seen["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["from"].as_u64().unwrap(), g["to"].as_u64().unwrap()))
        .collect();
    assert_eq!(gaps, [(1, 5), (8, 8)], "{report:#}");
    assert_eq!(
        seen["gap_rows"],
        json!([{"from": 1, "to": 5}, {"from": 8, "to": 8}])
    );
    assert_eq!(seen["gaps_visible"], true);
    assert!(
        seen["gaps"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Gap #1–#5: 5 messages will never be delivered"),
        "{report:#}"
    );
    assert!(
        seen["gaps"][1]["text"]
            .as_str()
            .unwrap()
            .starts_with("Gap #8: 1 message will never be delivered"),
        "{report:#}"
    );

    let mut stream = app.js.get_stream("ORDERS").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    assert_eq!(state.first_sequence, 6, "the purge through the console");
    assert_eq!(state.messages, 4);
}

#[tokio::test]
async fn consumer_lag_follows_a_fetch_and_acks_through_the_api() {
    let app = spawn_app().await;
    let stream = app.create_stream("ORDERS", &["orders.>"]).await;
    for n in 1..=10 {
        publish_json(&app, "orders.new", json!({ "n": n })).await;
    }
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("spare".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();

    let report = scenario(&app, "consumers", &[], no_errors).await;
    let seen = &report["observed"];

    assert_eq!(seen["before"]["lag"], 10, "{report:#}");
    assert_eq!(seen["before"]["ack_pending"], "0");
    assert_eq!(seqs(&seen["fetched"]), [1, 2, 3, 4]);
    assert_eq!(seen["after_fetch"]["lag"], 6);
    assert_eq!(seen["after_fetch"]["ack_pending"], "4");
    assert_eq!(seen["ack_statuses"], json!([200, 200, 200, 200]));
    assert_eq!(seen["after_ack"]["lag"], 6);
    assert_eq!(seen["after_ack"]["ack_pending"], "0");
    assert_eq!(seen["after_ack"]["ack_floor"], "#4");
    assert!(
        seen["after_ack"]["lag_points"].as_u64().unwrap() >= 2,
        "the lag sparkline has a line: {report:#}"
    );
    assert_eq!(seen["edit_name_disabled"], true);
    assert_eq!(seen["rows"], json!(["workers"]));
    assert!(
        seen["ephemeral_note"]
            .as_str()
            .unwrap()
            .contains("this page's tail"),
        "the tail's own ordered consumer is counted, not listed: {report:#}"
    );

    let stream = app.js.get_stream("ORDERS").await.unwrap();
    let mut workers: jetstream::consumer::PullConsumer = stream
        .get_consumer("workers")
        .await
        .expect("workers was created through the console");
    let info = workers.info().await.unwrap();
    assert_eq!(info.config.description.as_deref(), Some("Order workers"));
    assert_eq!(info.config.ack_wait, Duration::from_secs(30));
    assert_eq!(info.config.max_ack_pending, 50, "the edit was applied");
    assert_eq!(info.ack_floor.stream_sequence, 4);
    assert_eq!(info.num_pending, 6);
    assert!(
        stream.consumer_info("spare").await.is_err(),
        "spare was deleted"
    );
}

/// The endpoint of the push test: accepts #1 and #3, refuses #2 as a client error, and answers
/// every later message with a 500 and a long explanation (for `last_error`).
async fn billing_receiver() -> String {
    async fn receive(headers: axum::http::HeaderMap) -> (axum::http::StatusCode, String) {
        let seq = headers
            .get("jetway-seq")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default();
        match seq {
            1 | 3 => (axum::http::StatusCode::OK, String::new()),
            2 => (
                axum::http::StatusCode::BAD_REQUEST,
                "unknown order".to_owned(),
            ),
            _ => (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "billing is down: {}",
                    "the ledger database does not answer; ".repeat(4)
                ),
            ),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().fallback(receive);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}/billing")
}

async fn put_push(app: &TestApp, name: &str, body: Value) {
    let response = app
        .http
        .put(app.url(&format!("/v1/streams/ORDERS/push/{name}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    json(response, 201).await;
}

async fn push_state(app: &TestApp, name: &str) -> Value {
    let response = app
        .http
        .get(app.url(&format!("/v1/streams/ORDERS/push/{name}")))
        .send()
        .await
        .unwrap();
    json(response, 200).await["state"].clone()
}

async fn consumer_paused(app: &TestApp, name: &str) -> bool {
    let stream = app.js.get_stream("ORDERS").await.unwrap();
    stream.consumer_info(name).await.unwrap().paused
}

#[tokio::test]
async fn push_subscriptions_are_shown_paused_resumed_and_deleted_through_the_console() {
    let app = spawn_app_with(|c| {
        c.push_allow = vec!["127.0.0.1".to_owned()];
        c.push_allow_http = true;
    })
    .await;
    let stream = app.create_stream("ORDERS", &["orders.>"]).await;
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("workers".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    for n in 1..=5 {
        publish_json(&app, "orders.new", json!({ "n": n })).await;
    }
    let url = billing_receiver().await;
    // #1 accepted, #2 dead-lettered at once (a 400), #3 accepted, #4 failed and waiting an hour
    // for its retry (holding back #5): a state that stays put while the page reads it.
    put_push(
        &app,
        "hook",
        json!({
            "url": url,
            "description": "Orders to billing",
            "backoff": ["1h"],
            "dead_letter_on_client_error": true,
        }),
    )
    .await;
    put_push(
        &app,
        "side",
        json!({"url": url, "filter_subjects": ["orders.none"]}),
    )
    .await;
    put_push(
        &app,
        "orphan",
        json!({"url": url, "filter_subjects": ["orders.none"]}),
    )
    .await;
    // Its consumer deleted behind jetway's back: the subscription has a problem.
    stream.delete_consumer("orphan").await.unwrap();
    let state = eventually(
        "hook to settle with #4 waiting for its retry",
        Duration::from_secs(60),
        || async {
            let state = push_state(&app, "hook").await;
            (state["acked"] == 2
                && state["dead_lettered"] == 1
                && state["consecutive_failures"] == 1
                && state["last_status"] == 500
                && state["in_flight"] == 1
                && state["lag"] == 1)
                .then_some(state)
        },
    )
    .await;
    let last_error = state["last_error"].as_str().unwrap().to_owned();
    assert!(
        last_error.starts_with("HTTP 500: billing is down: the ledger"),
        "{state}"
    );

    // Pause: the row, then what JetStream holds.
    let report = scenario(&app, "push", &["--phase", "pause"], no_errors).await;
    let seen = &report["observed"];
    assert_eq!(
        seen["rows"],
        json!(["hook", "orphan", "side"]),
        "{report:#}"
    );
    let hook = &seen["hook"];
    assert_eq!(hook["name"], "hook");
    assert_eq!(hook["description"], "Orders to billing");
    assert_eq!(hook["url"], url);
    assert_eq!(hook["state"], "active", "{report:#}");
    for key in [
        "lag",
        "in_flight",
        "acked",
        "failed",
        "dead_lettered",
        "consecutive_failures",
    ] {
        assert_eq!(hook[key], state[key], "{key}: {report:#}");
    }
    assert_eq!(hook["consecutive_highlighted"], true);
    assert_eq!(hook["last_status"], "500");
    assert_eq!(
        hook["last_error_title"],
        last_error.as_str(),
        "full text in the title"
    );
    let shown = hook["last_error"].as_str().unwrap();
    assert!(
        shown.ends_with('…') && shown.chars().count() == 81,
        "the error is cut: {shown}"
    );
    assert!(last_error.starts_with(shown.trim_end_matches('…')));
    assert!(
        hook["last_success"]
            .as_str()
            .unwrap()
            .starts_with(&state["last_success_at"].as_str().unwrap()[..19].replace('T', " ")),
        "{report:#}"
    );
    assert_eq!(hook["pause_label"], "Pause push subscription hook");
    let orphan = &seen["orphan"];
    assert_eq!(orphan["state"], "problem", "{report:#}");
    assert!(
        orphan["problem"]
            .as_str()
            .unwrap()
            .contains("nothing is delivered"),
        "{report:#}"
    );
    assert_eq!(orphan["pause_disabled"], true);
    assert_eq!(orphan["last_status"], Value::Null, "never attempted");
    assert_eq!(
        seen["consumers"],
        json!({
            "hook": {"push_badge": "push", "edit": false, "delete": true},
            "side": {"push_badge": "push", "edit": false, "delete": true},
            "workers": {"push_badge": null, "edit": true, "delete": true},
        }),
        "push consumers are marked and cannot be edited: {report:#}"
    );
    assert!(
        seen["hint"]
            .as_str()
            .unwrap()
            .contains("PUT /v1/streams/ORDERS/push/{name}")
    );
    assert_eq!(seen["paused"]["state"], "paused");
    assert_eq!(
        seen["paused"]["pause_label"],
        "Resume push subscription hook"
    );
    assert_eq!(seen["api_paused"], true);
    assert!(consumer_paused(&app, "hook").await, "JetStream paused it");
    assert_eq!(push_state(&app, "hook").await["paused"], true);

    // Resume.
    let report = scenario(&app, "push", &["--phase", "resume"], no_errors).await;
    let seen = &report["observed"];
    assert_eq!(seen["before"]["state"], "paused", "{report:#}");
    assert_eq!(seen["after"]["state"], "active");
    assert_eq!(seen["after"]["pause_label"], "Pause push subscription hook");
    assert!(!consumer_paused(&app, "hook").await, "JetStream resumed it");
    assert_eq!(push_state(&app, "hook").await["paused"], false);

    // Delete: hook from its row, side from the consumers table, orphan from its row.
    let report = scenario(&app, "push", &["--phase", "delete"], no_errors).await;
    let seen = &report["observed"];
    for name in ["hook", "side", "orphan"] {
        let dialog = &seen[name];
        assert_eq!(
            dialog["title"],
            format!("Delete push subscription {name}"),
            "{report:#}"
        );
        assert_eq!(dialog["disabled_before_typing"], true);
        assert_eq!(dialog["disabled_when_mistyped"], true);
    }
    assert_eq!(
        seen["empty"],
        json!({"text": "No push subscriptions.", "table_hidden": true})
    );
    assert_eq!(seen["consumer_rows"], json!(["workers"]), "{report:#}");

    for name in ["hook", "side", "orphan"] {
        let response = app
            .http
            .get(app.url(&format!("/v1/streams/ORDERS/push/{name}")))
            .send()
            .await
            .unwrap();
        crate::harness::problem(response, 404, "push_not_found").await;
    }
    let listed = app
        .http
        .get(app.url("/v1/streams/ORDERS/push"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(listed, 200).await, json!({"push": []}));
    let stream = app.js.get_stream("ORDERS").await.unwrap();
    for name in ["hook", "side"] {
        assert!(
            stream.consumer_info(name).await.is_err(),
            "{name}'s consumer was deleted"
        );
    }
    assert!(stream.consumer_info("workers").await.is_ok());
    assert_eq!(app.stored("ORDERS").await.len(), 5, "the messages stay");
}

fn token(sub: &str, grants: Value) -> String {
    let claims = json!({
        "sub": sub,
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
        "jetway": grants,
    });
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Chromium logs every 4xx answer; the auth scenario expects the 401s before a token is given
/// and after it is forgotten, and the read-only token's 403 on the push subscriptions list.
fn unauthorized(error: &str) -> bool {
    error.starts_with("Failed to load resource: the server responded with a status of 401")
        || forbidden_push_list(error)
}

fn forbidden_push_list(error: &str) -> bool {
    error.starts_with("Failed to load resource: the server responded with a status of 403")
        && error.ends_with("/v1/streams/ORDERS/push)")
}

#[tokio::test]
async fn with_auth_on_the_console_uses_a_pasted_token_and_never_puts_it_in_a_url() {
    let app = spawn_app_with(|c| {
        c.no_auth = false;
        c.jwt_secret = vec![SECRET.to_owned()];
    })
    .await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    for n in 1..=2 {
        app.js
            .publish("orders.new", json!({ "n": n }).to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let admin = token(
        "console-admin",
        json!({"admin": true, "read": ["*"], "publish": [">"]}),
    );
    let reader = token("console-reader", json!({"read": ["ORDERS"]}));

    let report = scenario(
        &app,
        "auth",
        &["--token", &admin, "--readonly-token", &reader],
        unauthorized,
    )
    .await;
    let seen = &report["observed"];

    let title = seen["unauthorized"]["title"].as_str().unwrap();
    assert!(title.starts_with("401"), "{report:#}");
    assert_eq!(seen["unauthorized"]["focused"], "token-input");
    assert!(
        seen["token_info"]
            .as_str()
            .unwrap()
            .starts_with("Token of console-reader"),
        "{report:#}"
    );
    assert_eq!(seqs(&seen["readonly_rows"]), [1, 2]);
    assert_eq!(
        seen["push_forbidden"],
        json!({
            "text": "Push subscriptions are listed for tokens with the admin claim only.",
            "problem": false,
        }),
        "a note, not an error: {report:#}"
    );
    assert_eq!(seen["forbidden"]["problem"], true);
    assert!(
        seen["forbidden"]["title"]
            .as_str()
            .unwrap()
            .starts_with("403"),
        "{report:#}"
    );
    assert_eq!(seen["published"]["seq"], 3);
    assert_eq!(seqs(&seen["rows"]), [1, 2, 3]);
    assert_eq!(seen["session_token_is_admin"], true);
    assert_eq!(seen["local_storage_keys"], json!([]));
    assert!(
        seen["after_forget"]["title"]
            .as_str()
            .unwrap()
            .starts_with("401")
    );
    assert_eq!(seen["after_forget"]["session"], Value::Null);

    // Never in a URL, and on every API call once given.
    assert_eq!(report["token_in_urls"], json!([]), "{report:#}");
    assert!(!seen["page_url"].as_str().unwrap().contains(&admin));
    let sockets = strings(&report["ws_urls"]);
    assert!(!sockets.is_empty(), "the tail opened no WebSocket");
    assert!(
        sockets.iter().all(|u| !u.contains("access_token")),
        "{sockets:?}"
    );
    // Without a token only before it was given and after it was forgotten, and only reads.
    let requests = report["v1_requests"].as_array().unwrap();
    let with_token = |r: &&Value| !r["authorization"].is_null();
    let first = requests.iter().position(|r| with_token(&r)).unwrap();
    let last = requests.iter().rposition(|r| with_token(&r)).unwrap();
    assert!(
        requests[first..=last].iter().all(|r| with_token(&r)),
        "a call without the token while one was set: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .filter(|r| !with_token(r))
            .all(|r| r["method"] == "GET"),
        "{requests:#?}"
    );
    let errors = strings(&report["console_errors"]);
    let unauthorized_errors = errors.iter().filter(|e| !forbidden_push_list(e)).count();
    assert!(
        (1..=4).contains(&unauthorized_errors),
        "the console keeps asking without a token: {report:#}"
    );
    assert_eq!(
        errors.iter().filter(|e| forbidden_push_list(e)).count(),
        1,
        "push subscriptions are asked for once without admin: {report:#}"
    );

    let stored = app.stored("ORDERS").await;
    assert_eq!(stored.len(), 3, "the reader's publish was refused");
    assert_eq!(&stored[2].payload[..], br#"{"order_id": 8}"#);
}

#[tokio::test]
async fn the_live_tail_keeps_up_with_thousands_of_messages_a_second() {
    const BACKLOG: u64 = 20_000;
    const LIVE: u64 = 20_000;
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let mut acks = Vec::new();
    for n in 0..BACKLOG {
        let ack = app
            .js
            .publish("orders.backlog", json!({ "n": n }).to_string().into())
            .await
            .unwrap();
        acks.push(ack);
        if acks.len() == 1000 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }

    let backlog = BACKLOG.to_string();
    let live = LIVE.to_string();
    let report = scenario(
        &app,
        "throughput",
        &["--backlog", &backlog, "--live", &live],
        no_errors,
    )
    .await;
    let seen = &report["observed"];
    eprintln!(
        "live tail: replay {} ; live {}",
        seen["replay"], seen["live"]
    );

    assert_eq!(seen["replay"]["received"], BACKLOG, "{report:#}");
    assert_eq!(seen["replay_last_row"], BACKLOG);
    assert_eq!(seen["replay"]["kept"], KEPT);
    assert!(seen["replay"]["rows_in_dom"].as_u64().unwrap() <= MAX_DOM_ROWS);
    assert_eq!(seen["received"], BACKLOG + LIVE, "{report:#}");
    assert_eq!(seen["last_row"], BACKLOG + LIVE);
    assert_eq!(seen["kept"], KEPT);
    assert_eq!(
        seen["rows_kept"], KEPT,
        "long after caught_up, every kept item is a message"
    );
    assert_eq!(seen["rows_in_order"], true, "kept messages skip none");
    assert!(seen["live"]["rows_in_dom"].as_u64().unwrap() <= MAX_DOM_ROWS);

    // Smooth: a batch of messages costs the page a few milliseconds, well inside one frame
    // (16 ms), however many messages it holds; and the tail is not starved (a floor far below
    // what it does, a few thousand a second even on a busy debug build).
    for phase in ["replay", "live"] {
        let mean = seen[phase]["render"]["mean_ms"].as_f64().unwrap();
        assert!(
            mean < 16.0,
            "{phase}: a batch took {mean} ms on average: {report:#}"
        );
    }
    let replayed = seen["replay"]["per_second"].as_u64().unwrap();
    assert!(
        replayed >= 500,
        "replay at {replayed} messages/s: {report:#}"
    );
}
