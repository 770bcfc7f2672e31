//! Key-value buckets: create, list and delete buckets; read, write and delete keys with their
//! revisions (optimistic concurrency: a write can require the revision it read); a key's
//! history; the keys of a bucket; and watching keys from a revision.
//!
//! Permissions: bucket administration needs `admin`; reading a bucket `kv_read` (or
//! `kv_write`) on it; writing its keys `kv_write`. A tenant's keys live under its prefix inside
//! the bucket (key `a` of tenant `acme` is stored as `acme.a`): it reads, lists and watches only
//! those, and sees them without the prefix.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::feed::Tail;
use super::names::{BucketName, Key, KeyPattern};
use super::replay::{self, Replay, Start};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::fanout::Shown;
use crate::message::{Encoding, EncodingChoice, Message, encode};
use crate::nats::kv::{self, BucketConfig, BucketInfo, KV_OPERATION, MARKER_REASON, Operation};
use crate::nats::messages::Start as PageStart;
use crate::nats::streams::PutOutcome;
use crate::state::AppState;
use crate::timestamp::format_time;

/// Most keys one listing answers.
pub const MAX_KEYS: usize = 10_000;
/// Keys a listing answers when the caller does not say.
pub const DEFAULT_KEYS: usize = 1_000;

/// One revision of a key as jetway shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "bucket": "flags",
    "key": "checkout.new_flow",
    "revision": 41,
    "operation": "put",
    "created": "2026-11-30T09:00:00.123456789Z",
    "value": {"enabled": true, "percent": 20},
    "encoding": "json"
}))]
pub struct Entry {
    pub bucket: String,
    /// The key as the caller names it.
    pub key: String,
    /// The revision: the stream sequence of this write, unique and increasing across the
    /// bucket. Pass it in `If-Match` to write only if nobody wrote the key since.
    pub revision: u64,
    pub operation: Operation,
    /// When it was written (RFC 3339, nanoseconds).
    pub created: String,
    /// The value, per `encoding` (`put` only): a JSON value (`json`), or a string (`utf8`,
    /// `base64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
}

/// A stored revision of a key.
#[derive(Debug, Clone)]
pub struct Revision {
    /// The key as the caller names it.
    pub key: String,
    pub revision: u64,
    pub operation: Operation,
    pub created: time::OffsetDateTime,
    pub value: Bytes,
}

impl Revision {
    /// This revision as JSON, its value encoded per `choice`.
    pub fn entry(&self, bucket: &str, choice: EncodingChoice) -> Entry {
        let (value, encoding) = match self.operation {
            Operation::Put => {
                let (value, encoding) = encode(&self.value, None, choice);
                (Some(value), Some(encoding))
            }
            Operation::Delete | Operation::Purge => (None, None),
        };
        Entry {
            bucket: bucket.to_owned(),
            key: self.key.clone(),
            revision: self.revision,
            operation: self.operation,
            created: format_time(self.created),
            value,
            encoding,
        }
    }
}

/// What a write requires of the key's current revision (`If-Match`, `If-None-Match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expect {
    /// Nothing: the write always applies.
    #[default]
    Any,
    /// The key's latest revision is this one (`If-Match: "<revision>"`).
    Revision(u64),
    /// The key has a value (`If-Match: *`).
    Exists,
    /// The key has no value: never written, deleted or purged (`If-None-Match: *`).
    Absent,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatchFrom {
    /// The latest revision of every matching key, then every change (the default).
    #[default]
    Current,
    /// Every kept revision of the matching keys, oldest first, then every change.
    History,
    /// Only changes made after the watch started.
    Updates,
    /// Every change from this revision on (resume with the last revision seen + 1).
    Revision(u64),
}

fn bucket_missing(bucket: &BucketName) -> impl Fn(ApiError) -> ApiError + '_ {
    move |err| match err {
        ApiError::StreamNotFound(_) | ApiError::SubjectNotCaptured(_) => {
            ApiError::BucketNotFound(bucket.to_string())
        }
        other => other,
    }
}

/// Every bucket `who` may read.
pub async fn list(state: &AppState, who: &Principal) -> Result<Vec<BucketInfo>, ApiError> {
    let mut buckets = state.nats.list_buckets().await?;
    buckets.retain(|b| who.can_read_bucket(&b.bucket));
    buckets.sort_by(|a, b| a.bucket.cmp(&b.bucket));
    Ok(buckets)
}

/// Creates or updates a bucket (administrators only).
pub async fn put_bucket(
    state: &AppState,
    who: &Principal,
    bucket: &BucketName,
    config: &BucketConfig,
) -> Result<(BucketInfo, PutOutcome), ApiError> {
    who.check_admin()?;
    let (info, outcome) = state.nats.put_bucket(bucket, config).await?;
    let shown = BucketInfo::from_nats(&info).ok_or_else(|| ApiError::JetStream {
        detail: format!("JetStream answered a stream that is not bucket '{bucket}'"),
        jetstream_code: None,
    })?;
    tracing::info!(kv.bucket = %bucket, principal = %who.id, outcome = ?outcome, "bucket put");
    Ok((shown, outcome))
}

/// A bucket's configuration and state.
pub async fn get_bucket(
    state: &AppState,
    who: &Principal,
    bucket: &BucketName,
) -> Result<BucketInfo, ApiError> {
    who.check_bucket_read(bucket)?;
    let info = state.nats.bucket_info(bucket).await?;
    BucketInfo::from_nats(&info).ok_or_else(|| ApiError::BucketNotFound(bucket.to_string()))
}

/// Deletes a bucket and every key in it (administrators only).
pub async fn delete_bucket(
    state: &AppState,
    who: &Principal,
    bucket: &BucketName,
) -> Result<(), ApiError> {
    who.check_admin()?;
    state.nats.bucket_info(bucket).await?;
    state
        .nats
        .delete_stream(&kv::stream_of(bucket))
        .await
        .map_err(bucket_missing(bucket))?;
    tracing::info!(kv.bucket = %bucket, principal = %who.id, "bucket deleted");
    Ok(())
}

/// The latest revision of `real` (the stored key) as the caller names it; `None` when the key
/// was never written (or is gone with its whole history).
async fn latest(
    state: &AppState,
    who: &Principal,
    bucket: &BucketName,
    real: &str,
) -> Result<Option<Revision>, ApiError> {
    let stream = kv::stream_of(bucket);
    match state
        .nats
        .last_message(&stream, &kv::subject_of(bucket, real))
        .await
    {
        Ok(message) => Ok(Some(revision_of(who, bucket, &message))),
        Err(ApiError::MessageNotFound(_)) => Ok(None),
        Err(err) => Err(bucket_missing(bucket)(err)),
    }
}

fn revision_of(
    who: &Principal,
    bucket: &str,
    message: &async_nats::jetstream::message::StreamMessage,
) -> Revision {
    let stored = message
        .subject
        .as_str()
        .strip_prefix(&format!("$KV.{bucket}."))
        .unwrap_or_default();
    Revision {
        key: who.shown(stored).to_owned(),
        revision: message.sequence,
        operation: Operation::of(&message.headers),
        created: message.time,
        value: message.payload.clone(),
    }
}

fn no_value(key: &Key, bucket: &BucketName, latest: Option<&Revision>) -> ApiError {
    ApiError::KeyNotFound(match latest {
        Some(gone) => format!(
            "key '{key}' of bucket '{bucket}' was {} at revision {}",
            match gone.operation {
                Operation::Purge => "purged",
                _ => "deleted",
            },
            gone.revision
        ),
        None => format!("key '{key}' of bucket '{bucket}' has no value"),
    })
}

/// A key's value: its latest revision, or with `revision` that revision (which must be a write
/// of this key). A deleted or purged key is not found.
pub async fn get(
    state: &AppState,
    who: &Principal,
    bucket: &BucketName,
    key: &Key,
    revision: Option<u64>,
) -> Result<Revision, ApiError> {
    who.check_bucket_read(bucket)?;
    let real = who.subject_in(key);
    let found = match revision {
        None => latest(state, who, bucket, &real).await?,
        Some(0) => {
            return Err(ApiError::InvalidParameter(
                "revisions start at 1".to_owned(),
            ));
        }
        Some(seq) => {
            match state
                .nats
                .get_message(&kv::stream_of(bucket), seq)
                .await
                .map_err(bucket_missing(bucket))
            {
                Ok(message) if message.subject.as_str() == kv::subject_of(bucket, &real) => {
                    Some(revision_of(who, bucket, &message))
                }
                Ok(_) | Err(ApiError::MessageNotFound(_)) => {
                    return Err(ApiError::KeyNotFound(format!(
                        "key '{key}' of bucket '{bucket}' has no revision {seq} (not a write of \
                         this key, or no longer kept: see the key's history)"
                    )));
                }
                Err(err) => return Err(err),
            }
        }
    };
    match found {
        Some(found) if found.operation == Operation::Put => Ok(found),
        other => Err(no_value(key, bucket, other.as_ref())),
    }
}

/// Every kept revision of a key, oldest first, deletes included.
pub async fn history(
    state: &AppState,
    who: &Principal,
    bucket: &BucketName,
    key: &Key,
) -> Result<Vec<Revision>, ApiError> {
    who.check_bucket_read(bucket)?;
    let subject = kv::subject_of(bucket, &who.subject_in(key));
    let page = state
        .nats
        .page(
            &kv::stream_of(bucket),
            PageStart::Sequence(1),
            Some(&subject),
            usize::from(kv::MAX_HISTORY),
        )
        .await
        .map_err(bucket_missing(bucket))?;
    if page.messages.is_empty() {
        // Tell an unknown bucket from an unknown key.
        state.nats.bucket_info(bucket).await?;
        return Err(no_value(key, bucket, None));
    }
    Ok(page
        .messages
        .iter()
        .map(|m| revision_of(who, bucket, m))
        .collect())
}

/// A write of a key: what it does and what it needs of the key's current revision.
struct Change<'a> {
    operation: Operation,
    value: Bytes,
    expect: Expect,
    ttl: Option<&'a str>,
}

/// Writes `change` to `key`; answers the revision of the write.
async fn write(
    state: &AppState,
    who: &Principal,
    bucket: &BucketName,
    key: &Key,
    change: Change<'_>,
) -> Result<u64, ApiError> {
    let Change {
        operation,
        value,
        expect,
        ttl,
    } = change;
    who.check_bucket_write(bucket)?;
    let real = who.subject_in(key);
    let mut message = kv::entry(bucket, &real, operation, value);
    if let Some(ttl) = ttl {
        message.ttl(ttl)?;
    }
    let expected = match expect {
        Expect::Any => None,
        Expect::Revision(revision) => Some(revision),
        Expect::Absent => Some(0),
        Expect::Exists => match latest(state, who, bucket, &real).await? {
            Some(current) if current.operation == Operation::Put => Some(current.revision),
            other => {
                return Err(ApiError::PreconditionFailed {
                    detail: format!(
                        "If-Match: * needs key '{key}' to have a value: {}",
                        no_value(key, bucket, other.as_ref())
                    ),
                    jetstream_code: None,
                });
            }
        },
    };
    state.publish_limiter.check(&who.id, 1)?;
    let mut attempt = message.clone();
    if let Some(revision) = expected {
        attempt.expected_last_subject_sequence(revision)?;
    }
    let stored = match super::publish::send(state, attempt).await {
        Ok(stored) => stored,
        Err(ApiError::PreconditionFailed { jetstream_code, .. }) => {
            let current = latest(state, who, bucket, &real).await?;
            // "Absent" holds for a key whose latest revision deletes it: write again,
            // expecting that revision (as every NATS client's create does).
            let retry = match (&expect, &current) {
                (Expect::Absent, Some(gone)) if gone.operation != Operation::Put => {
                    let mut again = message.clone();
                    again.expected_last_subject_sequence(gone.revision)?;
                    Some(super::publish::send(state, again).await)
                }
                _ => None,
            };
            match retry {
                Some(Ok(stored)) => stored,
                Some(Err(ApiError::PreconditionFailed { .. })) | None => {
                    return Err(conflict(key, expect, current.as_ref(), jetstream_code));
                }
                Some(Err(err)) => return Err(bucket_missing(bucket)(err)),
            }
        }
        Err(err) => return Err(bucket_missing(bucket)(err)),
    };
    if stored.stream != kv::stream_of(bucket) {
        return Err(ApiError::JetStream {
            detail: format!(
                "the write was stored in stream '{}', not in bucket '{bucket}'",
                stored.stream
            ),
            jetstream_code: None,
        });
    }
    Ok(stored.seq)
}

/// The 412 of a write whose precondition failed, saying where the key is now.
fn conflict(
    key: &Key,
    expect: Expect,
    current: Option<&Revision>,
    jetstream_code: Option<u64>,
) -> ApiError {
    let now = match current {
        Some(c) if c.operation == Operation::Put => {
            format!("key '{key}' is at revision {}", c.revision)
        }
        Some(c) => format!(
            "key '{key}' was {} at revision {}",
            if c.operation == Operation::Purge {
                "purged"
            } else {
                "deleted"
            },
            c.revision
        ),
        None => format!("key '{key}' has no revision"),
    };
    let asked = match expect {
        Expect::Revision(revision) => format!("If-Match asked for revision {revision}"),
        Expect::Absent => "If-None-Match: * asked for a key without a value".to_owned(),
        Expect::Exists => "If-Match: * asked for a key with a value".to_owned(),
        Expect::Any => "the write asked for nothing".to_owned(),
    };
    ApiError::PreconditionFailed {
        detail: format!(
            "{now}; {asked}. Nothing was written: read the key again and retry with its revision"
        ),
        jetstream_code,
    }
}

/// Sets a key's value; answers the new revision. `ttl` (`30s`, `5m`, `2h`, `never`) expires
/// this value on a bucket with `limit_marker_ttl`.
pub async fn put(
    state: &AppState,
    who: &Principal,
    bucket: &BucketName,
    key: &Key,
    value: Bytes,
    expect: Expect,
    ttl: Option<&str>,
) -> Result<u64, ApiError> {
    let change = Change {
        operation: Operation::Put,
        value,
        expect,
        ttl,
    };
    write(state, who, bucket, key, change).await
}

/// Deletes a key (keeping its history) or purges it (removing its history too); answers the
/// revision of the delete.
pub async fn delete(
    state: &AppState,
    who: &Principal,
    bucket: &BucketName,
    key: &Key,
    purge: bool,
    expect: Expect,
) -> Result<u64, ApiError> {
    let operation = if purge {
        Operation::Purge
    } else {
        Operation::Delete
    };
    let change = Change {
        operation,
        value: Bytes::new(),
        expect,
        ttl: None,
    };
    write(state, who, bucket, key, change).await
}

/// The keys of a bucket that have a value, matching `pattern` (default: all), in the order
/// they were last written; at most `max_keys`, and whether more were left out.
pub async fn keys(
    state: &AppState,
    who: &Principal,
    bucket: &BucketName,
    pattern: Option<&KeyPattern>,
    max_keys: Option<usize>,
) -> Result<(Vec<String>, bool), ApiError> {
    who.check_bucket_read(bucket)?;
    let limit = match max_keys {
        None => DEFAULT_KEYS,
        Some(n) if (1..=MAX_KEYS).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::InvalidParameter(format!(
                "max_keys must be between 1 and {MAX_KEYS}"
            )));
        }
    };
    state.nats.bucket_info(bucket).await?;
    let mut replay = replay_keys(
        state,
        who,
        bucket,
        pattern,
        Start::LastPerSubject,
        EncodingChoice::Base64,
    )
    .await?;
    let mut keys = Vec::new();
    let mut truncated = false;
    let prefix = format!("$KV.{bucket}.");
    let result = loop {
        match replay.next(state.config.replay_batch).await {
            Ok(replay::Event::Message(message)) => {
                if operation_of(&message) != Operation::Put {
                    continue;
                }
                if keys.len() == limit {
                    truncated = true;
                    break Ok(());
                }
                let stored = message.subject.strip_prefix(&prefix).unwrap_or_default();
                keys.push(who.shown(stored).to_owned());
            }
            Ok(replay::Event::Gap { .. }) => {}
            Ok(replay::Event::CaughtUp { .. }) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    replay.close().await;
    result.map(|()| (keys, truncated))
}

/// An ordered replay of the bucket's entries of the keys `pattern` matches (default: all) in
/// `who`'s namespace.
async fn replay_keys(
    state: &AppState,
    who: &Principal,
    bucket: &BucketName,
    pattern: Option<&KeyPattern>,
    start: Start,
    encoding: EncodingChoice,
) -> Result<Replay, ApiError> {
    let filter = kv::subject_of(bucket, &who.subject_in(pattern.map_or(">", |p| p.as_str())));
    let spec = super::subscribe::replay_spec(
        state,
        &kv::stream_of(bucket),
        start,
        vec![filter],
        None,
        encoding,
        false,
    );
    Replay::start(state.nats.clone(), state.ack_keys.clone(), spec).await
}

fn operation_of(message: &Message) -> Operation {
    Operation::from_headers(
        message.headers.get(KV_OPERATION).map(String::as_str),
        message.headers.get(MARKER_REASON).map(String::as_str),
    )
}

/// Watches the keys matching `pattern` (default: all): entries from where `from` says, a
/// `caught_up` once the entries stored when the watch started were delivered, then every
/// change as it is written.
pub async fn watch(
    state: &AppState,
    who: &Principal,
    bucket: &BucketName,
    pattern: Option<&KeyPattern>,
    from: WatchFrom,
    encoding: EncodingChoice,
) -> Result<Tail, ApiError> {
    who.check_bucket_read(bucket)?;
    state.nats.bucket_info(bucket).await?;
    let start = match from {
        WatchFrom::Current => Start::LastPerSubject,
        WatchFrom::History => Start::All,
        WatchFrom::Updates => Start::New,
        WatchFrom::Revision(0) => {
            return Err(ApiError::InvalidParameter(
                "revisions start at 1".to_owned(),
            ));
        }
        WatchFrom::Revision(revision) => Start::Sequence(revision),
    };
    let replay = replay_keys(state, who, bucket, pattern, start, encoding).await?;
    let prefix = format!("$KV.{bucket}.");
    let bucket = bucket.to_string();
    let who = who.clone();
    let show = Arc::new(move |message: Message| {
        let stored = message.subject.strip_prefix(&prefix)?;
        let operation = operation_of(&message);
        let put = operation == Operation::Put;
        let entry = Entry {
            bucket: bucket.clone(),
            key: who.shown(stored).to_owned(),
            revision: message.seq,
            operation,
            created: message.time,
            value: put.then_some(message.data),
            encoding: put.then_some(message.encoding),
        };
        let json = serde_json::to_string(&entry).ok()?;
        Some(Shown {
            seq: entry.revision,
            json,
            binary: None,
        })
    });
    Ok(Tail::mapped(replay, show))
}

/// The query parameters of a watch as the WebSocket and SSE routes document them (`credit` is
/// the WebSocket's own).
#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "documents the query for OpenAPI; parsed by Watch::parse"
)]
pub struct WatchQuery {
    /// Keys to watch: a key, or a pattern where `*` matches one token and a last `>` the rest
    /// (default: every key)
    key: Option<String>,
    /// current (default: the latest revision of each key, then changes), history (every kept
    /// revision, then changes) or updates (changes only)
    deliver: Option<String>,
    /// Every change from this revision on (resume with the last revision seen + 1); not with
    /// `deliver`
    start_revision: Option<u64>,
    /// auto (default) or base64
    encoding: Option<String>,
}

/// What a watch asks for (the query of the watch routes).
#[derive(Debug, Clone, Default)]
pub struct Watch {
    pub pattern: Option<KeyPattern>,
    pub from: WatchFrom,
    pub encoding: EncodingChoice,
    /// WebSocket: entries sent before the client grants more.
    pub credit: Option<u64>,
}

impl Watch {
    /// Parses the query string.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut watch = Self::default();
        let bad = |name: &str, value: &str| {
            ApiError::InvalidParameter(format!("invalid {name} '{value}'"))
        };
        let mut deliver = None;
        let mut start = None;
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match name.as_ref() {
                "key" => watch.pattern = Some(KeyPattern::parse(value.to_string())?),
                "deliver" => {
                    deliver = Some(match value.as_ref() {
                        "current" => WatchFrom::Current,
                        "history" => WatchFrom::History,
                        "updates" => WatchFrom::Updates,
                        other => return Err(bad("deliver (current, history, updates)", other)),
                    });
                }
                "start_revision" => {
                    let revision: u64 = value.parse().map_err(|_| bad("start_revision", &value))?;
                    start = Some(WatchFrom::Revision(revision));
                }
                "encoding" => {
                    watch.encoding = match value.as_ref() {
                        "auto" => EncodingChoice::Auto,
                        "base64" => EncodingChoice::Base64,
                        other => return Err(bad("encoding (auto, base64)", other)),
                    }
                }
                "credit" => watch.credit = Some(value.parse().map_err(|_| bad("credit", &value))?),
                // Reserved for browser authentication.
                "access_token" => {}
                other => {
                    return Err(ApiError::InvalidParameter(format!(
                        "unknown query parameter '{other}'"
                    )));
                }
            }
        }
        watch.from = match (deliver, start) {
            (Some(_), Some(_)) => {
                return Err(ApiError::InvalidParameter(
                    "give deliver or start_revision, not both".to_owned(),
                ));
            }
            (Some(from), None) | (None, Some(from)) => from,
            (None, None) => WatchFrom::Current,
        };
        Ok(watch)
    }
}
