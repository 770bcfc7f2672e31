//! Live fan-out: live subscribers of one stream, filter set, encoding and namespace share one
//! JetStream consumer per gateway (the feed). Checked through the WebSocket and SSE endpoints
//! against a real nats-server, counting consumers with a direct NATS client: 1,200 sockets on a
//! default server, replay-then-live hand-over without gap or duplicate (R1 and R3), a stalled
//! subscriber that delays nobody, tenant namespaces kept apart, and no consumer left behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{TestApp, Topology, eventually, spawn_app_on_with, spawn_app_with};
use crate::ws::{Ws, connect, publish_direct, publish_many, stream_consumers};

const LIVE: &str = "LIVE";

/// The next JSON frame within `timeout` (`None` when none came); WebSocket pings are skipped.
async fn frame_within(ws: &mut Ws, timeout: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next()).await.ok()?;
        match next {
            Some(Ok(Message::Text(text))) => {
                return Some(serde_json::from_str(text.as_str()).expect("JSON frame"));
            }
            Some(Ok(Message::Close(frame))) => panic!("socket closed: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(err)) => panic!("socket failed: {err}"),
            None => panic!("socket ended"),
        }
    }
}

async fn frame(ws: &mut Ws) -> Value {
    frame_within(ws, Duration::from_secs(20))
        .await
        .expect("a frame within 20 s")
}

/// Frames up to the pong of a ping sent now: everything queued before it.
async fn fence(ws: &mut Ws) -> Vec<Value> {
    ws.send(Message::text(
        json!({"op": "ping", "id": "fence"}).to_string(),
    ))
    .await
    .expect("ping");
    let mut frames = Vec::new();
    loop {
        let next = frame(ws).await;
        if next["type"] == "pong" {
            return frames;
        }
        frames.push(next);
    }
}

/// A value of `/metrics` (the first line starting with `series`).
async fn metric(app: &TestApp, series: &str) -> i64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Lets this process hold `sockets` client sockets plus the gateway's side of each.
fn raise_fd_limit(sockets: usize) {
    let wanted = u64::try_from(sockets * 2 + 1_024).expect("fits");
    let raised = rlimit::increase_nofile_limit(wanted).expect("raise the open-files limit");
    assert!(
        raised >= wanted,
        "the open-files limit is {raised}; this test needs {wanted}"
    );
}

/// Waits until the stream has no consumer left: every feed and replay was removed.
async fn no_consumers_left(app: &TestApp, stream: &str) {
    eventually(
        "every consumer of the stream to be deleted",
        Duration::from_secs(30),
        || async { stream_consumers(app, stream).await.is_empty().then_some(()) },
    )
    .await;
    let feeds = format!("jetway_feeds{{stream=\"{stream}\"}}");
    assert_eq!(metric(app, &feeds).await, 0, "{feeds}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_hundred_live_sockets_on_a_default_server_share_one_consumer_and_all_get_a_new_message()
 {
    const SOCKETS: usize = 1_200;
    raise_fd_limit(SOCKETS);
    let app = spawn_app_with(|config| {
        config.max_connections_per_principal = SOCKETS + 100;
    })
    .await;
    app.create_stream(LIVE, &["live.>"]).await;
    publish_direct(&app.js, "live.a", "history").await;

    let opening = Instant::now();
    let app_ref = &app;
    let sockets: Vec<Ws> = futures::stream::iter(0..SOCKETS)
        .map(|_| async move {
            let mut ws = connect(app_ref, &format!("/v1/streams/{LIVE}/ws?deliver=new")).await;
            let first = frame(&mut ws).await;
            assert_eq!(first["type"], "caught_up", "{first}");
            assert_eq!(first["seq"], 1, "{first}");
            ws
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let opened_in = opening.elapsed();
    let consumers = stream_consumers(&app, LIVE).await;
    let subscribers = metric(
        &app,
        &format!("jetway_feed_subscribers{{stream=\"{LIVE}\"}}"),
    )
    .await;

    let published = Instant::now();
    let seq = publish_direct(&app.js, "live.a", "for everyone").await;
    let received: Vec<(Ws, Duration)> = futures::stream::iter(sockets)
        .map(|mut ws| async move {
            let message = frame(&mut ws).await;
            let at = published.elapsed();
            assert_eq!(message["type"], "msg", "{message}");
            assert_eq!(message["seq"], seq, "{message}");
            assert_eq!(message["data"], "for everyone", "{message}");
            (ws, at)
        })
        .buffer_unordered(SOCKETS)
        .collect()
        .await;
    let slowest = received.iter().map(|(_, at)| *at).max().unwrap_or_default();
    eprintln!(
        "{SOCKETS} live sockets: opened in {opened_in:?}, {} consumer(s) on the stream, \
         all received the new message within {slowest:?}",
        consumers.len()
    );

    assert_eq!(received.len(), SOCKETS);
    assert_eq!(
        consumers.len(),
        1,
        "one feed for {SOCKETS} identical live subscriptions: {:#?}",
        consumers.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
    assert_eq!(subscribers, i64::try_from(SOCKETS).expect("fits"));
    drop(received);
    no_consumers_left(&app, LIVE).await;
}

/// A reader that records every frame of a socket until it has seen `until` (once set).
fn read_until(mut ws: Ws, until: Arc<AtomicU64>) -> tokio::task::JoinHandle<Vec<Value>> {
    tokio::spawn(async move {
        let mut frames: Vec<Value> = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(90);
        loop {
            let target = until.load(Ordering::SeqCst);
            let last = frames
                .iter()
                .rev()
                .find(|f| f["type"] == "msg")
                .and_then(|f| f["seq"].as_u64())
                .unwrap_or(0);
            if target != 0 && last >= target {
                return frames;
            }
            assert!(
                Instant::now() < give_up,
                "no message {target} within 90 s; last {last}"
            );
            if let Some(next) = frame_within(&mut ws, Duration::from_millis(200)).await {
                frames.push(next);
            }
        }
    })
}

/// Asserts that `frames` are one `caught_up` and the messages `first..=last`, each once, in order.
fn assert_every_sequence_once(who: &str, frames: &[Value], first: u64, last: u64) {
    let seqs: Vec<u64> = frames
        .iter()
        .filter(|f| f["type"] == "msg")
        .map(|f| f["seq"].as_u64().expect("seq"))
        .collect();
    let expected: Vec<u64> = (first..=last).collect();
    if seqs != expected {
        let missing: Vec<u64> = expected
            .iter()
            .filter(|s| !seqs.contains(s))
            .copied()
            .collect();
        let mut twice = seqs.clone();
        twice.sort_unstable();
        let twice: Vec<u64> = twice
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        panic!(
            "{who}: {} messages instead of {}; missing {missing:?}, twice {twice:?}",
            seqs.len(),
            expected.len()
        );
    }
    let others: Vec<&Value> = frames.iter().filter(|f| f["type"] != "msg").collect();
    assert_eq!(others.len(), 1, "{who}: {others:#?}");
    assert_eq!(others[0]["type"], "caught_up", "{who}: {others:#?}");
}

async fn replay_then_live_hands_over_without_gap_or_duplicate_under_steady_publishing(
    topology: Topology,
) {
    const STORED: usize = 300;
    const REPLAYS: u64 = 6;
    let app = spawn_app_on_with(topology, |_| {}).await;
    app.create_stream(LIVE, &["live.>"]).await;
    publish_many(&app.js, "live.a", STORED, |i| Bytes::from(format!("s{i}"))).await;

    // One live subscriber keeps the feed running; a publisher writes every 5 ms.
    let until = Arc::new(AtomicU64::new(0));
    let mut live = connect(&app, &format!("/v1/streams/{LIVE}/ws?deliver=new")).await;
    assert_eq!(frame(&mut live).await["type"], "caught_up");
    let live = read_until(live, until.clone());
    let latest = Arc::new(AtomicU64::new(STORED as u64));
    let stop = tokio_util::sync::CancellationToken::new();
    let publisher = {
        let (js, latest, stop) = (app.js.clone(), latest.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while !stop.is_cancelled() {
                tick.tick().await;
                let seq = publish_direct(&js, "live.a", "p").await;
                latest.store(seq, Ordering::SeqCst);
            }
        })
    };

    // Subscribers that start in the past, each once the stream has moved on a little.
    let mut replays = Vec::new();
    for i in 0..REPLAYS {
        let seen = latest.load(Ordering::SeqCst);
        eventually("the publisher to move on", Duration::from_secs(30), || {
            let latest = latest.clone();
            async move { (latest.load(Ordering::SeqCst) >= seen + 20).then_some(()) }
        })
        .await;
        let start = 1 + i * 50;
        let ws = connect(&app, &format!("/v1/streams/{LIVE}/ws?start_seq={start}")).await;
        replays.push((start, read_until(ws, until.clone())));
    }
    eventually(
        "every replay to hand over to the feed",
        Duration::from_secs(60),
        || async {
            let handovers = metric(&app, "jetway_feed_handovers_total").await;
            (handovers >= i64::try_from(REPLAYS).expect("fits")).then_some(())
        },
    )
    .await;
    let consumers = eventually(
        "the replays' own consumers to be deleted",
        Duration::from_secs(30),
        || async {
            let consumers = stream_consumers(&app, LIVE).await;
            (consumers.len() == 1).then_some(consumers)
        },
    )
    .await;
    // Keep publishing a while after the hand-over.
    let handed_over_at = latest.load(Ordering::SeqCst);
    eventually("publishing to go on", Duration::from_secs(30), || {
        let latest = latest.clone();
        async move { (latest.load(Ordering::SeqCst) >= handed_over_at + 50).then_some(()) }
    })
    .await;
    stop.cancel();
    publisher.await.expect("publisher");
    let last = latest.load(Ordering::SeqCst);
    until.store(last, Ordering::SeqCst);

    assert_eq!(consumers.len(), 1);
    let live_frames = live.await.expect("live reader");
    let live_seqs: Vec<u64> = live_frames
        .iter()
        .filter_map(|f| f["seq"].as_u64())
        .collect();
    let first_live = live_seqs.first().copied().expect("live messages");
    let expected: Vec<u64> = (first_live..=last).collect();
    assert_eq!(live_seqs, expected, "the live subscriber");
    for (start, reader) in replays {
        let frames = reader.await.expect("reader");
        assert_every_sequence_once(&format!("replay from {start}"), &frames, start, last);
    }
    drop(live_frames);
    no_consumers_left(&app, LIVE).await;
}

crate::on_r1_and_r3!(replay_then_live_hands_over_without_gap_or_duplicate_under_steady_publishing);

/// Messages published every `pace`, each carrying its publish time (µs since the epoch).
async fn publish_timed(app: &TestApp, count: usize, pace: Duration) -> u64 {
    let mut tick = tokio::time::interval(pace);
    let mut last = 0;
    for _ in 0..count {
        tick.tick().await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_micros();
        last = publish_direct(&app.js, "live.a", format!("{now:0>1024}")).await;
    }
    last
}

/// Publish-to-receipt latencies (µs) of the messages a socket receives up to `last`.
fn latencies(mut ws: Ws, last: u64) -> tokio::task::JoinHandle<(Ws, Vec<u64>)> {
    tokio::spawn(async move {
        let mut out = Vec::new();
        let mut expected = None;
        loop {
            let message = frame(&mut ws).await;
            if message["type"] != "msg" {
                continue;
            }
            let received = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_micros();
            let sent: u128 = message["data"]
                .as_str()
                .and_then(|d| d.trim_start_matches('0').parse().ok())
                .expect("timestamp payload");
            out.push(u64::try_from(received.saturating_sub(sent)).unwrap_or(u64::MAX));
            let seq = message["seq"].as_u64().expect("seq");
            if let Some(expected) = expected {
                assert_eq!(
                    seq, expected,
                    "a fast subscriber missed or repeated a message"
                );
            }
            expected = Some(seq + 1);
            if seq >= last {
                return (ws, out);
            }
        }
    })
}

fn p99(mut samples: Vec<u64>) -> Duration {
    samples.sort_unstable();
    let index = (samples.len() * 99 / 100).min(samples.len().saturating_sub(1));
    Duration::from_micros(samples.get(index).copied().unwrap_or(0))
}

/// Measures the p99 publish-to-receipt latency of `fast` sockets over `count` paced messages.
async fn measure(app: &TestApp, fast: Vec<Ws>, count: usize) -> (Vec<Ws>, Duration) {
    let first = stream_last(app).await + 1;
    let last = first + u64::try_from(count).expect("fits") - 1;
    let readers: Vec<_> = fast.into_iter().map(|ws| latencies(ws, last)).collect();
    publish_timed(app, count, Duration::from_millis(2)).await;
    let mut sockets = Vec::new();
    let mut samples = Vec::new();
    for reader in readers {
        let (ws, mut got) = reader.await.expect("reader");
        assert_eq!(got.len(), count, "a fast subscriber missed messages");
        sockets.push(ws);
        samples.append(&mut got);
    }
    (sockets, p99(samples))
}

async fn stream_last(app: &TestApp) -> u64 {
    app.js
        .get_stream(LIVE)
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .state
        .last_sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_does_not_delay_the_others_and_catches_up_on_a_consumer_of_its_own() {
    const FAST: usize = 10;
    const COUNT: usize = 1_500; // more than a feed's ring holds
    let app = spawn_app_with(|config| config.ws_max_buffered_bytes = 64 * 1024).await;
    app.create_stream(LIVE, &["live.>"]).await;
    let mut fast = Vec::new();
    for _ in 0..FAST {
        let mut ws = connect(&app, &format!("/v1/streams/{LIVE}/ws?deliver=new")).await;
        assert_eq!(frame(&mut ws).await["type"], "caught_up");
        fast.push(ws);
    }
    let (fast, baseline) = measure(&app, fast, COUNT).await;

    // One subscriber that grants no credit after its first message, one that reads nothing.
    let from = stream_last(&app).await + 1;
    let path = format!("/v1/streams/{LIVE}/ws?deliver=new&credit=1");
    let mut stalled = connect(&app, &path).await;
    assert_eq!(frame(&mut stalled).await["type"], "caught_up");
    let mut silent = connect(&app, &format!("/v1/streams/{LIVE}/ws?deliver=new")).await;
    assert_eq!(frame(&mut silent).await["type"], "caught_up");
    let (_fast, with_stalled) = measure(&app, fast, COUNT).await;
    let last = stream_last(&app).await;
    eprintln!(
        "p99 publish→receipt of {FAST} fast subscribers: {baseline:?} alone, \
         {with_stalled:?} next to a stalled one"
    );

    assert!(
        with_stalled <= baseline * 3 + Duration::from_millis(100),
        "a stalled subscriber delayed the others: p99 {baseline:?} → {with_stalled:?}"
    );
    // The stalled subscriber, once it reads, gets everything it owes, in order, once.
    stalled
        .send(Message::text(
            json!({"op": "credit", "n": 1_000_000}).to_string(),
        ))
        .await
        .expect("credit");
    let mut expected = from;
    while expected <= last {
        let message = frame(&mut stalled).await;
        assert_eq!(message["type"], "msg", "{message}");
        assert_eq!(
            message["seq"], expected,
            "the stalled subscriber lost its place"
        );
        expected += 1;
    }
    assert!(fence(&mut stalled).await.is_empty());
    assert!(
        metric(&app, "jetway_feed_catch_ups_total").await >= 1,
        "the stalled subscriber never fell behind the feed's ring: the test proved nothing"
    );
    drop((stalled, silent, _fast));
    no_consumers_left(&app, LIVE).await;
}

const SECRET: &str = "fanout-test-secret";

fn token(sub: &str, prefix: Option<&str>) -> String {
    let mut grants = json!({"publish": [], "read": ["SHARED"]});
    if let Some(prefix) = prefix {
        grants["prefix"] = json!(prefix);
    }
    let claims = json!({
        "sub": sub,
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
        "jetway": grants,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_sse_subscribers_share_a_feed_per_namespace_and_see_only_their_own_subjects()
{
    let app = spawn_app_with(|config| {
        config.no_auth = false;
        config.jwt_secret = vec![SECRET.into()];
    })
    .await;
    app.create_stream("SHARED", &["acme.>", "globex.>"]).await;
    let (acme, globex, operator) = (
        token("acme-app", Some("acme")),
        token("globex-app", Some("globex")),
        token("operator", None),
    );
    let socket = |token: &str, query: &str| {
        format!("/v1/streams/SHARED/ws?deliver=new&access_token={token}{query}")
    };
    let mut acme_ws = Vec::new();
    for _ in 0..2 {
        acme_ws.push(connect(&app, &socket(&acme, "")).await);
    }
    let mut globex_ws = connect(&app, &socket(&globex, "")).await;
    // The same subjects as acme's feed, shown with their prefix: a feed of its own.
    let mut operator_ws = connect(&app, &socket(&operator, "&filter=acme.%3E")).await;
    let mut acme_sse = app
        .http
        .get(app.url("/v1/streams/SHARED/events?deliver=new"))
        .bearer_auth(&acme)
        .send()
        .await
        .expect("events");
    assert_eq!(acme_sse.status(), 200);
    for ws in acme_ws.iter_mut().chain([&mut globex_ws, &mut operator_ws]) {
        assert_eq!(frame(ws).await["type"], "caught_up");
    }
    let mut sse_text = String::new();
    let mut sse_chunk = async |text: &mut String| {
        let chunk = tokio::time::timeout(Duration::from_secs(20), acme_sse.chunk())
            .await
            .expect("an SSE chunk within 20 s")
            .expect("SSE body")
            .expect("SSE open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    };
    while !sse_text.contains("event: caught_up") {
        sse_chunk(&mut sse_text).await;
    }
    let consumers = stream_consumers(&app, "SHARED").await;

    publish_direct(&app.js, "globex.orders.new", "g1").await;
    let seq = publish_direct(&app.js, "acme.orders.new", "a1").await;

    assert_eq!(consumers.len(), 3, "acme, globex and the operator's feed");
    for ws in &mut acme_ws {
        let message = frame(ws).await;
        assert_eq!(
            (&message["subject"], &message["data"], &message["seq"]),
            (&json!("orders.new"), &json!("a1"), &json!(seq))
        );
        assert!(fence(ws).await.is_empty());
    }
    let message = frame(&mut globex_ws).await;
    assert_eq!(
        (&message["subject"], &message["data"]),
        (&json!("orders.new"), &json!("g1"))
    );
    assert!(fence(&mut globex_ws).await.is_empty());
    let message = frame(&mut operator_ws).await;
    assert_eq!(
        (&message["subject"], &message["data"]),
        (&json!("acme.orders.new"), &json!("a1"))
    );
    assert!(fence(&mut operator_ws).await.is_empty());
    while !sse_text.contains(&format!("id: {seq}")) {
        sse_chunk(&mut sse_text).await;
    }
    let events: Vec<Value> = sse_text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter(|event| event.get("subject").is_some())
        .collect();
    assert_eq!(events.len(), 1, "{sse_text}");
    assert_eq!(
        (&events[0]["subject"], &events[0]["data"]),
        (&json!("orders.new"), &json!("a1"))
    );

    drop((acme_ws, globex_ws, operator_ws, acme_sse));
    no_consumers_left(&app, "SHARED").await;
}
