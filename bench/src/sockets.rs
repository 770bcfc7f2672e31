//! Idle WebSocket memory: many connections opened to the gateway and held open without
//! traffic, the gateway's resident memory before and after.
//!
//! Two kinds: bare multiplexed sockets (`/v1/ws`, no subscription: the cost of a connection
//! alone) and live-tail sockets (`/v1/streams/BENCH/ws?deliver=new`: each runs an ordered
//! consumer on nats-server and a pull waiting for new messages).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::http;
use crate::procs;
use crate::report::SocketMemory;
use crate::scenarios::{Ctx, STREAM};

pub const IDLE_MUX: &str = "idle ws, multiplexed";
pub const IDLE_LIVE: &str = "idle ws, live tail";

/// Sockets being opened at once.
pub const CONNECT_CONCURRENCY: usize = 64;
/// How long a socket may take to open (and, live, to say `caught_up`).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Resident memory counts as stable when it moved less than this over [`STABLE_SAMPLES`].
const STABLE_KIB: u64 = 256;
const STABLE_SAMPLES: usize = 8;
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// The idle window over which CPU is measured, once memory is stable.
const IDLE_WINDOW: Duration = Duration::from_secs(3);

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `count` sockets to `path`, measures, closes them all.
pub async fn idle_sockets(
    ctx: &Ctx,
    name: &str,
    path: &str,
    count: usize,
    live: bool,
    note: Option<String>,
) -> Result<SocketMemory> {
    if live {
        ctx.ensure_stream().await?;
    }
    let (gateway, nats) = (ctx.probe.gateway.first(), ctx.probe.nats_server.first());
    if !wait_connections(ctx, 0, Duration::from_secs(30)).await? {
        bail!("sockets of an earlier scenario are still open");
    }
    // Let the gateway settle (tasks of the previous scenario, consumers being deleted).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_kib = procs::status_kib(gateway, "VmRSS")?;
    let nats_rss_before_kib = procs::status_kib(nats, "VmRSS")?;

    let url = format!("ws://{}{path}", ctx.gateway);
    let (stop_tx, stop_rx) = watch::channel(false);
    let closed_early = Arc::new(AtomicUsize::new(0));
    let mut holders = JoinSet::new();
    let began = Instant::now();
    let mut opening = futures::stream::iter(0..count)
        .map(|_| open(&url, live))
        .buffer_unordered(CONNECT_CONCURRENCY);
    let mut opened = 0;
    while let Some(socket) = opening.next().await {
        let socket = socket.with_context(|| format!("after {opened} sockets were open"))?;
        opened += 1;
        holders.spawn(hold(socket, stop_rx.clone(), Arc::clone(&closed_early)));
    }
    drop(opening);
    if !wait_connections(ctx, count as i64, OPEN_TIMEOUT).await? {
        bail!("the gateway does not count {count} open sockets");
    }
    let open_s = began.elapsed().as_secs_f64();

    let mut samples = Vec::new();
    let settle_until = Instant::now() + Duration::from_secs(20);
    loop {
        samples.push(procs::status_kib(gateway, "VmRSS")?);
        let recent = &samples[samples.len().saturating_sub(STABLE_SAMPLES)..];
        let spread = recent.iter().max().unwrap_or(&0) - recent.iter().min().unwrap_or(&0);
        if (recent.len() == STABLE_SAMPLES && spread <= STABLE_KIB) || Instant::now() > settle_until
        {
            break;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    let consumers = if live {
        ctx.stream_info().await?["state"]["consumer_count"].as_u64()
    } else {
        None
    };
    let mark = ctx.probe.mark()?;
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_cpu = mark.finish()?;
    let rss_after_kib = procs::status_kib(gateway, "VmRSS")?;
    let nats_rss_after_kib = procs::status_kib(nats, "VmRSS")?;
    let early = closed_early.load(Ordering::Relaxed);
    if early > 0 {
        bail!("{early} sockets were closed by the gateway while idle");
    }

    let closing = Instant::now();
    let _ = stop_tx.send(true);
    while let Some(joined) = holders.join_next().await {
        joined.context("a socket task panicked")?;
    }
    if !wait_connections(ctx, 0, Duration::from_secs(60)).await? {
        bail!("the gateway still counts open sockets 60 s after they were closed");
    }
    let mut note = note;
    if live {
        let gone = Ctx::wait_until(Duration::from_secs(60), || async {
            let info = ctx.stream_info().await?;
            Ok(info["state"]["consumer_count"].as_u64() == Some(0))
        })
        .await?;
        if !gone {
            note = Some(
                note.map_or_else(String::new, |n| format!("{n}; "))
                    + "some ordered consumers were still there 60 s after closing",
            );
        }
    }
    let close_s = closing.elapsed().as_secs_f64();
    let per = |before: u64, after: u64| after.saturating_sub(before) as f64 * 1024.0 / count as f64;
    Ok(SocketMemory {
        name: name.to_owned(),
        path: path.to_owned(),
        sockets: count,
        connect_concurrency: CONNECT_CONCURRENCY,
        open_s,
        rss_before_kib,
        rss_after_kib,
        bytes_per_socket: per(rss_before_kib, rss_after_kib),
        nats_rss_before_kib,
        nats_rss_after_kib,
        nats_bytes_per_socket: per(nats_rss_before_kib, nats_rss_after_kib),
        idle_cpu,
        close_s,
        consumers,
        note,
    })
}

/// `/v1/streams/BENCH/ws?deliver=new`.
pub fn live_path() -> String {
    format!("/v1/streams/{STREAM}/ws?deliver=new")
}

/// Opens one socket; a live-tail one is open once it said `caught_up`.
pub async fn open(url: &str, live: bool) -> Result<Socket> {
    // Small client buffers: the bench holds as many sockets as the gateway.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let opening = async {
        let (mut socket, _) =
            match tokio_tungstenite::connect_async_with_config(url, Some(config), true).await {
                Ok(opened) => opened,
                Err(tungstenite::Error::Http(response)) => bail!(
                    "{url} answered {}: {}",
                    response.status(),
                    String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                ),
                Err(err) => return Err(err).with_context(|| format!("cannot open {url}")),
            };
        if live {
            loop {
                match socket.next().await {
                    Some(Ok(WsMessage::Text(text))) if text.contains("\"caught_up\"") => break,
                    Some(Ok(WsMessage::Text(text))) => bail!("unexpected frame: {text}"),
                    Some(Ok(WsMessage::Close(close))) => bail!("closed: {close:?}"),
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(err).context("reading the first frame failed"),
                    None => bail!("the socket ended before caught_up"),
                }
            }
        }
        Ok(socket)
    };
    tokio::time::timeout(OPEN_TIMEOUT, opening)
        .await
        .with_context(|| format!("{url} did not open within {OPEN_TIMEOUT:?}"))?
}

/// Holds one socket open, reading (so that the gateway's pings are answered) until told to
/// close; counts a socket the gateway closed first.
async fn hold(mut socket: Socket, mut stop: watch::Receiver<bool>, closed_early: Arc<AtomicUsize>) {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = socket.next() => match frame {
                Some(Ok(WsMessage::Text(_) | WsMessage::Binary(_))) => {}
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => {
                    closed_early.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    // A clean close: the close frame, then wait (briefly) for the gateway's.
    let _ = socket.send(WsMessage::Close(None)).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
}

/// Waits until `/metrics` counts `expected` open WebSocket connections.
async fn wait_connections(ctx: &Ctx, expected: i64, timeout: Duration) -> Result<bool> {
    Ctx::wait_until(timeout, || async {
        Ok(ws_connections(ctx).await? == expected)
    })
    .await
}

/// The gateway's `/metrics` text.
pub async fn metrics(ctx: &Ctx) -> Result<String> {
    let (status, body) = http::request(ctx.gateway, "GET", "/metrics", None).await?;
    if !status.is_success() {
        bail!("GET /metrics answered {status}");
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `jetway_ws_connections` from `/metrics`.
async fn ws_connections(ctx: &Ctx) -> Result<i64> {
    let text = metrics(ctx).await?;
    text.lines()
        .find_map(|line| line.strip_prefix("jetway_ws_connections "))
        .and_then(|v| v.trim().parse().ok())
        .context("no jetway_ws_connections in /metrics")
}
