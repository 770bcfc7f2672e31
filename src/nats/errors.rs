//! The one place where async-nats and JetStream errors become [`ApiError`]s.
//!
//! JetStream API errors are classified by their numeric `err_code` (server `errors.json`), never
//! by description text. The [`Op`] says what was being done, because the same code can mean a
//! client mistake in one operation and a conflict in another (an invalid configuration on create
//! is a 400, on update it is an incompatible change: 409), and because a failed precondition
//! should name the header that failed.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishError, context::PublishErrorKind};

use crate::duration;
use crate::error::ApiError;

/// What was being done when JetStream answered with an error.
#[derive(Debug, Clone, Copy)]
pub enum Op<'a> {
    /// Account info (readiness checks).
    Account,
    /// Reading or deleting a stream or its messages.
    Stream(&'a str),
    /// Deleting one message of a stream.
    MessageDelete(&'a str),
    /// Creating a stream.
    StreamCreate(&'a str),
    /// Updating an existing stream.
    StreamUpdate(&'a str),
    /// Reading or deleting a consumer: (stream, consumer).
    Consumer(&'a str, &'a str),
    /// Creating a consumer.
    ConsumerCreate(&'a str, &'a str),
    /// Updating an existing consumer.
    ConsumerUpdate(&'a str, &'a str),
    /// Publishing; which preconditions were sent, to name the one that failed.
    Publish(&'a Checks),
}

/// The preconditions a publish carried.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    pub expected_stream: Option<String>,
    pub expected_last_sequence: Option<u64>,
    pub expected_last_subject_sequence: Option<u64>,
    pub expected_last_msg_id: Option<String>,
}

/// Classifies a JetStream API error answer.
pub fn from_jetstream(err: &jetstream::Error, op: Op<'_>) -> ApiError {
    let code = err.error_code().0;
    let jetstream_code = Some(code);
    // The description alone; the codes are reported in their own fields.
    let shown = err.to_string();
    let suffix = format!(" (code {}, error code {code})", err.code());
    let description = shown.strip_suffix(&suffix).unwrap_or(&shown).to_owned();
    let detail = description.clone();
    match code {
        // Not found.
        10059 => ApiError::StreamNotFound(match op {
            Op::Stream(name)
            | Op::MessageDelete(name)
            | Op::StreamCreate(name)
            | Op::StreamUpdate(name) => name.to_owned(),
            Op::Consumer(stream, _)
            | Op::ConsumerCreate(stream, _)
            | Op::ConsumerUpdate(stream, _) => stream.to_owned(),
            Op::Account | Op::Publish(_) => description,
        }),
        10014 | 10149 => match op {
            Op::Consumer(stream, consumer)
            | Op::ConsumerCreate(stream, consumer)
            | Op::ConsumerUpdate(stream, consumer) => ApiError::ConsumerNotFound {
                stream: stream.to_owned(),
                consumer: consumer.to_owned(),
            },
            _ => ApiError::JetStream {
                detail,
                jetstream_code,
            },
        },

        // A priority group the consumer does not have (a fetch or an unpin naming it).
        10160 if matches!(op, Op::Consumer(..)) => ApiError::ConsumerConflict {
            detail: format!("{description}: name one of the consumer's priority_groups"),
            jetstream_code,
        },

        // Consumer configuration: invalid on create, an incompatible change on update.
        10012 | 10013 | 10105 | 10106 | 10131 | 10132 | 10148 => match op {
            Op::ConsumerUpdate(stream, consumer) => ApiError::ConsumerConflict {
                detail: format!(
                    "consumer '{consumer}' on stream '{stream}' cannot be changed this way: {description}; \
                     delete and recreate it to change this"
                ),
                jetstream_code,
            },
            Op::ConsumerCreate(..) if code == 10148 => ApiError::ConsumerConflict {
                detail,
                jetstream_code,
            },
            _ => ApiError::InvalidConfig {
                detail,
                jetstream_code,
            },
        },
        // A consumer reset its configuration does not allow (below its start, or a deliver
        // policy that cannot be reset).
        10204 => match op {
            Op::Consumer(stream, consumer) => ApiError::ConsumerConflict {
                detail: format!(
                    "consumer '{consumer}' on stream '{stream}' cannot be moved there: {description}; \
                     only consumers with deliver_policy all (anywhere), by_start_sequence or \
                     by_start_time (not before their start) can be moved"
                ),
                jetstream_code,
            },
            _ => ApiError::InvalidConfig {
                detail,
                jetstream_code,
            },
        },
        10079..=10095
        | 10098..=10104
        | 10107
        | 10108
        | 10112
        | 10114..=10116
        | 10121
        | 10125..=10127
        | 10134..=10139
        | 10153
        | 10159..=10162
        | 10181..=10184
        | 10196
        | 10197 => ApiError::InvalidConfig {
            detail,
            jetstream_code,
        },
        10037 | 10043 => ApiError::MessageNotFound(format!("no message found ({description})")),

        // Publish preconditions.
        10071 | 10070 | 10060 | 10164 | 10163 | 10193 => ApiError::PreconditionFailed {
            detail: precondition_detail(code, &description, op),
            jetstream_code,
        },

        // Configuration conflicts.
        10058 | 10065 => ApiError::StreamConflict {
            detail,
            jetstream_code,
        },
        10052 | 10055 | 10056 | 10061 | 10069 | 10003 | 10025 | 10053 | 10096 | 10113 | 10120
        | 10155 | 10156 | 10111 | 10128 | 10133 | 10074 | 10109 => match op {
            Op::StreamUpdate(name) => ApiError::StreamConflict {
                detail: format!(
                    "JetStream refused to apply this change to stream '{name}': {description}"
                ),
                jetstream_code,
            },
            // A sealed stream keeps every message.
            Op::MessageDelete(name) if code == 10109 => ApiError::StreamConflict {
                detail: format!(
                    "stream '{name}' is sealed: its messages cannot be deleted ({description})"
                ),
                jetstream_code,
            },
            _ => ApiError::InvalidConfig {
                detail,
                jetstream_code,
            },
        },

        // A stream's max_bytes that JetStream cannot reserve: waiting does not help, asking for
        // less does.
        10047 if matches!(op, Op::StreamCreate(_) | Op::StreamUpdate(_)) => {
            ApiError::InvalidConfig {
                detail: format!(
                    "{description}: JetStream cannot reserve the storage this configuration \
                     asks for; lower max_bytes"
                ),
                jetstream_code,
            }
        }

        // Per-message TTL.
        10165 => ApiError::InvalidTtl {
            detail,
            jetstream_code,
        },
        10166 => ApiError::TtlNotEnabled {
            detail: format!(
                "{description}: the stream must be created with \"allow_msg_ttl\": true to accept Nats-TTL"
            ),
            jetstream_code,
        },

        // Counters.
        10168 => ApiError::CountersNotEnabled {
            detail: format!(
                "{description}: the stream must be created with \"allow_msg_counter\": true to keep counters"
            ),
            jetstream_code,
        },
        10169..=10171 => ApiError::InvalidBody(format!(
            "JetStream refused the counter increment: {description}"
        )),

        // Message schedules.
        10188 => ApiError::SchedulesNotEnabled {
            detail: format!(
                "{description}: the stream must be created with \"allow_msg_schedules\": true to hold schedules"
            ),
            jetstream_code,
        },
        10189..=10192 | 10203 | 10212 | 10223 => {
            ApiError::InvalidBody(format!("JetStream refused the schedule: {description}"))
        }

        // Atomic batches. 10185 first: the server's API level is too low for the request.
        10185 => ApiError::NotSupportedByServer {
            detail,
            jetstream_code,
        },
        10174 => ApiError::AtomicNotEnabled {
            detail: format!(
                "{description}: the stream must be created with \"allow_atomic\": true for atomic batches"
            ),
            jetstream_code,
        },
        10175..=10177 | 10179 | 10199..=10201 | 10210 => ApiError::AtomicBatchFailed {
            detail,
            jetstream_code,
        },

        // Size limits.
        10054 | 10097 => ApiError::PayloadTooLarge(description),

        // Stream refuses writes (full with discard new, sealed, store failure).
        10077 => ApiError::StoreFailed {
            detail,
            jetstream_code,
        },

        // Server-side throttling.
        10167 => ApiError::RateLimited(description),

        // A publish with the same Nats-Msg-Id is still being processed (a retry that overtook
        // the first attempt, typically after a 504): its outcome is not known yet.
        10158 => ApiError::PublishInProgress(format!(
            "{description}: an earlier publish with this Idempotency-Key is still being stored; \
             retry with the same Idempotency-Key to get its result"
        )),

        // JetStream or the cluster cannot serve right now.
        10002 | 10004..=10009 | 10023 | 10028 | 10039 | 10047 | 10076 | 10118 | 10194 | 10202 => {
            ApiError::Unavailable(format!(
                "JetStream cannot serve the request now: {description}"
            ))
        }

        _ => ApiError::JetStream {
            detail,
            jetstream_code,
        },
    }
}

fn precondition_detail(code: u64, description: &str, op: Op<'_>) -> String {
    let Op::Publish(checks) = op else {
        return format!("precondition failed: {description}");
    };
    let header = match code {
        10070 => "Nats-Expected-Last-Msg-Id",
        10060 => "Nats-Expected-Stream",
        // 10071 answers both last-sequence checks; jetway knows which header it sent.
        _ => match (
            checks.expected_last_sequence.is_some(),
            checks.expected_last_subject_sequence.is_some(),
        ) {
            (false, true) => "Nats-Expected-Last-Subject-Sequence",
            (true, true) => "Nats-Expected-Last-Sequence or Nats-Expected-Last-Subject-Sequence",
            _ => "Nats-Expected-Last-Sequence",
        },
    };
    format!("{header} did not hold: {description}; nothing was stored")
}

/// Classifies a failed JetStream API request (before any JetStream answer).
pub fn from_request(err: &jetstream::context::RequestError, timeout: Duration) -> ApiError {
    use jetstream::context::RequestErrorKind as K;
    match err.kind() {
        K::NoResponders => ApiError::Unavailable(
            "JetStream did not answer (no responders): it may be disabled or restarting".to_owned(),
        ),
        K::TimedOut => ApiError::Timeout(format!(
            "JetStream did not answer within {}",
            duration::format(timeout)
        )),
        K::InvalidSubject | K::Other => {
            if source_is::<serde_json::Error>(err) {
                ApiError::internal("cannot decode JetStream answer", err)
            } else {
                ApiError::Unavailable(format!("JetStream request failed: {err}"))
            }
        }
    }
}

/// Classifies a failed publish. A `StreamNotFound` (no responders) becomes
/// [`ApiError::SubjectNotCaptured`]; the caller tells that apart from JetStream being down.
pub fn from_publish(
    err: &PublishError,
    subject: &str,
    checks: &Checks,
    timeout: Duration,
) -> ApiError {
    use std::error::Error as _;
    let js_error = err
        .source()
        .and_then(|s| s.downcast_ref::<jetstream::Error>());
    if let Some(js_error) = js_error {
        return from_jetstream(js_error, Op::Publish(checks));
    }
    match err.kind() {
        PublishErrorKind::StreamNotFound => ApiError::SubjectNotCaptured(subject.to_owned()),
        PublishErrorKind::TimedOut => publish_timed_out(timeout),
        PublishErrorKind::BrokenPipe => ApiError::Unavailable(
            "the NATS connection dropped before JetStream acknowledged the message; \
             retry with the same Idempotency-Key"
                .to_owned(),
        ),
        PublishErrorKind::MaxAckPending => ApiError::RateLimited(
            "too many publishes awaiting acknowledgement; retry shortly".to_owned(),
        ),
        PublishErrorKind::MaxPayloadExceeded => ApiError::PayloadTooLarge(format!(
            "message exceeds the NATS server's max_payload: {err}"
        )),
        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId => {
            ApiError::PreconditionFailed {
                detail: format!("precondition failed: {err}"),
                jetstream_code: None,
            }
        }
        PublishErrorKind::Other => ApiError::Unavailable(format!("publish failed: {err}")),
    }
}

/// No PubAck arrived within the publish timeout.
pub fn publish_timed_out(timeout: Duration) -> ApiError {
    ApiError::Timeout(format!(
        "no PubAck from JetStream within {}; the message may or may not be stored: \
         retry with the same Idempotency-Key to be sure it is stored once",
        duration::format(timeout)
    ))
}

fn source_is<E: std::error::Error + 'static>(err: &dyn std::error::Error) -> bool {
    let mut source = err.source();
    while let Some(s) = source {
        if s.is::<E>() {
            return true;
        }
        source = s.source();
    }
    false
}
