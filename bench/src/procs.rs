//! The processes under test: a throwaway nats-server and the jetway release binary, each killed
//! when its handle is dropped, plus what `/proc` tells about them (CPU time, resident memory).

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
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a free port")?;
    Ok(listener.local_addr().context("no local address")?.port())
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
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            proc.ensure_running()?;
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(Self { proc, addr });
            }
            if Instant::now() > deadline {
                bail!("nats-server did not accept connections on {addr} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
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
