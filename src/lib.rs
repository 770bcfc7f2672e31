//! jetway: an HTTP, WebSocket and SSE gateway that gives non-NATS clients durable streams on NATS
//! JetStream.
//!
//! [`build`] connects to NATS (or starts connecting, when no server answers yet), ensures the
//! declared streams and returns the application; [`serve`] runs it on a listener until a
//! shutdown future resolves. `main` binds the configured address; tests bind `127.0.0.1:0` and
//! call the same functions.

/// Ack ids: signed, opaque handles on delivered messages.
pub mod ackid;
pub mod auth;
pub mod config;
pub mod deadletter;
pub mod declared;
/// Where push subscriptions may deliver (`--push-allow`).
pub mod destinations;
/// API durations (`500ms`, `30s`, `5m`, `72h`).
pub mod duration;
pub mod edge;
pub mod error;
/// The live feeds of this replica and the hub that fans each one out to its subscribers.
pub mod fanout;
/// `jetway healthcheck`: the container health check.
pub mod healthcheck;
/// HTTP routes, handlers and the OpenAPI document.
pub mod http;
/// JSON request bodies: structs from objects only, whole numbers (int64) written `5` or `5.0`.
pub mod json;
/// The JSON representation of messages.
pub mod message;
pub mod metrics;
pub mod nats;
pub mod openapi;
/// The operations core: authorization rules every transport shares.
pub mod ops;
/// Push delivery: signed webhooks from durable consumers.
pub mod push;
pub mod router;
pub mod server;
pub mod sse;
pub mod state;
pub mod telemetry;
pub mod timestamp;
/// Validation of subjects, names and headers.
pub mod validate;
pub mod ws;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ackid::AckKeys;
use crate::config::Config;
use crate::deadletter::DeadLetters;
use crate::declared::DeclaredStreams;
use crate::nats::Nats;
use crate::state::{AppState, Limits};

/// Why jetway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Connect(#[from] nats::ConnectError),
    #[error("client authentication: {0}")]
    Auth(#[from] auth::AuthConfigError),
    #[error(transparent)]
    Stream(#[from] declared::Rejected),
    #[error("cannot watch consumer advisories: {0}")]
    Advisories(error::ApiError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] server::TlsError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

/// A built application: the router and the state it shares with background tasks.
pub struct App {
    pub router: Router,
    pub state: AppState,
    /// HTTPS on the listener (`--tls-cert`, `--tls-key`), when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Connects to NATS, ensures the streams declared in the configuration, and builds the router.
///
/// A NATS server that does not answer yet is not an error: the application serves, `/readyz`
/// answers 503 saying why, requests fail fast with 503, and the connection and the declared
/// streams follow in the background. Configuration that can never work fails here: client
/// authentication keys, NATS credentials or CA files, server URLs, and (when NATS answers
/// now) a declared stream that conflicts with the existing one.
pub async fn build(config: Config) -> Result<App, StartError> {
    // Authentication is checked first: a gateway that would refuse every client should not
    // start at all, and say why.
    let auth = authenticator(&config).await?;
    let tls = tls(&config)?;
    let nats = Nats::connect(&config.nats_connection()).await?;
    build_with_auth(config, nats, auth, tls).await
}

/// The listener's TLS set-up, when `--tls-cert` and `--tls-key` are given.
fn tls(config: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>, StartError> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(server::tls_acceptor(cert, key)?)),
        _ => Ok(None),
    }
}

async fn authenticator(config: &Config) -> Result<Option<auth::Authenticator>, StartError> {
    if config.no_auth {
        return Ok(None);
    }
    Ok(Some(auth::Authenticator::from_config(config).await?))
}

/// Like [`build`], with an existing NATS connection.
pub async fn build_with(config: Config, nats: Nats) -> Result<App, StartError> {
    let auth = authenticator(&config).await?;
    let tls = tls(&config)?;
    build_with_auth(config, nats, auth, tls).await
}

async fn build_with_auth(
    config: Config,
    nats: Nats,
    auth: Option<auth::Authenticator>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<App, StartError> {
    let declared = DeclaredStreams::new(config.streams.clone());
    declared.ensure_at_start(&nats).await?;
    if config.no_auth {
        tracing::warn!(
            "CLIENT AUTHENTICATION IS OFF (--no-auth): anyone who can reach {} may publish, read \
             and administer streams. Use this for local development only.",
            config.listen
        );
    }
    let limits = Limits::new(&config);
    let ack_keys = match AckKeys::new(&config.ack_secret) {
        Some(keys) => keys,
        None => {
            tracing::warn!(
                "no --ack-secret configured: ack ids are signed with a random secret and work only \
                 on this process; give every replica the same JETWAY_ACK_SECRET"
            );
            AckKeys::random()
        }
    };
    let metrics = nats.metrics().clone();
    let dead_letters = DeadLetters::new(nats.clone());
    let publish_limiter = auth::RateLimiter::new(config_rate(&config, true), "publish");
    let fetch_limiter = auth::RateLimiter::new(config_rate(&config, false), "fetch");
    let connections =
        auth::ConnectionLimits::new(config.max_connections, config.max_connections_per_principal);
    let push_destinations =
        destinations::Destinations::parse(&config.push_allow, config.push_allow_http)
            .map_err(|err| StartError::Config(config::ConfigError::Check(err)))?;
    let push_roots = push::trust_roots(config.push_ca.as_deref())
        .map_err(|err| StartError::Config(config::ConfigError::Check(err)))?;
    let state = AppState::new(state::Shared {
        push_destinations,
        push_roots,
        push_saved: Arc::default(),
        nats,
        config: Arc::new(config),
        limits,
        ack_keys,
        dead_letters,
        feeds: fanout::Feeds::new(metrics.clone()),
        metrics,
        publish_limiter,
        fetch_limiter,
        connections,
        declared,
        auth,
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
    });
    // Core subscriptions made while disconnected are queued by async-nats and sent once the
    // connection is up (and again after every reconnect), so the watcher needs no connection.
    state
        .dead_letters
        .spawn_watcher(&state.tasks, state.shutdown.clone())
        .await
        .map_err(StartError::Advisories)?;
    state
        .declared
        .spawn(state.nats.clone(), &state.tasks, state.shutdown.clone());
    if let Some(auth) = &state.auth {
        auth.spawn_refresh(
            state.config.jwks_refresh,
            &state.tasks,
            state.shutdown.clone(),
        );
    }
    ops::gauges::spawn_consumer_gauges(
        state.nats.clone(),
        state.config.consumer_metrics_interval,
        state.config.consumer_metrics_max,
        &state.tasks,
        state.shutdown.clone(),
    );
    push::spawn(&state);
    let router = router::router(state.clone());
    Ok(App { router, state, tls })
}

fn config_rate(config: &Config, publish: bool) -> u32 {
    if publish {
        config.rate_publish
    } else {
        config.rate_fetch
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then shuts down in phases:
/// 1. stop accepting and signal long-lived tasks (streams, sockets) to end,
/// 2. let in-flight requests finish, up to the configured shutdown timeout,
/// 3. wait for tracked tasks under the same deadline,
/// 4. drain the NATS connection so that buffered publishes and acks reach the server.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let App { router, state, tls } = app;
    let token = state.shutdown.clone();
    let deadline = state.config.shutdown_timeout;
    let signal_token = token.clone();
    let graceful = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        signal_token.cancel();
    };
    let limits = server::ServerLimits::new(&state.config);
    let mut serving = tokio::spawn(server::run(
        listener,
        router,
        limits,
        tls,
        state.metrics.clone(),
        graceful,
    ));
    // Phase 2: in-flight requests, bounded by the deadline once shutdown has begun.
    let result = tokio::select! {
        joined = &mut serving => joined.map_err(|join| StartError::Serve(std::io::Error::other(join))),
        () = async { token.cancelled().await; tokio::time::sleep(deadline).await } => {
            tracing::warn!("in-flight requests did not finish within the shutdown timeout");
            serving.abort();
            Ok(())
        }
    };
    // Phase 3: tracked tasks.
    state.tasks.close();
    if tokio::time::timeout(deadline, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not finish within the shutdown timeout");
    }
    // Phase 4: flush what the client still buffers. Bounded: a client that never connected
    // does not read its command queue.
    match tokio::time::timeout(deadline, state.nats.client().drain()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(error = %err, "NATS drain"),
        Err(_) => tracing::debug!("NATS drain did not finish within the shutdown timeout"),
    }
    tracing::info!("shutdown complete");
    result
}

/// Builds and serves on the configured address until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    let addr = config.listen;
    let app = build(config).await?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    tracing::info!(
        "jetway listening on http://{addr} (console /, API docs /docs, OpenAPI /openapi.json)"
    );
    serve(listener, app, shutdown_signal()).await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
