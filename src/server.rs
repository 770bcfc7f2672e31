//! The HTTP/1.1 server under the router: the accept loop, the cap on open connections, the
//! header-read timeout, time limits on request bodies, and graceful shutdown.
//!
//! `axum::serve` has none of these knobs, and without them a client that sends half a request
//! head, or trickles a body a byte at a time, holds a connection (and a file descriptor)
//! forever. So jetway runs the loop itself, as `axum::serve` does underneath: hyper's HTTP/1
//! connection with upgrades (WebSockets), plus
//!
//! - a **connection cap**: past `--max-tcp-connections` open connections a new one is accepted
//!   and closed at once, so descriptors stay bounded and the kernel's backlog never fills with
//!   clients waiting for nothing. A slot is held for the connection's whole life, upgraded
//!   WebSockets included (the slot travels with the socket into the upgrade);
//! - hyper's **header-read timeout** (`--header-read-timeout`): a request head must arrive whole
//!   within it, counted from when the connection opens or its previous response was sent;
//! - **body timeouts** ([`TimedBody`]): a body that pauses longer than `--body-idle-timeout`, or
//!   takes longer than `--body-timeout` altogether, fails with [`BodyTimeout`], which the body
//!   extractors answer with `408 request_timeout`; the connection is then closed.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::Config;
use crate::metrics::{GaugeGuard, Metrics};

/// Least time between two warnings about refused connections (each one is counted).
const REFUSED_WARNING_EVERY: Duration = Duration::from_secs(10);
/// How long to wait after an accept error that is not about one connection (out of file
/// descriptors, typically), as hyper and axum do.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The limits the server applies to every connection.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Most open connections.
    pub max_connections: usize,
    /// Longest wait for a complete request head.
    pub header_read_timeout: Duration,
    /// Time limits of request bodies.
    pub body: BodyTimeouts,
}

impl ServerLimits {
    pub fn new(config: &Config) -> Self {
        Self {
            max_connections: config.max_tcp_connections,
            header_read_timeout: config.header_read_timeout,
            body: BodyTimeouts {
                idle: config.body_idle_timeout,
                total: config.body_timeout,
            },
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets every
/// connection finish its in-flight request (idle ones close at once) and returns when all have
/// closed. Upgraded connections (WebSockets) are no longer the server's: their sessions end
/// through the application's own shutdown token.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut last_refused_warning: Option<Instant> = None;
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    tracing::error!(error = %err, "cannot accept connections; retrying in a second");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    }
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closing at once frees the descriptor; the client sees the connection end.
            drop(stream);
            metrics.http_connection_refused();
            if last_refused_warning.is_none_or(|at| at.elapsed() >= REFUSED_WARNING_EVERY) {
                last_refused_warning = Some(Instant::now());
                tracing::warn!(
                    max = limits.max_connections,
                    "refusing connections: --max-tcp-connections are open"
                );
            }
            continue;
        };
        let io = TokioIo::new(Counted {
            stream,
            _slot: slot,
            _gauge: metrics.http_connection(),
        });
        let router = router.clone();
        let body = limits.body;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            router
                .clone()
                .oneshot(request.map(|incoming| TimedBody::new(incoming, body)))
        });
        let connection = http1.serve_connection(io, service).with_upgrades();
        let closing = closing.clone();
        let metrics = metrics.clone();
        connections.spawn(async move {
            let mut connection = pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            match served {
                Err(err) if err.is_timeout() => {
                    metrics.http_header_timeout();
                    tracing::debug!(
                        "closed a connection whose request head did not arrive in time"
                    );
                }
                Err(err) => tracing::debug!(error = %err, "connection ended with an error"),
                Ok(()) => {}
            }
        });
    }
    drop(listener);
    closing.cancel();
    connections.close();
    connections.wait().await;
}

/// Errors of one connection that the accept loop skips (as hyper and axum do).
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A client connection holding its slot (and the open-connections gauge) until it is dropped,
/// after an upgrade too.
struct Counted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    _gauge: GaugeGuard,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Time limits of a request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeouts {
    /// Longest pause between two parts of the body.
    pub idle: Duration,
    /// Longest time for the whole body, from when the request head was read.
    pub total: Duration,
}

/// Why a request body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyTimeout {
    #[error(
        "the request body stalled: nothing arrived for {} (--body-idle-timeout)",
        crate::duration::format(*.0)
    )]
    Idle(Duration),
    #[error(
        "the request body took longer than {} to arrive (--body-timeout)",
        crate::duration::format(*.0)
    )]
    Total(Duration),
}

impl BodyTimeout {
    /// The body timeout somewhere in an error's chain of sources, if that is what it is.
    pub fn find(err: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let mut current = Some(err);
        while let Some(err) = current {
            if let Some(timeout) = err.downcast_ref::<Self>() {
                return Some(*timeout);
            }
            current = err.source();
        }
        None
    }
}

/// A request body that fails with [`BodyTimeout`] when the client pauses too long or takes too
/// long altogether. The clock runs only while the body is read and nothing is ready: a body
/// that already arrived is never cut, and a fast one pays for one clock reading per frame.
pub struct TimedBody<B> {
    inner: B,
    timeouts: BodyTimeouts,
    /// When the whole body must have arrived.
    deadline: Instant,
    /// When the last part arrived (or the body started).
    progress: Instant,
    /// Created at the first wait, then moved.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, timeouts: BodyTimeouts) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timeouts,
            deadline: now + timeouts.total,
            progress: now,
            timer: None,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.progress = Instant::now();
            if frame.is_some() && this.progress >= this.deadline {
                return Poll::Ready(Some(Err(BodyTimeout::Total(this.timeouts.total).into())));
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let idle_at = this.progress + this.timeouts.idle;
        let (at, timeout) = if idle_at < this.deadline {
            (idle_at, BodyTimeout::Idle(this.timeouts.idle))
        } else {
            (this.deadline, BodyTimeout::Total(this.timeouts.total))
        };
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(timeout.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of `parts` one-byte parts, each after `pause`.
    fn paced(parts: usize, pause: Duration) -> axum::body::Body {
        let stream = futures::stream::unfold(0, move |n| async move {
            if n == parts {
                return None;
            }
            tokio::time::sleep(pause).await;
            Some((Ok::<_, io::Error>(Bytes::from_static(b"x")), n + 1))
        });
        axum::body::Body::from_stream(stream)
    }

    fn timeouts(idle_ms: u64, total_ms: u64) -> BodyTimeouts {
        BodyTimeouts {
            idle: Duration::from_millis(idle_ms),
            total: Duration::from_millis(total_ms),
        }
    }

    /// The body's length, or the timeout that cut it.
    async fn read(body: TimedBody<axum::body::Body>) -> Result<usize, Option<BodyTimeout>> {
        match axum::body::to_bytes(axum::body::Body::new(body), usize::MAX).await {
            Ok(bytes) => Ok(bytes.len()),
            Err(err) => Err(BodyTimeout::find(&err)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_within_both_limits_arrives_whole() {
        let body = TimedBody::new(paced(5, Duration::from_millis(100)), timeouts(300, 1000));
        assert_eq!(read(body).await, Ok(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_longer_than_the_idle_timeout_fails_the_body() {
        let body = TimedBody::new(paced(3, Duration::from_millis(500)), timeouts(300, 10_000));
        assert_eq!(
            read(body).await,
            Err(Some(BodyTimeout::Idle(Duration::from_millis(300))))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_that_never_pauses_long_is_cut_at_the_total_timeout() {
        let body = TimedBody::new(paced(100, Duration::from_millis(100)), timeouts(300, 1000));
        assert_eq!(
            read(body).await,
            Err(Some(BodyTimeout::Total(Duration::from_secs(1))))
        );
    }
}
