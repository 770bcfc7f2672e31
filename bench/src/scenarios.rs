//! The scenarios: each jetway path, and the same work done directly with async-nats. Each one
//! starts on an empty stream and returns one [`Scenario`] row.
//!
//! The consuming paths are in their own modules: [`crate::consume`] (fetch + ack),
//! [`crate::replay`] (WebSocket, SSE and ordered-consumer replays) and [`crate::sockets`] (idle
//! WebSocket memory).
//!
//! To add one: write an `async fn(&Ctx, ...) -> Result<Scenario>` that prepares its stream
//! ([`Ctx::fresh_stream`] for an empty one, [`Ctx::filled_stream`] for a pre-filled one), builds
//! its workers (an [`Op`] each) or its own driver on a [`Recorder`], and measures with the
//! context's timing and CPU probe; then call it from the runner in `main.rs`.

use std::cell::RefCell;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
use crate::load::{self, CpuProbe, Op, Pids, Recorder, Timing};
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

/// On the 3-node cluster (R3 stream), c=64: one gateway directly, then three behind HAProxy.
pub const R3_ONE_REPLICA: &str = "publish one c=64 r3, 1 replica";
pub const R3_HAPROXY: &str = "publish one c=64 r3, haproxy + 3 replicas";

pub fn publish_one_name(concurrency: usize) -> String {
    format!("publish one c={concurrency}")
}

pub fn direct_publish_name(concurrency: usize) -> String {
    format!("direct publish c={concurrency}")
}

/// PubAcks outstanding while pre-filling a stream.
const FILL_WINDOW: usize = 1000;

/// `len` printable bytes (any bytes would do; these read well in a message viewer, and are
/// valid UTF-8, so jetway shows them as text with `"encoding":"utf8"`).
pub fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// What every scenario shares.
pub struct Ctx {
    pub gateway: SocketAddr,
    pub js: jetstream::Context,
    pub timing: Timing,
    pub probe: CpuProbe,
    pub payload: Bytes,
    /// What the bench stream was last filled with (messages, payload bytes); `None` when it was
    /// re-created or written to since.
    pub filled: Mutex<Option<(u64, usize)>>,
    /// Replicas of the bench stream (and of its consumers, which inherit them): 1 on the single
    /// server, 3 on the cluster.
    pub replicas: usize,
    /// The cluster's nodes (server name, client port); empty on the single server.
    pub nodes: Vec<(String, u16)>,
}

impl Ctx {
    /// The same context for another gateway process.
    pub fn with_gateway(&self, gateway: SocketAddr, pid: u32) -> Self {
        self.with_gateways(gateway, Pids::one(pid))
    }

    /// The same context for requests to `gateway` served by the processes `pids` (replicas and
    /// the load balancer in front of them), whose CPU is the gateway column.
    pub fn with_gateways(&self, gateway: SocketAddr, pids: Pids) -> Self {
        Self {
            gateway,
            js: self.js.clone(),
            timing: self.timing,
            probe: CpuProbe {
                gateway: pids,
                ..self.probe
            },
            payload: self.payload.clone(),
            filled: Mutex::new(self.filled.lock().ok().and_then(|f| *f)),
            replicas: self.replicas,
            nodes: self.nodes.clone(),
        }
    }

    /// Deletes and re-creates the bench stream through jetway (file storage, the default), so
    /// that a scenario starts on an empty stream. With more than one replica it is created with
    /// `"replicas"` and this waits until the stream has a leader and every replica.
    pub async fn fresh_stream(&self) -> Result<()> {
        self.set_filled(None);
        let path = format!("/v1/streams/{STREAM}");
        let (status, body) = http::request(self.gateway, "DELETE", &path, None).await?;
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            bail!(
                "DELETE {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let mut config = serde_json::json!({ "subjects": [STREAM_SUBJECTS] });
        if self.replicas > 1 {
            config["replicas"] = self.replicas.into();
        }
        let (status, body) = http::request(self.gateway, "PUT", &path, Some(&config)).await?;
        if status != StatusCode::CREATED {
            bail!(
                "PUT {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        if self.replicas > 1 {
            self.wait_stream_replicated().await?;
        }
        Ok(())
    }

    /// Waits until nats-server reports the bench stream with `num_replicas` = [`Ctx::replicas`],
    /// a leader and every other replica current.
    async fn wait_stream_replicated(&self) -> Result<()> {
        let last = RefCell::new(String::from("no stream info yet"));
        let ready = Self::wait_until(Duration::from_secs(30), || {
            let last = &last;
            async move {
                let mut stream = match self.js.get_stream(STREAM).await {
                    Ok(stream) => stream,
                    Err(err) => {
                        *last.borrow_mut() = err.to_string();
                        return Ok(false);
                    }
                };
                let info = match stream.info().await {
                    Ok(info) => info.clone(),
                    Err(err) => {
                        *last.borrow_mut() = err.to_string();
                        return Ok(false);
                    }
                };
                if info.config.num_replicas != self.replicas {
                    bail!(
                        "stream {STREAM} was created with {} replicas, not {}",
                        info.config.num_replicas,
                        self.replicas
                    );
                }
                let cluster = info.cluster.unwrap_or_default();
                let current = cluster.replicas.iter().filter(|r| r.current).count();
                *last.borrow_mut() = format!(
                    "leader {:?}, {current} of {} other replicas current",
                    cluster.leader,
                    self.replicas - 1
                );
                Ok(cluster.leader.is_some() && current == self.replicas - 1)
            }
        })
        .await?;
        if !ready {
            bail!(
                "stream {STREAM} (R{}) is not replicated after 30 s: {}",
                self.replicas,
                last.borrow()
            );
        }
        Ok(())
    }

    fn set_filled(&self, fill: Option<(u64, usize)>) {
        if let Ok(mut filled) = self.filled.lock() {
            *filled = fill;
        }
    }

    /// Makes the bench stream hold exactly `count` messages of `size` bytes (sequences 1 to
    /// `count`, subject `bench.x`), published directly with pipelined async-nats; kept as it is
    /// when the previous scenario left it so.
    pub async fn filled_stream(&self, count: u64, size: usize) -> Result<()> {
        if self.filled.lock().is_ok_and(|f| *f == Some((count, size))) {
            return Ok(());
        }
        self.fresh_stream().await?;
        let began = Instant::now();
        let body = payload(size);
        let mut in_flight = FuturesUnordered::new();
        let mut sent = 0;
        while sent < count || !in_flight.is_empty() {
            while sent < count && in_flight.len() < FILL_WINDOW {
                let ack = self
                    .js
                    .send_publish(SUBJECT, PublishMessage::build().payload(body.clone()))
                    .await
                    .context("pre-fill: publish failed")?;
                in_flight.push(ack.into_future());
                sent += 1;
            }
            if let Some(acked) = in_flight.next().await {
                acked.context("pre-fill: no PubAck")?;
            }
        }
        let stored = self.stream_messages().await?;
        if stored != count {
            bail!("pre-fill: the stream holds {stored} messages, {count} were published");
        }
        eprint!(
            "(filled {STREAM} with {count} × {size} B in {:.1} s) ",
            began.elapsed().as_secs_f64()
        );
        self.set_filled(Some((count, size)));
        Ok(())
    }

    /// Messages in the bench stream.
    pub async fn stream_messages(&self) -> Result<u64> {
        let info = self.stream_info().await?;
        info["state"]["messages"]
            .as_u64()
            .with_context(|| format!("no state.messages in the stream info: {info}"))
    }

    /// `GET /v1/streams/BENCH`.
    pub async fn stream_info(&self) -> Result<serde_json::Value> {
        let path = format!("/v1/streams/{STREAM}");
        let (status, body) = http::request(self.gateway, "GET", &path, None).await?;
        if status != StatusCode::OK {
            bail!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        serde_json::from_slice(&body).context("stream info is not JSON")
    }

    /// Creates the bench stream (empty) unless it exists.
    pub async fn ensure_stream(&self) -> Result<()> {
        let path = format!("/v1/streams/{STREAM}");
        let (status, _) = http::request(self.gateway, "GET", &path, None).await?;
        if status == StatusCode::OK {
            return Ok(());
        }
        self.fresh_stream().await
    }

    /// Polls `check` every 100 ms until it answers true or `timeout` passes; answers whether it
    /// did.
    pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> Result<bool>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if check().await? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Checks that the stream holds at least the messages acknowledged in the measured window
    /// (the warm-up's are stored too): a 2xx must mean stored.
    pub async fn verify_stored(&self, acknowledged: u64) -> Result<()> {
        let stored = self.stream_messages().await?;
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
    publish_one_as(ctx, &publish_one_name(concurrency), concurrency).await
}

/// [`publish_one`] under another row name (the same request through another topology).
pub async fn publish_one_as(ctx: &Ctx, name: &str, concurrency: usize) -> Result<Scenario> {
    ctx.fresh_stream().await?;
    let path = format!("/v1/publish/{SUBJECT}");
    let spec = RequestSpec::new(Method::POST, &path, ctx.payload.clone(), 1)?;
    let workers = HttpOp::workers(ctx.gateway, spec, concurrency).await?;
    let m = load::closed_loop(workers, ctx.timing, &ctx.probe).await?;
    ctx.verify_stored(m.messages).await?;
    let what = format!("POST {path}, {} B body", ctx.payload.len());
    Ok(Scenario::new(name, "jetway", what, concurrency, &m).payload(ctx.payload.len()))
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
    )
    .payload(ctx.payload.len()))
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
    Ok(Scenario::new(BATCH, "jetway", what, concurrency, &m).payload(ctx.payload.len()))
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
    Ok(Scenario::new(PIPELINED, "direct", what, window, &m).payload(ctx.payload.len()))
}
