//! `make cluster`'s topology under fire: `scripts/cluster.sh start` brings up 3 nats-server
//! nodes (R3), 3 jetway replicas (this build's binary) and HAProxy routing on `/readyz`, on
//! loopback ports of the test's own; clients go through HAProxy only, with authentication on.
//!
//! Mixed load — publishers with idempotency keys, fetch + ack workers on an R3 durable
//! consumer, WebSocket tails — runs while the jetway replica carrying a WebSocket tail is
//! SIGKILLed and then the ORDERS stream's leader node is SIGKILLed; `scripts/cluster.sh start`
//! brings both back, and `scripts/cluster.sh stop` ends it all. Asserted: every acknowledged
//! publish is stored exactly once at the sequence it was answered with and nothing is stored
//! twice; every stored message is processed and nothing stays pending or ack-pending; every
//! tail sees every sequence once, in order, across its reconnects; clients only ever see 2xx,
//! 503, 504 or a dropped connection (which they retry). The longest unavailability each kind of
//! client saw is printed (docs/reliability.md has the figures).
//!
//! Needs `scripts/install-tools.sh cluster` (Debian's haproxy; make test runs it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{LOAD_GATE, eventually, nats_server_bin, repo_root, run_jetway};

const STREAM: &str = "ORDERS";
/// Client back-off after a failed attempt.
const BACKOFF: Duration = Duration::from_millis(100);
/// Pause between one publisher's messages: a steady load, not a flood.
const PACE: Duration = Duration::from_millis(10);
/// Everything must be over by then.
const DEADLINE: Duration = Duration::from_secs(240);
const PUBLISHERS: usize = 3;
const WORKERS: usize = 2;
const TAILS: usize = 2;
/// Acknowledged publishes between one step of the scenario and the next.
const STEP: usize = 150;

/// The topology of `scripts/cluster.sh`, in a temporary directory on a free port range.
struct Cluster {
    dir: tempfile::TempDir,
    base: u16,
}

/// A base port whose 45 ports above it are free now, below the ephemeral range.
fn free_port_base() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = (std::process::id() ^ nanos) as u16;
    for attempt in 0..200u16 {
        let base = 10_000 + ((seed.wrapping_add(attempt * 37)) % 200) * 100;
        let free = (0..45u16)
            .all(|offset| std::net::TcpListener::bind(("127.0.0.1", base + offset)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free range of 45 loopback ports between 10000 and 30000");
}

impl Cluster {
    fn script(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("bash");
        command
            .arg(repo_root().join("scripts/cluster.sh"))
            .env("JETWAY_CLUSTER_DIR", self.dir.path())
            .env("JETWAY_CLUSTER_PORT", self.base.to_string())
            .env("JETWAY_BIN", env!("CARGO_BIN_EXE_jetway"))
            .env("NATS_SERVER_BIN", nats_server_bin())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("JETWAY_") && name != "JETWAY_BIN" {
                command.env_remove(&name);
            }
        }
        command
    }

    /// `scripts/cluster.sh <action>`, which must succeed; answers what it printed.
    async fn run(&self, action: &str) -> String {
        let output =
            tokio::time::timeout(Duration::from_secs(120), self.script().arg(action).output())
                .await
                .unwrap_or_else(|_| panic!("scripts/cluster.sh {action} did not finish in 120 s"))
                .expect("run scripts/cluster.sh");
        let printed = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "scripts/cluster.sh {action} failed:\n{printed}\n{}",
            self.logs()
        );
        printed
    }

    async fn start() -> Self {
        let cluster = Self {
            dir: tempfile::TempDir::new().expect("cluster dir"),
            base: free_port_base(),
        };
        cluster.run("start").await;
        cluster
    }

    fn haproxy(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.base)
    }

    fn replica(&self, n: u16, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.base + 10 + n)
    }

    fn nats_urls(&self) -> Vec<String> {
        (1..=3)
            .map(|n| format!("nats://127.0.0.1:{}", self.base + 20 + n))
            .collect()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.file(&format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILL, as a crash or the OOM killer would.
    fn kill(&self, name: &str) {
        let pid = self
            .pid(name)
            .unwrap_or_else(|| panic!("no pid for {name}"));
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success(), "kill -9 {name} ({pid})");
    }

    /// SIGTERM, as a rolling upgrade does, and wait until the process has exited.
    async fn terminate(&self, name: &str) {
        let pid = self
            .pid(name)
            .unwrap_or_else(|| panic!("no pid for {name}"));
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {name} ({pid})");
        eventually(
            &format!("{name} to exit after SIGTERM"),
            Duration::from_secs(45),
            || async {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let exited = status.is_empty()
                    || status
                        .lines()
                        .any(|l| l.starts_with("State:") && l.contains('Z'));
                exited.then_some(())
            },
        )
        .await;
    }

    fn secret(&self, name: &str) -> String {
        let env = std::fs::read_to_string(self.file("secrets.env")).expect("secrets.env");
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in secrets.env"))
            .to_owned()
    }

    /// The end of every log, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for name in [
            "haproxy", "jetway-1", "jetway-2", "jetway-3", "nats-1", "nats-2", "nats-3",
        ] {
            let text =
                std::fs::read_to_string(self.file(&format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {name}.log (end)\n"));
            for line in &lines[lines.len().saturating_sub(8)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    /// Whatever the test left running (after a failure) is killed.
    fn drop(&mut self) {
        for name in [
            "haproxy", "jetway-1", "jetway-2", "jetway-3", "nats-1", "nats-2", "nats-3",
        ] {
            if let Some(pid) = self.pid(name) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let ours =
                    String::from_utf8_lossy(&cmdline).contains(&*self.dir.path().to_string_lossy());
                if ours {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
            }
        }
    }
}

/// What the clients saw, shared between their tasks.
#[derive(Default)]
struct Seen {
    /// Idempotency key → the sequence its 2xx answered.
    acked: BTreeMap<String, u64>,
    /// When each acknowledged publish arrived.
    publish_times: Vec<Instant>,
    /// Non-2xx answers by client kind and status (0: no HTTP answer, the connection dropped).
    retried: BTreeMap<(&'static str, u16), usize>,
    /// Answers outside 2xx/503/504 (must stay empty).
    unexpected: Vec<String>,
    /// Stream sequences processed (fetched and acked with a confirmed ack) by the workers.
    processed: BTreeSet<u64>,
    deliveries: usize,
    /// When each fetch answered 200.
    fetch_times: Vec<Instant>,
}

impl Seen {
    fn retry(&mut self, client: &'static str, status: u16) {
        *self.retried.entry((client, status)).or_default() += 1;
    }
}

/// The longest time between two consecutive instants whose later one falls in `[from, to)`:
/// the longest wait a client had that ended in that window.
fn longest_gap(times: &[Instant], from: Instant, to: Option<Instant>) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted
        .windows(2)
        .filter(|w| w[1] >= from && to.is_none_or(|to| w[1] < to))
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

async fn publisher(
    http: reqwest::Client,
    url: String,
    token: String,
    id: usize,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicUsize>,
    seen: Arc<Mutex<Seen>>,
) {
    let started = Instant::now();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let key = format!("p{id}-{n}");
        loop {
            assert!(started.elapsed() < DEADLINE, "{key} never acknowledged");
            let answer = http
                .post(&url)
                .bearer_auth(&token)
                .header("idempotency-key", &key)
                .header("content-type", "application/json")
                .body(json!({"key": key}).to_string())
                .send()
                .await;
            let response = match answer {
                Ok(response) => response,
                Err(_) => {
                    seen.lock().await.retry("publish", 0);
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            match status {
                200 | 201 => {
                    let seq = body["seq"].as_u64().expect("seq in a 2xx answer");
                    let mut seen = seen.lock().await;
                    seen.acked.insert(key.clone(), seq);
                    seen.publish_times.push(Instant::now());
                    progress.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                503 | 504 => seen.lock().await.retry("publish", status),
                other => {
                    seen.lock()
                        .await
                        .unexpected
                        .push(format!("publish {key}: {other} {body}"));
                }
            }
            tokio::time::sleep(BACKOFF).await;
        }
        n += 1;
        tokio::time::sleep(PACE).await;
    }
}

/// Fetch + ack through HAProxy until `done` says the workers may stop.
async fn worker(
    http: reqwest::Client,
    base: String,
    token: String,
    done: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let fetch = format!("{base}/v1/streams/{STREAM}/consumers/workers/fetch");
    let acks = format!("{base}/v1/acks");
    let started = Instant::now();
    while !done.load(Ordering::SeqCst) && started.elapsed() < DEADLINE {
        let answer = http
            .post(&fetch)
            .bearer_auth(&token)
            .json(&json!({"max_messages": 50, "wait": "1s"}))
            .send()
            .await;
        let Ok(response) = answer else {
            seen.lock().await.retry("fetch", 0);
            tokio::time::sleep(BACKOFF).await;
            continue;
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 200 {
            let mut seen = seen.lock().await;
            if matches!(status, 503 | 504) {
                seen.retry("fetch", status);
            } else {
                seen.unexpected.push(format!("fetch: {status} {body}"));
            }
            drop(seen);
            tokio::time::sleep(BACKOFF).await;
            continue;
        }
        seen.lock().await.fetch_times.push(Instant::now());
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        seen.lock().await.deliveries += messages.len();
        let request: Vec<Value> = messages
            .iter()
            .map(|m| json!({"ack_id": m["ack_id"], "action": "ack"}))
            .collect();
        let answer = http
            .post(&acks)
            .bearer_auth(&token)
            .json(&json!({ "acks": request }))
            .send()
            .await;
        let Ok(response) = answer else {
            // Not applied, or applied without our knowing: redelivered after ack_wait either
            // way, and acked again then.
            seen.lock().await.retry("ack", 0);
            continue;
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let mut seen = seen.lock().await;
        match status {
            200 | 207 => {
                for (message, result) in messages
                    .iter()
                    .zip(body["results"].as_array().into_iter().flatten())
                {
                    if result["status"] == 200 {
                        seen.processed.insert(message["seq"].as_u64().expect("seq"));
                    } else {
                        let code = result["status"].as_u64().unwrap_or(0) as u16;
                        seen.retry("ack item", code);
                    }
                }
            }
            503 | 504 => seen.retry("ack", status),
            other => seen.unexpected.push(format!("acks: {other} {body}")),
        }
    }
}

/// What one WebSocket tail saw.
#[derive(Default, Debug)]
struct Tail {
    seqs: Vec<u64>,
    gaps: Vec<Value>,
    reconnects: usize,
    /// Longest time from losing the socket to the next message frame.
    longest_outage: Duration,
}

/// A tail from the first sequence through HAProxy: reconnects with `start_seq` = last seen + 1
/// whenever the socket ends, until it has seen `until` (set once the publishers stopped).
async fn tail(
    ws_base: String,
    token: String,
    until: Arc<AtomicUsize>,
    connected: Arc<AtomicUsize>,
) -> Tail {
    let mut seen = Tail::default();
    let started = Instant::now();
    let mut lost_at: Option<Instant> = None;
    loop {
        let last = seen.seqs.last().copied().unwrap_or(0);
        let target = until.load(Ordering::SeqCst) as u64;
        if target > 0 && last >= target {
            return seen;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "tail stuck at {last} of {target}"
        );
        let url = format!("{ws_base}/v1/streams/{STREAM}/ws?start_seq={}", last + 1);
        let mut request = url.into_client_request().expect("request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(request).await else {
            tokio::time::sleep(BACKOFF).await;
            continue;
        };
        if lost_at.is_none() && seen.reconnects == 0 {
            connected.fetch_add(1, Ordering::SeqCst);
        }
        loop {
            let target = until.load(Ordering::SeqCst) as u64;
            if target > 0 && seen.seqs.last().copied().unwrap_or(0) >= target {
                let _ = socket.close(None).await;
                return seen;
            }
            let frame = tokio::time::timeout(Duration::from_secs(1), socket.next()).await;
            let text = match frame {
                Err(_) => continue,
                Ok(Some(Ok(WsMessage::Text(text)))) => text,
                Ok(Some(Ok(WsMessage::Ping(payload)))) => {
                    let _ = socket.send(WsMessage::Pong(payload)).await;
                    continue;
                }
                Ok(Some(Ok(_))) => continue,
                // Closed or reset: reconnect from the next sequence.
                Ok(Some(Err(_)) | None) => break,
            };
            let frame: Value = serde_json::from_str(&text).expect("JSON frame");
            match frame["type"].as_str() {
                Some("msg") => {
                    let seq = frame["seq"].as_u64().expect("seq");
                    seen.seqs.push(seq);
                    if let Some(at) = lost_at.take() {
                        seen.longest_outage = seen.longest_outage.max(at.elapsed());
                    }
                }
                Some("gap") => seen.gaps.push(frame),
                _ => {}
            }
        }
        seen.reconnects += 1;
        lost_at.get_or_insert_with(Instant::now);
        tokio::time::sleep(BACKOFF).await;
    }
}

/// The replica with the most open WebSockets, from each replica's own /metrics.
async fn replica_with_a_tail(cluster: &Cluster, http: &reqwest::Client) -> u16 {
    eventually(
        "a replica with a WebSocket",
        Duration::from_secs(20),
        || async {
            let mut best = None;
            for n in 1..=3u16 {
                let text = http
                    .get(cluster.replica(n, "/metrics"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                let open: f64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("jetway_ws_connections "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0.0);
                if open >= 1.0 && best.is_none_or(|(_, most)| open > most) {
                    best = Some((n, open));
                }
            }
            best.map(|(n, _)| n)
        },
    )
    .await
}

/// The node (1..=3) leading the stream, asked directly.
async fn stream_leader(js: &async_nats::jetstream::Context) -> u16 {
    eventually("a stream leader", Duration::from_secs(30), || async {
        let mut stream = js.get_stream(STREAM).await.ok()?;
        let info = stream.info().await.ok()?;
        let leader = info.cluster.as_ref()?.leader.clone()?;
        leader.strip_prefix('n')?.parse().ok()
    })
    .await
}

/// Every stored message of the stream by its `Nats-Msg-Id`.
async fn stored_by_key(js: &async_nats::jetstream::Context) -> BTreeMap<String, Vec<u64>> {
    let stream = js.get_stream(STREAM).await.expect("stream");
    let info = stream.get_info().await.expect("info");
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(message) = stream.get_raw_message(seq).await {
            let key = message
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            by_key.entry(key).or_default().push(seq);
        }
    }
    by_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_through_haproxy_survives_a_killed_replica_and_a_killed_nats_leader() {
    // Three gateway processes, HAProxy, load and kills: no other cluster runs meanwhile.
    let _gate = LOAD_GATE.alone();
    let cluster = Cluster::start().await;
    let (code, token, stderr) = run_jetway(
        &[
            "token",
            "--sub",
            "load",
            "--publish",
            "orders.>",
            "--read",
            STREAM,
            "--admin",
        ],
        &[("JETWAY_JWT_SECRET", &cluster.secret("JETWAY_JWT_SECRET"))],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let token = token.trim().to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(cluster.nats_urls().as_slice())
        .await
        .expect("direct NATS client");
    let js = async_nats::jetstream::new(nats);
    let created = http
        .put(cluster.haproxy(&format!("/v1/streams/{STREAM}/consumers/workers")))
        .bearer_auth(&token)
        .json(&json!({"ack_wait": "3s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let until = Arc::new(AtomicUsize::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let ws_base = format!("ws://127.0.0.1:{}", cluster.base);
    let tails: Vec<_> = (0..TAILS)
        .map(|_| {
            tokio::spawn(tail(
                ws_base.clone(),
                token.clone(),
                until.clone(),
                connected.clone(),
            ))
        })
        .collect();
    eventually("the tails to connect", Duration::from_secs(20), || async {
        (connected.load(Ordering::SeqCst) == TAILS).then_some(())
    })
    .await;
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|id| {
            tokio::spawn(publisher(
                http.clone(),
                cluster.haproxy("/v1/publish/orders.load"),
                token.clone(),
                id,
                stop.clone(),
                progress.clone(),
                seen.clone(),
            ))
        })
        .collect();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            tokio::spawn(worker(
                http.clone(),
                cluster.haproxy(""),
                token.clone(),
                done.clone(),
                seen.clone(),
            ))
        })
        .collect();
    let count = || progress.load(Ordering::SeqCst);
    let after = |n: usize| {
        let progress = progress.clone();
        async move {
            eventually(&format!("{n} acknowledged publishes"), DEADLINE, || async {
                (progress.load(Ordering::SeqCst) >= n).then_some(())
            })
            .await;
        }
    };

    after(STEP).await;
    let replica = replica_with_a_tail(&cluster, &http).await;
    cluster.kill(&format!("jetway-{replica}"));
    let replica_killed = Instant::now();
    after(count() + STEP).await;
    let leader = stream_leader(&js).await;
    cluster.kill(&format!("nats-{leader}"));
    let node_killed = Instant::now();
    after(count() + STEP).await;
    let restarting = Instant::now();
    cluster.run("start").await;
    let restarted_in = restarting.elapsed();
    after(count() + STEP).await;
    // A rolling upgrade: one replica at a time gets SIGTERM, drains, and is started again.
    let rolling = Instant::now();
    let retried_before_rolling = seen.lock().await.retried.clone();
    for n in 1..=3 {
        cluster.terminate(&format!("jetway-{n}")).await;
        cluster.run("start").await;
        after(count() + STEP / 3).await;
    }
    let rolled = Instant::now();
    stop.store(true, Ordering::SeqCst);
    for task in publishers {
        task.await.expect("publisher");
    }
    let acked = seen.lock().await.acked.len();
    let last_seq = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
        .last_sequence;
    until.store(last_seq as usize, Ordering::SeqCst);
    eventually(
        "every stored message processed and the consumer settled",
        Duration::from_secs(60),
        || async {
            if seen.lock().await.processed.len() < last_seq as usize {
                return None;
            }
            let stream = js.get_stream(STREAM).await.ok()?;
            let info = stream.consumer_info("workers").await.ok()?;
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        },
    )
    .await;
    done.store(true, Ordering::SeqCst);
    for task in workers {
        task.await.expect("worker");
    }
    let mut tails_seen = Vec::new();
    for task in tails {
        tails_seen.push(task.await.expect("tail"));
    }
    let stored = stored_by_key(&js).await;
    let stopping = Instant::now();
    let stopped = cluster.run("stop").await;
    let stop_took = stopping.elapsed();
    let status = cluster.run("status").await;

    let seen = seen.lock().await;
    let rolling_took = rolled - rolling;
    let began = seen
        .publish_times
        .iter()
        .min()
        .copied()
        .unwrap_or(replica_killed);
    let publish_gap = |from, to| longest_gap(&seen.publish_times, from, to);
    let fetch_gap = |from, to| longest_gap(&seen.fetch_times, from, to);
    let tail_outage = tails_seen
        .iter()
        .map(|t| t.longest_outage)
        .max()
        .unwrap_or_default();
    let reconnects: Vec<usize> = tails_seen.iter().map(|t| t.reconnects).collect();
    let retried_while_rolling: BTreeMap<_, usize> = seen
        .retried
        .iter()
        .map(|(k, n)| (*k, n - retried_before_rolling.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    println!(
        "through HAProxy: jetway-{replica} SIGKILLed, then NATS n{leader} (the ORDERS leader) \
         SIGKILLed, both restarted by `scripts/cluster.sh start` in {restarted_in:.1?}\n\
         publishes: {acked} acknowledged, {} stored, {} stored twice\n\
         fetch + ack: {} of {last_seq} processed with {} deliveries\n\
         tails: {TAILS} × {} messages, gap frames {:?}, reconnects {reconnects:?}, longest from \
         a lost socket to the next message {tail_outage:.2?}\n\
         longest without an acknowledged publish: {:.2?} before the faults, {:.2?} after the \
         replica kill, {:.2?} after the node kill, {:.2?} during the rolling restart \
         ({rolling_took:.1?})\n\
         longest without a fetch answer: {:.2?} before the faults, {:.2?} after the replica \
         kill, {:.2?} after the node kill, {:.2?} during the rolling restart\n\
         answers retried by clients (status 0 = dropped connection): {:?}, of them during the \
         rolling restart {retried_while_rolling:?}\n\
         scripts/cluster.sh stop took {stop_took:.1?}",
        stored.values().map(Vec::len).sum::<usize>(),
        stored.values().filter(|s| s.len() > 1).count(),
        seen.processed.len(),
        seen.deliveries,
        tails_seen.first().map_or(0, |t| t.seqs.len()),
        tails_seen.iter().map(|t| t.gaps.len()).collect::<Vec<_>>(),
        publish_gap(began, Some(replica_killed)),
        publish_gap(replica_killed, Some(node_killed)),
        publish_gap(node_killed, Some(rolling)),
        publish_gap(rolling, Some(rolled)),
        fetch_gap(began, Some(replica_killed)),
        fetch_gap(replica_killed, Some(node_killed)),
        fetch_gap(node_killed, Some(rolling)),
        fetch_gap(rolling, Some(rolled)),
        seen.retried,
    );

    assert!(
        seen.unexpected.is_empty(),
        "answers other than 2xx/503/504: {:?}",
        seen.unexpected
    );
    let lost: Vec<&String> = seen
        .acked
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let doubled: Vec<_> = stored.iter().filter(|(_, s)| s.len() > 1).collect();
    assert!(doubled.is_empty(), "stored more than once: {doubled:?}");
    for (key, seq) in &seen.acked {
        assert_eq!(stored[key], vec![*seq], "{key} stored at another sequence");
    }
    assert_eq!(
        stored.len(),
        acked,
        "stored a key that was never acknowledged"
    );
    assert_eq!(last_seq as usize, acked);
    assert_eq!(
        seen.processed,
        (1..=last_seq).collect::<BTreeSet<u64>>(),
        "not every stored message was processed"
    );
    for tail in &tails_seen {
        assert!(tail.gaps.is_empty(), "gap frames: {:?}", tail.gaps);
        assert_eq!(
            tail.seqs,
            (1..=last_seq).collect::<Vec<u64>>(),
            "a tail missed or repeated a sequence"
        );
    }
    assert!(
        reconnects.iter().any(|r| *r > 0),
        "no tail was on the killed replica"
    );
    assert!(stopped.contains("stopping jetway-1"), "{stopped}");
    assert!(!status.contains("running"), "{status}");
}
