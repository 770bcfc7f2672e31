//! Stream administration: list, create-or-update, info, delete, purge.

use async_nats::jetstream::stream;

use super::names::StreamName;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::nats::streams::{PurgeRequest, PutOutcome, StreamConfig};
use crate::state::AppState;

/// The streams `who` may read.
pub async fn list(state: &AppState, who: &Principal) -> Result<Vec<stream::Info>, ApiError> {
    let mut streams = state.nats.list_streams().await?;
    streams.retain(|s| who.can_read(&s.config.name));
    Ok(streams)
}

/// Creates or updates a stream (administrators only).
pub async fn put(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    config: &StreamConfig,
) -> Result<(stream::Info, PutOutcome), ApiError> {
    who.check_admin()?;
    state.nats.put_stream(stream, config).await
}

/// A stream's configuration and state.
pub async fn get(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
) -> Result<stream::Info, ApiError> {
    who.check_read(stream)?;
    state.nats.stream_info(stream).await
}

/// Deletes a stream with its consumers and messages (administrators only).
pub async fn delete(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
) -> Result<(), ApiError> {
    who.check_admin()?;
    state.nats.delete_stream(stream).await
}

/// Purges messages (administrators only); answers how many were removed.
pub async fn purge(
    state: &AppState,
    who: &Principal,
    stream: &StreamName,
    request: &PurgeRequest,
) -> Result<u64, ApiError> {
    who.check_admin()?;
    state.nats.purge_stream(stream, request).await
}
