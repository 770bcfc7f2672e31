//! The OpenAPI 3.1 document, generated from the handlers' annotations as the routes register
//! them ([`routes`]). Served at
//! `/openapi.json`, shown at `/docs`, and committed as `openapi/openapi.json` (a test keeps the
//! committed file equal to what the server serves).

use utoipa::Number;
use utoipa::OpenApi;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayItems, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Content, ContentBuilder, Ref, RefOr, ResponseBuilder};

use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;
use crate::state::{AppState, Limits};
use crate::{http, sse, ws};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "jetway",
        description = "HTTP, WebSocket and SSE gateway to NATS JetStream durable streams. \
            A 2xx on publish means JetStream stored the message. Errors are RFC 9457 \
            problem documents (application/problem+json) with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    // The WebSocket and SSE frames are described in openapi/asyncapi.yaml, not here: no HTTP
    // answer carries them.
    components(schemas(
        crate::error::Problem,
        crate::error::ProblemCode,
        crate::message::Encoding,
    )),
    tags(
        (name = "publish", description = "Publish messages with JetStream acknowledgement"),
        (name = "streams", description = "Create, inspect, purge and delete streams"),
        (name = "messages", description = "Read stored messages without a consumer"),
        (name = "consumers", description = "Durable pull consumers: fetch with long-poll, then ack by ack id"),
        (name = "push", description = "Push subscriptions: jetway POSTs a stream's messages to your HTTPS endpoint, signed, with retries and dead letters"),
        (name = "counters", description = "Counters JetStream adds up (streams with allow_msg_counter)"),
        (name = "kv", description = "Key-value buckets: keys with revisions, optimistic concurrency, history; watch them on the streaming routes"),
        (name = "schedules", description = "Delayed and repeating messages JetStream publishes itself (streams with allow_msg_schedules)"),
        (name = "streaming", description = "Replay and live tail over WebSocket and Server-Sent Events (frames: asyncapi.yaml)"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// Every route of every transport with its OpenAPI entry, each registered once: the `/v1`
/// routes (HTTP, WebSocket, SSE) and the public ones.
pub fn routes(limits: &Limits) -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let v1 = http::v1_routes(limits)
        .merge(ws::routes())
        .merge(sse::routes());
    (v1, http::public_routes())
}

/// The document of [`routes`] with the default configuration's limits, and the version of this
/// build.
pub fn document() -> utoipa::openapi::OpenApi {
    let limits = Limits::new(&Config::defaults());
    let (v1, public) = routes(&limits);
    complete(v1.merge(public).into_openapi(), &limits)
}

/// The document of the routes' entries, completed.
///
/// What the annotations cannot say is added here, once for every operation it applies to: the
/// bearer scheme and the statuses any route can answer (401, 403, 429, 431, 502, and for routes
/// with a body 408, 413 and 415), `Retry-After` on every 429 and 503, the payload as bytes, and
/// the constraints the server enforces on path, query and header parameters and on bodies,
/// with the bounds of `limits` (the server's configuration).
pub fn complete(paths: utoipa::openapi::OpenApi, limits: &Limits) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    use utoipa::openapi::server::ServerBuilder;
    let mut doc = ApiDoc::openapi();
    doc.merge(paths);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.servers = Some(vec![
        ServerBuilder::new()
            .url("/")
            .description(Some(
                "The jetway that serves this document (make dev: http://127.0.0.1:8080)",
            ))
            .build(),
    ]);
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
        constrain_bodies(&mut components.schemas, limits);
    }
    // Every /v1 operation needs a token; liveness, readiness and metrics do not.
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = !path.starts_with("/v1/");
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
        ]
        .into_iter()
        .flatten()
        {
            refine_operation(operation, public, limits);
        }
    }
    doc
}

fn refine_operation(operation: &mut Operation, public: bool, limits: &Limits) {
    operation.security = Some(if public {
        Vec::new()
    } else {
        vec![SecurityRequirement::new("bearer", Vec::<String>::new())]
    });
    if operation.operation_id.as_deref() == Some("publish_message")
        && let Some(RefOr::T(body)) = operation.request_body.as_mut()
    {
        body.content = [
            ("application/octet-stream", bytes_schema()),
            (
                "application/json",
                // Described as an object, the usual case: an SDK generator turns "any JSON"
                // into a type it cannot dispatch on. Arrays and scalars are stored alike.
                Schema::Object(
                    ObjectBuilder::new()
                        .schema_type(Type::Object)
                        .additional_properties(Some(
                            utoipa::openapi::schema::AdditionalProperties::FreeForm(true),
                        ))
                        .description(Some(
                            "A JSON document, stored as sent (arrays and scalars are stored alike)",
                        ))
                        .build(),
                ),
            ),
            (
                "text/plain",
                Schema::Object(ObjectBuilder::new().schema_type(Type::String).build()),
            ),
        ]
        .into_iter()
        .map(|(content_type, schema)| {
            (
                content_type.to_owned(),
                RefOr::T(Content::new(Some(schema))),
            )
        })
        .collect();
    }
    if let Some(RefOr::T(body)) = operation.request_body.as_mut() {
        for content in body.content.values_mut() {
            let RefOr::T(content) = content else { continue };
            // An optional body is left out, never sent as `null` (a 400): the body is the
            // object itself, not required.
            let object = match &content.schema {
                Some(RefOr::T(Schema::OneOf(one_of))) if one_of.items.len() == 2 => {
                    let mut others = one_of.items.iter().filter(|s| !is_null(s));
                    match (others.next(), others.next()) {
                        (Some(object), None) => Some(object.clone()),
                        _ => None,
                    }
                }
                _ => None,
            };
            if object.is_some() {
                content.schema = object;
            }
            // A batch holds at least one item, at most --max-batch-messages.
            if operation.operation_id.as_deref() == Some("publish_batch")
                && let Some(RefOr::T(Schema::Array(items))) = content.schema.as_mut()
            {
                items.min_items = Some(1);
                items.max_items = Some(limits.max_batch_messages);
            }
        }
    }
    let put_key = operation.operation_id.as_deref() == Some("put_key");
    for parameter in operation.parameters.iter_mut().flatten() {
        if let RefOr::T(parameter) = parameter {
            constrain_parameter(parameter, limits);
            // On a write, If-None-Match takes only `*` (create).
            if put_key
                && parameter.name == "If-None-Match"
                && let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut()
            {
                schema.enum_values = Some(vec!["*".into()]);
            }
        }
    }
    // The payload of a raw read is bytes.
    for response in operation.responses.responses.values_mut() {
        if let RefOr::T(response) = response
            && let Some(RefOr::T(content)) = response.content.get_mut("application/octet-stream")
        {
            content.schema = Some(RefOr::T(bytes_schema()));
        }
    }
    if !public {
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
            (
                "429",
                "Rate or connection limit reached: retry after `Retry-After` seconds",
            ),
            (
                "502",
                "JetStream answered with an error jetway has no more specific mapping for \
                 (`jetstream_error`)",
            ),
        ] {
            add_problem(operation, status, description);
        }
    }
    add_problem(
        operation,
        "431",
        "Too many or too large request headers (`headers_too_large`)",
    );
    if let Some(body) = &operation.request_body {
        let json_only = match body {
            RefOr::T(body) => body.content.keys().all(|k| k == "application/json"),
            RefOr::Ref(_) => false,
        };
        add_problem(
            operation,
            "408",
            "The request body stalled or took too long to arrive (--body-idle-timeout, \
             --body-timeout); the connection is closed",
        );
        add_problem(
            operation,
            "413",
            "The request body is larger than this route accepts (`payload_too_large`)",
        );
        if json_only {
            add_problem(
                operation,
                "415",
                "The Content-Type is not JSON (`unsupported_media_type`)",
            );
        }
    }
    // Every 429 and 503 says when to come back.
    for (status, response) in operation.responses.responses.iter_mut() {
        if let RefOr::T(response) = response
            && (status == "429" || status == "503")
        {
            let mut header = Header::new(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0)),
            );
            header.description = Some("Seconds to wait before retrying".to_owned());
            response
                .headers
                .insert("Retry-After".to_owned(), RefOr::T(header));
        }
    }
}

/// Bytes, byte for byte.
fn bytes_schema() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .content_media_type("application/octet-stream")
            .build(),
    )
}

/// Stream and consumer names as [`crate::validate::name`] accepts them.
const NAME_PATTERN: &str = r"^[^\s\x00-\x1f\x7f-\x9f.*>/\\]+$";
/// A publish subject ([`crate::validate::publish_subject`]): dot-separated non-empty tokens
/// without wildcards, whitespace or control characters.
const SUBJECT_PATTERN: &str = r"^[^\s\x00-\x1f\x7f-\x9f.*>]+(\.[^\s\x00-\x1f\x7f-\x9f.*>]+)*$";
/// A subject filter ([`crate::validate::subject_filter`]): like a subject, with `*` as a whole
/// token and `>` as the whole last token.
const FILTER_PATTERN: &str =
    r"^(?:[^\s\x00-\x1f\x7f-\x9f.*>]+|\*)(?:\.(?:[^\s\x00-\x1f\x7f-\x9f.*>]+|\*))*(?:\.>)?$|^>$";
/// An RFC 3339 time JetStream can represent ([`crate::timestamp::parse_time`]: 1970 to
/// 2262-04-11): the pattern keeps to the whole years 1971 to 2261, so that no time zone offset
/// takes a matching time out of range.
const TIME_PATTERN: &str = r"^(197[1-9]|19[89][0-9]|2[01][0-9]{2}|22[0-5][0-9]|226[01])-";
/// A per-message TTL ([`crate::nats::publish::Outgoing::ttl`]).
/// A priority group name (JetStream allows at most 16 characters).
const GROUP_PATTERN: &str = r"^[A-Za-z0-9/_=-]{1,16}$";
/// A pin id.
const PIN_PATTERN: &str = r"^[A-Za-z0-9/_=-]{1,64}$";
/// A counter increment as text.
const INCREMENT_PATTERN: &str = r"^[+-]?[0-9]{1,100}$";
/// A key-value bucket name ([`crate::validate::bucket`]).
const BUCKET_PATTERN: &str = r"^[A-Za-z0-9_-]+$";
/// A key ([`crate::validate::key`]): dot-separated tokens of letters, digits, `-_/=`.
const KEY_PATTERN: &str = r"^[-/_=A-Za-z0-9]+(\.[-/_=A-Za-z0-9]+)*$";
/// A pattern of keys: a key whose tokens may be `*`, and whose last may be `>`.
const KEY_FILTER_PATTERN: &str =
    r"^(?:[-/_=A-Za-z0-9]+|\*)(?:\.(?:[-/_=A-Za-z0-9]+|\*))*(?:\.>)?$|^>$";
/// `*` or one revision as an entity tag (`"41"`; a bare number is accepted too).
const ETAG_PATTERN: &str = r#"^(\*|"[0-9]{1,19}"|[0-9]{1,19})$"#;
const TTL_PATTERN: &str = r"^(never|[1-9][0-9]{0,5}[smh])$";
/// A stored header's name: an HTTP token, not a `Nats-` one ([`crate::validate::header`]).
const HEADER_NAME_PATTERN: &str = r"^(?![Nn][Aa][Tt][Ss]-)[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
/// A stored header's value: visible ASCII, spaces and tabs.
const STORED_VALUE_PATTERN: &str = r"^[\t\x20-\x7e]*$";
/// Visible ASCII with inner spaces, as HTTP header values that jetway stores must be.
const HEADER_VALUE_PATTERN: &str = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$";

/// A push subscription's URL ([`crate::destinations::Destinations::check_url`]): http or
/// https, with a host and no credentials.
const PUSH_URL_PATTERN: &str = r"^https?://[^\s/?#@]+(?:[/?#][^\s]*)?$";
/// A subject filter that is not a subject of NATS itself (`$…`, `_INBOX…`).
const CLIENT_FILTER_PATTERN: &str = r"^(?![$]|_INBOX(?:\.|$))(?:(?:[^\s\x00-\x1f\x7f-\x9f.*>]+|\*)(?:\.(?:[^\s\x00-\x1f\x7f-\x9f.*>]+|\*))*(?:\.>)?|>)$";

/// `{"type": "null"}`.
fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(object))
        if object.schema_type == SchemaType::Type(Type::Null))
}

/// The constraints the server enforces on a parameter, by its name and place.
fn constrain_parameter(parameter: &mut Parameter, limits: &Limits) {
    let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut() else {
        return;
    };
    // A header is sent or left out; it is never `null` (an optional one was rendered
    // nullable).
    if parameter.parameter_in == ParameterIn::Header
        && schema.schema_type == SchemaType::Array(vec![Type::String, Type::Null])
    {
        schema.schema_type = SchemaType::Type(Type::String);
    }
    let text = |schema: &mut Object, max: usize, pattern: &str| {
        schema.min_length = Some(1);
        schema.max_length = Some(max);
        schema.pattern = Some(pattern.to_owned());
    };
    let max_name = crate::validate::MAX_NAME_LEN;
    let max_subject = crate::validate::MAX_SUBJECT_LEN;
    match (&parameter.parameter_in, parameter.name.as_str()) {
        (ParameterIn::Path, "stream" | "consumer" | "name")
        | (ParameterIn::Header, "Nats-Expected-Stream") => {
            text(schema, max_name, NAME_PATTERN);
        }
        (ParameterIn::Path, "subject") => text(schema, max_subject, SUBJECT_PATTERN),
        (ParameterIn::Path, "bucket") => {
            text(schema, crate::validate::MAX_BUCKET_LEN, BUCKET_PATTERN);
        }
        (ParameterIn::Path, "key") => text(schema, crate::validate::MAX_KEY_LEN, KEY_PATTERN),
        (ParameterIn::Query, "key") => {
            text(schema, crate::validate::MAX_KEY_LEN, KEY_FILTER_PATTERN);
        }
        (ParameterIn::Query, "revision" | "start_revision") => {
            schema.minimum = Some(Number::UInt(1));
        }
        (ParameterIn::Query, "max_keys") => {
            schema.minimum = Some(Number::UInt(1));
            schema.maximum = Some(Number::UInt(crate::ops::kv::MAX_KEYS));
        }
        (ParameterIn::Query, "ttl") => text(schema, 7, TTL_PATTERN),
        (ParameterIn::Header, "If-Match" | "If-None-Match") => text(schema, 22, ETAG_PATTERN),
        (ParameterIn::Query, "subject") => text(schema, max_subject, FILTER_PATTERN),
        (ParameterIn::Path, "seq") | (ParameterIn::Query, "start_seq") => {
            schema.minimum = Some(Number::UInt(1));
        }
        (ParameterIn::Query, "start_time") => {
            schema.format = Some(SchemaFormat::KnownFormat(KnownFormat::DateTime));
            schema.pattern = Some(TIME_PATTERN.to_owned());
        }
        (ParameterIn::Query, "limit") => {
            schema.minimum = Some(Number::UInt(1));
            schema.maximum = Some(Number::UInt(limits.max_page_messages));
        }
        // Header values are text: a number is its decimal digits (an SDK then sends it as
        // written, where some send an integer header not at all).
        (
            ParameterIn::Header,
            "Nats-Expected-Last-Sequence" | "Nats-Expected-Last-Subject-Sequence",
        ) => text(schema, 19, r"^[0-9]{1,19}$"),
        (ParameterIn::Header, "Nats-TTL") => text(schema, 7, TTL_PATTERN),
        (ParameterIn::Header, "Idempotency-Key" | "Nats-Expected-Last-Msg-Id") => {
            text(schema, 256, HEADER_VALUE_PATTERN);
        }
        _ => {}
    }
}

/// A component schema that is an object.
fn object_mut<'a>(schemas: &'a mut Schemas, name: &str) -> Option<&'a mut Object> {
    match schemas.get_mut(name) {
        Some(RefOr::T(Schema::Object(object))) => Some(object),
        _ => None,
    }
}

/// A property of a component schema.
fn property_mut<'a>(schemas: &'a mut Schemas, name: &str, field: &str) -> Option<&'a mut Schema> {
    match object_mut(schemas, name)?.properties.get_mut(field) {
        Some(RefOr::T(property)) => Some(property),
        _ => None,
    }
}

type Schemas = std::collections::BTreeMap<String, RefOr<Schema>>;

/// `{"anyOf": [<field is null>, then]}`: a field sent as `null` counts as left out.
fn absent_or(field: &str, then: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"anyOf": [{"properties": {field: {"type": "null"}}}, then]})
}

/// The constraints the server enforces on request bodies that their types cannot carry: bounds
/// from the configuration, non-empty lists and subjects, fields that go with one choice of
/// another (JSON Schema's `dependentSchemas`).
fn constrain_bodies(schemas: &mut Schemas, limits: &Limits) {
    for (field, max) in [
        ("max_messages", limits.max_fetch_messages),
        ("max_bytes", limits.max_fetch_bytes),
    ] {
        if let Some(Schema::Object(object)) = property_mut(schemas, "FetchRequest", field) {
            object.minimum = Some(Number::UInt(1));
            object.maximum = Some(Number::UInt(max));
        }
    }
    if let Some(Schema::Array(acks)) = property_mut(schemas, "AcksRequest", "acks") {
        acks.min_items = Some(1);
        acks.max_items = Some(limits.max_acks);
    }
    if let Some(Schema::Object(subject)) = property_mut(schemas, "BatchItem", "subject") {
        subject.min_length = Some(1);
        subject.max_length = Some(crate::validate::MAX_SUBJECT_LEN);
        subject.pattern = Some(SUBJECT_PATTERN.to_owned());
    }
    if let Some(Schema::Array(subjects)) = property_mut(schemas, "StreamConfig", "subjects")
        && let ArrayItems::RefOrSchema(item) = &mut subjects.items
        && let RefOr::T(Schema::Object(item)) = item.as_mut()
    {
        item.min_length = Some(1);
        item.max_length = Some(crate::validate::MAX_SUBJECT_LEN);
        item.pattern = Some(FILTER_PATTERN.to_owned());
    }
    if let Some(Schema::Object(headers)) = property_mut(schemas, "BatchItem", "headers") {
        headers.property_names = Some(Box::new(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(HEADER_NAME_PATTERN))
                .build(),
        )));
        headers.additional_properties = Some(Box::new(AdditionalProperties::RefOr(RefOr::T(
            Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(STORED_VALUE_PATTERN))
                    .build(),
            ),
        ))));
    }
    if let Some(Schema::Object(subject)) = property_mut(schemas, "PurgeRequest", "subject") {
        subject.min_length = Some(1);
        subject.max_length = Some(crate::validate::MAX_SUBJECT_LEN);
        subject.pattern = Some(FILTER_PATTERN.to_owned());
    }
    if let Some(Schema::Object(up_to)) = property_mut(schemas, "PurgeRequest", "up_to_seq") {
        up_to.minimum = Some(Number::UInt(1));
    }
    for schema in ["ConsumerConfig", "PushConfig"] {
        if let Some(Schema::Object(time)) = property_mut(schemas, schema, "opt_start_time") {
            time.format = Some(SchemaFormat::KnownFormat(KnownFormat::DateTime));
            time.pattern = Some(TIME_PATTERN.to_owned());
        }
    }
    if let Some(Schema::Object(url)) = property_mut(schemas, "PushConfig", "url") {
        url.min_length = Some(8);
        url.max_length = Some(crate::destinations::MAX_URL_LEN);
        url.pattern = Some(PUSH_URL_PATTERN.to_owned());
    }
    if let Some(Schema::Object(seq)) = property_mut(schemas, "PushConfig", "opt_start_seq") {
        seq.minimum = Some(Number::UInt(1));
    }
    if let Some(Schema::Array(filters)) = property_mut(schemas, "PushConfig", "filter_subjects")
        && let ArrayItems::RefOrSchema(item) = &mut filters.items
        && let RefOr::T(Schema::Object(item)) = item.as_mut()
    {
        item.min_length = Some(1);
        item.max_length = Some(crate::validate::MAX_SUBJECT_LEN);
        item.pattern = Some(CLIENT_FILTER_PATTERN.to_owned());
    }
    for (schema, field) in [
        ("ConsumerConfig", "pause_until"),
        ("PauseRequest", "pause_until"),
        ("PushPauseRequest", "pause_until"),
        ("SeekRequest", "time"),
        ("ScheduleRequest", "at"),
    ] {
        if let Some(Schema::Object(time)) = property_mut(schemas, schema, field) {
            time.format = Some(SchemaFormat::KnownFormat(KnownFormat::DateTime));
            time.pattern = Some(TIME_PATTERN.to_owned());
        }
    }
    for (schema, field, max, pattern) in [
        ("FetchRequest", "group", 16, GROUP_PATTERN),
        ("UnpinRequest", "group", 16, GROUP_PATTERN),
        ("FetchRequest", "pin_id", 64, PIN_PATTERN),
    ] {
        if let Some(Schema::Object(token)) = property_mut(schemas, schema, field) {
            token.min_length = Some(1);
            token.max_length = Some(max);
            token.pattern = Some(pattern.to_owned());
        }
    }
    if let Some(Schema::Object(priority)) = property_mut(schemas, "FetchRequest", "priority") {
        priority.maximum = Some(Number::UInt(9));
    }
    for (field, min, max) in [
        ("history", 1, u64::from(crate::nats::kv::MAX_HISTORY)),
        ("replicas", 1, 5),
        ("max_value_size", 0, u64::from(i32::MAX.unsigned_abs())),
        ("max_bytes", 0, i64::MAX.unsigned_abs()),
    ] {
        if let Some(Schema::Object(number)) = property_mut(schemas, "BucketConfig", field) {
            number.minimum = Some(Number::UInt(min));
            number.maximum = Some(Number::UInt(usize::try_from(max).unwrap_or(usize::MAX)));
        }
    }
    if let Some(Schema::Object(seq)) = property_mut(schemas, "SeekRequest", "seq") {
        seq.minimum = Some(Number::UInt(1));
    }
    if let Some(Schema::Object(target)) = property_mut(schemas, "ScheduleRequest", "target") {
        target.min_length = Some(1);
        target.max_length = Some(crate::validate::MAX_SUBJECT_LEN);
        target.pattern = Some(SUBJECT_PATTERN.to_owned());
    }
    // An increment is decimal text of at most 100 digits, or a JSON integer.
    if let Ok(increment) = serde_json::from_value::<Schema>(serde_json::json!({
        "oneOf": [
            {"type": "string", "pattern": INCREMENT_PATTERN, "minLength": 1, "maxLength": 101},
            {"type": "integer", "format": "int64"},
        ],
        "description": "Decimal text (\"5\", \"-3\", \"+12\", up to 100 digits), or a JSON integer.",
    })) {
        schemas.insert("Increment".to_owned(), RefOr::T(increment));
    }
    // Exactly one of `seq` and `time`.
    if let Some(object) = object_mut(schemas, "SeekRequest") {
        let extensions = object.extensions.get_or_insert_with(Default::default);
        extensions.insert(
            "anyOf".to_owned(),
            serde_json::json!([
                {"required": ["seq"], "properties": {"seq": {"type": "integer"}}},
                {"required": ["time"], "properties": {"time": {"type": "string"}}},
            ]),
        );
        extensions.insert(
            "dependentSchemas".to_owned(),
            serde_json::json!({
                "seq": absent_or("seq", serde_json::json!({"properties": {"time": {"type": "null"}}})),
            }),
        );
    }
    // The options of a priority group go with a group.
    if let Some(object) = object_mut(schemas, "FetchRequest") {
        let with_group =
            serde_json::json!({"required": ["group"], "properties": {"group": {"type": "string"}}});
        let rules: serde_json::Map<String, serde_json::Value> =
            ["pin_id", "min_pending", "min_ack_pending", "priority"]
                .into_iter()
                .map(|field| (field.to_owned(), absent_or(field, with_group.clone())))
                .collect();
        object
            .extensions
            .get_or_insert_with(Default::default)
            .insert("dependentSchemas".to_owned(), rules.into());
    }
    if let Some(Schema::Object(ttl)) = property_mut(schemas, "BatchItem", "ttl") {
        ttl.min_length = Some(1);
        ttl.max_length = Some(7);
        ttl.pattern = Some(TTL_PATTERN.to_owned());
    }
    let by_start = |policy: &str, field: &str, kind: &str| {
        serde_json::json!({
            "properties": {"deliver_policy": {"const": policy}, field: {"type": kind}},
            "required": ["deliver_policy", field],
        })
    };
    let dependent = [
        (
            "AckItem",
            serde_json::json!({
                "delay": absent_or("delay", serde_json::json!({"properties": {"action": {"const": "nak"}}})),
            }),
        ),
        (
            "PurgeRequest",
            serde_json::json!({
                "keep": absent_or("keep", serde_json::json!({"properties": {"up_to_seq": {"type": "null"}}})),
            }),
        ),
        (
            "PushConfig",
            serde_json::json!({
                "opt_start_seq": absent_or("opt_start_seq", by_start("by_start_sequence", "opt_start_seq", "integer")),
                "opt_start_time": absent_or("opt_start_time", by_start("by_start_time", "opt_start_time", "string")),
                "deliver_policy": {"anyOf": [
                    {"properties": {"deliver_policy": {"enum": ["all", "last", "new", "last_per_subject"]}}},
                    by_start("by_start_sequence", "opt_start_seq", "integer"),
                    by_start("by_start_time", "opt_start_time", "string"),
                ]},
            }),
        ),
        (
            "ConsumerConfig",
            serde_json::json!({
                "opt_start_seq": absent_or("opt_start_seq", by_start("by_start_sequence", "opt_start_seq", "integer")),
                "opt_start_time": absent_or("opt_start_time", by_start("by_start_time", "opt_start_time", "string")),
                "deliver_policy": {"anyOf": [
                    {"properties": {"deliver_policy": {"enum": ["all", "last", "new", "last_per_subject"]}}},
                    by_start("by_start_sequence", "opt_start_seq", "integer"),
                    by_start("by_start_time", "opt_start_time", "string"),
                ]},
            }),
        ),
    ];
    for (name, rules) in dependent {
        if let Some(object) = object_mut(schemas, name) {
            object
                .extensions
                .get_or_insert_with(Default::default)
                .insert("dependentSchemas".to_owned(), rules);
        }
    }
}

/// A problem+json response, unless the operation documents that status itself.
fn add_problem(operation: &mut Operation, status: &str, description: &str) {
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("Problem"))))
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
