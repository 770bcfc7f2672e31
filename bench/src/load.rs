//! The load generator: closed-loop workers (each sends its next request as soon as the previous
//! one is answered) for a fixed duration after a warm-up, per-request latencies, and the CPU used
//! by each process during the measured window.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::procs;

/// Warm-up (load applied, nothing recorded) then the measured window.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub duration: Duration,
}

/// One operation of a load worker (an HTTP request, a publish awaiting its ack, ...). Returns
/// how many messages it carried. An error ends the scenario.
pub trait Op: Send + 'static {
    fn call(&mut self) -> impl Future<Output = Result<u64>> + Send;

    /// True once a call found nothing left to do (a consumer drained its stream): that call is
    /// not recorded and the worker stops.
    fn exhausted(&self) -> bool {
        false
    }
}

/// What was measured in one scenario's window.
#[derive(Debug)]
pub struct Measurement {
    pub requests: u64,
    pub messages: u64,
    /// From the start of the window to the last recorded completion.
    pub elapsed: Duration,
    /// Latency of each recorded request in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    pub cpu: CpuSplit,
}

impl Measurement {
    /// Operations run one after the other, each carrying `messages` (whole replays): their
    /// durations are the latencies, their sum the elapsed time.
    pub fn passes(durations: &[Duration], messages: u64, cpu: CpuSplit) -> Self {
        let mut latencies_us: Vec<u32> = durations
            .iter()
            .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
            .collect();
        latencies_us.sort_unstable();
        Self {
            requests: durations.len() as u64,
            messages: messages * durations.len() as u64,
            elapsed: durations.iter().sum(),
            latencies_us,
            cpu,
        }
    }

    pub fn req_per_s(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Nearest-rank percentile (`p` in 0..=1).
    pub fn percentile_us(&self, p: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let rank = (p * self.latencies_us.len() as f64).ceil() as usize;
        self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1]
    }
}

/// Records the requests that started inside the measured window.
#[derive(Debug)]
pub struct Recorder {
    from: Instant,
    until: Instant,
    requests: u64,
    messages: u64,
    last_done: Instant,
    latencies_us: Vec<u32>,
}

impl Recorder {
    /// A window that starts after the warm-up, counted from now.
    pub fn new(timing: Timing) -> Self {
        let from = Instant::now() + timing.warmup;
        Self::window(from, from + timing.duration)
    }

    fn window(from: Instant, until: Instant) -> Self {
        Self {
            from,
            until,
            requests: 0,
            messages: 0,
            last_done: from,
            latencies_us: Vec::with_capacity(16 * 1024),
        }
    }

    /// Start of the measured window.
    pub fn from(&self) -> Instant {
        self.from
    }

    /// End of the load: no request starts at or after it.
    pub fn until(&self) -> Instant {
        self.until
    }

    /// Counts a request that started at `began` and completed at `done` (ignored during warm-up).
    pub fn record(&mut self, began: Instant, done: Instant, messages: u64) {
        if began < self.from {
            return;
        }
        self.requests += 1;
        self.messages += messages;
        self.last_done = self.last_done.max(done);
        let micros = done.saturating_duration_since(began).as_micros();
        self.latencies_us
            .push(u32::try_from(micros).unwrap_or(u32::MAX));
    }

    fn merge(&mut self, other: Recorder) {
        self.requests += other.requests;
        self.messages += other.messages;
        self.last_done = self.last_done.max(other.last_done);
        self.latencies_us.extend(other.latencies_us);
    }

    pub fn finish(mut self, cpu: CpuSplit) -> Measurement {
        self.latencies_us.sort_unstable();
        Measurement {
            requests: self.requests,
            messages: self.messages,
            elapsed: self.last_done.saturating_duration_since(self.from),
            latencies_us: self.latencies_us,
            cpu,
        }
    }
}

/// Runs every op in its own task, back to back, for the warm-up and the measured window. The
/// first error aborts the other workers and is returned.
pub async fn closed_loop<O: Op>(
    ops: Vec<O>,
    timing: Timing,
    probe: &CpuProbe,
) -> Result<Measurement> {
    let template = Recorder::new(timing);
    let (from, until) = (template.from(), template.until());
    let cpu = probe.window(from, until);
    let mut workers = JoinSet::new();
    for mut op in ops {
        let mut recorder = Recorder::window(from, until);
        workers.spawn(async move {
            loop {
                let began = Instant::now();
                if began >= until {
                    return Ok::<_, anyhow::Error>(recorder);
                }
                let messages = op.call().await?;
                if op.exhausted() {
                    return Ok(recorder);
                }
                recorder.record(began, Instant::now(), messages);
            }
        });
    }
    let mut total = template;
    while let Some(joined) = workers.join_next().await {
        // On error, dropping `workers` aborts the remaining tasks.
        total.merge(joined.context("a load worker panicked")??);
    }
    Ok(total.finish(cpu.await?))
}

/// CPU used during a window, in percent of one core (200% = both cores of a 2-core machine).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuSplit {
    pub gateway_pct: f64,
    /// Every nats-server process together (the three nodes of a cluster).
    pub nats_server_pct: f64,
    pub load_tool_pct: f64,
    /// Everything else on the machine (other builds and tests): noise when above a few percent.
    pub other_pct: f64,
}

/// Processes whose CPU is summed into one column: the nats-server of a run, or the nodes of a
/// cluster; the gateway, or the replicas and the load balancer in front of them.
#[derive(Debug, Clone, Copy)]
pub struct Pids {
    pids: [u32; Pids::MAX],
    len: usize,
}

impl Pids {
    /// The most processes one column sums: three replicas and HAProxy.
    pub const MAX: usize = 4;

    pub fn one(pid: u32) -> Self {
        Self::of(&[pid])
    }

    /// At most [`Pids::MAX`] of `pids` (the rest is ignored).
    pub fn of(pids: &[u32]) -> Self {
        let mut all = [0; Pids::MAX];
        let len = pids.len().min(all.len());
        all[..len].copy_from_slice(&pids[..len]);
        Self { pids: all, len }
    }

    /// The first (for a single server, the only) one.
    pub fn first(&self) -> u32 {
        self.pids[0]
    }

    fn cpu_ticks(&self) -> Result<u64> {
        self.pids[..self.len]
            .iter()
            .map(|&pid| procs::cpu_ticks(pid))
            .sum()
    }
}

/// Samples the CPU time of the gateway (every replica and the load balancer in front of them),
/// nats-server (every node of a cluster) and this process.
#[derive(Debug, Clone, Copy)]
pub struct CpuProbe {
    pub gateway: Pids,
    pub nats_server: Pids,
    pub clock_ticks: f64,
}

impl CpuProbe {
    fn sample(&self) -> Result<[u64; 4]> {
        Ok([
            self.gateway.cpu_ticks()?,
            self.nats_server.cpu_ticks()?,
            procs::cpu_ticks(std::process::id())?,
            procs::machine_busy_ticks()?,
        ])
    }

    /// Starts measuring now, until [`CpuMark::finish`]: for operations of unknown length.
    pub fn mark(&self) -> Result<CpuMark> {
        Ok(CpuMark {
            probe: *self,
            start: self.sample()?,
            at: Instant::now(),
        })
    }

    /// Measures from `from` to `until` in a background task; await the handle for the split.
    pub fn window(
        &self,
        from: Instant,
        until: Instant,
    ) -> impl Future<Output = Result<CpuSplit>> + use<> {
        let probe = *self;
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(from.into()).await;
            let (start, t0) = (probe.sample()?, Instant::now());
            tokio::time::sleep_until(until.into()).await;
            let (end, t1) = (probe.sample()?, Instant::now());
            Ok(probe.split(start, end, t1.duration_since(t0)))
        });
        let abort = AbortOnDrop(task.abort_handle());
        async move {
            let split = task.await.context("the CPU probe panicked")?;
            drop(abort);
            split
        }
    }
}

impl CpuProbe {
    fn split(&self, start: [u64; 4], end: [u64; 4], elapsed: Duration) -> CpuSplit {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let pct = |i: usize| {
            (end[i].saturating_sub(start[i])) as f64 / self.clock_ticks / seconds * 100.0
        };
        CpuSplit {
            gateway_pct: pct(0),
            nats_server_pct: pct(1),
            load_tool_pct: pct(2),
            other_pct: (pct(3) - pct(0) - pct(1) - pct(2)).max(0.0),
        }
    }
}

/// CPU counters taken at the start of an operation of unknown length.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    probe: CpuProbe,
    start: [u64; 4],
    at: Instant,
}

impl CpuMark {
    /// The CPU split from the mark until now.
    pub fn finish(&self) -> Result<CpuSplit> {
        let end = self.probe.sample()?;
        Ok(self.probe.split(self.start, end, self.at.elapsed()))
    }
}

/// Aborts a background task when the scenario ends early.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
