//! Consuming with acknowledgements: jetway's long-poll fetch followed by one `POST /v1/acks` per
//! batch, next to an async-nats pull consumer that fetches the same batches and double-acks each
//! message. Both read the same pre-filled stream, each through its own durable consumer: on the
//! single server, and (the `r3` rows) on an R3 stream of a 3-node cluster, whose consumers are
//! R3 too.
//!
//! Every message has to be accounted for: the workers keep the stream sequence of every message
//! they acked (warm-up included), and after the run nats-server's view of the consumer must match
//! it exactly — every sequence from 1 to the last one delivered received once and acked, nothing
//! pending, nothing redelivered. A message the server delivered but the client never got (as
//! when a pull stops at an early `409 Batch Completed` on an R3 consumer) fails the scenario.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::join_all;
use hyper::{Method, StatusCode, Uri};
use serde::{Deserialize, Serialize};

use crate::http::{self, Conn};
use crate::load::{self, Op};
use crate::procs;
use crate::report::Scenario;
use crate::scenarios::{Ctx, STREAM};

pub const FETCH_ACK: &str = "fetch+ack";
pub const DIRECT_FETCH_ACK: &str = "direct fetch+ack";
/// The same two on the R3 stream of a 3-node cluster.
pub const FETCH_ACK_R3: &str = "fetch+ack r3";
pub const DIRECT_FETCH_ACK_R3: &str = "direct fetch+ack r3";

/// Messages in the stream both consumers read (128 B each). Enough for either path to run
/// through the warm-up and the measured window at the rates of this machine; a consumer that
/// drains it earlier ends its window there, and its row says so.
pub const FILL_MESSAGES: u64 = 1_000_000;
/// The same for the R3 stream, where consuming (and filling) is slower.
pub const FILL_MESSAGES_R3: u64 = 600_000;
/// How long nats-server's view of a consumer may take to settle after the run (acks of an R3
/// consumer are applied by its replicas).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
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

/// The stream sequences of every message a scenario's workers acked, warm-up included.
#[derive(Clone, Default)]
struct Acked(Arc<Mutex<Vec<u64>>>);

impl Acked {
    fn extend(&self, seqs: impl IntoIterator<Item = u64>) {
        if let Ok(mut acked) = self.0.lock() {
            acked.extend(seqs);
        }
    }

    fn sorted(&self) -> Vec<u64> {
        let mut seqs = self.0.lock().map(|a| a.clone()).unwrap_or_default();
        seqs.sort_unstable();
        seqs
    }
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
    acked: Acked,
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
        self.acked.extend(fetched.messages.iter().map(|m| m.seq));
        Ok(fetched.messages.len() as u64)
    }

    fn exhausted(&self) -> bool {
        self.exhausted
    }
}

/// `fetch+ack` through jetway: a durable consumer created with `PUT …/consumers/bench`, then
/// [`WORKERS`] workers, each on its own HTTP connection, fetching [`BATCH`] and acking them in
/// one request, in a loop. msgs/s counts acknowledged messages; latency is one fetch + ack cycle.
pub async fn fetch_ack(ctx: &Ctx, name: &str) -> Result<Scenario> {
    let fill = fill_messages(ctx);
    ctx.filled_stream(fill, ctx.payload.len()).await?;
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
    let leader = consumer_leader(ctx, JETWAY_CONSUMER).await?;
    let fetch_body = serde_json::json!({
        "max_messages": BATCH,
        "wait": format!("{}s", FETCH_WAIT.as_secs()),
    });
    let fetch_uri: Uri = format!("{path}/fetch").parse().context("fetch path")?;
    let acks_uri: Uri = "/v1/acks".parse().context("acks path")?;
    let acked = Acked::default();
    let mut workers = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        workers.push(FetchAck {
            conn: Conn::connect(ctx.gateway).await?,
            fetch_uri: fetch_uri.clone(),
            fetch_body: Bytes::from(serde_json::to_vec(&fetch_body).context("fetch body")?),
            acks_uri: acks_uri.clone(),
            acked: acked.clone(),
            exhausted: false,
        });
    }
    let m = load::closed_loop(workers, ctx.timing, &ctx.probe).await?;
    // Everything delivered was received and acked: nothing may be pending, lost or redelivered.
    let floor = verify_all_acked(ctx, JETWAY_CONSUMER, &acked, m.messages).await?;
    let what = format!(
        "POST …/consumers/bench/fetch {{max_messages: {BATCH}, wait: 1s}} + POST /v1/acks ({BATCH} acks), {} B{}",
        ctx.payload.len(),
        replicas_text(ctx)
    );
    let row = Scenario::new(name, "jetway", what, WORKERS, &m).payload(ctx.payload.len());
    let client = match &ctx.nodes[..] {
        [] => None,
        nodes => Some(format!(
            "jetway connected to {}",
            gateway_node(ctx.probe.gateway.first(), nodes)
        )),
    };
    Ok(with_notes(
        row,
        [client, leader, drained(&m, floor, fill, ctx)],
    ))
}

/// The same work directly: a durable pull consumer (same settings) fetched with async-nats in
/// batches of [`BATCH`], each message double-acked (`AckKind::Ack`, awaiting the server's
/// confirmation), the acks of one batch in flight together.
struct DirectFetchAck {
    consumer: PullConsumer,
    acked: Acked,
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
        let mut seqs = Vec::with_capacity(messages.len());
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
            seqs.push(info.stream_sequence);
        }
        for acked in join_all(messages.iter().map(|m| m.double_ack())).await {
            acked.map_err(|e| anyhow::anyhow!("double ack failed: {e}"))?;
        }
        self.acked.extend(seqs);
        Ok(messages.len() as u64)
    }

    fn exhausted(&self) -> bool {
        self.exhausted
    }
}

/// `direct fetch+ack`: [`WORKERS`] tasks on the one shared async-nats connection.
pub async fn direct_fetch_ack(ctx: &Ctx, name: &str) -> Result<Scenario> {
    let fill = fill_messages(ctx);
    ctx.filled_stream(fill, ctx.payload.len()).await?;
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
    let leader = consumer_leader(ctx, DIRECT_CONSUMER).await?;
    let acked = Acked::default();
    let workers = (0..WORKERS)
        .map(|_| DirectFetchAck {
            consumer: consumer.clone(),
            acked: acked.clone(),
            exhausted: false,
        })
        .collect();
    let m = load::closed_loop(workers, ctx.timing, &ctx.probe).await?;
    let floor = verify_all_acked(ctx, DIRECT_CONSUMER, &acked, m.messages).await?;
    let what = format!(
        "consumer.fetch(max {BATCH}, expires 1s) + {BATCH} × double_ack (join_all), {} B{}",
        ctx.payload.len(),
        replicas_text(ctx)
    );
    let row = Scenario::new(name, "direct", what, WORKERS, &m).payload(ctx.payload.len());
    let client = (!ctx.nodes.is_empty()).then(|| {
        format!(
            "async-nats connected to {}",
            ctx.js.client().server_info().server_name
        )
    });
    Ok(with_notes(
        row,
        [client, leader, drained(&m, floor, fill, ctx)],
    ))
}

/// Messages the stream is filled with for these scenarios.
fn fill_messages(ctx: &Ctx) -> u64 {
    if ctx.replicas > 1 {
        FILL_MESSAGES_R3
    } else {
        FILL_MESSAGES
    }
}

/// `, R3 stream and consumer on a 3-node cluster` (nothing on the single server).
fn replicas_text(ctx: &Ctx) -> String {
    if ctx.replicas > 1 {
        format!(
            ", R{} stream and consumer on a {}-node cluster",
            ctx.replicas,
            ctx.nodes.len()
        )
    } else {
        String::new()
    }
}

/// On a cluster: checks that the consumer has every replica and names its leader (the node
/// that delivers and takes the acks).
async fn consumer_leader(ctx: &Ctx, consumer: &str) -> Result<Option<String>> {
    if ctx.replicas <= 1 {
        return Ok(None);
    }
    let info = consumer_info(ctx, consumer).await?;
    let cluster = info.cluster.unwrap_or_default();
    if cluster.replicas.len() + 1 != ctx.replicas {
        bail!(
            "consumer {consumer} has {} replicas besides its leader, expected {} (an R{} consumer)",
            cluster.replicas.len(),
            ctx.replicas - 1,
            ctx.replicas
        );
    }
    let leader = cluster
        .leader
        .with_context(|| format!("consumer {consumer} has no leader"))?;
    Ok(Some(format!("consumer leader {leader}")))
}

/// The consumer as nats-server sees it (asked directly, not through jetway).
pub async fn consumer_info(
    ctx: &Ctx,
    consumer: &str,
) -> Result<async_nats::jetstream::consumer::Info> {
    let stream = ctx
        .js
        .get_stream(STREAM)
        .await
        .map_err(|e| anyhow::anyhow!("cannot get stream {STREAM}: {e}"))?;
    stream
        .consumer_info(consumer)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read consumer {consumer}: {e}"))
}

/// The node a gateway process is connected to: the cluster node whose client port its one
/// established TCP connection goes to (`/proc`), or "?" when that cannot be told.
fn gateway_node(pid: u32, nodes: &[(String, u16)]) -> String {
    let ports = procs::peer_ports(pid).unwrap_or_default();
    let names: Vec<&str> = nodes
        .iter()
        .filter(|(_, port)| ports.contains(port))
        .map(|(name, _)| name.as_str())
        .collect();
    if names.is_empty() {
        "?".to_owned()
    } else {
        names.join("+")
    }
}

/// After a run every message the server delivered must have been received once and acked.
/// Waits up to [`SETTLE_TIMEOUT`] for nats-server's view of the consumer to settle (nothing
/// awaiting an ack, the ack floor at the last delivered sequence), then checks it against the
/// sequences the workers acked ([`account`]). Answers the ack floor.
async fn verify_all_acked(ctx: &Ctx, consumer: &str, acked: &Acked, in_window: u64) -> Result<u64> {
    let seqs = acked.sorted();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let info = consumer_info(ctx, consumer).await?;
        let state = ConsumerState {
            delivered: info.delivered.stream_sequence,
            ack_floor: info.ack_floor.stream_sequence,
            ack_pending: info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
        };
        let settled = state.ack_pending == 0 && state.ack_floor == state.delivered;
        if settled || Instant::now() >= deadline {
            account(&seqs, in_window, &state)
                .with_context(|| format!("consumer {consumer}: not every message was acked"))?;
            return Ok(state.ack_floor);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A consumer's state as nats-server reports it (stream sequences).
#[derive(Debug, Clone, Copy)]
struct ConsumerState {
    /// The last stream sequence delivered.
    delivered: u64,
    ack_floor: u64,
    ack_pending: u64,
    redelivered: u64,
}

/// The acked stream sequences (`seqs`, sorted) must be exactly 1 to the last delivered one,
/// none twice, at least as many as were counted in the window; nats-server must count nothing
/// awaiting an ack and nothing redelivered, its ack floor at the last delivered sequence.
fn account(seqs: &[u64], in_window: u64, state: &ConsumerState) -> Result<()> {
    if let Some(twice) = seqs.windows(2).find(|w| w[0] == w[1]) {
        bail!("stream sequence {} was received and acked twice", twice[0]);
    }
    let count = seqs.len() as u64;
    if count < in_window {
        bail!("{in_window} messages counted in the window but only {count} acked in all");
    }
    let ConsumerState {
        delivered,
        ack_floor,
        ack_pending,
        redelivered,
    } = *state;
    let never_received: Vec<u64> = (1..=delivered)
        .filter(|s| seqs.binary_search(s).is_err())
        .take(10)
        .collect();
    let beyond = seqs.last().is_some_and(|&last| last > delivered);
    if ack_pending != 0
        || redelivered != 0
        || ack_floor != delivered
        || !never_received.is_empty()
        || beyond
        || seqs.first().is_some_and(|&first| first != 1)
    {
        bail!(
            "nats-server delivered stream sequences 1 to {delivered} (ack floor {ack_floor}, \
             {ack_pending} awaiting an ack, {redelivered} redelivered); the workers received and \
             acked {count} (from {} to {}); first sequences delivered but never received: \
             {never_received:?}",
            seqs.first().copied().unwrap_or(0),
            seqs.last().copied().unwrap_or(0)
        );
    }
    Ok(())
}

/// Notes a row whose consumer read the whole stream before its window ended.
fn drained(m: &load::Measurement, floor: u64, fill: u64, ctx: &Ctx) -> Option<String> {
    let window = ctx.timing.duration.as_secs_f64();
    let seconds = m.elapsed.as_secs_f64();
    (floor >= fill && seconds < window * 0.99).then(|| {
        format!("drained all {fill} messages {seconds:.1} s into the {window:.0} s window")
    })
}

/// Attaches the notes that apply, `; `-separated.
pub fn with_notes(row: Scenario, notes: impl IntoIterator<Item = Option<String>>) -> Scenario {
    let notes: Vec<String> = notes.into_iter().flatten().collect();
    if notes.is_empty() {
        row
    } else {
        row.note(notes.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(delivered: u64, ack_floor: u64, ack_pending: u64) -> ConsumerState {
        ConsumerState {
            delivered,
            ack_floor,
            ack_pending,
            redelivered: 0,
        }
    }

    #[test]
    fn every_delivered_message_acked_passes() {
        let seqs: Vec<u64> = (1..=300).collect();
        assert!(account(&seqs, 200, &state(300, 300, 0)).is_ok());
        assert!(account(&[], 0, &state(0, 0, 0)).is_ok());
    }

    #[test]
    fn a_message_delivered_but_never_received_fails() {
        // 150 was delivered (after an early pull status) but never reached the client.
        let seqs: Vec<u64> = (1..=300).filter(|&s| s != 150).collect();
        let err = account(&seqs, 200, &state(300, 149, 1))
            .map_err(|e| e.to_string())
            .expect_err("a lost message must fail");
        assert!(err.contains("[150]"), "{err}");
        // Even if the server's counters looked settled.
        assert!(account(&seqs, 200, &state(300, 300, 0)).is_err());
    }

    #[test]
    fn duplicates_redeliveries_and_short_counts_fail() {
        let mut seqs: Vec<u64> = (1..=100).collect();
        seqs.insert(50, 50);
        assert!(account(&seqs, 0, &state(100, 100, 0)).is_err());
        let seqs: Vec<u64> = (1..=100).collect();
        let redelivered = ConsumerState {
            redelivered: 1,
            ..state(100, 100, 0)
        };
        assert!(account(&seqs, 0, &redelivered).is_err());
        assert!(account(&seqs, 101, &state(100, 100, 0)).is_err());
        assert!(account(&seqs, 0, &state(99, 99, 0)).is_err());
    }
}
