//! A real browser (Debian's headless chromium, driven by playwright-core through
//! `tests/browser/replay.mjs`) opens the console page and replays a stream over WebSocket from
//! it: the frames a browser really gets, under the console's Content-Security-Policy.
//! Needs `scripts/install-tools.sh browser` (make test runs it).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{json, spawn_app};
use crate::node;

const SCRIPT: &str = "tests/browser/replay.mjs";

#[tokio::test]
async fn browser_on_the_console_page_replays_a_stream_over_websocket_until_caught_up() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    for n in 1..=5 {
        let body = json!({ "order_id": n }).to_string();
        let response = app
            .publish("orders.new", body, &[("content-type", "application/json")])
            .await;
        json(response, 201).await;
    }

    let base = app.url("");
    let output = node::run(
        SCRIPT,
        &[
            "--base",
            &base,
            "--stream",
            "ORDERS",
            "--query",
            "start_seq=1",
        ],
        Duration::from_secs(90),
    )
    .await;
    let report = node::stdout_json(SCRIPT, &output);
    assert!(
        report["missing"] != true,
        "{}: run scripts/install-tools.sh browser (make test does)",
        report["error"]
    );

    assert_eq!(report["console"]["status"], 200, "report: {report:#}");
    let csp = report["console"]["csp"].as_str().unwrap_or_default();
    assert!(
        csp.contains("connect-src 'self'"),
        "the console's CSP changed ({csp}); this test checks a WebSocket under connect-src 'self'"
    );
    assert_eq!(
        report["csp_violations"],
        json!([]),
        "the console's CSP blocked the WebSocket: {report:#}"
    );
    assert_eq!(report["caught_up"], true, "report: {report:#}");
    let frames = report["frames"].as_array().unwrap();
    let (caught_up, messages) = frames.split_last().unwrap();
    assert_eq!(caught_up, &json!({"type": "caught_up", "seq": 5}));
    assert_eq!(messages.len(), 5, "frames: {frames:#?}");
    for (n, frame) in (1..=5u64).zip(messages) {
        assert_eq!(frame["type"], "msg", "{frame}");
        assert_eq!(frame["stream"], "ORDERS", "{frame}");
        assert_eq!(frame["subject"], "orders.new", "{frame}");
        assert_eq!(frame["seq"], n, "messages out of order: {frames:#?}");
        assert_eq!(frame["encoding"], "json", "{frame}");
        assert_eq!(frame["data"], json!({ "order_id": n }), "{frame}");
        assert!(
            frame.get("sub").is_none(),
            "single-stream frames carry no sub: {frame}"
        );
        assert!(frame.get("ack_id").is_none(), "no ack mode here: {frame}");
        assert!(
            frame["time"].as_str().is_some_and(|t| !t.is_empty()),
            "{frame}"
        );
    }
    let complaints: Vec<&Value> = report["console_messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            let text = m.as_str().unwrap_or_default();
            text.contains("Content Security Policy") || text.contains("WebSocket")
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "the browser complained about the socket: {complaints:#?}"
    );
}
