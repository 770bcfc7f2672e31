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

/// Where a test's JetStream runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One nats-server; streams and consumers are R1.
    Single,
    /// Three nats-servers routed on loopback; streams and consumers are R3.
    Cluster,
}

/// One nats-server process of a [`NatsServer`].
struct Node {
    name: String,
    child: Option<Child>,
    /// Client port, fixed after the first start so that a restart keeps it.
    port: u16,
    cluster_port: Option<u16>,
    store: TempDir,
    ports_dir: TempDir,
}

/// Throwaway JetStream: one nats-server, or a 3-node cluster. Every node has its own store
/// directory and is killed on drop; a node can be killed and restarted on the same ports.
pub struct NatsServer {
    nodes: Vec<Node>,
    routes: Vec<String>,
    /// A cluster's hold on [`LOAD_GATE`] (shared, or alone for a heavy test), kept while it
    /// runs.
    _gate: Option<GateHold>,
}

/// Keeps 3-node clusters and tests that load both cores with external tools (SDK generators,
/// schemathesis) from running at the same time: on a starved 2-core machine a cluster misses
/// its heartbeats and elects leaders for seconds, which no test of jetway means to measure.
/// Clusters share the gate with each other; a heavy test holds it alone.
pub static LOAD_GATE: Gate = Gate::new();

/// A shared/exclusive gate whose guards are `Send` (tests hand servers to tasks); a waiting
/// exclusive holder goes before new shared ones.
pub struct Gate {
    /// (shared holders, exclusive held, exclusive waiting)
    state: std::sync::Mutex<(usize, bool, usize)>,
    changed: std::sync::Condvar,
}

pub struct GateShare(&'static Gate);
pub struct GateAlone(&'static Gate);

/// How a cluster holds the gate.
pub enum GateHold {
    Share(GateShare),
    Alone(GateAlone),
}

impl Gate {
    const fn new() -> Self {
        Self {
            state: std::sync::Mutex::new((0, false, 0)),
            changed: std::sync::Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, bool, usize)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Blocks this test's thread until no exclusive holder runs or waits.
    pub fn share(&'static self) -> GateShare {
        let mut state = self.lock();
        while state.1 || state.2 > 0 {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.0 += 1;
        GateShare(self)
    }

    /// Blocks this test's thread until nobody else holds the gate.
    pub fn alone(&'static self) -> GateAlone {
        let mut state = self.lock();
        state.2 += 1;
        while state.1 || state.0 > 0 {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.2 -= 1;
        state.1 = true;
        GateAlone(self)
    }
}

impl Drop for GateShare {
    fn drop(&mut self) {
        self.0.lock().0 -= 1;
        self.0.changed.notify_all();
    }
}

impl Drop for GateAlone {
    fn drop(&mut self) {
        self.0.lock().1 = false;
        self.0.changed.notify_all();
    }
}

/// A JetStream API answer (`$JS.API.<api>`), or `None` when there is none within 500 ms.
/// Short on purpose: before a meta leader exists a request gets no answer at all, and waiting
/// the client's own 10 s timeout would slow every cluster start.
async fn api_answer(client: &async_nats::Client, api: &str, body: String) -> Option<Value> {
    let request = client.request(format!("$JS.API.{api}"), body.into());
    let reply = tokio::time::timeout(Duration::from_millis(500), request)
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice(&reply.payload).ok()
}

/// A free loopback port (for cluster routes, which must be known before any node starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl NatsServer {
    /// Starts a single server on a free port with its own store directory.
    pub async fn start() -> Self {
        Self::start_on(Topology::Single).await
    }

    /// Starts a 3-node cluster (in parallel) and waits until it has a JetStream meta leader.
    pub async fn cluster() -> Self {
        Self::start_on(Topology::Cluster).await
    }

    pub async fn start_on(topology: Topology) -> Self {
        Self::start_holding(topology, false).await
    }

    /// A 3-node cluster for a test heavy enough to run without any other cluster beside it
    /// (extra gateway processes, kills): it holds [`LOAD_GATE`] alone.
    pub async fn cluster_alone() -> Self {
        Self::start_holding(Topology::Cluster, true).await
    }

    async fn start_holding(topology: Topology, alone: bool) -> Self {
        let count = match topology {
            Topology::Single => 1,
            Topology::Cluster => 3,
        };
        let mut gate = (count > 1).then(|| {
            if alone {
                GateHold::Alone(LOAD_GATE.alone())
            } else {
                GateHold::Share(LOAD_GATE.share())
            }
        });
        // Cluster ports are picked before any node starts, so another test may take one in
        // between: a node that exits before listening makes the whole cluster start again on
        // fresh ports.
        for _attempt in 0..3 {
            let mut server = Self::new_nodes(count);
            for i in 0..count {
                server.spawn(i);
            }
            let mut started = true;
            for i in 0..count {
                started &= server.wait_listening(i).await;
            }
            if !started {
                server.stop();
                continue;
            }
            if count > 1 {
                server.wait_for_meta_leader().await;
                server.wait_for_r3_placement().await;
            }
            server._gate = gate.take();
            return server;
        }
        panic!("nats-server did not start in 3 attempts (run with JETWAY_TEST_NATS_LOGS=1)");
    }

    fn new_nodes(count: usize) -> Self {
        let cluster_ports: Vec<Option<u16>> =
            (0..count).map(|_| (count > 1).then(free_port)).collect();
        let routes = cluster_ports
            .iter()
            .flatten()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        let nodes = cluster_ports
            .into_iter()
            .enumerate()
            .map(|(i, cluster_port)| Node {
                name: format!("n{i}"),
                child: None,
                port: 0,
                cluster_port,
                store: TempDir::new().expect("store dir"),
                ports_dir: TempDir::new().expect("ports dir"),
            })
            .collect();
        Self {
            nodes,
            routes,
            _gate: None,
        }
    }

    /// Waits until the cluster can place an R3 stream (every peer known to the meta leader), by
    /// creating and deleting a small one.
    async fn wait_for_r3_placement(&self) {
        let client = async_nats::ConnectOptions::new()
            .connect(self.urls().as_slice())
            .await
            .expect("connect to the cluster");
        let config = serde_json::json!({
            "name": "HARNESS_PROBE", "subjects": ["harness.probe"], "num_replicas": 3,
            "storage": "memory"
        });
        eventually(
            "the cluster to place an R3 stream",
            Duration::from_secs(30),
            || {
                let client = client.clone();
                let config = config.to_string();
                async move {
                    let answer = api_answer(&client, "STREAM.CREATE.HARNESS_PROBE", config).await?;
                    answer.get("error").is_none().then_some(())
                }
            },
        )
        .await;
        eventually(
            "the probe stream to be deleted",
            Duration::from_secs(30),
            || {
                let client = client.clone();
                async move {
                    let answer =
                        api_answer(&client, "STREAM.DELETE.HARNESS_PROBE", String::new()).await?;
                    answer["success"].as_bool().filter(|ok| *ok).map(|_| ())
                }
            },
        )
        .await;
    }

    fn spawn(&mut self, index: usize) {
        let routes = self.routes.join(",");
        let node = &mut self.nodes[index];
        let port = if node.port == 0 {
            "-1".to_owned()
        } else {
            node.port.to_string()
        };
        let mut command = Command::new(nats_server_bin());
        command
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port,
                "-n",
                &node.name,
                "-sd",
            ])
            .arg(node.store.path())
            .arg("--ports_file_dir")
            .arg(node.ports_dir.path());
        if let Some(cluster_port) = node.cluster_port {
            command
                .args(["--cluster_name", "jetway-test"])
                .args(["--cluster", &format!("nats://127.0.0.1:{cluster_port}")])
                .args(["--routes", &routes]);
        }
        if std::env::var_os("JETWAY_TEST_NATS_LOGS").is_some() {
            command.arg("-DV");
        } else {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        node.child = Some(command.spawn().expect("spawn nats-server"));
    }

    /// Waits until the node listens; `false` if it exited first (its port was taken).
    async fn wait_listening(&mut self, index: usize) -> bool {
        let node = &mut self.nodes[index];
        let pid = node.child.as_ref().map(Child::id).unwrap_or_default();
        let ports_file = node
            .ports_dir
            .path()
            .join(format!("nats-server_{pid}.ports"));
        // The ports file appears once the server listens.
        let port = eventually("nats-server to listen", Duration::from_secs(30), || {
            let exited = node
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            let ports_file = ports_file.clone();
            async move {
                if exited {
                    return Some(None);
                }
                let text = std::fs::read_to_string(&ports_file).ok()?;
                let ports: Value = serde_json::from_str(&text).ok()?;
                let url = ports["nats"][0].as_str()?.to_owned();
                url.rsplit(':').next()?.parse::<u16>().ok().map(Some)
            }
        })
        .await;
        match port {
            Some(port) => {
                node.port = port;
                true
            }
            None => false,
        }
    }

    /// Waits until JetStream's API answers through every running node (a meta leader exists).
    pub async fn wait_for_meta_leader(&self) {
        for url in self.running_urls() {
            let client = async_nats::connect(url).await.expect("connect to node");
            eventually("a JetStream meta leader", Duration::from_secs(30), || {
                let client = client.clone();
                async move {
                    let answer = api_answer(&client, "STREAM.NAMES", "{}".to_owned()).await?;
                    answer.get("error").is_none().then_some(())
                }
            })
            .await;
        }
    }

    /// Replicas for streams and consumers on this topology: 1 or 3.
    pub fn replicas(&self) -> usize {
        self.nodes.len()
    }

    /// The first node's URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[0].port)
    }

    /// Every node's URL (what a client of the cluster is configured with).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }

    fn running_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The index of the node with server name `name` (as JetStream reports leaders).
    pub fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Kills one node with SIGKILL (its store stays, for a restart).
    pub fn kill_node(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed node again on the same ports with the same store.
    ///
    /// Another process may have taken one of its ports meanwhile (other tests run in parallel):
    /// after two tries the node comes back on fresh ports, as a replaced machine would.
    pub async fn restart_node(&mut self, index: usize) {
        self.kill_node(index);
        for attempt in 0..3 {
            if attempt == 2 {
                let node = &mut self.nodes[index];
                node.port = 0;
                if node.cluster_port.is_some() {
                    node.cluster_port = Some(free_port());
                }
            }
            self.spawn(index);
            if self.wait_listening(index).await {
                return;
            }
            self.kill_node(index);
        }
        panic!("node n{index} did not restart");
    }

    /// Kills every node (their stores stay, for a restart).
    pub fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }

    /// Starts every node again on the same ports with the same stores.
    pub async fn restart(&mut self) {
        self.stop();
        for i in 0..self.nodes.len() {
            self.spawn(i);
        }
        for i in 0..self.nodes.len() {
            assert!(self.wait_listening(i).await, "node n{i} did not restart");
        }
        if self.nodes.len() > 1 {
            self.wait_for_meta_leader().await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Generates a test per topology from `async fn $name(topology: Topology)`: `$name::r1` on one
/// server and `$name::r3` on a 3-node cluster with R3 streams and consumers.
#[macro_export]
macro_rules! on_r1_and_r3 {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::harness::Topology;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn r1() {
                    super::$name(Topology::Single).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn r3() {
                    super::$name(Topology::Cluster).await;
                }
            }
        )*
    };
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
    spawn_app_on_with(Topology::Single, adjust).await
}

/// Starts JetStream on `topology` and a gateway with default configuration and auth off.
pub async fn spawn_app_on(topology: Topology) -> TestApp {
    spawn_app_on_with(topology, |_| {}).await
}

/// A gateway's configuration for tests on `server`: its nodes' URLs, auth off, a short
/// shutdown. On a cluster the JetStream timeouts are generous, like the direct client's: a
/// 3-node cluster on a busy 2-core machine can take longer than the production defaults to elect
/// a leader and answer. Tests that are about timeouts set their own.
fn gateway_config(server: &NatsServer) -> Config {
    let mut config = Config::defaults();
    config.nats_url = server.urls();
    config.no_auth = true;
    config.shutdown_timeout = Duration::from_secs(2);
    if server.replicas() > 1 {
        config.api_timeout = Duration::from_secs(20);
        config.publish_timeout = Duration::from_secs(20);
        config.ack_timeout = Duration::from_secs(10);
    }
    config
}

/// Starts JetStream on `topology` and a gateway configured with every node's URL, letting the
/// test adjust the configuration.
pub async fn spawn_app_on_with(topology: Topology, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let server = NatsServer::start_on(topology).await;
    let mut config = gateway_config(&server);
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
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(server.urls().as_slice())
        .await
        .expect("direct NATS client");
    // Generous: a 3-node cluster on a busy 2-core machine can take seconds to answer.
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(20))
        .build(nats.clone());
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

    /// Waits until stream `name` has a leader and current replicas (on a cluster, a publish
    /// before that finds no responders).
    pub async fn wait_for_stream_leader(&self, name: &str) {
        eventually(
            &format!("stream {name} to have a leader and current replicas"),
            Duration::from_secs(30),
            || async {
                let mut handle = self.js.get_stream(name).await.ok()?;
                let info = handle.info().await.ok()?;
                let cluster = info.cluster.as_ref()?;
                (cluster.leader.is_some() && cluster.replicas.iter().all(|r| r.current))
                    .then_some(())
            },
        )
        .await;
    }

    /// Creates a stream directly with async-nats, with as many replicas as the topology has
    /// nodes unless the config says otherwise.
    pub async fn create_stream_with(
        &self,
        mut config: jetstream::stream::Config,
    ) -> jetstream::stream::Stream {
        if config.num_replicas <= 1 {
            config.num_replicas = self.server.replicas();
        }
        // A busy cluster may take longer than one request's timeout; creating the same stream
        // again is a no-op, so retry.
        let start = Instant::now();
        loop {
            match self.js.create_stream(config.clone()).await {
                Ok(stream) if self.server.replicas() == 1 => return stream,
                Ok(stream) => {
                    // On a cluster the stream takes a moment to elect its leader: a publish before
                    // that finds no responders.
                    self.wait_for_stream_leader(&config.name).await;
                    self.wait_for_publishable(&config).await;
                    return stream;
                }
                Err(err) if start.elapsed() < Duration::from_secs(30) => {
                    eprintln!("create stream {}: {err}; retrying", config.name);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("create stream {}: {err}", config.name),
            }
        }
    }

    /// Replicas of streams and consumers on this topology: 1 or 3.
    pub fn replicas(&self) -> usize {
        self.server.replicas()
    }

    /// Waits until a publish to the new stream reaches its leader through this client's node
    /// (the leader's interest in the subjects has spread over the routes). The probe carries a
    /// precondition that cannot hold, so the leader answers with an error and stores nothing.
    async fn wait_for_publishable(&self, config: &jetstream::stream::Config) {
        let Some(subject) = config.subjects.first() else {
            return;
        };
        let probe: String = subject
            .split('.')
            .map(|t| if t == "*" || t == ">" { "probe" } else { t })
            .collect::<Vec<_>>()
            .join(".");
        eventually(
            &format!(
                "a publish to {probe} to reach the leader of {}",
                config.name
            ),
            Duration::from_secs(30),
            || async {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Expected-Last-Sequence", "9999999999");
                let request = self
                    .nats
                    .request_with_headers(probe.clone(), headers, "".into());
                let reply = tokio::time::timeout(Duration::from_secs(2), request)
                    .await
                    .ok()?
                    .ok()?;
                let answer: Value = serde_json::from_slice(&reply.payload).ok()?;
                answer["error"]["err_code"]
                    .as_u64()
                    .filter(|c| *c == 10071)
                    .map(|_| ())
            },
        )
        .await;
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
    /// A consumer as JetStream reports it. On a cluster a consumer can be between leaders for a
    /// while (a busy machine misses heartbeats); its state is what the next leader answers.
    pub async fn consumer_info(&self, stream: &str, consumer: &str) -> jetstream::consumer::Info {
        eventually(
            "consumer info from its leader",
            Duration::from_secs(30),
            || async {
                let stream = self.js.get_stream(stream).await.ok()?;
                stream.consumer_info(consumer).await.ok()
            },
        )
        .await
    }

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

/// Starts a gateway on `server`'s nodes (auth off), letting the test adjust the
/// configuration. Answers once the gateway is ready: its `/readyz` made a JetStream request on
/// its connection, so the advisory subscriptions it made while starting are in place.
pub async fn spawn_gateway(server: &NatsServer, adjust: impl FnOnce(&mut Config)) -> Gateway {
    let mut config = gateway_config(server);
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

impl TestApp {
    /// The node that leads `stream` right now (waits for a leader to be elected).
    pub async fn stream_leader(&self, stream: &str) -> usize {
        eventually(
            &format!("a leader for stream {stream}"),
            Duration::from_secs(30),
            || async {
                let mut handle = self.js.get_stream(stream).await.ok()?;
                let info = handle.info().await.ok()?;
                let leader = info.cluster.as_ref()?.leader.clone()?;
                self.server.node_named(&leader)
            },
        )
        .await
    }

    /// The node that leads `consumer` of `stream` right now (waits for a leader).
    pub async fn consumer_leader(&self, stream: &str, consumer: &str) -> usize {
        eventually(
            &format!("a leader for consumer {stream}/{consumer}"),
            Duration::from_secs(30),
            || async {
                let handle = self.js.get_stream(stream).await.ok()?;
                let info = handle.consumer_info(consumer).await.ok()?;
                let leader = info.cluster.as_ref()?.leader.clone()?;
                self.server.node_named(&leader)
            },
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// The repository's own files and tools, and the real binary (deployment and scale-out tests).

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool that `scripts/install-tools.sh <what>` installs under `.tools/`, asserting it is there.
pub fn installed_tool(relative: &str, what: &str) -> PathBuf {
    let path = repo_root().join(".tools").join(relative);
    assert!(
        path.exists(),
        "{} not found: run scripts/install-tools.sh {what} (make test does)",
        path.display()
    );
    path
}

/// A free loopback TCP port (free now; whoever binds it next takes it).
pub fn free_tcp_port() -> u16 {
    free_port()
}

/// The real `jetway` binary, with no `JETWAY_*` variable inherited from the caller's
/// environment, output piped, killed when dropped.
pub fn jetway_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_jetway"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("JETWAY_") {
            command.env_remove(name);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The jetway binary as a long-running server whose stdout and stderr go to `log` (truncated):
/// a pipe nobody reads until the end would fill with its logs and stop it mid-test.
pub fn jetway_server_command(log: &std::path::Path) -> tokio::process::Command {
    let mut command = jetway_command();
    let file = std::fs::File::create(log).expect("create the log file");
    let copy = file.try_clone().expect("clone the log file");
    command.stdout(Stdio::from(file)).stderr(Stdio::from(copy));
    command
}

/// Runs the binary to completion (20 s at most) and answers (exit code, stdout, stderr).
pub async fn run_jetway(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = jetway_command();
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.spawn().expect("spawn jetway");
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("jetway {args:?} did not exit within 20s"))
        .expect("wait for jetway");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What the binary says it accepts: long flags and `JETWAY_*` variables (from `--help` of the
/// server and of every subcommand), subcommands, and the HTTP paths of its OpenAPI document.
pub struct BinarySurface {
    pub flags: std::collections::BTreeSet<String>,
    pub env: std::collections::BTreeSet<String>,
    pub subcommands: std::collections::BTreeSet<String>,
    pub paths: std::collections::BTreeSet<String>,
}

impl BinarySurface {
    pub async fn read() -> Self {
        let (code, help, stderr) = run_jetway(&["--help"], &[]).await;
        assert_eq!(code, Some(0), "{stderr}");
        let mut surface = Self {
            flags: Default::default(),
            env: Default::default(),
            subcommands: Default::default(),
            paths: Default::default(),
        };
        surface.add_help(&help);
        // Subcommands are the indented words under "Commands:" (clap's layout).
        let commands = help
            .split("Commands:")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .unwrap_or_default();
        for line in commands.lines() {
            if let Some(word) = line.split_whitespace().next()
                && line.starts_with("  ")
                && !line.starts_with("   ")
                && word != "help"
            {
                surface.subcommands.insert(word.to_owned());
            }
        }
        for sub in surface.subcommands.clone() {
            let (code, help, stderr) = run_jetway(&[&sub, "--help"], &[]).await;
            assert_eq!(code, Some(0), "{sub} --help: {stderr}");
            surface.add_help(&help);
        }
        let (code, openapi, stderr) = run_jetway(&["openapi"], &[]).await;
        assert_eq!(code, Some(0), "{stderr}");
        let openapi: Value = serde_json::from_str(&openapi).expect("OpenAPI JSON");
        surface.paths = openapi["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .cloned()
            .collect();
        surface
    }

    fn add_help(&mut self, help: &str) {
        let words: Vec<&str> = help
            .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
            .filter(|w| !w.is_empty())
            .collect();
        for (i, word) in words.iter().enumerate() {
            if let Some(flag) = word.strip_prefix("--")
                && !flag.is_empty()
                && flag.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            {
                self.flags.insert((*word).to_owned());
            }
            // `[env: JETWAY_LISTEN=]`, or `[env: JETWAY_ACK_SECRET]` for hidden values.
            if *word == "env:"
                && let Some(name) = words.get(i + 1)
            {
                self.env.insert(name.trim_end_matches('=').to_owned());
            }
        }
    }
}
