//! The processes under test: a throwaway nats-server (or a 3-node nats-server cluster) and the
//! jetway release binary, each killed when its handle is dropped, plus what `/proc` tells about
//! them (CPU time, resident memory).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http;

/// The gateway's streaming connection limits, in all and per principal.
pub const MAX_CONNECTIONS: usize = 20_000;

/// How long a process may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a cluster may take until JetStream answers through every node (a meta leader was
/// elected and every node knows it).
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one JetStream API request may take while polling for readiness.
const READY_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Nodes of the cluster.
pub const CLUSTER_NODES: usize = 3;

/// A child process that is killed (and reaped) when dropped. Its stdout and stderr go to a log
/// file, shown when it fails to start.
pub struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `command` with its output sent to `log`.
    pub fn spawn(name: &'static str, mut command: Command, log: PathBuf) -> Result<Self> {
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out
            .try_clone()
            .context("cannot duplicate the log file handle")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;
        Ok(Self { name, child, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, showing the end of its log, when the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{} exited ({status}); last lines of its log {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 30)
            ),
            Err(err) => Err(err).with_context(|| format!("cannot poll {}", self.name)),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Already exited is fine; the process is ours, killed by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read the log: {err})"),
    }
}

/// A free TCP port on the loopback interface (free now; taken by the child right after).
pub fn free_port() -> Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `count` different free TCP ports on the loopback interface: all held until the last is
/// found, so that none is handed out twice.
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("cannot bind a free port"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().context("no local address")?.port()))
        .collect()
}

/// Polls until `addr` accepts TCP connections, failing when `proc` exits or after
/// [`START_TIMEOUT`].
async fn wait_listening(proc: &mut Proc, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        proc.ensure_running()?;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not accept connections on {addr} within {START_TIMEOUT:?}",
                proc.name
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A nats-server with JetStream, on a free port, storing in `store_dir`.
pub struct NatsServer {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl NatsServer {
    pub async fn start(bin: &Path, store_dir: &Path, log_dir: &Path) -> Result<Self> {
        let port = free_port()?;
        // nats-server 2.15 allows 1,000 consumers per stream unless told otherwise
        // (`default_max_consumers`); every live-tail socket is one, so lift it for the
        // idle-socket scenario. Older servers reject the unknown setting: then run without it.
        let config = log_dir.join("nats-server.conf");
        std::fs::write(
            &config,
            "jetstream {\n  limits {\n    default_max_consumers: -1\n  }\n}\n",
        )
        .with_context(|| format!("cannot write {}", config.display()))?;
        let understood = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .arg("-t")
            .output()
            .is_ok_and(|out| out.status.success());
        let mut command = Command::new(bin);
        if understood {
            command.arg("-c").arg(&config);
        }
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store_dir);
        let mut proc = Proc::spawn("nats-server", command, log_dir.join("nats-server.log"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_listening(&mut proc, addr).await?;
        Ok(Self { proc, addr })
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }
}

/// One node of a [`NatsCluster`].
pub struct ClusterNode {
    /// Server name (`-n`), as JetStream names leaders and replicas.
    pub name: String,
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl ClusterNode {
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }
}

/// A 3-node nats-server cluster with JetStream on the loopback interface, each node with its
/// own store directory and log; every node is killed when this is dropped (also when starting
/// fails half-way).
pub struct NatsCluster {
    pub nodes: Vec<ClusterNode>,
}

impl NatsCluster {
    /// Starts the nodes `n1`..`n3` (`nats-server -js -a 127.0.0.1 -p <port> -n <name> -sd
    /// <dir>/<name> --cluster_name jetway-bench --cluster nats://127.0.0.1:<cport> --routes
    /// <every node's cluster URL>`), waits until each accepts connections, then until a
    /// JetStream API request (`$JS.API.STREAM.NAMES`) answers without an error through each.
    pub async fn start(bin: &Path, dir: &Path) -> Result<Self> {
        let ports = free_ports(2 * CLUSTER_NODES)?;
        let (client_ports, cluster_ports) = ports.split_at(CLUSTER_NODES);
        let routes = cluster_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::with_capacity(CLUSTER_NODES);
        for (i, (&port, &cluster_port)) in client_ports.iter().zip(cluster_ports).enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.join(format!("jetstream-{name}"));
            std::fs::create_dir_all(&store)
                .with_context(|| format!("cannot create {}", store.display()))?;
            let mut command = Command::new(bin);
            command
                .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
                .args(["-n", &name, "-sd"])
                .arg(&store)
                .args(["--cluster_name", "jetway-bench"])
                .args(["--cluster", &format!("nats://127.0.0.1:{cluster_port}")])
                .args(["--routes", &routes]);
            let log = dir.join(format!("nats-server-{name}.log"));
            let proc = Proc::spawn("nats-server (cluster node)", command, log)?;
            nodes.push(ClusterNode {
                name,
                proc,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            });
        }
        let mut cluster = Self { nodes };
        for node in &mut cluster.nodes {
            wait_listening(&mut node.proc, node.addr)
                .await
                .with_context(|| format!("cluster node {}", node.name))?;
        }
        cluster.wait_jetstream().await?;
        Ok(cluster)
    }

    /// Polls `$JS.API.STREAM.NAMES` through every node until each answers without an error (no
    /// answer, or `{"error": …}` such as 503 "JetStream not ready", while there is no meta
    /// leader), within [`CLUSTER_READY_TIMEOUT`].
    async fn wait_jetstream(&mut self) -> Result<()> {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        for i in 0..self.nodes.len() {
            let url = self.nodes[i].url();
            let client = async_nats::connect(&url)
                .await
                .with_context(|| format!("cannot connect to cluster node {url}"))?;
            loop {
                for node in &mut self.nodes {
                    node.proc.ensure_running()?;
                }
                let asked = tokio::time::timeout(
                    READY_REQUEST_TIMEOUT,
                    client.request("$JS.API.STREAM.NAMES", "{}".into()),
                )
                .await;
                let last = match asked {
                    Ok(Ok(reply)) => {
                        match serde_json::from_slice::<serde_json::Value>(&reply.payload) {
                            Ok(answer) if answer.get("error").is_none() => break,
                            Ok(answer) => answer["error"].to_string(),
                            Err(err) => format!("not JSON: {err}"),
                        }
                    }
                    Ok(Err(err)) => err.to_string(),
                    Err(_) => format!("no answer within {READY_REQUEST_TIMEOUT:?}"),
                };
                if Instant::now() > deadline {
                    bail!(
                        "JetStream did not answer through cluster node {} ({url}) within \
                         {CLUSTER_READY_TIMEOUT:?}; last: {last}",
                        self.nodes[i].name
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Every node's URL, comma-separated (jetway's `--nats-url`).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(ClusterNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.proc.pid()).collect()
    }
}

/// The jetway binary under test, on a free port, without client authentication.
pub struct Gateway {
    pub proc: Proc,
    pub addr: SocketAddr,
}

/// How to start the gateway.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub bin: PathBuf,
    pub nats_url: String,
    pub log_dir: PathBuf,
    /// Extra `JETWAY_*` settings (`--gateway-env`), for experiments.
    pub env: Vec<(String, String)>,
}

impl Gateway {
    /// Starts the gateway, its output going to `<log_dir>/<log_name>`.
    pub async fn start(spec: &GatewaySpec, log_name: &str) -> Result<Self> {
        let (bin, nats_url) = (&spec.bin, spec.nats_url.as_str());
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = Command::new(bin);
        command
            .args(["--no-auth", "--listen", &addr.to_string()])
            .args(["--nats-url", nats_url, "--log", "warn"]);
        // Only the settings here: no configuration leaks in from the caller's environment.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("JETWAY_") {
                command.env_remove(name);
            }
        }
        // Per-principal rate limits off: the bench measures capacity, not the limiter (with
        // --no-auth every request is one principal). Set through the environment so that a
        // gateway without these settings still starts.
        command
            .env("JETWAY_RATE_PUBLISH", "0")
            .env("JETWAY_RATE_FETCH", "0");
        // Room for the idle-socket scenarios (one principal holds every socket).
        command
            .env("JETWAY_MAX_CONNECTIONS", MAX_CONNECTIONS.to_string())
            .env(
                "JETWAY_MAX_CONNECTIONS_PER_PRINCIPAL",
                MAX_CONNECTIONS.to_string(),
            );
        // Push subscriptions deliver to the bench's own receiver on the loopback interface:
        // admitted only when named (host names reach public addresses only) and, being plain
        // HTTP, only with `http://` allowed.
        command
            .env("JETWAY_PUSH_ALLOW", "127.0.0.1")
            .env("JETWAY_PUSH_ALLOW_HTTP", "true");
        for (name, value) in &spec.env {
            command.env(name, value);
        }
        let mut proc = Proc::spawn("jetway", command, spec.log_dir.join(log_name))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            proc.ensure_running()?;
            if let Ok((status, _)) = http::request(addr, "GET", "/healthz", None).await
                && status.is_success()
            {
                return Ok(Self { proc, addr });
            }
            if Instant::now() > deadline {
                bail!("jetway did not answer /healthz on {addr} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Remote ports of the TCP connections a process holds: its socket inodes
/// (`/proc/<pid>/fd/* -> socket:[inode]`) looked up in `/proc/net/tcp` (IPv4; the bench only
/// uses the loopback interface).
pub fn peer_ports(pid: u32) -> Result<Vec<u16>> {
    let fd_dir = format!("/proc/{pid}/fd");
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(&fd_dir).with_context(|| format!("cannot read {fd_dir}"))? {
        let Ok(target) = entry.and_then(|e| std::fs::read_link(e.path())) else {
            continue;
        };
        if let Some(inode) = target
            .to_string_lossy()
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").context("cannot read /proc/net/tcp")?;
    // `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode`
    Ok(table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (remote, inode) = (fields.get(2)?, fields.get(9)?);
            if !inodes.contains(*inode) {
                return None;
            }
            let (_, port) = remote.split_once(':')?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect())
}

/// Clock ticks per second of `/proc/<pid>/stat` CPU times.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU time of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) may contain spaces; fields after its ')' are plain.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected {path}: {stat}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime field 14, stime field 15.
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no field {n} in {path}"))
    };
    Ok(field(14)? + field(15)?)
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix(':')?;
            value.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .with_context(|| format!("no {key} in {path}"))
}

/// CPU time spent by the whole machine outside idle and I/O wait, in clock ticks (all cores).
pub fn machine_busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| {
            v.parse()
                .with_context(|| format!("unexpected /proc/stat line: {line}"))
        })
        .collect::<Result<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Ok(total.saturating_sub(idle))
}

/// The 1-minute load average, to tell a busy machine from a slow gateway.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// HAProxy in front of several gateways, configured as `make cluster` configures it (round
/// robin, health checks on `/readyz`, a request whose replica refused the connection or died
/// without answering sent to another), on a free port.
pub struct HaProxy {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl HaProxy {
    pub async fn start(backends: &[SocketAddr], log_dir: &Path) -> Result<Self> {
        let bin = haproxy_binary()?;
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, backend)| format!("    server jetway-{} {backend} check\n", i + 1))
            .collect();
        let config = log_dir.join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n    maxconn 4096\n\n\
                 defaults\n    mode http\n    timeout connect 2s\n    timeout client 65s\n    \
                 timeout server 65s\n    timeout http-keep-alive 10s\n    retries 3\n    \
                 option redispatch 1\n    retry-on conn-failure empty-response\n\n\
                 frontend jetway\n    bind {addr}\n    default_backend jetway\n\n\
                 backend jetway\n    balance roundrobin\n    option httpchk GET /readyz\n    \
                 http-check expect status 200\n    default-server inter 1s fall 2 rise 2\n\
                 {servers}"
            ),
        )
        .with_context(|| format!("cannot write {}", config.display()))?;
        let mut command = Command::new(&bin);
        command.arg("-db").arg("-f").arg(&config);
        let mut proc = Proc::spawn("haproxy", command, log_dir.join("haproxy.log"))?;
        wait_listening(&mut proc, addr).await?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            proc.ensure_running()?;
            if let Ok((status, _)) = http::request(addr, "GET", "/readyz", None).await
                && status.is_success()
            {
                return Ok(Self { proc, addr });
            }
            if Instant::now() > deadline {
                bail!("jetway was not ready through HAProxy on {addr} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `HAPROXY_BIN`, else `haproxy` on the PATH, else Debian's `/usr/sbin/haproxy`.
fn haproxy_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("HAPROXY_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("haproxy"))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    match on_path {
        Some(bin) => Ok(bin),
        None if Path::new("/usr/sbin/haproxy").is_file() => Ok("/usr/sbin/haproxy".into()),
        None => bail!("haproxy not found: run scripts/install-tools.sh cluster or set HAPROXY_BIN"),
    }
}
