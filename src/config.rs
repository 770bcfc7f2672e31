//! Configuration: command-line flags, their `JETWAY_*` environment equivalents, and an optional
//! TOML file whose keys are the flag names (`nats_url` or `nats-url`).
//!
//! Precedence, highest first: flag, environment, TOML file, default. Defaults are safe for
//! production (loopback listener, client authentication required); `make dev` opts into the
//! conveniences explicitly.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::nats::streams::StreamConfig;

/// The `jetway` command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "jetway",
    version,
    about = "HTTP, WebSocket and SSE gateway to NATS JetStream durable streams",
    long_about = "HTTP, WebSocket and SSE gateway to NATS JetStream durable streams.\n\n\
        Every flag has a JETWAY_* environment variable and a key of the same name in the \
        --config TOML file. Precedence: flag, environment, file, default."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands; without one, jetway serves.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the OpenAPI document the server serves at /openapi.json and exit.
    Openapi,
    /// Mint an HS256 token for testing (prints it): `jetway token --secret S --read ORDERS`.
    Token(Box<TokenArgs>),
    /// Ask a running jetway for its health route and exit 0 on a 2xx, 1 otherwise: the
    /// container health check, for images without curl.
    Healthcheck(HealthcheckArgs),
}

/// What `jetway healthcheck` asks.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// URL to GET. Default: `/healthz` on this configuration's --listen port, on loopback when
    /// --listen is a wildcard address (`0.0.0.0:8080` → `http://127.0.0.1:8080/healthz`).
    #[arg(long, env = "JETWAY_HEALTHCHECK_URL", value_name = "URL")]
    pub url: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, env = "JETWAY_HEALTHCHECK_TIMEOUT", default_value = "2s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub timeout: Duration,
}

/// Claims of a token minted by `jetway token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// HMAC secret to sign with (the server's --jwt-secret).
    #[arg(long, env = "JETWAY_JWT_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Subject (`sub`): who the token belongs to.
    #[arg(long, default_value = "dev")]
    pub sub: String,
    /// Subject pattern the holder may publish to (repeatable).
    #[arg(long)]
    pub publish: Vec<String>,
    /// Stream the holder may read, or `*` (repeatable).
    #[arg(long)]
    pub read: Vec<String>,
    /// Key-value bucket the holder may read, `*` for all (repeatable).
    #[arg(long)]
    pub kv_read: Vec<String>,
    /// Key-value bucket the holder may write (and read), `*` for all (repeatable).
    #[arg(long)]
    pub kv_write: Vec<String>,
    /// Grant stream and consumer administration.
    #[arg(long)]
    pub admin: bool,
    /// Tenant subject prefix: the holder's subjects live under `<prefix>.`.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Lifetime of the token.
    #[arg(long, default_value = "1h", value_parser = crate::duration::parse)]
    pub ttl: Duration,
    /// Issuer (`iss`).
    #[arg(long)]
    pub iss: Option<String>,
    /// Audience (`aud`).
    #[arg(long)]
    pub aud: Option<String>,
    /// Name of the permissions claim.
    #[arg(long, default_value = "jetway")]
    pub claim: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Server configuration.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// TOML configuration file. Keys are the long flag names (`nats_url = ["nats://a:4222"]`);
    /// `[[streams]]` tables declare streams ensured at start-up.
    #[arg(long, env = "JETWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on for HTTP, WebSocket and SSE clients.
    #[arg(
        long,
        env = "JETWAY_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// NATS server URLs, comma-separated (several servers of one cluster).
    #[arg(
        long,
        env = "JETWAY_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        value_delimiter = ',',
        value_name = "URLS"
    )]
    pub nats_url: Vec<String>,

    /// NATS credentials file (JWT + NKey seed) for jetway's own connection.
    #[arg(long, env = "JETWAY_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,

    /// NATS user name (with --nats-password).
    #[arg(long, env = "JETWAY_NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,

    /// NATS password (with --nats-user).
    #[arg(
        long,
        env = "JETWAY_NATS_PASSWORD",
        requires = "nats_user",
        hide_env_values = true
    )]
    pub nats_password: Option<String>,

    /// NATS authentication token.
    #[arg(long, env = "JETWAY_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,

    /// CA certificate (PEM) to verify the NATS server's TLS certificate; implies TLS.
    #[arg(long, env = "JETWAY_NATS_TLS_CA", value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Run without client authentication: anyone who can reach the listener may publish, read
    /// and administer streams. For local development only.
    #[arg(long, env = "JETWAY_NO_AUTH")]
    pub no_auth: bool,

    /// HMAC secrets that verify client tokens (HS256/384/512), comma-separated.
    #[arg(
        long,
        env = "JETWAY_JWT_SECRET",
        value_delimiter = ',',
        hide_env_values = true,
        value_name = "SECRETS"
    )]
    pub jwt_secret: Vec<String>,

    /// PEM public key (RSA, EC or Ed25519) that verifies client tokens; repeatable.
    #[arg(
        long,
        env = "JETWAY_JWT_PUBLIC_KEY",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub jwt_public_key: Vec<PathBuf>,

    /// JWKS document (file path or http(s) URL) whose keys verify client tokens, chosen by `kid`.
    #[arg(long, env = "JETWAY_JWKS", value_name = "FILE|URL")]
    pub jwks: Option<String>,

    /// How often the JWKS document is re-read (also on an unknown `kid`, at most every 10s).
    #[arg(long, env = "JETWAY_JWKS_REFRESH", default_value = "5m", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub jwks_refresh: Duration,

    /// Accepted token issuers (`iss`), comma-separated; unset accepts any.
    #[arg(
        long,
        env = "JETWAY_JWT_ISSUER",
        value_delimiter = ',',
        value_name = "ISS"
    )]
    pub jwt_issuer: Vec<String>,

    /// Accepted token audiences (`aud`), comma-separated; unset accepts any.
    #[arg(
        long,
        env = "JETWAY_JWT_AUDIENCE",
        value_delimiter = ',',
        value_name = "AUD"
    )]
    pub jwt_audience: Vec<String>,

    /// Accepted token algorithms, comma-separated (default: HS256/384/512, RS*, PS*, ES256/384,
    /// EdDSA; `none` never).
    #[arg(
        long,
        env = "JETWAY_JWT_ALGORITHMS",
        value_delimiter = ',',
        value_name = "ALGS"
    )]
    pub jwt_algorithms: Option<Vec<String>>,

    /// Clock skew allowed when checking `exp` and `nbf`.
    #[arg(long, env = "JETWAY_JWT_LEEWAY", default_value = "30s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub jwt_leeway: Duration,

    /// Name of the token claim holding jetway permissions.
    #[arg(
        long,
        env = "JETWAY_JWT_CLAIM",
        default_value = "jetway",
        value_name = "NAME"
    )]
    pub jwt_claim: String,

    /// Browser origins allowed by CORS and for WebSocket upgrades, comma-separated (none by
    /// default; same-origin pages always work).
    #[arg(
        long,
        env = "JETWAY_CORS_ORIGIN",
        value_delimiter = ',',
        value_name = "ORIGINS"
    )]
    pub cors_origin: Vec<String>,

    /// Messages each principal may publish per second (per replica); 0 = unlimited.
    #[arg(
        long,
        env = "JETWAY_RATE_PUBLISH",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub rate_publish: u32,

    /// Fetch requests each principal may make per second (per replica); 0 = unlimited.
    #[arg(
        long,
        env = "JETWAY_RATE_FETCH",
        default_value_t = 1_000,
        value_name = "N"
    )]
    pub rate_fetch: u32,

    /// Most open WebSocket and SSE connections in total.
    #[arg(
        long,
        env = "JETWAY_MAX_CONNECTIONS",
        default_value_t = 20_000,
        value_name = "N"
    )]
    pub max_connections: usize,

    /// Most open WebSocket and SSE connections per principal.
    #[arg(
        long,
        env = "JETWAY_MAX_CONNECTIONS_PER_PRINCIPAL",
        default_value_t = 100,
        value_name = "N"
    )]
    pub max_connections_per_principal: usize,

    /// Most open client TCP connections (plain HTTP, WebSocket and SSE together, and
    /// connections still sending their request); one more is accepted and closed at once.
    #[arg(
        long,
        env = "JETWAY_MAX_TCP_CONNECTIONS",
        default_value_t = 25_000,
        value_name = "N"
    )]
    pub max_tcp_connections: usize,

    /// Longest time a client may take to send a complete request head, counted from when the
    /// connection opens or its previous response was sent (so it also closes idle kept-alive
    /// connections); past it the connection is closed.
    #[arg(long, env = "JETWAY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub header_read_timeout: Duration,

    /// Longest pause while a request body is being received; past it the request answers 408
    /// and the connection is closed.
    #[arg(long, env = "JETWAY_BODY_IDLE_TIMEOUT", default_value = "30s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub body_idle_timeout: Duration,

    /// Longest time to receive a whole request body, however steadily it trickles in; past it
    /// the request answers 408 and the connection is closed.
    #[arg(long, env = "JETWAY_BODY_TIMEOUT", default_value = "2m", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub body_timeout: Duration,

    /// Most concurrent requests (streams) on one HTTP/2 connection; a client that opens more
    /// has them refused by the protocol and retries them once others finish.
    #[arg(
        long,
        env = "JETWAY_HTTP2_MAX_STREAMS",
        default_value_t = 128,
        value_name = "N"
    )]
    pub http2_max_streams: u32,

    /// Certificate chain (PEM) to serve HTTPS on --listen, with --tls-key. HTTP/2 and
    /// HTTP/1.1 are offered by ALPN. Without it the listener speaks plain HTTP/1.1 and
    /// cleartext HTTP/2 (prior knowledge).
    #[arg(
        long,
        env = "JETWAY_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(
        long,
        env = "JETWAY_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Most request headers.
    #[arg(
        long,
        env = "JETWAY_MAX_HEADERS",
        default_value_t = 64,
        value_name = "N"
    )]
    pub max_headers: usize,

    /// Largest total size of request headers, in bytes.
    #[arg(long, env = "JETWAY_MAX_HEADER_BYTES", default_value = "16KiB", value_parser = parse_bytes, value_name = "BYTES")]
    pub max_header_bytes: u64,

    /// Largest request body for a single publish, in bytes (suffixes KiB, MiB accepted).
    /// Never more than the NATS server's max_payload.
    #[arg(long, env = "JETWAY_MAX_BODY_BYTES", default_value = "1MiB", value_parser = parse_bytes, value_name = "BYTES")]
    pub max_body_bytes: u64,

    /// Most messages in one batch publish request.
    #[arg(
        long,
        env = "JETWAY_MAX_BATCH_MESSAGES",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub max_batch_messages: usize,

    /// Most lines of one streaming publish (NDJSON in, NDJSON results out), or `publish` ops of
    /// one WebSocket, awaiting their PubAck; the request body (or socket) is not read further
    /// until one is answered.
    #[arg(
        long,
        env = "JETWAY_PUBLISH_STREAM_WINDOW",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub publish_stream_window: usize,

    /// Largest batch publish request body, in bytes (suffixes KiB, MiB accepted).
    #[arg(long, env = "JETWAY_MAX_BATCH_BYTES", default_value = "8MiB", value_parser = parse_bytes, value_name = "BYTES")]
    pub max_batch_bytes: u64,

    /// Most messages one page of GET /v1/streams/{stream}/messages returns.
    #[arg(
        long,
        env = "JETWAY_MAX_PAGE_MESSAGES",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub max_page_messages: usize,

    /// Most messages one fetch may ask for (`max_messages`).
    #[arg(
        long,
        env = "JETWAY_MAX_FETCH_MESSAGES",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub max_fetch_messages: usize,

    /// Most bytes one fetch may return (`max_bytes`; also its default).
    #[arg(long, env = "JETWAY_MAX_FETCH_BYTES", default_value = "8MiB", value_parser = parse_bytes, value_name = "BYTES")]
    pub max_fetch_bytes: u64,

    /// Longest long-poll a fetch may ask for (`wait`).
    #[arg(long, env = "JETWAY_MAX_FETCH_WAIT", default_value = "30s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub max_fetch_wait: Duration,

    /// Most acks in one POST /v1/acks request.
    #[arg(
        long,
        env = "JETWAY_MAX_ACKS",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub max_acks: usize,

    /// How long to wait for JetStream to confirm an ack before reporting it unconfirmed.
    #[arg(long, env = "JETWAY_ACK_TIMEOUT", default_value = "2s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub ack_timeout: Duration,

    /// Secrets that sign ack ids, comma-separated; the first signs, all verify (rotate by
    /// prepending a new one). Every replica needs the same list. Without one, a random secret is
    /// used and ack ids work only on this process.
    #[arg(
        long,
        env = "JETWAY_ACK_SECRET",
        value_delimiter = ',',
        hide_env_values = true,
        value_name = "SECRETS"
    )]
    pub ack_secret: Vec<String>,

    /// Most bytes queued in the gateway for one WebSocket client; a client that reads slower
    /// slows its subscriptions down instead. Also the most bytes asked of JetStream per pull.
    #[arg(long, env = "JETWAY_WS_MAX_BUFFERED_BYTES", default_value = "4MiB", value_parser = parse_bytes, value_name = "BYTES")]
    pub ws_max_buffered_bytes: u64,

    /// Largest WebSocket message a client may send (bigger ones close the socket with 1009).
    #[arg(long, env = "JETWAY_WS_MAX_MESSAGE_BYTES", default_value = "1MiB", value_parser = parse_bytes, value_name = "BYTES")]
    pub ws_max_message_bytes: u64,

    /// Interval of WebSocket pings from the gateway.
    #[arg(long, env = "JETWAY_WS_PING_INTERVAL", default_value = "20s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub ws_ping_interval: Duration,

    /// Close a WebSocket after this long without any frame from the client (pongs count).
    #[arg(long, env = "JETWAY_WS_IDLE_TIMEOUT", default_value = "60s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub ws_idle_timeout: Duration,

    /// Most subscriptions on one multiplexed WebSocket.
    #[arg(
        long,
        env = "JETWAY_WS_MAX_SUBSCRIPTIONS",
        default_value_t = 100,
        value_name = "N"
    )]
    pub ws_max_subscriptions: usize,

    /// Most messages asked of JetStream per pull by a WebSocket or SSE replay.
    #[arg(
        long,
        env = "JETWAY_REPLAY_BATCH",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub replay_batch: usize,

    /// Idle heartbeat of replay pulls; two missed heartbeats make a replay recover.
    #[arg(long, env = "JETWAY_REPLAY_HEARTBEAT", default_value = "5s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub replay_heartbeat: Duration,

    /// Interval of SSE keep-alive comments.
    #[arg(long, env = "JETWAY_SSE_KEEPALIVE", default_value = "15s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub sse_keepalive: Duration,

    /// How often the consumer gauges (lag, pending acks, redeliveries) of consumers created
    /// through jetway are refreshed for /metrics.
    #[arg(long, env = "JETWAY_CONSUMER_METRICS_INTERVAL", default_value = "15s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub consumer_metrics_interval: Duration,

    /// Most consumers exported as metrics (bounds the label cardinality); 0 turns them off.
    #[arg(
        long,
        env = "JETWAY_CONSUMER_METRICS_MAX",
        default_value_t = 200,
        value_name = "N"
    )]
    pub consumer_metrics_max: usize,

    /// Destinations push subscriptions may deliver to, comma-separated: host names
    /// (`hooks.example.com`), suffixes (`*.example.com`), addresses or networks (`10.0.0.0/8`,
    /// `::1`). Host names reach public addresses only; private, loopback and link-local
    /// addresses need an address or network entry. Empty (the default): no push subscription
    /// can be created.
    #[arg(
        long,
        env = "JETWAY_PUSH_ALLOW",
        value_delimiter = ',',
        value_name = "DESTINATIONS"
    )]
    pub push_allow: Vec<String>,

    /// Also allow `http://` push URLs (default: `https://` only).
    #[arg(long, env = "JETWAY_PUSH_ALLOW_HTTP")]
    pub push_allow_http: bool,

    /// PEM file of CA certificates that push receivers' certificates may chain to, besides the
    /// built-in web roots (a private CA).
    #[arg(long, env = "JETWAY_PUSH_CA", value_name = "PEM")]
    pub push_ca: Option<PathBuf>,

    /// Most push deliveries in progress at once on this replica, over every push
    /// subscription (each also keeps to its own `max_in_flight`).
    #[arg(
        long,
        env = "JETWAY_PUSH_MAX_CONNECTIONS",
        default_value_t = 256,
        value_name = "N"
    )]
    pub push_max_connections: usize,

    /// How long to wait for JetStream's PubAck before answering 504.
    #[arg(long, env = "JETWAY_PUBLISH_TIMEOUT", default_value = "5s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub publish_timeout: Duration,

    /// How long to wait for a JetStream API answer (stream admin, message reads).
    #[arg(long, env = "JETWAY_API_TIMEOUT", default_value = "5s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub api_timeout: Duration,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env = "JETWAY_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub shutdown_timeout: Duration,

    /// Log format.
    #[arg(long, env = "JETWAY_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,

    /// Log filter in RUST_LOG syntax (e.g. `info`, `jetway=debug,info`).
    #[arg(
        long,
        env = "JETWAY_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log: String,

    /// Streams declared in the TOML file (`[[streams]]`), ensured at start-up.
    #[arg(skip)]
    pub streams: Vec<StreamSpec>,
}

/// A stream declared in the configuration file: `name` plus the fields of
/// `PUT /v1/streams/{stream}`.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Stream name.
    pub name: String,
    /// Its configuration, in the same shape as `PUT /v1/streams/{stream}`.
    pub config: StreamConfig,
}

impl StreamSpec {
    fn from_toml(value: toml::Value) -> Result<Self, String> {
        let toml::Value::Table(mut table) = value else {
            return Err("each [[streams]] entry must be a table".to_owned());
        };
        let name = match table.remove("name") {
            Some(toml::Value::String(name)) => name,
            _ => return Err("each [[streams]] entry needs name = \"...\"".to_owned()),
        };
        let config = StreamConfig::deserialize(toml::Value::Table(table))
            .map_err(|err| format!("stream '{name}': {err}"))?;
        Ok(Self { name, config })
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{0}")]
    Check(String),
}

impl Cli {
    /// Parses flags and environment, then fills what neither set from the `--config` file.
    pub fn load<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let command = Self::command();
        let matches = command.clone().try_get_matches_from(&args)?;
        let cli = Self::from_arg_matches(&matches)?;
        let Some(path) = cli.config.config.clone() else {
            cli.config.validate()?;
            return Ok(cli);
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut table: toml::Table = text.parse().map_err(|source| ConfigError::Toml {
            path: shown.clone(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: shown.clone(),
            message,
        };

        let streams = match table.remove("streams") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .map(StreamSpec::from_toml)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| invalid(format!("[[streams]]: {err}")))?,
            Some(_) => {
                return Err(invalid(
                    "'streams' must be an array of tables ([[streams]])".to_owned(),
                ));
            }
        };

        // Turn file keys into flags for the ones neither the command line nor the environment
        // set, inserted right after the program name so that a subcommand stays last.
        let mut extra: Vec<OsString> = Vec::new();
        for (key, value) in table {
            let id = key.replace('-', "_");
            let Some(arg) = command.get_arguments().find(|a| a.get_id() == id.as_str()) else {
                return Err(invalid(format!("unknown key '{key}'")));
            };
            if id == "config" {
                return Err(invalid(
                    "'config' cannot be set inside a config file".to_owned(),
                ));
            }
            if matches!(
                matches.value_source(&id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ) {
                continue;
            }
            let long = arg.get_long().unwrap_or(id.as_str()).to_owned();
            let takes_value = arg.get_action().takes_values();
            match value {
                toml::Value::Boolean(flag) if !takes_value => {
                    if flag {
                        extra.push(format!("--{long}").into());
                    }
                }
                toml::Value::Array(items) => {
                    let items: Result<Vec<String>, _> = items.iter().map(scalar).collect();
                    let items = items.map_err(|e| invalid(format!("key '{key}': {e}")))?;
                    extra.push(format!("--{long}={}", items.join(",")).into());
                }
                other => {
                    let text = scalar(&other).map_err(|e| invalid(format!("key '{key}': {e}")))?;
                    extra.push(format!("--{long}={text}").into());
                }
            }
        }
        let mut merged = Vec::with_capacity(args.len() + extra.len());
        merged.extend(args.first().cloned());
        merged.extend(extra);
        merged.extend(args.iter().skip(1).cloned());
        let mut cli = Self::try_parse_from(merged)?;
        cli.config.streams = streams;
        cli.config.validate()?;
        Ok(cli)
    }
}

fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "expected a string, number or boolean, found {}",
            other.type_str()
        )),
    }
}

impl Config {
    /// How to reach NATS.
    pub fn nats_connection(&self) -> crate::nats::Connection {
        crate::nats::Connection {
            servers: self.nats_url.clone(),
            creds: self.nats_creds.clone(),
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            token: self.nats_token.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            api_timeout: self.api_timeout,
            publish_timeout: self.publish_timeout,
        }
    }

    /// Checks what clap cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: &str| Err(ConfigError::Check(m.to_owned()));
        if self.nats_url.iter().all(|u| u.trim().is_empty()) {
            return fail("--nats-url needs at least one server URL");
        }
        if self.max_body_bytes == 0 || self.max_batch_bytes == 0 {
            return fail("--max-body-bytes and --max-batch-bytes must be greater than zero");
        }
        if self.max_batch_messages == 0
            || self.max_page_messages == 0
            || self.max_fetch_messages == 0
            || self.max_acks == 0
        {
            return fail(
                "--max-batch-messages, --max-page-messages, --max-fetch-messages and --max-acks \
                 must be greater than zero",
            );
        }
        if self.max_fetch_bytes == 0
            || self.ws_max_buffered_bytes == 0
            || self.ws_max_message_bytes == 0
        {
            return fail(
                "--max-fetch-bytes and the --ws-max-*-bytes limits must be greater than zero",
            );
        }
        if self.publish_stream_window == 0 {
            return fail("--publish-stream-window must be greater than zero");
        }
        if self.replay_batch == 0 || self.ws_max_subscriptions == 0 {
            return fail("--replay-batch and --ws-max-subscriptions must be greater than zero");
        }
        for interval in [
            self.consumer_metrics_interval,
            self.jwks_refresh,
            self.ws_ping_interval,
            self.ws_idle_timeout,
            self.replay_heartbeat,
            self.sse_keepalive,
        ] {
            if interval.is_zero() {
                return fail("WebSocket, SSE and replay intervals must be greater than zero");
            }
        }
        for timeout in [self.publish_timeout, self.api_timeout, self.ack_timeout] {
            if timeout.is_zero() {
                return fail(
                    "--publish-timeout, --api-timeout and --ack-timeout must be greater than zero",
                );
            }
        }
        if self.max_tcp_connections == 0 {
            return fail("--max-tcp-connections must be greater than zero");
        }
        if self.http2_max_streams == 0 {
            return fail("--http2-max-streams must be greater than zero");
        }
        if self.push_max_connections == 0 {
            return fail("--push-max-connections must be greater than zero");
        }
        crate::destinations::Destinations::parse(&self.push_allow, self.push_allow_http)
            .map_err(ConfigError::Check)?;
        for timeout in [
            self.header_read_timeout,
            self.body_idle_timeout,
            self.body_timeout,
        ] {
            if timeout.is_zero() {
                return fail(
                    "--header-read-timeout, --body-idle-timeout and --body-timeout must be \
                     greater than zero",
                );
            }
        }
        let mut names = std::collections::HashSet::new();
        for spec in &self.streams {
            crate::validate::name("stream", &spec.name)
                .map_err(|e| ConfigError::Check(format!("[[streams]]: {e}")))?;
            if !names.insert(spec.name.as_str()) {
                return Err(ConfigError::Check(format!(
                    "[[streams]]: stream '{}' is declared twice",
                    spec.name
                )));
            }
        }
        Ok(())
    }

    /// A configuration with every default, for tests and embedders.
    pub fn defaults() -> Self {
        // Parsing no arguments cannot fail: every field has a default.
        match Cli::try_parse_from(["jetway"]) {
            Ok(cli) => cli.config,
            Err(err) => unreachable!("defaults must parse: {err}"),
        }
    }
}

/// Parses a byte size: a plain number or one with a `B`, `KB`, `KiB`, `MB`, `MiB`, `GB`, `GiB`
/// suffix.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size '{text}': use e.g. 1048576, 512KiB or 1MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit '{other}': use B, KiB, MiB or GiB"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("size '{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("1XB").is_err());
        assert!(parse_bytes("").is_err());
    }

    #[test]
    fn defaults_are_safe() {
        let config = Config::defaults();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert!(!config.no_auth);
        assert_eq!(config.max_body_bytes, 1 << 20);
    }

    #[test]
    fn file_fills_what_flags_do_not_set() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "listen = \"127.0.0.1:9999\"\nnats_url = [\"nats://a:4222\", \"nats://b:4222\"]\n\
             no-auth = true\npublish_timeout = \"2s\"\n\
             [[streams]]\nname = \"ORDERS\"\nsubjects = [\"orders.>\"]\nmax_age = \"72h\"\n"
        )
        .unwrap();
        let path = file.path().to_str().unwrap().to_owned();
        let cli = Cli::load(["jetway", "--config", &path, "--listen", "0.0.0.0:1"]).unwrap();
        let config = cli.config;
        assert_eq!(config.listen.to_string(), "0.0.0.0:1", "flag beats file");
        assert_eq!(config.nats_url, ["nats://a:4222", "nats://b:4222"]);
        assert!(config.no_auth);
        assert_eq!(config.publish_timeout, Duration::from_secs(2));
        assert_eq!(config.streams.len(), 1);
        assert_eq!(config.streams[0].name, "ORDERS");
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "listne = \"127.0.0.1:9999\"").unwrap();
        let path = file.path().to_str().unwrap().to_owned();
        let err = Cli::load(["jetway", "--config", &path]).unwrap_err();
        assert!(err.to_string().contains("unknown key 'listne'"), "{err}");
    }
}
