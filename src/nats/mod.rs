//! Everything that talks to NATS: the connection, JetStream API requests, and the one place where
//! async-nats and JetStream errors become [`ApiError`]s (`errors.rs`).
//!
//! Handlers never call async-nats directly; they call the functions here, which check that the
//! connection is up (a disconnected client would otherwise queue the request and answer with a
//! timeout), apply the configured timeouts, and classify every failure.

pub mod consumers;
pub mod errors;
pub mod messages;
pub mod publish;
pub mod pull;
pub mod streams;

use std::time::Duration;

use async_nats::jetstream::{self, response::Response};
use async_nats::{Client, ConnectOptions, connection::State};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
pub use errors::Op;

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
}

/// Why jetway could not connect to NATS at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read NATS credentials file {path}: {source}")]
    Credentials {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to NATS at {urls}: {source}")]
    Connect {
        urls: String,
        source: async_nats::ConnectError,
    },
}

impl Nats {
    /// Connects with the configured servers and credentials. Reconnects forever afterwards.
    pub async fn connect(config: &Config) -> Result<Self, ConnectError> {
        let metrics = Metrics::default();
        let events = metrics.clone();
        let mut options = ConnectOptions::new()
            .name(format!("jetway {}", env!("CARGO_PKG_VERSION")))
            .connection_timeout(config.api_timeout)
            .max_reconnects(None)
            .event_callback(move |event| {
                let metrics = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            metrics.nats_connection(true);
                            tracing::info!("NATS connection established")
                        }
                        async_nats::Event::Disconnected => {
                            metrics.nats_connection(false);
                            tracing::warn!("NATS connection lost; reconnecting")
                        }
                        other => tracing::info!(event = %other, "NATS connection event"),
                    }
                }
            });
        if let Some(path) = &config.nats_creds {
            options = options.credentials_file(path).await.map_err(|source| {
                ConnectError::Credentials {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        }
        if let (Some(user), Some(password)) = (&config.nats_user, &config.nats_password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &config.nats_token {
            options = options.token(token.clone());
        }
        if let Some(ca) = &config.nats_tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = options
            .connect(config.nats_url.as_slice())
            .await
            .map_err(|source| ConnectError::Connect {
                urls: config.nats_url.join(","),
                source,
            })?;
        // The first connection happened before the callback could see it.
        metrics.nats_connection(true);
        let mut nats = Self::from_client(client, config.api_timeout, config.publish_timeout);
        nats.metrics = metrics;
        Ok(nats)
    }

    /// Wraps an existing client (tests and embedders).
    pub fn from_client(client: Client, api_timeout: Duration, publish_timeout: Duration) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(api_timeout)
            .build(client.clone());
        let js_publish = jetstream::ContextBuilder::new()
            .timeout(publish_timeout)
            .build(client.clone());
        Self {
            client,
            js,
            js_publish,
            publish_timeout,
            api_timeout,
            metrics: Metrics::default(),
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

    /// Largest message (headers + payload) the connected server accepts.
    pub fn max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }

    /// Is the connection up right now?
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
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
    pub async fn api<T, B>(&self, api: &str, body: &B, op: Op<'_>) -> Result<T, ApiError>
    where
        T: DeserializeOwned,
        B: Serialize + ?Sized,
    {
        self.ensure_connected()?;
        let response: Response<T> = self
            .js
            .request(api.to_owned(), body)
            .await
            .map_err(|err| errors::from_request(&err, self.api_timeout))?;
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
