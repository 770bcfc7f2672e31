//! Results: one [`Scenario`] per row, the targets checked against them, the machine, and their
//! rendering as a Markdown table and as JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::load::{CpuSplit, Measurement};

/// CPU used by other processes (percent of one core) above which a row is marked noisy.
pub const NOISE_PCT: f64 = 10.0;

/// One measured row.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    /// `jetway` (HTTP through the gateway) or `direct` (async-nats straight to nats-server).
    pub path: &'static str,
    /// What one request is, e.g. `POST /v1/publish/bench.x, 128 B`.
    pub what: String,
    /// Concurrent workers (or, for pipelined publishing, acks in flight).
    pub concurrency: usize,
    pub requests: u64,
    pub messages: u64,
    pub seconds: f64,
    pub req_per_s: f64,
    pub msgs_per_s: f64,
    /// Payload bytes of one message (0 when the row carries none).
    pub payload_bytes: usize,
    /// Payload throughput, msgs/s × payload bytes, in MB/s (10^6 bytes).
    pub mb_per_s: f64,
    /// Latency of one request; `None` for a row that is one long operation (a replay).
    pub p50_us: Option<u32>,
    pub p99_us: Option<u32>,
    pub cpu: CpuSplit,
    /// Anything that qualifies the row (a consumer that drained its stream early).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Other processes used more than [`NOISE_PCT`] of a core during the window.
    pub noisy: bool,
    /// The target this row is judged by, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<bool>,
}

impl Scenario {
    pub fn new(
        name: &str,
        path: &'static str,
        what: String,
        concurrency: usize,
        m: &Measurement,
    ) -> Self {
        Self {
            name: name.to_owned(),
            path,
            what,
            concurrency,
            requests: m.requests,
            messages: m.messages,
            seconds: m.elapsed.as_secs_f64(),
            req_per_s: m.req_per_s(),
            msgs_per_s: m.msgs_per_s(),
            payload_bytes: 0,
            mb_per_s: 0.0,
            p50_us: (!m.latencies_us.is_empty()).then(|| m.percentile_us(0.50)),
            p99_us: (!m.latencies_us.is_empty()).then(|| m.percentile_us(0.99)),
            cpu: m.cpu,
            note: None,
            noisy: m.cpu.other_pct > NOISE_PCT,
            ratio: None,
            target: None,
            pass: None,
        }
    }
}

impl Scenario {
    /// Sets the payload size of each message, for the MB/s column.
    pub fn payload(mut self, bytes: usize) -> Self {
        self.payload_bytes = bytes;
        self.mb_per_s = self.msgs_per_s * bytes as f64 / 1e6;
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Gateway (and nats-server) memory held by many idle WebSocket connections.
#[derive(Debug, Clone, Serialize)]
pub struct SocketMemory {
    pub name: String,
    /// The URL path each socket opened.
    pub path: String,
    pub sockets: usize,
    /// Client tasks connecting at once.
    pub connect_concurrency: usize,
    /// From the first connect until every socket was open (and, for live-tail sockets, had
    /// received `caught_up`).
    pub open_s: f64,
    /// Gateway `VmRSS` before the first socket and once all were open and it was stable.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// (after − before) ÷ sockets.
    pub bytes_per_socket: f64,
    /// The same for nats-server (the ordered consumers of live-tail sockets live there).
    pub nats_rss_before_kib: u64,
    pub nats_rss_after_kib: u64,
    pub nats_bytes_per_socket: f64,
    /// CPU over a few seconds with every socket open and idle.
    pub idle_cpu: CpuSplit,
    /// Seconds from asking every socket to close until the gateway counted none.
    pub close_s: f64,
    /// JetStream consumers on the stream with every socket open (live-tail sockets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A target: a number computed from two rows and the bound it must meet.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    /// The row it is reported on.
    pub scenario: String,
    /// `None` when a row it needs did not run or failed.
    pub value: Option<f64>,
    pub unit: &'static str,
    pub target: String,
    /// The bound `value` is compared with (`None` when reported without a target).
    pub bound: Option<f64>,
    /// `None` for a number that is reported without a target.
    pub pass: Option<bool>,
    /// A row it needs was measured while other processes used the CPU.
    pub noisy: bool,
}

impl Check {
    /// `value` must be at least `min` (`value` from the rows when both ran).
    pub fn at_least(name: &str, scenario: &str, value: Option<f64>, min: f64) -> Self {
        Self {
            name: name.to_owned(),
            scenario: scenario.to_owned(),
            value,
            unit: "",
            target: format!("≥ {min}"),
            bound: Some(min),
            pass: Some(value.is_some_and(|v| v >= min)),
            noisy: false,
        }
    }

    /// `value` must be at most `max`.
    pub fn at_most(
        name: &str,
        scenario: &str,
        value: Option<f64>,
        max: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            name: name.to_owned(),
            scenario: scenario.to_owned(),
            value,
            unit,
            target: format!("≤ {max} {unit}").trim_end().to_owned(),
            bound: Some(max),
            pass: Some(value.is_some_and(|v| v <= max)),
            noisy: false,
        }
    }

    /// A number reported next to the targets, without a bound.
    pub fn report_only(name: &str, scenario: &str, value: Option<f64>) -> Self {
        Self {
            name: name.to_owned(),
            scenario: scenario.to_owned(),
            value,
            unit: "",
            target: "none".to_owned(),
            bound: None,
            pass: None,
            noisy: false,
        }
    }

    /// Marks the check noisy when any of `rows` is.
    pub fn noisy_if<'a>(mut self, mut rows: impl Iterator<Item = Option<&'a Scenario>>) -> Self {
        self.noisy = rows.any(|row| row.is_some_and(|r| r.noisy));
        self
    }

    fn verdict(&self) -> &'static str {
        match (self.value, self.pass, self.noisy) {
            (None, _, _) => "NOT RUN",
            (Some(_), None, false) => "reported",
            (Some(_), None, true) => "reported (noisy)",
            (Some(_), Some(true), false) => "PASS",
            (Some(_), Some(false), false) => "MISS",
            (Some(_), Some(true), true) => "PASS (noisy)",
            (Some(_), Some(false), true) => "MISS (noisy)",
        }
    }

    /// Two decimals, or three when two would print the bound itself for a value on the other
    /// side of it (0.698 is "0.698", not "0.70", against ≥ 0.7).
    fn value_text(&self) -> String {
        let Some(v) = self.value else {
            return "n/a".to_owned();
        };
        let two = format!("{v:.2}");
        let ambiguous = self
            .bound
            .is_some_and(|b| two.parse::<f64>().is_ok_and(|r| (r - b).abs() < 1e-9) && v != b);
        let text = if ambiguous { format!("{v:.3}") } else { two };
        format!("{text} {}", self.unit).trim_end().to_owned()
    }
}

/// The machine and software the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub nats_server: String,
    pub store_fs: String,
    pub date: String,
    /// 1-minute load average before the gateway started.
    pub load_average: Option<f64>,
    /// The commit the gateway was built from, and any uncommitted changes to its source.
    pub source: String,
}

impl Machine {
    pub fn probe(nats_server_bin: &Path, store_dir: &Path, workspace: &Path) -> Self {
        let nproc = std::thread::available_parallelism().map_or(0, usize::from);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines().find_map(|l| {
                    l.strip_prefix("model name")?
                        .split_once(':')
                        .map(|(_, v)| v.trim().to_owned())
                })
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |k| format!("Linux {}", k.trim()));
        let nats_server = command_output(Command::new(nats_server_bin).arg("--version"))
            .map(|v| v.trim_start_matches("nats-server:").trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let store_fs = command_output(Command::new("df").arg("--output=fstype").arg(store_dir))
            .and_then(|out| out.lines().last().map(|l| l.trim().to_owned()))
            .unwrap_or_else(|| "unknown".to_owned());
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| "unknown".to_owned());
        Self {
            nproc,
            cpu_model,
            kernel,
            nats_server,
            store_fs,
            date,
            load_average: crate::procs::load_average(),
            source: source_state(workspace),
        }
    }
}

/// `abc1234`, or `abc1234 + uncommitted changes in src/x.rs, ...` (read-only git calls: no
/// optional locks, so that the index is not refreshed).
fn source_state(workspace: &Path) -> String {
    let git = |args: &[&str]| {
        command_output(
            Command::new("git")
                .arg("--no-optional-locks")
                .arg("-C")
                .arg(workspace)
                .args(args),
        )
    };
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown (not a git checkout)".to_owned();
    };
    let changed: Vec<String> = git(&["status", "--porcelain", "--", "src", "Cargo.toml"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().last().map(str::to_owned))
        .collect();
    if changed.is_empty() {
        commit
    } else {
        format!("{commit} + uncommitted changes in {}", changed.join(", "))
    }
}

fn command_output(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Resident memory of the gateway.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GatewayMemory {
    /// `VmRSS` right after start-up, before any load.
    pub idle_rss_kib: u64,
    /// `VmHWM` (peak resident set) after every scenario.
    pub peak_rss_kib: u64,
}

/// A scenario that did not complete.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub name: String,
    pub error: String,
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub payload_bytes: usize,
    pub stream: String,
    pub scenarios: Vec<Scenario>,
    /// Idle WebSocket connections and the memory they hold.
    pub sockets: Vec<SocketMemory>,
    /// Live fan-out runs.
    pub fanouts: Vec<crate::fanout::Fanout>,
    /// Extra gateway settings given with `--gateway-env` (none for comparable results).
    pub gateway_env: Vec<String>,
    pub checks: Vec<Check>,
    pub failures: Vec<Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_memory: Option<GatewayMemory>,
    /// The nats-server cluster the `r3` rows ran on, when they ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

impl Report {
    /// Copies each check onto the row it is about.
    pub fn attach_checks(&mut self) {
        for check in &self.checks {
            if let Some(row) = self.scenarios.iter_mut().find(|s| s.name == check.scenario) {
                row.ratio = check.value;
                row.target = Some(format!("{}: {}", check.name, check.target));
                row.pass = check.pass;
            }
        }
    }

    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "## jetway-bench, {}\n", m.date);
        let _ = writeln!(
            out,
            "Machine: {} cores ({}), {}; nats-server {}; jetway built from {}; stream `{}` (file \
             storage, store on {}); \
             {} B payloads unless the row says otherwise; {} s warm-up + {} s measured per \
             scenario (replays: a warm-up read, then whole passes from sequence 1 until the measured \
             time is spent). \
             The load tool runs on the same cores as jetway and nats-server.\n",
            m.nproc,
            m.cpu_model,
            m.kernel,
            m.nats_server,
            m.source,
            self.stream,
            m.store_fs,
            self.payload_bytes,
            self.warmup_s,
            self.duration_s
        );
        if let Some(cluster) = &self.cluster {
            let _ = writeln!(
                out,
                "The `r3` rows ran on an R3 stream `{}` (its consumers R3 too) of a throwaway \
                 cluster started after the other rows, with the single server stopped: {cluster}.\n",
                self.stream
            );
        }
        if !self.gateway_env.is_empty() {
            let _ = writeln!(
                out,
                "**Gateway started with extra settings:** `{}` (not comparable with default \
                 runs).\n",
                self.gateway_env.join("`, `")
            );
        }
        out.push_str(
            "| scenario | path | request | c | msgs/s | MB/s | req/s | p50 ms | p99 ms | CPU jetway | CPU nats-server | CPU load tool | CPU other |\n\
             |---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for s in &self.scenarios {
            let name = if s.noisy {
                format!("{} (noisy)", s.name)
            } else {
                s.name.clone()
            };
            let what = match &s.note {
                Some(note) => format!("{} ({note})", s.what),
                None => s.what.clone(),
            };
            let ms = |us: Option<u32>| {
                us.map_or_else(
                    || "–".to_owned(),
                    |us| format!("{:.3}", f64::from(us) / 1000.0),
                )
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% | {:.0}% | {:.0}% | {:.0}% |",
                name,
                s.path,
                what,
                s.concurrency,
                if s.messages == 0 {
                    "–".to_owned()
                } else {
                    thousands(s.msgs_per_s)
                },
                if s.payload_bytes == 0 {
                    "–".to_owned()
                } else {
                    format!("{:.1}", s.mb_per_s)
                },
                if s.req_per_s < 10.0 {
                    format!("{:.2}", s.req_per_s)
                } else {
                    thousands(s.req_per_s)
                },
                ms(s.p50_us),
                ms(s.p99_us),
                s.cpu.gateway_pct,
                s.cpu.nats_server_pct,
                s.cpu.load_tool_pct,
                s.cpu.other_pct,
            );
        }
        for f in &self.failures {
            let _ = writeln!(
                out,
                "| {} | FAILED: {} | | | | | | | | | | | |",
                f.name,
                one_line(&f.error)
            );
        }
        let _ = writeln!(
            out,
            "\nCPU is the share of one core over the measured window ({}% = every core); \
             \"other\" is the rest of the machine (1-minute load average before the run: {}); \
             a row is marked noisy when other processes used more than {NOISE_PCT}% during it: \
             run again on a quiet machine.\n",
            m.nproc * 100,
            m.load_average
                .map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"))
        );
        if !self.sockets.is_empty() {
            out.push_str(
                "| idle sockets | path | sockets | JetStream consumers | opened in | jetway RSS before → after | jetway per socket | nats-server per socket | idle CPU jetway | idle CPU nats-server | closed in |\n\
                 |---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
            );
            for m in &self.sockets {
                let name = match &m.note {
                    Some(note) => format!("{} ({note})", m.name),
                    None => m.name.clone(),
                };
                let _ = writeln!(
                    out,
                    "| {} | `{}` | {} | {} | {:.1} s | {:.1} → {:.1} MiB | {:.1} KiB | {:.1} KiB | {:.0}% | {:.0}% | {:.1} s |",
                    name,
                    m.path,
                    thousands(m.sockets as f64),
                    m.consumers
                        .map_or_else(|| "–".to_owned(), |c| thousands(c as f64)),
                    m.open_s,
                    m.rss_before_kib as f64 / 1024.0,
                    m.rss_after_kib as f64 / 1024.0,
                    m.bytes_per_socket / 1024.0,
                    m.nats_bytes_per_socket / 1024.0,
                    m.idle_cpu.gateway_pct,
                    m.idle_cpu.nats_server_pct,
                    m.close_s,
                );
            }
            out.push_str(
                "\nPer socket = (VmRSS with every socket open and idle, once stable − VmRSS before the \
                 first) ÷ sockets. Idle CPU is over a few seconds with all of them open.\n\n",
            );
        }
        if !self.fanouts.is_empty() {
            out.push_str(
                "| live fan-out | sockets | JetStream consumers | published/s | frames/s delivered | delivered / expected | CPU jetway | CPU nats-server | CPU load tool | jetway µs/frame | nats-server µs/frame | publish → receipt p50 | p99 | max | jetway RSS | nats-server RSS |\n\
                 |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
            );
            for f in &self.fanouts {
                let noisy = if f.cpu.other_pct > NOISE_PCT {
                    " (noisy)"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "| {}{} | {} | {} | {} | {} | {} / {} | {:.0}% | {:.0}% | {:.0}% | {:.1} | {:.2} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MiB | {:.1} MiB |",
                    f.name,
                    noisy,
                    thousands(f.sockets as f64),
                    f.consumers,
                    f.rate,
                    thousands(f.frames_per_s),
                    thousands(f.frames as f64),
                    thousands(f.expected_frames as f64),
                    f.cpu.gateway_pct,
                    f.cpu.nats_server_pct,
                    f.cpu.load_tool_pct,
                    f.gateway_us_per_frame,
                    f.nats_server_us_per_frame,
                    f.p50_ms,
                    f.p99_ms,
                    f.max_ms,
                    f.gateway_rss_kib as f64 / 1024.0,
                    f.nats_server_rss_kib as f64 / 1024.0,
                );
            }
            out.push_str(
                "\nEach message carries its publish time; publish → receipt is measured by the \
                 reading client for every frame of a message published in the window. CPU per \
                 frame = CPU time over the window ÷ frames of the window.\n\n",
            );
        }
        out.push_str("| target | measured | target | result |\n|---|--:|---|---|\n");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                c.name,
                c.value_text(),
                c.target,
                c.verdict()
            );
        }
        if let Some(mem) = self.gateway_memory {
            let _ = writeln!(
                out,
                "\nGateway memory: {:.1} MiB resident when idle after start (VmRSS), {:.1} MiB peak \
                 (VmHWM) after the throughput scenarios (the idle sockets run on gateways of their \
                 own, above).",
                mem.idle_rss_kib as f64 / 1024.0,
                mem.peak_rss_kib as f64 / 1024.0
            );
        }
        out
    }

    /// Writes `latest.md` and `latest.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let md = dir.join("latest.md");
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("cannot write {}", md.display()))?;
        let json = dir.join("latest.json");
        let text = serde_json::to_string_pretty(self).context("cannot encode the report")?;
        std::fs::write(&json, text + "\n")
            .with_context(|| format!("cannot write {}", json.display()))?;
        Ok(())
    }
}

/// `123456.7` → `123,457`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn one_line(text: &str) -> String {
    let flat: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|");
    if flat.chars().count() > 300 {
        flat.chars().take(300).collect::<String>() + "..."
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(225_431.6), "225,432");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn checks_judge_their_bound() {
        assert_eq!(Check::at_least("r", "s", Some(0.7), 0.7).pass, Some(true));
        assert_eq!(Check::at_least("r", "s", Some(0.69), 0.7).pass, Some(false));
        assert_eq!(Check::at_least("r", "s", None, 0.7).pass, Some(false));
        assert_eq!(
            Check::at_most("l", "s", Some(0.3), 0.3, "ms").pass,
            Some(true)
        );
        assert_eq!(
            Check::report_only("r", "s", Some(0.4)).verdict(),
            "reported"
        );
        assert_eq!(
            Check::at_least("r", "s", Some(0.6986), 0.7).value_text(),
            "0.699"
        );
        assert_eq!(
            Check::at_least("r", "s", Some(0.77), 0.7).value_text(),
            "0.77"
        );
        assert_eq!(
            Check::at_most("l", "s", None, 0.3, "ms").verdict(),
            "NOT RUN"
        );
    }
}
