//! Live fan-out: a steady publish rate delivered to many live-tail sockets
//! (`/v1/streams/BENCH/ws?deliver=new`), which share one JetStream consumer per gateway.
//!
//! Every message carries its publish time (µs since the epoch) as its payload; each socket's
//! task reads its frames and records publish → receipt per frame. The publisher runs for the
//! warm-up and the measured window; frames of messages published during the window count, and
//! CPU is measured over that window.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::load::CpuSplit;
use crate::procs;
use crate::scenarios::Ctx;
use crate::sockets::{self, CONNECT_CONCURRENCY};

/// Payload length of a fan-out message (the publish time, zero-padded).
const PAYLOAD: usize = 128;
/// How long the last message may take to reach every socket after publishing stopped.
const DRAIN: Duration = Duration::from_secs(30);

pub fn name(sockets: usize) -> String {
    format!("fan-out to {sockets} sockets")
}

/// One fan-out run.
#[derive(Debug, Clone, Serialize)]
pub struct Fanout {
    pub name: String,
    pub sockets: usize,
    /// Messages published per second.
    pub rate: u32,
    pub window_s: f64,
    /// Frames of messages published in the window that reached a socket.
    pub frames: u64,
    /// Frames that should have: messages in the window × sockets.
    pub expected_frames: u64,
    pub frames_per_s: f64,
    /// JetStream consumers on the stream while every socket was open.
    pub consumers: u64,
    pub cpu: CpuSplit,
    /// CPU time per delivered frame, in µs.
    pub gateway_us_per_frame: f64,
    pub nats_server_us_per_frame: f64,
    /// Publish → receipt over every frame of the window, in ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Gateway and nats-server VmRSS with every socket open, at the end of the window.
    pub gateway_rss_kib: u64,
    pub nats_server_rss_kib: u64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The publish time in a `msg` frame's `data`, and its `seq`.
fn parse(text: &str) -> Option<(u64, u64)> {
    let data = text.split_once(r#""data":""#)?.1;
    let sent = data.get(..PAYLOAD)?.trim_start_matches('0').parse().ok()?;
    let seq = text.split_once(r#""seq":"#)?.1;
    let end = seq.find(|c: char| !c.is_ascii_digit())?;
    Some((sent, seq[..end].parse().ok()?))
}

/// What one socket saw: (seq, latency µs) per frame.
async fn read(
    mut socket: sockets::Socket,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<(u64, u32)>> {
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = socket.next() => match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    let at = now_us();
                    if let Some((sent, seq)) = parse(text.as_str()) {
                        let latency = u32::try_from(at.saturating_sub(sent)).unwrap_or(u32::MAX);
                        seen.push((seq, latency));
                    }
                }
                Some(Ok(WsMessage::Close(close))) => bail!("the gateway closed a socket: {close:?}"),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err).context("a socket failed"),
                None => bail!("a socket ended"),
            },
        }
    }
    let _ = socket.send(WsMessage::Close(None)).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    Ok(seen)
}

/// Opens `count` live sockets, publishes `rate` messages per second through warm-up and
/// window, and measures delivery.
pub async fn fanout(ctx: &Ctx, count: usize, rate: u32) -> Result<Fanout> {
    ctx.ensure_stream().await?;
    let (gateway, nats) = (ctx.probe.gateway.first(), ctx.probe.nats_server.first());
    let url = format!("ws://{}{}", ctx.gateway, sockets::live_path());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    let mut opening = futures::stream::iter(0..count)
        .map(|_| sockets::open(&url, true))
        .buffer_unordered(CONNECT_CONCURRENCY);
    let mut opened = 0;
    while let Some(socket) = opening.next().await {
        let socket = socket.with_context(|| format!("after {opened} sockets were open"))?;
        opened += 1;
        readers.spawn(read(socket, stop_rx.clone()));
    }
    drop(opening);
    let info = ctx.stream_info().await?;
    let consumers = info["state"]["consumer_count"].as_u64().unwrap_or(0);
    let sent_before = metric(
        &sockets::metrics(ctx).await?,
        "jetway_ws_messages_sent_total",
    );
    let mut published = 0u64;

    let pace = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut tick = tokio::time::interval(pace);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let begin = Instant::now();
    let window_from = begin + ctx.timing.warmup;
    let window_until = window_from + ctx.timing.duration;
    let mut mark = None;
    let (mut first_in_window, mut last_in_window) = (u64::MAX, 0);
    let mut acks = Vec::new();
    while Instant::now() < window_until {
        tick.tick().await;
        let now = Instant::now();
        if mark.is_none() && now >= window_from {
            mark = Some(ctx.probe.mark()?);
        }
        let payload = Bytes::from(format!("{:0>PAYLOAD$}", now_us()));
        let ack = ctx
            .js
            .publish("bench.fanout", payload)
            .await
            .context("publish")?;
        published += 1;
        acks.push((mark.is_some(), ack));
        if acks.len() >= 64 {
            for (in_window, ack) in acks.drain(..) {
                let seq = ack.await.context("puback")?.sequence;
                if in_window {
                    first_in_window = first_in_window.min(seq);
                    last_in_window = last_in_window.max(seq);
                }
            }
        }
    }
    let cpu = match &mark {
        Some(mark) => mark.finish()?,
        None => bail!("the window never started"),
    };
    for (in_window, ack) in acks.drain(..) {
        let seq = ack.await.context("puback")?.sequence;
        if in_window {
            first_in_window = first_in_window.min(seq);
            last_in_window = last_in_window.max(seq);
        }
    }
    let gateway_rss_kib = procs::status_kib(gateway, "VmRSS")?;
    let nats_server_rss_kib = procs::status_kib(nats, "VmRSS")?;
    let window_s = ctx.timing.duration.as_secs_f64();

    // Let the gateway write every frame, give the readers a moment, then stop them.
    let target = last_in_window;
    let all = sent_before + (published * count as u64) as f64;
    let drained = Ctx::wait_until(DRAIN, || async {
        Ok(metric(
            &sockets::metrics(ctx).await?,
            "jetway_ws_messages_sent_total",
        ) >= all)
    })
    .await?;
    if !drained {
        bail!("the gateway had not written every frame {DRAIN:?} after publishing stopped");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(true);
    let mut latencies = Vec::new();
    let mut frames = 0u64;
    while let Some(joined) = readers.join_next().await {
        let seen = joined.context("a reader panicked")??;
        for (seq, latency) in seen {
            if (first_in_window..=target).contains(&seq) {
                frames += 1;
                latencies.push(latency);
            }
        }
    }
    // Every socket closed: the feed's consumer goes with the last one (and the next scenario's
    // gateway finds none of this one's).
    let gone = Ctx::wait_until(Duration::from_secs(60), || async {
        Ok(ctx.stream_info().await?["state"]["consumer_count"].as_u64() == Some(0))
    })
    .await?;
    if !gone {
        bail!("the feed's consumer was still there 60 s after every socket closed");
    }
    latencies.sort_unstable();
    let pct = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |us| f64::from(*us) / 1000.0)
    };
    let messages = last_in_window.saturating_sub(first_in_window) + 1;
    let cpu_us = |pct: f64| pct / 100.0 * window_s * 1e6 / (frames.max(1) as f64);
    Ok(Fanout {
        name: name(count),
        sockets: count,
        rate,
        window_s,
        frames,
        expected_frames: messages * count as u64,
        frames_per_s: frames as f64 / window_s,
        consumers,
        gateway_us_per_frame: cpu_us(cpu.gateway_pct),
        nats_server_us_per_frame: cpu_us(cpu.nats_server_pct),
        cpu,
        p50_ms: pct(50),
        p99_ms: pct(99),
        max_ms: latencies.last().map_or(0.0, |us| f64::from(*us) / 1000.0),
        gateway_rss_kib,
        nats_server_rss_kib,
    })
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
