//! Consuming with acknowledgements: jetway's long-poll fetch followed by one `POST /v1/acks` per
//! batch, next to an async-nats pull consumer that fetches the same batches and double-acks each
//! message. Both read the same pre-filled stream, each through its own durable consumer.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::join_all;
use hyper::{Method, StatusCode, Uri};
use serde::{Deserialize, Serialize};

use crate::http::{self, Conn};
use crate::load::{self, Op};
use crate::report::Scenario;
use crate::scenarios::{Ctx, STREAM};

pub const FETCH_ACK: &str = "fetch+ack";
pub const DIRECT_FETCH_ACK: &str = "direct fetch+ack";

/// Messages in the stream both consumers read (128 B each). Enough for either path to run
/// through the warm-up and the measured window at the rates of this machine; a consumer that
/// drains it earlier ends its window there, and its row says so.
pub const FILL_MESSAGES: u64 = 1_000_000;
/// Messages per fetch, and acks per `POST /v1/acks`.
pub const BATCH: usize = 100;
/// Workers, each fetching then acking in a loop.
pub const WORKERS: usize = 4;
/// The consumers' `max_ack_pending`: far above what the workers hold at once (4 × 100).
const MAX_ACK_PENDING: u64 = 20_000;
/// How long a fetch waits when nothing is there (only once the stream is drained).
const FETCH_WAIT: Duration = Duration::from_secs(1);
const JETWAY_CONSUMER: &str = "bench";
const DIRECT_CONSUMER: &str = "direct";

#[derive(Deserialize)]
struct Fetched {
    messages: Vec<FetchedMessage>,
}

#[derive(Deserialize)]
struct FetchedMessage {
    ack_id: String,
    seq: u64,
    delivered: u64,
}

#[derive(Serialize)]
struct AcksBody<'a> {
    acks: Vec<AckItem<'a>>,
}

#[derive(Serialize)]
struct AckItem<'a> {
    ack_id: &'a str,
    action: &'static str,
}

#[derive(Deserialize)]
struct AckResults {
    results: Vec<AckResult>,
}

#[derive(Deserialize)]
struct AckResult {
    status: u16,
    stream_seq: u64,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// One worker: `POST …/fetch` of up to [`BATCH`] messages, then one `POST /v1/acks` acking all
/// of them. Anything but a plain 200 for the fetch, the ack request and every ack result fails
/// the scenario.
struct FetchAck {
    conn: Conn,
    fetch_uri: Uri,
    fetch_body: Bytes,
    acks_uri: Uri,
    exhausted: bool,
}

impl Op for FetchAck {
    async fn call(&mut self) -> Result<u64> {
        let json = Some("application/json");
        let (status, body) = self
            .conn
            .send_parts(
                &Method::POST,
                &self.fetch_uri,
                json,
                self.fetch_body.clone(),
            )
            .await?;
        if status != StatusCode::OK {
            bail!(
                "POST {} answered {status}: {}",
                self.fetch_uri,
                String::from_utf8_lossy(&body)
            );
        }
        let fetched: Fetched =
            serde_json::from_slice(&body).context("the fetch answer is not the expected JSON")?;
        if fetched.messages.is_empty() {
            // Only after `wait` with nothing there: the consumer has read the whole stream.
            self.exhausted = true;
            return Ok(0);
        }
        if let Some(again) = fetched.messages.iter().find(|m| m.delivered != 1) {
            bail!(
                "message {} was delivered {} times: an ack was lost or came after ack_wait",
                again.seq,
                again.delivered
            );
        }
        let acks = AcksBody {
            acks: fetched
                .messages
                .iter()
                .map(|m| AckItem {
                    ack_id: &m.ack_id,
                    action: "ack",
                })
                .collect(),
        };
        let acks = Bytes::from(serde_json::to_vec(&acks).context("cannot encode the acks")?);
        let (status, body) = self
            .conn
            .send_parts(&Method::POST, &self.acks_uri, json, acks)
            .await?;
        if status != StatusCode::OK {
            bail!(
                "POST /v1/acks answered {status} (every result must be 200): {}",
                String::from_utf8_lossy(&body)
            );
        }
        let results: AckResults =
            serde_json::from_slice(&body).context("the acks answer is not the expected JSON")?;
        if results.results.len() != fetched.messages.len() {
            bail!(
                "POST /v1/acks answered {} results for {} acks",
                results.results.len(),
                fetched.messages.len()
            );
        }
        if let Some(failed) = results.results.iter().find(|r| r.status != 200) {
            bail!(
                "the ack of stream sequence {} answered {}: {}",
                failed.stream_seq,
                failed.status,
                failed.error.clone().unwrap_or_default()
            );
        }
        Ok(fetched.messages.len() as u64)
    }

    fn exhausted(&self) -> bool {
        self.exhausted
    }
}

/// `fetch+ack` through jetway: a durable consumer created with `PUT …/consumers/bench`, then
/// [`WORKERS`] workers, each on its own HTTP connection, fetching [`BATCH`] and acking them in
/// one request, in a loop. msgs/s counts acknowledged messages; latency is one fetch + ack cycle.
pub async fn fetch_ack(ctx: &Ctx) -> Result<Scenario> {
    ctx.filled_stream(FILL_MESSAGES, ctx.payload.len()).await?;
    let path = format!("/v1/streams/{STREAM}/consumers/{JETWAY_CONSUMER}");
    let (status, body) = http::request(ctx.gateway, "DELETE", &path, None).await?;
    if !status.is_success() && status != StatusCode::NOT_FOUND {
        bail!(
            "DELETE {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let config = serde_json::json!({ "ack_wait": "30s", "max_ack_pending": MAX_ACK_PENDING });
    let (status, body) = http::request(ctx.gateway, "PUT", &path, Some(&config)).await?;
    if status != StatusCode::CREATED {
        bail!(
            "PUT {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let fetch_body = serde_json::json!({
        "max_messages": BATCH,
        "wait": format!("{}s", FETCH_WAIT.as_secs()),
    });
    let fetch_uri: Uri = format!("{path}/fetch").parse().context("fetch path")?;
    let acks_uri: Uri = "/v1/acks".parse().context("acks path")?;
    let mut workers = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        workers.push(FetchAck {
            conn: Conn::connect(ctx.gateway).await?,
            fetch_uri: fetch_uri.clone(),
            fetch_body: Bytes::from(serde_json::to_vec(&fetch_body).context("fetch body")?),
            acks_uri: acks_uri.clone(),
            exhausted: false,
        });
    }
    let m = load::closed_loop(workers, ctx.timing, &ctx.probe).await?;
    // Everything fetched was acked: nothing may be pending or redelivered.
    let (status, body) = http::request(ctx.gateway, "GET", &path, None).await?;
    if status != StatusCode::OK {
        bail!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let info: serde_json::Value =
        serde_json::from_slice(&body).context("consumer info is not JSON")?;
    let state = &info["state"];
    let floor = state["ack_floor"]["stream_seq"].as_u64().unwrap_or(0);
    check_consumer(
        state["num_ack_pending"].as_u64().unwrap_or(u64::MAX),
        state["num_redelivered"].as_u64().unwrap_or(u64::MAX),
        floor,
        m.messages,
    )?;
    let what = format!(
        "POST …/consumers/bench/fetch {{max_messages: {BATCH}, wait: 1s}} + POST /v1/acks ({BATCH} acks), {} B",
        ctx.payload.len()
    );
    let row = Scenario::new(FETCH_ACK, "jetway", what, WORKERS, &m).payload(ctx.payload.len());
    Ok(drained_note(row, floor, ctx))
}

/// The same work directly: a durable pull consumer (same settings) fetched with async-nats in
/// batches of [`BATCH`], each message double-acked (`AckKind::Ack`, awaiting the server's
/// confirmation), the acks of one batch in flight together.
struct DirectFetchAck {
    consumer: PullConsumer,
    exhausted: bool,
}

impl Op for DirectFetchAck {
    async fn call(&mut self) -> Result<u64> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(BATCH)
            .expires(FETCH_WAIT)
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("direct fetch failed: {e}"))?;
        let mut messages = Vec::with_capacity(BATCH);
        while let Some(message) = batch.next().await {
            messages.push(message.map_err(|e| anyhow::anyhow!("direct fetch failed: {e}"))?);
        }
        if messages.is_empty() {
            self.exhausted = true;
            return Ok(0);
        }
        for message in &messages {
            let info = message
                .info()
                .map_err(|e| anyhow::anyhow!("not a JetStream message: {e}"))?;
            if info.delivered != 1 {
                bail!(
                    "message {} was delivered {} times: an ack was lost or came after ack_wait",
                    info.stream_sequence,
                    info.delivered
                );
            }
        }
        for acked in join_all(messages.iter().map(|m| m.double_ack())).await {
            acked.map_err(|e| anyhow::anyhow!("double ack failed: {e}"))?;
        }
        Ok(messages.len() as u64)
    }

    fn exhausted(&self) -> bool {
        self.exhausted
    }
}

/// `direct fetch+ack`: [`WORKERS`] tasks on the one shared async-nats connection.
pub async fn direct_fetch_ack(ctx: &Ctx) -> Result<Scenario> {
    ctx.filled_stream(FILL_MESSAGES, ctx.payload.len()).await?;
    let stream = ctx
        .js
        .get_stream(STREAM)
        .await
        .map_err(|e| anyhow::anyhow!("cannot get stream {STREAM}: {e}"))?;
    // Absent is fine.
    let _ = stream.delete_consumer(DIRECT_CONSUMER).await;
    let consumer: PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(DIRECT_CONSUMER.to_owned()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: MAX_ACK_PENDING as i64,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot create consumer {DIRECT_CONSUMER}: {e}"))?;
    let workers = (0..WORKERS)
        .map(|_| DirectFetchAck {
            consumer: consumer.clone(),
            exhausted: false,
        })
        .collect();
    let m = load::closed_loop(workers, ctx.timing, &ctx.probe).await?;
    let mut consumer = consumer;
    let info = consumer
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read consumer {DIRECT_CONSUMER}: {e}"))?;
    let floor = info.ack_floor.stream_sequence;
    check_consumer(
        info.num_ack_pending as u64,
        info.num_redelivered as u64,
        floor,
        m.messages,
    )?;
    let what = format!(
        "consumer.fetch(max {BATCH}, expires 1s) + {BATCH} × double_ack (join_all), {} B",
        ctx.payload.len()
    );
    let row =
        Scenario::new(DIRECT_FETCH_ACK, "direct", what, WORKERS, &m).payload(ctx.payload.len());
    Ok(drained_note(row, floor, ctx))
}

/// After a run every fetched message must be acknowledged: none pending, none redelivered, and
/// the ack floor at least at the messages acknowledged in the window.
fn check_consumer(ack_pending: u64, redelivered: u64, floor: u64, acked: u64) -> Result<()> {
    if ack_pending != 0 || redelivered != 0 {
        bail!(
            "after the run the consumer has {ack_pending} messages awaiting an ack and \
             {redelivered} redelivered: every fetched message should have been acked"
        );
    }
    if floor < acked {
        bail!("the consumer's ack floor is {floor} but {acked} messages were acked");
    }
    Ok(())
}

/// Marks a row whose consumer read the whole stream before its window ended.
fn drained_note(row: Scenario, floor: u64, ctx: &Ctx) -> Scenario {
    let window = ctx.timing.duration.as_secs_f64();
    if floor >= FILL_MESSAGES && row.seconds < window * 0.99 {
        let seconds = row.seconds;
        row.note(format!(
            "drained all {FILL_MESSAGES} messages {seconds:.1} s into the {window:.0} s window"
        ))
    } else {
        row
    }
}
