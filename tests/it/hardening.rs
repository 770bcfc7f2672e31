//! Hardening at the HTTP level: clients that hold connections without finishing a request head
//! or a body, and the cap on open connections.
//!
//! Slow clients are raw TCP sockets, so that what the server does to the connection itself
//! (close it, answer 408, refuse it) is what is checked. Every wait has a deadline; timeouts are
//! configured short so that the tests run in seconds.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{TestApp, eventually, spawn_app_with};
use crate::ws::{Ws, send};

const STREAM: &str = "ORDERS";
/// How long the server may take to answer or close, well above every configured timeout.
const DEADLINE: Duration = Duration::from_secs(10);

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
async fn metric(app: &TestApp, name: &str) -> i64 {
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
    eventually(
        "a freed slot to serve a new connection",
        DEADLINE,
        || async {
            let mut socket = connect(&app).await;
            exchange(&mut socket, HEALTHZ)
                .await
                .filter(|r| r.status == 200)
        },
    )
    .await;
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
    eventually(
        "the socket's slot to serve a new connection",
        DEADLINE,
        || async {
            let mut socket = connect(&app).await;
            exchange(&mut socket, HEALTHZ)
                .await
                .filter(|r| r.status == 200)
        },
    )
    .await;
}
