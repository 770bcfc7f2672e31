//! Test harness: a real `nats-server` per test (temp store, dynamic port, killed on drop,
//! restartable on the same port) and the gateway in-process on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use jetway::config::Config;
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Waits for `check` to return `Some`, polling until `deadline` has passed.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
    }
}

/// The nats-server binary installed by `scripts/install-tools.sh`.
pub fn nats_server_bin() -> PathBuf {
    if let Ok(path) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/nats-server-bin/bin/nats-server");
    assert!(
        path.exists(),
        "nats-server not found at {}: run scripts/install-tools.sh (make test does)",
        path.display()
    );
    path
}

/// A throwaway nats-server with JetStream.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: TempDir,
    ports_dir: TempDir,
}

impl NatsServer {
    /// Starts a server on a free port with its own store directory.
    pub async fn start() -> Self {
        let store = TempDir::new().expect("store dir");
        let ports_dir = TempDir::new().expect("ports dir");
        let mut server = Self {
            child: None,
            port: 0,
            store,
            ports_dir,
        };
        server.spawn("-1").await;
        server
    }

    async fn spawn(&mut self, port: &str) {
        let child = Command::new(nats_server_bin())
            .args(["-js", "-a", "127.0.0.1", "-p", port, "-sd"])
            .arg(self.store.path())
            .arg("--ports_file_dir")
            .arg(self.ports_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let pid = child.id();
        self.child = Some(child);
        let ports_file = self
            .ports_dir
            .path()
            .join(format!("nats-server_{pid}.ports"));
        // The ports file appears once the server listens.
        self.port = eventually("nats-server to listen", Duration::from_secs(10), || async {
            let text = std::fs::read_to_string(&ports_file).ok()?;
            let ports: Value = serde_json::from_str(&text).ok()?;
            let url = ports["nats"][0].as_str()?.to_owned();
            url.rsplit(':').next()?.parse::<u16>().ok()
        })
        .await;
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its store stays, for a restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub async fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        self.spawn(&port).await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running gateway plus direct NATS access to arrange and check what is really stored.
pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    shutdown: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<()>>,
    // Last, so that it drops after the gateway.
    pub server: NatsServer,
}

/// Starts a nats-server and a gateway with default configuration and auth off.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a nats-server and a gateway, letting the test adjust the configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let server = NatsServer::start().await;
    let mut config = Config::defaults();
    config.nats_url = vec![server.url()];
    config.no_auth = true;
    config.shutdown_timeout = Duration::from_secs(2);
    adjust(&mut config);
    let app = jetway::build(config).await.expect("build gateway");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel();
    let serving = tokio::spawn(async move {
        let _ = jetway::serve(listener, app, async move {
            let _ = rx.await;
        })
        .await;
    });
    let nats = async_nats::connect(server.url())
        .await
        .expect("direct NATS client");
    let js = jetstream::new(nats.clone());
    TestApp {
        addr,
        http: reqwest::Client::new(),
        nats,
        js,
        shutdown: Some(tx),
        serving: Some(serving),
        server,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Creates a stream directly with async-nats.
    pub async fn create_stream(&self, name: &str, subjects: &[&str]) -> jetstream::stream::Stream {
        self.create_stream_with(jetstream::stream::Config {
            name: name.to_owned(),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })
        .await
    }

    pub async fn create_stream_with(
        &self,
        config: jetstream::stream::Config,
    ) -> jetstream::stream::Stream {
        self.js.create_stream(config).await.expect("create stream")
    }

    /// POST /v1/publish/{subject} with a body and headers.
    pub async fn publish(
        &self,
        subject: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url(&format!("/v1/publish/{subject}")))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("publish request")
    }

    /// Messages stored in a stream, read directly.
    pub async fn stored(&self, stream: &str) -> Vec<jetstream::message::StreamMessage> {
        let stream = self.js.get_stream(stream).await.expect("stream");
        let info = stream.get_info().await.expect("info");
        let mut out = Vec::new();
        for seq in info.state.first_sequence..=info.state.last_sequence {
            if let Ok(message) = stream.get_raw_message(seq).await {
                out.push(message);
            }
        }
        out
    }

    /// Stops the gateway and waits for it to finish.
    pub async fn stop_gateway(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
        }
    }
}

/// A further gateway on an existing nats-server: a second replica, or the first one restarted.
/// Dropping it shuts it down.
pub struct Gateway {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<()>>,
}

/// Starts a gateway on the nats-server at `server_url` (auth off), letting the test adjust the
/// configuration. Answers once the gateway is ready: its `/readyz` made a JetStream request on
/// its connection, so the advisory subscriptions it made while starting are in place.
pub async fn spawn_gateway(server_url: &str, adjust: impl FnOnce(&mut Config)) -> Gateway {
    let mut config = Config::defaults();
    config.nats_url = vec![server_url.to_owned()];
    config.no_auth = true;
    config.shutdown_timeout = Duration::from_secs(2);
    adjust(&mut config);
    let app = jetway::build(config).await.expect("build gateway");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel();
    let serving = tokio::spawn(async move {
        let _ = jetway::serve(listener, app, async move {
            let _ = rx.await;
        })
        .await;
    });
    let gateway = Gateway {
        addr,
        http: reqwest::Client::new(),
        shutdown: Some(tx),
        serving: Some(serving),
    };
    let ready = gateway
        .http
        .get(gateway.url("/readyz"))
        .send()
        .await
        .expect("readyz request");
    assert_eq!(ready.status().as_u16(), 200, "gateway not ready");
    gateway
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the gateway and waits for it to finish.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
        }
    }
}

/// Reads a response as JSON, asserting its status.
pub async fn json(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({content_type}): {e}: {text}"))
}

/// Reads a problem+json response, asserting status and code.
pub async fn problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = json(response, status).await;
    assert_eq!(content_type, "application/problem+json", "body: {body}");
    assert_eq!(body["code"], code, "body: {body}");
    assert_eq!(body["status"], status, "body: {body}");
    assert_eq!(body["type"], format!("urn:jetway:problem:{code}"));
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "detail missing: {body}"
    );
    body
}
