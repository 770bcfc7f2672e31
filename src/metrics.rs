//! Process-wide counters and gauges, rendered at `/metrics` in Prometheus text format.
//!
//! Plain atomics: cheap to update on hot paths, no registry. Every metric name is a const here,
//! described once in [`render`].

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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

    /// Bytes currently queued for WebSocket clients.
    pub fn ws_buffered_bytes(&self) -> i64 {
        self.0.ws_buffered_bytes.load(Ordering::Relaxed)
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
        out
    }
}
