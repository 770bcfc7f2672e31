//! Acknowledging deliveries by ack id: verification (signature, permissions, tenant) all or
//! nothing, then each action applied with the server's confirmation; `term` copies to the
//! consumer's dead-letter subject first.

use std::time::Duration;

use super::authz::{self, ConsumerGrants};
use crate::ackid::AckTarget;
use crate::auth::Principal;
use crate::deadletter::Reason;
use crate::duration;
use crate::error::ApiError;
use crate::nats::consumers::AckAction;
use crate::state::AppState;

/// One ack as a client asks for it.
#[derive(Debug, Clone, Copy)]
pub struct Ack<'a> {
    pub ack_id: &'a str,
    pub action: AckAction,
    pub delay: Option<Duration>,
}

/// Checks a batch of acks before any is applied: each delay, each ack id's signature, read
/// permission on its stream and, for a tenant, that its consumer lies inside the namespace.
/// Errors name the failing position (`acks[i]`). A consumer that is gone is not an error here:
/// its acks fail one by one when applied (404).
pub async fn verify_all(
    state: &AppState,
    who: &Principal,
    acks: &[Ack<'_>],
) -> Result<Vec<AckTarget>, ApiError> {
    let max = state.limits.max_acks;
    if acks.is_empty() {
        return Err(ApiError::InvalidBody("'acks' is empty".to_owned()));
    }
    if acks.len() > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} acks in one request; at most {max} are accepted",
            acks.len()
        )));
    }
    let mut targets = Vec::with_capacity(acks.len());
    for (index, ack) in acks.iter().enumerate() {
        check_delay(ack.action, ack.delay)
            .map_err(|why| ApiError::InvalidBody(format!("acks[{index}]: {why}")))?;
        let target = state
            .ack_keys
            .verify(ack.ack_id)
            .map_err(|err| ApiError::InvalidAckId(format!("acks[{index}]: {err}")))?;
        // An ack id names its stream: acking needs read permission on it.
        who.check_read(&target.stream)
            .map_err(|err| ApiError::Forbidden(format!("acks[{index}]: {err}")))?;
        targets.push(target);
    }
    // A tenant acks only through consumers inside its namespace; one check per consumer named.
    let mut checked: Vec<(&str, &str)> = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        let key = (target.stream.as_str(), target.consumer.as_str());
        if checked.contains(&key) {
            continue;
        }
        match authz::use_consumer(&state.nats, who, key.0, key.1).await {
            Ok(()) | Err(ApiError::ConsumerNotFound { .. } | ApiError::StreamNotFound(_)) => {}
            Err(ApiError::Forbidden(why)) => {
                return Err(ApiError::Forbidden(format!("acks[{index}]: {why}")));
            }
            // Unchecked is not allowed: nothing is applied.
            Err(other) => return Err(other),
        }
        checked.push(key);
    }
    Ok(targets)
}

/// Checks one ack of a long-lived session, whose tenant checks are remembered in `grants`.
pub async fn verify_one(
    state: &AppState,
    who: &Principal,
    grants: &mut ConsumerGrants,
    ack: Ack<'_>,
) -> Result<AckTarget, ApiError> {
    let target = state.ack_keys.verify(ack.ack_id)?;
    who.check_read(&target.stream)?;
    grants
        .check(&state.nats, who, &target.stream, &target.consumer)
        .await?;
    check_delay(ack.action, ack.delay).map_err(ApiError::InvalidBody)?;
    Ok(target)
}

/// Longest `nak` delay. A longer wait is better served by `term` and a re-publish; past about
/// 292 years the delay would not even fit JetStream's nanoseconds.
pub const MAX_NAK_DELAY: Duration = Duration::from_secs(24 * 3600);

/// A `delay` goes with `nak` only, and is at most [`MAX_NAK_DELAY`] (the REST and WebSocket
/// paths share this).
pub fn check_delay(action: AckAction, delay: Option<Duration>) -> Result<(), String> {
    match delay {
        Some(_) if action != AckAction::Nak => {
            Err("'delay' goes with action 'nak' only".to_owned())
        }
        Some(delay) if delay > MAX_NAK_DELAY => Err(format!(
            "'delay' of {} is longer than the {} jetway accepts",
            duration::format(delay),
            duration::format(MAX_NAK_DELAY)
        )),
        _ => Ok(()),
    }
}

/// Applies one verified ack (the REST and WebSocket paths share it).
async fn apply_unrecorded(
    state: &AppState,
    target: &AckTarget,
    action: AckAction,
    delay: Option<Duration>,
) -> Result<(), ApiError> {
    if action == AckAction::Term {
        // The copy comes first: if it cannot be stored, the message stays deliverable.
        let copied = state
            .dead_letters
            .copy(
                &target.stream,
                &target.consumer,
                target.stream_seq,
                target.delivered,
                Reason::Terminated,
                &[],
            )
            .await;
        match copied {
            Ok(_) => {}
            // Nothing left to copy (deleted, purged or expired): the term still applies.
            Err(ApiError::MessageNotFound(_)) => {
                tracing::info!(stream.name = %target.stream, msg.seq = target.stream_seq, "terminated message no longer stored; no dead-letter copy");
            }
            Err(err @ (ApiError::ConsumerNotFound { .. } | ApiError::StreamNotFound(_))) => {
                return Err(err);
            }
            Err(other) => {
                return Err(ApiError::Unavailable(format!(
                    "the dead-letter copy could not be stored ({other}); the message was not terminated, retry"
                )));
            }
        }
    }
    state
        .nats
        .ack(target, action, delay, state.config.ack_timeout)
        .await
}

/// Gives up on a delivery for a transport that delivers by itself (push): the dead-letter copy
/// (when the consumer has a dead-letter subject) with `extra` headers saying why, then `term`.
/// A copy that cannot be stored leaves the message unterminated. Answers whether a copy was
/// stored.
pub async fn give_up(
    state: &AppState,
    target: &AckTarget,
    extra: &[(&str, String)],
) -> Result<bool, ApiError> {
    let copied = match state
        .dead_letters
        .copy(
            &target.stream,
            &target.consumer,
            target.stream_seq,
            target.delivered,
            Reason::MaxDeliveries,
            extra,
        )
        .await
    {
        Ok(copied) => copied,
        Err(ApiError::MessageNotFound(_)) => false,
        Err(err) => return Err(err),
    };
    let termed = state
        .nats
        .ack(target, AckAction::Term, None, state.config.ack_timeout)
        .await;
    state.metrics.ack(
        "term",
        termed.as_ref().map_or_else(|e| e.code(), |()| "confirmed"),
    );
    termed?;
    Ok(copied)
}

/// [`apply_unrecorded`], counted in the metrics by action and outcome.
pub async fn apply(
    state: &AppState,
    target: &AckTarget,
    action: AckAction,
    delay: Option<Duration>,
) -> Result<(), ApiError> {
    let outcome = apply_unrecorded(state, target, action, delay).await;
    let label = match action {
        AckAction::Ack => "ack",
        AckAction::Nak => "nak",
        AckAction::Term => "term",
        AckAction::Progress => "progress",
    };
    state.metrics.ack(
        label,
        outcome.as_ref().map_or_else(|e| e.code(), |()| "confirmed"),
    );
    outcome
}
