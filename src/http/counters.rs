//! Counters: add to a subject's total and read it.

use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::edge::extract::{Json, Path};
use crate::edge::responses::{CounterErrors, ReadErrors};
use crate::error::ApiError;
use crate::ops;
use crate::ops::counters::Total;
use crate::ops::names::{StreamName, Subject};
use crate::state::AppState;

/// How much to add: a whole number, negative to subtract.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"increment": "5"}))]
pub struct IncrementRequest {
    /// Decimal text (`"5"`, `"-3"`, `"+12"`, up to 100 digits: totals are arbitrary
    /// precision), or a JSON integer.
    pub increment: Increment,
}

/// An increment as text or as a JSON integer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Increment {
    Text(String),
    Integer(i64),
}

/// A counter's total.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"stream": "HITS", "subject": "hits.home", "value": "42", "seq": 42}))]
pub struct Counter {
    pub stream: String,
    pub subject: String,
    /// The total, as decimal text (it may exceed any JSON number): `"0"` for a subject never
    /// incremented.
    pub value: String,
    /// Stream sequence of the increment that produced this total; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// (increments) A repeat of an earlier increment with the same `Idempotency-Key`: not added
    /// again; `value` is the current total.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl Counter {
    fn new(stream: &StreamName, total: Total) -> Self {
        Self {
            stream: stream.to_string(),
            subject: total.subject,
            value: total.value,
            seq: total.seq,
            duplicate: total.duplicate,
        }
    }
}

/// Add to a counter.
///
/// Adds `increment` to the total JetStream keeps for `subject` in a stream created with
/// `allow_msg_counter` (nats-server 2.12+), and answers the new total. JetStream adds it up on
/// the stream leader, so concurrent increments through any replica never lose an update. Needs
/// `publish` on the subject. An `Idempotency-Key` makes a retry within the stream's duplicate
/// window safe: the repeat is not added again (`duplicate: true`).
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/counters/{subject}",
    tag = "counters",
    operation_id = "increment_counter",
    params(
        ("stream" = String, Path, description = "Stream name (with allow_msg_counter)", example = "HITS"),
        ("subject" = String, Path, description = "Counter subject (no wildcards)", example = "hits.home"),
        ("Idempotency-Key" = Option<String>, Header, description = "Adds once per key within the stream's duplicate window"),
    ),
    request_body = IncrementRequest,
    responses((status = 200, description = "The new total", body = Counter), CounterErrors)
)]
pub async fn increment_counter(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, subject)): Path<(String, String)>,
    headers: HeaderMap,
    Json(request): Json<IncrementRequest>,
) -> Result<Json<Counter>, ApiError> {
    let stream = StreamName::parse(stream)?;
    let subject = Subject::parse(subject)?;
    let key = match headers.get("idempotency-key") {
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::InvalidHeader("Idempotency-Key must be visible ASCII".to_owned())
        })?),
        None => None,
    };
    let by = match request.increment {
        Increment::Text(text) => text,
        Increment::Integer(number) => number.to_string(),
    };
    let total = ops::counters::increment(&state, &principal, &stream, &subject, &by, key).await?;
    Ok(Json(Counter::new(&stream, total)))
}

/// Read a counter.
///
/// The total JetStream keeps for `subject`, read through the stream leader (an increment
/// answered 200 is always seen). `"0"` for a subject never incremented. Needs `read` of the
/// stream.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/counters/{subject}",
    tag = "counters",
    operation_id = "get_counter",
    params(
        ("stream" = String, Path, description = "Stream name (with allow_msg_counter)", example = "HITS"),
        ("subject" = String, Path, description = "Counter subject (no wildcards)", example = "hits.home"),
    ),
    responses((status = 200, description = "The total", body = Counter), ReadErrors)
)]
pub async fn get_counter(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, subject)): Path<(String, String)>,
) -> Result<Json<Counter>, ApiError> {
    let stream = StreamName::parse(stream)?;
    let subject = Subject::parse(subject)?;
    let total = ops::counters::get(&state, &principal, &stream, &subject).await?;
    Ok(Json(Counter::new(&stream, total)))
}
