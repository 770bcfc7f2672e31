//! The HTTP transport: the `/v1` REST routes (publish, streams, messages, consumers, acks), the
//! operator console, health and metrics. Each handler parses its request, calls the operations
//! core ([`crate::ops`]) and encodes the answer.

pub mod acks;
pub mod console;
pub mod consumers;
pub mod counters;
pub mod health;
pub mod kv;
pub mod messages;
pub mod publish;
pub mod push;
pub mod schedules;
pub mod stream_publish;
pub mod streams;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::state::{AppState, Limits};

/// Bodies of routes that take small JSON documents (stream config, purge).
const SMALL_BODY: usize = 64 * 1024;

/// Body of `POST /v1/acks` (room for the most acks per request).
const ACKS_BODY: usize = 2 * 1024 * 1024;

/// The `/v1` REST routes, each with its body limit and its OpenAPI entry (registered once, from
/// the handler's `#[utoipa::path]`).
pub fn v1_routes(limits: &Limits) -> OpenApiRouter<AppState> {
    let limited = |routes: UtoipaMethodRouter<AppState>, bytes: usize| {
        OpenApiRouter::new()
            .routes(routes)
            .layer(DefaultBodyLimit::max(bytes))
    };
    OpenApiRouter::new()
        .merge(limited(routes!(publish::publish_message), limits.max_body))
        .merge(limited(
            routes!(publish::publish_batch),
            limits.max_batch_bytes,
        ))
        .routes(routes!(streams::list_streams))
        .merge(limited(
            routes!(
                streams::put_stream,
                streams::get_stream,
                streams::delete_stream
            ),
            SMALL_BODY,
        ))
        .merge(limited(routes!(streams::purge_stream), SMALL_BODY))
        .routes(routes!(messages::get_message, messages::delete_message))
        .routes(routes!(messages::get_last_message))
        .routes(routes!(messages::list_messages))
        .routes(routes!(consumers::list_consumers))
        .merge(limited(
            routes!(
                consumers::put_consumer,
                consumers::get_consumer,
                consumers::delete_consumer
            ),
            SMALL_BODY,
        ))
        .merge(limited(
            routes!(consumers::pause_consumer, consumers::resume_consumer),
            SMALL_BODY,
        ))
        .merge(limited(routes!(consumers::seek_consumer), SMALL_BODY))
        .merge(limited(routes!(consumers::unpin_consumer), SMALL_BODY))
        .merge(limited(routes!(consumers::fetch_messages), SMALL_BODY))
        .merge(limited(routes!(acks::ack_messages), ACKS_BODY))
        .merge(limited(
            routes!(counters::increment_counter, counters::get_counter),
            SMALL_BODY,
        ))
        .routes(routes!(push::list_push))
        .merge(limited(
            routes!(push::put_push, push::get_push, push::delete_push),
            SMALL_BODY,
        ))
        .merge(limited(
            routes!(push::pause_push, push::resume_push),
            SMALL_BODY,
        ))
        .routes(routes!(kv::list_buckets))
        .merge(limited(
            routes!(kv::put_bucket, kv::get_bucket, kv::delete_bucket),
            SMALL_BODY,
        ))
        .routes(routes!(kv::list_keys))
        .merge(limited(
            routes!(kv::get_key, kv::put_key, kv::delete_key),
            limits.max_body,
        ))
        .routes(routes!(kv::get_key_history))
        .merge(limited(
            routes!(
                schedules::put_schedule,
                schedules::get_schedule,
                schedules::cancel_schedule
            ),
            SMALL_BODY,
        ))
}

/// The routes anyone may call: the console (not in the OpenAPI document), health and metrics.
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/", get(console::console))
        .route(console::ASSETS_ROUTE, get(console::asset))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}
