//! Stream administration: the API's stream model, its mapping onto JetStream's configuration,
//! and create-or-update with an honest answer (created, updated, unchanged, or a conflict).
//!
//! The API model covers the fields users set every day. Fields it does not model (sources,
//! mirrors, republish, placement…) are preserved on update, so a stream tuned with the `nats`
//! CLI is never silently reset by a `PUT`.

use std::time::Duration;

use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{Nats, Op};
use crate::duration;
use crate::error::ApiError;
use crate::timestamp::format_time;

/// JetStream's duplicate window when a stream does not set one.
const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How messages are retained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Keep messages until a limit (age, count, bytes) removes them.
    #[default]
    Limits,
    /// Keep messages while some consumer still has to see them.
    Interest,
    /// Remove each message once a consumer acknowledged it.
    Workqueue,
}

/// Where messages are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk: survives restarts.
    #[default]
    File,
    /// In memory: fast, lost when the servers restart.
    Memory,
}

/// What happens when a limit is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Remove the oldest messages to make room.
    #[default]
    Old,
    /// Refuse new messages.
    New,
}

/// A stream's configuration. Omitted limits are unlimited; durations are strings such as
/// `500ms`, `30s`, `5m`, `72h`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "subjects": ["orders.>"],
    "retention": "limits",
    "storage": "file",
    "replicas": 1,
    "max_age": "72h",
    "duplicate_window": "2m",
    "allow_msg_ttl": true,
    "description": "Order events"
}))]
pub struct StreamConfig {
    /// Subjects (wildcards allowed) whose messages the stream stores. Default: the stream name.
    #[serde(default)]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub storage: Storage,
    /// Number of replicas (1, 3 or 5 on a cluster).
    #[serde(default = "one", deserialize_with = "crate::json::whole::required")]
    pub replicas: usize,
    /// Oldest message age kept.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "72h")]
    pub max_age: Option<Duration>,
    /// Most bytes kept.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_bytes: Option<u64>,
    /// Most messages kept.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_msgs: Option<u64>,
    /// Most messages kept per subject.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_msgs_per_subject: Option<u64>,
    /// Largest message accepted, in bytes.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_msg_size: Option<u32>,
    #[serde(default)]
    pub discard: Discard,
    /// How long an `Idempotency-Key` is remembered. Default `2m` (or `max_age` if shorter).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "2m")]
    pub duplicate_window: Option<Duration>,
    /// Accept a per-message TTL (`Nats-TTL` header).
    #[serde(default)]
    pub allow_msg_ttl: bool,
    /// Accept atomic batch publishes (`POST /v1/publish?atomic=true`).
    #[serde(default)]
    pub allow_atomic: bool,
    /// Keep counters (`POST /v1/streams/{stream}/counters/{subject}`): every message is an
    /// increment and holds the subject's running total. Fixed at creation; not with
    /// `allow_msg_ttl`, `discard: new` or a retention other than `limits`.
    #[serde(default)]
    pub allow_msg_counter: bool,
    /// Hold message schedules (`PUT /v1/streams/{stream}/schedules/{subject}`): delayed and
    /// repeating messages JetStream publishes itself. Cannot be turned off once on; not with
    /// `allow_msg_counter`.
    #[serde(default)]
    pub allow_msg_schedules: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn one() -> usize {
    1
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            subjects: Vec::new(),
            retention: Retention::Limits,
            storage: Storage::File,
            replicas: 1,
            max_age: None,
            max_bytes: None,
            max_msgs: None,
            max_msgs_per_subject: None,
            max_msg_size: None,
            discard: Discard::Old,
            duplicate_window: None,
            allow_msg_ttl: false,
            allow_atomic: false,
            allow_msg_counter: false,
            allow_msg_schedules: false,
            description: None,
        }
    }
}

/// A stream's state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamState {
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Sequence of the oldest stored message (0 when empty).
    pub first_seq: u64,
    /// Time of the oldest stored message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_time: Option<String>,
    /// Sequence of the newest message ever stored.
    pub last_seq: u64,
    /// Time of the newest stored message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time: Option<String>,
    /// Consumers on the stream.
    pub consumer_count: usize,
    /// Distinct subjects stored.
    pub num_subjects: u64,
    /// Deleted messages inside the stored range.
    pub num_deleted: u64,
}

/// A stream: configuration and state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamInfo {
    pub name: String,
    pub config: StreamConfig,
    pub state: StreamState,
    /// When the stream was created.
    pub created: String,
}

/// The streams.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamList {
    pub streams: Vec<StreamInfo>,
}

/// What to purge. All fields optional; an empty body purges every message.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"subject": "orders.eu.>", "keep": 10}))]
pub struct PurgeRequest {
    /// Only messages on this subject (wildcards allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Keep this many newest messages (with `subject`: of the messages it matches, taken
    /// together, not per subject). Not with `up_to_seq`.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep: Option<u64>,
    /// Purge messages with a sequence below this one (at least 1). Not with `keep`.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub up_to_seq: Option<u64>,
}

/// How many messages a purge removed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PurgeResult {
    pub purged: u64,
}

/// What a create-or-update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Updated,
    Unchanged,
}

/// Why a declared stream is not ensured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnsureError {
    /// It cannot be ensured as declared until the stream or the declaration changes: an
    /// invalid declaration, a configuration JetStream refuses, or an existing stream that
    /// differs.
    #[error("{0}")]
    Rejected(String),
    /// NATS or JetStream did not answer (disconnected, no leader, timeout): try again.
    #[error("{0}")]
    Unavailable(String),
}

impl EnsureError {
    /// Classifies a failed JetStream call: a server-side failure is worth retrying, a refusal
    /// of the request is not.
    fn from_api(context: String, err: &ApiError) -> Self {
        let message = format!("{context}: {err}");
        if err.status().is_server_error() {
            Self::Unavailable(message)
        } else {
            Self::Rejected(message)
        }
    }
}

/// The refusal of a storage change: JetStream cannot move a stream (or a bucket, `what`)
/// between file and memory in place.
pub fn storage_conflict(what: &str, current: Storage) -> ApiError {
    ApiError::StreamConflict {
        detail: format!(
            "{what} uses {} storage; JetStream cannot change storage in place: delete and \
             recreate it, or keep \"storage\" as it is",
            match current {
                Storage::File => "file",
                Storage::Memory => "memory",
            }
        ),
        jetstream_code: None,
    }
}

/// JetStream reports "no time" as the zero time.
fn optional_time(time: OffsetDateTime) -> Option<String> {
    (time.unix_timestamp() > 0).then(|| format_time(time))
}

fn limit(value: i64) -> Option<u64> {
    u64::try_from(value).ok().filter(|v| *v > 0)
}

impl StreamConfig {
    /// The API view of a JetStream configuration.
    pub fn from_nats(config: &stream::Config) -> Self {
        Self {
            subjects: config.subjects.clone(),
            retention: match config.retention {
                RetentionPolicy::Limits => Retention::Limits,
                RetentionPolicy::Interest => Retention::Interest,
                RetentionPolicy::WorkQueue => Retention::Workqueue,
            },
            storage: match config.storage {
                StorageType::File => Storage::File,
                StorageType::Memory => Storage::Memory,
            },
            replicas: config.num_replicas.max(1),
            max_age: (!config.max_age.is_zero()).then_some(config.max_age),
            max_bytes: limit(config.max_bytes),
            max_msgs: limit(config.max_messages),
            max_msgs_per_subject: limit(config.max_messages_per_subject),
            max_msg_size: u32::try_from(config.max_message_size)
                .ok()
                .filter(|v| *v > 0),
            discard: match config.discard {
                DiscardPolicy::Old => Discard::Old,
                DiscardPolicy::New => Discard::New,
            },
            duplicate_window: (!config.duplicate_window.is_zero())
                .then_some(config.duplicate_window),
            allow_msg_ttl: config.allow_message_ttl,
            allow_atomic: config.allow_atomic_publish,
            allow_msg_counter: config.allow_message_counter,
            allow_msg_schedules: config.allow_message_schedules,
            description: config.description.clone().filter(|d| !d.is_empty()),
        }
    }

    /// Writes the modelled fields onto `base` (the existing configuration on update, so that
    /// fields the API does not model are preserved).
    pub fn to_nats(&self, name: &str, mut base: stream::Config) -> stream::Config {
        let to_i64 = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        base.name = name.to_owned();
        base.subjects = self.subjects.clone();
        base.retention = match self.retention {
            Retention::Limits => RetentionPolicy::Limits,
            Retention::Interest => RetentionPolicy::Interest,
            Retention::Workqueue => RetentionPolicy::WorkQueue,
        };
        base.storage = match self.storage {
            Storage::File => StorageType::File,
            Storage::Memory => StorageType::Memory,
        };
        base.num_replicas = self.replicas;
        base.max_age = self.max_age.unwrap_or_default();
        base.max_bytes = to_i64(self.max_bytes);
        base.max_messages = to_i64(self.max_msgs);
        base.max_messages_per_subject = to_i64(self.max_msgs_per_subject);
        base.max_message_size = self
            .max_msg_size
            .map_or(-1, |v| i32::try_from(v).unwrap_or(i32::MAX));
        base.discard = match self.discard {
            Discard::Old => DiscardPolicy::Old,
            Discard::New => DiscardPolicy::New,
        };
        base.duplicate_window = self.duplicate_window.unwrap_or_default();
        base.allow_message_ttl = self.allow_msg_ttl;
        base.allow_atomic_publish = self.allow_atomic;
        base.allow_message_counter = self.allow_msg_counter;
        base.allow_message_schedules = self.allow_msg_schedules;
        base.description = self.description.clone();
        base
    }

    /// This configuration with the defaults JetStream fills in made explicit, so that a request
    /// compares equal to the stream it created.
    pub fn normalized(&self, name: &str) -> Self {
        let mut config = self.clone();
        // JetStream reads zero limits as "unlimited" and a zero duplicate window as "default".
        let nonzero = |v: Option<u64>| v.filter(|v| *v > 0);
        config.max_bytes = nonzero(config.max_bytes);
        config.max_msgs = nonzero(config.max_msgs);
        config.max_msgs_per_subject = nonzero(config.max_msgs_per_subject);
        config.max_msg_size = config.max_msg_size.filter(|v| *v > 0);
        config.max_age = config.max_age.filter(|d| !d.is_zero());
        config.duplicate_window = config.duplicate_window.filter(|d| !d.is_zero());
        if config.subjects.is_empty() {
            config.subjects = vec![name.to_owned()];
        }
        config.replicas = config.replicas.max(1);
        if config.duplicate_window.is_none() {
            config.duplicate_window = Some(match config.max_age {
                Some(age) if age < DEFAULT_DUPLICATE_WINDOW => age,
                _ => DEFAULT_DUPLICATE_WINDOW,
            });
        }
        config.description = config.description.filter(|d| !d.is_empty());
        config
    }

    /// Names of the fields that differ between two normalized configurations.
    pub fn diff(&self, other: &Self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        let mut check = |name, differs: bool| {
            if differs {
                fields.push(name);
            }
        };
        check("subjects", self.subjects != other.subjects);
        check("retention", self.retention != other.retention);
        check("storage", self.storage != other.storage);
        check("replicas", self.replicas != other.replicas);
        check("max_age", self.max_age != other.max_age);
        check("max_bytes", self.max_bytes != other.max_bytes);
        check("max_msgs", self.max_msgs != other.max_msgs);
        check(
            "max_msgs_per_subject",
            self.max_msgs_per_subject != other.max_msgs_per_subject,
        );
        check("max_msg_size", self.max_msg_size != other.max_msg_size);
        check("discard", self.discard != other.discard);
        check(
            "duplicate_window",
            self.duplicate_window != other.duplicate_window,
        );
        check("allow_msg_ttl", self.allow_msg_ttl != other.allow_msg_ttl);
        check("allow_atomic", self.allow_atomic != other.allow_atomic);
        check(
            "allow_msg_counter",
            self.allow_msg_counter != other.allow_msg_counter,
        );
        check(
            "allow_msg_schedules",
            self.allow_msg_schedules != other.allow_msg_schedules,
        );
        check("description", self.description != other.description);
        fields
    }

    /// Checks what jetway can check before asking JetStream.
    pub fn validate(&self) -> Result<(), ApiError> {
        for subject in &self.subjects {
            crate::validate::subject_filter(subject)
                .and_then(|()| crate::validate::refuse_reserved(subject))
                .map_err(|e| ApiError::InvalidConfig {
                    detail: format!("subjects: {e}"),
                    jetstream_code: None,
                })?;
        }
        if let (Some(window), Some(age)) = (self.duplicate_window, self.max_age)
            && !window.is_zero()
            && !age.is_zero()
            && window > age
        {
            return Err(ApiError::InvalidConfig {
                detail: format!(
                    "duplicate_window ({}) cannot be longer than max_age ({})",
                    duration::format(window),
                    duration::format(age)
                ),
                jetstream_code: None,
            });
        }
        if self.replicas > 5 {
            return Err(ApiError::InvalidConfig {
                detail: "replicas must be between 1 and 5".to_owned(),
                jetstream_code: None,
            });
        }
        // JetStream counts these as signed 64-bit numbers.
        for (field, value) in [
            ("max_bytes", self.max_bytes),
            ("max_msgs", self.max_msgs),
            ("max_msgs_per_subject", self.max_msgs_per_subject),
        ] {
            if value.is_some_and(|v| i64::try_from(v).is_err()) {
                return Err(ApiError::InvalidConfig {
                    detail: format!("{field} must be at most {}", i64::MAX),
                    jetstream_code: None,
                });
            }
        }
        Ok(())
    }
}

impl StreamInfo {
    /// The API view of JetStream's stream info.
    pub fn from_nats(info: &stream::Info) -> Self {
        let state = &info.state;
        Self {
            name: info.config.name.clone(),
            config: StreamConfig::from_nats(&info.config),
            state: StreamState {
                messages: state.messages,
                bytes: state.bytes,
                first_seq: state.first_sequence,
                first_time: optional_time(state.first_timestamp),
                last_seq: state.last_sequence,
                last_time: optional_time(state.last_timestamp),
                consumer_count: state.consumer_count,
                num_subjects: state.subjects_count,
                num_deleted: state.deleted_count.unwrap_or_default(),
            },
            created: format_time(info.created),
        }
    }
}

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    total: usize,
    #[serde(default)]
    streams: Option<Vec<stream::Info>>,
}

#[derive(Deserialize)]
struct DeleteAnswer {
    #[serde(default)]
    success: bool,
}

#[derive(Deserialize)]
struct PurgeAnswer {
    #[serde(default)]
    purged: u64,
}

impl Nats {
    /// Every stream, with configuration and state.
    pub async fn list_streams(&self) -> Result<Vec<stream::Info>, ApiError> {
        let mut streams = Vec::new();
        loop {
            let page: ListPage = self
                .api(
                    "STREAM.LIST",
                    &serde_json::json!({ "offset": streams.len() }),
                    Op::Account,
                )
                .await?;
            let got = page.streams.unwrap_or_default();
            let done = got.is_empty() || streams.len() + got.len() >= page.total;
            streams.extend(got);
            if done {
                return Ok(streams);
            }
        }
    }

    /// One stream's configuration and state.
    pub async fn stream_info(&self, name: &str) -> Result<stream::Info, ApiError> {
        self.api(
            &format!("STREAM.INFO.{name}"),
            &serde_json::json!({}),
            Op::Stream(name),
        )
        .await
    }

    /// Creates the stream, or updates it when it differs, or leaves it alone when equal.
    pub async fn put_stream(
        &self,
        name: &str,
        config: &StreamConfig,
    ) -> Result<(stream::Info, PutOutcome), ApiError> {
        config.validate()?;
        let wanted = config.normalized(name);
        let existing = match self.stream_info(name).await {
            Ok(info) => Some(info),
            Err(ApiError::StreamNotFound(_)) => None,
            Err(err) => return Err(err),
        };
        let Some(existing) = existing else {
            let body = wanted.to_nats(name, stream::Config::default());
            let info = self
                .api(
                    &format!("STREAM.CREATE.{name}"),
                    &body,
                    Op::StreamCreate(name),
                )
                .await?;
            return Ok((info, PutOutcome::Created));
        };
        let current = StreamConfig::from_nats(&existing.config).normalized(name);
        if current.diff(&wanted).is_empty() {
            return Ok((existing, PutOutcome::Unchanged));
        }
        if current.storage != wanted.storage {
            return Err(storage_conflict(
                &format!("stream '{name}'"),
                current.storage,
            ));
        }
        let body = wanted.to_nats(name, existing.config.clone());
        let info = self
            .api(
                &format!("STREAM.UPDATE.{name}"),
                &body,
                Op::StreamUpdate(name),
            )
            .await?;
        Ok((info, PutOutcome::Updated))
    }

    /// Ensures a stream declared in the configuration file: created when absent, untouched when
    /// equal, and an error naming the differing fields otherwise (never a silent overwrite).
    pub async fn ensure_stream(
        &self,
        name: &str,
        config: &StreamConfig,
    ) -> Result<PutOutcome, EnsureError> {
        config
            .validate()
            .map_err(|e| EnsureError::Rejected(format!("stream '{name}': {e}")))?;
        let wanted = config.normalized(name);
        match self.stream_info(name).await {
            Ok(existing) => {
                let current = StreamConfig::from_nats(&existing.config).normalized(name);
                let differs = current.diff(&wanted);
                if differs.is_empty() {
                    Ok(PutOutcome::Unchanged)
                } else {
                    Err(EnsureError::Rejected(format!(
                        "stream '{name}' exists with a different configuration ({}); \
                         jetway does not overwrite it. Change the config file to match, or \
                         update the stream with PUT /v1/streams/{name}",
                        differs
                            .iter()
                            .map(|f| format!(
                                "{f}: existing {} vs declared {}",
                                field(&current, f),
                                field(&wanted, f)
                            ))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )))
                }
            }
            Err(ApiError::StreamNotFound(_)) => {
                let body = wanted.to_nats(name, stream::Config::default());
                let _: stream::Info = self
                    .api(
                        &format!("STREAM.CREATE.{name}"),
                        &body,
                        Op::StreamCreate(name),
                    )
                    .await
                    .map_err(|e| {
                        EnsureError::from_api(format!("cannot create stream '{name}'"), &e)
                    })?;
                Ok(PutOutcome::Created)
            }
            Err(err) => Err(EnsureError::from_api(
                format!("cannot read stream '{name}'"),
                &err,
            )),
        }
    }

    /// Deletes a stream and every message in it.
    pub async fn delete_stream(&self, name: &str) -> Result<(), ApiError> {
        let answer: DeleteAnswer = self
            .api(
                &format!("STREAM.DELETE.{name}"),
                &serde_json::json!({}),
                Op::Stream(name),
            )
            .await?;
        if answer.success {
            Ok(())
        } else {
            Err(ApiError::JetStream {
                detail: format!("JetStream did not delete stream '{name}'"),
                jetstream_code: None,
            })
        }
    }

    /// Purges messages; answers how many were removed.
    pub async fn purge_stream(&self, name: &str, request: &PurgeRequest) -> Result<u64, ApiError> {
        if let Some(subject) = &request.subject {
            crate::validate::subject_filter(subject)?;
        }
        if request.keep.is_some() && request.up_to_seq.is_some() {
            return Err(ApiError::InvalidBody(
                "'keep' and 'up_to_seq' cannot be combined".to_owned(),
            ));
        }
        // JetStream reads a sequence of 0 as "none given": the purge would take everything.
        if request.up_to_seq == Some(0) {
            return Err(ApiError::InvalidBody(
                "'up_to_seq' must be at least 1; leave it out to purge everything".to_owned(),
            ));
        }
        let mut body = serde_json::Map::new();
        if let Some(subject) = &request.subject {
            body.insert("filter".into(), subject.clone().into());
        }
        if let Some(keep) = request.keep {
            body.insert("keep".into(), keep.into());
        }
        if let Some(seq) = request.up_to_seq {
            body.insert("seq".into(), seq.into());
        }
        let answer: PurgeAnswer = self
            .api(&format!("STREAM.PURGE.{name}"), &body, Op::Stream(name))
            .await?;
        Ok(answer.purged)
    }
}

/// One field of a configuration, shown for an error message.
fn field(config: &StreamConfig, name: &str) -> String {
    let value = serde_json::to_value(config).unwrap_or_default();
    value
        .get(name)
        .map_or_else(|| "unset".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_defaults_compare_equal_to_what_jetstream_fills_in() {
        let request = StreamConfig {
            subjects: vec!["orders.>".into()],
            ..Default::default()
        };
        let created = request
            .normalized("ORDERS")
            .to_nats("ORDERS", stream::Config::default());
        let back = StreamConfig::from_nats(&created).normalized("ORDERS");
        assert!(back.diff(&request.normalized("ORDERS")).is_empty());
    }

    #[test]
    fn diff_names_changed_fields() {
        let a = StreamConfig::default().normalized("S");
        let b = StreamConfig {
            storage: Storage::Memory,
            max_msgs: Some(5),
            ..Default::default()
        }
        .normalized("S");
        assert_eq!(a.diff(&b), vec!["storage", "max_msgs"]);
    }

    #[test]
    fn durations_round_trip_as_strings() {
        let config: StreamConfig = serde_json::from_str(
            r#"{"subjects":["a.>"],"max_age":"72h","duplicate_window":"30s"}"#,
        )
        .unwrap();
        assert_eq!(config.max_age, Some(Duration::from_secs(72 * 3600)));
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["max_age"], "72h");
        assert_eq!(json["duplicate_window"], "30s");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<StreamConfig>(r#"{"subject":["a"]}"#).is_err());
    }
}
