//! Subscribing to a stream: replay from a position and live tail, or a durable consumer's
//! deliveries with ack ids. Reading permission, the tenant namespace and the tenant's consumer
//! check apply here for every streaming transport.

use utoipa::IntoParams;

use super::authz::ConsumerGrants;
use super::feed::Tail;
use super::names::{ConsumerName, StreamName};
use std::time::Duration;

use async_nats::jetstream::consumer::PriorityPolicy;

use super::replay::{PULL_EXPIRES, ReplayFrom, ReplaySpec, Start};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::message::EncodingChoice;
use crate::state::AppState;

/// JetStream's priority timeout when a `pinned_client` consumer sets none.
const DEFAULT_PRIORITY_TIMEOUT: Duration = Duration::from_secs(120);
/// Shortest pull of a pinned subscription.
const MIN_PINNED_PULL: Duration = Duration::from_secs(1);

/// The query parameters of a [`Subscription`] as the WebSocket and SSE routes document them
/// (`credit` is the WebSocket's own).
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "documents the query for OpenAPI; parsed by Subscription::parse"
)]
pub struct SubscriptionQuery {
    /// all (default), last, new or last_per_subject
    deliver: Option<String>,
    /// Start at this stream sequence (resume with last seen + 1)
    start_seq: Option<u64>,
    /// Start at the first message at or after this RFC 3339 time
    start_time: Option<String>,
    /// Subject filter; repeat or comma-separate for several
    filter: Option<String>,
    /// Durable consumer: ack mode (messages carry ack_id and are redelivered until acked)
    consumer: Option<String>,
    /// With `consumer`: the priority group to pull as (consumers with a priority_policy). On a
    /// pinned_client consumer the socket is one worker: it takes the pin when it is free and
    /// keeps it while it is open
    group: Option<String>,
    /// auto (default), base64, or binary (WebSocket only: binary frames carrying the payload as
    /// it is)
    encoding: Option<String>,
}

/// What a subscription asks for: where to start, which subjects, or a durable consumer (ack
/// mode). Shared by the WebSocket and SSE endpoints (as query parameters) and the multiplexed
/// WebSocket `subscribe` op.
#[derive(Debug, Clone, Default)]
pub struct Subscription {
    pub deliver: Option<ReplayFrom>,
    pub start_seq: Option<u64>,
    pub start_time: Option<String>,
    pub filters: Vec<String>,
    pub consumer: Option<String>,
    /// With `consumer`: its priority group.
    pub group: Option<String>,
    pub encoding: EncodingChoice,
    /// WebSocket binary frames: a JSON header and the payload as it is.
    pub binary: bool,
    pub credit: Option<u64>,
}

impl Subscription {
    /// Parses the query string; `filter` may repeat or hold several comma-separated subjects.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut params = Self::default();
        let bad = |name: &str, value: &str| {
            ApiError::InvalidParameter(format!("invalid {name} '{value}'"))
        };
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match name.as_ref() {
                "deliver" => {
                    let deliver =
                        serde_json::from_value(serde_json::Value::String(value.to_string()))
                            .map_err(|_| {
                                bad("deliver (all, last, new, last_per_subject)", &value)
                            })?;
                    params.deliver = Some(deliver);
                }
                "start_seq" => {
                    params.start_seq = Some(value.parse().map_err(|_| bad("start_seq", &value))?)
                }
                "start_time" => params.start_time = Some(value.to_string()),
                "filter" => params.filters.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                ),
                "consumer" => params.consumer = Some(value.to_string()),
                "group" => params.group = Some(value.to_string()),
                "encoding" => {
                    (params.encoding, params.binary) = match value.as_ref() {
                        "auto" => (EncodingChoice::Auto, false),
                        "base64" => (EncodingChoice::Base64, false),
                        "binary" => (EncodingChoice::Auto, true),
                        other => return Err(bad("encoding (auto, base64, binary)", other)),
                    }
                }
                "credit" => params.credit = Some(value.parse().map_err(|_| bad("credit", &value))?),
                // Reserved for browser authentication (`access_token`).
                "access_token" => {}
                other => {
                    return Err(ApiError::InvalidParameter(format!(
                        "unknown query parameter '{other}'"
                    )));
                }
            }
        }
        Ok(params)
    }

    /// The replay these options describe, in `who`'s namespace.
    fn spec(
        &self,
        state: &AppState,
        stream: &str,
        principal: &Principal,
    ) -> Result<ReplaySpec, ApiError> {
        let start = Start::parse(self.deliver, self.start_seq, self.start_time.as_deref())?;
        let positioned =
            self.deliver.is_some() || self.start_seq.is_some() || self.start_time.is_some();
        if self.consumer.is_some() && (positioned || !self.filters.is_empty()) {
            return Err(ApiError::InvalidParameter(
                "with 'consumer', the durable consumer's own position and filters apply: \
                 drop deliver, start_seq, start_time and filter"
                    .to_owned(),
            ));
        }
        if let Some(group) = &self.group {
            if self.consumer.is_none() {
                return Err(ApiError::InvalidParameter(
                    "'group' needs 'consumer': priority groups belong to durable consumers"
                        .to_owned(),
                ));
            }
            let valid = !group.is_empty()
                && group.len() <= super::consumers::MAX_GROUP
                && group
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_/=".contains(&b));
            if !valid {
                return Err(ApiError::InvalidParameter(
                    "group must be 1 to 16 letters, digits or - _ / =".to_owned(),
                ));
            }
        }
        let mut spec = replay_spec(
            state,
            stream,
            start,
            // A tenant replays only its namespace.
            if self.consumer.is_some() {
                self.filters.clone()
            } else {
                principal.filters_in(&self.filters)
            },
            self.consumer.clone(),
            self.encoding,
            self.binary,
        );
        spec.group = self.group.clone();
        Ok(spec)
    }
}

pub fn replay_spec(
    state: &AppState,
    stream: &str,
    start: Start,
    filters: Vec<String>,
    consumer: Option<String>,
    encoding: EncodingChoice,
    binary: bool,
) -> ReplaySpec {
    let config = &state.config;
    ReplaySpec {
        stream: stream.to_owned(),
        start,
        filters,
        consumer,
        group: None,
        pull_expires: PULL_EXPIRES,
        encoding,
        binary,
        batch_messages: config.replay_batch,
        batch_bytes: usize::try_from(config.ws_max_buffered_bytes).unwrap_or(usize::MAX),
        heartbeat: config.replay_heartbeat,
    }
}

/// Starts the replay `subscription` asks for on `stream`, after checking that `who` may read
/// the stream and, for a tenant, may use the durable consumer (remembered in `grants`). Live
/// deliveries come from the stream's shared feed on this replica ([`super::feed`]).
pub async fn subscribe(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    subscription: &Subscription,
    grants: &mut ConsumerGrants,
) -> Result<Tail, ApiError> {
    who.check_read(stream)?;
    let spec = subscription.spec(state, stream, who)?;
    let mut spec = spec;
    if let Some(consumer) = &spec.consumer {
        ConsumerName::parse(consumer.as_str())?;
        grants.check(&state.nats, who, stream, consumer).await?;
        if spec.group.is_some() {
            // A pinned worker keeps its pin by pulling within the priority timeout.
            let info = state.nats.consumer_info(stream, consumer).await?;
            if info.config.priority_policy == PriorityPolicy::PinnedClient {
                let timeout = if info.config.priority_timeout.is_zero() {
                    DEFAULT_PRIORITY_TIMEOUT
                } else {
                    info.config.priority_timeout
                };
                spec.pull_expires = (timeout / 2).clamp(MIN_PINNED_PULL, PULL_EXPIRES);
                // JetStream refuses a pull whose heartbeat is above half its expiry.
                spec.heartbeat = spec.heartbeat.min(spec.pull_expires / 2);
            }
        }
    }
    Tail::start(state, who, spec).await
}
