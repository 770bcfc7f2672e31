//! Ack ids: opaque, tamper-proof handles on a delivered message.
//!
//! An ack id carries the JetStream ack reply subject of one delivery and an HMAC-SHA256 over it,
//! keyed by a secret shared by every jetway replica. Any replica can verify it and ack the
//! message; nobody can forge one (a client must never choose a subject that jetway publishes
//! to: `$JS.ACK.>` subjects are capabilities). Several keys may be configured: the first signs,
//! all verify, so the secret can be rotated without invalidating ids in flight.
//!
//! Format: `<base64url(reply subject)>.<base64url(first 16 bytes of the HMAC)>`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::ApiError;

/// Bytes of the HMAC kept in an id (128 bits).
const MAC_LEN: usize = 16;
/// Longest ack id accepted, in bytes (a reply subject is well under 512 bytes).
pub const MAX_ACK_ID_LEN: usize = 1024;

/// The keys that sign and verify ack ids.
#[derive(Clone)]
pub struct AckKeys {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for AckKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AckKeys({} keys)", self.keys.len())
    }
}

impl AckKeys {
    /// Keys from the configuration; the first signs. `None` when none is configured.
    pub fn new(secrets: &[String]) -> Option<Self> {
        let keys: Vec<Vec<u8>> = secrets
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect();
        (!keys.is_empty()).then_some(Self { keys })
    }

    /// A random key, for a single replica without a configured secret.
    pub fn random() -> Self {
        let mut key = vec![0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // Without an OS random source, fall back to a NUID-derived key (still unguessable
            // from outside the process).
            key = nuid::next().to_string().into_bytes();
        }
        Self { keys: vec![key] }
    }

    fn mac(key: &[u8], subject: &str) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
            return Vec::new();
        };
        mac.update(subject.as_bytes());
        mac.finalize().into_bytes()[..MAC_LEN].to_vec()
    }

    /// Signs an ack reply subject.
    pub fn sign(&self, reply: &str) -> String {
        let key = self.keys.first().map(Vec::as_slice).unwrap_or_default();
        format!(
            "{}.{}",
            B64.encode(reply),
            B64.encode(Self::mac(key, reply))
        )
    }

    /// Verifies an ack id and decodes what it refers to.
    pub fn verify(&self, ack_id: &str) -> Result<AckTarget, ApiError> {
        let invalid = |why: &str| ApiError::InvalidAckId(format!("invalid ack id: {why}"));
        if ack_id.is_empty() || ack_id.len() > MAX_ACK_ID_LEN {
            return Err(invalid("empty or too long"));
        }
        let (subject, mac) = ack_id.split_once('.').ok_or_else(|| invalid("malformed"))?;
        let subject = B64.decode(subject).map_err(|_| invalid("malformed"))?;
        let mac = B64.decode(mac).map_err(|_| invalid("malformed"))?;
        let subject = String::from_utf8(subject).map_err(|_| invalid("malformed"))?;
        if mac.len() != MAC_LEN {
            return Err(invalid("malformed"));
        }
        // The hmac crate compares in constant time (`verify_truncated_left`: the id keeps the
        // first MAC_LEN bytes of the tag).
        let genuine = self.keys.iter().any(|key| {
            <Hmac<Sha256> as KeyInit>::new_from_slice(key).is_ok_and(|mut check| {
                check.update(subject.as_bytes());
                check.verify_truncated_left(&mac).is_ok()
            })
        });
        if !genuine {
            return Err(invalid(
                "signature does not match (altered, forged, or signed with an unknown key)",
            ));
        }
        AckTarget::parse(&subject).ok_or_else(|| invalid("not an ack subject"))
    }
}

/// What an ack id refers to, decoded from the JetStream ack reply subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckTarget {
    /// The reply subject to publish the ack to.
    pub subject: String,
    pub stream: String,
    pub consumer: String,
    /// Delivery count of this delivery.
    pub delivered: u64,
    pub stream_seq: u64,
    pub consumer_seq: u64,
    /// Delivery time, nanoseconds since the epoch.
    pub timestamp_ns: i64,
    /// Messages pending after this one when it was delivered.
    pub pending: u64,
}

impl AckTarget {
    /// Parses both ack subject formats:
    /// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` and
    /// `$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>[.<token>…]`.
    pub fn parse(subject: &str) -> Option<Self> {
        // Every delivered message is parsed here: the tokens are counted and the first eleven
        // kept in place, without collecting them.
        let mut tokens = [""; 11];
        let mut count = 0;
        let mut start = 0;
        for (at, byte) in subject.bytes().enumerate() {
            if byte == b'.' {
                if let Some(slot) = tokens.get_mut(count) {
                    *slot = &subject[start..at];
                }
                count += 1;
                start = at + 1;
            }
        }
        if let Some(slot) = tokens.get_mut(count) {
            *slot = &subject[start..];
        }
        count += 1;
        if count < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
            return None;
        }
        let offset = if count == 9 {
            2
        } else if count >= 11 {
            4
        } else {
            return None;
        };
        let number = |i: usize| tokens.get(offset + i).and_then(|t| t.parse::<u64>().ok());
        Some(Self {
            subject: subject.to_owned(),
            stream: (*tokens.get(offset)?).to_owned(),
            consumer: (*tokens.get(offset + 1)?).to_owned(),
            delivered: number(2)?,
            stream_seq: number(3)?,
            consumer_seq: number(4)?,
            timestamp_ns: tokens.get(offset + 5).and_then(|t| t.parse::<i64>().ok())?,
            pending: number(6)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: &str = "$JS.ACK.ORDERS.workers.2.41.17.1764147600000000000.5";
    const LONG: &str = "$JS.ACK._.ABCDEF.ORDERS.workers.2.41.17.1764147600000000000.5.xyz";

    fn key_set(secrets: &[&str]) -> AckKeys {
        AckKeys::new(&secrets.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn parses_both_subject_formats() {
        for subject in [SHORT, LONG] {
            let target = AckTarget::parse(subject).unwrap();
            assert_eq!(target.stream, "ORDERS");
            assert_eq!(target.consumer, "workers");
            assert_eq!(target.delivered, 2);
            assert_eq!(target.stream_seq, 41);
            assert_eq!(target.consumer_seq, 17);
            assert_eq!(target.pending, 5);
        }
        assert!(AckTarget::parse("$JS.ACK.a.b.c").is_none());
        assert!(AckTarget::parse("orders.new.1.2.3.4.5.6.7").is_none());
    }

    #[test]
    fn signed_ids_verify_and_altered_ones_do_not() {
        let keys = key_set(&["secret"]);
        let id = keys.sign(SHORT);
        assert_eq!(keys.verify(&id).unwrap().stream_seq, 41);

        let forged = format!(
            "{}.{}",
            B64.encode(SHORT.replace(".41.", ".42.")),
            id.split_once('.').unwrap().1
        );
        assert_eq!(keys.verify(&forged).unwrap_err().code(), "invalid_ack_id");
        let truncated = &id[..id.len() - 3];
        assert!(keys.verify(truncated).is_err());
        assert!(keys.verify("").is_err());
        assert!(keys.verify("no-dot").is_err());
        assert!(key_set(&["other"]).verify(&id).is_err());
    }

    #[test]
    fn rotation_accepts_old_key_and_signs_with_new() {
        let old = key_set(&["old"]);
        let rotated = key_set(&["new", "old"]);
        let id = old.sign(SHORT);
        assert!(rotated.verify(&id).is_ok());
        assert!(old.verify(&rotated.sign(SHORT)).is_err());
    }
}
