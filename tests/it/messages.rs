//! Reading stored messages: by sequence (JSON and raw), last on a subject, and pages.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::{TestApp, json, problem, spawn_app, spawn_app_with};

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .send()
        .await
        .expect("get request")
}

/// GET with query parameters (URL-encoded by reqwest).
async fn get_query(app: &TestApp, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .query(query)
        .send()
        .await
        .expect("get request")
}

/// Publishes through the gateway and returns the stored sequence.
async fn publish(
    app: &TestApp,
    subject: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> u64 {
    let response = app.publish(subject, body, headers).await;
    let body = json(response, 201).await;
    body["seq"].as_u64().expect("seq")
}

fn seqs(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .expect("messages array")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

/// Follows `next_seq` from the first page until it is null; answers every sequence seen and the
/// number of pages.
async fn walk_pages(
    app: &TestApp,
    stream: &str,
    extra: &[(&str, &str)],
    limit: usize,
) -> (Vec<u64>, usize) {
    let limit = limit.to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut start_seq: Option<String> = None;
    loop {
        let mut query: Vec<(&str, &str)> = extra.to_vec();
        query.push(("limit", &limit));
        if let Some(start) = &start_seq {
            query.push(("start_seq", start));
        }
        let page = json(
            get_query(app, &format!("/v1/streams/{stream}/messages"), &query).await,
            200,
        )
        .await;
        pages += 1;
        assert!(pages <= 100, "paging does not end");
        seen.extend(seqs(&page));
        match page["next_seq"].as_u64() {
            Some(next) => start_seq = Some(next.to_string()),
            None => {
                assert!(
                    page["next_seq"].is_null(),
                    "next_seq is neither a number nor null: {page}"
                );
                return (seen, pages);
            }
        }
    }
}

fn parse_time(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("not RFC 3339: {text}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// By sequence, as JSON

#[tokio::test]
async fn get_message_with_json_payload_returns_the_json_value() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let seq = publish(
        &app,
        "orders.new",
        r#"{"id":42,"total":9.5}"#,
        &[("content-type", "application/json")],
    )
    .await;

    let response = get(&app, &format!("/v1/streams/ORDERS/messages/{seq}")).await;

    let body = json(response, 200).await;
    assert_eq!(body["stream"], "ORDERS");
    assert_eq!(body["subject"], "orders.new");
    assert_eq!(body["seq"], seq);
    assert_eq!(body["encoding"], "json");
    assert_eq!(body["data"], json!({"id": 42, "total": 9.5}));
    assert_eq!(body["headers"]["Content-Type"], "application/json");
    let stored = app.stored("ORDERS").await;
    assert_eq!(parse_time(body["time"].as_str().unwrap()), stored[0].time);
}

#[tokio::test]
async fn get_message_with_text_content_type_returns_utf8_even_when_it_looks_like_json() {
    let app = spawn_app().await;
    app.create_stream("NOTES", &["notes.>"]).await;
    let seq = publish(
        &app,
        "notes.a",
        r#"{"a":1} grüße"#,
        &[("content-type", "text/plain")],
    )
    .await;

    let body = json(
        get(&app, &format!("/v1/streams/NOTES/messages/{seq}")).await,
        200,
    )
    .await;

    assert_eq!(body["encoding"], "utf8");
    assert_eq!(body["data"], r#"{"a":1} grüße"#);
    assert_eq!(body["headers"]["Content-Type"], "text/plain");
}

#[tokio::test]
async fn get_message_with_binary_payload_returns_base64_of_the_exact_bytes() {
    let app = spawn_app().await;
    app.create_stream("BLOBS", &["blobs.>"]).await;
    let payload: Vec<u8> = vec![0xff, 0x00, 0xfe, b'a', 0x80, 0x0d, 0x0a];
    let seq = publish(&app, "blobs.a", payload.clone(), &[]).await;

    let body = json(
        get(&app, &format!("/v1/streams/BLOBS/messages/{seq}")).await,
        200,
    )
    .await;

    assert_eq!(body["encoding"], "base64");
    let decoded = BASE64
        .decode(body["data"].as_str().expect("data is a string"))
        .unwrap();
    assert_eq!(decoded, payload);
}

#[tokio::test]
async fn get_message_with_encoding_base64_forces_base64() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let payload = r#"{"id":42}"#;
    let seq = publish(
        &app,
        "orders.new",
        payload,
        &[("content-type", "application/json")],
    )
    .await;

    let response = get_query(
        &app,
        &format!("/v1/streams/ORDERS/messages/{seq}"),
        &[("encoding", "base64")],
    )
    .await;

    let body = json(response, 200).await;
    assert_eq!(body["encoding"], "base64");
    assert_eq!(
        BASE64.decode(body["data"].as_str().unwrap()).unwrap(),
        payload.as_bytes()
    );
}

#[tokio::test]
async fn get_message_shows_stored_headers_by_their_stored_names() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let seq = publish(
        &app,
        "orders.new",
        "x",
        &[
            ("X-Msg-Order-Type", "A"),
            ("idempotency-key", "order-1"),
            ("content-type", "text/plain"),
        ],
    )
    .await;

    let body = json(
        get(&app, &format!("/v1/streams/ORDERS/messages/{seq}")).await,
        200,
    )
    .await;

    assert_eq!(
        body["headers"],
        json!({"Order-Type": "A", "Nats-Msg-Id": "order-1", "Content-Type": "text/plain"})
    );
    let stored = app.stored("ORDERS").await;
    assert_eq!(stored[0].headers.get("Order-Type").unwrap().as_str(), "A");
}

#[tokio::test]
async fn get_message_joins_multi_valued_headers_with_comma() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.append("Tag", "a");
    headers.append("Tag", "b");
    app.js
        .publish_with_headers("orders.new", headers, "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    // What JetStream really stores: the raw header block with both values.
    let raw = app
        .nats
        .request("$JS.API.STREAM.MSG.GET.ORDERS", r#"{"seq":1}"#.into())
        .await
        .unwrap();
    let raw: Value = serde_json::from_slice(&raw.payload).unwrap();
    let stored_headers = text_of(
        &BASE64
            .decode(raw["message"]["hdrs"].as_str().unwrap())
            .unwrap(),
    );
    assert!(
        stored_headers.contains("Tag: a") && stored_headers.contains("Tag: b"),
        "{stored_headers}"
    );

    let body = json(get(&app, "/v1/streams/ORDERS/messages/1").await, 200).await;

    assert_eq!(body["headers"]["Tag"], "a, b");
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// By sequence, raw

#[tokio::test]
async fn get_message_as_octet_stream_returns_exact_bytes_and_metadata_headers() {
    let app = spawn_app().await;
    app.create_stream("BLOBS", &["blobs.>"]).await;
    let payload: Vec<u8> = (0..=255u8).rev().collect();
    let seq = publish(
        &app,
        "blobs.image",
        payload.clone(),
        &[
            ("content-type", "application/vnd.demo"),
            ("X-Msg-Order-Type", "A"),
        ],
    )
    .await;

    let response = app
        .http
        .get(app.url(&format!("/v1/streams/BLOBS/messages/{seq}")))
        .header("accept", "application/octet-stream")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}: {headers:?}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/vnd.demo");
    assert_eq!(header("jetway-stream"), "BLOBS");
    assert_eq!(header("jetway-seq"), seq.to_string());
    assert_eq!(header("jetway-subject"), "blobs.image");
    assert_eq!(header("x-msg-order-type"), "A");
    assert!(
        headers.get("x-msg-content-type").is_none(),
        "content type is not repeated: {headers:?}"
    );
    let stored = app.stored("BLOBS").await;
    assert_eq!(parse_time(&header("jetway-time")), stored[0].time);
    assert_eq!(response.bytes().await.unwrap().as_ref(), payload.as_slice());
}

#[tokio::test]
async fn get_message_as_octet_stream_without_stored_content_type_answers_octet_stream() {
    let app = spawn_app().await;
    app.create_stream("BLOBS", &["blobs.>"]).await;
    app.js
        .publish("blobs.a", "raw".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let response = app
        .http
        .get(app.url("/v1/streams/BLOBS/messages/1"))
        .header("accept", "application/octet-stream")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"raw");
}

// ---------------------------------------------------------------------------------------------
// By sequence, errors

#[tokio::test]
async fn get_message_at_unknown_seq_returns_404_message_not_found() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish(&app, "orders.new", "x", &[]).await;

    let response = get(&app, "/v1/streams/ORDERS/messages/2").await;

    problem(response, 404, "message_not_found").await;
}

#[tokio::test]
async fn get_message_on_unknown_stream_returns_404_stream_not_found() {
    let app = spawn_app().await;

    let response = get(&app, "/v1/streams/NOPE/messages/1").await;

    problem(response, 404, "stream_not_found").await;
}

#[tokio::test]
async fn get_message_with_seq_not_a_number_returns_400_invalid_parameter() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let response = get(&app, "/v1/streams/ORDERS/messages/first").await;

    problem(response, 400, "invalid_parameter").await;
}

#[tokio::test]
async fn get_message_at_seq_zero_returns_400_invalid_parameter() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish(&app, "orders.new", "x", &[]).await;

    let response = get(&app, "/v1/streams/ORDERS/messages/0").await;

    problem(response, 400, "invalid_parameter").await;
}

#[tokio::test]
async fn get_message_with_unknown_encoding_returns_400_invalid_parameter() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish(&app, "orders.new", "x", &[]).await;

    let response = get_query(
        &app,
        "/v1/streams/ORDERS/messages/1",
        &[("encoding", "hex")],
    )
    .await;

    problem(response, 400, "invalid_parameter").await;
}

// ---------------------------------------------------------------------------------------------
// Last on a subject

#[tokio::test]
async fn get_last_message_on_subject_returns_the_newest_on_that_subject() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish(&app, "orders.42", "first", &[]).await;
    let newest = publish(&app, "orders.42", "second", &[]).await;
    publish(&app, "orders.43", "other", &[]).await;

    let response = get_query(
        &app,
        "/v1/streams/ORDERS/messages/last",
        &[("subject", "orders.42")],
    )
    .await;

    let body = json(response, 200).await;
    assert_eq!(body["seq"], newest);
    assert_eq!(body["subject"], "orders.42");
    assert_eq!(body["data"], "second");
}

#[tokio::test]
async fn get_last_message_with_wildcard_returns_the_newest_on_any_matching_subject() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish(&app, "orders.eu.1", "a", &[]).await;
    let newest_eu = publish(&app, "orders.eu.2", "b", &[]).await;
    publish(&app, "orders.us.1", "c", &[]).await;

    let response = get_query(
        &app,
        "/v1/streams/ORDERS/messages/last",
        &[("subject", "orders.eu.*")],
    )
    .await;

    let body = json(response, 200).await;
    assert_eq!(body["seq"], newest_eu);
    assert_eq!(body["subject"], "orders.eu.2");
}

#[tokio::test]
async fn get_last_message_on_subject_without_messages_returns_404_message_not_found() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish(&app, "orders.42", "x", &[]).await;

    let response = get_query(
        &app,
        "/v1/streams/ORDERS/messages/last",
        &[("subject", "orders.99")],
    )
    .await;

    problem(response, 404, "message_not_found").await;
}

#[tokio::test]
async fn get_last_message_without_subject_returns_400_invalid_parameter() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let response = get(&app, "/v1/streams/ORDERS/messages/last").await;

    problem(response, 400, "invalid_parameter").await;
}

#[tokio::test]
async fn get_last_message_as_octet_stream_returns_raw_payload() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish(&app, "orders.42", "old", &[]).await;
    let newest = publish(&app, "orders.42", "new", &[("content-type", "text/plain")]).await;

    let response = app
        .http
        .get(app.url("/v1/streams/ORDERS/messages/last?subject=orders.42"))
        .header("accept", "application/octet-stream")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["jetway-seq"],
        newest.to_string().as_str()
    );
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"new");
}

// ---------------------------------------------------------------------------------------------
// Pages

#[tokio::test]
async fn list_messages_pages_walk_every_message_once_in_order() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    for i in 0..7 {
        publish(&app, &format!("orders.{}", i % 2), format!("m{i}"), &[]).await;
    }

    let (seen, pages) = walk_pages(&app, "ORDERS", &[], 3).await;

    assert_eq!(seen, (1..=7).collect::<Vec<u64>>());
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn list_messages_page_ending_exactly_at_the_last_message_has_null_next_seq() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    for i in 0..6 {
        publish(&app, "orders.new", format!("m{i}"), &[]).await;
    }

    let (seen, pages) = walk_pages(&app, "ORDERS", &[], 3).await;

    assert_eq!(seen, (1..=6).collect::<Vec<u64>>());
    assert_eq!(pages, 2, "no empty trailing page");
}

#[tokio::test]
async fn list_messages_first_page_answers_messages_and_next_seq() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish(
        &app,
        "orders.new",
        r#"{"n":1}"#,
        &[("content-type", "application/json")],
    )
    .await;
    publish(&app, "orders.new", "two", &[]).await;
    publish(&app, "orders.new", "three", &[]).await;

    let response = get_query(&app, "/v1/streams/ORDERS/messages", &[("limit", "2")]).await;

    let page = json(response, 200).await;
    assert_eq!(seqs(&page), [1, 2]);
    assert_eq!(page["next_seq"], 3);
    assert_eq!(page["messages"][0]["data"], json!({"n": 1}));
    assert_eq!(page["messages"][0]["encoding"], "json");
    assert_eq!(page["messages"][1]["data"], "two");
    assert_eq!(page["messages"][1]["stream"], "ORDERS");
}

#[tokio::test]
async fn list_messages_skips_purged_messages() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    for i in 0..5 {
        publish(&app, "orders.new", format!("m{i}"), &[]).await;
    }
    let stream = app.js.get_stream("ORDERS").await.unwrap();
    stream.purge().sequence(3).await.unwrap();

    let (seen, _) = walk_pages(&app, "ORDERS", &[], 2).await;

    assert_eq!(seen, [3, 4, 5]);
}

#[tokio::test]
async fn list_messages_of_empty_stream_returns_empty_page_with_null_next_seq() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let page = json(get(&app, "/v1/streams/ORDERS/messages").await, 200).await;

    assert_eq!(page, json!({"messages": [], "next_seq": null}));
}

#[tokio::test]
async fn list_messages_with_subject_filter_returns_only_matching_messages() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let mut paid = Vec::new();
    for i in 0..8 {
        let subject = if i % 3 == 0 {
            "orders.paid"
        } else {
            "orders.new"
        };
        let seq = publish(&app, subject, format!("m{i}"), &[]).await;
        if subject == "orders.paid" {
            paid.push(seq);
        }
    }

    let (seen, pages) = walk_pages(&app, "ORDERS", &[("subject", "orders.paid")], 2).await;

    assert_eq!(seen, paid);
    assert_eq!(pages, 2);
    let first = json(
        get_query(
            &app,
            "/v1/streams/ORDERS/messages",
            &[("subject", "orders.paid"), ("limit", "1")],
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        first["next_seq"], paid[1],
        "next_seq is the next matching sequence"
    );
    assert!(
        first["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["subject"] == "orders.paid")
    );
}

#[tokio::test]
async fn list_messages_with_wildcard_subject_filter_returns_matching_messages() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish(&app, "orders.eu.1", "a", &[]).await;
    publish(&app, "orders.us.1", "b", &[]).await;
    publish(&app, "orders.eu.2", "c", &[]).await;

    let page = json(
        get_query(
            &app,
            "/v1/streams/ORDERS/messages",
            &[("subject", "orders.eu.*")],
        )
        .await,
        200,
    )
    .await;

    assert_eq!(seqs(&page), [1, 3]);
    assert!(page["next_seq"].is_null());
}

#[tokio::test]
async fn list_messages_from_start_time_returns_only_messages_stored_at_or_after_it() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    for i in 0..3 {
        publish(&app, "orders.new", format!("early {i}"), &[]).await;
    }
    let last_early = app.stored("ORDERS").await[2].time;
    for i in 0..2 {
        publish(&app, "orders.new", format!("late {i}"), &[]).await;
    }
    let after = (last_early + time::Duration::nanoseconds(1))
        .format(&Rfc3339)
        .unwrap();
    let exactly = last_early.format(&Rfc3339).unwrap();

    let later = json(
        get_query(
            &app,
            "/v1/streams/ORDERS/messages",
            &[("start_time", &after)],
        )
        .await,
        200,
    )
    .await;
    let inclusive = json(
        get_query(
            &app,
            "/v1/streams/ORDERS/messages",
            &[("start_time", &exactly)],
        )
        .await,
        200,
    )
    .await;

    assert_eq!(seqs(&later), [4, 5]);
    assert_eq!(later["messages"][0]["data"], "late 0");
    assert!(later["next_seq"].is_null());
    assert_eq!(seqs(&inclusive), [3, 4, 5]);
}

#[tokio::test]
async fn list_messages_from_start_time_with_subject_filter_returns_later_matching_messages() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish(&app, "orders.paid", "early paid", &[]).await;
    publish(&app, "orders.new", "early new", &[]).await;
    let last_early = app.stored("ORDERS").await[1].time;
    publish(&app, "orders.new", "late new", &[]).await; // 3
    publish(&app, "orders.paid", "late paid", &[]).await; // 4
    publish(&app, "orders.new", "late new 2", &[]).await; // 5
    let after = (last_early + time::Duration::nanoseconds(1))
        .format(&Rfc3339)
        .unwrap();

    let page = json(
        get_query(
            &app,
            "/v1/streams/ORDERS/messages",
            &[
                ("start_time", &after),
                ("subject", "orders.new"),
                ("limit", "1"),
            ],
        )
        .await,
        200,
    )
    .await;

    assert_eq!(seqs(&page), [3]);
    assert_eq!(page["next_seq"], 5, "the next matching message");
}

#[tokio::test]
async fn list_messages_from_start_time_after_the_last_message_returns_empty_page() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    publish(&app, "orders.new", "x", &[]).await;
    let last = app.stored("ORDERS").await[0].time;
    let after = (last + time::Duration::seconds(1))
        .format(&Rfc3339)
        .unwrap();

    let page = json(
        get_query(
            &app,
            "/v1/streams/ORDERS/messages",
            &[("start_time", &after)],
        )
        .await,
        200,
    )
    .await;

    assert_eq!(page, json!({"messages": [], "next_seq": null}));
}

#[tokio::test]
async fn list_messages_with_start_seq_and_start_time_returns_400_invalid_parameter() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let response = get_query(
        &app,
        "/v1/streams/ORDERS/messages",
        &[("start_seq", "1"), ("start_time", "2026-01-01T00:00:00Z")],
    )
    .await;

    problem(response, 400, "invalid_parameter").await;
}

#[tokio::test]
async fn list_messages_with_invalid_start_time_returns_400_invalid_parameter() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let response = get_query(
        &app,
        "/v1/streams/ORDERS/messages",
        &[("start_time", "yesterday")],
    )
    .await;

    let body = problem(response, 400, "invalid_parameter").await;
    assert!(
        body["detail"].as_str().unwrap().contains("yesterday"),
        "{body}"
    );
}

#[tokio::test]
async fn list_messages_with_limit_zero_or_above_max_returns_400_invalid_parameter() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    for limit in ["0", "1001", "many"] {
        let response = get_query(&app, "/v1/streams/ORDERS/messages", &[("limit", limit)]).await;

        problem(response, 400, "invalid_parameter").await;
    }
}

#[tokio::test]
async fn list_messages_with_limit_above_configured_max_page_returns_400() {
    let app = spawn_app_with(|config| config.max_page_messages = 5).await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let ok = get_query(&app, "/v1/streams/ORDERS/messages", &[("limit", "5")]).await;
    let too_many = get_query(&app, "/v1/streams/ORDERS/messages", &[("limit", "6")]).await;

    json(ok, 200).await;
    let body = problem(too_many, 400, "invalid_parameter").await;
    assert!(body["detail"].as_str().unwrap().contains('5'), "{body}");
}

#[tokio::test]
async fn list_messages_on_unknown_stream_returns_404_stream_not_found() {
    let app = spawn_app().await;

    let response = get(&app, "/v1/streams/NOPE/messages").await;

    problem(response, 404, "stream_not_found").await;
}

#[tokio::test]
async fn list_messages_with_invalid_subject_filter_returns_400_invalid_subject() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    let response = get_query(
        &app,
        "/v1/streams/ORDERS/messages",
        &[("subject", "orders..new")],
    )
    .await;

    problem(response, 400, "invalid_subject").await;
}

// ---------------------------------------------------------------------------------------------
// Deleting one message

const DELETE_SECRET: &str = "message-delete-test-secret";

fn delete_token(grants: Value) -> String {
    let claims = json!({
        "sub": "deleter",
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
        "jetway": grants,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(DELETE_SECRET.as_bytes()),
    )
    .unwrap()
}

async fn delete(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.http.delete(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("delete request")
}

/// Whether the stream still holds `seq`, asked of JetStream directly.
async fn holds(app: &TestApp, stream: &str, seq: u64) -> bool {
    let stream = app.js.get_stream(stream).await.expect("stream");
    stream.get_raw_message(seq).await.is_ok()
}

#[tokio::test]
async fn delete_message_removes_only_that_sequence_and_reads_then_answer_404() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let first = publish(&app, "orders.new", "one", &[]).await;
    let second = publish(&app, "orders.new", "two", &[]).await;
    let third = publish(&app, "orders.new", "three", &[]).await;

    let response = delete(&app, &format!("/v1/streams/ORDERS/messages/{second}"), None).await;

    assert_eq!(response.status(), 204);
    assert!(holds(&app, "ORDERS", first).await);
    assert!(!holds(&app, "ORDERS", second).await);
    assert!(holds(&app, "ORDERS", third).await);
    let info = app
        .js
        .get_stream("ORDERS")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.state.messages, 2);
    assert_eq!(
        info.state.last_sequence, third,
        "the sequence is not reused"
    );
    problem(
        get(&app, &format!("/v1/streams/ORDERS/messages/{second}")).await,
        404,
        "message_not_found",
    )
    .await;
    let (seen, _) = walk_pages(&app, "ORDERS", &[], 10).await;
    assert_eq!(seen, vec![first, third]);
}

#[tokio::test]
async fn delete_message_with_erase_removes_it_and_the_stream_stays_consistent() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let seq = publish(&app, "orders.new", "personal data", &[]).await;
    let after = publish(&app, "orders.new", "kept", &[]).await;

    let response = delete(
        &app,
        &format!("/v1/streams/ORDERS/messages/{seq}?erase=true"),
        None,
    )
    .await;

    assert_eq!(response.status(), 204);
    assert!(!holds(&app, "ORDERS", seq).await);
    assert!(holds(&app, "ORDERS", after).await);
    let body = json(
        get(&app, &format!("/v1/streams/ORDERS/messages/{after}")).await,
        200,
    )
    .await;
    assert_eq!(body["data"], "kept");
    problem(
        delete(&app, "/v1/streams/ORDERS/messages/1?erase=maybe", None).await,
        400,
        "invalid_parameter",
    )
    .await;
}

#[tokio::test]
async fn delete_of_a_missing_or_already_deleted_message_returns_404() {
    let app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;
    let seq = publish(&app, "orders.new", "one", &[]).await;
    assert_eq!(
        delete(&app, &format!("/v1/streams/ORDERS/messages/{seq}"), None)
            .await
            .status(),
        204
    );

    for (path, status, code) in [
        (
            format!("/v1/streams/ORDERS/messages/{seq}"),
            404,
            "message_not_found",
        ),
        (
            "/v1/streams/ORDERS/messages/99".to_owned(),
            404,
            "message_not_found",
        ),
        (
            "/v1/streams/ORDERS/messages/99?erase=true".to_owned(),
            404,
            "message_not_found",
        ),
        (
            "/v1/streams/NOPE/messages/1".to_owned(),
            404,
            "stream_not_found",
        ),
        (
            "/v1/streams/ORDERS/messages/0".to_owned(),
            400,
            "invalid_parameter",
        ),
    ] {
        problem(delete(&app, &path, None).await, status, code).await;
    }
}

#[tokio::test]
async fn delete_message_on_a_stream_that_denies_deletes_returns_409_and_keeps_it() {
    let app = spawn_app().await;
    app.create_stream_with(async_nats::jetstream::stream::Config {
        name: "LEDGER".to_owned(),
        subjects: vec!["ledger.>".to_owned()],
        deny_delete: true,
        ..Default::default()
    })
    .await;
    let seq = publish(&app, "ledger.entry", "kept forever", &[]).await;

    let body = problem(
        delete(&app, &format!("/v1/streams/LEDGER/messages/{seq}"), None).await,
        409,
        "stream_conflict",
    )
    .await;

    assert!(
        body["detail"].as_str().unwrap().contains("deny_delete"),
        "{body}"
    );
    assert!(holds(&app, "LEDGER", seq).await);
}

#[tokio::test]
async fn delete_message_needs_admin_and_a_tenant_admin_deletes_only_in_its_namespace() {
    let app = spawn_app_with(|c| {
        c.no_auth = false;
        c.jwt_secret = vec![DELETE_SECRET.to_owned()];
    })
    .await;
    app.create_stream("SHARED", &["acme.>", "globex.>"]).await;
    let acme_seq = app
        .js
        .publish("acme.orders.new", "acme's".into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    let globex_seq = app
        .js
        .publish("globex.orders.new", "globex's".into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    let reader = delete_token(json!({"read": ["*"], "publish": [">"]}));
    let acme_admin = delete_token(json!({"admin": true, "prefix": "acme"}));

    // Reading and publishing grants are not enough.
    problem(
        delete(
            &app,
            &format!("/v1/streams/SHARED/messages/{acme_seq}"),
            Some(&reader),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    assert!(holds(&app, "SHARED", acme_seq).await);

    // Another tenant's message is "not found" to a tenant, and stays.
    problem(
        delete(
            &app,
            &format!("/v1/streams/SHARED/messages/{globex_seq}?erase=true"),
            Some(&acme_admin),
        )
        .await,
        404,
        "message_not_found",
    )
    .await;
    assert!(holds(&app, "SHARED", globex_seq).await);

    // Its own message goes.
    let response = delete(
        &app,
        &format!("/v1/streams/SHARED/messages/{acme_seq}"),
        Some(&acme_admin),
    )
    .await;
    assert_eq!(response.status(), 204);
    assert!(!holds(&app, "SHARED", acme_seq).await);
    assert!(holds(&app, "SHARED", globex_seq).await);
}
