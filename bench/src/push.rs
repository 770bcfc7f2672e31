//! Push delivery: jetway POSTs every message of the pre-filled stream to a receiver in this
//! process (a push subscription, `PUT /v1/streams/BENCH/push/{name}`), once with
//! `max_in_flight` 1 (strictly in order, one delivery at a time) and once with 64.
//!
//! The receiver is a plain HTTP/1.1 server on the loopback interface that reads each request's
//! body and answers 204, so every delivery is accepted at the first attempt and what is measured
//! is jetway's delivery loop: pull from the durable consumer, sign and POST, ack on the 2xx. The
//! subscription starts delivering on its own; the warm-up starts with the first POST received,
//! and msgs/s counts the POSTs answered in the measured window (each one acks one message).
//!
//! Every message has to be accounted for, as for fetch + ack: after the window the subscription
//! is paused, the bench waits until nats-server's view of its durable consumer is settled
//! (nothing awaiting an ack, the ack floor at the last sequence delivered), and the receiver must
//! have seen every stream sequence from 1 to that last one at least once, and none beyond it.
//! Then the subscription is deleted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use crate::consume::{self, FILL_MESSAGES};
use crate::http;
use crate::load::Measurement;
use crate::report::Scenario;
use crate::scenarios::{Ctx, STREAM};

pub const PUSH_1: &str = "push max_in_flight=1";
pub const PUSH_64: &str = "push max_in_flight=64";

/// How long the first delivery may take after the subscription was created (every replica
/// watches the definitions and starts a worker when one appears).
const FIRST_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long nats-server's view of the consumer may take to settle once the subscription is
/// paused: deliveries in progress finish first, and one may take up to the subscription's
/// `timeout` (10 s by default) before it is answered or given up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long jetway's own counts may take to include every delivery (each replica writes them
/// about once a second).
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Sequences named when some are missing.
const SHOWN_MISSING: usize = 10;

/// What the receiver saw, shared by its connection tasks.
#[derive(Default)]
struct Seen {
    /// POSTs answered 204.
    accepted: AtomicU64,
    /// Signalled at the first accepted POST.
    first: Notify,
    log: Mutex<Log>,
}

#[derive(Clone, Default)]
struct Log {
    /// The `jetway-seq` of every accepted POST, in the order they were answered.
    seqs: Vec<u64>,
    /// Accepted POSTs whose `jetway-delivery-count` was above 1.
    redeliveries: u64,
    /// Requests refused (400) because they were not a delivery of this stream, and the first
    /// one's reason.
    refused: u64,
    first_refusal: Option<String>,
}

impl Seen {
    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Acquire)
    }

    /// A copy of the log.
    fn log(&self) -> Log {
        match self.log.lock() {
            Ok(log) => log.clone(),
            Err(_) => Log {
                first_refusal: Some("the receiver's log is poisoned".to_owned()),
                ..Log::default()
            },
        }
    }

    fn accept(&self, seq: u64, delivery: u64) {
        if let Ok(mut log) = self.log.lock() {
            log.seqs.push(seq);
            if delivery > 1 {
                log.redeliveries += 1;
            }
        }
        if self.accepted.fetch_add(1, Ordering::AcqRel) == 0 {
            // A stored permit: the waiter may start waiting after this.
            self.first.notify_one();
        }
    }

    fn refuse(&self, why: String) {
        if let Ok(mut log) = self.log.lock() {
            log.refused += 1;
            log.first_refusal.get_or_insert(why);
        }
    }
}

/// The no-op webhook receiver: HTTP/1.1 on `127.0.0.1:<free port>`, one task per connection
/// (jetway keeps up to `max_in_flight` connections open). Dropping it stops the server and
/// closes every connection.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Seen>,
    server: JoinHandle<()>,
}

impl Receiver {
    /// Starts the receiver; a request counts as a delivery when it is a POST carrying a
    /// `jetway-stream` of the bench stream, a numeric `jetway-seq` and `jetway-delivery-count`
    /// and a body of `payload_bytes`.
    async fn start(payload_bytes: usize) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("the push receiver cannot bind a port")?;
        let addr = listener
            .local_addr()
            .context("the push receiver has no address")?;
        let seen = Arc::new(Seen::default());
        let server = {
            let seen = seen.clone();
            tokio::spawn(async move {
                // Dropped with the accept loop: aborting the server closes every connection.
                let mut connections = JoinSet::new();
                loop {
                    let stream = match listener.accept().await {
                        Ok((stream, _)) => stream,
                        Err(err) => {
                            seen.refuse(format!("the receiver cannot accept connections: {err}"));
                            return;
                        }
                    };
                    // Answers go out at once, as the load tool's requests do.
                    let _ = stream.set_nodelay(true);
                    let seen = seen.clone();
                    connections.spawn(async move {
                        let service =
                            service_fn(move |request| handle(seen.clone(), payload_bytes, request));
                        // Ends when jetway closes the connection.
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                    while connections.try_join_next().is_some() {}
                }
            })
        };
        Ok(Self { addr, seen, server })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Answers one delivery: 204 after reading its body, or 400 for a request that is not one.
async fn handle(
    seen: Arc<Seen>,
    payload_bytes: usize,
    request: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let number = |name: &str| -> Option<u64> {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    let (seq, delivery) = (number("jetway-seq"), number("jetway-delivery-count"));
    let stream_ok = request
        .headers()
        .get("jetway-stream")
        .is_some_and(|v| v.as_bytes() == STREAM.as_bytes());
    let signed = request.headers().contains_key("webhook-signature");
    let is_post = request.method() == Method::POST;
    // Read the body whole, as a receiver that does something with it would.
    let body = request.into_body().collect().await.map(|b| b.to_bytes());
    let verdict = match (seq, delivery, body) {
        (Some(seq), Some(delivery), Ok(body))
            if is_post && stream_ok && signed && body.len() == payload_bytes =>
        {
            Ok((seq, delivery))
        }
        (seq, delivery, body) => Err(format!(
            "not a delivery of stream {STREAM}: POST {is_post}, jetway-stream matches \
             {stream_ok}, signed {signed}, jetway-seq {seq:?}, jetway-delivery-count \
             {delivery:?}, body {}",
            match body {
                Ok(body) => format!("{} B (expected {payload_bytes})", body.len()),
                Err(err) => format!("unreadable: {err}"),
            }
        )),
    };
    let status = match verdict {
        Ok((seq, delivery)) => {
            seen.accept(seq, delivery);
            StatusCode::NO_CONTENT
        }
        Err(why) => {
            seen.refuse(why);
            StatusCode::BAD_REQUEST
        }
    };
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    Ok(response)
}

/// A push subscription row: `max_in_flight` deliveries in progress at most, on its own durable
/// consumer (`push-<max_in_flight>`) of the stream the fetch + ack rows read.
pub async fn push(ctx: &Ctx, name: &str, max_in_flight: u32) -> Result<Scenario> {
    ctx.filled_stream(FILL_MESSAGES, ctx.payload.len()).await?;
    let receiver = Receiver::start(ctx.payload.len()).await?;
    let consumer = format!("push-{max_in_flight}");
    let path = format!("/v1/streams/{STREAM}/push/{consumer}");
    // A subscription left by an earlier run of this row would go on delivering elsewhere.
    let (status, body) = http::request(ctx.gateway, "DELETE", &path, None).await?;
    if !status.is_success() && status != StatusCode::NOT_FOUND {
        bail!(
            "DELETE {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let url = format!("http://{}/hook", receiver.addr);
    let config = serde_json::json!({ "url": url, "max_in_flight": max_in_flight });
    let created = Instant::now();
    let (status, body) = http::request(ctx.gateway, "PUT", &path, Some(&config)).await?;
    if status != StatusCode::CREATED {
        bail!(
            "PUT {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // From here on the subscription exists: it is deleted whatever happens, or it would keep
    // delivering (and retrying against a receiver that is gone) through the later rows.
    let measured = measure(ctx, &receiver, &path, &consumer, max_in_flight, created).await;
    let deleted = match http::request(ctx.gateway, "DELETE", &path, None).await {
        Ok((StatusCode::NO_CONTENT, _)) => Ok(()),
        Ok((status, body)) => Err(anyhow::anyhow!(
            "DELETE {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        )),
        Err(err) => Err(err),
    };
    // What went wrong while measuring comes first; a failed deletion after it is secondary.
    let (m, notes) = measured?;
    deleted?;
    let what = format!(
        "jetway POSTs each message to a receiver in the load tool (HTTP/1.1, answers 204), \
         acks on the 2xx; {} B",
        ctx.payload.len()
    );
    let row =
        Scenario::new(name, "jetway", what, max_in_flight as usize, &m).payload(ctx.payload.len());
    Ok(consume::with_notes(row, notes))
}

/// Runs the warm-up and the measured window, then pauses the subscription and accounts for
/// every message. Answers the measurement and the row's notes.
async fn measure(
    ctx: &Ctx,
    receiver: &Receiver,
    path: &str,
    consumer: &str,
    max_in_flight: u32,
    created: Instant,
) -> Result<(Measurement, Vec<Option<String>>)> {
    let seen = &receiver.seen;
    if tokio::time::timeout(FIRST_DELIVERY_TIMEOUT, seen.first.notified())
        .await
        .is_err()
    {
        bail!(
            "no delivery within {FIRST_DELIVERY_TIMEOUT:?} of creating the subscription \
             (requests refused by the receiver: {}, the first: {}); {}",
            seen.log().refused,
            seen.log().first_refusal.unwrap_or_default(),
            push_state(ctx, path).await
        );
    }
    let first = created.elapsed();
    let from = Instant::now() + ctx.timing.warmup;
    let until = from + ctx.timing.duration;
    let cpu = ctx.probe.window(from, until);
    // The window's edges, taken as the CPU probe takes its samples.
    tokio::time::sleep_until(from.into()).await;
    let (at_from, t0) = (seen.accepted(), Instant::now());
    let posts_from = post_times(ctx, consumer).await?;
    tokio::time::sleep_until(until.into()).await;
    let (at_until, t1) = (seen.accepted(), Instant::now());
    let posts_until = post_times(ctx, consumer).await?;
    let cpu = cpu.await?;
    let in_window = at_until - at_from;
    if in_window == 0 {
        bail!(
            "no delivery accepted in the measured window; {}",
            push_state(ctx, path).await
        );
    }

    // No new delivery starts once paused; those in progress finish and are acked.
    let (status, body) = http::request(ctx.gateway, "POST", &format!("{path}/pause"), None).await?;
    if status != StatusCode::OK {
        bail!(
            "POST {path}/pause answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let state = settled_consumer(ctx, consumer).await?;
    let Log {
        seqs,
        redeliveries,
        refused,
        first_refusal,
    } = seen.log();
    if let Some(why) = first_refusal {
        bail!("the receiver refused {refused} request(s); the first: {why}");
    }
    let summary = account(&seqs, &state)
        .with_context(|| format!("consumer {consumer}: not every message was delivered"))?;
    if max_in_flight == 1
        && redeliveries == 0
        && let Some(pair) = seqs.windows(2).find(|w| w[1] != w[0] + 1)
    {
        bail!(
            "max_in_flight 1 delivers in order, but stream sequence {} arrived right after {}",
            pair[1],
            pair[0]
        );
    }
    let status = jetway_status(ctx, path, seqs.len() as u64).await?;

    let m = Measurement {
        requests: in_window,
        messages: in_window,
        elapsed: t1.duration_since(t0),
        latencies_us: Vec::new(),
        cpu,
    };
    let rate = m.msgs_per_s().max(1e-9);
    let per_message = |pct: f64| pct / 100.0 / rate * 1e6;
    let notes = vec![
        Some(format!(
            "{:.1} µs jetway CPU and {:.1} µs nats-server CPU per message",
            per_message(cpu.gateway_pct),
            per_message(cpu.nats_server_pct)
        )),
        post_mean_us(posts_from, posts_until).map(|us| {
            format!("a POST took {us:.0} µs on average as jetway times it (send to answer)")
        }),
        Some(format!("first POST {} ms after the PUT", first.as_millis())),
        Some(format!(
            "every sequence 1 to {} received{} and acked",
            state.delivered,
            if summary.duplicates == 0 {
                " once".to_owned()
            } else {
                format!(", {} of them more than once", summary.duplicates)
            }
        )),
        (redeliveries > 0 || state.redelivered > 0).then(|| {
            format!(
                "{redeliveries} POSTs were redeliveries; nats-server counts {} redelivered",
                state.redelivered
            )
        }),
        status,
        (state.delivered >= FILL_MESSAGES).then(|| {
            format!("drained all {FILL_MESSAGES} messages: the window's rate is a lower bound")
        }),
    ];
    Ok((m, notes))
}

/// `jetway_push_delivery_seconds` of the subscription: (sum of seconds, count) of its POSTs so
/// far, from the gateway's `/metrics` (zeros before its first delivery on this gateway).
async fn post_times(ctx: &Ctx, consumer: &str) -> Result<(f64, f64)> {
    Ok(delivery_seconds(
        &crate::sockets::metrics(ctx).await?,
        consumer,
    ))
}

/// (sum, count) of `jetway_push_delivery_seconds` for the subscription `consumer` in a
/// `/metrics` text.
fn delivery_seconds(text: &str, consumer: &str) -> (f64, f64) {
    let series = format!("push=\"{consumer}\"");
    let value = |name: &str| {
        text.lines()
            .filter(|line| line.starts_with(name) && line.contains(&series))
            .find_map(|line| line.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("jetway_push_delivery_seconds_sum{"),
        value("jetway_push_delivery_seconds_count{"),
    )
}

/// The mean POST time in µs between two [`post_times`] readings.
fn post_mean_us(from: (f64, f64), until: (f64, f64)) -> Option<f64> {
    let count = until.1 - from.1;
    (count > 0.0).then(|| (until.0 - from.0) / count * 1e6)
}

/// The subscription's state as jetway shows it, for an error message.
async fn push_state(ctx: &Ctx, path: &str) -> String {
    match http::request(ctx.gateway, "GET", path, None).await {
        Ok((status, body)) => format!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        ),
        Err(err) => format!("GET {path} failed: {err:#}"),
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

/// Waits up to [`SETTLE_TIMEOUT`] until nats-server counts nothing awaiting an ack on the
/// consumer and its ack floor is the last sequence it delivered; answers that state (or the
/// last one seen, for [`account`] to name what is missing).
async fn settled_consumer(ctx: &Ctx, consumer: &str) -> Result<ConsumerState> {
    let last = Mutex::new(None);
    Ctx::wait_until(SETTLE_TIMEOUT, || {
        let last = &last;
        async move {
            let info = consume::consumer_info(ctx, consumer).await?;
            let state = ConsumerState {
                delivered: info.delivered.stream_sequence,
                ack_floor: info.ack_floor.stream_sequence,
                ack_pending: info.num_ack_pending as u64,
                redelivered: info.num_redelivered as u64,
            };
            if let Ok(mut last) = last.lock() {
                *last = Some(state);
            }
            Ok(state.ack_pending == 0 && state.ack_floor == state.delivered)
        }
    })
    .await?;
    last.into_inner()
        .ok()
        .flatten()
        .with_context(|| format!("no state of consumer {consumer}"))
}

/// What [`account`] found beyond the checks.
#[derive(Debug, PartialEq)]
struct Summary {
    /// Accepted POSTs of a sequence already accepted.
    duplicates: u64,
}

/// At least once, nothing more: the sequences the receiver accepted (`seqs`, in arrival order,
/// repeats allowed) must be every one from 1 to the last one nats-server delivered, none beyond
/// it, and nats-server must count nothing awaiting an ack, its ack floor at that last one.
fn account(seqs: &[u64], state: &ConsumerState) -> Result<Summary> {
    let mut distinct = seqs.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let ConsumerState {
        delivered,
        ack_floor,
        ack_pending,
        redelivered,
    } = *state;
    let missing: Vec<u64> = (1..=delivered)
        .filter(|s| distinct.binary_search(s).is_err())
        .take(SHOWN_MISSING)
        .collect();
    let beyond = distinct.last().is_some_and(|&last| last > delivered);
    let zero = distinct.first() == Some(&0);
    if ack_pending != 0 || ack_floor != delivered || !missing.is_empty() || beyond || zero {
        bail!(
            "nats-server delivered stream sequences 1 to {delivered} (ack floor {ack_floor}, \
             {ack_pending} awaiting an ack, {redelivered} redelivered); the receiver accepted \
             {} POSTs of {} sequences (from {} to {}); first sequences delivered but never \
             received: {missing:?}",
            seqs.len(),
            distinct.len(),
            distinct.first().copied().unwrap_or(0),
            distinct.last().copied().unwrap_or(0)
        );
    }
    Ok(Summary {
        duplicates: (seqs.len() - distinct.len()) as u64,
    })
}

/// jetway's own count of accepted deliveries (`state.acked`, written by each replica about
/// once a second), waited for until it reaches `accepted`, the receiver's; a note when it does
/// not within [`STATUS_TIMEOUT`].
async fn jetway_status(ctx: &Ctx, path: &str, accepted: u64) -> Result<Option<String>> {
    let last = Mutex::new(serde_json::Value::Null);
    let reached = Ctx::wait_until(STATUS_TIMEOUT, || {
        let last = &last;
        async move {
            let (status, body) = http::request(ctx.gateway, "GET", path, None).await?;
            if status != StatusCode::OK {
                bail!(
                    "GET {path} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            let info: serde_json::Value =
                serde_json::from_slice(&body).context("the push subscription is not JSON")?;
            let acked = info["state"]["acked"].as_u64();
            if let Ok(mut last) = last.lock() {
                *last = info["state"].clone();
            }
            Ok(acked == Some(accepted))
        }
    })
    .await?;
    if reached {
        return Ok(None);
    }
    let state = last.into_inner().unwrap_or_default();
    Ok(Some(format!(
        "jetway's status still counted {} acked, {} delivered, {} failed {STATUS_TIMEOUT:?} \
         after the receiver had accepted {accepted}",
        state["acked"], state["delivered"], state["failed"]
    )))
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
    fn every_sequence_at_least_once_passes() {
        let seqs: Vec<u64> = (1..=300).collect();
        assert_eq!(
            account(&seqs, &state(300, 300, 0)).ok(),
            Some(Summary { duplicates: 0 })
        );
        // Out of order and twice is still at least once.
        let mut seqs: Vec<u64> = (1..=300).rev().collect();
        seqs.push(17);
        assert_eq!(
            account(&seqs, &state(300, 300, 0)).ok(),
            Some(Summary { duplicates: 1 })
        );
        assert!(account(&[], &state(0, 0, 0)).is_ok());
    }

    #[test]
    fn post_times_are_read_for_one_subscription() {
        let text = "# TYPE jetway_push_delivery_seconds histogram\n\
            jetway_push_delivery_seconds_sum{stream=\"BENCH\",push=\"push-64\"} 9.5\n\
            jetway_push_delivery_seconds_count{stream=\"BENCH\",push=\"push-64\"} 1000\n\
            jetway_push_delivery_seconds_sum{stream=\"BENCH\",push=\"push-1\"} 0.25\n\
            jetway_push_delivery_seconds_count{stream=\"BENCH\",push=\"push-1\"} 2500\n";
        assert_eq!(delivery_seconds(text, "push-1"), (0.25, 2500.0));
        assert_eq!(delivery_seconds(text, "push-2"), (0.0, 0.0));
        assert_eq!(post_mean_us((0.25, 2500.0), (0.75, 5000.0)), Some(200.0));
        assert_eq!(post_mean_us((0.25, 2500.0), (0.25, 2500.0)), None);
    }

    #[test]
    fn a_missing_sequence_fails_and_is_named() {
        let seqs: Vec<u64> = (1..=300).filter(|&s| s != 150).collect();
        let err = account(&seqs, &state(300, 300, 0))
            .map_err(|e| e.to_string())
            .expect_err("a lost message must fail");
        assert!(err.contains("[150]"), "{err}");
    }

    #[test]
    fn an_unsettled_consumer_or_a_sequence_beyond_it_fails() {
        let seqs: Vec<u64> = (1..=300).collect();
        assert!(account(&seqs, &state(300, 299, 1)).is_err());
        assert!(account(&seqs, &state(300, 298, 0)).is_err());
        assert!(account(&seqs, &state(299, 299, 0)).is_err());
    }
}
