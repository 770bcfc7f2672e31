//! A gateway built while NATS is down: it serves, is not ready and says why, then becomes ready
//! once NATS starts, with its declared streams ensured and its advisory subscriptions working.
//! (The real binary doing the same is in `cli.rs`.)

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use jetway::config::{Config, StreamSpec};
use jetway::nats::streams::StreamConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::harness::{NatsServer, eventually, json, problem};

/// How long a gateway built while NATS is down may take to become ready once it starts
/// (async-nats reconnects with a backoff of up to 4 s).
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A server that is down: its port is known and nothing listens on it until `restart`.
async fn stopped_server() -> NatsServer {
    let mut server = NatsServer::start().await;
    server.stop();
    server
}

/// A stream declared as a `[[streams]]` table would declare it.
fn declared(name: &str, config: Value) -> StreamSpec {
    let config: StreamConfig = serde_json::from_value(config).expect("valid stream config");
    StreamSpec {
        name: name.to_owned(),
        config,
    }
}

/// A gateway serving on `127.0.0.1:0`, whatever the state of NATS. Shut down on drop.
struct Started {
    addr: SocketAddr,
    http: reqwest::Client,
    _shutdown: oneshot::Sender<()>,
    _serving: JoinHandle<()>,
}

impl Started {
    /// Builds (which must not wait for NATS) and serves a gateway on `server`'s URL.
    async fn on(server: &NatsServer, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::defaults();
        config.nats_url = server.urls();
        config.no_auth = true;
        config.shutdown_timeout = Duration::from_secs(2);
        adjust(&mut config);
        let app = tokio::time::timeout(Duration::from_secs(10), jetway::build(config))
            .await
            .expect("build does not wait for NATS")
            .expect("build gateway while NATS is down");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel();
        let serving = tokio::spawn(async move {
            let _ = jetway::serve(listener, app, async move {
                let _ = rx.await;
            })
            .await;
        });
        Self {
            addr,
            http: reqwest::Client::new(),
            _shutdown: tx,
            _serving: serving,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    /// The `detail` of `/readyz`, asserting a 503 problem with `Retry-After`.
    async fn not_ready_because(&self) -> String {
        let response = self.get("/readyz").await;
        assert!(
            response.headers().contains_key("retry-after"),
            "{:?}",
            response.headers()
        );
        let body = problem(response, 503, "jetstream_unavailable").await;
        body["detail"].as_str().unwrap().to_owned()
    }

    async fn wait_ready(&self) {
        eventually("readyz to answer 200", READY_DEADLINE, || async {
            let response = self.http.get(self.url("/readyz")).send().await.ok()?;
            (response.status().as_u16() == 200).then_some(())
        })
        .await;
    }

    /// The value of an unlabelled metric.
    async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.get("/metrics").await.text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }
}

#[tokio::test]
async fn gateway_built_while_nats_is_down_serves_503_then_ensures_streams_and_dead_letters_once_it_starts()
 {
    let mut server = stopped_server().await;
    let gateway = Started::on(&server, |config| {
        config.streams = vec![
            declared("ORDERS", json!({"subjects": ["orders.>"]})),
            declared("DLQ", json!({"subjects": ["dlq.>"]})),
        ];
    })
    .await;

    json(gateway.get("/healthz").await, 200).await;
    let detail = gateway.not_ready_because().await;
    assert!(
        detail.contains(&format!("not connected to NATS at {} yet", server.url())),
        "{detail}"
    );
    assert!(
        detail.contains("declared streams not yet ensured: ORDERS, DLQ"),
        "{detail}"
    );
    let response = gateway
        .http
        .post(gateway.url("/v1/publish/orders.new"))
        .body("early")
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("retry-after"));
    problem(response, 503, "jetstream_unavailable").await;
    assert_eq!(gateway.metric("jetway_nats_connected").await, Some(0.0));

    server.restart().await;
    gateway.wait_ready().await;

    assert_eq!(gateway.metric("jetway_nats_connected").await, Some(1.0));
    let nats = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(nats);
    for name in ["ORDERS", "DLQ"] {
        js.get_stream(name)
            .await
            .unwrap_or_else(|e| panic!("declared stream {name} not created: {e}"));
    }
    let response = gateway
        .http
        .put(gateway.url("/v1/streams/ORDERS/consumers/workers"))
        .json(&json!({"dead_letter_subject": "dlq.orders"}))
        .send()
        .await
        .unwrap();
    json(response, 201).await;
    let response = gateway
        .http
        .post(gateway.url("/v1/publish/orders.new"))
        .body("poison")
        .send()
        .await
        .unwrap();
    json(response, 201).await;

    // Terminated by a client that is not jetway: only the advisory watcher, subscribed while
    // NATS was down, can make the copy.
    let workers: consumer::PullConsumer = js
        .get_stream("ORDERS")
        .await
        .unwrap()
        .get_consumer("workers")
        .await
        .unwrap();
    let mut batch = workers.fetch().max_messages(1).messages().await.unwrap();
    let message = batch.next().await.expect("one message").unwrap();
    assert_eq!(message.payload.as_ref(), b"poison");
    message.double_ack_with(AckKind::Term).await.unwrap();

    let dlq = js.get_stream("DLQ").await.unwrap();
    let copy = eventually("the dead-letter copy", Duration::from_secs(10), || async {
        dlq.get_raw_message(1).await.ok()
    })
    .await;
    assert_eq!(copy.subject.as_str(), "dlq.orders");
    assert_eq!(copy.payload.as_ref(), b"poison");
    assert_eq!(
        copy.headers
            .get("Jetway-Dead-Letter-Reason")
            .map(|v| v.as_str()),
        Some("terminated")
    );
}

#[tokio::test]
async fn declared_stream_conflicting_with_one_found_once_nats_starts_keeps_readyz_503_until_fixed()
{
    let mut server = NatsServer::start().await;
    let nats = async_nats::connect(server.url()).await.unwrap();
    jetstream::new(nats)
        .create_stream(jetstream::stream::Config {
            name: "ORDERS".to_owned(),
            subjects: vec!["orders.>".to_owned()],
            max_messages: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    server.stop();
    let gateway = Started::on(&server, |config| {
        config.streams = vec![declared(
            "ORDERS",
            json!({"subjects": ["orders.>"], "max_msgs": 20}),
        )];
    })
    .await;

    server.restart().await;

    let detail = eventually("readyz to name the conflict", READY_DEADLINE, || async {
        let response = gateway.get("/readyz").await;
        (response.status().as_u16() == 503).then_some(())?;
        let body: Value = response.json().await.ok()?;
        let detail = body["detail"].as_str()?.to_owned();
        detail.contains("cannot be ensured").then_some(detail)
    })
    .await;
    assert!(detail.contains("ORDERS"), "{detail}");
    assert!(detail.contains("max_msgs"), "{detail}");
    assert!(!detail.contains("subjects"), "{detail}");
    json(gateway.get("/healthz").await, 200).await;
    let nats = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(nats);
    let mut stored = js.get_stream("ORDERS").await.unwrap();
    assert_eq!(
        stored.info().await.unwrap().config.max_messages,
        10,
        "the stream was overwritten"
    );

    let mut fixed = stored.cached_info().config.clone();
    fixed.max_messages = 20;
    js.update_stream(fixed).await.unwrap();

    gateway.wait_ready().await;
}
