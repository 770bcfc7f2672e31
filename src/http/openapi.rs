//! The OpenAPI 3.1 document, generated from the handlers' annotations. Served at
//! `/openapi.json`, shown at `/docs`, and committed as `openapi/openapi.json` (a test keeps the
//! committed file equal to what the server serves).

use utoipa::OpenApi;

use super::{acks, consumers, health, messages, publish, streams};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "jetway",
        description = "HTTP, WebSocket and SSE gateway to NATS JetStream durable streams. \
            A 2xx on publish means JetStream stored the message. Errors are RFC 9457 \
            problem documents (application/problem+json) with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        publish::publish_message,
        publish::publish_batch,
        streams::list_streams,
        streams::put_stream,
        streams::get_stream,
        streams::delete_stream,
        streams::purge_stream,
        messages::get_message,
        messages::get_last_message,
        messages::list_messages,
        consumers::list_consumers,
        consumers::put_consumer,
        consumers::get_consumer,
        consumers::delete_consumer,
        consumers::fetch_messages,
        acks::ack_messages,
        crate::ws::stream_websocket,
        crate::ws::multiplexed_websocket,
        crate::ws::sse::stream_events,
        health::healthz,
        health::readyz,
        health::metrics,
    ),
    components(schemas(
        crate::error::Problem,
        crate::message::Encoding,
        crate::ws::protocol::ServerFrame,
        crate::ws::protocol::ClientOp,
    )),
    tags(
        (name = "publish", description = "Publish messages with JetStream acknowledgement"),
        (name = "streams", description = "Create, inspect, purge and delete streams"),
        (name = "messages", description = "Read stored messages without a consumer"),
        (name = "consumers", description = "Durable pull consumers: fetch with long-poll, then ack by ack id"),
        (name = "streaming", description = "Replay and live tail over WebSocket and Server-Sent Events (frames: asyncapi.yaml)"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// The document, with the version of this build.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as pretty JSON (what `jetway openapi` prints and the repository commits).
pub fn document_json() -> String {
    document()
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
}
