//! The scenarios: each jetway path, and the same work done directly with async-nats. Each one
//! starts on an empty stream and returns one [`Scenario`] row.
//!
//! To add one (fetch + ack, WebSocket replay, SSE, ...): write an `async fn(&Ctx, ...) ->
//! Result<Scenario>` here that prepares its stream, builds its workers (an [`Op`] each) or its
//! own driver on a [`Recorder`], and measures with the context's timing and CPU probe; then call
//! it from the runner in `main.rs`.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hyper::{Method, StatusCode};

use crate::http::{self, HttpOp, RequestSpec};
use crate::load::{self, CpuProbe, Op, Recorder, Timing};
use crate::report::Scenario;

/// The stream every scenario publishes into, and its subjects.
pub const STREAM: &str = "BENCH";
pub const STREAM_SUBJECTS: &str = "bench.>";
/// The subject every message goes to.
pub const SUBJECT: &str = "bench.x";

/// Row names the targets refer to.
pub const HTTP_CEILING: &str = "http ceiling";
/// The HTTP round trip alone at c=1, to split the added publish latency.
pub const HTTP_C1: &str = "http healthz c=1";
pub const BATCH: &str = "batch publish";
pub const PIPELINED: &str = "direct pipelined publish";

pub fn publish_one_name(concurrency: usize) -> String {
    format!("publish one c={concurrency}")
}

pub fn direct_publish_name(concurrency: usize) -> String {
    format!("direct publish c={concurrency}")
}

/// What every scenario shares.
pub struct Ctx {
    pub gateway: SocketAddr,
    pub js: jetstream::Context,
    pub timing: Timing,
    pub probe: CpuProbe,
    pub payload: Bytes,
}

impl Ctx {
    /// Deletes and re-creates the bench stream through jetway (file storage, the default), so
    /// that a scenario starts on an empty stream.
    pub async fn fresh_stream(&self) -> Result<()> {
        let path = format!("/v1/streams/{STREAM}");
        let (status, body) = http::request(self.gateway, "DELETE", &path, None).await?;
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            bail!(
                "DELETE {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let config = serde_json::json!({ "subjects": [STREAM_SUBJECTS] });
        let (status, body) = http::request(self.gateway, "PUT", &path, Some(&config)).await?;
        if status != StatusCode::CREATED {
            bail!(
                "PUT {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// Checks that the stream holds at least the messages acknowledged in the measured window
    /// (the warm-up's are stored too): a 2xx must mean stored.
    pub async fn verify_stored(&self, acknowledged: u64) -> Result<()> {
        let path = format!("/v1/streams/{STREAM}");
        let (status, body) = http::request(self.gateway, "GET", &path, None).await?;
        if status != StatusCode::OK {
            bail!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let info: serde_json::Value =
            serde_json::from_slice(&body).context("stream info is not JSON")?;
        let stored = info["state"]["messages"]
            .as_u64()
            .with_context(|| format!("no state.messages in the stream info: {info}"))?;
        if stored < acknowledged {
            bail!("the stream holds {stored} messages but {acknowledged} were acknowledged");
        }
        Ok(())
    }
}

/// The cheapest route (`GET /healthz`, no NATS call) with the same load tool: at c=64 the
/// HTTP ceiling of this machine, at c=1 the bare HTTP round trip.
pub async fn http_healthz(ctx: &Ctx, name: &str, concurrency: usize) -> Result<Scenario> {
    let spec = RequestSpec::new(Method::GET, "/healthz", Bytes::new(), 0)?;
    let workers = HttpOp::workers(ctx.gateway, spec, concurrency).await?;
    let m = load::closed_loop(workers, ctx.timing, &ctx.probe).await?;
    Ok(Scenario::new(
        name,
        "jetway",
        "GET /healthz".to_owned(),
        concurrency,
        &m,
    ))
}

/// `POST /v1/publish/{subject}` with the payload as the raw body, one request per worker at a
/// time.
pub async fn publish_one(ctx: &Ctx, concurrency: usize) -> Result<Scenario> {
    ctx.fresh_stream().await?;
    let path = format!("/v1/publish/{SUBJECT}");
    let spec = RequestSpec::new(Method::POST, &path, ctx.payload.clone(), 1)?;
    let workers = HttpOp::workers(ctx.gateway, spec, concurrency).await?;
    let m = load::closed_loop(workers, ctx.timing, &ctx.probe).await?;
    ctx.verify_stored(m.messages).await?;
    let what = format!("POST {path}, {} B body", ctx.payload.len());
    Ok(Scenario::new(
        &publish_one_name(concurrency),
        "jetway",
        what,
        concurrency,
        &m,
    ))
}

/// A JetStream publish awaiting its PubAck, with async-nats on one shared connection (as jetway
/// has one).
struct DirectPublish {
    js: jetstream::Context,
    payload: Bytes,
}

impl Op for DirectPublish {
    async fn call(&mut self) -> Result<u64> {
        self.js
            .publish(SUBJECT, self.payload.clone())
            .await
            .context("direct publish failed")?
            .await
            .context("direct publish: no PubAck")?;
        Ok(1)
    }
}

/// The same work as [`publish_one`] without the gateway: `concurrency` tasks, each publishing and
/// awaiting the ack in a loop.
pub async fn direct_publish(ctx: &Ctx, concurrency: usize) -> Result<Scenario> {
    ctx.fresh_stream().await?;
    let workers = (0..concurrency)
        .map(|_| DirectPublish {
            js: ctx.js.clone(),
            payload: ctx.payload.clone(),
        })
        .collect();
    let m = load::closed_loop(workers, ctx.timing, &ctx.probe).await?;
    ctx.verify_stored(m.messages).await?;
    let what = format!("js.publish({SUBJECT}) + await ack, {} B", ctx.payload.len());
    Ok(Scenario::new(
        &direct_publish_name(concurrency),
        "direct",
        what,
        concurrency,
        &m,
    ))
}

/// `POST /v1/publish` with a JSON array of `size` items (`data_base64`), `concurrency` requests
/// in flight.
pub async fn batch_publish(ctx: &Ctx, concurrency: usize, size: usize) -> Result<Scenario> {
    ctx.fresh_stream().await?;
    let item =
        serde_json::json!({ "subject": SUBJECT, "data_base64": BASE64.encode(&ctx.payload) });
    let body = serde_json::to_vec(&vec![item; size]).context("cannot encode the batch")?;
    let spec = RequestSpec::new(Method::POST, "/v1/publish", Bytes::from(body), size as u64)?
        .content_type("application/json");
    let workers = HttpOp::workers(ctx.gateway, spec, concurrency).await?;
    let m = load::closed_loop(workers, ctx.timing, &ctx.probe).await?;
    ctx.verify_stored(m.messages).await?;
    let what = format!(
        "POST /v1/publish, JSON array of {size} × {} B",
        ctx.payload.len()
    );
    Ok(Scenario::new(BATCH, "jetway", what, concurrency, &m))
}

/// async-nats `send_publish` pipelined, up to `window` PubAcks outstanding: the most JetStream
/// takes from one client connection. Latency is send to ack of each message.
pub async fn direct_pipelined(ctx: &Ctx, window: usize) -> Result<Scenario> {
    ctx.fresh_stream().await?;
    let mut recorder = Recorder::new(ctx.timing);
    let cpu = ctx.probe.window(recorder.from(), recorder.until());
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < window && Instant::now() < recorder.until() {
            let began = Instant::now();
            let ack = ctx
                .js
                .send_publish(
                    SUBJECT,
                    PublishMessage::build().payload(ctx.payload.clone()),
                )
                .await
                .context("pipelined publish failed")?;
            in_flight.push(async move { (began, ack.await) });
        }
        let Some((began, acked)) = in_flight.next().await else {
            break;
        };
        acked.context("pipelined publish: no PubAck")?;
        recorder.record(began, Instant::now(), 1);
    }
    let m = recorder.finish(cpu.await?);
    ctx.verify_stored(m.messages).await?;
    let what = format!(
        "js.send_publish({SUBJECT}) pipelined, {} B",
        ctx.payload.len()
    );
    Ok(Scenario::new(PIPELINED, "direct", what, window, &m))
}
