//! Everything that talks to NATS: the connection, JetStream API requests, and the one place where
//! async-nats and JetStream errors become [`ApiError`]s (`errors.rs`).
//!
//! Handlers never call async-nats directly; they call the functions here, which check that the
//! connection is up (a disconnected client would otherwise queue the request and answer with a
//! timeout), apply the configured timeouts, and classify every failure.

pub mod consumers;
pub mod errors;
pub mod kv;
pub mod messages;
pub mod pipeline;
pub mod publish;
pub mod pull;
pub mod streams;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, response::Response};
use async_nats::{Client, ConnectOptions, Statistics, connection::State};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::metrics::Metrics;
pub use errors::Op;

/// How often the first connection's outcome is re-read while waiting for it: async-nats
/// publishes the connection state just after the event that wakes the wait.
const FIRST_ATTEMPT_POLL: Duration = Duration::from_millis(10);

/// The shared NATS connection and the JetStream contexts built on it. Cheap to clone.
#[derive(Clone)]
pub struct Nats {
    client: Client,
    /// JetStream API requests (stream admin, message reads), with the API timeout.
    js: jetstream::Context,
    /// Publishes, whose PubAck wait uses the publish timeout.
    js_publish: jetstream::Context,
    publish_timeout: Duration,
    api_timeout: Duration,
    metrics: Metrics,
    /// The configured servers, for messages.
    servers: Arc<str>,
    /// Why the last connection attempt failed; `None` once one succeeds.
    last_failure: watch::Receiver<Option<String>>,
    /// The client's counters; `connects` tells whether the server's INFO has been seen.
    statistics: Arc<Statistics>,
}

/// How to reach NATS: what [`Nats::connect`] needs from the configuration.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Server URLs.
    pub servers: Vec<String>,
    /// A `.creds` file (JWT and NKey seed).
    pub creds: Option<std::path::PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// CA certificate that the servers' TLS certificates must chain to (TLS is then required).
    pub tls_ca: Option<std::path::PathBuf>,
    /// Connect timeout, and the timeout of JetStream API requests.
    pub api_timeout: Duration,
    /// How long a publish waits for its PubAck.
    pub publish_timeout: Duration,
}

/// Configuration that can never give a NATS connection. An unreachable server is not one of
/// them: jetway serves and keeps connecting.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read NATS credentials file {path}: {source}")]
    Credentials {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot use NATS TLS CA certificate {path}: {reason}")]
    TlsCa { path: String, reason: String },
    #[error("invalid NATS server URL in {urls}: {source}")]
    Urls {
        urls: String,
        source: async_nats::ConnectError,
    },
}

impl Nats {
    /// Connects with the configured servers and credentials, and reconnects forever.
    ///
    /// Waits for the first attempt (up to the API timeout), so that a reachable server is
    /// connected when this returns. An unreachable one is not an error: the client keeps
    /// trying with backoff, requests answer 503 meanwhile, and [`Nats::connection_problem`]
    /// says why. Only configuration that can never work fails here.
    pub async fn connect(config: &Connection) -> Result<Self, ConnectError> {
        let servers = config.servers.join(",");
        let metrics = Metrics::default();
        let events = metrics.clone();
        let (failure_tx, last_failure) = watch::channel(None::<String>);
        let failures = Arc::new(failure_tx);
        let event_servers = servers.clone();
        let mut options = ConnectOptions::new()
            .name(format!("jetway {}", env!("CARGO_PKG_VERSION")))
            .connection_timeout(config.api_timeout)
            .max_reconnects(None)
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let metrics = events.clone();
                let failures = failures.clone();
                let servers = event_servers.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            metrics.nats_connection(true);
                            failures.send_replace(None);
                            tracing::info!("NATS connection established")
                        }
                        async_nats::Event::Disconnected => {
                            metrics.nats_connection(false);
                            tracing::warn!("NATS connection lost; reconnecting")
                        }
                        async_nats::Event::ClientError(async_nats::ClientError::Other(reason)) => {
                            // Every failed round over the servers reports; warn once per cause.
                            let previous = failures.send_replace(Some(reason.clone()));
                            if previous.as_deref() == Some(reason.as_str()) {
                                tracing::debug!(error = %reason, "cannot connect to NATS at {servers}")
                            } else {
                                tracing::warn!(
                                    error = %reason,
                                    "cannot connect to NATS at {servers}; retrying with backoff"
                                )
                            }
                        }
                        other => tracing::info!(event = %other, "NATS connection event"),
                    }
                }
            });
        if let Some(path) = &config.creds {
            options = options.credentials_file(path).await.map_err(|source| {
                ConnectError::Credentials {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        }
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if let Some(ca) = &config.tls_ca {
            check_tls_ca(ca)?;
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        // With `retry_on_initial_connect`, only unparsable server URLs fail here; connecting
        // happens in the client's own task.
        let client = options
            .connect(config.servers.as_slice())
            .await
            .map_err(|source| ConnectError::Urls {
                urls: servers.clone(),
                source,
            })?;
        let mut nats = Self::from_client(client, config.api_timeout, config.publish_timeout);
        nats.metrics = metrics;
        nats.servers = servers.into();
        nats.last_failure = last_failure;
        match nats.first_attempt(config.api_timeout).await {
            // The callback may not have seen the event yet; this is idempotent.
            Ok(()) => nats.metrics.nats_connection(true),
            Err(reason) => tracing::warn!(
                error = %reason,
                "NATS at {} is not reachable yet: serving anyway, /readyz answers 503 and requests \
                 fail fast until jetway connects; retrying with backoff",
                nats.servers
            ),
        }
        Ok(nats)
    }

    /// Waits until the first connection succeeds (`Ok`), every server failed once, or `within`
    /// passes (`Err` with the reason).
    async fn first_attempt(&self, within: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        let mut failure = self.last_failure.clone();
        loop {
            if self.is_connected() {
                return Ok(());
            }
            if let Some(reason) = failure.borrow_and_update().clone() {
                return Err(reason);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(format!("no connection within {within:?}"));
            }
            // Woken by a failed round; the connection state itself is re-read every few ms.
            if let Ok(Err(_closed)) =
                tokio::time::timeout_at(deadline.min(now + FIRST_ATTEMPT_POLL), failure.changed())
                    .await
            {
                tokio::time::sleep(FIRST_ATTEMPT_POLL).await;
            }
        }
    }

    /// Wraps an existing client (tests and embedders).
    pub fn from_client(client: Client, api_timeout: Duration, publish_timeout: Duration) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(api_timeout)
            .build(client.clone());
        let js_publish = jetstream::ContextBuilder::new()
            .timeout(publish_timeout)
            .build(client.clone());
        let servers = client.try_server_info().map_or_else(
            || "the NATS server".to_owned(),
            |info| format!("nats://{}:{}", info.host, info.port),
        );
        let statistics = client.statistics();
        Self {
            client,
            js,
            js_publish,
            publish_timeout,
            api_timeout,
            metrics: Metrics::default(),
            servers: servers.into(),
            last_failure: watch::channel(None).1,
            statistics,
        }
    }

    /// The gateway's metrics (they live here so that connection events can update them).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Largest message (headers + payload) the server accepts: `None` until the first
    /// connection has brought the server's INFO, then the last connected server's value.
    /// Lock-free (two atomic loads), for the request path.
    pub fn max_payload(&self) -> Option<usize> {
        // async-nats counts the connection before it stores the server's `max_payload`, so at
        // the very instant of the first connection this may still be its default (1 MiB,
        // nats-server's default too), the value its own publish check uses then.
        (self.statistics.connects.load(Ordering::Relaxed) > 0).then(|| self.client.max_payload())
    }

    /// Is the connection up right now?
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Why the connection cannot be used now (for `/readyz`), or `None` while it is up.
    pub fn connection_problem(&self) -> Option<String> {
        if self.is_connected() {
            return None;
        }
        let last = self
            .last_failure
            .borrow()
            .as_ref()
            .map(|reason| format!(" (last attempt: {reason})"))
            .unwrap_or_default();
        let servers = &self.servers;
        Some(if self.statistics.connects.load(Ordering::Relaxed) == 0 {
            format!("not connected to NATS at {servers} yet{last}; retrying")
        } else {
            format!("connection to NATS at {servers} lost{last}; reconnecting")
        })
    }

    /// Fails fast with 503 while disconnected: a request sent now would be queued and answered,
    /// much later, with a timeout.
    pub fn ensure_connected(&self) -> Result<(), ApiError> {
        if self.is_connected() {
            Ok(())
        } else {
            Err(ApiError::Unavailable(
                "jetway is not connected to NATS right now; retry shortly".to_owned(),
            ))
        }
    }

    /// Sends a JetStream API request (`$JS.API.<api>`) and decodes its answer, classifying
    /// every failure for `op`.
    ///
    /// On a cluster a request can go unanswered for good (a meta or consumer leader changed
    /// while it was being handled). A request that can be repeated without changing its outcome
    /// (everything but deletes and purges: creating what exists with the same configuration,
    /// an update, a read, a reset to the same sequence) is therefore sent a second time when
    /// half of `--api-timeout` passed without an answer; the whole still ends within it.
    pub async fn api<T, B>(&self, api: &str, body: &B, op: Op<'_>) -> Result<T, ApiError>
    where
        T: DeserializeOwned,
        B: Serialize + ?Sized,
    {
        self.ensure_connected()?;
        let repeatable = !(api.contains("DELETE.") || api.starts_with("STREAM.PURGE."));
        let attempts: u32 = if repeatable { 2 } else { 1 };
        let mut answer = None;
        for attempt in 1..=attempts {
            match tokio::time::timeout(
                self.api_timeout / attempts,
                self.js.request(api.to_owned(), body),
            )
            .await
            {
                Ok(result) => {
                    answer = Some(result);
                    break;
                }
                Err(_) if attempt < attempts => {
                    tracing::debug!(api, "no JetStream answer yet; asking again");
                }
                Err(_) => {}
            }
        }
        let response: Response<T> = match answer {
            Some(result) => result.map_err(|err| errors::from_request(&err, self.api_timeout))?,
            None => {
                return Err(ApiError::Timeout(format!(
                    "JetStream did not answer within {}",
                    crate::duration::format(self.api_timeout)
                )));
            }
        };
        match response {
            Response::Ok(value) => Ok(value),
            Response::Err { error } => Err(errors::from_jetstream(&error, op)),
        }
    }

    /// Checks that JetStream answers (for `/readyz`).
    pub async fn ping_jetstream(&self) -> Result<(), ApiError> {
        let _: serde_json::Value = self
            .api("INFO", &serde_json::json!({}), Op::Account)
            .await?;
        Ok(())
    }
}

/// Refuses a CA file that can never verify a server: unreadable, or without a PEM certificate.
/// (async-nats reads it only when connecting, which is retried forever.)
fn check_tls_ca(path: &std::path::Path) -> Result<(), ConnectError> {
    let fail = |reason: String| ConnectError::TlsCa {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|err| fail(err.to_string()))?;
    if pem.contains("-----BEGIN CERTIFICATE-----") {
        Ok(())
    } else {
        Err(fail(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_owned(),
        ))
    }
}
