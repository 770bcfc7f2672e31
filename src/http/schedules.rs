//! Message schedules: store, read and cancel delayed or repeating messages.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::duration;
use crate::edge::extract::{Json, Path};
use crate::edge::responses::{ReadErrors, ScheduleErrors};
use crate::error::ApiError;
use crate::nats::publish::header;
use crate::ops;
use crate::ops::names::{StreamName, Subject};
use crate::ops::publish::BatchItem;
use crate::ops::schedules::{Schedule, When};
use crate::state::AppState;
use crate::timestamp::format_time;

/// A schedule: where and when JetStream publishes the message, and the message. Give exactly
/// one of `at`, `every` and `cron`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "target": "orders.reminders",
    "at": "2026-11-26T18:00:00Z",
    "data": {"order_id": 1001, "remind": "payment due"}
}))]
pub struct ScheduleRequest {
    /// Subject JetStream publishes the message to; the same stream must capture it, and it
    /// must differ from the schedule's subject.
    pub target: String,
    /// Once, at this RFC 3339 time (1970 to 2262).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Repeatedly, this often (at least `1s`; `30s`, `5m`, `1h`).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "5m")]
    pub every: Option<Duration>,
    /// On a cron expression: six fields, seconds first (`0 30 9 * * 1-5`), or `@hourly`,
    /// `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone of `cron` (default UTC), e.g. `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The message: any JSON (a string is stored as its UTF-8 text, anything else as compact
    /// JSON with `Content-Type: application/json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// The message as base64 (instead of `data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Headers of the message (not `Nats-*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// A pending schedule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "stream": "ORDERS", "subject": "orders.schedules.reminder-1001", "seq": 12,
    "schedule": "@at 2026-11-26T18:00:00Z", "target": "orders.reminders",
    "time": "2026-11-26T09:12:00.5Z"
}))]
pub struct ScheduleInfo {
    pub stream: String,
    /// The schedule's own subject (its name).
    pub subject: String,
    /// Stream sequence of the schedule message.
    pub seq: u64,
    /// JetStream's schedule: `@at <time>`, `@every <interval>` or the cron expression.
    pub schedule: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// When the schedule was stored.
    pub time: String,
}

/// Create or replace a schedule.
///
/// Stores a message that JetStream itself publishes to `target` later: once `at` a time
/// (a delayed message), or repeatedly `every` interval or on a `cron` expression. The stream
/// must have `allow_msg_schedules` (nats-server 2.12+) and capture both the schedule's subject
/// (its name) and the target. A schedule already on the subject is replaced. Needs `publish`
/// on both subjects. Answers 201 once JetStream stored the schedule.
#[utoipa::path(
    put,
    path = "/v1/streams/{stream}/schedules/{subject}",
    tag = "schedules",
    operation_id = "put_schedule",
    params(
        ("stream" = String, Path, description = "Stream name (with allow_msg_schedules)", example = "ORDERS"),
        ("subject" = String, Path, description = "The schedule's subject, its name (no wildcards)", example = "orders.schedules.reminder-1001"),
    ),
    request_body = ScheduleRequest,
    responses((status = 201, description = "Stored", body = ScheduleInfo), ScheduleErrors)
)]
pub async fn put_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, subject)): Path<(String, String)>,
    Json(request): Json<ScheduleRequest>,
) -> Result<(StatusCode, Json<ScheduleInfo>), ApiError> {
    let stream = StreamName::parse(stream)?;
    let subject = Subject::parse(subject)?;
    let when = match (request.at, request.every, request.cron) {
        (Some(at), None, None) if request.time_zone.is_none() => When::At(at),
        (None, Some(every), None) if request.time_zone.is_none() => When::Every(every),
        (None, None, Some(expression)) => When::Cron {
            expression,
            time_zone: request.time_zone,
        },
        (None, None, None) | (Some(_) | None, Some(_) | None, Some(_) | None) => {
            return Err(ApiError::InvalidBody(
                "give exactly one of at, every and cron (time_zone only with cron)".to_owned(),
            ));
        }
    };
    let message = BatchItem {
        data: request.data,
        data_base64: request.data_base64,
        content_type: request.content_type,
        headers: request.headers,
        ..BatchItem::default()
    };
    let schedule = Schedule {
        target: request.target,
        when,
        message,
    };
    ops::schedules::put(&state, &principal, &stream, &subject, schedule).await?;
    let stored = ops::schedules::get_own(&state, &principal, &stream, &subject).await?;
    Ok((
        StatusCode::CREATED,
        Json(info(&stream, &subject, &stored, &principal)),
    ))
}

/// Get a pending schedule.
///
/// The schedule stored on the subject, until it has fired for the last time or was cancelled
/// (then 404).
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/schedules/{subject}",
    tag = "schedules",
    operation_id = "get_schedule",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("subject" = String, Path, description = "The schedule's subject", example = "orders.schedules.reminder-1001"),
    ),
    responses((status = 200, description = "The schedule", body = ScheduleInfo), ReadErrors)
)]
pub async fn get_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, subject)): Path<(String, String)>,
) -> Result<Json<ScheduleInfo>, ApiError> {
    let stream = StreamName::parse(stream)?;
    let subject = Subject::parse(subject)?;
    let stored = ops::schedules::get(&state, &principal, &stream, &subject).await?;
    Ok(Json(info(&stream, &subject, &stored, &principal)))
}

/// Cancel a schedule.
///
/// Removes the schedule stored on the subject: it does not fire (again). Messages it already
/// published stay. Needs `publish` on the schedule's subject. 404 when none is pending.
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}/schedules/{subject}",
    tag = "schedules",
    operation_id = "cancel_schedule",
    params(
        ("stream" = String, Path, description = "Stream name", example = "ORDERS"),
        ("subject" = String, Path, description = "The schedule's subject", example = "orders.schedules.reminder-1001"),
    ),
    responses((status = 204, description = "Cancelled"), ReadErrors)
)]
pub async fn cancel_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Path((stream, subject)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let stream = StreamName::parse(stream)?;
    let subject = Subject::parse(subject)?;
    ops::schedules::cancel(&state, &principal, &stream, &subject).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn info(
    stream: &StreamName,
    subject: &Subject,
    stored: &async_nats::jetstream::message::StreamMessage,
    principal: &Principal,
) -> ScheduleInfo {
    let value = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_owned());
    ScheduleInfo {
        stream: stream.to_string(),
        subject: subject.to_string(),
        seq: stored.sequence,
        schedule: value(header::SCHEDULE).unwrap_or_default(),
        target: value(header::SCHEDULE_TARGET)
            .map(|t| principal.shown(&t).to_owned())
            .unwrap_or_default(),
        time_zone: value(header::SCHEDULE_TIME_ZONE),
        time: format_time(stored.time),
    }
}
