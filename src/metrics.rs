//! The gateway's metrics, rendered at `/metrics` in the OpenMetrics text format.
//!
//! Built on `prometheus-client`: counters and gauges are atomics, labelled families sit behind a
//! read-mostly lock per family (no global lock on the request path). Every metric is registered,
//! with its help text, in one place ([`Metrics::default`]). Each [`Metrics`] has its own
//! registry, so gateways built in one process (tests) do not share numbers.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the HTTP latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0,
];

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A consumer's health, refreshed on an interval.
#[derive(Debug, Clone)]
pub struct ConsumerGauge {
    pub stream: String,
    pub consumer: String,
    pub num_pending: u64,
    pub num_ack_pending: u64,
    pub num_redelivered: u64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Cow<'static, str>,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Cow<'static, str>,
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Cow<'static, str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AckLabels {
    action: Cow<'static, str>,
    outcome: Cow<'static, str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    stream: String,
    consumer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PushLabels {
    stream: String,
    push: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PushOutcomeLabels {
    stream: String,
    push: String,
    outcome: &'static str,
}

/// Upper bounds (seconds) of the push delivery latency buckets.
const PUSH_LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

fn push_histogram() -> Histogram {
    Histogram::new(PUSH_LATENCY_BUCKETS)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

type Latency = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The gateway's metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    registry: Registry,
    ws_connections: Gauge,
    ws_subscriptions: Gauge,
    ws_buffered_bytes: Gauge,
    ws_messages_sent: Counter,
    ws_bytes_sent: Counter,
    ws_credit_stalls: Counter,
    sse_connections: Gauge,
    sse_messages_sent: Counter,
    ws_idle_disconnects: Counter,
    ws_slow_disconnects: Counter,
    http_requests: Family<RequestLabels, Counter>,
    http_latency: Latency,
    publishes: Family<OutcomeLabels, Counter>,
    fetch_requests: Counter,
    fetched_messages: Counter,
    acks: Family<AckLabels, Counter>,
    dead_letters: Counter,
    nats_connected: Gauge,
    nats_connects: Counter<u64, AtomicU64>,
    http_connections: Gauge,
    http_connections_refused: Counter,
    http_header_timeouts: Counter,
    consumer_pending: Family<ConsumerLabels, Gauge>,
    consumer_ack_pending: Family<ConsumerLabels, Gauge>,
    consumer_redelivered: Family<ConsumerLabels, Gauge>,
    feeds: Family<StreamLabels, Gauge>,
    feed_subscribers: Family<StreamLabels, Gauge>,
    feed_catch_ups: Counter,
    feed_handovers: Counter,
    replay_recoveries: Counter,
    push_deliveries: Family<PushOutcomeLabels, Counter>,
    push_latency: Family<PushLabels, Histogram, fn() -> Histogram>,
    push_lag: Family<PushLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Default for Metrics {
    /// A fresh registry with every metric registered. Counter names get `_total` when rendered.
    fn default() -> Self {
        let mut registry = Registry::default();
        macro_rules! register {
            ($name:literal, $help:literal, $metric:expr) => {{
                let metric = $metric;
                registry.register($name, $help, metric.clone());
                metric
            }};
        }
        let inner = Inner {
            ws_connections: register!(
                "jetway_ws_connections",
                "Open WebSocket connections.",
                Gauge::default()
            ),
            ws_subscriptions: register!(
                "jetway_ws_subscriptions",
                "Active WebSocket subscriptions.",
                Gauge::default()
            ),
            ws_buffered_bytes: register!(
                "jetway_ws_buffered_bytes",
                "Bytes queued in the gateway for WebSocket clients (bounded per socket by --ws-max-buffered-bytes).",
                Gauge::default()
            ),
            ws_messages_sent: register!(
                "jetway_ws_messages_sent",
                "Messages sent to WebSocket clients.",
                Counter::default()
            ),
            ws_bytes_sent: register!(
                "jetway_ws_bytes_sent",
                "Bytes of frames sent to WebSocket clients.",
                Counter::default()
            ),
            ws_credit_stalls: register!(
                "jetway_ws_credit_stalls",
                "Times a subscription waited for the client to grant credit.",
                Counter::default()
            ),
            sse_connections: register!(
                "jetway_sse_connections",
                "Open Server-Sent Events streams.",
                Gauge::default()
            ),
            sse_messages_sent: register!(
                "jetway_sse_messages_sent",
                "Messages sent on SSE streams.",
                Counter::default()
            ),
            ws_idle_disconnects: register!(
                "jetway_ws_idle_disconnects",
                "WebSocket connections closed because the client sent nothing (not even pongs) for --ws-idle-timeout.",
                Counter::default()
            ),
            ws_slow_disconnects: register!(
                "jetway_ws_slow_disconnects",
                "WebSocket connections closed because a write to the client stalled for --ws-idle-timeout.",
                Counter::default()
            ),
            http_requests: register!(
                "jetway_http_requests",
                "HTTP requests by route template, method and status.",
                Family::default()
            ),
            http_latency: register!(
                "jetway_http_request_duration_seconds",
                "Time to the response head, by route template and method.",
                Latency::new_with_constructor(latency_histogram as fn() -> Histogram)
            ),
            publishes: register!(
                "jetway_publishes",
                "Published messages by outcome: stored, duplicate, or the error code.",
                Family::default()
            ),
            fetch_requests: register!(
                "jetway_fetch_requests",
                "Fetch requests answered.",
                Counter::default()
            ),
            fetched_messages: register!(
                "jetway_fetched_messages",
                "Messages delivered by fetches.",
                Counter::default()
            ),
            acks: register!(
                "jetway_acks",
                "Acks by action and outcome: confirmed, or the error code.",
                Family::default()
            ),
            dead_letters: register!(
                "jetway_dead_letters",
                "Dead-letter copies published by this replica (duplicates across replicas included).",
                Counter::default()
            ),
            nats_connected: register!(
                "jetway_nats_connected",
                "1 while the NATS connection is up.",
                Gauge::default()
            ),
            nats_connects: register!(
                "jetway_nats_connects",
                "NATS connections established (the first one and every reconnect).",
                Counter::default()
            ),
            http_connections: register!(
                "jetway_http_connections",
                "Open client TCP connections (WebSocket and SSE included).",
                Gauge::default()
            ),
            http_connections_refused: register!(
                "jetway_http_connections_refused",
                "Connections closed at once because --max-tcp-connections were open.",
                Counter::default()
            ),
            http_header_timeouts: register!(
                "jetway_http_header_timeouts",
                "Connections closed because no complete request head arrived within --header-read-timeout (idle kept-alive ones included).",
                Counter::default()
            ),
            consumer_pending: register!(
                "jetway_consumer_num_pending",
                "Messages not yet delivered (lag) of consumers created through jetway.",
                Family::default()
            ),
            consumer_ack_pending: register!(
                "jetway_consumer_num_ack_pending",
                "Messages delivered and awaiting an ack.",
                Family::default()
            ),
            consumer_redelivered: register!(
                "jetway_consumer_num_redelivered",
                "Messages delivered more than once and not yet acked.",
                Family::default()
            ),
            feeds: register!(
                "jetway_feeds",
                "Live feeds (one JetStream ordered consumer each, shared by every live subscriber with the same stream, filters and encoding) by stream.",
                Family::default()
            ),
            feed_subscribers: register!(
                "jetway_feed_subscribers",
                "Live WebSocket and SSE subscriptions on a feed (or catching up to join one) by stream; divided by jetway_feeds, subscribers per feed.",
                Family::default()
            ),
            feed_catch_ups: register!(
                "jetway_feed_catch_ups",
                "Subscriptions that fell more than the feed's buffer behind (a slow client) and moved to a catch-up consumer of their own.",
                Counter::default()
            ),
            feed_handovers: register!(
                "jetway_feed_handovers",
                "Subscriptions handed over from their own consumer (a replay or a catch-up) to a shared feed.",
                Counter::default()
            ),
            replay_recoveries: register!(
                "jetway_replay_recoveries",
                "Ordered replays (WebSocket and SSE subscriptions without a consumer) that recreated their consumer after a gap in its delivery sequence, a lost pull or a lost heartbeat, and went on from the last message delivered.",
                Counter::default()
            ),
            push_deliveries: register!(
                "jetway_push_deliveries",
                "Push delivery attempts by outcome: acked (2xx), retry (failed, retried later), dead_lettered (given up on).",
                Family::default()
            ),
            push_latency: register!(
                "jetway_push_delivery_seconds",
                "Push delivery attempts: time from sending the request to the receiver's answer (or the failure).",
                Family::new_with_constructor(push_histogram as fn() -> Histogram)
            ),
            push_lag: register!(
                "jetway_push_lag",
                "Messages of a push subscription not yet delivered, as of its last delivery on this replica.",
                Family::default()
            ),
            registry: Registry::default(),
        };
        Self(Arc::new(Inner { registry, ..inner }))
    }
}

/// A gauge held up while a value lives (a connection, a subscription).
pub struct GaugeGuard {
    gauge: Gauge,
    amount: i64,
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.gauge.dec_by(self.amount);
    }
}

fn hold(gauge: &Gauge, amount: i64) -> GaugeGuard {
    gauge.inc_by(amount);
    GaugeGuard {
        gauge: gauge.clone(),
        amount,
    }
}

fn stream_label(stream: &str) -> StreamLabels {
    StreamLabels {
        stream: stream.to_owned(),
    }
}

/// A label value, owned by the series it creates.
fn label(value: &str) -> Cow<'static, str> {
    Cow::Owned(value.to_owned())
}

impl Metrics {
    /// One open WebSocket connection, until the guard drops.
    pub fn ws_connection(&self) -> GaugeGuard {
        hold(&self.0.ws_connections, 1)
    }

    /// A feed started on `stream`.
    pub fn feed_opened(&self, stream: &str) {
        self.0.feeds.get_or_create(&stream_label(stream)).inc();
    }

    /// A feed on `stream` stopped.
    pub fn feed_closed(&self, stream: &str) {
        self.0.feeds.get_or_create(&stream_label(stream)).dec();
    }

    /// A subscriber joined (`1`) or left (`-1`) a feed on `stream`.
    pub fn feed_member(&self, stream: &str, change: i64) {
        self.0
            .feed_subscribers
            .get_or_create(&stream_label(stream))
            .inc_by(change);
    }

    /// A subscriber moved from its feed to a catch-up consumer.
    pub fn feed_catch_up(&self) {
        self.0.feed_catch_ups.inc();
    }

    /// A subscriber moved from its own consumer to a feed.
    pub fn feed_handover(&self) {
        self.0.feed_handovers.inc();
    }

    /// An ordered replay recreated its consumer.
    pub fn replay_recovery(&self) {
        self.0.replay_recoveries.inc();
    }

    /// One active WebSocket subscription, until the guard drops.
    pub fn ws_subscription(&self) -> GaugeGuard {
        hold(&self.0.ws_subscriptions, 1)
    }

    /// Bytes queued for a WebSocket client, until the guard drops (when they were written).
    pub fn ws_buffered(&self, bytes: usize) -> GaugeGuard {
        hold(
            &self.0.ws_buffered_bytes,
            i64::try_from(bytes).unwrap_or(i64::MAX),
        )
    }

    /// One open SSE stream, until the guard drops.
    pub fn sse_connection(&self) -> GaugeGuard {
        hold(&self.0.sse_connections, 1)
    }

    /// One open client TCP connection, until the guard drops (an upgraded one included).
    pub fn http_connection(&self) -> GaugeGuard {
        hold(&self.0.http_connections, 1)
    }

    /// A connection closed at once because `--max-tcp-connections` were open.
    pub fn http_connection_refused(&self) {
        self.0.http_connections_refused.inc();
    }

    /// A connection closed because its request head did not arrive within
    /// `--header-read-timeout`.
    pub fn http_header_timeout(&self) {
        self.0.http_header_timeouts.inc();
    }

    pub fn ws_sent(&self, bytes: usize) {
        self.0.ws_messages_sent.inc();
        self.0.ws_bytes_sent.inc_by(bytes as u64);
    }

    pub fn ws_credit_stall(&self) {
        self.0.ws_credit_stalls.inc();
    }

    pub fn sse_sent(&self) {
        self.0.sse_messages_sent.inc();
    }

    pub fn ws_slow_disconnect(&self) {
        self.0.ws_slow_disconnects.inc();
    }

    pub fn ws_idle_disconnect(&self) {
        self.0.ws_idle_disconnects.inc();
    }

    /// One HTTP request answered (`route` is the route template, never a raw path).
    pub fn http_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let method = static_method(method);
        let route = label(route);
        self.0
            .http_latency
            .get_or_create(&RouteLabels {
                route: route.clone(),
                method,
            })
            .observe(elapsed.as_secs_f64());
        self.0
            .http_requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
    }

    /// A publish outcome: `stored`, `duplicate`, or the error code.
    pub fn publish(&self, outcome: &str) {
        self.0
            .publishes
            .get_or_create(&OutcomeLabels {
                outcome: label(outcome),
            })
            .inc();
    }

    /// A fetch answered with `messages` messages.
    pub fn fetched(&self, messages: usize) {
        self.0.fetch_requests.inc();
        self.0.fetched_messages.inc_by(messages as u64);
    }

    /// An ack outcome by action (`ack`, `nak`, `term`, `progress`): `confirmed` or the error code.
    pub fn ack(&self, action: &str, outcome: &str) {
        self.0
            .acks
            .get_or_create(&AckLabels {
                action: label(action),
                outcome: label(outcome),
            })
            .inc();
    }

    /// One push delivery attempt and how long it took.
    pub fn push_delivery(&self, stream: &str, push: &str, outcome: &'static str, took: Duration) {
        self.0
            .push_deliveries
            .get_or_create(&PushOutcomeLabels {
                stream: stream.to_owned(),
                push: push.to_owned(),
                outcome,
            })
            .inc();
        self.0
            .push_latency
            .get_or_create(&PushLabels {
                stream: stream.to_owned(),
                push: push.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A push subscription's lag as of its last delivery.
    pub fn push_lag(&self, stream: &str, push: &str, lag: u64) {
        self.0
            .push_lag
            .get_or_create(&PushLabels {
                stream: stream.to_owned(),
                push: push.to_owned(),
            })
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    /// Drops a push subscription's series (it was deleted).
    pub fn push_forget(&self, stream: &str, push: &str) {
        let labels = PushLabels {
            stream: stream.to_owned(),
            push: push.to_owned(),
        };
        self.0.push_lag.remove(&labels);
        self.0.push_latency.remove(&labels);
        for outcome in ["acked", "retry", "dead_lettered"] {
            self.0.push_deliveries.remove(&PushOutcomeLabels {
                stream: stream.to_owned(),
                push: push.to_owned(),
                outcome,
            });
        }
    }

    pub fn dead_lettered(&self) {
        self.0.dead_letters.inc();
    }

    /// The NATS connection went up (`true`) or down.
    pub fn nats_connection(&self, up: bool) {
        let was = self.0.nats_connected.set(i64::from(up));
        if up && was == 0 {
            self.0.nats_connects.inc();
        }
    }

    /// Replaces the consumer gauges.
    pub fn set_consumers(&self, gauges: Vec<ConsumerGauge>) {
        let families = [
            &self.0.consumer_pending,
            &self.0.consumer_ack_pending,
            &self.0.consumer_redelivered,
        ];
        for family in families {
            family.clear();
        }
        for gauge in gauges {
            let labels = ConsumerLabels {
                stream: gauge.stream,
                consumer: gauge.consumer,
            };
            let values = [
                gauge.num_pending,
                gauge.num_ack_pending,
                gauge.num_redelivered,
            ];
            for (family, value) in families.into_iter().zip(values) {
                family
                    .get_or_create(&labels)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.0.registry) {
            tracing::error!(error = %err, "cannot encode metrics");
        }
        out
    }
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
