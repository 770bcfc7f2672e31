//! Durable pull consumers: the API's consumer model, administration, long-poll fetch and acks.
//!
//! Fetch talks to `CONSUMER.MSG.NEXT` directly so that it can return as soon as one message is
//! there: a no-wait request takes what is available now; only when that is nothing does a
//! waiting request for one message follow, and once it arrives another no-wait request fills the
//! rest of the batch. Waiting pulls carry `expires`, so none outlives its HTTP request by more
//! than the wait. Every pull goes through the one pull primitive in [`super::pull`].

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::time::Instant;
use utoipa::ToSchema;

use super::pull::{PIN_ID, PullEnd, PullEvent, PullPriority, PullRequest, Pulls};
use super::{Nats, Op};
use crate::ackid::{AckKeys, AckTarget};
use crate::duration;
use crate::error::ApiError;
use crate::message::{EncodingChoice, Message};
use crate::timestamp::format_time;

/// First pause before asking a leaderless consumer again; doubled up to [`RETRY_BACKOFF_MAX`].
const RETRY_BACKOFF_FIRST: Duration = Duration::from_millis(50);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Consumer metadata key under which jetway keeps the dead-letter subject.
pub const DEAD_LETTER_METADATA_KEY: &str = "jetway.dead_letter_subject";
/// Consumer metadata key marking consumers created through jetway (their health is exported
/// as metrics).
pub const MANAGED_METADATA_KEY: &str = "jetway.managed";
/// Consumer metadata key marking the consumer of a push subscription (jetway delivers it; it
/// is changed only through the push API).
pub const PUSH_METADATA_KEY: &str = "jetway.push";

/// Where a new consumer starts in the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliverFrom {
    /// From the first stored message.
    #[default]
    All,
    /// From the last stored message.
    Last,
    /// Only messages stored after the consumer is created.
    New,
    /// The last message of every subject, then new ones.
    LastPerSubject,
    /// From `opt_start_seq`.
    ByStartSequence,
    /// From the first message stored at or after `opt_start_time`.
    ByStartTime,
}

/// How a consumer shares its messages among the clients pulling it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriorityPolicy {
    /// Every fetch is served in turn.
    #[default]
    None,
    /// One client at a time per priority group gets the messages (it holds the pin); the others
    /// wait on standby and take over after `priority_timeout` without a fetch from it.
    PinnedClient,
    /// Fetches with `min_pending`/`min_ack_pending` are served only while the backlog is that
    /// large.
    Overflow,
    /// Fetches with a lower `priority` (0 first) are served before higher ones.
    Prioritized,
}

impl PriorityPolicy {
    fn is_none(&self) -> bool {
        *self == Self::None
    }
}

/// A priority group's state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PriorityGroupState {
    pub group: String,
    /// A client holds the group's pin (`pinned_client`). The pin id itself is not shown: it is
    /// the capability of the pinned client.
    pub pinned: bool,
    /// When the current pin was handed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_at: Option<String>,
}

/// A durable pull consumer's configuration. Durations are strings such as `30s`, `5m`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "deliver_policy": "all",
    "filter_subjects": ["orders.eu.>"],
    "ack_wait": "30s",
    "max_deliver": 5,
    "backoff": ["1s", "10s", "1m"],
    "max_ack_pending": 1000,
    "dead_letter_subject": "dlq.orders",
    "description": "EU order workers"
}))]
pub struct ConsumerConfig {
    #[serde(default)]
    pub deliver_policy: DeliverFrom,
    /// First stream sequence: required with `deliver_policy: by_start_sequence`, and only
    /// given with it.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub opt_start_seq: Option<u64>,
    /// Start time (RFC 3339): required with `deliver_policy: by_start_time`, and only given
    /// with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    /// Only messages on these subjects (wildcards allowed). Default: every subject of the stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    /// How long a delivered message may stay unacknowledged before redelivery. Default `30s`.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "30s")]
    pub ack_wait: Option<Duration>,
    /// Deliveries of one message before it is given up (and dead-lettered). Default unlimited.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_deliver: Option<u64>,
    /// Redelivery delays, one per delivery (the last repeats); overrides `ack_wait` for
    /// redelivery timing.
    #[serde(
        default,
        with = "duration::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schema(value_type = Vec<String>, example = json!(["1s", "10s", "1m"]))]
    pub backoff: Vec<Duration>,
    /// Most messages delivered and not yet acknowledged. Default 1000.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ack_pending: Option<u64>,
    /// Most concurrent waiting fetches. Default 512.
    #[serde(
        default,
        deserialize_with = "crate::json::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_waiting: Option<u64>,
    /// Delete the consumer after this long without fetches. Default never.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "24h")]
    pub inactive_threshold: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Subject that receives a copy of each message that reached `max_deliver` or was
    /// terminated (a stream must capture it to keep the copies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_subject: Option<String>,
    /// How messages are shared among the clients fetching: `pinned_client`, `overflow` or
    /// `prioritized` (nats-server 2.11+; prioritized 2.12+). Needs `priority_groups`.
    #[serde(default, skip_serializing_if = "PriorityPolicy::is_none")]
    pub priority_policy: PriorityPolicy,
    /// The priority groups fetches name (`group` in the fetch), e.g. `["workers"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_groups: Vec<String>,
    /// `pinned_client`: how long the pinned client keeps the pin without fetching before a
    /// standby client takes over. JetStream's default: `2m`.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "30s")]
    pub priority_timeout: Option<Duration>,
    /// Deliver nothing until this RFC 3339 time (a paused consumer). On create, the consumer
    /// starts paused; on update, the pause is moved to this time, and left as it is when the
    /// field is absent (resume with `DELETE …/pause`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
}

/// A position in the stream and in the consumer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SequencePair {
    pub consumer_seq: u64,
    pub stream_seq: u64,
}

/// A consumer's state: what an operator watches.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsumerState {
    /// Messages not yet delivered (the lag).
    pub num_pending: u64,
    /// Messages delivered and awaiting an ack.
    pub num_ack_pending: usize,
    /// Messages delivered more than once and still unacknowledged.
    pub num_redelivered: usize,
    /// Fetches waiting for messages.
    pub num_waiting: usize,
    /// Last delivered position.
    pub delivered: SequencePair,
    /// Everything up to here is acknowledged.
    pub ack_floor: SequencePair,
}

/// A consumer: configuration and state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsumerInfo {
    pub stream: String,
    pub name: String,
    pub config: ConsumerConfig,
    pub state: ConsumerState,
    pub created: String,
    /// The consumer is paused: it delivers nothing until `pause_until`.
    pub paused: bool,
    /// When the pause ends (RFC 3339); absent when no pause is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
    /// How long the pause still lasts; absent when not paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "1h")]
    pub pause_remaining: Option<String>,
    /// The priority groups and whether a client holds each one's pin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_groups: Vec<PriorityGroupState>,
    /// The consumer of a push subscription of the same name: jetway delivers it, and it is
    /// changed and deleted through `/v1/streams/{stream}/push/{name}` only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub push_subscription: bool,
}

/// Whether a consumer is paused, and until when.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"paused": true, "pause_until": "2026-11-26T12:00:00Z", "pause_remaining": "1h"}))]
pub struct PauseState {
    /// The consumer delivers nothing now: fetches wait and answer empty, WebSocket and SSE
    /// subscriptions bound to it receive nothing until the pause ends.
    pub paused: bool,
    /// When the pause ends (RFC 3339); absent when no pause is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
    /// How long the pause still lasts (e.g. `59m59s`, rounded down to the millisecond);
    /// absent when not paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "1h")]
    pub pause_remaining: Option<String>,
}

impl PauseState {
    /// A consumer's pause state.
    pub fn of(info: &consumer::Info) -> Self {
        Self::new(info.paused, info.config.pause_until, info.pause_remaining)
    }

    fn new(paused: bool, until: Option<OffsetDateTime>, remaining: Option<Duration>) -> Self {
        Self {
            paused,
            pause_until: until.filter(|t| t.unix_timestamp() > 0).map(format_time),
            pause_remaining: remaining.filter(|_| paused).map(|r| {
                duration::format(Duration::from_millis(
                    u64::try_from(r.as_millis()).unwrap_or(u64::MAX),
                ))
            }),
        }
    }
}

/// A stream's consumers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsumerList {
    pub consumers: Vec<ConsumerInfo>,
}

fn count(value: i64) -> Option<u64> {
    u64::try_from(value).ok().filter(|v| *v > 0)
}

impl ConsumerConfig {
    /// Checks what jetway can check before asking JetStream.
    pub fn validate(&self) -> Result<(), ApiError> {
        let invalid = |detail: String| ApiError::InvalidConfig {
            detail,
            jetstream_code: None,
        };
        for subject in &self.filter_subjects {
            crate::validate::subject_filter(subject)
                .map_err(|e| invalid(format!("filter_subjects: {e}")))?;
        }
        if let Some(subject) = &self.dead_letter_subject {
            crate::validate::publish_subject(subject)
                .map_err(|e| invalid(format!("dead_letter_subject: {e}")))?;
        }
        match self.deliver_policy {
            DeliverFrom::ByStartSequence if self.opt_start_seq.is_none() => {
                return Err(invalid(
                    "deliver_policy by_start_sequence needs opt_start_seq".to_owned(),
                ));
            }
            DeliverFrom::ByStartTime if self.opt_start_time.is_none() => {
                return Err(invalid(
                    "deliver_policy by_start_time needs opt_start_time".to_owned(),
                ));
            }
            _ => {}
        }
        if self.opt_start_seq.is_some() && self.deliver_policy != DeliverFrom::ByStartSequence {
            return Err(invalid(
                "opt_start_seq needs deliver_policy by_start_sequence".to_owned(),
            ));
        }
        if self.opt_start_time.is_some() && self.deliver_policy != DeliverFrom::ByStartTime {
            return Err(invalid(
                "opt_start_time needs deliver_policy by_start_time".to_owned(),
            ));
        }
        if self.metadata.keys().any(|k| k.starts_with("jetway.")) {
            return Err(invalid(
                "metadata keys starting with 'jetway.' are reserved (use dead_letter_subject)"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The JetStream configuration of a durable pull consumer with explicit acks.
    pub fn to_nats(&self, name: &str) -> Result<consumer::Config, ApiError> {
        let to_i64 =
            |v: Option<u64>, unset: i64| v.map_or(unset, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let deliver_policy = match self.deliver_policy {
            DeliverFrom::All => DeliverPolicy::All,
            DeliverFrom::Last => DeliverPolicy::Last,
            DeliverFrom::New => DeliverPolicy::New,
            DeliverFrom::LastPerSubject => DeliverPolicy::LastPerSubject,
            DeliverFrom::ByStartSequence => DeliverPolicy::ByStartSequence {
                start_sequence: self.opt_start_seq.unwrap_or(1),
            },
            DeliverFrom::ByStartTime => {
                let text = self.opt_start_time.as_deref().unwrap_or_default();
                let start_time =
                    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                        .map_err(|err| ApiError::InvalidConfig {
                            detail: format!(
                                "opt_start_time '{text}' is not an RFC 3339 time: {err}"
                            ),
                            jetstream_code: None,
                        })?;
                DeliverPolicy::ByStartTime { start_time }
            }
        };
        let mut metadata: std::collections::HashMap<String, String> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(subject) = &self.dead_letter_subject {
            metadata.insert(DEAD_LETTER_METADATA_KEY.to_owned(), subject.clone());
        }
        metadata.insert(MANAGED_METADATA_KEY.to_owned(), "true".to_owned());
        let (filter_subject, filter_subjects) = match self.filter_subjects.as_slice() {
            [one] => (one.clone(), Vec::new()),
            many => (String::new(), many.to_vec()),
        };
        Ok(consumer::Config {
            durable_name: Some(name.to_owned()),
            name: Some(name.to_owned()),
            description: self.description.clone(),
            deliver_policy,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait.unwrap_or_default(),
            max_deliver: to_i64(self.max_deliver, 0),
            filter_subject,
            filter_subjects,
            max_waiting: to_i64(self.max_waiting, 0),
            max_ack_pending: to_i64(self.max_ack_pending, 0),
            inactive_threshold: self.inactive_threshold.unwrap_or_default(),
            metadata,
            backoff: self.backoff.clone(),
            priority_policy: match self.priority_policy {
                PriorityPolicy::None => consumer::PriorityPolicy::None,
                PriorityPolicy::PinnedClient => consumer::PriorityPolicy::PinnedClient,
                PriorityPolicy::Overflow => consumer::PriorityPolicy::Overflow,
                PriorityPolicy::Prioritized => consumer::PriorityPolicy::Prioritized,
            },
            priority_groups: self.priority_groups.clone(),
            priority_timeout: self.priority_timeout.unwrap_or_default(),
            pause_until: self
                .pause_until
                .as_deref()
                .map(crate::timestamp::parse_time)
                .transpose()
                .map_err(|err| ApiError::InvalidConfig {
                    detail: format!("pause_until: {err}"),
                    jetstream_code: None,
                })?,
            ..Default::default()
        })
    }

    /// The API view of a JetStream consumer configuration.
    pub fn from_nats(config: &consumer::Config) -> Self {
        let (deliver_policy, opt_start_seq, opt_start_time) = match config.deliver_policy {
            DeliverPolicy::All => (DeliverFrom::All, None, None),
            DeliverPolicy::Last => (DeliverFrom::Last, None, None),
            DeliverPolicy::New => (DeliverFrom::New, None, None),
            DeliverPolicy::LastPerSubject => (DeliverFrom::LastPerSubject, None, None),
            DeliverPolicy::ByStartSequence { start_sequence } => {
                (DeliverFrom::ByStartSequence, Some(start_sequence), None)
            }
            DeliverPolicy::ByStartTime { start_time } => (
                DeliverFrom::ByStartTime,
                None,
                Some(format_time(start_time)),
            ),
        };
        let mut metadata: BTreeMap<String, String> = config
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let dead_letter_subject = metadata.remove(DEAD_LETTER_METADATA_KEY);
        metadata.remove(MANAGED_METADATA_KEY);
        metadata.remove(PUSH_METADATA_KEY);
        // JetStream adds its own metadata keys (`_nats.*`); they are not the user's.
        metadata.retain(|key, _| !key.starts_with("_nats"));
        let filter_subjects = filter_subjects(config);
        Self {
            deliver_policy,
            opt_start_seq,
            opt_start_time,
            filter_subjects,
            ack_wait: (!config.ack_wait.is_zero()).then_some(config.ack_wait),
            max_deliver: count(config.max_deliver),
            backoff: config.backoff.clone(),
            max_ack_pending: count(config.max_ack_pending),
            max_waiting: count(config.max_waiting),
            inactive_threshold: (!config.inactive_threshold.is_zero())
                .then_some(config.inactive_threshold),
            description: config.description.clone().filter(|d| !d.is_empty()),
            metadata,
            dead_letter_subject,
            pause_until: config
                .pause_until
                .filter(|t| t.unix_timestamp() > 0)
                .map(format_time),
            priority_policy: match config.priority_policy {
                consumer::PriorityPolicy::None => PriorityPolicy::None,
                consumer::PriorityPolicy::PinnedClient => PriorityPolicy::PinnedClient,
                consumer::PriorityPolicy::Overflow => PriorityPolicy::Overflow,
                consumer::PriorityPolicy::Prioritized => PriorityPolicy::Prioritized,
            },
            priority_groups: config.priority_groups.clone(),
            priority_timeout: (config.priority_policy == consumer::PriorityPolicy::PinnedClient
                && !config.priority_timeout.is_zero())
            .then_some(config.priority_timeout),
        }
    }
}

impl ConsumerInfo {
    pub fn from_nats(info: &consumer::Info) -> Self {
        let pair = |s: &consumer::SequenceInfo| SequencePair {
            consumer_seq: s.consumer_sequence,
            stream_seq: s.stream_sequence,
        };
        let pause = PauseState::new(info.paused, info.config.pause_until, info.pause_remaining);
        Self {
            stream: info.stream_name.clone(),
            name: info.name.clone(),
            config: ConsumerConfig::from_nats(&info.config),
            state: ConsumerState {
                num_pending: info.num_pending,
                num_ack_pending: info.num_ack_pending,
                num_redelivered: info.num_redelivered,
                num_waiting: info.num_waiting,
                delivered: pair(&info.delivered),
                ack_floor: pair(&info.ack_floor),
            },
            created: format_time(info.created),
            push_subscription: info.config.metadata.contains_key(PUSH_METADATA_KEY),
            paused: pause.paused,
            pause_until: pause.pause_until,
            pause_remaining: pause.pause_remaining,
            priority_groups: info
                .priority_groups
                .iter()
                .map(|g| PriorityGroupState {
                    group: g.group.clone(),
                    pinned: g
                        .pinned_client_id
                        .as_deref()
                        .is_some_and(|id| !id.is_empty()),
                    pinned_at: g
                        .pinned_ts
                        .filter(|t| t.unix_timestamp() > 0)
                        .map(format_time),
                })
                .collect(),
        }
    }
}

/// What a fetch asks for, after bounds were applied.
#[derive(Debug, Clone, Copy)]
pub struct FetchSpec {
    pub max_messages: usize,
    pub max_bytes: Option<usize>,
    pub wait: Duration,
    pub encoding: EncodingChoice,
}

/// What to do with a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AckAction {
    /// Processed: never deliver again.
    Ack,
    /// Not processed: deliver again (after `delay`, if given).
    Nak,
    /// Poison: never deliver again (dead-lettered when the consumer has a dead-letter subject).
    Term,
    /// Still working: restart the ack wait.
    Progress,
}

impl AckAction {
    fn payload(self, delay: Option<Duration>) -> Bytes {
        match (self, delay) {
            (Self::Ack, _) => Bytes::from_static(b"+ACK"),
            (Self::Nak, None) => Bytes::from_static(b"-NAK"),
            (Self::Nak, Some(delay)) => {
                Bytes::from(format!("-NAK {{\"delay\": {}}}", delay.as_nanos()))
            }
            (Self::Term, _) => Bytes::from_static(b"+TERM"),
            (Self::Progress, _) => Bytes::from_static(b"+WPI"),
        }
    }
}

/// A fetch's priority group with the pin it holds now.
fn with_pin<'a>(
    priority: Option<PullPriority<'a>>,
    pin: Option<&'a str>,
) -> Option<PullPriority<'a>> {
    priority.map(|p| PullPriority { pin, ..p })
}

#[derive(Deserialize)]
struct ConsumerPage {
    #[serde(default)]
    total: usize,
    #[serde(default)]
    consumers: Option<Vec<consumer::Info>>,
}

#[derive(Deserialize)]
struct DeleteAnswer {
    #[serde(default)]
    success: bool,
}

impl Nats {
    /// Every consumer of a stream.
    pub async fn list_consumers(&self, stream: &str) -> Result<Vec<consumer::Info>, ApiError> {
        let mut consumers = Vec::new();
        loop {
            let page: ConsumerPage = self
                .api(
                    &format!("CONSUMER.LIST.{stream}"),
                    &serde_json::json!({ "offset": consumers.len() }),
                    Op::Stream(stream),
                )
                .await?;
            let got = page.consumers.unwrap_or_default();
            let done = got.is_empty() || consumers.len() + got.len() >= page.total;
            consumers.extend(got);
            if done {
                return Ok(consumers);
            }
        }
    }

    /// One consumer's configuration and state.
    pub async fn consumer_info(
        &self,
        stream: &str,
        consumer: &str,
    ) -> Result<consumer::Info, ApiError> {
        self.api(
            &format!("CONSUMER.INFO.{stream}.{consumer}"),
            &serde_json::json!({}),
            Op::Consumer(stream, consumer),
        )
        .await
    }

    /// Creates the durable consumer, or updates it; answers whether it was created.
    pub async fn put_consumer(
        &self,
        stream: &str,
        name: &str,
        config: &ConsumerConfig,
    ) -> Result<(consumer::Info, bool), ApiError> {
        config.validate()?;
        self.put_consumer_config(stream, name, config.to_nats(name)?, false)
            .await
    }

    /// Creates or updates the consumer of a push subscription (marked with
    /// [`PUSH_METADATA_KEY`]); answers whether it was created.
    pub async fn put_push_consumer(
        &self,
        stream: &str,
        name: &str,
        config: &ConsumerConfig,
    ) -> Result<(consumer::Info, bool), ApiError> {
        config.validate()?;
        let mut nats_config = config.to_nats(name)?;
        nats_config
            .metadata
            .insert(PUSH_METADATA_KEY.to_owned(), "true".to_owned());
        self.put_consumer_config(stream, name, nats_config, true)
            .await
    }

    async fn put_consumer_config(
        &self,
        stream: &str,
        name: &str,
        mut nats_config: consumer::Config,
        push: bool,
    ) -> Result<(consumer::Info, bool), ApiError> {
        let exists = match self.consumer_info(stream, name).await {
            Ok(existing) => {
                if !push && existing.config.metadata.contains_key(PUSH_METADATA_KEY) {
                    return Err(ApiError::ConsumerConflict {
                        detail: format!(
                            "consumer '{name}' of stream '{stream}' belongs to a push \
                             subscription; change it through /v1/streams/{stream}/push/{name}"
                        ),
                        jetstream_code: None,
                    });
                }
                // An update without `pause_until` leaves the pause as it is: resuming is its
                // own request.
                if nats_config.pause_until.is_none() {
                    nats_config.pause_until = existing.config.pause_until;
                }
                true
            }
            Err(ApiError::ConsumerNotFound { .. }) => false,
            Err(err) => return Err(err),
        };
        let (action, op) = if exists {
            ("update", Op::ConsumerUpdate(stream, name))
        } else {
            ("create", Op::ConsumerCreate(stream, name))
        };
        let body =
            serde_json::json!({ "stream_name": stream, "config": nats_config, "action": action });
        let info = self
            .api(&format!("CONSUMER.CREATE.{stream}.{name}"), &body, op)
            .await?;
        Ok((info, !exists))
    }

    /// Pauses a consumer until `until`, or resumes it (`None`), through JetStream's
    /// `CONSUMER.PAUSE`; answers the consumer's pause state afterwards.
    pub async fn pause_consumer(
        &self,
        stream: &str,
        consumer: &str,
        until: Option<OffsetDateTime>,
    ) -> Result<PauseState, ApiError> {
        #[derive(Serialize)]
        struct PauseRequest {
            #[serde(
                skip_serializing_if = "Option::is_none",
                with = "time::serde::rfc3339::option"
            )]
            pause_until: Option<OffsetDateTime>,
        }
        #[derive(Deserialize)]
        struct PauseAnswer {
            #[serde(default)]
            paused: bool,
            #[serde(default, with = "time::serde::rfc3339::option")]
            pause_until: Option<OffsetDateTime>,
            /// Nanoseconds.
            #[serde(default)]
            pause_remaining: Option<u64>,
        }
        let answer: PauseAnswer = self
            .api(
                &format!("CONSUMER.PAUSE.{stream}.{consumer}"),
                &PauseRequest { pause_until: until },
                Op::Consumer(stream, consumer),
            )
            .await?;
        Ok(PauseState::new(
            answer.paused,
            answer.pause_until,
            answer.pause_remaining.map(Duration::from_nanos),
        ))
    }

    /// Moves a consumer so that the next message it delivers is the first at or after stream
    /// sequence `seq`, through JetStream's `CONSUMER.RESET` (nats-server 2.14 and later).
    /// JetStream forgets the consumer's pending deliveries and sets its ack floor to `seq - 1`.
    /// Answers the consumer afterwards and the sequence it was moved to.
    pub async fn reset_consumer(
        &self,
        stream: &str,
        consumer: &str,
        seq: u64,
    ) -> Result<(consumer::Info, u64), ApiError> {
        #[derive(Deserialize)]
        struct ResetAnswer {
            #[serde(flatten)]
            info: consumer::Info,
            reset_seq: u64,
        }
        let answer: ResetAnswer = self
            .api(
                &format!("CONSUMER.RESET.{stream}.{consumer}"),
                &serde_json::json!({ "seq": seq }),
                Op::Consumer(stream, consumer),
            )
            .await?;
        Ok((answer.info, answer.reset_seq))
    }

    /// Releases the pin of a priority group (`CONSUMER.UNPIN`).
    pub async fn unpin_consumer(
        &self,
        stream: &str,
        consumer: &str,
        group: &str,
    ) -> Result<(), ApiError> {
        let _: serde_json::Value = self
            .api(
                &format!("CONSUMER.UNPIN.{stream}.{consumer}"),
                &serde_json::json!({ "group": group }),
                Op::Consumer(stream, consumer),
            )
            .await?;
        Ok(())
    }

    /// Deletes a consumer.
    pub async fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<(), ApiError> {
        let answer: DeleteAnswer = self
            .api(
                &format!("CONSUMER.DELETE.{stream}.{consumer}"),
                &serde_json::json!({}),
                Op::Consumer(stream, consumer),
            )
            .await?;
        if answer.success {
            Ok(())
        } else {
            Err(ApiError::JetStream {
                detail: format!("JetStream did not delete consumer '{consumer}'"),
                jetstream_code: None,
            })
        }
    }

    /// Long-poll fetch: returns as soon as at least one message is there, or empty after `wait`.
    ///
    /// A consumer that exists but cannot serve (it is electing a leader, or the NATS connection
    /// is being re-established) is asked again with backoff for the longer of `wait` and the API
    /// timeout, so a fetch rides through a consumer leader change; only then is it a 503.
    ///
    /// With a priority group, every pull of the fetch names it; on a `pinned_client` consumer
    /// the pin the fetch holds (given, or handed out with its first message) goes with each
    /// later pull, and is answered with the messages.
    pub async fn fetch(
        &self,
        stream: &str,
        consumer: &str,
        spec: FetchSpec,
        priority: Option<PullPriority<'_>>,
        keys: &AckKeys,
    ) -> Result<(Vec<Message>, Option<String>), ApiError> {
        let started = Instant::now();
        while_leaderless(started + spec.wait.max(self.api_timeout), || {
            let wait = spec.wait.saturating_sub(started.elapsed());
            self.fetch_once(stream, consumer, FetchSpec { wait, ..spec }, priority, keys)
        })
        .await
    }

    /// One attempt of [`Nats::fetch`].
    ///
    /// A no-wait pull takes what is available now; only when that is nothing does a waiting pull
    /// for one message follow, and once it arrives another no-wait pull fills the rest of the
    /// batch. Every message JetStream hands to these pulls is returned (see [`super::pull`]).
    async fn fetch_once(
        &self,
        stream: &str,
        consumer: &str,
        spec: FetchSpec,
        priority: Option<PullPriority<'_>>,
        keys: &AckKeys,
    ) -> Result<(Vec<Message>, Option<String>), ApiError> {
        let mut messages = Vec::new();
        let mut pin = priority.and_then(|p| p.pin).map(str::to_owned);
        let now = PullRequest {
            batch: spec.max_messages,
            max_bytes: spec.max_bytes,
            expires: None,
            heartbeat: None,
            priority: with_pin(priority, pin.as_deref()),
        };
        let mut learned = None;
        let end = self
            .drain(
                stream,
                consumer,
                now,
                &mut messages,
                &mut learned,
                spec,
                keys,
                self.api_timeout,
            )
            .await;
        if learned.is_some() {
            pin = learned.take();
        }
        self.fetch_outcome(end, &messages, stream, consumer).await?;
        if !messages.is_empty() || spec.wait.is_zero() {
            return Ok((messages, pin));
        }

        // Nothing yet: wait for one, then take whatever else is there.
        let one = PullRequest {
            batch: 1,
            expires: Some(spec.wait),
            max_bytes: spec.max_bytes,
            heartbeat: None,
            priority: with_pin(priority, pin.as_deref()),
        };
        let end = self
            .drain(
                stream,
                consumer,
                one,
                &mut messages,
                &mut learned,
                spec,
                keys,
                spec.wait + self.api_timeout,
            )
            .await;
        if learned.is_some() {
            pin = learned.take();
        }
        self.fetch_outcome(end, &messages, stream, consumer).await?;
        if messages.is_empty() || spec.max_messages <= messages.len() {
            return Ok((messages, pin));
        }
        let used: usize = messages.iter().map(|m| m.size).sum();
        let max_bytes = spec.max_bytes.map(|b| b.saturating_sub(used));
        if max_bytes == Some(0) {
            return Ok((messages, pin));
        }
        let rest = PullRequest {
            batch: spec.max_messages - messages.len(),
            max_bytes,
            expires: None,
            heartbeat: None,
            priority: with_pin(priority, pin.as_deref()),
        };
        let end = self
            .drain(
                stream,
                consumer,
                rest,
                &mut messages,
                &mut learned,
                spec,
                keys,
                self.api_timeout,
            )
            .await;
        // Messages already in hand are returned even if the top-up failed: they are delivered
        // and their ack wait is running.
        if let PullEnd::Failed(err) = end {
            tracing::debug!(error = %err, "fetch top-up failed");
        }
        if learned.is_some() {
            pin = learned;
        }
        Ok((messages, pin))
    }

    /// Sends one pull and reads every message it delivers into `out`.
    #[expect(clippy::too_many_arguments, reason = "one private call site shape")]
    async fn drain(
        &self,
        stream: &str,
        consumer: &str,
        request: PullRequest<'_>,
        out: &mut Vec<Message>,
        pin: &mut Option<String>,
        spec: FetchSpec,
        keys: &AckKeys,
        idle: Duration,
    ) -> PullEnd {
        let mut pull = Pulls::new();
        if let Err(err) = self.pull_into(&mut pull, stream, consumer, request).await {
            return PullEnd::Failed(err);
        }
        loop {
            match pull.next(idle).await {
                PullEvent::Message(reply, target) => {
                    if let Some(id) = reply.headers.as_ref().and_then(|h| h.get(PIN_ID)) {
                        *pin = Some(id.as_str().to_owned());
                    }
                    out.push(delivered_message(
                        stream,
                        &reply,
                        &target,
                        spec.encoding,
                        keys,
                    ));
                }
                PullEvent::End(end) => return end,
            }
        }
    }

    /// Turns the end of a fetch's pull into its answer. Messages in hand are always returned;
    /// a failure without any becomes the most precise error: a missing stream or consumer is a
    /// 404, a consumer that exists but cannot serve right now (no leader) a 503.
    async fn fetch_outcome(
        &self,
        end: PullEnd,
        messages: &[Message],
        stream: &str,
        consumer: &str,
    ) -> Result<(), ApiError> {
        match end {
            PullEnd::Done => Ok(()),
            _ if !messages.is_empty() => Ok(()),
            PullEnd::TooLarge => Err(ApiError::InvalidParameter(
                "the next message is larger than max_bytes; raise max_bytes to receive it"
                    .to_owned(),
            )),
            PullEnd::Failed(ApiError::Unavailable(why)) => {
                match self.consumer_info(stream, consumer).await {
                    Err(
                        err @ (ApiError::ConsumerNotFound { .. } | ApiError::StreamNotFound(_)),
                    ) => Err(err),
                    _ => Err(ApiError::Unavailable(why)),
                }
            }
            PullEnd::Failed(err) => Err(err),
        }
    }

    /// Sends an ack and waits for the server's confirmation.
    ///
    /// Nobody listening on the ack subject means the consumer is gone, or it exists and is
    /// electing a leader (a transient state on a cluster); the ack is sent again with backoff
    /// within `timeout` while the consumer exists. An ack nobody received was not applied, so
    /// sending it again applies it once.
    pub async fn ack(
        &self,
        target: &AckTarget,
        action: AckAction,
        delay: Option<Duration>,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        let retry_until = Instant::now() + timeout;
        while_leaderless(retry_until, || {
            let left = retry_until.saturating_duration_since(Instant::now());
            self.ack_once(target, action, delay, left)
        })
        .await
    }

    /// One attempt of [`Nats::ack`].
    async fn ack_once(
        &self,
        target: &AckTarget,
        action: AckAction,
        delay: Option<Duration>,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        self.ensure_connected()?;
        let request = self
            .client
            .request(target.subject.clone(), action.payload(delay));
        match tokio::time::timeout(timeout, request).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) if err.kind() == async_nats::RequestErrorKind::NoResponders => {
                match self.consumer_info(&target.stream, &target.consumer).await {
                    Err(
                        err @ (ApiError::ConsumerNotFound { .. } | ApiError::StreamNotFound(_)),
                    ) => Err(match err {
                        ApiError::StreamNotFound(_) => ApiError::ConsumerNotFound {
                            stream: target.stream.clone(),
                            consumer: target.consumer.clone(),
                        },
                        other => other,
                    }),
                    _ => Err(ApiError::Unavailable(format!(
                        "consumer '{}' on stream '{}' has no leader right now; retry the ack shortly",
                        target.consumer, target.stream
                    ))),
                }
            }
            Ok(Err(err)) if err.kind() == async_nats::RequestErrorKind::TimedOut => {
                Err(not_confirmed(target, timeout))
            }
            Ok(Err(err)) => Err(ApiError::Unavailable(format!("cannot send ack: {err}"))),
            Err(_) => Err(not_confirmed(target, timeout)),
        }
    }
}

/// Runs `attempt` until it answers something other than 503 (a consumer without a leader, or
/// NATS reconnecting), pausing with backoff in between, and answers the last attempt's result
/// once another pause would pass `until`.
async fn while_leaderless<T, F, Fut>(until: Instant, mut attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut backoff = RETRY_BACKOFF_FIRST;
    loop {
        match attempt().await {
            Err(ApiError::Unavailable(why)) if Instant::now() + backoff < until => {
                tracing::debug!(reason = %why, "asked again after backoff");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            }
            answer => return answer,
        }
    }
}

fn not_confirmed(target: &AckTarget, timeout: Duration) -> ApiError {
    ApiError::AckNotConfirmed(format!(
        "JetStream did not confirm within {} for stream sequence {}: the consumer no longer tracks \
         this delivery (it may have been acknowledged already, or the consumer was reset); acking \
         again is safe",
        duration::format(timeout),
        target.stream_seq
    ))
}

/// Every subject filter of a consumer (empty: the whole stream).
pub fn filter_subjects(config: &consumer::Config) -> Vec<String> {
    let mut filters = config.filter_subjects.clone();
    if !config.filter_subject.is_empty() {
        filters.insert(0, config.filter_subject.clone());
    }
    filters
}

/// A consumer delivery as the API shows it, with its signed ack id.
pub fn delivered_message(
    stream: &str,
    reply: &async_nats::Message,
    target: &AckTarget,
    encoding: EncodingChoice,
    keys: &AckKeys,
) -> Message {
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(target.timestamp_ns))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut message = Message::new(
        stream,
        reply.subject.as_str(),
        target.stream_seq,
        time,
        reply.headers.as_ref(),
        &reply.payload,
        encoding,
    );
    message.delivered = Some(target.delivered);
    message.consumer_seq = Some(target.consumer_seq);
    message.pending = Some(target.pending);
    message.ack_id = Some(keys.sign(&target.subject));
    message.size = reply.length;
    message
}
