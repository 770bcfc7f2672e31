//! The JSON representation of a stored or delivered message, shared by every read path
//! (message reads, fetch, WebSocket, SSE).
//!
//! `data` is the payload itself whenever that is lossless: the JSON value for JSON payloads, the
//! text for UTF-8 payloads, and base64 otherwise; `encoding` says which. Clients that want
//! byte-exact handling ask for `base64` always.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How `data` encodes the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The payload is JSON (content type JSON or unset) and `data` is that JSON value.
    Json,
    /// The payload is UTF-8 text and `data` is that string.
    Utf8,
    /// `data` is the payload in standard base64.
    Base64,
}

/// Which encodings a client accepts (`encoding` query parameter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingChoice {
    /// JSON, UTF-8 text or base64, whichever is lossless and most readable.
    #[default]
    Auto,
    /// Always base64, for byte-exact handling.
    Base64,
}

/// A message as jetway shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "stream": "ORDERS",
    "subject": "orders.new",
    "seq": 42,
    "time": "2026-11-26T09:00:00.123456789Z",
    "headers": {"Content-Type": "application/json", "Nats-Msg-Id": "order-42"},
    "data": {"id": 42, "total": 9.5},
    "encoding": "json"
}))]
pub struct Message {
    /// Stream that stores the message.
    pub stream: String,
    /// Subject it was published to.
    pub subject: String,
    /// Stream sequence: resume from `seq + 1`.
    pub seq: u64,
    /// When the stream stored it (RFC 3339, nanoseconds).
    pub time: String,
    /// Message headers; several values of one header are joined with ", ".
    pub headers: BTreeMap<String, String>,
    /// The payload, per `encoding`: any JSON value (`json`), a string (`utf8`, `base64`).
    pub data: serde_json::Value,
    pub encoding: Encoding,
    /// Consumer deliveries: how many times this message was delivered (1 on first delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
    /// Consumer deliveries: the consumer's sequence of this delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_seq: Option<u64>,
    /// Consumer deliveries: messages still pending for the consumer after this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// Consumer deliveries: pass to `POST /v1/acks` (any jetway replica) to ack, nak, term or
    /// extend this delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_id: Option<String>,
    /// Bytes JetStream counted for this delivery (subject, headers, payload); not serialized.
    #[serde(skip)]
    pub size: usize,
    /// The payload as it is, for WebSocket binary frames (`encoding=binary`), where `data`
    /// is not used; not serialized.
    #[serde(skip)]
    pub raw: Option<bytes::Bytes>,
}

impl Message {
    /// Builds the representation of a stored message.
    pub fn new(
        stream: &str,
        subject: &str,
        seq: u64,
        time: time::OffsetDateTime,
        headers: Option<&HeaderMap>,
        payload: &[u8],
        choice: EncodingChoice,
    ) -> Self {
        let headers = headers.map(header_map).unwrap_or_default();
        let content_type = headers.get("Content-Type").map(String::as_str);
        let (data, encoding) = encode(payload, content_type, choice);
        Self {
            stream: stream.to_owned(),
            subject: subject.to_owned(),
            seq,
            time: crate::timestamp::format_time(time),
            headers,
            data,
            encoding,
            delivered: None,
            consumer_seq: None,
            pending: None,
            ack_id: None,
            size: 0,
            raw: None,
        }
    }
}

/// NATS headers as a JSON object; several values of one header are joined with ", ".
pub fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, values)| {
            let joined = values
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            (name.to_string(), joined)
        })
        .collect()
}

/// Is this content type JSON (`application/json`, `application/*+json`)?
pub fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Picks the most readable lossless encoding of a payload.
pub fn encode(
    payload: &[u8],
    content_type: Option<&str>,
    choice: EncodingChoice,
) -> (serde_json::Value, Encoding) {
    if choice == EncodingChoice::Base64 {
        return (BASE64.encode(payload).into(), Encoding::Base64);
    }
    let json_allowed = content_type.is_none_or(is_json_content_type);
    if json_allowed
        && !payload.is_empty()
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload)
    {
        return (value, Encoding::Json);
    }
    match std::str::from_utf8(payload) {
        Ok(text) => (text.into(), Encoding::Utf8),
        Err(_) => (BASE64.encode(payload).into(), Encoding::Base64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payload_without_content_type_is_json() {
        let (data, encoding) = encode(br#"{"a":1}"#, None, EncodingChoice::Auto);
        assert_eq!(encoding, Encoding::Json);
        assert_eq!(data["a"], 1);
    }

    #[test]
    fn json_looking_text_with_text_content_type_stays_text() {
        let (data, encoding) = encode(br#"{"a":1}"#, Some("text/plain"), EncodingChoice::Auto);
        assert_eq!(encoding, Encoding::Utf8);
        assert_eq!(data, r#"{"a":1}"#);
    }

    #[test]
    fn binary_is_base64_and_base64_can_be_forced() {
        let (data, encoding) = encode(&[0xff, 0x00], None, EncodingChoice::Auto);
        assert_eq!(encoding, Encoding::Base64);
        assert_eq!(data, "/wA=");
        let (_, encoding) = encode(b"hi", None, EncodingChoice::Base64);
        assert_eq!(encoding, Encoding::Base64);
    }

    #[test]
    fn empty_payload_is_empty_text() {
        assert_eq!(
            encode(b"", None, EncodingChoice::Auto),
            ("".into(), Encoding::Utf8)
        );
    }

    #[test]
    fn vendor_json_content_types() {
        assert!(is_json_content_type(
            "application/cloudevents+json; charset=utf-8"
        ));
        assert!(!is_json_content_type("text/json-ish"));
    }
}
