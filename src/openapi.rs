//! The OpenAPI 3.1 document, generated from the handlers' annotations. Served at
//! `/openapi.json`, shown at `/docs`, and committed as `openapi/openapi.json` (a test keeps the
//! committed file equal to what the server serves).

use utoipa::OpenApi;

use crate::http::{acks, consumers, health, messages, publish, streams};

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
        crate::sse::stream_events,
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
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let scheme = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT")
        .description(Some(
            "A JWT whose `jetway` claim grants publish subjects, readable streams and admin. \
             Browsers may pass it as the `access_token` query parameter on WebSocket and SSE \
             routes. Not required when the server runs with --no-auth.",
        ))
        .build();
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
    // Every /v1 operation needs a token; liveness, readiness and metrics do not.
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = !path.starts_with("/v1/");
        for (takes_body, operation) in [
            (false, &mut item.get),
            (true, &mut item.put),
            (true, &mut item.post),
            (false, &mut item.delete),
            (true, &mut item.patch),
            (false, &mut item.head),
        ] {
            let Some(operation) = operation else {
                continue;
            };
            operation.security = Some(if public {
                Vec::new()
            } else {
                vec![SecurityRequirement::new("bearer", Vec::<String>::new())]
            });
            if !public {
                add_auth_responses(operation);
            }
            if takes_body {
                add_problem_response(
                    operation,
                    "408",
                    "The request body stalled or took too long to arrive (--body-idle-timeout, \
                     --body-timeout); the connection is closed",
                );
            }
        }
    }
    doc
}

/// 401, 403 and 429 on every authenticated operation.
fn add_auth_responses(operation: &mut utoipa::openapi::path::Operation) {
    for (status, description) in [
        (
            "401",
            "Missing, malformed, expired or wrongly signed token (with WWW-Authenticate)",
        ),
        (
            "403",
            "The token does not grant this action (`forbidden`), or a browser page of another \
             origin asked to change state (`cross_origin`)",
        ),
        ("429", "Rate or connection limit reached (with Retry-After)"),
    ] {
        add_problem_response(operation, status, description);
    }
}

/// A problem+json response, unless the operation documents that status itself.
fn add_problem_response(
    operation: &mut utoipa::openapi::path::Operation,
    status: &str,
    description: &str,
) {
    use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "Problem",
                ))))
                .build(),
        )
        .build();
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert(RefOr::T(response));
}

/// The document as pretty JSON (what `jetway openapi` prints and the repository commits).
pub fn document_json() -> String {
    document()
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
}
