//! Push subscriptions: jetway delivers a durable consumer's messages to an HTTPS endpoint.
//!
//! A push subscription is two things in JetStream, nothing in jetway's memory:
//! - a durable pull consumer named like the subscription, on its stream: the position,
//!   redelivery and pause state, shared by every replica and surviving restarts. Its
//!   `max_ack_pending` is the subscription's `max_in_flight`, so with `1` JetStream hands out one
//!   message at a time across all replicas (strict order), and its `ack_wait` outlasts a
//!   delivery's `timeout`, so a message is redelivered elsewhere only when the replica that had
//!   it is gone;
//! - a definition (URL, request headers, signing secret, retry policy) and a status record
//!   (counts, last outcome) in jetway's own key-value bucket [`BUCKET`], which client tokens can
//!   never read.
//!
//! This module owns the definitions and who may manage them; the delivery itself is the push
//! transport's.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::names::{ConsumerName, StreamName};
use crate::auth::Principal;
pub use crate::destinations::Destinations;
use crate::duration;
use crate::error::ApiError;
use crate::nats::Nats;
use crate::nats::consumers::{ConsumerConfig, DeliverFrom, PUSH_METADATA_KEY, PauseState};
use crate::nats::kv::{self, BucketConfig, Operation};
use crate::nats::messages::Start as PageStart;
use crate::state::AppState;
use crate::timestamp::format_time;

/// jetway's own key-value bucket: push definitions (`def.<stream>.<name>`) and their status
/// (`status.<stream>.<name>`). Never readable through the API (see
/// [`crate::validate::INTERNAL_BUCKET`]).
pub const BUCKET: &str = crate::validate::INTERNAL_BUCKET;

/// Default `timeout` of one delivery.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest and longest `timeout`.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// How much longer than `timeout` the consumer's `ack_wait` is: a replica that took a message
/// and died releases it after this plus the timeout.
pub const ACK_WAIT_MARGIN: Duration = Duration::from_secs(5);
/// Default and largest `max_deliver`.
pub const DEFAULT_MAX_DELIVER: u64 = 10;
pub const MAX_MAX_DELIVER: u64 = 10_000;
/// Default and largest `max_in_flight`.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1;
pub const MAX_MAX_IN_FLIGHT: u32 = 1_000;
/// Default retry delays (the last repeats).
pub const DEFAULT_BACKOFF: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];
/// Longest retry delay (also caps a receiver's `Retry-After`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Most `backoff` steps.
pub const MAX_BACKOFF_STEPS: usize = 50;
/// Most request headers, and their total size.
pub const MAX_HEADERS: usize = 32;
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most push subscriptions listed per stream.
pub const MAX_LISTED: usize = 1_000;
/// Bytes of a generated signing secret, and the bounds of a given one.
const SECRET_BYTES: usize = 32;
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;
/// The prefix of Standard Webhooks secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// The end of a pause "until resumed" (JetStream keeps times in nanoseconds, up to 2262, and
/// has no open-ended pause). Shown as a pause without an end.
pub const PAUSE_FOREVER: &str = "2200-01-01T00:00:00Z";

/// A pause state as the push API shows it: a pause until resumed has no end.
fn shown_pause(mut pause: PauseState) -> PauseState {
    if pause
        .pause_until
        .as_deref()
        .is_some_and(|until| until >= PAUSE_FOREVER)
    {
        pause.pause_until = None;
        pause.pause_remaining = None;
    }
    pause
}

/// Longest error text kept in the status.
pub const MAX_ERROR_LEN: usize = 512;

/// Request headers jetway sets itself; a subscription's `headers` may not name them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "expect",
];
/// Header name prefixes jetway sets itself.
const RESERVED_HEADER_PREFIXES: &[&str] = &["webhook-", "jetway-", "x-msg-"];

/// A push subscription as it is created or replaced (`PUT`). Durations are strings such as
/// `10s`, `5m`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://hooks.example.com/orders",
    "filter_subjects": ["orders.>"],
    "max_in_flight": 1,
    "timeout": "10s",
    "max_deliver": 10,
    "backoff": ["1s", "5s", "30s", "2m", "10m"],
    "dead_letter_subject": "dlq.orders",
    "headers": {"Authorization": "Bearer receiver-token"}
}))]
pub struct PushConfig {
    /// Where each message is POSTed: `https://…` (`http://` only when the gateway runs with
    /// `--push-allow-http`), on a host that `--push-allow` admits.
    pub url: String,
    /// Only messages on these subjects (wildcards allowed). Default: every subject of the
    /// stream (a tenant: its whole namespace).
    #[serde(default)]
    pub filter_subjects: Vec<String>,
    /// Where a new subscription starts (on update it must stay as it was).
    #[serde(default)]
    pub deliver_policy: DeliverFrom,
    /// First stream sequence, with `deliver_policy: by_start_sequence`.
    #[serde(default, deserialize_with = "crate::json::whole::option")]
    pub opt_start_seq: Option<u64>,
    /// Start time (RFC 3339), with `deliver_policy: by_start_time`.
    #[serde(default)]
    pub opt_start_time: Option<String>,
    /// Most messages being delivered at once, across every jetway replica. `1` (the default)
    /// delivers strictly in order: the next message goes out once the previous one was
    /// accepted or dead-lettered.
    #[serde(default, deserialize_with = "crate::json::whole::option")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_in_flight: Option<u64>,
    /// How long one delivery may take before it counts as failed. Default `10s`, at most `60s`.
    #[serde(default, with = "duration::option")]
    #[schema(value_type = Option<String>, example = "10s")]
    pub timeout: Option<Duration>,
    /// Deliveries of one message before it is dead-lettered (or dropped without a
    /// `dead_letter_subject`). Default 10.
    #[serde(default, deserialize_with = "crate::json::whole::option")]
    #[schema(minimum = 1, maximum = 10000)]
    pub max_deliver: Option<u64>,
    /// Delay before each retry, one per failed delivery (the last repeats). A receiver's
    /// `Retry-After` lengthens it. Default `["1s", "5s", "30s", "2m", "10m"]`.
    #[serde(default, with = "duration::option_list")]
    #[schema(value_type = Option<Vec<String>>, example = json!(["1s", "5s", "30s"]))]
    pub backoff: Option<Vec<Duration>>,
    /// Subject that receives a copy of each message given up on, with the last status and
    /// error in `Jetway-Push-Last-Status` and `Jetway-Push-Last-Error` (a stream must capture
    /// it to keep the copies).
    #[serde(default)]
    pub dead_letter_subject: Option<String>,
    /// Dead-letter at once when the receiver answers a 4xx other than 408 and 429 (default:
    /// retry those too).
    #[serde(default)]
    pub dead_letter_on_client_error: bool,
    /// Request headers sent with every delivery, e.g. the receiver's own `Authorization`.
    /// Stored as secrets: never shown back (`header_names` lists their names). On update,
    /// leaving the field out keeps the stored headers; `{}` removes them.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// The Standard Webhooks signing secret, `whsec_` + base64 of 24 to 64 bytes. Generated when
    /// a subscription is created without one, and shown once in that answer. On update, leaving
    /// it out keeps the stored secret.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A push subscription's settings as they are shown (never its headers' values or secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushSettings {
    pub url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    pub deliver_policy: DeliverFrom,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    pub max_in_flight: u64,
    #[schema(value_type = String, example = "10s")]
    #[serde(with = "duration::required")]
    pub timeout: Duration,
    pub max_deliver: u64,
    #[schema(value_type = Vec<String>, example = json!(["1s", "5s", "30s"]))]
    #[serde(with = "duration::list")]
    pub backoff: Vec<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_subject: Option<String>,
    pub dead_letter_on_client_error: bool,
    /// Names of the stored request headers (their values are secrets).
    pub header_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What the deliveries of a push subscription look like now.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PushState {
    /// Deliveries are paused (`PUT …/pause`).
    pub paused: bool,
    /// When the pause ends (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
    /// Messages not yet delivered.
    pub lag: u64,
    /// Messages delivered (or being delivered) and not yet accepted, including those waiting
    /// for a retry.
    pub in_flight: u64,
    /// Delivery attempts, counting retries.
    pub delivered: u64,
    /// Attempts the receiver accepted (2xx): each such message is acknowledged.
    pub acked: u64,
    /// Attempts that failed (timeout, connection error, non-2xx answer).
    pub failed: u64,
    /// Messages given up on after `max_deliver` (or at once on a 4xx with
    /// `dead_letter_on_client_error`).
    pub dead_lettered: u64,
    /// HTTP status of the last attempt; absent when it got no answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Why the last attempt failed; absent when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u64,
    /// Why jetway cannot deliver at all right now (the consumer or stream is gone, the
    /// destination is no longer allowed); absent while it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A push subscription: its settings and state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushInfo {
    pub stream: String,
    pub name: String,
    pub config: PushSettings,
    pub state: PushState,
    /// When it was created (RFC 3339).
    pub created: String,
    /// The signing secret: only in the answer that generated it. Keep it; it is never shown
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A stream's push subscriptions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushList {
    pub push: Vec<PushInfo>,
}

/// A push subscription as jetway stores it, secrets included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub stream: String,
    pub name: String,
    pub url: String,
    /// The consumer's filters as stored (a tenant's: with its prefix).
    pub filters: Vec<String>,
    /// The creator's tenant prefix: subjects are shown without it.
    #[serde(default)]
    pub prefix: Option<String>,
    pub max_in_flight: u64,
    #[serde(with = "duration::required")]
    pub timeout: Duration,
    pub max_deliver: u64,
    #[serde(with = "duration::list")]
    pub backoff: Vec<Duration>,
    #[serde(default)]
    pub dead_letter_subject: Option<String>,
    #[serde(default)]
    pub dead_letter_on_client_error: bool,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub secret: String,
    #[serde(default)]
    pub description: Option<String>,
    pub created: String,
}

impl Definition {
    /// The delay before retry number `failures` (1 = after the first failed delivery).
    pub fn retry_delay(&self, failures: u64) -> Duration {
        let index = usize::try_from(failures.saturating_sub(1)).unwrap_or(usize::MAX);
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }

    /// A stored subject as the creator names it.
    pub fn shown<'a>(&self, subject: &'a str) -> &'a str {
        crate::auth::shown_under(self.prefix.as_deref(), subject)
    }

    /// The signing key: the secret's bytes.
    pub fn signing_key(&self) -> Vec<u8> {
        decode_secret(&self.secret).unwrap_or_default()
    }
}

/// The outcome counts of a subscription's deliveries, as one replica adds them up between two
/// writes of the status record (and as the record holds them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub delivered: u64,
    pub acked: u64,
    pub failed: u64,
    pub dead_lettered: u64,
    #[serde(default)]
    pub last_status: Option<u16>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_success_at: Option<OffsetDateTime>,
    /// In the record: failures since the last success. In a replica's delta: failures since
    /// its own last success (all of them when it had none).
    pub consecutive_failures: u64,
}

impl Counts {
    pub fn is_empty(&self) -> bool {
        self.delivered == 0 && self.dead_lettered == 0
    }

    /// Records one attempt.
    pub fn attempt(&mut self, status: Option<u16>, error: Option<String>) {
        let now = OffsetDateTime::now_utc();
        self.delivered += 1;
        self.last_status = status;
        self.last_attempt_at = Some(now);
        match error {
            None => {
                self.acked += 1;
                self.last_error = None;
                self.last_success_at = Some(now);
                self.consecutive_failures = 0;
            }
            Some(error) => {
                self.failed += 1;
                self.last_error = Some(truncate(error, MAX_ERROR_LEN));
                self.consecutive_failures += 1;
            }
        }
    }

    /// Adds a replica's `delta` to the record.
    pub fn merge(&mut self, delta: &Self) {
        self.delivered += delta.delivered;
        self.acked += delta.acked;
        self.failed += delta.failed;
        self.dead_lettered += delta.dead_lettered;
        let newer = match (delta.last_attempt_at, self.last_attempt_at) {
            (Some(theirs), Some(ours)) => theirs >= ours,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if newer {
            self.last_status = delta.last_status;
            self.last_error.clone_from(&delta.last_error);
            self.last_attempt_at = delta.last_attempt_at;
        }
        if delta.last_success_at > self.last_success_at {
            self.last_success_at = delta.last_success_at;
        }
        self.consecutive_failures = if delta.last_success_at.is_some() {
            delta.consecutive_failures
        } else {
            self.consecutive_failures + delta.consecutive_failures
        };
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Secrets and headers

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
fn generate_secret() -> Result<String, ApiError> {
    let mut key = [0u8; SECRET_BYTES];
    getrandom::fill(&mut key).map_err(|err| ApiError::internal("random signing secret", err))?;
    Ok(format!("{SECRET_PREFIX}{}", BASE64.encode(key)))
}

fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let body = secret.strip_prefix(SECRET_PREFIX)?;
    BASE64
        .decode(body)
        .ok()
        .filter(|k| (MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&k.len()))
}

fn check_secret(secret: &str) -> Result<(), ApiError> {
    if decode_secret(secret).is_some() {
        Ok(())
    } else {
        Err(ApiError::InvalidConfig {
            detail: format!(
                "secret must be '{SECRET_PREFIX}' followed by the standard base64 of \
                 {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes (leave it out to have one generated)"
            ),
            jetstream_code: None,
        })
    }
}

fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let invalid = |detail: String| ApiError::InvalidConfig {
        detail,
        jetstream_code: None,
    };
    if headers.len() > MAX_HEADERS {
        return Err(invalid(format!(
            "{} headers; at most {MAX_HEADERS} are accepted",
            headers.len()
        )));
    }
    let total: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_HEADER_BYTES {
        return Err(invalid(format!(
            "headers hold {total} bytes; at most {MAX_HEADER_BYTES} are accepted"
        )));
    }
    for (name, value) in headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(invalid(format!("headers: '{name}' is not a header name")));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(invalid(format!(
                "headers: the value of '{name}' holds characters a header cannot carry"
            )));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str())
            || RESERVED_HEADER_PREFIXES
                .iter()
                .any(|p| lower.starts_with(p))
        {
            return Err(invalid(format!(
                "headers: '{name}' is set by jetway itself (reserved: {}, and names starting \
                 with {})",
                RESERVED_HEADERS.join(", "),
                RESERVED_HEADER_PREFIXES.join(", ")
            )));
        }
    }
    Ok(())
}

fn check_bounds(config: &PushConfig) -> Result<(), ApiError> {
    let invalid = |detail: String| ApiError::InvalidConfig {
        detail,
        jetstream_code: None,
    };
    if let Some(n) = config.max_in_flight
        && !(1..=u64::from(MAX_MAX_IN_FLIGHT)).contains(&n)
    {
        return Err(invalid(format!(
            "max_in_flight of {n} is outside 1..={MAX_MAX_IN_FLIGHT}"
        )));
    }
    if let Some(t) = config.timeout
        && !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&t)
    {
        return Err(invalid(format!(
            "timeout of {} is outside {}..={}",
            duration::format(t),
            duration::format(MIN_TIMEOUT),
            duration::format(MAX_TIMEOUT)
        )));
    }
    if let Some(n) = config.max_deliver
        && !(1..=MAX_MAX_DELIVER).contains(&n)
    {
        return Err(invalid(format!(
            "max_deliver of {n} is outside 1..={MAX_MAX_DELIVER}"
        )));
    }
    if let Some(backoff) = &config.backoff {
        if backoff.is_empty() || backoff.len() > MAX_BACKOFF_STEPS {
            return Err(invalid(format!(
                "backoff needs 1 to {MAX_BACKOFF_STEPS} steps"
            )));
        }
        if let Some((i, step)) = backoff.iter().enumerate().find(|(_, s)| **s > MAX_BACKOFF) {
            return Err(invalid(format!(
                "backoff[{i}] of {} is longer than {}",
                duration::format(*step),
                duration::format(MAX_BACKOFF)
            )));
        }
    }
    for filter in &config.filter_subjects {
        if crate::validate::is_reserved(filter) {
            return Err(invalid(format!(
                "filter_subjects: '{filter}' is a subject of NATS itself, never a stream's"
            )));
        }
    }
    if let Some(description) = &config.description
        && description.len() > 4096
    {
        return Err(invalid("description is longer than 4096 bytes".to_owned()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Storage

fn def_key(stream: &str, name: &str) -> String {
    format!("def.{stream}.{name}")
}

fn status_key(stream: &str, name: &str) -> String {
    format!("status.{stream}.{name}")
}

/// The subject filter of every definition (what the push transport watches).
pub fn definitions_filter() -> String {
    kv::subject_of(BUCKET, "def.>")
}

/// `(stream, name)` of a definition's subject.
pub fn definition_of_subject(subject: &str) -> Option<(String, String)> {
    let rest = subject.strip_prefix(&format!("$KV.{BUCKET}.def."))?;
    let (stream, name) = rest.split_once('.')?;
    Some((stream.to_owned(), name.to_owned()))
}

/// Creates jetway's bucket when it is missing: three replicas where the cluster has them, one
/// on a single server.
pub async fn ensure_bucket(nats: &Nats) -> Result<(), ApiError> {
    match nats.bucket_info(BUCKET).await {
        Ok(_) => return Ok(()),
        Err(ApiError::BucketNotFound(_)) => {}
        Err(err) => return Err(err),
    }
    let mut config = BucketConfig {
        history: 1,
        replicas: 3,
        description: Some("jetway: push subscriptions and their status".to_owned()),
        ..BucketConfig::default()
    };
    match nats.put_bucket(BUCKET, &config).await {
        Ok(_) => Ok(()),
        Err(ApiError::Unavailable(_) | ApiError::Timeout(_)) => Err(ApiError::Unavailable(
            "jetway's push bucket could not be created yet".to_owned(),
        )),
        Err(first) => {
            tracing::debug!(error = %first, "push bucket with 3 replicas refused; using 1");
            config.replicas = 1;
            nats.put_bucket(BUCKET, &config).await.map(|_| ())
        }
    }
}

/// A definition and the revision of its key; `None` when there is none.
pub async fn load(
    nats: &Nats,
    stream: &str,
    name: &str,
) -> Result<Option<(Definition, u64)>, ApiError> {
    let (value, revision) = read(nats, &def_key(stream, name)).await?;
    Ok(value.zip(revision))
}

/// A record's value (`None` when it has none: never written, deleted or purged) and the
/// revision of its key's last entry, whatever that was (`None` when it has none).
async fn read<T: for<'de> Deserialize<'de>>(
    nats: &Nats,
    key: &str,
) -> Result<(Option<T>, Option<u64>), ApiError> {
    let message = match nats
        .last_message(&kv::stream_of(BUCKET), &kv::subject_of(BUCKET, key))
        .await
    {
        Ok(message) => message,
        Err(ApiError::MessageNotFound(_) | ApiError::StreamNotFound(_)) => return Ok((None, None)),
        Err(err) => return Err(err),
    };
    if Operation::of(&message.headers) != Operation::Put {
        return Ok((None, Some(message.sequence)));
    }
    let value = serde_json::from_slice(&message.payload)
        .map_err(|err| ApiError::internal(&format!("stored push record '{key}'"), err))?;
    Ok((Some(value), Some(message.sequence)))
}

/// Writes `key` when it is still at `revision` (`None`: when it has no value); `false` when
/// another write came first.
async fn write<T: Serialize>(
    nats: &Nats,
    key: &str,
    value: &T,
    revision: Option<u64>,
) -> Result<bool, ApiError> {
    let payload =
        serde_json::to_vec(value).map_err(|err| ApiError::internal("push record", err))?;
    let mut entry = kv::entry(BUCKET, key, Operation::Put, Bytes::from(payload));
    entry.expected_last_subject_sequence(revision.unwrap_or(0))?;
    match nats.publish(entry).await {
        Ok(_) => Ok(true),
        Err(ApiError::PreconditionFailed { .. }) => Ok(false),
        Err(err) => Err(err),
    }
}

async fn remove(nats: &Nats, key: &str) -> Result<(), ApiError> {
    let entry = kv::entry(BUCKET, key, Operation::Purge, Bytes::new());
    match nats.publish(entry).await {
        Ok(_) | Err(ApiError::StreamNotFound(_) | ApiError::SubjectNotCaptured(_)) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Adds a replica's counts to the status record of the subscription `definition` describes
/// (compare-and-set, retried). Counts of a subscription that was deleted, or deleted and
/// created again (another `created`), since the worker started are dropped: they would bring
/// a deleted record back, or mix into the new subscription's.
pub async fn record(nats: &Nats, definition: &Definition, delta: &Counts) -> Result<(), ApiError> {
    let (stream, name) = (&definition.stream, &definition.name);
    match load(nats, stream, name).await? {
        Some((current, _)) if current.created == definition.created => {}
        _ => return Ok(()),
    }
    let key = status_key(stream, name);
    for _ in 0..8 {
        let (counts, revision) = read::<Counts>(nats, &key).await?;
        let mut counts = counts.unwrap_or_default();
        counts.merge(delta);
        if write(nats, &key, &counts, revision).await? {
            return Ok(());
        }
    }
    Err(ApiError::Unavailable(format!(
        "the status of push '{stream}/{name}' changed too often to be updated"
    )))
}

// ---------------------------------------------------------------------------------------------
// Operations

/// Checks that `who` may manage the subscription `definition`: an administrator, and a tenant
/// only its own (created inside its namespace, so its filters are too).
fn check_owner(who: &Principal, definition: &Definition) -> Result<(), ApiError> {
    who.check_admin()?;
    if who.tenant().is_some() && who.tenant() != definition.prefix.as_deref() {
        return Err(ApiError::Forbidden(format!(
            "push '{}' on stream '{}' belongs to another namespace",
            definition.name, definition.stream
        )));
    }
    Ok(())
}

fn not_found(stream: &str, name: &str) -> ApiError {
    ApiError::PushNotFound(format!(
        "stream '{stream}' has no push subscription '{name}'"
    ))
}

/// Creates or updates a push subscription (administrators only); `true` when it was created.
/// The answer to a creation carries the signing secret, once.
pub async fn put(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    name: &ConsumerName,
    config: PushConfig,
) -> Result<(PushInfo, bool), ApiError> {
    who.check_admin()?;
    check_bounds(&config)?;
    state.push_destinations.check_url(&config.url).await?;
    if let Some(headers) = &config.headers {
        check_headers(headers)?;
    }
    if let Some(secret) = &config.secret {
        check_secret(secret)?;
    }
    ensure_bucket(&state.nats).await?;
    let (stored, revision) = read::<Definition>(&state.nats, &def_key(stream, name)).await?;
    let existing = stored.zip(revision);
    if let Some((old, _)) = &existing {
        check_owner(who, old)?;
    }
    // The consumer: the same name, refused when it is an ordinary consumer.
    match state.nats.consumer_info(stream, name).await {
        Ok(info) if !info.config.metadata.contains_key(PUSH_METADATA_KEY) => {
            return Err(ApiError::ConsumerConflict {
                detail: format!(
                    "stream '{stream}' has a consumer '{name}' that is not a push subscription; \
                     choose another name"
                ),
                jetstream_code: None,
            });
        }
        Ok(_) | Err(ApiError::ConsumerNotFound { .. }) => {}
        Err(err) => return Err(err),
    }
    let filters = who.filters_in(&config.filter_subjects);
    let dead_letter_subject = config
        .dead_letter_subject
        .as_deref()
        .map(|s| who.subject_in(s));
    let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let max_in_flight = config
        .max_in_flight
        .unwrap_or(u64::from(DEFAULT_MAX_IN_FLIGHT));
    let max_deliver = config.max_deliver.unwrap_or(DEFAULT_MAX_DELIVER);
    let consumer = ConsumerConfig {
        deliver_policy: config.deliver_policy,
        opt_start_seq: config.opt_start_seq,
        opt_start_time: config.opt_start_time.clone(),
        filter_subjects: filters.clone(),
        ack_wait: Some(timeout + ACK_WAIT_MARGIN),
        max_deliver: Some(max_deliver),
        backoff: Vec::new(),
        max_ack_pending: Some(max_in_flight),
        max_waiting: None,
        inactive_threshold: None,
        description: Some(format!("jetway push subscription '{name}'")),
        metadata: BTreeMap::new(),
        dead_letter_subject: dead_letter_subject.clone(),
        priority_policy: Default::default(),
        priority_groups: Vec::new(),
        priority_timeout: None,
        pause_until: None,
    };
    let (info, _) = state
        .nats
        .put_push_consumer(stream, name, &consumer)
        .await?;
    state.dead_letters.forget(stream, name);
    let (generated, secret) = match (&config.secret, &existing) {
        (Some(given), _) => (false, given.clone()),
        (None, Some((old, _))) => (false, old.secret.clone()),
        (None, None) => (true, generate_secret()?),
    };
    let definition = Definition {
        stream: stream.to_string(),
        name: name.to_string(),
        url: config.url.clone(),
        filters,
        prefix: who.tenant().map(str::to_owned),
        max_in_flight,
        timeout,
        max_deliver,
        backoff: config
            .backoff
            .clone()
            .unwrap_or_else(|| DEFAULT_BACKOFF.to_vec()),
        dead_letter_subject,
        dead_letter_on_client_error: config.dead_letter_on_client_error,
        headers: match (&config.headers, &existing) {
            (Some(given), _) => given.clone(),
            (None, Some((old, _))) => old.headers.clone(),
            (None, None) => BTreeMap::new(),
        },
        secret,
        description: config.description.clone(),
        created: existing.as_ref().map_or_else(
            || format_time(OffsetDateTime::now_utc()),
            |(old, _)| old.created.clone(),
        ),
    };
    if existing.is_none() {
        // A subscription created again starts with fresh counts.
        remove(&state.nats, &status_key(stream, name)).await?;
    }
    if !write(&state.nats, &def_key(stream, name), &definition, revision).await? {
        return Err(ApiError::ConsumerConflict {
            detail: format!(
                "push '{name}' on stream '{stream}' was changed by another request at the same \
                 time; read it and try again"
            ),
            jetstream_code: None,
        });
    }
    state.push_saved.notify_one();
    tracing::info!(
        stream.name = %stream,
        push.name = %name,
        push.url = %definition.url,
        created = existing.is_none(),
        principal = %who.id,
        "push subscription saved"
    );
    let mut shown = view(&definition, Ok(&info), None);
    if generated {
        shown.secret = Some(definition.secret.clone());
    }
    Ok((shown, existing.is_none()))
}

/// The API view of a definition with its status and, when it still exists, its consumer's
/// state (without it, the start position reads `all` and `problem` says what is wrong).
fn view(
    definition: &Definition,
    consumer: Result<&async_nats::jetstream::consumer::Info, String>,
    counts: Option<Counts>,
) -> PushInfo {
    let counts = counts.unwrap_or_default();
    let start = consumer
        .as_ref()
        .map(|info| ConsumerConfig::from_nats(&info.config))
        .ok();
    let mut state = PushState {
        delivered: counts.delivered,
        acked: counts.acked,
        failed: counts.failed,
        dead_lettered: counts.dead_lettered,
        last_status: counts.last_status,
        last_error: counts.last_error,
        last_attempt_at: counts.last_attempt_at.map(format_time),
        last_success_at: counts.last_success_at.map(format_time),
        consecutive_failures: counts.consecutive_failures,
        ..PushState::default()
    };
    match consumer {
        Ok(info) => {
            let pause = shown_pause(PauseState::of(info));
            state.paused = pause.paused;
            state.pause_until = pause.pause_until;
            state.lag = info.num_pending;
            state.in_flight = u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX);
        }
        Err(problem) => state.problem = Some(problem),
    }
    let shown = |subject: &String| definition.shown(subject).to_owned();
    PushInfo {
        stream: definition.stream.clone(),
        name: definition.name.clone(),
        config: PushSettings {
            url: definition.url.clone(),
            filter_subjects: definition.filters.iter().map(shown).collect(),
            deliver_policy: start
                .as_ref()
                .map_or(DeliverFrom::All, |c| c.deliver_policy),
            opt_start_seq: start.as_ref().and_then(|c| c.opt_start_seq),
            opt_start_time: start.and_then(|c| c.opt_start_time),
            max_in_flight: definition.max_in_flight,
            timeout: definition.timeout,
            max_deliver: definition.max_deliver,
            backoff: definition.backoff.clone(),
            dead_letter_subject: definition.dead_letter_subject.as_ref().map(shown),
            dead_letter_on_client_error: definition.dead_letter_on_client_error,
            header_names: definition.headers.keys().cloned().collect(),
            description: definition.description.clone(),
        },
        state,
        created: definition.created.clone(),
        secret: None,
    }
}

async fn describe(state: &AppState, definition: &Definition) -> Result<PushInfo, ApiError> {
    let (counts, _) = read::<Counts>(
        &state.nats,
        &status_key(&definition.stream, &definition.name),
    )
    .await?;
    match state
        .nats
        .consumer_info(&definition.stream, &definition.name)
        .await
    {
        Ok(info) => Ok(view(definition, Ok(&info), counts)),
        Err(err @ (ApiError::ConsumerNotFound { .. } | ApiError::StreamNotFound(_))) => Ok(view(
            definition,
            Err(format!(
                "{err}; nothing is delivered (PUT the subscription again, or DELETE it)"
            )),
            counts,
        )),
        Err(err) => Err(err),
    }
}

/// One push subscription with its state.
pub async fn get(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    name: &ConsumerName,
) -> Result<PushInfo, ApiError> {
    who.check_admin()?;
    let (definition, _) = load(&state.nats, stream, name)
        .await?
        .ok_or_else(|| not_found(stream, name))?;
    check_owner(who, &definition)?;
    describe(state, &definition).await
}

/// The push subscriptions of `stream` that `who` may manage.
pub async fn list(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
) -> Result<Vec<PushInfo>, ApiError> {
    who.check_admin()?;
    // The stream must exist, as for consumers.
    state.nats.stream_info(stream).await?;
    let subject = kv::subject_of(BUCKET, &format!("def.{stream}.*"));
    let page = match state
        .nats
        .page(
            &kv::stream_of(BUCKET),
            PageStart::Sequence(1),
            Some(&subject),
            MAX_LISTED,
        )
        .await
    {
        Ok(page) => page,
        Err(ApiError::StreamNotFound(_)) => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut found = Vec::new();
    for message in page.messages {
        if Operation::of(&message.headers) != Operation::Put {
            continue;
        }
        let Ok(definition) = serde_json::from_slice::<Definition>(&message.payload) else {
            continue;
        };
        if check_owner(who, &definition).is_err() {
            continue;
        }
        found.push(describe(state, &definition).await?);
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Deletes a push subscription: its definition, status and consumer.
pub async fn delete(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    name: &ConsumerName,
) -> Result<(), ApiError> {
    who.check_admin()?;
    let (definition, _) = load(&state.nats, stream, name)
        .await?
        .ok_or_else(|| not_found(stream, name))?;
    check_owner(who, &definition)?;
    // The definition first: every replica stops delivering when it disappears.
    remove(&state.nats, &def_key(stream, name)).await?;
    match state.nats.delete_consumer(stream, name).await {
        Ok(()) | Err(ApiError::ConsumerNotFound { .. } | ApiError::StreamNotFound(_)) => {}
        Err(err) => return Err(err),
    }
    state.dead_letters.forget(stream, name);
    remove(&state.nats, &status_key(stream, name)).await?;
    tracing::info!(stream.name = %stream, push.name = %name, principal = %who.id, "push subscription deleted");
    Ok(())
}

/// Pauses deliveries until `until` (RFC 3339; [`PAUSE_FOREVER`]: until resumed), or resumes
/// them (`None`).
pub async fn pause(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    name: &ConsumerName,
    until: Option<&str>,
) -> Result<PauseState, ApiError> {
    who.check_admin()?;
    let until = until
        .map(|text| {
            crate::timestamp::parse_time(text)
                .map_err(|err| ApiError::InvalidBody(format!("pause_until: {err}")))
        })
        .transpose()?;
    let (definition, _) = load(&state.nats, stream, name)
        .await?
        .ok_or_else(|| not_found(stream, name))?;
    check_owner(who, &definition)?;
    let answer = shown_pause(state.nats.pause_consumer(stream, name, until).await?);
    tracing::info!(stream.name = %stream, push.name = %name, paused = answer.paused, principal = %who.id, "push pause changed");
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_repeat_the_last_step() {
        let definition = Definition {
            stream: "S".into(),
            name: "p".into(),
            url: "https://x".into(),
            filters: Vec::new(),
            prefix: None,
            max_in_flight: 1,
            timeout: DEFAULT_TIMEOUT,
            max_deliver: 5,
            backoff: vec![Duration::from_secs(1), Duration::from_secs(5)],
            dead_letter_subject: None,
            dead_letter_on_client_error: false,
            headers: BTreeMap::new(),
            secret: String::new(),
            description: None,
            created: String::new(),
        };
        assert_eq!(definition.retry_delay(1), Duration::from_secs(1));
        assert_eq!(definition.retry_delay(2), Duration::from_secs(5));
        assert_eq!(definition.retry_delay(9), Duration::from_secs(5));
    }

    #[test]
    fn status_merge_keeps_the_newest_outcome() {
        let mut record = Counts::default();
        let mut a = Counts::default();
        a.attempt(Some(500), Some("HTTP 500".into()));
        a.attempt(Some(500), Some("HTTP 500".into()));
        record.merge(&a);
        assert_eq!((record.failed, record.consecutive_failures), (2, 2));
        let mut b = Counts::default();
        b.attempt(Some(503), Some("HTTP 503".into()));
        record.merge(&b);
        assert_eq!(record.consecutive_failures, 3);
        let mut c = Counts::default();
        c.attempt(Some(200), None);
        record.merge(&c);
        assert_eq!(
            (
                record.delivered,
                record.acked,
                record.failed,
                record.consecutive_failures
            ),
            (4, 1, 3, 0)
        );
        assert_eq!(record.last_status, Some(200));
        assert!(record.last_error.is_none());
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets() {
        let secret = generate_secret().expect("random");
        assert!(secret.starts_with(SECRET_PREFIX));
        assert_eq!(decode_secret(&secret).map(|k| k.len()), Some(SECRET_BYTES));
        assert!(check_secret("whsec_dG9vIHNob3J0").is_err());
        assert!(check_secret("plain").is_err());
    }
}
