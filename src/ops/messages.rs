//! Reading stored messages: one by sequence, the last on a subject, pages. A tenant reads only
//! its namespace: other subjects are "not found", and subjects are shown without its prefix.

use async_nats::jetstream::message::StreamMessage;

use super::names::StreamName;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::message::{EncodingChoice, Message};
use crate::nats::messages::{Page, Start};
use crate::state::AppState;
use crate::timestamp::parse_time;

/// Messages per page when the caller does not say.
const DEFAULT_PAGE: usize = 100;

/// What a page of messages starts from and holds.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    pub start_seq: Option<u64>,
    pub start_time: Option<String>,
    pub subject: Option<String>,
    pub limit: Option<usize>,
}

/// The message at `seq`.
pub async fn get(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    seq: u64,
) -> Result<StreamMessage, ApiError> {
    who.check_read(stream)?;
    visible(state.nats.get_message(stream, seq).await?, who)
}

/// Deletes the message at `seq` (administrators only), securely erasing its bytes when
/// `erase` is set. A tenant deletes only in its namespace: any other message is "not found",
/// as it is for its reads, and is left alone.
pub async fn delete(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    seq: u64,
    erase: bool,
) -> Result<(), ApiError> {
    who.check_admin()?;
    if seq == 0 || i64::try_from(seq).is_err() {
        return Err(ApiError::InvalidParameter(format!(
            "seq must be between 1 and {}",
            i64::MAX
        )));
    }
    if who.permissions.prefix.is_some() {
        // Looked up through the leader first, so that a tenant learns nothing about messages
        // outside its namespace and can never delete one.
        visible(state.nats.get_message(stream, seq).await?, who)?;
    }
    state.nats.delete_message(stream, seq, erase).await?;
    tracing::info!(
        stream.name = %stream,
        msg.seq = seq,
        erase,
        principal = %who.id,
        "message deleted"
    );
    Ok(())
}

/// The newest message on `subject` (wildcards allowed).
pub async fn last(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    subject: &str,
) -> Result<StreamMessage, ApiError> {
    who.check_read(stream)?;
    crate::validate::subject_filter(subject)?;
    state
        .nats
        .last_message(stream, &who.subject_in(subject))
        .await
}

/// A page of messages in stream order, with the sequence the next page starts at.
pub async fn page(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    query: &PageQuery,
) -> Result<Page, ApiError> {
    who.check_read(stream)?;
    if let Some(subject) = &query.subject {
        crate::validate::subject_filter(subject)?;
    }
    let max = state.limits.max_page_messages;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE.min(max));
    if limit == 0 || limit > max {
        return Err(ApiError::InvalidParameter(format!(
            "limit must be between 1 and {max}"
        )));
    }
    let start = match (query.start_seq, query.start_time.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidParameter(
                "give start_seq or start_time, not both".to_owned(),
            ));
        }
        // Sequences start at 1 and, as everywhere in the document, are int64.
        (Some(seq), None) if seq == 0 || i64::try_from(seq).is_err() => {
            return Err(ApiError::InvalidParameter(format!(
                "start_seq must be between 1 and {}",
                i64::MAX
            )));
        }
        (Some(seq), None) => Start::Sequence(seq),
        (None, Some(text)) => Start::Time(parse_time(text)?),
        (None, None) => Start::Sequence(1),
    };
    // A tenant pages through its namespace only.
    let filter = match &query.subject {
        Some(subject) => Some(who.subject_in(subject)),
        None => who.filters_in(&[]).pop(),
    };
    state
        .nats
        .page(stream, start, filter.as_deref(), limit)
        .await
}

/// A stored message as `who` sees it (subject without the tenant prefix).
pub fn present(
    who: &Principal,
    stream: &str,
    message: &StreamMessage,
    encoding: EncodingChoice,
) -> Message {
    let mut shown = Message::new(
        stream,
        message.subject.as_str(),
        message.sequence,
        message.time,
        Some(&message.headers),
        &message.payload,
        encoding,
    );
    who.present(&mut shown);
    shown
}

fn visible(message: StreamMessage, who: &Principal) -> Result<StreamMessage, ApiError> {
    if who.sees(message.subject.as_str()) {
        Ok(message)
    } else {
        Err(ApiError::MessageNotFound(format!(
            "no message at sequence {} in your namespace",
            message.sequence
        )))
    }
}
