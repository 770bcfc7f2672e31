//! Streaming publish: `POST /v1/publish` with an NDJSON body and `Accept: application/x-ndjson`,
//! answered with one result line per input line, in order, as each PubAck arrives.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::channel::mpsc;
use serde_json::{Value, json};

use crate::harness::{TestApp, Topology, spawn_app_on_with, spawn_app_with};

/// One streaming publish request: lines go in through `send`, results come out of `next`.
struct Streaming {
    input: Option<mpsc::UnboundedSender<Result<Bytes, std::io::Error>>>,
    output: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    pending: Vec<u8>,
}

impl Streaming {
    async fn open(app: &TestApp) -> Self {
        let (input, body) = mpsc::unbounded();
        let response = app
            .http
            .post(app.url("/v1/publish"))
            .header("Content-Type", "application/x-ndjson")
            .header("Accept", "application/x-ndjson")
            .body(reqwest::Body::wrap_stream(body))
            .send();
        // The answer's head comes before any line was sent.
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("the answer starts before the body ends")
            .expect("streaming publish");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().expect("type"),
            "application/x-ndjson"
        );
        Self {
            input: Some(input),
            output: response.bytes_stream().boxed(),
            pending: Vec::new(),
        }
    }

    fn send(&self, text: &str) {
        self.input
            .as_ref()
            .expect("input open")
            .unbounded_send(Ok(Bytes::from(text.to_owned())))
            .expect("send a chunk");
    }

    fn send_line(&self, line: &Value) {
        self.send(&format!("{line}\n"));
    }

    /// Ends the request body.
    fn finish(&mut self) {
        self.input = None;
    }

    /// The next result line, or `None` when the answer ended.
    async fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=at).collect();
                return Some(serde_json::from_slice(&line).expect("a JSON result line"));
            }
            let chunk = tokio::time::timeout_at(deadline, self.output.next())
                .await
                .unwrap_or_else(|_| panic!("no result line within {within:?}"));
            match chunk {
                Some(chunk) => self.pending.extend_from_slice(&chunk.expect("answer body")),
                None => {
                    assert!(self.pending.is_empty(), "half a line at the end");
                    return None;
                }
            }
        }
    }
}

async fn orders(app: &TestApp) {
    app.create_stream("ORDERS", &["orders.>"]).await;
}

async fn stored_count(app: &TestApp, stream: &str) -> u64 {
    let mut stream = app.js.get_stream(stream).await.expect("stream");
    stream.info().await.expect("info").state.messages
}

#[tokio::test]
async fn each_result_arrives_while_the_request_is_still_open() {
    let app = spawn_app_with(|_| {}).await;
    orders(&app).await;
    let mut streaming = Streaming::open(&app).await;
    let stream = app.js.get_stream("ORDERS").await.expect("stream");
    for i in 0..3u64 {
        streaming.send_line(&json!({"subject": "orders.new", "data": {"order": i}}));
        // Answered before the next line is even sent: results are not held to the end.
        let result = streaming
            .next(Duration::from_secs(10))
            .await
            .expect("a result");
        assert_eq!(result["index"], i, "{result}");
        assert_eq!(result["status"], 201, "{result}");
        assert_eq!(result["stream"], "ORDERS");
        let seq = result["seq"].as_u64().expect("seq");
        let stored = stream.get_raw_message(seq).await.expect("stored");
        assert_eq!(
            stored.payload.as_ref(),
            format!(r#"{{"order":{i}}}"#).as_bytes()
        );
    }
    streaming.finish();
    assert!(
        streaming.next(Duration::from_secs(10)).await.is_none(),
        "the answer ends after the last result once the body ended"
    );
    assert_eq!(stored_count(&app, "ORDERS").await, 3);
}

async fn ten_thousand_lines_are_stored_once_in_order(topology: Topology) {
    const LINES: u64 = 10_000;
    // A small window: the body is read only as fast as PubAcks make room.
    let app = spawn_app_on_with(topology, |c| c.publish_stream_window = 64).await;
    orders(&app).await;
    let mut streaming = Streaming::open(&app).await;
    // Chunks that split lines anywhere.
    let body: String = (0..LINES)
        .map(|i| {
            format!(
                "{}\n",
                json!({"subject": format!("orders.{}", i % 7), "data": format!("line {i}"), "idempotency_key": format!("k{i}")})
            )
        })
        .collect();
    for chunk in body.as_bytes().chunks(997) {
        streaming.send(std::str::from_utf8(chunk).unwrap_or_else(|_| unreachable!("ASCII")));
    }
    streaming.finish();
    let mut last_seq = 0;
    for i in 0..LINES {
        let result = streaming
            .next(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("the answer ended after {i} results"));
        assert_eq!(result["index"], i, "{result}");
        assert_eq!(result["status"], 201, "{result}");
        let seq = result["seq"].as_u64().expect("seq");
        assert!(seq > last_seq, "line {i}: seq {seq} after {last_seq}");
        last_seq = seq;
    }
    assert!(streaming.next(Duration::from_secs(10)).await.is_none());
    assert_eq!(stored_count(&app, "ORDERS").await, LINES);
    // Stored in line order: the message at the last sequence is the last line.
    let stream = app.js.get_stream("ORDERS").await.expect("stream");
    let last = stream.get_raw_message(last_seq).await.expect("last");
    assert_eq!(
        last.payload.as_ref(),
        format!("line {}", LINES - 1).as_bytes()
    );
    let first = stream.get_raw_message(1).await.expect("first");
    assert_eq!(first.payload.as_ref(), b"line 0");
}

crate::on_r1_and_r3!(ten_thousand_lines_are_stored_once_in_order);

#[tokio::test]
async fn a_bad_line_gets_its_own_error_and_the_stream_goes_on() {
    let app = spawn_app_with(|c| c.max_batch_bytes = 4096).await;
    orders(&app).await;
    let mut streaming = Streaming::open(&app).await;
    let long = "x".repeat(5000);
    let lines = [
        (
            json!({"subject": "orders.a", "data": "first", "idempotency_key": "a"}).to_string(),
            201,
        ),
        ("{not json".to_owned(), 400),
        (
            json!({"subject": "$JS.API.STREAM.DELETE.ORDERS", "data": "+"}).to_string(),
            400,
        ),
        (
            json!({"subject": "nowhere.x", "data": "lost"}).to_string(),
            404,
        ),
        (
            json!({"subject": "orders.a", "data": long}).to_string(),
            413,
        ),
        (
            json!({"subject": "orders.a", "data": "again", "idempotency_key": "a"}).to_string(),
            200,
        ),
        (
            json!({"subject": "orders.b", "data": "last", "Nats-Msg-Id": "x"}).to_string(),
            400,
        ),
        (
            json!({"subject": "orders.b", "data": "last"}).to_string(),
            201,
        ),
    ];
    for (line, _) in &lines {
        streaming.send(&format!("{line}\r\n\n"));
    }
    streaming.finish();
    let mut results = Vec::new();
    while let Some(result) = streaming.next(Duration::from_secs(10)).await {
        results.push(result);
    }
    assert_eq!(results.len(), lines.len(), "{results:#?}");
    for (i, (result, (line, status))) in results.iter().zip(&lines).enumerate() {
        assert_eq!(result["index"], i, "{result}");
        assert_eq!(result["status"], *status, "line {i} ({line:.60}): {result}");
        if *status >= 400 {
            assert!(
                result["error"]["detail"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{result}"
            );
        }
    }
    assert_eq!(results[5]["duplicate"], true);
    assert_eq!(results[5]["seq"], results[0]["seq"]);
    assert_eq!(results[4]["error"]["code"], "payload_too_large");
    // Stored: the first and the last line, nothing else.
    assert_eq!(stored_count(&app, "ORDERS").await, 2);
    let stream = app.js.get_stream("ORDERS").await.expect("stream");
    let second = stream.get_raw_message(2).await.expect("second");
    assert_eq!(second.payload.as_ref(), b"last");
    // JetStream's API was not reached: ORDERS still exists with its messages.
    assert!(app.js.get_stream("ORDERS").await.is_ok());
}

#[tokio::test]
async fn a_stream_outlives_the_body_timeout_while_it_sends_and_ends_with_408_when_it_stalls() {
    let app = spawn_app_with(|c| {
        c.body_idle_timeout = Duration::from_millis(800);
        c.body_timeout = Duration::from_secs(1);
    })
    .await;
    orders(&app).await;
    let mut streaming = Streaming::open(&app).await;
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    // Longer than --body-timeout, with a line (or a blank keep-alive line) well within the
    // idle timeout each time.
    while started.elapsed() < Duration::from_millis(2500) {
        if sent.is_multiple_of(2) {
            streaming.send_line(&json!({"subject": "orders.slow", "data": sent}));
            let result = streaming
                .next(Duration::from_secs(10))
                .await
                .expect("result");
            assert_eq!(result["status"], 201, "{result}");
        } else {
            streaming.send("\n");
        }
        sent += 1;
        // Pacing: this is the slow client under test, not a wait for a condition.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = stored_count(&app, "ORDERS").await;
    assert_eq!(stored, sent.div_ceil(2));
    // Now nothing: the stream is cut after the idle timeout with a last 408 line.
    let last = streaming
        .next(Duration::from_secs(10))
        .await
        .expect("a last line");
    assert_eq!(last["status"], 408, "{last}");
    assert_eq!(last["index"], stored, "{last}");
    assert_eq!(last["error"]["code"], "request_timeout");
    assert!(streaming.next(Duration::from_secs(10)).await.is_none());
}

#[tokio::test]
async fn without_the_ndjson_accept_the_same_body_is_a_bounded_batch() {
    let app = spawn_app_with(|_| {}).await;
    orders(&app).await;
    let body = "{\"subject\":\"orders.a\",\"data\":1}\n{\"subject\":\"orders.a\",\"data\":2}\n";
    let answer = app
        .http
        .post(app.url("/v1/publish"))
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("batch");
    assert_eq!(answer.status(), 200);
    let batch: Value = answer.json().await.expect("batch result");
    assert_eq!(batch["stored"], 2, "{batch}");
    // Streaming cannot be atomic.
    let answer = app
        .http
        .post(app.url("/v1/publish?atomic=true"))
        .header("Content-Type", "application/x-ndjson")
        .header("Accept", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("atomic stream");
    assert_eq!(answer.status(), 400);
    let problem: Value = answer.json().await.expect("problem");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("atomic")),
        "{problem}"
    );
    assert_eq!(stored_count(&app, "ORDERS").await, 2);
}

#[tokio::test]
async fn over_http2_the_stream_works_the_same() {
    let app = spawn_app_with(|_| {}).await;
    orders(&app).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2c client");
    let (input, body) = mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    let answer = client
        .post(app.url("/v1/publish"))
        .header("Content-Type", "application/x-ndjson")
        .header("Accept", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let answer = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("answer head")
        .expect("answer");
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    let mut output = answer.bytes_stream();
    input
        .unbounded_send(Ok(Bytes::from_static(
            b"{\"subject\":\"orders.h2\",\"data\":\"one\"}\n",
        )))
        .expect("send");
    let chunk = tokio::time::timeout(Duration::from_secs(10), output.next())
        .await
        .expect("a result while the stream is open")
        .expect("chunk")
        .expect("bytes");
    let result: Value = serde_json::from_slice(chunk.trim_ascii()).expect("result line");
    assert_eq!(result["status"], 201, "{result}");
    drop(input);
    loop {
        let rest = tokio::time::timeout(Duration::from_secs(10), output.next())
            .await
            .expect("the end");
        match rest {
            None => break,
            Some(Ok(chunk)) if chunk.is_empty() => {}
            other => panic!("more after the last result: {other:?}"),
        }
    }
    let stream = app.js.get_stream("ORDERS").await.expect("stream");
    let stored = stream.get_raw_message(1).await.expect("stored");
    assert_eq!(stored.payload.as_ref(), b"one");
}
