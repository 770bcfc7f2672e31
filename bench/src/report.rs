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
    pub p50_us: u32,
    pub p99_us: u32,
    pub cpu: CpuSplit,
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
            p50_us: m.percentile_us(0.50),
            p99_us: m.percentile_us(0.99),
            cpu: m.cpu,
            noisy: m.cpu.other_pct > NOISE_PCT,
            ratio: None,
            target: None,
            pass: None,
        }
    }
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
    pub pass: bool,
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
            pass: value.is_some_and(|v| v >= min),
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
            pass: value.is_some_and(|v| v <= max),
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
            (Some(_), true, false) => "PASS",
            (Some(_), false, false) => "MISS",
            (Some(_), true, true) => "PASS (noisy)",
            (Some(_), false, true) => "MISS (noisy)",
        }
    }

    fn value_text(&self) -> String {
        match self.value {
            Some(v) => format!("{v:.2} {}", self.unit).trim_end().to_owned(),
            None => "n/a".to_owned(),
        }
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
}

impl Machine {
    pub fn probe(nats_server_bin: &Path, store_dir: &Path) -> Self {
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
        }
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
    pub checks: Vec<Check>,
    pub failures: Vec<Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_memory: Option<GatewayMemory>,
}

impl Report {
    /// Copies each check onto the row it is about.
    pub fn attach_checks(&mut self) {
        for check in &self.checks {
            if let Some(row) = self.scenarios.iter_mut().find(|s| s.name == check.scenario) {
                row.ratio = check.value;
                row.target = Some(format!("{}: {}", check.name, check.target));
                row.pass = Some(check.pass);
            }
        }
    }

    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "## jetway-bench, {}\n", m.date);
        let _ = writeln!(
            out,
            "Machine: {} cores ({}), {}; nats-server {}; stream `{}` (file storage, store on {}); \
             {} B payloads; {} s warm-up + {} s measured per scenario. The load tool runs on the \
             same cores as jetway and nats-server.\n",
            m.nproc,
            m.cpu_model,
            m.kernel,
            m.nats_server,
            self.stream,
            m.store_fs,
            self.payload_bytes,
            self.warmup_s,
            self.duration_s
        );
        out.push_str(
            "| scenario | path | request | c | msgs/s | req/s | p50 ms | p99 ms | CPU jetway | CPU nats-server | CPU load tool | CPU other |\n\
             |---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for s in &self.scenarios {
            let name = if s.noisy {
                format!("{} (noisy)", s.name)
            } else {
                s.name.clone()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.0}% | {:.0}% | {:.0}% | {:.0}% |",
                name,
                s.path,
                s.what,
                s.concurrency,
                if s.messages == 0 {
                    "–".to_owned()
                } else {
                    thousands(s.msgs_per_s)
                },
                thousands(s.req_per_s),
                f64::from(s.p50_us) / 1000.0,
                f64::from(s.p99_us) / 1000.0,
                s.cpu.gateway_pct,
                s.cpu.nats_server_pct,
                s.cpu.load_tool_pct,
                s.cpu.other_pct,
            );
        }
        for f in &self.failures {
            let _ = writeln!(
                out,
                "| {} | FAILED: {} | | | | | | | | | | |",
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
                 (VmHWM) after all scenarios.",
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
        assert!(Check::at_least("r", "s", Some(0.7), 0.7).pass);
        assert!(!Check::at_least("r", "s", Some(0.69), 0.7).pass);
        assert!(!Check::at_least("r", "s", None, 0.7).pass);
        assert!(Check::at_most("l", "s", Some(0.3), 0.3, "ms").pass);
        assert_eq!(
            Check::at_most("l", "s", None, 0.3, "ms").verdict(),
            "NOT RUN"
        );
    }
}
