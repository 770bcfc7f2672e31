//! Validation of client-chosen names: subjects, stream and consumer names.
//!
//! Checked before any NATS call so that a bad name is a clear 400, never a confusing JetStream
//! error or, worse, a publish to a subject the client did not mean.

use crate::error::ApiError;

/// Longest subject jetway accepts, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;
/// Longest stream or consumer name jetway accepts, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// A concrete publish subject: dot-separated non-empty tokens, no wildcards, no whitespace or
/// control characters, and never a subject of NATS itself (see [`is_reserved`]).
pub fn publish_subject(subject: &str) -> Result<(), ApiError> {
    subject_inner(subject, false)?;
    refuse_reserved(subject)
}

/// Is `subject` (or filter) one of NATS's own: a first token starting with `$` (`$JS.` the
/// JetStream API and acks, `$SYS.`, `$KV.`, `$O.`, …) or `_INBOX` (request replies)? Publishing
/// there would reach JetStream's API or other clients' replies, so jetway never does it for a
/// client, and no wildcard grant covers it.
pub fn is_reserved(subject: &str) -> bool {
    let first = subject.split('.').next().unwrap_or_default();
    first.starts_with('$') || first == "_INBOX"
}

/// Refuses a reserved subject with a 400 saying why.
pub fn refuse_reserved(subject: &str) -> Result<(), ApiError> {
    if is_reserved(subject) {
        return Err(ApiError::InvalidSubject(format!(
            "invalid subject '{}': subjects starting with '$' ($JS., $SYS., $KV., $O., …) or \
             '_INBOX.' belong to NATS itself and cannot be used through jetway",
            printable(subject)
        )));
    }
    Ok(())
}

/// A subject filter: like a publish subject, but `*` may stand for a whole token and `>` for the
/// tail.
pub fn subject_filter(subject: &str) -> Result<(), ApiError> {
    subject_inner(subject, true)
}

fn subject_inner(subject: &str, wildcards: bool) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::InvalidSubject(format!(
            "invalid subject '{}': {why}",
            printable(subject)
        )))
    };
    if subject.is_empty() {
        return bad("it is empty");
    }
    if subject.len() > MAX_SUBJECT_LEN {
        return bad(&format!("longer than {MAX_SUBJECT_LEN} bytes"));
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains whitespace or control characters");
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    let last = tokens.len() - 1;
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return bad("it has an empty token (leading, trailing or double '.')");
        }
        let has_wildcard = token.contains('*') || token.contains('>');
        if has_wildcard {
            if !wildcards {
                return bad("wildcards ('*', '>') are not allowed when publishing");
            }
            let ok = *token == "*" || (*token == ">" && i == last);
            if !ok {
                return bad("'*' must be a whole token and '>' the whole last token");
            }
        }
    }
    Ok(())
}

/// A stream or consumer name as JetStream accepts it: no whitespace, `.`, `*`, `>`, path
/// separators or control characters.
pub fn name(kind: &str, name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::InvalidName(format!(
            "invalid {kind} name '{}': {why}",
            printable(name)
        )))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!("longer than {MAX_NAME_LEN} bytes"));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return bad(
            "names may not contain whitespace, control characters, '.', '*', '>', '/' or '\\'",
        );
    }
    Ok(())
}

/// Names of the streams that hold key-value buckets start with this (`KV_<bucket>`).
pub const KV_STREAM_PREFIX: &str = "KV_";

/// jetway's own key-value bucket (push subscriptions: their definitions, secrets included, and
/// status). No token reads it or its stream through the API, and no bucket of that name can be
/// created through it.
pub const INTERNAL_BUCKET: &str = "jetway_push";

/// Longest key-value bucket name (its stream is `KV_<bucket>`).
pub const MAX_BUCKET_LEN: usize = 64;
/// Longest key (its subject is `$KV.<bucket>.<key>`, within a subject's limit).
pub const MAX_KEY_LEN: usize = 512;

/// A key-value bucket name: letters, digits, `-` and `_` (JetStream's rule for buckets).
pub fn bucket(name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::InvalidName(format!(
            "invalid bucket name '{}': {why}",
            printable(name)
        )))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_BUCKET_LEN {
        return bad(&format!("longer than {MAX_BUCKET_LEN} bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return bad("bucket names are letters, digits, '-' and '_'");
    }
    if name == INTERNAL_BUCKET {
        return bad("the name is reserved for jetway's own bucket");
    }
    Ok(())
}

/// A key: dot-separated tokens of letters, digits and `-` `_` `/` `=` (JetStream's rule for
/// keys); with `wildcards`, a token may be `*` (one token) and the last may be `>` (the rest).
pub fn key(key: &str, wildcards: bool) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::InvalidName(format!(
            "invalid key '{}': {why}",
            printable(key)
        )))
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad(&format!("longer than {MAX_KEY_LEN} bytes"));
    }
    let tokens: Vec<&str> = key.split('.').collect();
    let last = tokens.len() - 1;
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return bad("it has an empty token (leading, trailing or double '.')");
        }
        if *token == "*" || (*token == ">" && i == last) {
            if !wildcards {
                return bad("wildcards ('*', '>') are only for watching and listing keys");
            }
            continue;
        }
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_/=".contains(&b))
        {
            return bad("keys are '.'-separated tokens of letters, digits, '-', '_', '/' and '='");
        }
    }
    Ok(())
}

/// A header name or value safe to store in a NATS header: no control characters (CR/LF would
/// break the NATS protocol framing), and for names no ':' or whitespace.
pub fn header(name: &str, value: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':' || !c.is_ascii())
    {
        return Err(ApiError::InvalidHeader(format!(
            "invalid header name '{}': use ASCII letters, digits and '-'",
            printable(name)
        )));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ApiError::InvalidHeader(format!(
            "header '{name}' has control characters in its value"
        )));
    }
    Ok(())
}

/// Echo client input in an error without control characters and without unbounded length.
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(120)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if text.chars().count() > 120 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_subjects() {
        assert!(publish_subject("orders.new").is_ok());
        assert!(publish_subject("a").is_ok());
        for bad in [
            "", "a..b", ".a", "a.", "a b", "a.*", "a.>", "a\tb", "a\r\nb", "a*b",
        ] {
            assert!(publish_subject(bad).is_err(), "{bad:?} accepted");
        }
        assert!(publish_subject(&"a".repeat(MAX_SUBJECT_LEN + 1)).is_err());
    }

    #[test]
    fn filters_allow_whole_token_wildcards() {
        assert!(subject_filter("orders.*").is_ok());
        assert!(subject_filter("orders.>").is_ok());
        assert!(subject_filter(">").is_ok());
        assert!(subject_filter("orders.>.x").is_err());
        assert!(subject_filter("orders.a*").is_err());
    }

    #[test]
    fn names() {
        assert!(name("stream", "ORDERS").is_ok());
        assert!(name("stream", "orders-2_x").is_ok());
        for bad in ["", "a.b", "a b", "../etc", "a*", "a>", "a\nb"] {
            assert!(name("stream", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn headers() {
        assert!(header("Order-Type", "x").is_ok());
        assert!(header("Bad Name", "x").is_err());
        assert!(header("A", "x\r\nNats-Rollup: all").is_err());
    }
}
