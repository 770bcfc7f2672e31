//! Hardening at the HTTP level: clients that hold connections without finishing a request head
//! or a body, the cap on open connections, cross-origin requests that would change state (with
//! authentication off as well as on), bounds on client ids, consumer durations and times, and
//! tokens with a `crit` header.
//!
//! Slow clients are raw TCP sockets, so that what the server does to the connection itself
//! (close it, answer 408, refuse it) is what is checked. Every wait has a deadline; timeouts are
//! configured short so that the tests run in seconds.

use std::time::{Duration, Instant};

use futures::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{TestApp, eventually, json, problem, spawn_app, spawn_app_with};
use crate::ws::{Ws, publish_direct, send};

const STREAM: &str = "ORDERS";
/// How long the server may take to answer or close, well above every configured timeout.
const DEADLINE: Duration = Duration::from_secs(10);
/// The HMAC secret of the gateways that require tokens.
const SECRET: &str = "jetway-hardening-tests-hmac-secret-0123456789";

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 over TCP

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.addr).await.expect("connect")
}

/// Reads until the server closes the connection (EOF or reset), within [`DEADLINE`]; answers
/// what arrived before. Fails if the connection is still open at the deadline.
async fn read_until_closed(socket: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => panic!(
                "the connection is still open after {DEADLINE:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0) | Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// A response read off a raw socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some(Self {
            status,
            head,
            body: bytes[end + 4..].to_vec(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn problem(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        serde_json::from_slice(&self.body).expect("problem JSON")
    }
}

/// Sends one request on a kept-alive connection and reads its response (by `Content-Length`);
/// `None` when the connection fails or closes first.
async fn exchange(socket: &mut TcpStream, request: &str) -> Option<RawResponse> {
    socket.write_all(request.as_bytes()).await.ok()?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(response) = RawResponse::parse(&received) {
            let length: usize = response.header("content-length")?.parse().ok()?;
            if response.body.len() >= length {
                return Some(response);
            }
        }
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: jetway\r\n\r\n";

/// `GET /metrics` on a fresh connection: the value of one unlabelled metric.
pub(crate) async fn metric(app: &TestApp, name: &str) -> i64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

// ---------------------------------------------------------------------------------------------
// Slow and endless connections

#[tokio::test]
async fn half_a_request_head_is_closed_within_the_header_read_timeout() {
    let app = spawn_app_with(|c| c.header_read_timeout = Duration::from_secs(1)).await;
    let mut sockets = Vec::new();
    for _ in 0..50 {
        let mut socket = connect(&app).await;
        socket
            .write_all(b"POST /v1/publish/orders.new HTTP/1.1\r\nHost: jetway\r\nContent-Le")
            .await
            .expect("half a head");
        sockets.push(socket);
    }
    // And one that never sends a byte.
    sockets.push(connect(&app).await);
    let started = Instant::now();

    for socket in &mut sockets {
        let received = read_until_closed(socket).await;
        assert!(
            received.is_empty(),
            "no answer to half a head: {received:?}"
        );
    }
    let lived = started.elapsed();

    eprintln!("51 half-open connections all closed after {lived:?} (header read timeout 1s)");
    assert!(
        lived < Duration::from_secs(5),
        "closed only after {lived:?}"
    );
    assert!(metric(&app, "jetway_http_header_timeouts_total").await >= 51);
    let mut socket = connect(&app).await;
    let answer = exchange(&mut socket, HEALTHZ).await.expect("healthz");
    assert_eq!(answer.status, 200, "a whole head is still served");
}

#[tokio::test]
async fn a_kept_alive_connection_serves_requests_sent_within_the_header_read_timeout() {
    let app = spawn_app_with(|c| c.header_read_timeout = Duration::from_secs(2)).await;
    let mut socket = connect(&app).await;

    for _ in 0..3 {
        let answer = exchange(&mut socket, HEALTHZ).await.expect("healthz");
        assert_eq!(answer.status, 200);
    }
    // A head written in pieces, each well within the timeout, is served.
    for piece in ["GET /healthz HTTP/1.1\r\n", "Host: jet", "way\r\n"] {
        socket.write_all(piece.as_bytes()).await.expect("piece");
        tokio::task::yield_now().await;
    }
    let answer = exchange(&mut socket, "\r\n").await.expect("healthz");
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn a_stalled_body_answers_408_problem_closes_the_connection_and_stores_nothing() {
    let app = spawn_app_with(|c| c.body_idle_timeout = Duration::from_secs(1)).await;
    app.create_stream(STREAM, &["orders.>"]).await;
    let mut socket = connect(&app).await;
    socket
        .write_all(
            b"POST /v1/publish/orders.new HTTP/1.1\r\nHost: jetway\r\n\
              Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .await
        .expect("head and ten bytes of a hundred");
    let started = Instant::now();

    let received = read_until_closed(&mut socket).await;
    let lived = started.elapsed();

    let response = RawResponse::parse(&received)
        .unwrap_or_else(|| panic!("no response: {:?}", String::from_utf8_lossy(&received)));
    assert_eq!(response.status, 408, "{response:?}");
    let problem = response.problem();
    assert_eq!(problem["code"], "request_timeout", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("body-idle-timeout"),
        "{problem}"
    );
    assert_eq!(response.header("connection"), Some("close"));
    eprintln!("a stalled body was answered 408 and closed after {lived:?} (idle timeout 1s)");
    assert!(lived < Duration::from_secs(5), "cut only after {lived:?}");
    assert!(app.stored(STREAM).await.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn a_body_trickled_byte_by_byte_is_cut_with_408_at_the_body_timeout() {
    let app = spawn_app_with(|c| {
        c.body_idle_timeout = Duration::from_secs(1);
        c.body_timeout = Duration::from_secs(2);
    })
    .await;
    app.create_stream(STREAM, &["orders.>"]).await;
    let socket = connect(&app).await;
    let (mut reader, mut writer) = socket.into_split();
    writer
        .write_all(
            b"POST /v1/publish HTTP/1.1\r\nHost: jetway\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        )
        .await
        .expect("head");
    let started = Instant::now();
    // One byte every 100 ms: never idle for the idle timeout, never done either.
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });

    let mut received = Vec::new();
    let read = tokio::time::timeout(DEADLINE, reader.read_to_end(&mut received)).await;
    let lived = started.elapsed();
    trickle.abort();

    assert!(
        read.is_ok(),
        "the connection is still open after {DEADLINE:?}"
    );
    let response = RawResponse::parse(&received)
        .unwrap_or_else(|| panic!("no response: {:?}", String::from_utf8_lossy(&received)));
    assert_eq!(response.status, 408, "{response:?}");
    let problem = response.problem();
    assert_eq!(problem["code"], "request_timeout", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("--body-timeout"),
        "{problem}"
    );
    eprintln!("a body trickled at 10 bytes/s was answered 408 after {lived:?} (body timeout 2s)");
    assert!(
        lived >= Duration::from_millis(1900) && lived < Duration::from_secs(6),
        "cut after {lived:?}"
    );
    assert!(app.stored(STREAM).await.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_while_the_earlier_ones_are_served() {
    let app = spawn_app_with(|c| c.max_tcp_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut socket = connect(&app).await;
        let answer = exchange(&mut socket, HEALTHZ).await.expect("healthz");
        assert_eq!(answer.status, 200);
        held.push(socket);
    }

    let mut refused = connect(&app).await;
    let _ = refused.write_all(HEALTHZ.as_bytes()).await;
    let started = Instant::now();
    let received = read_until_closed(&mut refused).await;
    let closed_after = started.elapsed();

    assert!(
        received.is_empty(),
        "the fourth connection got {received:?}"
    );
    assert!(
        closed_after < Duration::from_secs(2),
        "closed after {closed_after:?}"
    );
    for socket in &mut held {
        let answer = exchange(socket, HEALTHZ).await.expect("a held connection");
        assert_eq!(answer.status, 200, "earlier connections keep working");
    }
    let answer = exchange(
        &mut held[0],
        "GET /metrics HTTP/1.1\r\nHost: jetway\r\n\r\n",
    )
    .await
    .expect("metrics");
    let text = String::from_utf8_lossy(&answer.body);
    assert!(text.contains("\njetway_http_connections 3\n"), "{text}");
    assert!(
        text.contains("\njetway_http_connections_refused_total 1\n"),
        "{text}"
    );

    drop(held.pop());
    new_connection_is_served(&app, "a freed slot to serve a new connection").await;
}

#[tokio::test]
async fn an_upgraded_websocket_holds_its_connection_slot_until_it_closes() {
    let app = spawn_app_with(|c| c.max_tcp_connections = 2).await;
    let mut ws: Ws = crate::ws::connect(&app, "/v1/ws").await;
    let mut plain = connect(&app).await;
    assert_eq!(
        exchange(&mut plain, HEALTHZ).await.expect("healthz").status,
        200
    );

    let mut third = connect(&app).await;
    let _ = third.write_all(HEALTHZ.as_bytes()).await;
    assert!(
        read_until_closed(&mut third).await.is_empty(),
        "over the cap"
    );
    send(&mut ws, &json!({"op": "ping", "id": "p"})).await;
    let pong = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("pong");
    assert!(
        matches!(pong, Some(Ok(Message::Text(ref t))) if t.contains("pong")),
        "{pong:?}"
    );

    ws.close(None).await.expect("close");
    drop(ws);
    new_connection_is_served(&app, "the socket's slot to serve a new connection").await;
}

/// Waits until a new connection gets `/healthz` answered (a slot is free again).
async fn new_connection_is_served(app: &TestApp, what: &str) {
    eventually(what, DEADLINE, || async {
        let mut socket = connect(app).await;
        exchange(&mut socket, HEALTHZ)
            .await
            .filter(|r| r.status == 200)
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Cross-origin requests that change state

/// ORDERS with three messages, stored directly.
async fn orders_with_three_messages(app: &TestApp) {
    app.create_stream(STREAM, &["orders.>"]).await;
    for n in 0..3 {
        publish_direct(&app.js, "orders.new", format!("order {n}")).await;
    }
}

async fn message_count(app: &TestApp) -> u64 {
    let mut stream = app.js.get_stream(STREAM).await.expect("stream");
    stream.info().await.expect("info").state.messages
}

/// A POST to purge ORDERS with an empty body and these headers.
async fn purge_with(
    app: &TestApp,
    path_query: &str,
    headers: &[(&str, String)],
) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url(&format!("/v1/streams/{STREAM}/purge{path_query}")));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("purge request")
}

const FORM_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
];

#[tokio::test]
async fn form_post_from_another_origin_cannot_purge_a_stream_with_auth_off() {
    let app = spawn_app().await;
    orders_with_three_messages(&app).await;

    for content_type in FORM_TYPES {
        let response = purge_with(
            &app,
            "",
            &[
                ("content-type", content_type.to_owned()),
                ("origin", "https://evil.example".to_owned()),
                ("sec-fetch-site", "cross-site".to_owned()),
            ],
        )
        .await;
        let body = problem(response, 403, "cross_origin").await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("https://evil.example"),
            "{body}"
        );
    }

    assert_eq!(
        message_count(&app).await,
        3,
        "the stream keeps its messages"
    );
}

#[tokio::test]
async fn form_post_without_origin_is_refused_by_its_content_type_or_fetch_metadata() {
    let app = spawn_app().await;
    orders_with_three_messages(&app).await;

    // A browser too old to send Origin still sends a form's content type.
    for content_type in FORM_TYPES {
        let response = purge_with(&app, "", &[("content-type", content_type.to_owned())]).await;
        problem(response, 415, "unsupported_media_type").await;
    }
    // One that says the request comes from another site, without saying which.
    for site in ["cross-site", "same-site"] {
        let response = purge_with(&app, "", &[("sec-fetch-site", site.to_owned())]).await;
        problem(response, 403, "cross_origin").await;
    }

    assert_eq!(
        message_count(&app).await,
        3,
        "the stream keeps its messages"
    );
}

#[tokio::test]
async fn every_state_changing_route_refuses_a_page_of_another_origin() {
    let app = spawn_app().await;
    orders_with_three_messages(&app).await;
    let evil = "https://evil.example";
    let requests = [
        app.http
            .post(app.url("/v1/publish/orders.new"))
            .header("content-type", "text/plain")
            .body("forged"),
        app.http
            .post(app.url("/v1/publish"))
            .header("content-type", "text/plain")
            .body(r#"[{"subject":"orders.new","data":"forged"}]"#),
        app.http.delete(app.url(&format!("/v1/streams/{STREAM}"))),
        app.http
            .put(app.url(&format!("/v1/streams/{STREAM}/consumers/forged")))
            .json(&json!({})),
        app.http
            .post(app.url(&format!("/v1/streams/{STREAM}/consumers/forged/fetch"))),
        app.http
            .post(app.url("/v1/acks"))
            .json(&json!({"acks": [{"ack_id": "x", "action": "ack"}]})),
    ];

    for request in requests {
        let response = request
            .header("origin", evil)
            .send()
            .await
            .expect("request");
        problem(response, 403, "cross_origin").await;
    }

    assert_eq!(
        message_count(&app).await,
        3,
        "nothing published, nothing deleted"
    );
    let consumers = app
        .js
        .get_stream(STREAM)
        .await
        .expect("stream")
        .consumer_names()
        .count()
        .await;
    assert_eq!(consumers, 0, "no consumer was created");
    // Reading is not refused: CORS governs whether the page may see the answer.
    let listed = app
        .http
        .get(app.url("/v1/streams"))
        .header("origin", evil)
        .send()
        .await
        .expect("list");
    json(listed, 200).await;
}

#[tokio::test]
async fn same_origin_allowed_origin_and_curl_like_requests_still_change_state() {
    let app = spawn_app_with(|c| c.cors_origin = vec!["https://app.example".to_owned()]).await;
    orders_with_three_messages(&app).await;
    let own_origin = format!("http://{}", app.addr);

    let cases: [(&str, Vec<(&str, String)>); 5] = [
        (
            "the console's own origin",
            vec![
                ("origin", own_origin.clone()),
                ("sec-fetch-site", "same-origin".to_owned()),
            ],
        ),
        (
            "an origin in --cors-origin",
            vec![
                ("origin", "https://app.example".to_owned()),
                ("sec-fetch-site", "cross-site".to_owned()),
            ],
        ),
        ("curl without a body", vec![]),
        (
            "an SDK sending JSON",
            vec![("content-type", "application/json".to_owned())],
        ),
        (
            "a typed-in address",
            vec![("sec-fetch-site", "none".to_owned())],
        ),
    ];
    for (who, headers) in cases {
        publish_direct(&app.js, "orders.new", "again").await;
        let response = purge_with(&app, "", &headers).await;
        assert_eq!(
            response.status().as_u16(),
            200,
            "{who}: {:?}",
            response.text().await
        );
        assert_eq!(message_count(&app).await, 0, "{who} purged");
    }
    // The raw publish keeps taking any content type from non-browser clients.
    let published = app
        .publish("orders.new", "plain", &[("content-type", "text/plain")])
        .await;
    json(published, 201).await;
}

/// A token for `alice` with these grants, signed with [`SECRET`].
fn sign(header: &Header, grants: &Value) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"sub": "alice", "iat": now, "exp": now + 3600, "jetway": grants});
    jsonwebtoken::encode(
        header,
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

#[tokio::test]
async fn cross_origin_purge_with_a_valid_admin_token_in_the_query_is_refused() {
    let app = spawn_app_with(|c| {
        c.no_auth = false;
        c.jwt_secret = vec![SECRET.to_owned()];
    })
    .await;
    orders_with_three_messages(&app).await;
    let token = sign(&Header::new(Algorithm::HS256), &json!({"admin": true}));

    let refused = purge_with(
        &app,
        &format!("?access_token={token}"),
        &[
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("origin", "https://evil.example".to_owned()),
        ],
    )
    .await;
    problem(refused, 403, "cross_origin").await;
    assert_eq!(
        message_count(&app).await,
        3,
        "the stream keeps its messages"
    );

    let purged = purge_with(&app, &format!("?access_token={token}"), &[]).await;
    assert_eq!(
        json(purged, 200).await["purged"],
        3,
        "the same token works from curl"
    );
}

// ---------------------------------------------------------------------------------------------
// Bounds: ids, durations, times

async fn error_frame(ws: &mut Ws) -> Value {
    loop {
        let next = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a frame")
            .expect("open socket")
            .expect("frame");
        if let Message::Text(text) = next {
            let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
            let shown: String = text.chars().take(300).collect();
            assert_eq!(frame["type"], "error", "{shown}");
            return frame;
        }
    }
}

#[tokio::test]
async fn websocket_ops_with_oversized_or_unprintable_ids_get_an_error_frame_without_the_id() {
    let app = spawn_app().await;
    orders_with_three_messages(&app).await;
    let mut ws = crate::ws::connect(&app, "/v1/ws").await;
    let huge = "s".repeat(100 * 1024);

    for op in [
        json!({"op": "subscribe", "id": huge, "stream": STREAM}),
        json!({"op": "subscribe", "id": "", "stream": STREAM}),
        json!({"op": "subscribe", "id": "line\nbreak", "stream": STREAM}),
        json!({"op": "publish", "id": "p".repeat(129), "subject": "orders.new", "data": "x"}),
        json!({"op": "ping", "id": huge}),
        json!({"op": "ack", "ack_id": "x", "id": huge}),
    ] {
        send(&mut ws, &op).await;
        let frame = error_frame(&mut ws).await;
        assert_eq!(frame["problem"]["code"], "invalid_parameter", "{frame}");
        assert!(frame.get("id").is_none(), "the id is not echoed: {frame}");
        assert!(frame.get("sub").is_none(), "{frame}");
        let text = frame.to_string();
        assert!(text.len() < 1024, "an error frame of {} bytes", text.len());
    }
    // A malformed op is answered without its oversized id too.
    send(&mut ws, &json!({"op": "subscribe", "id": huge})).await;
    let frame = error_frame(&mut ws).await;
    assert!(frame.get("id").is_none(), "{frame}");

    // Nothing was published, and a bounded id works on the same socket.
    assert_eq!(message_count(&app).await, 3);
    let id = "s".repeat(128);
    send(
        &mut ws,
        &json!({"op": "subscribe", "id": id, "stream": STREAM}),
    )
    .await;
    let frames = crate::ws::until_type(&mut ws, "caught_up").await;
    assert_eq!(frames[0]["type"], "subscribed", "{frames:?}");
    assert_eq!(frames[0]["sub"], id.as_str());
}

async fn put_consumer(app: &TestApp, name: &str, config: &Value) -> reqwest::Response {
    app.http
        .put(app.url(&format!("/v1/streams/{STREAM}/consumers/{name}")))
        .json(config)
        .send()
        .await
        .expect("put consumer")
}

#[tokio::test]
async fn consumer_durations_and_start_times_outside_the_bounds_are_refused_and_create_nothing() {
    let app = spawn_app().await;
    app.create_stream(STREAM, &["orders.>"]).await;

    for (field, config) in [
        ("ack_wait", json!({"ack_wait": "1ns"})),
        ("ack_wait", json!({"ack_wait": "500ms"})),
        ("ack_wait", json!({"ack_wait": "48h"})),
        (
            "backoff[1]",
            json!({"backoff": ["1s", "1ms"], "max_deliver": 5}),
        ),
        ("inactive_threshold", json!({"inactive_threshold": "1ns"})),
        (
            "inactive_threshold",
            json!({"inactive_threshold": "10000h"}),
        ),
        (
            "opt_start_time",
            json!({"deliver_policy": "by_start_time", "opt_start_time": "2300-01-01T00:00:00Z"}),
        ),
        (
            "opt_start_time",
            json!({"deliver_policy": "by_start_time", "opt_start_time": "1969-12-31T23:59:59Z"}),
        ),
    ] {
        let response = put_consumer(&app, "workers", &config).await;
        let body = problem(response, 400, "invalid_config").await;
        assert!(
            body["detail"].as_str().unwrap().contains(field),
            "{config}: {body}"
        );
    }
    let consumers = app
        .js
        .get_stream(STREAM)
        .await
        .expect("stream")
        .consumer_names()
        .count()
        .await;
    assert_eq!(consumers, 0, "no consumer was created");

    let edges = json!({
        "ack_wait": "1s", "backoff": ["1s", "24h"], "max_deliver": 5,
        "inactive_threshold": "8760h", "deliver_policy": "by_start_time",
        "opt_start_time": "2262-04-11T23:47:16Z"
    });
    json(put_consumer(&app, "workers", &edges).await, 201).await;
}

#[tokio::test]
async fn nak_delay_longer_than_a_day_is_refused_and_the_message_stays_pending() {
    let app = spawn_app().await;
    orders_with_three_messages(&app).await;
    json(
        put_consumer(&app, "workers", &json!({"ack_wait": "30s"})).await,
        201,
    )
    .await;
    let fetched = app
        .http
        .post(app.url(&format!("/v1/streams/{STREAM}/consumers/workers/fetch")))
        .json(&json!({}))
        .send()
        .await
        .expect("fetch");
    let fetched = json(fetched, 200).await;
    let ack_id = fetched["messages"][0]["ack_id"].clone();

    let response = app
        .http
        .post(app.url("/v1/acks"))
        .json(&json!({"acks": [{"ack_id": ack_id, "action": "nak", "delay": "25h"}]}))
        .send()
        .await
        .expect("acks");
    let body = problem(response, 400, "invalid_body").await;
    assert!(body["detail"].as_str().unwrap().contains("24h"), "{body}");

    let info = app
        .js
        .get_stream(STREAM)
        .await
        .expect("stream")
        .consumer_info("workers")
        .await
        .expect("consumer");
    assert_eq!(info.num_ack_pending, 1, "the delivery is still pending");
}

#[tokio::test]
async fn start_times_past_2262_or_before_1970_are_refused_instead_of_wrapping_around() {
    let app = spawn_app().await;
    orders_with_three_messages(&app).await;

    for time in [
        "2300-01-01T00:00:00Z",
        "2262-04-11T23:47:17Z",
        "1969-12-31T23:59:59Z",
    ] {
        for path in [
            format!("/v1/streams/{STREAM}/messages?start_time={time}"),
            format!("/v1/streams/{STREAM}/events?start_time={time}"),
        ] {
            let response = app.http.get(app.url(&path)).send().await.expect("request");
            let body = problem(response, 400, "invalid_parameter").await;
            assert!(
                body["detail"].as_str().unwrap().contains("2262"),
                "{path}: {body}"
            );
        }
    }
    let mut ws = crate::ws::connect(&app, "/v1/ws").await;
    send(
        &mut ws,
        &json!({"op": "subscribe", "id": "late", "stream": STREAM, "start_time": "2300-01-01T00:00:00Z"}),
    )
    .await;
    let frame = error_frame(&mut ws).await;
    assert_eq!(frame["id"], "late");
    assert_eq!(frame["problem"]["code"], "invalid_parameter", "{frame}");

    // The last representable time is a valid start: nothing stored after it.
    let page = app
        .http
        .get(app.url(&format!(
            "/v1/streams/{STREAM}/messages?start_time=2262-04-11T23:47:16Z"
        )))
        .send()
        .await
        .expect("page");
    assert_eq!(json(page, 200).await["messages"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[tokio::test]
async fn token_with_a_crit_header_returns_401_naming_crit() {
    let app = spawn_app_with(|c| {
        c.no_auth = false;
        c.jwt_secret = vec![SECRET.to_owned()];
    })
    .await;
    let grants = json!({"read": ["*"]});
    let mut critical = Header::new(Algorithm::HS256);
    critical.crit = Some(vec!["exp".to_owned()]);
    let mut unknown = Header::new(Algorithm::HS256);
    unknown.crit = Some(vec!["urn:example:must-understand".to_owned()]);

    for header in [critical, unknown] {
        let response = app
            .http
            .get(app.url("/v1/streams"))
            .bearer_auth(sign(&header, &grants))
            .send()
            .await
            .expect("request");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = problem(response, 401, "unauthorized").await;
        assert!(body["detail"].as_str().unwrap().contains("crit"), "{body}");
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }

    let plain = app
        .http
        .get(app.url("/v1/streams"))
        .bearer_auth(sign(&Header::new(Algorithm::HS256), &grants))
        .send()
        .await
        .expect("request");
    json(plain, 200).await;
}
