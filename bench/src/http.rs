//! A minimal HTTP/1.1 keep-alive client on hyper's connection API: one TCP connection per load
//! worker, requests sent back to back on it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::load::Op;

/// One keep-alive connection to the gateway.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    driver: JoinHandle<()>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true).context("cannot set TCP_NODELAY")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {addr} failed"))?;
        let driver = tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; errors surface on send.
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
            driver,
        })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&mut self, spec: &RequestSpec) -> Result<(StatusCode, Bytes)> {
        self.send_parts(
            &spec.method,
            &spec.uri,
            spec.content_type,
            spec.body.clone(),
        )
        .await
    }

    /// Sends one request built from its parts (a body that changes from request to request) and
    /// reads the whole answer.
    pub async fn send_parts(
        &mut self,
        method: &Method,
        uri: &Uri,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes)> {
        let response = self.start(method, uri, content_type, body).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("cannot read the answer to {method} {uri}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// Sends one request and returns the answer with its body still to be read (a stream of
    /// Server-Sent Events).
    pub async fn start(
        &mut self,
        method: &Method,
        uri: &Uri,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<Response<Incoming>> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .header(HOST, &self.host);
        if let Some(content_type) = content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        let request = builder
            .body(Full::new(body))
            .with_context(|| format!("cannot build {method} {uri}"))?;
        self.sender
            .ready()
            .await
            .context("the HTTP connection closed")?;
        self.sender
            .send_request(request)
            .await
            .with_context(|| format!("{method} {uri} failed"))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A request a load worker repeats, and how many messages one request carries.
pub struct RequestSpec {
    pub method: Method,
    pub uri: Uri,
    pub content_type: Option<&'static str>,
    pub body: Bytes,
    pub messages: u64,
}

impl RequestSpec {
    pub fn new(method: Method, path: &str, body: Bytes, messages: u64) -> Result<Self> {
        let uri = path
            .parse()
            .with_context(|| format!("invalid path {path}"))?;
        Ok(Self {
            method,
            uri,
            content_type: None,
            body,
            messages,
        })
    }

    pub fn content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = Some(content_type);
        self
    }
}

/// A load worker: one connection repeating one request. Any answer other than a plain 2xx (207
/// Multi-Status means some batch items were not stored) fails the scenario with its body.
pub struct HttpOp {
    conn: Conn,
    spec: Arc<RequestSpec>,
}

impl HttpOp {
    /// `concurrency` workers, each on its own connection.
    pub async fn workers(
        addr: SocketAddr,
        spec: RequestSpec,
        concurrency: usize,
    ) -> Result<Vec<Self>> {
        let spec = Arc::new(spec);
        let mut ops = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            ops.push(Self {
                conn: Conn::connect(addr).await?,
                spec: Arc::clone(&spec),
            });
        }
        Ok(ops)
    }
}

impl Op for HttpOp {
    async fn call(&mut self) -> Result<u64> {
        let (status, body) = self.conn.send(&self.spec).await?;
        if !status.is_success() || status == StatusCode::MULTI_STATUS {
            bail!(
                "{} {} answered {status}: {}",
                self.spec.method,
                self.spec.uri,
                String::from_utf8_lossy(&body)
            );
        }
        Ok(self.spec.messages)
    }
}

/// One request on a fresh connection (set-up and checks, not measured).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&serde_json::Value>,
) -> Result<(StatusCode, Bytes)> {
    let method =
        Method::from_bytes(method.as_bytes()).with_context(|| format!("bad method {method}"))?;
    let body = match json {
        Some(value) => Bytes::from(serde_json::to_vec(value).context("cannot encode JSON")?),
        None => Bytes::new(),
    };
    let mut spec = RequestSpec::new(method, path, body, 0)?;
    if json.is_some() {
        spec = spec.content_type("application/json");
    }
    Conn::connect(addr).await?.send(&spec).await
}
