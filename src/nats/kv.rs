//! Key-value buckets, laid out as every NATS client lays them out (so that `nats kv`, the NATS
//! client libraries and jetway share buckets): bucket `b` is the stream `KV_b` capturing
//! `$KV.b.>`; a key's value is the last message on `$KV.b.<key>`, its revision that message's
//! stream sequence; a delete or a purge is a message with a `KV-Operation` header.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::stream::{self, Compression, DiscardPolicy, StorageType};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Nats;
use super::errors::Checks;
use super::publish::Outgoing;
use super::streams::{PutOutcome, Storage, storage_conflict};
use crate::duration;
use crate::error::ApiError;
use crate::timestamp::format_time;
use crate::validate::KV_STREAM_PREFIX;

/// The header that marks a delete or a purge.
pub const KV_OPERATION: &str = "KV-Operation";
/// The header JetStream sets on the markers it writes itself (a key's age limit, a purge).
pub const MARKER_REASON: &str = "Nats-Marker-Reason";
const ROLLUP: &str = "Nats-Rollup";

/// Most revisions a bucket keeps per key (JetStream's limit for buckets).
pub const MAX_HISTORY: u8 = 64;

/// What a message on a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Set the value.
    Put,
    /// Deleted the key (earlier revisions are kept, within `history`).
    Delete,
    /// Deleted the key and every earlier revision.
    Purge,
}

impl Operation {
    /// The operation of a stored message, from its headers.
    pub fn of(headers: &HeaderMap) -> Self {
        Self::from_headers(
            headers.get(KV_OPERATION).map(|v| v.as_str()),
            headers.get(MARKER_REASON).map(|v| v.as_str()),
        )
    }

    /// The operation of a message whose `KV-Operation` and `Nats-Marker-Reason` headers are
    /// these.
    pub fn from_headers(operation: Option<&str>, marker_reason: Option<&str>) -> Self {
        match (operation, marker_reason) {
            (Some("DEL"), _) => Self::Delete,
            (Some("PURGE"), _) => Self::Purge,
            // Markers JetStream writes when a key's TTL or the bucket's age limit removes it,
            // or when it is purged.
            (_, Some("MaxAge" | "Purge")) => Self::Purge,
            (_, Some("Remove")) => Self::Delete,
            _ => Self::Put,
        }
    }
}

/// A bucket's configuration. Omitted limits are unlimited; durations are strings such as
/// `30s`, `5m`, `72h`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"history": 5, "ttl": "24h", "replicas": 3, "description": "Feature flags"}))]
pub struct BucketConfig {
    /// Revisions kept per key, 1 to 64 (default 1: the value only).
    #[serde(
        default = "one_revision",
        deserialize_with = "crate::json::whole::required"
    )]
    pub history: u8,
    /// How long a value is kept after it was written (default: forever).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "24h")]
    pub ttl: Option<Duration>,
    /// Most bytes the bucket holds, every revision counted; a write that would exceed it is
    /// refused.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_bytes: Option<u64>,
    /// Largest value accepted, in bytes.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_value_size: Option<u32>,
    #[serde(default)]
    pub storage: Storage,
    /// Number of replicas (1, 3 or 5 on a cluster).
    #[serde(default = "one", deserialize_with = "crate::json::whole::required")]
    pub replicas: usize,
    /// Compress stored values (S2).
    #[serde(default)]
    pub compression: bool,
    /// Accept a TTL per key (`PUT …/keys/{key}?ttl=30s`). When a key expires (by its own TTL or
    /// the bucket's `ttl`) JetStream leaves a marker, kept this long, so that watchers see it
    /// go. At least `1s`; nats-server 2.11+.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "1m")]
    pub limit_marker_ttl: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn one() -> usize {
    1
}

fn one_revision() -> u8 {
    1
}

impl Default for BucketConfig {
    fn default() -> Self {
        Self {
            history: 1,
            ttl: None,
            max_bytes: None,
            max_value_size: None,
            storage: Storage::File,
            replicas: 1,
            compression: false,
            limit_marker_ttl: None,
            description: None,
        }
    }
}

/// A bucket: its configuration and what it holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "bucket": "flags",
    "config": {"history": 5, "storage": "file", "replicas": 3, "compression": false},
    "values": 12,
    "bytes": 1734,
    "revision": 40,
    "created": "2026-11-30T09:00:00Z"
}))]
pub struct BucketInfo {
    pub bucket: String,
    pub config: BucketConfig,
    /// Messages stored: every kept revision, deletes included.
    pub values: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// The bucket's latest revision (0 when nothing was ever written).
    pub revision: u64,
    /// When the bucket was created.
    pub created: String,
}

/// The buckets.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BucketList {
    pub buckets: Vec<BucketInfo>,
}

/// The stream holding `bucket`.
pub fn stream_of(bucket: &str) -> String {
    format!("{KV_STREAM_PREFIX}{bucket}")
}

/// The subject of `key` (or of a key pattern) in `bucket`.
pub fn subject_of(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

/// The bucket a stream holds, if it is one: named `KV_<bucket>`, capturing `$KV.<bucket>.>`.
fn bucket_of(config: &stream::Config) -> Option<&str> {
    let bucket = config.name.strip_prefix(KV_STREAM_PREFIX)?;
    (config.subjects.len() == 1 && config.subjects[0] == subject_of(bucket, ">")).then_some(bucket)
}

fn limit(value: i64) -> Option<u64> {
    u64::try_from(value).ok().filter(|v| *v > 0)
}

impl BucketConfig {
    /// The API view of a bucket's stream configuration.
    pub fn from_nats(config: &stream::Config) -> Self {
        Self {
            history: u8::try_from(config.max_messages_per_subject.clamp(1, 64)).unwrap_or(1),
            ttl: Some(config.max_age).filter(|d| !d.is_zero()),
            max_bytes: limit(config.max_bytes),
            max_value_size: u32::try_from(config.max_message_size)
                .ok()
                .filter(|v| *v > 0),
            storage: match config.storage {
                StorageType::File => Storage::File,
                StorageType::Memory => Storage::Memory,
            },
            replicas: config.num_replicas.max(1),
            compression: matches!(config.compression, Some(Compression::S2)),
            limit_marker_ttl: config
                .subject_delete_marker_ttl
                .filter(|d| !d.is_zero() && config.allow_message_ttl),
            description: config.description.clone().filter(|d| !d.is_empty()),
        }
    }

    /// This configuration with "none" spelled one way (JetStream reads zero limits as
    /// unlimited), so that a request compares equal to the bucket it created.
    pub fn normalized(&self) -> Self {
        let mut config = self.clone();
        config.ttl = config.ttl.filter(|d| !d.is_zero());
        config.max_bytes = config.max_bytes.filter(|v| *v > 0);
        config.max_value_size = config.max_value_size.filter(|v| *v > 0);
        config.limit_marker_ttl = config.limit_marker_ttl.filter(|d| !d.is_zero());
        config.description = config.description.filter(|d| !d.is_empty());
        config
    }

    /// Checks what jetway can check before asking JetStream.
    pub fn validate(&self) -> Result<(), ApiError> {
        let invalid = |detail: String| ApiError::InvalidConfig {
            detail,
            jetstream_code: None,
        };
        if self.history == 0 || self.history > MAX_HISTORY {
            return Err(invalid(format!(
                "history must be between 1 and {MAX_HISTORY}"
            )));
        }
        if self.replicas == 0 || self.replicas > 5 {
            return Err(invalid("replicas must be between 1 and 5".to_owned()));
        }
        if self.max_bytes.is_some_and(|v| i64::try_from(v).is_err()) {
            return Err(invalid(format!("max_bytes must be at most {}", i64::MAX)));
        }
        if self
            .max_value_size
            .is_some_and(|v| i32::try_from(v).is_err())
        {
            return Err(invalid(format!(
                "max_value_size must be at most {}",
                i32::MAX
            )));
        }
        if self
            .limit_marker_ttl
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            return Err(invalid("limit_marker_ttl must be at least 1s".to_owned()));
        }
        Ok(())
    }

    /// The modelled fields written onto `base` (the existing stream's configuration on update,
    /// so that what this API does not model, such as placement, is kept).
    fn to_nats(&self, bucket: &str, mut base: stream::Config) -> stream::Config {
        base.name = stream_of(bucket);
        base.subjects = vec![subject_of(bucket, ">")];
        base.description = self.description.clone();
        base.max_messages_per_subject = i64::from(self.history);
        base.max_age = self.ttl.unwrap_or_default();
        base.max_bytes = self
            .max_bytes
            .map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        base.max_message_size = self
            .max_value_size
            .map_or(-1, |v| i32::try_from(v).unwrap_or(i32::MAX));
        base.storage = match self.storage {
            Storage::File => StorageType::File,
            Storage::Memory => StorageType::Memory,
        };
        base.num_replicas = self.replicas;
        base.compression = self.compression.then_some(Compression::S2);
        base.allow_message_ttl = self.limit_marker_ttl.is_some();
        base.subject_delete_marker_ttl = self.limit_marker_ttl;
        // What makes a stream a bucket, as every NATS client sets it.
        base.allow_rollup = true;
        base.deny_delete = true;
        base.deny_purge = false;
        base.allow_direct = true;
        base.discard = DiscardPolicy::New;
        base.max_messages = -1;
        base
    }
}

impl BucketInfo {
    /// The bucket a stream holds; `None` for a stream that is not a bucket.
    pub fn from_nats(info: &stream::Info) -> Option<Self> {
        let bucket = bucket_of(&info.config)?;
        Some(Self {
            bucket: bucket.to_owned(),
            config: BucketConfig::from_nats(&info.config),
            values: info.state.messages,
            bytes: info.state.bytes,
            revision: info.state.last_sequence,
            created: format_time(info.created),
        })
    }
}

/// A message writing `key` of `bucket`: its value (`Put`), or a delete or purge marker.
/// `subject_of` is built from a validated bucket and key, so this is the one place a
/// `$KV.` subject is published to.
pub fn entry(bucket: &str, key: &str, operation: Operation, value: Bytes) -> Outgoing {
    let mut headers = HeaderMap::new();
    match operation {
        Operation::Put => {}
        Operation::Delete => headers.insert(KV_OPERATION, "DEL"),
        Operation::Purge => {
            headers.insert(KV_OPERATION, "PURGE");
            headers.insert(ROLLUP, "sub");
        }
    }
    Outgoing {
        subject: subject_of(bucket, key),
        headers,
        payload: match operation {
            Operation::Put => value,
            Operation::Delete | Operation::Purge => Bytes::new(),
        },
        checks: Checks::default(),
    }
}

impl Nats {
    /// A bucket's stream; `BucketNotFound` when there is none (or the stream of that name is
    /// not a bucket).
    pub async fn bucket_info(&self, bucket: &str) -> Result<stream::Info, ApiError> {
        match self.stream_info(&stream_of(bucket)).await {
            Ok(info) if bucket_of(&info.config).is_some() => Ok(info),
            Ok(_) | Err(ApiError::StreamNotFound(_)) => {
                Err(ApiError::BucketNotFound(bucket.to_owned()))
            }
            Err(err) => Err(err),
        }
    }

    /// Every bucket.
    pub async fn list_buckets(&self) -> Result<Vec<BucketInfo>, ApiError> {
        Ok(self
            .list_streams()
            .await?
            .iter()
            .filter_map(BucketInfo::from_nats)
            .collect())
    }

    /// Creates the bucket, or updates it when its configuration differs, or leaves it alone.
    pub async fn put_bucket(
        &self,
        bucket: &str,
        config: &BucketConfig,
    ) -> Result<(stream::Info, PutOutcome), ApiError> {
        let config = &config.normalized();
        config.validate()?;
        let name = stream_of(bucket);
        let existing = match self.stream_info(&name).await {
            Ok(info) => Some(info),
            Err(ApiError::StreamNotFound(_)) => None,
            Err(err) => return Err(err),
        };
        let Some(existing) = existing else {
            let body = config.to_nats(bucket, stream::Config::default());
            let info = self
                .api(
                    &format!("STREAM.CREATE.{name}"),
                    &body,
                    super::Op::StreamCreate(&name),
                )
                .await?;
            return Ok((info, PutOutcome::Created));
        };
        if bucket_of(&existing.config).is_none() {
            return Err(ApiError::StreamConflict {
                detail: format!(
                    "stream '{name}' exists and is not a key-value bucket (a bucket's stream \
                     captures only '$KV.{bucket}.>'); choose another bucket name"
                ),
                jetstream_code: None,
            });
        }
        let current = BucketConfig::from_nats(&existing.config);
        if current == *config {
            return Ok((existing, PutOutcome::Unchanged));
        }
        if current.storage != config.storage {
            return Err(storage_conflict(
                &format!("bucket '{bucket}'"),
                current.storage,
            ));
        }
        let body = config.to_nats(bucket, existing.config.clone());
        let info = self
            .api(
                &format!("STREAM.UPDATE.{name}"),
                &body,
                super::Op::StreamUpdate(&name),
            )
            .await?;
        Ok((info, PutOutcome::Updated))
    }
}
