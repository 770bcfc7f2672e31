//! Key-value buckets over REST: buckets, keys with their revisions (`ETag`, `If-Match`,
//! `If-None-Match`), a key's history and the keys of a bucket. Watching keys is on the
//! streaming routes (`/v1/kv/{bucket}/events`, `/v1/kv/{bucket}/ws`).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::edge::extract::{Body, Json, JsonOrEmpty, Path, Query};
use crate::edge::responses::{KvReadErrors, KvWriteErrors, WriteErrors};
use crate::error::ApiError;
use crate::message::EncodingChoice;
use crate::nats::kv::{BucketConfig, BucketInfo, BucketList, Operation};
use crate::nats::streams::PutOutcome;
use crate::ops;
use crate::ops::kv::{Entry, Expect, Revision};
use crate::ops::names::{BucketName, Key, KeyPattern};
use crate::state::AppState;
use crate::timestamp::format_time;

/// List buckets.
///
/// The key-value buckets the token may read, by name.
#[utoipa::path(
    get,
    path = "/v1/kv",
    tag = "kv",
    operation_id = "list_buckets",
    responses((status = 200, description = "The buckets", body = BucketList), KvReadErrors)
)]
pub async fn list_buckets(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<BucketList>, ApiError> {
    let buckets = ops::kv::list(&state, &principal).await?;
    Ok(Json(BucketList { buckets }))
}

/// Create or update a bucket.
///
/// Idempotent: creates the bucket (201), updates it when the configuration differs (200), or
/// leaves it alone (200). Administrators only. Without a body the bucket gets the defaults
/// (one revision per key, no limits, file storage, one replica). The bucket is the JetStream stream `KV_<bucket>`,
/// laid out as the NATS clients lay it out, so `nats kv` and the NATS client libraries use the
/// same bucket. Changing `storage` answers 409.
#[utoipa::path(
    put,
    path = "/v1/kv/{bucket}",
    tag = "kv",
    operation_id = "put_bucket",
    params(("bucket" = String, Path, description = "Bucket name (letters, digits, - and _)", example = "flags")),
    request_body(content = Option<BucketConfig>, description = "The configuration; omit for the defaults"),
    responses(
        (status = 201, description = "Created", body = BucketInfo),
        (status = 200, description = "Updated, or already configured so", body = BucketInfo),
        WriteErrors,
    )
)]
pub async fn put_bucket(
    State(state): State<AppState>,
    principal: Principal,
    Path(bucket): Path<String>,
    JsonOrEmpty(config): JsonOrEmpty<BucketConfig>,
) -> Result<Response, ApiError> {
    let bucket = BucketName::parse(bucket)?;
    let (info, outcome) = ops::kv::put_bucket(&state, &principal, &bucket, &config).await?;
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Updated | PutOutcome::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(info)).into_response())
}

/// Get a bucket.
///
/// Configuration and state: stored revisions, bytes, the latest revision.
#[utoipa::path(
    get,
    path = "/v1/kv/{bucket}",
    tag = "kv",
    operation_id = "get_bucket",
    params(("bucket" = String, Path, description = "Bucket name", example = "flags")),
    responses((status = 200, description = "The bucket", body = BucketInfo), KvReadErrors)
)]
pub async fn get_bucket(
    State(state): State<AppState>,
    principal: Principal,
    Path(bucket): Path<String>,
) -> Result<Json<BucketInfo>, ApiError> {
    let bucket = BucketName::parse(bucket)?;
    Ok(Json(
        ops::kv::get_bucket(&state, &principal, &bucket).await?,
    ))
}

/// Delete a bucket.
///
/// Deletes the bucket and every key in it. Administrators only.
#[utoipa::path(
    delete,
    path = "/v1/kv/{bucket}",
    tag = "kv",
    operation_id = "delete_bucket",
    params(("bucket" = String, Path, description = "Bucket name", example = "flags")),
    responses((status = 204, description = "Deleted"), WriteErrors)
)]
pub async fn delete_bucket(
    State(state): State<AppState>,
    principal: Principal,
    Path(bucket): Path<String>,
) -> Result<StatusCode, ApiError> {
    let bucket = BucketName::parse(bucket)?;
    ops::kv::delete_bucket(&state, &principal, &bucket).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which keys to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeysParams {
    /// Only keys matching this pattern: `.`-separated tokens, `*` matches one token, a last
    /// `>` the rest (`users.*.email`, `config.>`).
    pub key: Option<String>,
    /// Most keys to answer (default 1000, at most 10000).
    pub max_keys: Option<usize>,
}

/// Keys of a bucket.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"bucket": "flags", "keys": ["checkout.new_flow", "search.v2"], "truncated": false}))]
pub struct KeyList {
    pub bucket: String,
    /// Keys that have a value, in the order they were last written.
    pub keys: Vec<String>,
    /// More keys match than `max_keys`: narrow `key` (or raise `max_keys`) to see them.
    pub truncated: bool,
}

/// List keys.
///
/// The keys that have a value (deleted and purged keys are left out), optionally only those
/// matching the pattern `key`. Needs `kv_read` on the bucket; a tenant sees its own keys.
#[utoipa::path(
    get,
    path = "/v1/kv/{bucket}/keys",
    tag = "kv",
    operation_id = "list_keys",
    params(("bucket" = String, Path, description = "Bucket name", example = "flags"), KeysParams),
    responses((status = 200, description = "The keys", body = KeyList), KvReadErrors)
)]
pub async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
    Path(bucket): Path<String>,
    Query(params): Query<KeysParams>,
) -> Result<Json<KeyList>, ApiError> {
    let bucket = BucketName::parse(bucket)?;
    let pattern = params.key.map(KeyPattern::parse).transpose()?;
    let (keys, truncated) = ops::kv::keys(
        &state,
        &principal,
        &bucket,
        pattern.as_ref(),
        params.max_keys,
    )
    .await?;
    Ok(Json(KeyList {
        bucket: bucket.to_string(),
        keys,
        truncated,
    }))
}

/// Which revision to read and how.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetKeyParams {
    /// Read this revision instead of the latest (it must be a write of this key still kept).
    pub revision: Option<u64>,
    /// `auto` (JSON, text or base64, whichever is lossless) or `base64` (always).
    #[serde(default)]
    pub encoding: EncodingChoice,
}

/// The `ETag` of a revision.
fn etag(revision: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The revisions an `If-Match` or `If-None-Match` names: `*`, or one quoted revision (a bare
/// number is accepted too). Weak validators (`W/"…"`) name no revision a write can rely on.
enum Condition {
    Any,
    Revision(u64),
}

fn condition(headers: &HeaderMap, name: HeaderName) -> Result<Option<Condition>, ApiError> {
    let Some(value) = headers.get(&name) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::InvalidHeader(format!(
            "{name} must be * or one revision as an entity tag (\"41\"), as the ETag of a read \
             or write answers it"
        ))
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    if text == "*" {
        return Ok(Some(Condition::Any));
    }
    let bare = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if bare.is_empty() || !bare.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let revision: u64 = bare.parse().map_err(|_| bad())?;
    Ok(Some(Condition::Revision(revision)))
}

/// What a write's `If-Match` / `If-None-Match` require.
fn expect(headers: &HeaderMap) -> Result<Expect, ApiError> {
    match (
        condition(headers, header::IF_MATCH)?,
        condition(headers, header::IF_NONE_MATCH)?,
    ) {
        (None, None) => Ok(Expect::Any),
        (Some(Condition::Revision(revision)), None) => Ok(Expect::Revision(revision)),
        (Some(Condition::Any), None) => Ok(Expect::Exists),
        (None, Some(Condition::Any)) => Ok(Expect::Absent),
        (None, Some(Condition::Revision(_))) => Err(ApiError::InvalidHeader(
            "on a write, If-None-Match takes only * (write only if the key has no value); use \
             If-Match with a revision to write only over that revision"
                .to_owned(),
        )),
        (Some(_), Some(_)) => Err(ApiError::InvalidHeader(
            "send If-Match or If-None-Match, not both".to_owned(),
        )),
    }
}

/// Get a key.
///
/// The key's latest value (or `revision`) as JSON, or with `Accept: application/octet-stream`
/// the value byte-exact with `Jetway-Revision` and `Jetway-Created` headers. `ETag` is the
/// revision; `If-None-Match` with it answers 304 while the key is unchanged. A deleted or
/// purged key answers 404. Reads go through the bucket's leader: a write answered 200 is
/// always seen. Needs `kv_read` on the bucket.
#[utoipa::path(
    get,
    path = "/v1/kv/{bucket}/keys/{key}",
    tag = "kv",
    operation_id = "get_key",
    params(
        ("bucket" = String, Path, description = "Bucket name", example = "flags"),
        ("key" = String, Path, description = "Key: `.`-separated tokens of letters, digits, - _ / = (a `/` is sent as %2F)", example = "checkout.new_flow"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag of an earlier read: 304 while the key is still at that revision"),
        GetKeyParams,
    ),
    responses(
        (status = 200, description = "The value: its JSON entry, or with \
            `Accept: application/octet-stream` the value byte-exact", content(
            (Entry = "application/json"),
            (Vec<u8> = "application/octet-stream"),
        ), headers(("ETag" = String, description = "The revision, quoted"))),
        (status = 304, description = "Not modified: the key is still at the revision If-None-Match named"),
        KvReadErrors,
    )
)]
pub async fn get_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((bucket, key)): Path<(String, String)>,
    Query(params): Query<GetKeyParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let bucket = BucketName::parse(bucket)?;
    let key = Key::parse(key)?;
    let not_modified_since = condition(&headers, header::IF_NONE_MATCH)?;
    let found = ops::kv::get(&state, &principal, &bucket, &key, params.revision).await?;
    let tag = etag(found.revision);
    match not_modified_since {
        Some(Condition::Any) => {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
        }
        Some(Condition::Revision(revision)) if revision == found.revision => {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
        }
        _ => {}
    }
    if super::messages::wants_raw(&headers) {
        return Ok(raw_response(&found));
    }
    Ok((
        [(header::ETAG, tag)],
        Json(found.entry(&bucket, params.encoding)),
    )
        .into_response())
}

fn raw_response(found: &Revision) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag(found.revision));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) = HeaderValue::from_str(&found.revision.to_string()) {
        headers.insert("jetway-revision", value);
    }
    if let Ok(value) = HeaderValue::from_str(&format_time(found.created)) {
        headers.insert("jetway-created", value);
    }
    (headers, found.value.clone()).into_response()
}

/// How long the value lives.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PutKeyParams {
    /// Expire this value after `30s`, `5m`, `2h` (whole seconds, minutes or hours), or
    /// `never` (not even by the bucket's `ttl`). The bucket needs `limit_marker_ttl`.
    pub ttl: Option<String>,
}

/// A write's result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"bucket": "flags", "key": "checkout.new_flow", "revision": 42, "operation": "put"}))]
pub struct Written {
    pub bucket: String,
    pub key: String,
    /// The revision of this write: pass it in `If-Match` to write again only over it.
    pub revision: u64,
    pub operation: Operation,
}

fn written(bucket: &BucketName, key: &Key, revision: u64, operation: Operation) -> Response {
    (
        [(header::ETAG, etag(revision))],
        Json(Written {
            bucket: bucket.to_string(),
            key: key.to_string(),
            revision,
            operation,
        }),
    )
        .into_response()
}

/// Put a key.
///
/// Stores the body byte-exact as the key's new value and answers its revision (also as `ETag`).
/// A 200 means JetStream stored it (on every replica it needs). `If-Match: "<revision>"` writes
/// only if the key is still at that revision, `If-Match: *` only if it has a value,
/// `If-None-Match: *` only if it has none (create); otherwise 412 and nothing is written.
/// Needs `kv_write` on the bucket.
#[utoipa::path(
    put,
    path = "/v1/kv/{bucket}/keys/{key}",
    tag = "kv",
    operation_id = "put_key",
    params(
        ("bucket" = String, Path, description = "Bucket name", example = "flags"),
        ("key" = String, Path, description = "Key (a `/` is sent as %2F)", example = "checkout.new_flow"),
        ("If-Match" = Option<String>, Header, description = "Write only over this revision (an ETag such as \"41\"), or * (only if the key has a value)"),
        ("If-None-Match" = Option<String>, Header, description = "* : write only if the key has no value (create)"),
        PutKeyParams,
    ),
    request_body(
        description = "The value, stored byte-exact (any Content-Type; it is not stored).",
        content(
            (String = "application/octet-stream"),
            (String = "application/json"),
            (String = "text/plain"),
        )
    ),
    responses(
        (status = 200, description = "Stored", body = Written,
            headers(("ETag" = String, description = "The new revision, quoted"))),
        KvWriteErrors,
    )
)]
pub async fn put_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((bucket, key)): Path<(String, String)>,
    Query(params): Query<PutKeyParams>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let bucket = BucketName::parse(bucket)?;
    let key = Key::parse(key)?;
    let expect = expect(&headers)?;
    let revision = ops::kv::put(
        &state,
        &principal,
        &bucket,
        &key,
        body,
        expect,
        params.ttl.as_deref(),
    )
    .await?;
    Ok(written(&bucket, &key, revision, Operation::Put))
}

/// How to delete.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteKeyParams {
    /// `true`: also remove every earlier revision (purge). Default `false`: the history is
    /// kept, within the bucket's `history`.
    #[serde(default)]
    pub purge: bool,
}

/// Delete a key.
///
/// Writes a delete (or with `purge=true` a purge) as the key's new revision: reads answer 404
/// from then on, watchers see the delete. `If-Match` as for a put. Needs `kv_write`.
#[utoipa::path(
    delete,
    path = "/v1/kv/{bucket}/keys/{key}",
    tag = "kv",
    operation_id = "delete_key",
    params(
        ("bucket" = String, Path, description = "Bucket name", example = "flags"),
        ("key" = String, Path, description = "Key (a `/` is sent as %2F)", example = "checkout.new_flow"),
        ("If-Match" = Option<String>, Header, description = "Delete only if the key is at this revision, or * (only if it has a value)"),
        DeleteKeyParams,
    ),
    responses(
        (status = 200, description = "Deleted", body = Written,
            headers(("ETag" = String, description = "The revision of the delete, quoted"))),
        KvWriteErrors,
    )
)]
pub async fn delete_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((bucket, key)): Path<(String, String)>,
    Query(params): Query<DeleteKeyParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let bucket = BucketName::parse(bucket)?;
    let key = Key::parse(key)?;
    let expect = expect(&headers)?;
    if expect == Expect::Absent {
        return Err(ApiError::InvalidHeader(
            "If-None-Match: * on a delete can never hold usefully; use If-Match".to_owned(),
        ));
    }
    let revision = ops::kv::delete(&state, &principal, &bucket, &key, params.purge, expect).await?;
    let operation = if params.purge {
        Operation::Purge
    } else {
        Operation::Delete
    };
    Ok(written(&bucket, &key, revision, operation))
}

/// Every kept revision of a key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyHistory {
    pub bucket: String,
    pub key: String,
    /// Oldest first, deletes and purges included (up to the bucket's `history`).
    pub entries: Vec<Entry>,
}

/// Get a key's history.
///
/// Every revision the bucket keeps for the key (its `history`, up to 64), oldest first,
/// deletes included. Needs `kv_read`.
#[utoipa::path(
    get,
    path = "/v1/kv/{bucket}/keys/{key}/history",
    tag = "kv",
    operation_id = "get_key_history",
    params(
        ("bucket" = String, Path, description = "Bucket name", example = "flags"),
        ("key" = String, Path, description = "Key (a `/` is sent as %2F)", example = "checkout.new_flow"),
        crate::http::messages::EncodingParams,
    ),
    responses((status = 200, description = "The revisions", body = KeyHistory), KvReadErrors)
)]
pub async fn get_key_history(
    State(state): State<AppState>,
    principal: Principal,
    Path((bucket, key)): Path<(String, String)>,
    Query(params): Query<crate::http::messages::EncodingParams>,
) -> Result<Json<KeyHistory>, ApiError> {
    let bucket = BucketName::parse(bucket)?;
    let key = Key::parse(key)?;
    let revisions = ops::kv::history(&state, &principal, &bucket, &key).await?;
    Ok(Json(KeyHistory {
        bucket: bucket.to_string(),
        key: key.to_string(),
        entries: revisions
            .iter()
            .map(|r| r.entry(&bucket, params.encoding))
            .collect(),
    }))
}
