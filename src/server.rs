//! The HTTP server under the router: the accept loop, protocol selection (HTTP/1.1, cleartext
//! HTTP/2 by prior knowledge, or either over TLS by ALPN), the cap on open connections, the
//! header-read and idle timeouts, time limits on request bodies, and graceful shutdown.
//!
//! `axum::serve` has none of these knobs, and without them a client that sends half a request
//! head, or trickles a body a byte at a time, holds a connection (and a file descriptor)
//! forever. So jetway runs the loop itself, as `axum::serve` does underneath, with hyper's
//! HTTP/1 (with upgrades, for WebSockets) and HTTP/2 connections, plus
//!
//! - a **connection cap**: past `--max-tcp-connections` open connections a new one is accepted
//!   and closed at once, so descriptors stay bounded and the kernel's backlog never fills with
//!   clients waiting for nothing. A slot is held for the connection's whole life, upgraded
//!   WebSockets included (the slot travels with the socket into the upgrade);
//! - the **header-read timeout** (`--header-read-timeout`): the first bytes that name the
//!   protocol (and the TLS handshake) must arrive within it; then, on HTTP/1.1, a request head
//!   must arrive whole within it, counted from when the connection opens or its previous
//!   response was sent; on HTTP/2 a connection with no request open for that long is closed
//!   (GOAWAY), as a kept-alive HTTP/1.1 connection is;
//! - **HTTP/2 limits**: `--http2-max-streams` concurrent requests per connection, and a request
//!   head list as large as `--max-header-bytes` allows (the router's own header limits apply as
//!   on HTTP/1.1);
//! - **body timeouts** ([`TimedBody`]): a body that pauses longer than `--body-idle-timeout`, or
//!   takes longer than `--body-timeout` altogether, fails with [`BodyTimeout`], which the body
//!   extractors answer with `408 request_timeout`; the connection is then closed.
//!
//! WebSockets are served over HTTP/1.1 (the upgrade); HTTP/2's extended CONNECT is not offered,
//! so browsers open their WebSockets on HTTP/1.1 as they do with most servers.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
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
/// What an HTTP/2 client sends first (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How often an HTTP/2 connection pings its client, and how long it waits for the answer
/// before it considers the connection dead.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The limits the server applies to every connection.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Most open connections.
    pub max_connections: usize,
    /// Longest wait for a complete request head (and for the first bytes, and an idle
    /// HTTP/2 connection).
    pub header_read_timeout: Duration,
    /// Time limits of request bodies.
    pub body: BodyTimeouts,
    /// Most concurrent streams on one HTTP/2 connection.
    pub http2_max_streams: u32,
    /// Largest HTTP/2 header list.
    pub http2_max_header_bytes: u32,
}

impl ServerLimits {
    pub fn new(config: &Config) -> Self {
        Self {
            max_connections: config.max_tcp_connections,
            header_read_timeout: config.header_read_timeout,
            body: BodyTimeouts {
                idle: config.body_idle_timeout,
                total: Some(config.body_timeout),
            },
            http2_max_streams: config.http2_max_streams,
            // The router's own limit answers with problem+json; this one only keeps hyper
            // from buffering more than that (plus room for the pseudo-headers).
            http2_max_header_bytes: u32::try_from(config.max_header_bytes)
                .unwrap_or(u32::MAX)
                .saturating_mul(2)
                .max(16 * 1024),
        }
    }
}

/// Why TLS cannot be set up from `--tls-cert` and `--tls-key`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The TLS side of the listener: the certificate and key, with ALPN offering HTTP/2 and
/// HTTP/1.1.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| TlsError(format!("--tls-cert {}: {err}", cert.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "--tls-cert {}: no CERTIFICATE block in the file",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| TlsError(format!("--tls-key {}: {err}", key.display())))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError(format!("TLS: {err}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| TlsError(format!("--tls-cert/--tls-key: {err}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets every
/// connection finish its in-flight requests (idle ones close at once) and returns when all have
/// closed. Upgraded connections (WebSockets) are no longer the server's: their sessions end
/// through the application's own shutdown token.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    tls: Option<TlsAcceptor>,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    let protocols = Arc::new(Protocols::new(limits));
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
        let held = Held {
            _slot: slot,
            _gauge: metrics.http_connection(),
        };
        let connection = Connection {
            router: router.clone(),
            protocols: protocols.clone(),
            closing: closing.clone(),
            metrics: metrics.clone(),
        };
        let tls = tls.clone();
        connections.spawn(async move {
            let deadline = Instant::now() + connection.protocols.limits.header_read_timeout;
            let closing = connection.closing.clone();
            let opened = tokio::select! {
                opened = tokio::time::timeout_at(deadline, open(stream, tls)) => opened,
                () = closing.cancelled() => return,
            };
            match opened {
                Ok(Ok(Opened::Plain(stream, prefix, protocol))) => {
                    connection
                        .serve(Counted::new(stream, prefix, held), protocol)
                        .await;
                }
                Ok(Ok(Opened::Tls(stream, protocol))) => {
                    connection
                        .serve(Counted::new(stream, Bytes::new(), held), protocol)
                        .await;
                }
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "closed a connection before its first request")
                }
                Err(_) => {
                    connection.metrics.http_header_timeout();
                    tracing::debug!("closed a connection whose first bytes did not arrive in time");
                }
            }
        });
    }
    drop(listener);
    closing.cancel();
    connections.close();
    connections.wait().await;
}

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// A connection whose protocol is known: TLS after its handshake (ALPN decides), or plain TCP
/// with the bytes read to tell HTTP/2's preface from an HTTP/1.1 request put back in front.
enum Opened {
    Plain(TcpStream, Bytes, Protocol),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, Protocol),
}

/// Reads as much of a new connection as tells its protocol (or completes its TLS handshake).
async fn open(stream: TcpStream, tls: Option<TlsAcceptor>) -> io::Result<Opened> {
    if let Some(tls) = tls {
        let stream = tls.accept(stream).await?;
        let protocol = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        };
        return Ok(Opened::Tls(Box::new(stream), protocol));
    }
    let mut stream = stream;
    let mut head = vec![0; H2_PREFACE.len()];
    let mut filled = 0;
    // Read until the bytes differ from HTTP/2's preface (an HTTP/1.1 request differs within
    // its first two), the whole preface is there, or the client closes.
    while filled < head.len() && head[..filled] == H2_PREFACE[..filled] {
        let read = stream.read(&mut head[filled..]).await?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    head.truncate(filled);
    let protocol = if head == H2_PREFACE {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    Ok(Opened::Plain(stream, Bytes::from(head), protocol))
}

/// The connection builders, configured once.
struct Protocols {
    limits: ServerLimits,
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: ServerLimits) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_streams)
            .max_header_list_size(limits.http2_max_header_bytes)
            .keep_alive_interval(H2_KEEP_ALIVE)
            .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
        Self {
            limits,
            http1,
            http2,
        }
    }
}

/// What serving one connection needs.
struct Connection {
    router: Router,
    protocols: Arc<Protocols>,
    closing: CancellationToken,
    metrics: Metrics,
}

impl Connection {
    async fn serve<S>(self, io: Counted<S>, protocol: Protocol)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let body = self.protocols.limits.body;
        let activity = Arc::new(Activity::default());
        let router = self.router.clone();
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let open = requests.open();
            let timeouts = if streams_both_ways(request.headers()) {
                body.idle_only()
            } else {
                body
            };
            let response = router
                .clone()
                .oneshot(request.map(|incoming| TimedBody::new(incoming, timeouts)));
            async move {
                let response = response.await;
                drop(open);
                response
            }
        });
        let served = match protocol {
            Protocol::Http1 => {
                let connection = self
                    .protocols
                    .http1
                    .serve_connection(io, service)
                    .with_upgrades();
                let mut connection = pin!(connection);
                tokio::select! {
                    served = connection.as_mut() => served,
                    () = self.closing.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                }
            }
            Protocol::Http2 => {
                let connection = self.protocols.http2.serve_connection(io, service);
                let mut connection = pin!(connection);
                let idle_limit = self.protocols.limits.header_read_timeout;
                tokio::select! {
                    served = connection.as_mut() => served,
                    () = self.closing.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                    () = activity.idle_for(idle_limit) => {
                        tracing::debug!("closing an HTTP/2 connection idle for --header-read-timeout");
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                }
            }
        };
        match served {
            Err(err) if err.is_timeout() => {
                self.metrics.http_header_timeout();
                tracing::debug!("closed a connection whose request head did not arrive in time");
            }
            Err(err) => tracing::debug!(error = %err, "connection ended with an error"),
            Ok(()) => {}
        }
    }
}

/// Requests open on one connection, to close an HTTP/2 connection nobody uses.
#[derive(Default)]
struct Activity {
    open: AtomicUsize,
    changed: Notify,
}

/// One open request; dropping it (the response is ready, or the request was cancelled)
/// closes it.
struct OpenRequest(Arc<Activity>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

impl Activity {
    fn open(self: &Arc<Self>) -> OpenRequest {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
        OpenRequest(self.clone())
    }

    /// Resolves once no request has been open for `limit`. A response still streaming its
    /// body after the service answered counts as idle: its stream keeps the connection busy
    /// in hyper, and the close is graceful (GOAWAY lets open streams finish).
    async fn idle_for(&self, limit: Duration) {
        loop {
            if self.open.load(Ordering::Acquire) > 0 {
                self.changed.notified().await;
                continue;
            }
            if tokio::time::timeout(limit, self.changed.notified())
                .await
                .is_err()
                && self.open.load(Ordering::Acquire) == 0
            {
                return;
            }
        }
    }
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

/// What a connection holds for its whole life, after an upgrade too: its slot and the
/// open-connections gauge.
struct Held {
    _slot: OwnedSemaphorePermit,
    _gauge: GaugeGuard,
}

/// A client connection with what it holds, and the bytes already read from it to tell its
/// protocol, put back in front.
struct Counted<S> {
    stream: S,
    prefix: Bytes,
    _held: Held,
}

impl<S> Counted<S> {
    fn new(stream: S, prefix: Bytes, held: Held) -> Self {
        Self {
            stream,
            prefix,
            _held: held,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
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

/// NDJSON media types (`application/x-ndjson` and its aliases).
pub const NDJSON_TYPES: [&str; 4] = [
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/jsonlines",
];

/// Whether a media type (with any parameters) is NDJSON.
pub fn is_ndjson(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or("").trim();
    NDJSON_TYPES
        .iter()
        .any(|ndjson| essence.eq_ignore_ascii_case(ndjson))
}

/// A request that streams both ways: an NDJSON body, answered with NDJSON as it arrives
/// (`Accept: application/x-ndjson`). It may last as long as its client keeps sending, so only
/// the idle timeout applies to its body.
pub fn streams_both_ways(headers: &axum::http::HeaderMap) -> bool {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    content_type.is_some_and(is_ndjson)
        && headers
            .get_all(axum::http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(is_ndjson)
}

/// Time limits of a request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeouts {
    /// Longest pause between two parts of the body.
    pub idle: Duration,
    /// Longest time for the whole body, from when the request head was read; `None` for a
    /// body that streams as long as its client sends.
    pub total: Option<Duration>,
}

impl BodyTimeouts {
    /// The same idle timeout, no total.
    pub fn idle_only(self) -> Self {
        Self {
            idle: self.idle,
            total: None,
        }
    }
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
    /// When the whole body must have arrived, if ever.
    deadline: Option<Instant>,
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
            deadline: timeouts.total.map(|total| now + total),
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
            if let (Some(deadline), Some(total)) = (this.deadline, this.timeouts.total)
                && frame.is_some()
                && this.progress >= deadline
            {
                return Poll::Ready(Some(Err(BodyTimeout::Total(total).into())));
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let idle_at = this.progress + this.timeouts.idle;
        let (at, timeout) = match (this.deadline, this.timeouts.total) {
            (Some(deadline), Some(total)) if deadline <= idle_at => {
                (deadline, BodyTimeout::Total(total))
            }
            _ => (idle_at, BodyTimeout::Idle(this.timeouts.idle)),
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
            total: Some(Duration::from_millis(total_ms)),
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
