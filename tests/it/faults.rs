//! Fault tests on a 3-node cluster with R3 streams and consumers: leaders are SIGKILLed and
//! restarted, quorum is lost and regained, while clients keep publishing, fetching, acking and
//! tailing through the gateway. Each test prints its figures (acknowledged, lost, duplicated,
//! longest unavailability) and asserts the guarantees: a 2xx publish is stored exactly once,
//! failures are only ever 503/504 (retryable), every message is processed at least once and none
//! stays ack-pending, a live tail has no gap and no duplicate.
//!
//! What is stored is read back with a direct NATS client. Waits are conditions with deadlines;
//! the only sleeps are client back-off between retries, as a real client would do.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::harness::{TestApp, Topology, eventually, json, spawn_app_on_with};
use crate::ws::{collect_until, connect, send, until_type};

const STREAM: &str = "FAULTS";
/// How long a client waits between retries.
const BACKOFF: Duration = Duration::from_millis(100);

/// A gateway on a 3-node cluster with short timeouts (so that an outage is reported quickly)
/// and an R3 stream `FAULTS` on `faults.>`.
async fn cluster_app() -> TestApp {
    let app = spawn_app_on_with(Topology::Cluster, |config| {
        config.ack_secret = vec!["faults".into()];
        config.publish_timeout = Duration::from_secs(2);
        config.api_timeout = Duration::from_secs(2);
    })
    .await;
    app.create_stream(STREAM, &["faults.>"]).await;
    app
}

/// One publish through the gateway, with its answer.
struct Answer {
    status: u16,
    body: Value,
}

async fn publish(http: &reqwest::Client, base: &str, subject: &str, key: &str) -> Option<Answer> {
    let response = http
        .post(format!("{base}/v1/publish/{subject}"))
        .header("idempotency-key", key)
        .body(format!("payload of {key}"))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Some(Answer { status, body })
}

/// What a publisher saw.
#[derive(Default)]
struct Tally {
    /// Idempotency key → the sequence its 2xx answered.
    acked: BTreeMap<String, u64>,
    /// Answers that were not 2xx, by status (0: no HTTP answer at all).
    failures: BTreeMap<u16, usize>,
    /// When each 2xx arrived.
    successes: Vec<Instant>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.acked.extend(other.acked);
        for (status, count) in other.failures {
            *self.failures.entry(status).or_default() += count;
        }
        self.successes.extend(other.successes);
    }

    /// The longest time without any successful publish.
    fn longest_gap(&self) -> Duration {
        let mut times = self.successes.clone();
        times.sort();
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }
}

/// `publishers` tasks of [`publish_retrying`], each with `each` keys `<prefix><p>-<n>`.
fn spawn_publishers(
    http: &reqwest::Client,
    base: &str,
    (publishers, each, prefix): (usize, usize, &str),
    progress: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..publishers)
        .map(|p| {
            let keys = (0..each).map(|n| format!("{prefix}{p}-{n}")).collect();
            tokio::spawn(publish_retrying(
                http.clone(),
                base.to_owned(),
                keys,
                progress.clone(),
            ))
        })
        .collect()
}

/// Publishes `keys` one after another, retrying each with the same key on 503/504 (and on a
/// missing answer) until it is acknowledged. Any other answer fails the test.
async fn publish_retrying(
    http: reqwest::Client,
    base: String,
    keys: Vec<String>,
    progress: Arc<AtomicUsize>,
) -> Tally {
    let mut tally = Tally::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    for key in keys {
        loop {
            assert!(Instant::now() < deadline, "{key} never acknowledged");
            match publish(&http, &base, "faults.load", &key).await {
                Some(Answer {
                    status: 200 | 201,
                    body,
                }) => {
                    let seq = body["seq"].as_u64().expect("seq in a 2xx answer");
                    tally.acked.insert(key.clone(), seq);
                    tally.successes.push(Instant::now());
                    progress.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Some(Answer {
                    status: status @ (503 | 504),
                    ..
                }) => *tally.failures.entry(status).or_default() += 1,
                Some(Answer { status, body }) => {
                    panic!("{key}: answer {status} is neither 2xx nor retryable: {body}")
                }
                None => *tally.failures.entry(0).or_default() += 1,
            }
            tokio::time::sleep(BACKOFF).await;
        }
    }
    tally
}

/// Every stored message of `FAULTS` by its `Nats-Msg-Id`: how many copies, at which sequences.
async fn stored_by_key(app: &TestApp) -> BTreeMap<String, Vec<u64>> {
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for message in app.stored(STREAM).await {
        let key = message
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        by_key.entry(key).or_default().push(message.sequence);
    }
    by_key
}

/// Asserts that every acknowledged key is stored exactly once at the acknowledged sequence and
/// that nothing else is stored twice; answers how many keys were stored.
fn assert_exactly_once(acked: &BTreeMap<String, u64>, stored: &BTreeMap<String, Vec<u64>>) {
    let lost: Vec<&String> = acked.keys().filter(|k| !stored.contains_key(*k)).collect();
    let doubled: Vec<(&String, &Vec<u64>)> = stored.iter().filter(|(_, s)| s.len() > 1).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(doubled.is_empty(), "stored more than once: {doubled:?}");
    for (key, seq) in acked {
        assert_eq!(
            stored[key],
            vec![*seq],
            "{key} acknowledged at another sequence"
        );
    }
}

async fn readyz(app: &TestApp) -> u16 {
    app.http
        .get(app.url("/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Publish

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_retrying_across_a_stream_leader_kill_store_every_acknowledged_message_once() {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 60;
    let mut app = cluster_app().await;
    let progress = Arc::new(AtomicUsize::new(0));
    let base = format!("http://{}", app.addr);
    let tasks = spawn_publishers(&app.http, &base, (PUBLISHERS, EACH, "p"), &progress);

    let count = || progress.load(Ordering::SeqCst);
    eventually("a third acknowledged", Duration::from_secs(60), || async {
        (count() >= PUBLISHERS * EACH / 3).then_some(())
    })
    .await;
    let leader = app.stream_leader(STREAM).await;
    let before = count();
    app.server.kill_node(leader);
    eventually(
        "publishes acknowledged under a new leader",
        Duration::from_secs(60),
        || async { (count() >= before + 20).then_some(()) },
    )
    .await;
    app.server.restart_node(leader).await;
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.expect("publisher"));
    }

    let stored = stored_by_key(&app).await;
    println!(
        "stream leader n{leader} killed and restarted: {} acknowledged, {} stored, retried answers \
         {:?}, longest time without an acknowledged publish {:?}",
        tally.acked.len(),
        stored.len(),
        tally.failures,
        tally.longest_gap()
    );
    assert_eq!(tally.acked.len(), PUBLISHERS * EACH);
    assert_eq!(stored.len(), PUBLISHERS * EACH);
    assert_exactly_once(&tally.acked, &stored);
}

/// One socket keeps 32 `publish` ops in flight, each with its own `idempotency_key`, and sends
/// again, with the same key, every op answered 503 or 504, while the stream leader is killed and
/// restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_publishes_pipelined_across_a_stream_leader_kill_store_every_acknowledged_message_once()
 {
    const KEYS: usize = 300;
    const WINDOW: usize = 32;
    let mut app = cluster_app().await;
    let mut ws = connect(&app, "/v1/ws").await;
    let mut to_send: std::collections::VecDeque<String> =
        (0..KEYS).map(|n| format!("w{n}")).collect();
    let mut in_flight = BTreeSet::new();
    let mut tally = Tally::default();
    let mut killed: Option<(usize, usize)> = None;
    let mut restarted = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while tally.acked.len() < KEYS {
        assert!(
            Instant::now() < deadline,
            "{} of {KEYS} acknowledged; in flight {in_flight:?}",
            tally.acked.len()
        );
        while in_flight.len() < WINDOW
            && let Some(key) = to_send.pop_front()
        {
            let op = json!({"op": "publish", "id": key, "subject": "faults.ws",
                "data": format!("payload of {key}"), "idempotency_key": key});
            send(&mut ws, &op).await;
            in_flight.insert(key);
        }
        let frame = collect_until(&mut ws, Duration::from_secs(30), |_| true)
            .await
            .pop()
            .expect("a frame");
        let key = frame["id"]
            .as_str()
            .expect("an answer names its op")
            .to_owned();
        assert!(in_flight.remove(&key), "answered twice or unasked: {frame}");
        match frame["type"].as_str() {
            Some("publish_ack") => {
                let seq = frame["seq"].as_u64().expect("seq");
                assert!(tally.acked.insert(key, seq).is_none());
                tally.successes.push(Instant::now());
            }
            Some("error") => {
                let status = frame["problem"]["status"].as_u64().unwrap_or(0) as u16;
                assert!(
                    matches!(status, 503 | 504),
                    "{key}: answer {status} is neither stored nor retryable: {frame}"
                );
                *tally.failures.entry(status).or_default() += 1;
                to_send.push_back(key);
                tokio::time::sleep(BACKOFF).await;
            }
            _ => panic!("unexpected frame {frame}"),
        }
        if killed.is_none() && tally.acked.len() >= KEYS / 3 {
            let leader = app.stream_leader(STREAM).await;
            app.server.kill_node(leader);
            killed = Some((leader, tally.acked.len()));
        }
        if let Some((leader, at)) = killed
            && !restarted
            && tally.acked.len() >= at + 20
        {
            app.server.restart_node(leader).await;
            restarted = true;
        }
    }
    let (leader, _) = killed.expect("the leader was killed");
    assert!(restarted, "acknowledged under a new leader");

    let stored = stored_by_key(&app).await;
    println!(
        "stream leader n{leader} killed and restarted under a WebSocket publisher: {} \
         acknowledged, {} stored, retried answers {:?}, longest time without an acknowledged \
         publish {:?}",
        tally.acked.len(),
        stored.len(),
        tally.failures,
        tally.longest_gap()
    );
    assert_eq!(stored.len(), KEYS);
    assert_exactly_once(&tally.acked, &stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_nodes_down_fail_every_publish_and_readyz_then_both_recover() {
    let mut app = cluster_app().await;
    for n in 0..5 {
        let answer = publish(&app.http, &app.url(""), "faults.a", &format!("before-{n}"))
            .await
            .expect("answer");
        assert_eq!(answer.status, 201, "{}", answer.body);
    }
    let leader = app.stream_leader(STREAM).await;
    let survivor = (leader + 1) % 3;
    for node in (0..3).filter(|n| *n != survivor) {
        app.server.kill_node(node);
    }
    let down = Instant::now();

    let mut failures: BTreeMap<u16, usize> = BTreeMap::new();
    let mut attempt = 0;
    while down.elapsed() < Duration::from_secs(10) {
        attempt += 1;
        if let Some(answer) = publish(
            &app.http,
            &app.url(""),
            "faults.a",
            &format!("down-{attempt}"),
        )
        .await
        {
            assert!(
                matches!(answer.status, 503 | 504),
                "publish without quorum answered {}: {}",
                answer.status,
                answer.body
            );
            *failures.entry(answer.status).or_default() += 1;
        }
    }
    let not_ready = eventually(
        "/readyz to report the outage",
        Duration::from_secs(20),
        || {
            let app = &app;
            async move {
                let response = app.http.get(app.url("/readyz")).send().await.ok()?;
                (response.status() == 503).then_some(response)
            }
        },
    )
    .await;
    assert!(not_ready.headers().contains_key("retry-after"));
    let problem: Value = not_ready.json().await.expect("problem body");
    for node in (0..3).filter(|n| *n != survivor) {
        app.server.restart_node(node).await;
    }
    let recovered = Instant::now();
    eventually("/readyz 200 again", Duration::from_secs(60), || async {
        (readyz(&app).await == 200).then_some(())
    })
    .await;
    let after = eventually("a publish to succeed", Duration::from_secs(60), || async {
        let answer = publish(&app.http, &app.url(""), "faults.a", "after").await?;
        (answer.status / 100 == 2).then_some(answer.body)
    })
    .await;

    let stored = stored_by_key(&app).await;
    println!(
        "2 of 3 nodes down for {:?}: {attempt} publishes, answers {failures:?}, readyz said {}; \
         writable again {:?} after the restart",
        recovered - down,
        problem["detail"],
        recovered.elapsed()
    );
    assert!(attempt > 0);
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{problem}"
    );
    assert_eq!(after["seq"], 6, "nothing was stored during the outage");
    assert_eq!(stored.len(), 6);
    assert!(stored.keys().all(|k| !k.starts_with("down-")));
}

// ---------------------------------------------------------------------------------------------
// Fetch and ack

/// Whether the consumer `workers` has nothing pending and nothing awaiting an ack. A cluster
/// still recovering may not answer the direct client: that is "not yet", asked again later.
async fn settled(app: &TestApp) -> bool {
    let Ok(stream) = app.js.get_stream(STREAM).await else {
        return false;
    };
    stream
        .consumer_info("workers")
        .await
        .is_ok_and(|i| i.num_ack_pending == 0 && i.num_pending == 0)
}

/// How a fault test disturbs the consumer's cluster.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL the consumer's leader, restart it once the others took over.
    LeaderKill,
    /// SIGKILL the consumer's leader and one more node (no quorum), restart both after 5 s.
    QuorumLoss,
}

/// Stores `count` jobs on `faults.work` and creates the consumer `workers` (`ack_wait` 2 s)
/// through the gateway.
async fn jobs_for_workers(app: &TestApp, count: usize) {
    for n in 0..count {
        app.js
            .publish("faults.work", Bytes::from(format!("job {n}")))
            .await
            .expect("publish")
            .await
            .expect("puback");
    }
    let created = app
        .http
        .put(app.url(&format!("/v1/streams/{STREAM}/consumers/workers")))
        .json(&json!({"ack_wait": "2s"}))
        .send()
        .await
        .expect("put consumer");
    json(created, 201).await;
}

/// A worker loop of fetch + ack through the gateway, disturbed by `fault` once a third of the
/// messages are processed: every message is processed at least once, and after the outage plus
/// one `ack_wait` nothing stays ack-pending.
async fn fetch_and_ack_worker_processes_every_message(fault: Fault) {
    const COUNT: usize = 150;
    let mut app = cluster_app().await;
    jobs_for_workers(&app, COUNT).await;

    let mut seen = BTreeSet::new();
    let mut deliveries = 0usize;
    let mut fetch_failures: BTreeMap<u16, usize> = BTreeMap::new();
    let mut ack_failures: BTreeMap<u64, usize> = BTreeMap::new();
    let mut killed: Option<(Vec<usize>, Instant)> = None;
    let mut restarted: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "{fault:?}: {} of {COUNT} processed; fetch failures {fetch_failures:?}",
            seen.len()
        );
        if killed.is_none() && seen.len() >= COUNT / 3 {
            let leader = app.consumer_leader(STREAM, "workers").await;
            let nodes = match fault {
                Fault::LeaderKill => vec![leader],
                Fault::QuorumLoss => vec![leader, (leader + 1) % 3],
            };
            for node in &nodes {
                app.server.kill_node(*node);
            }
            killed = Some((nodes, Instant::now()));
        }
        if let (Some((nodes, at)), None) = (&killed, restarted) {
            let restart = match fault {
                Fault::LeaderKill => seen.len() >= COUNT * 2 / 3 || at.elapsed().as_secs() >= 20,
                Fault::QuorumLoss => at.elapsed() >= Duration::from_secs(5),
            };
            if restart {
                for node in nodes.clone() {
                    app.server.restart_node(node).await;
                }
                restarted = Some(Instant::now());
            }
        }
        let response = app
            .http
            .post(app.url(&format!("/v1/streams/{STREAM}/consumers/workers/fetch")))
            .json(&json!({"max_messages": 20, "wait": "1s"}))
            .send()
            .await
            .expect("fetch request");
        let status = response.status().as_u16();
        if status != 200 {
            assert!(
                matches!(status, 503 | 504),
                "fetch answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
            *fetch_failures.entry(status).or_default() += 1;
            tokio::time::sleep(BACKOFF).await;
            continue;
        }
        let body: Value = response.json().await.expect("fetch body");
        let messages = body["messages"].as_array().expect("messages").clone();
        if messages.is_empty() {
            if seen.len() == COUNT && restarted.is_some() && settled(&app).await {
                break;
            }
            continue;
        }
        deliveries += messages.len();
        for message in &messages {
            seen.insert(message["seq"].as_u64().expect("seq"));
        }
        let acks: Vec<Value> = messages
            .iter()
            .map(|m| json!({"ack_id": m["ack_id"], "action": "ack"}))
            .collect();
        let response = app
            .http
            .post(app.url("/v1/acks"))
            .json(&json!({ "acks": acks }))
            .send()
            .await
            .expect("acks request");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            200 | 207 => {
                for result in body["results"].as_array().expect("results") {
                    let result_status = result["status"].as_u64().unwrap_or(0);
                    if result_status != 200 {
                        // Not applied: the message is delivered again after ack_wait.
                        *ack_failures.entry(result_status).or_default() += 1;
                    }
                }
            }
            503 | 504 => *ack_failures.entry(u64::from(status)).or_default() += acks.len(),
            other => panic!("acks answered {other}: {body}"),
        }
    }
    let (nodes, killed_at) = killed.expect("the fault happened");
    println!(
        "{fault:?} (nodes {nodes:?}): {COUNT} of {COUNT} processed with {deliveries} deliveries \
         ({} redelivered), fetch failures {fetch_failures:?}, acks not applied {ack_failures:?}, \
         nothing ack-pending {:?} after the fault",
        deliveries - COUNT,
        killed_at.elapsed()
    );
    assert_eq!(seen.len(), COUNT);
    assert_eq!(seen.iter().next_back().copied(), Some(COUNT as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_and_ack_worker_across_a_consumer_leader_kill_processes_every_message() {
    fetch_and_ack_worker_processes_every_message(Fault::LeaderKill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_and_ack_worker_across_two_of_three_nodes_down_processes_every_message() {
    fetch_and_ack_worker_processes_every_message(Fault::QuorumLoss).await;
}

// ---------------------------------------------------------------------------------------------
// WebSocket

/// Publishes `count` messages directly, each retried with its own `Nats-Msg-Id` until stored.
async fn publish_direct_retrying(js: async_nats::jetstream::Context, count: usize) {
    for n in 0..count {
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("live-{n}").as_str());
            let sent = js
                .publish_with_headers("faults.live", headers, Bytes::from(format!("live {n}")))
                .await;
            if let Ok(ack) = sent
                && ack.await.is_ok()
            {
                break;
            }
            tokio::time::sleep(BACKOFF).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_live_tail_across_a_stream_leader_kill_has_no_gap_and_no_duplicate() {
    const COUNT: usize = 150;
    let mut app = cluster_app().await;
    let mut ws = connect(&app, &format!("/v1/streams/{STREAM}/ws?deliver=new")).await;
    until_type(&mut ws, "caught_up").await;
    let publisher = tokio::spawn(publish_direct_retrying(app.js.clone(), COUNT));

    let first = collect_until(&mut ws, Duration::from_secs(30), |frames| {
        frames.iter().filter(|f| f["type"] == "msg").count() >= COUNT / 3
    })
    .await;
    let leader = app.stream_leader(STREAM).await;
    app.server.kill_node(leader);
    let killed = Instant::now();
    let middle = collect_until(&mut ws, Duration::from_secs(60), |frames| {
        frames.iter().filter(|f| f["type"] == "msg").count() >= COUNT / 3
    })
    .await;
    app.server.restart_node(leader).await;
    let seen_so_far = first
        .iter()
        .chain(&middle)
        .filter(|f| f["type"] == "msg")
        .count();
    let rest = collect_until(&mut ws, Duration::from_secs(60), |frames| {
        frames.iter().filter(|f| f["type"] == "msg").count() >= COUNT - seen_so_far
    })
    .await;
    publisher.await.expect("publisher");

    let frames: Vec<&Value> = first.iter().chain(&middle).chain(&rest).collect();
    let gaps: Vec<&&Value> = frames.iter().filter(|f| f["type"] == "gap").collect();
    let seqs: Vec<u64> = frames
        .iter()
        .filter(|f| f["type"] == "msg")
        .map(|f| f["seq"].as_u64().expect("seq"))
        .collect();
    println!(
        "live tail across a kill of stream leader n{leader}: {} messages, {} gap frames, \
         {:?} from the kill to the last message",
        seqs.len(),
        gaps.len(),
        killed.elapsed()
    );
    assert!(gaps.is_empty(), "gap frames: {gaps:?}");
    assert_eq!(seqs, (1..=COUNT as u64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_ack_mode_across_a_consumer_leader_kill_acks_every_message() {
    const COUNT: usize = 100;
    let mut app = cluster_app().await;
    jobs_for_workers(&app, COUNT).await;
    let mut ws = connect(&app, &format!("/v1/streams/{STREAM}/ws?consumer=workers")).await;

    let mut seen = BTreeSet::new();
    let mut deliveries = 0;
    let mut acks_not_applied = 0;
    let mut killed: Option<(usize, Instant)> = None;
    let mut restarted = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut next_id = 0u64;
    loop {
        assert!(
            Instant::now() < deadline,
            "{} of {COUNT} delivered over the socket",
            seen.len()
        );
        if killed.is_none() && seen.len() >= COUNT / 3 {
            let leader = app.consumer_leader(STREAM, "workers").await;
            app.server.kill_node(leader);
            killed = Some((leader, Instant::now()));
        }
        if let Some((leader, at)) = killed
            && !restarted
            && (seen.len() >= COUNT * 2 / 3 || at.elapsed() >= Duration::from_secs(20))
        {
            app.server.restart_node(leader).await;
            restarted = true;
        }
        if seen.len() == COUNT && restarted && settled(&app).await {
            break;
        }
        // One message (or a fence when nothing comes within a second), then its ack.
        next_id += 1;
        let fence = format!("f{next_id}");
        send(&mut ws, &json!({"op": "ping", "id": fence})).await;
        let frames = collect_until(&mut ws, Duration::from_secs(30), |frames| {
            frames
                .last()
                .is_some_and(|f| f["type"] == "pong" && f["id"] == fence.as_str())
        })
        .await;
        for frame in frames.iter().filter(|f| f["type"] == "msg") {
            deliveries += 1;
            seen.insert(frame["seq"].as_u64().expect("seq"));
            let id = format!("a{}", frame["seq"]);
            send(
                &mut ws,
                &json!({"op": "ack", "ack_id": frame["ack_id"], "id": id}),
            )
            .await;
        }
        for frame in frames.iter().filter(|f| f["type"] == "ack_result") {
            if frame["status"] != 200 {
                acks_not_applied += 1;
            }
        }
        assert!(
            frames.iter().all(|f| f["type"] != "error"),
            "error frame: {frames:?}"
        );
        if frames.iter().all(|f| f["type"] != "msg") {
            tokio::time::sleep(BACKOFF).await;
        }
    }
    let (leader, killed_at) = killed.expect("the leader was killed");
    println!(
        "WebSocket ack mode across a kill of consumer leader n{leader}: {COUNT} of {COUNT} acked \
         with {deliveries} deliveries, {acks_not_applied} acks not applied, nothing ack-pending \
         {:?} after the kill",
        killed_at.elapsed()
    );
    assert_eq!(seen.len(), COUNT);
}

// ---------------------------------------------------------------------------------------------
// The gateway itself

/// The real binary, started against the cluster on a fixed port (so a restart keeps it).
fn start_binary(app: &TestApp, port: u16) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_jetway"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("JETWAY_") {
            command.env_remove(name);
        }
    }
    command
        .args(["--no-auth", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--nats-url", &app.server.urls().join(",")])
        .args(["--publish-timeout", "2s", "--api-timeout", "2s"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn jetway")
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    eventually(
        "the jetway binary to be ready",
        Duration::from_secs(30),
        || async {
            let response = http.get(format!("{base}/readyz")).send().await.ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetway_sigkilled_and_restarted_mid_load_stores_each_retried_publish_exactly_once() {
    const PUBLISHERS: usize = 3;
    const EACH: usize = 60;
    let app = cluster_app().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let base = format!("http://127.0.0.1:{port}");
    let mut gateway = start_binary(&app, port);
    wait_ready(&app.http, &base).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let tasks = spawn_publishers(
        &reqwest::Client::new(),
        &base,
        (PUBLISHERS, EACH, "g"),
        &progress,
    );

    let count = || progress.load(Ordering::SeqCst);
    eventually("a third acknowledged", Duration::from_secs(60), || async {
        (count() >= PUBLISHERS * EACH / 3).then_some(())
    })
    .await;
    gateway.start_kill().expect("SIGKILL jetway");
    gateway.wait().await.expect("jetway ended");
    let killed = Instant::now();
    let _restarted = start_binary(&app, port);
    wait_ready(&app.http, &base).await;
    let down_for = killed.elapsed();
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.expect("publisher"));
    }

    let stored = stored_by_key(&app).await;
    println!(
        "jetway SIGKILLed mid-load, ready again after {down_for:?}: {} acknowledged, {} stored, \
         retried answers {:?} (0: no HTTP answer)",
        tally.acked.len(),
        stored.len(),
        tally.failures
    );
    assert!(
        tally.failures.get(&0).is_some_and(|n| *n > 0),
        "the kill was felt"
    );
    assert_eq!(tally.acked.len(), PUBLISHERS * EACH);
    assert_eq!(stored.len(), PUBLISHERS * EACH);
    assert_exactly_once(&tally.acked, &stored);
}
