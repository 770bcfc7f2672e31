//! The HTTP transport: the `/v1` REST routes (publish, streams, messages, consumers, acks), the
//! operator console, health and metrics. Each handler parses its request, calls the operations
//! core ([`crate::ops`]) and encodes the answer.

pub mod acks;
pub mod console;
pub mod consumers;
pub mod health;
pub mod messages;
pub mod publish;
pub mod responses;
pub mod streams;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::state::{AppState, Limits};

/// Bodies of routes that take small JSON documents (stream config, purge).
const SMALL_BODY: usize = 64 * 1024;

/// Body of `POST /v1/acks` (room for the most acks per request).
const ACKS_BODY: usize = 2 * 1024 * 1024;

/// The `/v1` REST routes, each with its body limit.
pub fn v1_routes(limits: &Limits) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/publish/{subject}",
            post(publish::publish_message).layer(DefaultBodyLimit::max(limits.max_body)),
        )
        .route(
            "/v1/publish",
            post(publish::publish_batch).layer(DefaultBodyLimit::max(limits.max_batch_bytes)),
        )
        .route("/v1/streams", get(streams::list_streams))
        .route(
            "/v1/streams/{stream}",
            get(streams::get_stream)
                .put(streams::put_stream)
                .delete(streams::delete_stream)
                .layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/streams/{stream}/purge",
            post(streams::purge_stream).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/streams/{stream}/messages",
            get(messages::list_messages),
        )
        .route(
            "/v1/streams/{stream}/messages/last",
            get(messages::get_last_message),
        )
        .route(
            "/v1/streams/{stream}/messages/{seq}",
            get(messages::get_message),
        )
        .route(
            "/v1/streams/{stream}/consumers",
            get(consumers::list_consumers),
        )
        .route(
            "/v1/streams/{stream}/consumers/{consumer}",
            get(consumers::get_consumer)
                .put(consumers::put_consumer)
                .delete(consumers::delete_consumer)
                .layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/streams/{stream}/consumers/{consumer}/fetch",
            post(consumers::fetch_messages).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/acks",
            post(acks::ack_messages).layer(DefaultBodyLimit::max(ACKS_BODY)),
        )
}

/// The routes anyone may call: the console, health and metrics.
pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(console::console))
        .route(console::ASSETS_ROUTE, get(console::asset))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
}
