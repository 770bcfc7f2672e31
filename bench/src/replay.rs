//! Replays: one client reads a pre-filled stream from sequence 1 to its end, through jetway's
//! WebSocket (`/v1/streams/BENCH/ws?start_seq=1`), through its Server-Sent Events
//! (`/v1/streams/BENCH/events?start_seq=1`), and directly with an async-nats ordered pull
//! consumer. Each checks that the sequences arrive contiguous, 1 to the last, and is measured
//! from the connect (or the consumer's creation) to the last message; a row is as many whole
//! passes as fit in the measured time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::header::HOST;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::load::{CpuSplit, Measurement};
use crate::report::Scenario;
use crate::scenarios::{Ctx, STREAM};

pub const WS_REPLAY: &str = "ws replay";
pub const WS_BINARY_REPLAY: &str = "ws replay binary";
pub const SSE_REPLAY: &str = "sse replay";
pub const DIRECT_REPLAY: &str = "direct ordered replay";

/// Messages in the replayed stream, and their payload size.
pub const MESSAGES: u64 = 200_000;
pub const PAYLOAD_BYTES: usize = 1024;

/// How far one read goes: a warm-up pass reads for a while, the measured pass to the end.
#[derive(Debug, Clone, Copy)]
enum Until {
    Elapsed(Duration),
    Last,
}

impl Until {
    /// True when the read is over after `seq`.
    fn done(self, seq: u64, began: Instant) -> bool {
        match self {
            Self::Elapsed(limit) => seq >= MESSAGES || began.elapsed() >= limit,
            Self::Last => seq >= MESSAGES,
        }
    }
}

/// What one read saw.
struct Read {
    messages: u64,
    /// Bytes received on the wire above TCP (frame texts, SSE bytes, NATS payloads).
    wire_bytes: u64,
}

fn row(name: &str, path: &'static str, what: String, m: &Measurement, seen: &Read) -> Scenario {
    let per_message = seen.wire_bytes as f64 / seen.messages.max(1) as f64;
    Scenario::new(name, path, what, 1, m)
        .payload(PAYLOAD_BYTES)
        .note(format!(
            "{} passes; {:.0} B/msg, {:.0} MB/s on the wire",
            m.requests,
            per_message,
            seen.wire_bytes as f64 / m.elapsed.as_secs_f64().max(1e-9) / 1e6
        ))
}

/// One replay path of [`replays`] and what its passes measured.
struct Lane {
    name: &'static str,
    reader: Reader,
    passes: Vec<Duration>,
    elapsed: Duration,
    /// CPU percentages, each times the seconds of its pass.
    cpu_seconds: [f64; 4],
    seen: Read,
    /// Ordered replays through the gateway that recreated their consumer during the passes.
    recovered: u64,
}

enum Reader {
    Ws(String),
    Sse(Uri),
    Direct,
}

impl Lane {
    fn new(ctx: &Ctx, name: &'static str) -> Result<Self> {
        let reader = match name {
            WS_REPLAY => Reader::Ws(format!(
                "ws://{}/v1/streams/{STREAM}/ws?start_seq=1",
                ctx.gateway
            )),
            WS_BINARY_REPLAY => Reader::Ws(format!(
                "ws://{}/v1/streams/{STREAM}/ws?start_seq=1&encoding=binary",
                ctx.gateway
            )),
            SSE_REPLAY => Reader::Sse(
                format!("/v1/streams/{STREAM}/events?start_seq=1")
                    .parse()
                    .context("events path")?,
            ),
            DIRECT_REPLAY => Reader::Direct,
            other => bail!("no replay scenario '{other}'"),
        };
        Ok(Self {
            name,
            reader,
            passes: Vec::new(),
            elapsed: Duration::ZERO,
            cpu_seconds: [0.0; 4],
            seen: Read {
                messages: 0,
                wire_bytes: 0,
            },
            recovered: 0,
        })
    }

    async fn read(&self, ctx: &Ctx, until: Until) -> Result<Read> {
        match &self.reader {
            Reader::Ws(url) => ws_read(url, until).await,
            Reader::Sse(uri) => sse_read(ctx, uri, until).await,
            Reader::Direct => direct_read(ctx, until).await,
        }
    }

    /// One whole pass, measured.
    async fn pass(&mut self, ctx: &Ctx) -> Result<()> {
        let gateway = !matches!(self.reader, Reader::Direct);
        let before = if gateway { recoveries(ctx).await? } else { 0 };
        let mark = ctx.probe.mark()?;
        let began = Instant::now();
        let seen = self.read(ctx, Until::Last).await?;
        let took = began.elapsed();
        let cpu = mark.finish()?;
        if seen.messages != MESSAGES {
            bail!("read {} messages, expected {MESSAGES}", seen.messages);
        }
        let secs = took.as_secs_f64();
        for (sum, pct) in self.cpu_seconds.iter_mut().zip([
            cpu.gateway_pct,
            cpu.nats_server_pct,
            cpu.load_tool_pct,
            cpu.other_pct,
        ]) {
            *sum += pct * secs;
        }
        self.passes.push(took);
        self.elapsed += took;
        self.seen.messages += seen.messages;
        self.seen.wire_bytes += seen.wire_bytes;
        if gateway {
            self.recovered += recoveries(ctx).await?.saturating_sub(before);
        }
        Ok(())
    }

    fn into_row(self) -> Scenario {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let [gateway_pct, nats_server_pct, load_tool_pct, other_pct] =
            self.cpu_seconds.map(|sum| sum / secs);
        let cpu = CpuSplit {
            gateway_pct,
            nats_server_pct,
            load_tool_pct,
            other_pct,
        };
        let m = Measurement::passes(&self.passes, MESSAGES, cpu);
        let recovered = self.recovered;
        let (path, what) = match &self.reader {
            Reader::Ws(url) => (
                "jetway",
                format!(
                    "ws {} read to seq {MESSAGES}, {PAYLOAD_BYTES} B each ({recovered} consumer \
                     recoveries)",
                    url.find("/v1/").map_or(url.as_str(), |at| &url[at..])
                ),
            ),
            Reader::Sse(uri) => (
                "jetway",
                format!(
                    "GET {uri} read to id {MESSAGES}, {PAYLOAD_BYTES} B each ({recovered} \
                     consumer recoveries)"
                ),
            ),
            Reader::Direct => (
                "direct",
                format!(
                    "ordered pull consumer from seq 1, messages() to seq {MESSAGES}, \
                     {PAYLOAD_BYTES} B each"
                ),
            ),
        };
        row(self.name, path, what, &m, &self.seen)
    }
}

/// The replay scenarios in `wanted`, measured together: the stream is filled once, each path
/// reads for the warm-up, then the paths take turns, one whole pass each, until every path has
/// read for the measured time (at least one pass). Taking turns spreads a machine that slows
/// down or speeds up for a while (a shared virtual machine does, by up to a fifth within a
/// minute here) over every path alike, so their ratios compare like with like.
pub async fn replays(ctx: &Ctx, wanted: &[&'static str]) -> Result<Vec<Scenario>> {
    ctx.filled_stream(MESSAGES, PAYLOAD_BYTES).await?;
    let mut lanes = wanted
        .iter()
        .map(|name| Lane::new(ctx, name))
        .collect::<Result<Vec<_>>>()?;
    for lane in &lanes {
        lane.read(ctx, Until::Elapsed(ctx.timing.warmup))
            .await
            .with_context(|| format!("{}: warm-up", lane.name))?;
    }
    while lanes
        .iter()
        .any(|lane| lane.passes.is_empty() || lane.elapsed < ctx.timing.duration)
    {
        for lane in &mut lanes {
            let name = lane.name;
            lane.pass(ctx).await.with_context(|| name.to_owned())?;
        }
    }
    Ok(lanes.into_iter().map(Lane::into_row).collect())
}

/// The fields of a server frame the reader looks at.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    seq: u64,
}

/// The gateway's `jetway_replay_recoveries_total`: ordered replays that recreated their
/// consumer (after a gap in its deliveries, or a lost pull).
async fn recoveries(ctx: &Ctx) -> Result<u64> {
    let text = crate::sockets::metrics(ctx).await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("jetway_replay_recoveries_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64))
}

/// A binary `msg` frame's header (after its 4-byte length) and payload length.
fn binary_frame(bytes: &[u8]) -> Result<(&[u8], usize)> {
    let len = bytes
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .context("a binary frame shorter than its header length")? as usize;
    let header = bytes
        .get(4..4 + len)
        .context("a binary frame shorter than its header")?;
    Ok((header, bytes.len() - 4 - len))
}

async fn ws_read(url: &str, until: Until) -> Result<Read> {
    let began = Instant::now();
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    let mut next = 1;
    let mut wire_bytes = 0;
    while let Some(frame) = socket.next().await {
        let message = frame.context("WebSocket read failed")?;
        let (header, payload_len): (&[u8], usize) = match &message {
            WsMessage::Text(text) => (text.as_bytes(), 0),
            WsMessage::Close(close) => bail!("the gateway closed the socket at {next}: {close:?}"),
            WsMessage::Binary(bytes) => binary_frame(bytes)?,
            _ => continue,
        };
        if let WsMessage::Binary(_) = &message
            && payload_len != PAYLOAD_BYTES
        {
            bail!("a binary frame with {payload_len} payload bytes at {next}");
        }
        wire_bytes += (header.len() + payload_len) as u64;
        let frame: Frame = serde_json::from_slice(header)
            .with_context(|| format!("not a frame: {}", String::from_utf8_lossy(header)))?;
        match frame.kind {
            "msg" => {
                if frame.seq != next {
                    bail!("expected sequence {next}, got {}", frame.seq);
                }
                if until.done(frame.seq, began) {
                    let _ = socket.close(None).await;
                    return Ok(Read {
                        messages: frame.seq,
                        wire_bytes,
                    });
                }
                next += 1;
            }
            "caught_up" => {}
            _ => bail!(
                "unexpected frame at sequence {next}: {}",
                String::from_utf8_lossy(header)
            ),
        }
    }
    bail!("the socket ended at sequence {next}")
}

async fn sse_read(ctx: &Ctx, uri: &Uri, until: Until) -> Result<Read> {
    let began = Instant::now();
    let tcp = TcpStream::connect(ctx.gateway)
        .await
        .with_context(|| format!("cannot connect to {}", ctx.gateway))?;
    tcp.set_nodelay(true).context("cannot set TCP_NODELAY")?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .context("HTTP handshake failed")?;
    // The connection is driven in this task, next to the reader (`select!` below), not in a
    // task of its own: every chunk would otherwise cross threads with a wake-up, which cost
    // this client more CPU than the gateway spends on the stream.
    let read = async {
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri.clone())
            .header(HOST, ctx.gateway.to_string())
            .body(Empty::<Bytes>::new())
            .context("cannot build the request")?;
        let response = sender
            .send_request(request)
            .await
            .with_context(|| format!("GET {uri} failed"))?;
        if response.status() != StatusCode::OK {
            bail!("GET {uri} answered {}", response.status());
        }
        let mut body = response.into_body();
        let mut lines = SseLines::default();
        let mut wire_bytes = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.context("reading the event stream failed")?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            wire_bytes += chunk.len() as u64;
            if let Some(last) = lines.feed(&chunk)?
                && until.done(last, began)
            {
                return Ok(Read {
                    messages: last,
                    wire_bytes,
                });
            }
        }
        bail!("the event stream ended at sequence {}", lines.next)
    };
    // Returning drops the connection, which ends the stream on the gateway.
    tokio::select! {
        read = read => read,
        ended = connection => bail!("the HTTP connection ended: {ended:?}"),
    }
}

/// Splits an event stream into lines across chunk boundaries and checks its `id:` lines.
struct SseLines {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    next: u64,
}

impl Default for SseLines {
    fn default() -> Self {
        Self {
            partial: Vec::new(),
            next: 1,
        }
    }
}

impl SseLines {
    /// Reads one chunk; answers the last sequence seen in it.
    fn feed(&mut self, chunk: &[u8]) -> Result<Option<u64>> {
        let mut last = None;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', chunk) {
            let line = if self.partial.is_empty() {
                &chunk[start..end]
            } else {
                self.partial.extend_from_slice(&chunk[start..end]);
                &self.partial[..]
            };
            if let Some(seq) = Self::line(line, self.next)? {
                self.next = seq + 1;
                last = Some(seq);
            }
            self.partial.clear();
            start = end + 1;
        }
        self.partial.extend_from_slice(&chunk[start..]);
        Ok(last)
    }

    /// An `id:` line's sequence (which must be `expected`); an error for `gap` and `error`
    /// events.
    fn line(line: &[u8], expected: u64) -> Result<Option<u64>> {
        if let Some(id) = line.strip_prefix(b"id: ") {
            let seq: u64 = std::str::from_utf8(id)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .with_context(|| format!("bad id line: {}", String::from_utf8_lossy(line)))?;
            if seq != expected {
                bail!("expected sequence {expected}, got {seq}");
            }
            return Ok(Some(seq));
        }
        if line.starts_with(b"event: gap") || line.starts_with(b"event: error") {
            bail!(
                "unexpected '{}' at sequence {expected}",
                String::from_utf8_lossy(line)
            );
        }
        Ok(None)
    }
}

async fn direct_read(ctx: &Ctx, until: Until) -> Result<Read> {
    let began = Instant::now();
    let stream = ctx
        .js
        .get_stream(STREAM)
        .await
        .map_err(|e| anyhow::anyhow!("cannot get stream {STREAM}: {e}"))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: 1 },
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot create an ordered consumer: {e}"))?;
    let name = consumer.cached_info().name.clone();
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the ordered consumer: {e}"))?;
    let mut next = 1;
    let mut wire_bytes = 0;
    let read = loop {
        let Some(message) = messages.next().await else {
            bail!("the ordered consumer ended at sequence {next}");
        };
        let message = message.map_err(|e| anyhow::anyhow!("ordered consumer failed: {e}"))?;
        let seq = message
            .info()
            .map_err(|e| anyhow::anyhow!("not a JetStream message: {e}"))?
            .stream_sequence;
        if seq != next {
            bail!("expected sequence {next}, got {seq}");
        }
        wire_bytes += message.length as u64;
        if until.done(seq, began) {
            break Read {
                messages: seq,
                wire_bytes,
            };
        }
        next += 1;
    };
    drop(messages);
    // Ephemeral: it would expire by itself; deleting keeps the server tidy for what follows.
    let _ = stream.delete_consumer(&name).await;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_lines_across_chunks() -> Result<()> {
        let mut lines = SseLines::default();
        assert_eq!(lines.feed(b"id: 1\ndata: {}\n\nid")?, Some(1));
        assert_eq!(lines.feed(b": 2\ndata: {\"a\"")?, Some(2));
        assert_eq!(lines.feed(b"}\n\n: keep-alive\n\nid: 3\n")?, Some(3));
        assert!(lines.feed(b"id: 5\n").is_err());
        let mut lines = SseLines::default();
        assert!(lines.feed(b"event: gap\ndata: {}\n").is_err());
        Ok(())
    }
}
