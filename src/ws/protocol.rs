//! The WebSocket protocol: JSON text frames, tagged by `type` (server → client) and `op`
//! (client → server). `openapi/asyncapi.yaml` describes the same frames; a test keeps the two in
//! step through [`SERVER_FRAME_TYPES`] and [`CLIENT_OPS`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::duration;
use crate::error::Problem;
use crate::message::{EncodingChoice, Message};
use crate::nats::consumers::AckAction;

/// Every `type` the server sends.
pub const SERVER_FRAME_TYPES: [&str; 9] = [
    "msg",
    "caught_up",
    "gap",
    "subscribed",
    "unsubscribed",
    "ack_result",
    "publish_ack",
    "error",
    "pong",
];

/// Every `op` a client may send.
pub const CLIENT_OPS: [&str; 10] = [
    "subscribe",
    "unsubscribe",
    "ack",
    "nak",
    "term",
    "progress",
    "credit",
    "publish",
    "ping",
    "close",
];

/// Longest client-chosen id (a subscription's or an op's), in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Checks a client-chosen id: 1 to [`MAX_ID_LEN`] printable ASCII characters (space to `~`).
/// Ids are echoed in frames (a subscription's in every message), so an unbounded one would
/// multiply what the gateway sends.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!(
            "an id must be 1 to {MAX_ID_LEN} characters long; this one has {} bytes",
            id.len()
        ));
    }
    if !id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err("an id may only hold printable ASCII characters (space to '~')".to_owned());
    }
    Ok(())
}

/// A frame the server sends.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A message: the stream representation, plus `ack_id` etc. in ack mode.
    Msg {
        /// Subscription id (multiplexed endpoint only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub: Option<String>,
        #[serde(flatten)]
        message: Message,
    },
    /// The replay reached the end of the stream as it was when the subscription started; live
    /// messages follow. Sent once per subscription.
    CaughtUp {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub: Option<String>,
        /// Last stream sequence delivered before going live (0 when none).
        seq: u64,
    },
    /// Sequences `from..=to` will never be delivered: expired, purged or deleted before they
    /// could be read.
    Gap {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub: Option<String>,
        from: u64,
        to: u64,
    },
    /// A subscription started.
    Subscribed { sub: String },
    /// A subscription ended (on request, or because its consumer went away).
    Unsubscribed {
        sub: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The outcome of an `ack`, `nak`, `term` or `progress` op.
    AckResult {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        ack_id: String,
        action: AckAction,
        /// 200 when JetStream confirmed it.
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Problem>,
    },
    /// JetStream stored a message sent with `publish`.
    PublishAck {
        /// The `id` of the `publish` op.
        id: String,
        stream: String,
        seq: u64,
        duplicate: bool,
    },
    /// An op failed (the connection stays open unless a close frame follows).
    Error {
        /// The `id` of the op that failed, when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The subscription concerned, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub: Option<String>,
        problem: Problem,
    },
    /// Answer to `ping`.
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

pub use crate::ops::replay::ReplayFrom;

/// How a subscription's messages are framed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WsEncoding {
    /// Text frames; `data` is JSON, UTF-8 text or base64, whichever is lossless and most
    /// readable.
    #[default]
    Auto,
    /// Text frames; `data` is always base64.
    Base64,
    /// Binary frames: a 4-byte big-endian header length, a JSON header (the message without
    /// `data` and `encoding`), then the payload as it is.
    Binary,
}

impl WsEncoding {
    /// The payload encoding of text frames, and whether frames are binary.
    pub fn split(self) -> (EncodingChoice, bool) {
        match self {
            Self::Auto => (EncodingChoice::Auto, false),
            Self::Base64 => (EncodingChoice::Base64, false),
            Self::Binary => (EncodingChoice::Auto, true),
        }
    }
}

/// An op a client sends.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientOp {
    /// Start a subscription (multiplexed endpoint).
    Subscribe {
        /// Client-chosen subscription id, echoed as `sub` in every frame of the subscription:
        /// 1 to 128 printable ASCII characters, like every client-chosen id.
        #[schema(min_length = 1, max_length = 128)]
        id: String,
        stream: String,
        /// `all` (default), `last`, `new` or `last_per_subject`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deliver: Option<ReplayFrom>,
        /// Start at this stream sequence (resume with `last_seen + 1`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_seq: Option<u64>,
        /// Start at the first message stored at or after this RFC 3339 time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_time: Option<String>,
        /// Only these subjects (wildcards allowed).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        filter: Vec<String>,
        /// Durable consumer name: ack mode (messages carry `ack_id` and are redelivered until acked).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        consumer: Option<String>,
        /// With `consumer`: the priority group to pull as (consumers with a `priority_policy`).
        /// On a `pinned_client` consumer the subscription is one worker: it takes the pin when
        /// it is free and keeps it while it pulls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        /// Messages the server may send before the client grants more with `credit`. Without it,
        /// the server sends as fast as the socket drains (still bounded in memory).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credit: Option<u64>,
        #[serde(default)]
        encoding: WsEncoding,
    },
    /// End a subscription.
    Unsubscribe { id: String },
    /// Acknowledge a message (ack mode).
    Ack {
        ack_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Redeliver a message, after `delay` when given.
    Nak {
        ack_id: String,
        #[serde(
            default,
            with = "duration::option",
            skip_serializing_if = "Option::is_none"
        )]
        #[schema(value_type = Option<String>)]
        delay: Option<Duration>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Never redeliver a message (dead-lettered when the consumer has a dead-letter subject).
    Term {
        ack_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Restart a message's ack wait.
    Progress {
        ack_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Grant `n` more messages to a subscription (`id`; omit it on the single-stream endpoint).
    Credit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        n: u64,
    },
    /// Publish a message; answered with `publish_ack` (or `error`) carrying the same `id`.
    Publish {
        id: String,
        subject: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_base64: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// Answered with `pong`.
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Close the connection normally (1000).
    Close,
}

/// A `publish` op read straight from its frame, borrowing its strings from the frame's text.
///
/// `publish` is the op a client pipelines by the thousand, and [`ClientOp`], an internally
/// tagged enum, first copies every field of every op into serde's intermediate tree to find
/// its `op`. This accepts exactly what [`ClientOp::Publish`] accepts (the same fields, required
/// and optional, no others); any other frame, valid or not, is read as a [`ClientOp`], whose
/// answers (and error messages) stay the reference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishOp<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub subject: Cow<'a, str>,
    /// The value as it was sent (rendered by [`PublishOp::data`]).
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub data_base64: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub content_type: Option<Cow<'a, str>>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default, borrow)]
    pub idempotency_key: Option<Cow<'a, str>>,
}

impl<'a> PublishOp<'a> {
    /// The op, when `text` is a well-formed `publish` op; `None` for anything else.
    pub fn parse(text: &'a str) -> Option<Self> {
        // Tried on every frame: another op fails here at its first field a publish does not
        // have (or passes with another `op`) and is read again as a `ClientOp`.
        let op: Self = serde_json::from_str(text).ok()?;
        (op.op == "publish").then_some(op)
    }

    /// `data` as the message's payload: a string as its UTF-8 text (borrowed from the frame when
    /// it holds no escapes), any other value as compact JSON.
    pub fn data(&self) -> Result<Option<PublishData<'a>>, serde_json::Error> {
        let Some(raw) = self.data else {
            return Ok(None);
        };
        let json = raw.get();
        Ok(Some(if json.starts_with('"') {
            match serde_json::from_str::<&'a str>(json) {
                Ok(text) => PublishData::Borrowed(text),
                // Escapes: the text differs from the frame's bytes.
                Err(_) => PublishData::Owned(serde_json::from_str::<String>(json)?),
            }
        } else {
            let value: serde_json::Value = serde_json::from_str(json)?;
            PublishData::Json(serde_json::to_vec(&value)?)
        }))
    }
}

/// The payload of a [`PublishOp`]'s `data`.
#[derive(Debug)]
pub enum PublishData<'a> {
    /// A string, as it is in the frame.
    Borrowed(&'a str),
    /// A string that held escapes.
    Owned(String),
    /// Any other JSON value, compact.
    Json(Vec<u8>),
}

impl ClientOp {
    /// The client-chosen id of the op, if it has one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Subscribe { id, .. } | Self::Unsubscribe { id } | Self::Publish { id, .. } => {
                Some(id)
            }
            Self::Ack { id, .. }
            | Self::Nak { id, .. }
            | Self::Term { id, .. }
            | Self::Progress { id, .. }
            | Self::Credit { id, .. }
            | Self::Ping { id } => id.as_deref(),
            Self::Close => None,
        }
    }

    /// The ack action of an ack-like op.
    pub fn ack(&self) -> Option<(&str, AckAction, Option<Duration>, Option<&str>)> {
        match self {
            Self::Ack { ack_id, id } => Some((ack_id, AckAction::Ack, None, id.as_deref())),
            Self::Nak { ack_id, delay, id } => {
                Some((ack_id, AckAction::Nak, *delay, id.as_deref()))
            }
            Self::Term { ack_id, id } => Some((ack_id, AckAction::Term, None, id.as_deref())),
            Self::Progress { ack_id, id } => {
                Some((ack_id, AckAction::Progress, None, id.as_deref()))
            }
            _ => None,
        }
    }
}

impl ServerFrame {
    /// The frame as JSON text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| {
            format!(r#"{{"type":"error","problem":{{"type":"urn:jetway:problem:internal","title":"Internal error","status":500,"detail":"cannot encode frame: {err}","code":"internal"}}}}"#)
        })
    }

    /// A binary `msg` frame for `sub`, from the frame rendered once for every subscriber
    /// ([`crate::fanout::binary_frame`]): shared as it is without a subscription id, else with
    /// `"sub"` put into its header.
    pub fn msg_binary(sub: Option<&str>, frame: &bytes::Bytes) -> bytes::Bytes {
        let Some(sub) = sub else {
            return frame.clone();
        };
        const OPEN: &[u8] = br#"{"type":"msg""#;
        let header_len = frame
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |b| u32::from_be_bytes(b) as usize);
        let (Some(header), Some(payload)) =
            (frame.get(4..4 + header_len), frame.get(4 + header_len..))
        else {
            return frame.clone();
        };
        let Some(rest) = header.strip_prefix(OPEN) else {
            return frame.clone();
        };
        let sub = serde_json::to_string(sub).unwrap_or_default();
        let mut out = Vec::with_capacity(frame.len() + sub.len() + 8);
        let new_len = u32::try_from(OPEN.len() + 7 + sub.len() + rest.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&new_len.to_be_bytes());
        out.extend_from_slice(OPEN);
        out.extend_from_slice(br#","sub":"#);
        out.extend_from_slice(sub.as_bytes());
        out.extend_from_slice(rest);
        out.extend_from_slice(payload);
        bytes::Bytes::from(out)
    }

    /// The text of a `msg` frame for a message already rendered as a JSON object (shared by
    /// every subscriber of a feed): the same text as [`ServerFrame::Msg`]'s, without rendering
    /// the message again for each socket.
    pub fn msg_text(sub: Option<&str>, message_json: &str) -> String {
        let fields = message_json.strip_prefix('{').unwrap_or("}");
        let sub = sub.map(|sub| serde_json::to_string(sub).unwrap_or_default());
        let mut text =
            String::with_capacity(16 + fields.len() + sub.as_ref().map_or(0, |s| s.len() + 8));
        text.push_str(r#"{"type":"msg""#);
        if let Some(sub) = sub {
            text.push_str(r#","sub":"#);
            text.push_str(&sub);
        }
        if fields != "}" {
            text.push(',');
        }
        text.push_str(fields);
        text
    }

    /// Its `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Msg { .. } => "msg",
            Self::CaughtUp { .. } => "caught_up",
            Self::Gap { .. } => "gap",
            Self::Subscribed { .. } => "subscribed",
            Self::Unsubscribed { .. } => "unsubscribed",
            Self::AckResult { .. } => "ack_result",
            Self::PublishAck { .. } => "publish_ack",
            Self::Error { .. } => "error",
            Self::Pong { .. } => "pong",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_msg_frame_from_a_rendered_message_is_the_frame_serde_writes() {
        let mut headers = BTreeMap::new();
        headers.insert("Content-Type".to_owned(), "text/plain".to_owned());
        let message = Message {
            stream: "ORDERS".to_owned(),
            subject: "orders.\"new\"".to_owned(),
            seq: 42,
            time: "2026-11-26T09:00:00Z".to_owned(),
            headers,
            data: serde_json::json!({"a": [1, "x"]}),
            encoding: crate::message::Encoding::Json,
            delivered: None,
            consumer_seq: None,
            pending: None,
            ack_id: None,
            size: 0,
            raw: None,
        };
        let json = message.to_json();
        for sub in [None, Some("live \"1\"")] {
            let frame = ServerFrame::Msg {
                sub: sub.map(str::to_owned),
                message: message.clone(),
            };
            assert_eq!(ServerFrame::msg_text(sub, &json), frame.to_text());
        }
    }

    #[test]
    fn subscribe_parses_with_flattened_start() {
        let op: ClientOp = serde_json::from_str(
            r#"{"op":"subscribe","id":"a","stream":"ORDERS","start_seq":5,"filter":["orders.>"],"credit":10}"#,
        )
        .unwrap();
        let ClientOp::Subscribe {
            start_seq, credit, ..
        } = op
        else {
            panic!("not subscribe")
        };
        assert_eq!(start_seq, Some(5));
        assert_eq!(credit, Some(10));
    }

    #[test]
    fn ids_are_bounded_printable_ascii() {
        assert!(check_id("orders-1 eu:7~").is_ok());
        assert!(check_id(&"a".repeat(MAX_ID_LEN)).is_ok());
        assert!(check_id("").is_err());
        assert!(check_id(&"a".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(check_id("line\nbreak").is_err());
        assert!(check_id("caf\u{e9}").is_err());
    }

    #[test]
    fn the_publish_fast_path_reads_what_client_op_reads() {
        let frames = [
            r#"{"data":"abc","id":"7","op":"publish","subject":"orders.new"}"#,
            r#"{"op":"publish","id":"8","subject":"a.b","data":"tab\there","content_type":"text/plain"}"#,
            r#"{"op":"publish","id":"9","subject":"a.b","data":{"x":[1, 2.5, null]},"headers":{"K":"v"}}"#,
            r#"{"op":"publish","id":"10","subject":"a.b","data":null,"data_base64":"aGk=","idempotency_key":"k"}"#,
        ];
        for frame in frames {
            let fast = PublishOp::parse(frame).unwrap();
            let ClientOp::Publish {
                id,
                subject,
                data,
                data_base64,
                content_type,
                headers,
                idempotency_key,
            } = serde_json::from_str(frame).unwrap()
            else {
                panic!("not publish")
            };
            assert_eq!((fast.id.as_ref(), fast.subject.as_ref()), (&*id, &*subject));
            assert_eq!(fast.data_base64.as_deref(), data_base64.as_deref());
            assert_eq!(fast.content_type.as_deref(), content_type.as_deref());
            assert_eq!(fast.idempotency_key.as_deref(), idempotency_key.as_deref());
            assert_eq!(fast.headers, headers);
            let payload = match fast.data().unwrap() {
                None => None,
                Some(PublishData::Borrowed(text)) => Some((text.as_bytes().to_vec(), false)),
                Some(PublishData::Owned(text)) => Some((text.into_bytes(), false)),
                Some(PublishData::Json(json)) => Some((json, true)),
            };
            let expected = data.map(|value| match value {
                serde_json::Value::String(text) => (text.into_bytes(), false),
                other => (serde_json::to_vec(&other).unwrap(), true),
            });
            assert_eq!(payload, expected, "{frame}");
        }
        assert!(matches!(
            PublishOp::parse(r#"{"op":"publish","id":"1","subject":"a","data":"x"}"#)
                .unwrap()
                .data(),
            Ok(Some(PublishData::Borrowed("x")))
        ));
        // Everything else is left to `ClientOp`.
        for other in [
            r#"{"op":"ping","id":"1","subject":"a.b"}"#,
            r#"{"op":"publish","id":"1","subject":"a.b","extra":1}"#,
            r#"{"op":"publish","subject":"a.b"}"#,
            r#"{"op":"ack","ack_id":"x"}"#,
            r#"{"op":"publish","id":"1","subject":"a.b"} trailing"#,
        ] {
            assert!(PublishOp::parse(other).is_none(), "{other}");
        }
    }

    #[test]
    fn unknown_op_is_an_error() {
        assert!(serde_json::from_str::<ClientOp>(r#"{"op":"explode"}"#).is_err());
    }

    #[test]
    fn frame_kinds_match_serialized_type() {
        let frame = ServerFrame::CaughtUp { sub: None, seq: 3 };
        let value: serde_json::Value = serde_json::from_str(&frame.to_text()).unwrap();
        assert_eq!(value["type"], frame.kind());
        assert!(SERVER_FRAME_TYPES.contains(&frame.kind()));
    }
}
