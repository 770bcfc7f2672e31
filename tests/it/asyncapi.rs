//! `openapi/asyncapi.yaml` against the server's own types: the AsyncAPI parser accepts the
//! document, its frame `type`s and client `op`s are exactly [`SERVER_FRAME_TYPES`] and
//! [`CLIENT_OPS`], every frame and op the Rust types produce validates against the document's
//! payload schemas (no undeclared field either), and every example in the document parses into
//! the Rust types and serialises back unchanged. `tests/asyncapi/validate.mjs` does the
//! JavaScript half; it needs `scripts/install-tools.sh asyncapi` (make test runs it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::Duration;

use jetway::error::ApiError;
use jetway::message::{Encoding, Message};
use jetway::nats::consumers::AckAction;
use jetway::ops::subscribe::Subscription;
use jetway::ws::protocol::{
    CLIENT_OPS, ClientOp, ReplayFrom, SERVER_FRAME_TYPES, ServerFrame, WsEncoding,
};
use serde_json::{Value, json};

use crate::node;

const SCRIPT: &str = "tests/asyncapi/validate.mjs";

/// A message as a replay delivers it, in ack mode or not.
fn message(seq: u64, data: Value, encoding: Encoding, ack_mode: bool) -> Message {
    Message {
        stream: "ORDERS".to_owned(),
        subject: "orders.new".to_owned(),
        seq,
        time: "2026-11-26T09:00:00.123456789Z".to_owned(),
        headers: BTreeMap::from([("Content-Type".to_owned(), "application/json".to_owned())]),
        data,
        encoding,
        delivered: ack_mode.then_some(2),
        consumer_seq: ack_mode.then_some(7),
        pending: ack_mode.then_some(0),
        ack_id: ack_mode.then(|| "JEpTLkFDSy5PUkRFUlMuMQ.c2ln".to_owned()),
        size: 120,
        raw: None,
    }
}

/// Every server frame variant, once with every optional field set and once with none.
fn server_frames() -> Vec<ServerFrame> {
    let sub = || Some("orders".to_owned());
    let problem = ApiError::StreamNotFound("ORDRES".to_owned()).problem();
    let jetstream_problem = ApiError::JetStream {
        detail: "insufficient resources".to_owned(),
        jetstream_code: Some(10023),
    }
    .problem();
    vec![
        ServerFrame::Msg {
            sub: None,
            message: message(1, json!({"order_id": 1}), Encoding::Json, false),
        },
        ServerFrame::Msg {
            sub: sub(),
            message: message(2, json!("paid"), Encoding::Utf8, true),
        },
        ServerFrame::Msg {
            sub: None,
            message: message(3, json!("/wA="), Encoding::Base64, false),
        },
        ServerFrame::CaughtUp { sub: None, seq: 0 },
        ServerFrame::CaughtUp { sub: sub(), seq: 3 },
        ServerFrame::Gap {
            sub: None,
            from: 1,
            to: 9,
        },
        ServerFrame::Gap {
            sub: sub(),
            from: 12,
            to: 12,
        },
        ServerFrame::Subscribed {
            sub: "orders".to_owned(),
        },
        ServerFrame::Unsubscribed {
            sub: "orders".to_owned(),
            reason: None,
        },
        ServerFrame::Unsubscribed {
            sub: "orders".to_owned(),
            reason: Some("consumer 'workers' does not exist on stream 'ORDERS'".to_owned()),
        },
        ServerFrame::AckResult {
            id: None,
            ack_id: "JEpTLkFDSy5PUkRFUlMuMQ.c2ln".to_owned(),
            action: AckAction::Ack,
            status: 200,
            error: None,
        },
        ServerFrame::AckResult {
            id: Some("a1".to_owned()),
            ack_id: "JEpTLkFDSy5PUkRFUlMuMQ.c2ln".to_owned(),
            action: AckAction::Progress,
            status: 502,
            error: Some(jetstream_problem),
        },
        ServerFrame::PublishAck {
            id: "p1".to_owned(),
            stream: "ORDERS".to_owned(),
            seq: 4,
            duplicate: true,
        },
        ServerFrame::Error {
            id: None,
            sub: None,
            problem: problem.clone(),
        },
        ServerFrame::Error {
            id: Some("orders".to_owned()),
            sub: sub(),
            problem,
        },
        ServerFrame::Pong { id: None },
        ServerFrame::Pong {
            id: Some("7".to_owned()),
        },
    ]
}

/// The `type` of a frame, by an exhaustive match: a new variant does not compile until it is
/// added here, and to [`server_frames`].
fn frame_type(frame: &ServerFrame) -> &'static str {
    match frame {
        ServerFrame::Msg { .. } => "msg",
        ServerFrame::CaughtUp { .. } => "caught_up",
        ServerFrame::Gap { .. } => "gap",
        ServerFrame::Subscribed { .. } => "subscribed",
        ServerFrame::Unsubscribed { .. } => "unsubscribed",
        ServerFrame::AckResult { .. } => "ack_result",
        ServerFrame::PublishAck { .. } => "publish_ack",
        ServerFrame::Error { .. } => "error",
        ServerFrame::Pong { .. } => "pong",
    }
}

/// Every client op variant, once with every optional field set and once with none.
fn client_ops() -> Vec<ClientOp> {
    let ack_id = || "JEpTLkFDSy5PUkRFUlMuMQ.c2ln".to_owned();
    let id = || Some("x1".to_owned());
    vec![
        ClientOp::Subscribe {
            id: "orders".to_owned(),
            stream: "ORDERS".to_owned(),
            deliver: None,
            start_seq: None,
            start_time: None,
            filter: Vec::new(),
            consumer: None,
            group: None,
            credit: None,
            encoding: WsEncoding::Auto,
        },
        ClientOp::Subscribe {
            id: "orders".to_owned(),
            stream: "ORDERS".to_owned(),
            deliver: Some(ReplayFrom::LastPerSubject),
            start_seq: Some(42),
            start_time: Some("2026-11-26T08:00:00Z".to_owned()),
            filter: vec!["orders.new".to_owned(), "orders.*.paid".to_owned()],
            consumer: Some("workers".to_owned()),
            group: Some("workers".to_owned()),
            credit: Some(100),
            encoding: WsEncoding::Base64,
        },
        ClientOp::Unsubscribe {
            id: "orders".to_owned(),
        },
        ClientOp::Ack {
            ack_id: ack_id(),
            id: None,
        },
        ClientOp::Ack {
            ack_id: ack_id(),
            id: id(),
        },
        ClientOp::Nak {
            ack_id: ack_id(),
            delay: None,
            id: None,
        },
        ClientOp::Nak {
            ack_id: ack_id(),
            delay: Some(Duration::from_millis(1500)),
            id: id(),
        },
        ClientOp::Term {
            ack_id: ack_id(),
            id: id(),
        },
        ClientOp::Progress {
            ack_id: ack_id(),
            id: id(),
        },
        ClientOp::Credit { id: None, n: 10 },
        ClientOp::Credit { id: id(), n: 0 },
        ClientOp::Publish {
            id: "p1".to_owned(),
            subject: "orders.new".to_owned(),
            data: None,
            data_base64: None,
            content_type: None,
            headers: BTreeMap::new(),
            idempotency_key: None,
        },
        ClientOp::Publish {
            id: "p2".to_owned(),
            subject: "orders.new".to_owned(),
            data: Some(json!({"order_id": 1007})),
            data_base64: None,
            content_type: Some("application/json".to_owned()),
            headers: BTreeMap::from([("X-Source".to_owned(), "test".to_owned())]),
            idempotency_key: Some("order-1007".to_owned()),
        },
        ClientOp::Publish {
            id: "p3".to_owned(),
            subject: "orders.raw".to_owned(),
            data: None,
            data_base64: Some("/wA=".to_owned()),
            content_type: None,
            headers: BTreeMap::new(),
            idempotency_key: None,
        },
        ClientOp::Ping { id: None },
        ClientOp::Ping { id: id() },
        ClientOp::Close,
    ]
}

/// The `op` of a client op, by an exhaustive match (see [`frame_type`]).
fn op_name(op: &ClientOp) -> &'static str {
    match op {
        ClientOp::Subscribe { .. } => "subscribe",
        ClientOp::Unsubscribe { .. } => "unsubscribe",
        ClientOp::Ack { .. } => "ack",
        ClientOp::Nak { .. } => "nak",
        ClientOp::Term { .. } => "term",
        ClientOp::Progress { .. } => "progress",
        ClientOp::Credit { .. } => "credit",
        ClientOp::Publish { .. } => "publish",
        ClientOp::Ping { .. } => "ping",
        ClientOp::Close => "close",
    }
}

/// The validator's report, with the frames and ops above checked; computed once.
fn report() -> &'static Value {
    static REPORT: OnceLock<Value> = OnceLock::new();
    REPORT.get_or_init(|| {
        let server: Vec<Value> = server_frames()
            .iter()
            .map(|frame| serde_json::to_value(frame).unwrap())
            .collect();
        let client: Vec<Value> = client_ops()
            .iter()
            .map(|op| serde_json::to_value(op).unwrap())
            .collect();
        let frames = json!({ "server": server, "client": client });
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), frames.to_string()).unwrap();
        let output = node::run_blocking(SCRIPT, &["--frames", file.path().to_str().unwrap()]);
        let report = node::stdout_json(SCRIPT, &output);
        let missing = report["diagnostics"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["code"] == "parser-missing");
        assert!(
            !missing,
            "@asyncapi/parser is not installed: run scripts/install-tools.sh asyncapi \
             (make test does), then rerun"
        );
        report
    })
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The frame checks of one direction that failed.
fn failed_checks(direction: &str) -> Vec<&'static Value> {
    report()["frame_checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["direction"] == direction)
        .filter(|c| !c["errors"].as_array().unwrap().is_empty())
        .collect()
}

#[test]
fn asyncapi_document_is_valid_for_the_asyncapi_parser() {
    let report = report();
    let errors: Vec<&Value> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .collect();

    assert!(
        errors.is_empty(),
        "openapi/asyncapi.yaml has errors: {}",
        serde_json::to_string_pretty(&errors).unwrap()
    );
    assert_eq!(report["valid"], true, "report: {report:#}");
}

#[test]
fn asyncapi_frame_types_and_ops_are_exactly_the_servers() {
    let report = report();

    assert_eq!(
        strings(&report["server_types"]),
        set(&SERVER_FRAME_TYPES),
        "`type`s of the messages jetway sends (operations with action: send) differ from \
         jetway::ws::protocol::SERVER_FRAME_TYPES"
    );
    assert_eq!(
        strings(&report["client_ops"]),
        set(&CLIENT_OPS),
        "`op`s of the messages jetway receives (operations with action: receive) differ from \
         jetway::ws::protocol::CLIENT_OPS"
    );
}

#[test]
fn asyncapi_endpoints_carry_the_frames_and_ops_each_one_speaks() {
    let channels = report()["channels"].as_object().unwrap();
    let by_address = |address: &str| {
        channels
            .values()
            .find(|c| c["address"] == address)
            .unwrap_or_else(|| panic!("no channel for {address} in openapi/asyncapi.yaml"))
    };

    // The multiplexed socket speaks the whole protocol.
    let multiplexed = by_address("/v1/ws");
    assert_eq!(
        strings(&multiplexed["server_types"]),
        set(&SERVER_FRAME_TYPES)
    );
    assert_eq!(strings(&multiplexed["client_ops"]), set(&CLIENT_OPS));
    // The single-stream socket: its one subscription's frames and answers to ack-like ops,
    // credit, ping and close (`stream_websocket`'s documentation in src/ws/mod.rs).
    let single = by_address("/v1/streams/{stream}/ws");
    assert_eq!(
        strings(&single["server_types"]),
        set(&["msg", "caught_up", "gap", "ack_result", "error", "pong"])
    );
    assert_eq!(
        strings(&single["client_ops"]),
        set(&["ack", "nak", "term", "progress", "credit", "ping", "close"])
    );
}

#[test]
fn every_documented_query_parameter_is_accepted_by_the_single_stream_socket() {
    let channels = report()["channels"].as_object().unwrap();
    let query = channels
        .values()
        .find(|c| c["address"] == "/v1/streams/{stream}/ws")
        .and_then(|c| c["query"].as_object())
        .expect("the single-stream channel's ws binding has a query");
    assert!(!query.is_empty(), "no query parameters documented");

    for (name, schema) in query {
        // A value the schema allows: its first enum value, its minimum, a time, or a word.
        let value = match (&schema["enum"][0], &schema["type"], &schema["format"]) {
            (Value::String(first), _, _) => first.clone(),
            (_, t, _) if t == "integer" => schema["minimum"].as_u64().unwrap_or(1).to_string(),
            (_, _, f) if f == "date-time" => "2026-11-26T08:00:00Z".to_owned(),
            _ => "orders.new".to_owned(),
        };
        let query = format!("{name}={value}");
        assert!(
            Subscription::parse(Some(&query)).is_ok(),
            "documented query parameter refused by the server: {query}"
        );
    }
    assert!(
        Subscription::parse(Some("undocumented=1")).is_err(),
        "the server must refuse parameters it does not know"
    );
}

#[test]
fn every_server_frame_variant_serialises_to_a_documented_type_and_schema() {
    let documented = strings(&report()["server_types"]);
    let frames = server_frames();

    let built: BTreeSet<String> = frames.iter().map(|f| frame_type(f).to_owned()).collect();
    assert_eq!(
        built,
        set(&SERVER_FRAME_TYPES),
        "server_frames() must build every variant"
    );
    for frame in &frames {
        let value = serde_json::to_value(frame).unwrap();
        let kind = value["type"].as_str().unwrap_or_default();
        assert_eq!(kind, frame_type(frame), "serialised type of {value}");
        assert_eq!(kind, frame.kind(), "ServerFrame::kind of {value}");
        assert!(
            documented.contains(kind),
            "frame type '{kind}' is not in openapi/asyncapi.yaml"
        );
    }
    let failed = failed_checks("server");
    assert!(
        failed.is_empty(),
        "frames serialised by ServerFrame do not match their schema in openapi/asyncapi.yaml: {}",
        serde_json::to_string_pretty(&failed).unwrap()
    );
}

#[test]
fn every_client_op_variant_serialises_to_a_documented_op_and_schema() {
    let documented = strings(&report()["client_ops"]);
    let ops = client_ops();

    let built: BTreeSet<String> = ops.iter().map(|o| op_name(o).to_owned()).collect();
    assert_eq!(
        built,
        set(&CLIENT_OPS),
        "client_ops() must build every variant"
    );
    for op in &ops {
        let value = serde_json::to_value(op).unwrap();
        let name = value["op"].as_str().unwrap_or_default();
        assert_eq!(name, op_name(op), "serialised op of {value}");
        assert!(
            documented.contains(name),
            "op '{name}' is not in openapi/asyncapi.yaml"
        );
    }
    let failed = failed_checks("client");
    assert!(
        failed.is_empty(),
        "ops serialised by ClientOp do not match their schema in openapi/asyncapi.yaml: {}",
        serde_json::to_string_pretty(&failed).unwrap()
    );
}

#[test]
fn asyncapi_examples_parse_into_the_rust_types_and_back_unchanged() {
    let examples = &report()["examples"];
    let server = examples["server"].as_array().unwrap();
    let client = examples["client"].as_array().unwrap();
    assert!(
        !server.is_empty() && !client.is_empty(),
        "no examples found"
    );

    for example in server {
        let frame: ServerFrame = serde_json::from_value(example.clone())
            .unwrap_or_else(|e| panic!("example {example} is not a ServerFrame: {e}"));
        assert_eq!(
            &serde_json::to_value(&frame).unwrap(),
            example,
            "example differs from what the server would send for it"
        );
    }
    for example in client {
        let op: ClientOp = serde_json::from_value(example.clone())
            .unwrap_or_else(|e| panic!("example {example} is not a ClientOp: {e}"));
        let mut back = serde_json::to_value(&op).unwrap();
        // `encoding` is always serialised; the example may leave the default out.
        if example.get("encoding").is_none() && back["encoding"] == "auto" {
            back.as_object_mut().unwrap().remove("encoding");
        }
        assert_eq!(
            &back, example,
            "example differs from the op the server reads from it"
        );
    }
}
