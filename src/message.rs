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

impl Message {
    /// The message as a JSON object, byte for byte what `serde_json` writes for it, rendered
    /// into one buffer sized up front. Every streamed message goes through here (once per feed
    /// when shared), and its payload, as text, is most of its bytes: the text is escaped eight
    /// bytes at a time where serde_json looks at each byte.
    pub fn to_json(&self) -> String {
        let data_hint = match &self.data {
            serde_json::Value::String(text) => text.len() + text.len() / 8,
            _ => 64,
        };
        let headers_hint: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum();
        let mut out = String::with_capacity(
            160 + self.stream.len()
                + self.subject.len()
                + self.time.len()
                + headers_hint
                + data_hint
                + self.ack_id.as_ref().map_or(0, String::len),
        );
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        out.push_str(r#"{"stream":"#);
        write_json_str(out, &self.stream);
        out.push_str(r#","subject":"#);
        write_json_str(out, &self.subject);
        out.push_str(r#","seq":"#);
        write_u64(out, self.seq);
        out.push_str(r#","time":"#);
        write_json_str(out, &self.time);
        out.push_str(r#","headers":{"#);
        for (i, (name, value)) in self.headers.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_str(out, name);
            out.push(':');
            write_json_str(out, value);
        }
        out.push_str(r#"},"data":"#);
        match &self.data {
            serde_json::Value::String(text) => write_json_str(out, text),
            other => {
                out.push_str(&serde_json::to_string(other).unwrap_or_else(|_| "null".to_owned()))
            }
        }
        out.push_str(match self.encoding {
            Encoding::Json => r#","encoding":"json""#,
            Encoding::Utf8 => r#","encoding":"utf8""#,
            Encoding::Base64 => r#","encoding":"base64""#,
        });
        for (name, value) in [
            (r#","delivered":"#, self.delivered),
            (r#","consumer_seq":"#, self.consumer_seq),
            (r#","pending":"#, self.pending),
        ] {
            if let Some(value) = value {
                out.push_str(name);
                write_u64(out, value);
            }
        }
        if let Some(ack_id) = &self.ack_id {
            out.push_str(r#","ack_id":"#);
            write_json_str(out, ack_id);
        }
        out.push('}');
    }
}

/// A number as serde_json writes it.
fn write_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().copied().map(char::from));
}

/// A JSON string as serde_json writes it: `"` and `\` escaped with a backslash, control
/// characters as `\b`, `\t`, `\n`, `\f`, `\r` or `\u00xx`, everything else as it is.
///
/// The text is looked at in blocks: a block without anything to escape (the common case) is
/// found with a check the compiler vectorizes and copied whole.
pub fn write_json_str(out: &mut String, text: &str) {
    /// Bytes looked at together.
    const BLOCK: usize = 64;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    fn special(byte: u8) -> bool {
        (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    }
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push('"');
    let mut run = 0;
    for (block_index, block) in bytes.chunks(BLOCK).enumerate() {
        // No short cut inside the block: that is what lets it be vectorized.
        if !block
            .iter()
            .fold(false, |found, &byte| found | special(byte))
        {
            continue;
        }
        let base = block_index * BLOCK;
        for (offset, &byte) in block.iter().enumerate() {
            let escape = match byte {
                b'"' => r#"\""#,
                b'\\' => r"\\",
                0x08 => r"\b",
                0x09 => r"\t",
                0x0a => r"\n",
                0x0c => r"\f",
                0x0d => r"\r",
                0x00..=0x1f => "",
                _ => continue,
            };
            let at = base + offset;
            // An ASCII byte: both ends of the run are character boundaries.
            out.push_str(&text[run..at]);
            if escape.is_empty() {
                out.push_str(r"\u00");
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            } else {
                out.push_str(escape);
            }
            run = at + 1;
        }
    }
    out.push_str(&text[run..]);
    out.push('"');
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

    fn message(data: serde_json::Value, encoding: Encoding) -> Message {
        let mut headers = BTreeMap::new();
        headers.insert("Content-Type".to_owned(), "text/plain; \"q\"".to_owned());
        headers.insert("Nats-Msg-Id".to_owned(), "a\\b\u{1}".to_owned());
        Message {
            stream: "ORDERS".to_owned(),
            subject: "orders.\"new\"".to_owned(),
            seq: 18_446_744_073_709_551_615,
            time: "2026-11-26T09:00:00.123456789Z".to_owned(),
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

    #[test]
    fn rendered_json_is_what_serde_writes() {
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        let texts = [
            String::new(),
            "plain text that runs past eight bytes".to_owned(),
            every_ascii.clone(),
            every_ascii.repeat(3)[5..].to_owned(),
            "caf\u{e9} \u{1f600} \"quoted\" back\\slash\u{7f}\u{1f}end".to_owned(),
            "\"\"\"\"\"\"\"\"\"".to_owned(),
        ];
        let mut cases: Vec<Message> = texts
            .iter()
            .map(|text| message(text.as_str().into(), Encoding::Utf8))
            .collect();
        cases.push(message(
            serde_json::json!({"a": [1, -2.5, null, true, "x\ny"], "b": {}}),
            Encoding::Json,
        ));
        let mut acked = message("/wA=".into(), Encoding::Base64);
        acked.headers.clear();
        acked.seq = 0;
        acked.delivered = Some(2);
        acked.consumer_seq = Some(10);
        acked.pending = Some(0);
        acked.ack_id = Some("aWQ.c2ln".to_owned());
        cases.push(acked);
        let mut partial = message(serde_json::Value::Null, Encoding::Json);
        partial.pending = Some(7);
        cases.push(partial);
        for case in cases {
            assert_eq!(case.to_json(), serde_json::to_string(&case).unwrap());
        }
    }
}
