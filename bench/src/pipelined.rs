//! Publishing without one request per message: single publishes multiplexed over one HTTP/2
//! connection, a streaming publish (NDJSON in, NDJSON results out, one request), and
//! WebSocket `publish` ops pipelined on one socket. Each is compared with
//! [`crate::scenarios::direct_pipelined`] or its HTTP/1.1 counterpart in the same run.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2::SendRequest;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::load::{self, Op, Recorder};
use crate::report::Scenario;
use crate::scenarios::{Ctx, SUBJECT};

/// Row names the targets refer to.
pub const H2_ONE: &str = "publish one c=64 h2, 1 connection";
pub const STREAM_PUBLISH: &str = "stream publish";
pub const WS_PUBLISH: &str = "ws publish pipelined";

/// Lines per chunk of the streaming publish's body.
const LINES_PER_CHUNK: usize = 64;
/// Chunks the body may run ahead of what the gateway read.
const CHUNKS_QUEUED: usize = 4;
/// WebSocket `publish` ops in flight. The gateway would take up to its
/// `--publish-stream-window` (1000), but the rate is the same at 256 (the row is CPU-bound, not
/// window-bound) with a quarter of the latency.
const WS_WINDOW: usize = 256;

/// One item of a batch or a stream, carrying the payload as text (the bench payload is ASCII).
fn item_line(ctx: &Ctx) -> Result<Bytes> {
    let text = std::str::from_utf8(&ctx.payload).context("the bench payload is ASCII")?;
    let mut line = serde_json::to_vec(&serde_json::json!({"subject": SUBJECT, "data": text}))
        .context("cannot encode an item")?;
    line.push(b'\n');
    Ok(Bytes::from(line))
}

// ---------------------------------------------------------------------------------------------
// HTTP/2

/// A worker sharing the one HTTP/2 connection: `POST /v1/publish/{subject}` on its own stream.
struct H2Publish {
    sender: SendRequest<Full<Bytes>>,
    uri: Uri,
    body: Bytes,
}

impl Op for H2Publish {
    async fn call(&mut self) -> Result<u64> {
        self.sender
            .ready()
            .await
            .context("the HTTP/2 connection closed")?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .body(Full::new(self.body.clone()))
            .context("cannot build the request")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .context("HTTP/2 publish failed")?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("cannot read the answer")?
            .to_bytes();
        if status != StatusCode::CREATED {
            bail!(
                "POST {} over HTTP/2 answered {status}: {}",
                self.uri,
                String::from_utf8_lossy(&body)
            );
        }
        Ok(1)
    }
}

/// `publish one` with `concurrency` requests in flight as streams of one cleartext HTTP/2
/// connection (prior knowledge).
pub async fn h2_publish_one(ctx: &Ctx, concurrency: usize) -> Result<Scenario> {
    ctx.fresh_stream().await?;
    let tcp = TcpStream::connect(ctx.gateway)
        .await
        .with_context(|| format!("cannot connect to {}", ctx.gateway))?;
    tcp.set_nodelay(true).context("cannot set TCP_NODELAY")?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .context("HTTP/2 handshake failed")?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let path = format!("/v1/publish/{SUBJECT}");
    let uri: Uri = format!("http://{}{path}", ctx.gateway)
        .parse()
        .context("bad URI")?;
    let workers = (0..concurrency)
        .map(|_| H2Publish {
            sender: sender.clone(),
            uri: uri.clone(),
            body: ctx.payload.clone(),
        })
        .collect();
    let measured = load::closed_loop(workers, ctx.timing, &ctx.probe).await;
    driver.abort();
    let m = measured?;
    ctx.verify_stored(m.messages).await?;
    let what = format!(
        "POST {path}, {} B body, {concurrency} streams of one HTTP/2 connection",
        ctx.payload.len()
    );
    Ok(Scenario::new(H2_ONE, "jetway", what, concurrency, &m).payload(ctx.payload.len()))
}

// ---------------------------------------------------------------------------------------------
// Streaming publish

/// One `POST /v1/publish` with `Accept: application/x-ndjson`: the body is NDJSON lines
/// written for the whole window, the answer read as it arrives, one result line per line.
/// A line's latency is from when its chunk was handed to the connection to its result.
pub async fn stream_publish(ctx: &Ctx) -> Result<Scenario> {
    ctx.fresh_stream().await?;
    let line = item_line(ctx)?;
    let chunk = Bytes::from(line.repeat(LINES_PER_CHUNK));
    let mut recorder = Recorder::new(ctx.timing);
    let until = recorder.until();
    let cpu = ctx.probe.window(recorder.from(), until);

    // When each chunk was handed over, oldest first.
    let sent: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(CHUNKS_QUEUED);
    let producer = {
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            while Instant::now() < until {
                if let Ok(mut sent) = sent.lock() {
                    sent.push_back(Instant::now());
                }
                if tx.send(chunk.clone()).await.is_err() {
                    return;
                }
            }
        })
    };
    let body =
        StreamBody::new(tokio_stream_from(rx).map(|bytes| Ok::<_, Infallible>(Frame::data(bytes))));

    let tcp = TcpStream::connect(ctx.gateway)
        .await
        .with_context(|| format!("cannot connect to {}", ctx.gateway))?;
    tcp.set_nodelay(true).context("cannot set TCP_NODELAY")?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .context("HTTP handshake failed")?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/publish")
        .header(hyper::header::HOST, ctx.gateway.to_string())
        .header(CONTENT_TYPE, "application/x-ndjson")
        .header(ACCEPT, "application/x-ndjson")
        .body(body)
        .context("cannot build the request")?;
    let response = sender
        .send_request(request)
        .await
        .context("streaming publish failed")?;
    if response.status() != StatusCode::OK {
        bail!("streaming publish answered {}", response.status());
    }
    let mut answer = response.into_body();
    let mut pending: Vec<u8> = Vec::new();
    let mut results: u64 = 0;
    let mut chunk_began = None;
    while let Some(frame) = answer.frame().await {
        let frame = frame.context("cannot read the answer")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let mut start = 0;
        while let Some(at) = memchr::memchr(b'\n', &pending[start..]) {
            let result = &pending[start..start + at];
            if memchr::memmem::find(result, b"\"status\":201").is_none() {
                bail!(
                    "line {results} was not stored: {}",
                    String::from_utf8_lossy(result)
                );
            }
            if results.is_multiple_of(LINES_PER_CHUNK as u64) {
                chunk_began = sent.lock().ok().and_then(|mut s| s.pop_front());
            }
            if let Some(began) = chunk_began {
                recorder.record(began, Instant::now(), 1);
            }
            results += 1;
            start += at + 1;
        }
        pending.drain(..start);
    }
    driver.abort();
    producer.abort();
    let m = recorder.finish(cpu.await?);
    ctx.verify_stored(m.messages).await?;
    let what = format!(
        "POST /v1/publish, NDJSON lines of {} B payloads in, results streamed out, one request",
        ctx.payload.len()
    );
    Ok(Scenario::new(STREAM_PUBLISH, "jetway", what, 1, &m).payload(ctx.payload.len()))
}

/// A receiver as a stream.
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

// ---------------------------------------------------------------------------------------------
// WebSocket publish

/// `publish` ops on one `/v1/ws` socket, [`WS_WINDOW`] awaiting their `publish_ack`.
pub async fn ws_publish(ctx: &Ctx) -> Result<Scenario> {
    ctx.fresh_stream().await?;
    let text = std::str::from_utf8(&ctx.payload).context("the bench payload is ASCII")?;
    let url = format!("ws://{}/v1/ws", ctx.gateway);
    let (socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    let (mut write, mut read) = socket.split();
    let mut recorder = Recorder::new(ctx.timing);
    let until = recorder.until();
    let cpu = ctx.probe.window(recorder.from(), until);
    // Send time by op id (the id is the index).
    let mut began: Vec<Instant> = Vec::with_capacity(1 << 20);
    let mut acked: u64 = 0;
    loop {
        while began.len() as u64 - acked < WS_WINDOW as u64 && Instant::now() < until {
            let id = began.len();
            let op = serde_json::json!({"op": "publish", "id": id.to_string(), "subject": SUBJECT, "data": text});
            began.push(Instant::now());
            write
                .feed(WsMessage::Text(op.to_string().into()))
                .await
                .context("WebSocket send failed")?;
        }
        write.flush().await.context("WebSocket flush failed")?;
        if acked == began.len() as u64 {
            break;
        }
        // Every answer already received is taken before the window is refilled, so the new ops
        // share a flush, as a NATS client's publishes share its connection's writes.
        let mut next = Some(read.next().await);
        while let Some(frame) = next {
            let frame = frame
                .context("the socket ended")?
                .context("WebSocket read failed")?;
            if let WsMessage::Text(frame) = frame {
                let frame: serde_json::Value = serde_json::from_str(&frame)
                    .with_context(|| format!("not a frame: {frame}"))?;
                if frame["type"] != "publish_ack" {
                    bail!("publish not stored: {frame}");
                }
                let id: usize = frame["id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .with_context(|| format!("no id: {frame}"))?;
                let sent_at = *began.get(id).with_context(|| format!("unknown id {id}"))?;
                recorder.record(sent_at, Instant::now(), 1);
                acked += 1;
            }
            next = read.next().now_or_never();
        }
    }
    let _ = write.close().await;
    let m = recorder.finish(cpu.await?);
    ctx.verify_stored(m.messages).await?;
    let what = format!(
        "/v1/ws publish ops, {WS_WINDOW} in flight on one socket, {} B",
        ctx.payload.len()
    );
    Ok(Scenario::new(WS_PUBLISH, "jetway", what, WS_WINDOW, &m).payload(ctx.payload.len()))
}
