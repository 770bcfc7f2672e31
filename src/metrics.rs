//! Process-wide counters and gauges, rendered at `/metrics` in Prometheus text format.
//!
//! Plain atomics: cheap to update on hot paths, no registry. Every metric name is a const here,
//! described once in [`render`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the HTTP latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0,
];

/// One HTTP series: a route template, method and status.
#[derive(Debug, Default)]
struct HttpSeries {
    count: u64,
    sum: f64,
    buckets: [u64; LATENCY_BUCKETS.len()],
}

/// The series of one route template, by method and status.
type RouteSeries = BTreeMap<(&'static str, u16), HttpSeries>;

/// A consumer's health, refreshed on an interval.
#[derive(Debug, Clone)]
pub struct ConsumerGauge {
    pub stream: String,
    pub consumer: String,
    pub num_pending: u64,
    pub num_ack_pending: u64,
    pub num_redelivered: u64,
}

/// The gateway's metrics. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    ws_connections: AtomicI64,
    ws_subscriptions: AtomicI64,
    ws_buffered_bytes: AtomicI64,
    ws_messages_sent: AtomicU64,
    ws_bytes_sent: AtomicU64,
    ws_credit_stalls: AtomicU64,
    sse_connections: AtomicI64,
    sse_messages_sent: AtomicU64,
    ws_idle_disconnects: AtomicU64,
    ws_slow_disconnects: AtomicU64,
    http_connections: AtomicI64,
    http_connections_refused: AtomicU64,
    http_header_timeouts: AtomicU64,
    /// Route template → (method, status) → series. Keyed so that counting a request allocates
    /// nothing once its series exists.
    http: Mutex<BTreeMap<String, RouteSeries>>,
    publishes: Mutex<BTreeMap<String, u64>>,
    fetch_requests: AtomicU64,
    fetched_messages: AtomicU64,
    acks: Mutex<BTreeMap<(String, String), u64>>,
    dead_letters: AtomicU64,
    nats_connected: AtomicI64,
    nats_reconnects: AtomicU64,
    consumers: Mutex<Vec<ConsumerGauge>>,
}

/// A gauge held up while a value lives (a connection, a subscription).
pub struct GaugeGuard {
    metrics: Metrics,
    gauge: fn(&Inner) -> &AtomicI64,
    amount: i64,
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        (self.gauge)(&self.metrics.0).fetch_sub(self.amount, Ordering::Relaxed);
    }
}

impl Metrics {
    fn hold(&self, gauge: fn(&Inner) -> &AtomicI64, amount: i64) -> GaugeGuard {
        gauge(&self.0).fetch_add(amount, Ordering::Relaxed);
        GaugeGuard {
            metrics: self.clone(),
            gauge,
            amount,
        }
    }

    /// One open WebSocket connection, until the guard drops.
    pub fn ws_connection(&self) -> GaugeGuard {
        self.hold(|m| &m.ws_connections, 1)
    }

    /// One active WebSocket subscription, until the guard drops.
    pub fn ws_subscription(&self) -> GaugeGuard {
        self.hold(|m| &m.ws_subscriptions, 1)
    }

    /// Bytes queued for a WebSocket client, until the guard drops (when they were written).
    pub fn ws_buffered(&self, bytes: usize) -> GaugeGuard {
        self.hold(
            |m| &m.ws_buffered_bytes,
            i64::try_from(bytes).unwrap_or(i64::MAX),
        )
    }

    /// One open SSE stream, until the guard drops.
    pub fn sse_connection(&self) -> GaugeGuard {
        self.hold(|m| &m.sse_connections, 1)
    }

    /// One open client TCP connection, until the guard drops (an upgraded one included).
    pub fn http_connection(&self) -> GaugeGuard {
        self.hold(|m| &m.http_connections, 1)
    }

    /// A connection closed at once because `--max-tcp-connections` were open.
    pub fn http_connection_refused(&self) {
        self.0
            .http_connections_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A connection closed because its request head did not arrive within
    /// `--header-read-timeout`.
    pub fn http_header_timeout(&self) {
        self.0.http_header_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ws_sent(&self, bytes: usize) {
        self.0.ws_messages_sent.fetch_add(1, Ordering::Relaxed);
        self.0
            .ws_bytes_sent
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn ws_credit_stall(&self) {
        self.0.ws_credit_stalls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sse_sent(&self) {
        self.0.sse_messages_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ws_slow_disconnect(&self) {
        self.0.ws_slow_disconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ws_idle_disconnect(&self) {
        self.0.ws_idle_disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// One HTTP request answered.
    pub fn http_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let method = static_method(method);
        let Ok(mut http) = self.0.http.lock() else {
            return;
        };
        let per_route = match http.get_mut(route) {
            Some(per_route) => per_route,
            None => http.entry(route.to_owned()).or_default(),
        };
        let series = per_route.entry((method, status)).or_default();
        let secs = elapsed.as_secs_f64();
        series.count += 1;
        series.sum += secs;
        for (bucket, bound) in series.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
    }

    /// A publish outcome: `stored`, `duplicate`, or the error code.
    pub fn publish(&self, outcome: &str) {
        if let Ok(mut map) = self.0.publishes.lock() {
            match map.get_mut(outcome) {
                Some(count) => *count += 1,
                None => {
                    map.insert(outcome.to_owned(), 1);
                }
            }
        }
    }

    /// A fetch answered with `messages` messages.
    pub fn fetched(&self, messages: usize) {
        self.0.fetch_requests.fetch_add(1, Ordering::Relaxed);
        self.0
            .fetched_messages
            .fetch_add(messages as u64, Ordering::Relaxed);
    }

    /// An ack outcome by action (`ack`, `nak`, `term`, `progress`): `confirmed` or the error code.
    pub fn ack(&self, action: &str, outcome: &str) {
        if let Ok(mut map) = self.0.acks.lock() {
            *map.entry((action.to_owned(), outcome.to_owned()))
                .or_default() += 1;
        }
    }

    pub fn dead_lettered(&self) {
        self.0.dead_letters.fetch_add(1, Ordering::Relaxed);
    }

    /// The NATS connection went up (`true`) or down.
    pub fn nats_connection(&self, up: bool) {
        let was = self.0.nats_connected.swap(i64::from(up), Ordering::Relaxed);
        if up && was == 0 {
            self.0.nats_reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Replaces the consumer gauges.
    pub fn set_consumers(&self, gauges: Vec<ConsumerGauge>) {
        if let Ok(mut consumers) = self.0.consumers.lock() {
            *consumers = gauges;
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = &self.0;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: i128| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let g = |a: &AtomicI64| i128::from(a.load(Ordering::Relaxed));
        let c = |a: &AtomicU64| i128::from(a.load(Ordering::Relaxed));
        metric(
            "jetway_http_connections",
            "gauge",
            "Open client TCP connections (WebSocket and SSE included).",
            g(&m.http_connections),
        );
        metric(
            "jetway_http_connections_refused_total",
            "counter",
            "Connections closed at once because --max-tcp-connections were open.",
            c(&m.http_connections_refused),
        );
        metric(
            "jetway_http_header_timeouts_total",
            "counter",
            "Connections closed because no complete request head arrived within --header-read-timeout (idle kept-alive ones included).",
            c(&m.http_header_timeouts),
        );
        metric(
            "jetway_ws_connections",
            "gauge",
            "Open WebSocket connections.",
            g(&m.ws_connections),
        );
        metric(
            "jetway_ws_subscriptions",
            "gauge",
            "Active WebSocket subscriptions.",
            g(&m.ws_subscriptions),
        );
        metric(
            "jetway_ws_buffered_bytes",
            "gauge",
            "Bytes queued in the gateway for WebSocket clients (bounded per socket by --ws-max-buffered-bytes).",
            g(&m.ws_buffered_bytes),
        );
        metric(
            "jetway_ws_messages_sent_total",
            "counter",
            "Messages sent to WebSocket clients.",
            c(&m.ws_messages_sent),
        );
        metric(
            "jetway_ws_bytes_sent_total",
            "counter",
            "Bytes of frames sent to WebSocket clients.",
            c(&m.ws_bytes_sent),
        );
        metric(
            "jetway_ws_credit_stalls_total",
            "counter",
            "Times a subscription waited for the client to grant credit.",
            c(&m.ws_credit_stalls),
        );
        metric(
            "jetway_sse_connections",
            "gauge",
            "Open Server-Sent Events streams.",
            g(&m.sse_connections),
        );
        metric(
            "jetway_sse_messages_sent_total",
            "counter",
            "Messages sent on SSE streams.",
            c(&m.sse_messages_sent),
        );
        metric(
            "jetway_ws_idle_disconnects_total",
            "counter",
            "WebSocket connections closed because the client sent nothing (not even pongs) for --ws-idle-timeout.",
            c(&m.ws_idle_disconnects),
        );
        metric(
            "jetway_ws_slow_disconnects_total",
            "counter",
            "WebSocket connections closed because a write to the client stalled for --ws-idle-timeout.",
            c(&m.ws_slow_disconnects),
        );
        metric(
            "jetway_fetch_requests_total",
            "counter",
            "Fetch requests answered.",
            c(&m.fetch_requests),
        );
        metric(
            "jetway_fetched_messages_total",
            "counter",
            "Messages delivered by fetches.",
            c(&m.fetched_messages),
        );
        metric(
            "jetway_dead_letters_total",
            "counter",
            "Dead-letter copies published by this replica (duplicates across replicas included).",
            c(&m.dead_letters),
        );
        metric(
            "jetway_nats_connected",
            "gauge",
            "1 while the NATS connection is up.",
            g(&m.nats_connected),
        );
        metric(
            "jetway_nats_connects_total",
            "counter",
            "NATS connections established (the first one and every reconnect).",
            c(&m.nats_reconnects),
        );
        render_labelled(&mut out, m);
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The labelled families: HTTP requests, publishes, acks, consumers.
fn render_labelled(out: &mut String, m: &Inner) {
    if let Ok(http) = m.http.lock() {
        let _ = writeln!(
            out,
            "# HELP jetway_http_requests_total HTTP requests by route template, method and status."
        );
        let _ = writeln!(out, "# TYPE jetway_http_requests_total counter");
        for (route, per_route) in http.iter() {
            for ((method, status), series) in per_route {
                let _ = writeln!(
                    out,
                    "jetway_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {}",
                    escape(route),
                    series.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP jetway_http_request_duration_seconds Time to the response head, by route template and method."
        );
        let _ = writeln!(out, "# TYPE jetway_http_request_duration_seconds histogram");
        let mut merged: BTreeMap<(&str, &str), HttpSeries> = BTreeMap::new();
        for ((route, method), series) in http.iter().flat_map(|(route, per_route)| {
            per_route.iter().map(move |((m, _), s)| ((route, *m), s))
        }) {
            let entry = merged.entry((route.as_str(), method)).or_default();
            entry.count += series.count;
            entry.sum += series.sum;
            for (total, bucket) in entry.buckets.iter_mut().zip(series.buckets) {
                *total += bucket;
            }
        }
        for ((route, method), series) in merged {
            let labels = format!("route=\"{}\",method=\"{method}\"", escape(route));
            for (bound, count) in LATENCY_BUCKETS.iter().zip(series.buckets) {
                let _ = writeln!(
                    out,
                    "jetway_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "jetway_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                series.count
            );
            let _ = writeln!(
                out,
                "jetway_http_request_duration_seconds_sum{{{labels}}} {}",
                series.sum
            );
            let _ = writeln!(
                out,
                "jetway_http_request_duration_seconds_count{{{labels}}} {}",
                series.count
            );
        }
    }
    if let Ok(publishes) = m.publishes.lock() {
        let _ = writeln!(
            out,
            "# HELP jetway_publishes_total Published messages by outcome: stored, duplicate, or the error code."
        );
        let _ = writeln!(out, "# TYPE jetway_publishes_total counter");
        for (outcome, count) in publishes.iter() {
            let _ = writeln!(
                out,
                "jetway_publishes_total{{outcome=\"{}\"}} {count}",
                escape(outcome)
            );
        }
    }
    if let Ok(acks) = m.acks.lock() {
        let _ = writeln!(
            out,
            "# HELP jetway_acks_total Acks by action and outcome: confirmed, or the error code."
        );
        let _ = writeln!(out, "# TYPE jetway_acks_total counter");
        for ((action, outcome), count) in acks.iter() {
            let _ = writeln!(
                out,
                "jetway_acks_total{{action=\"{action}\",outcome=\"{}\"}} {count}",
                escape(outcome)
            );
        }
    }
    if let Ok(consumers) = m.consumers.lock() {
        for (name, help, pick) in [
            (
                "jetway_consumer_num_pending",
                "Messages not yet delivered (lag) of consumers created through jetway.",
                0,
            ),
            (
                "jetway_consumer_num_ack_pending",
                "Messages delivered and awaiting an ack.",
                1,
            ),
            (
                "jetway_consumer_num_redelivered",
                "Messages delivered more than once and not yet acked.",
                2,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for c in consumers.iter() {
                let value = [c.num_pending, c.num_ack_pending, c.num_redelivered][pick];
                let _ = writeln!(
                    out,
                    "{name}{{stream=\"{}\",consumer=\"{}\"}} {value}",
                    escape(&c.stream),
                    escape(&c.consumer)
                );
            }
        }
    }
}

/// Refreshes the consumer gauges of consumers created through jetway, until shutdown.
pub fn spawn_consumer_gauges(
    nats: crate::nats::Nats,
    every: Duration,
    max: usize,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if max == 0 {
        return;
    }
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match collect_consumer_gauges(&nats, max).await {
                Ok(gauges) => nats.metrics().set_consumers(gauges),
                Err(err) => tracing::debug!(error = %err, "consumer gauges not refreshed"),
            }
        }
    });
}

async fn collect_consumer_gauges(
    nats: &crate::nats::Nats,
    max: usize,
) -> Result<Vec<ConsumerGauge>, crate::error::ApiError> {
    use crate::nats::consumers::MANAGED_METADATA_KEY;
    let mut gauges = Vec::new();
    for stream in nats.list_streams().await? {
        if stream.state.consumer_count == 0 {
            continue;
        }
        for consumer in nats.list_consumers(&stream.config.name).await? {
            if !consumer.config.metadata.contains_key(MANAGED_METADATA_KEY) {
                continue;
            }
            if gauges.len() >= max {
                return Ok(gauges);
            }
            gauges.push(ConsumerGauge {
                stream: consumer.stream_name.clone(),
                consumer: consumer.name.clone(),
                num_pending: consumer.num_pending,
                num_ack_pending: consumer.num_ack_pending as u64,
                num_redelivered: consumer.num_redelivered as u64,
            });
        }
    }
    Ok(gauges)
}

/// The method's name as a static string (unknown methods share one label).
fn static_method(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "OTHER",
    }
}
