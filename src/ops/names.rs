//! Validated names and subjects. An operation takes these, never a bare `&str` from a client,
//! so a name that reaches JetStream has been checked exactly once, at the edge of the core.

use std::fmt;
use std::ops::Deref;

use crate::error::ApiError;
use crate::validate;

macro_rules! validated {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `text` and wraps it; the error says what is wrong with it.
            pub fn parse(text: impl Into<String>) -> Result<Self, ApiError> {
                let text = text.into();
                let check: fn(&str) -> Result<(), ApiError> = $check;
                check(&text)?;
                Ok(Self(text))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

validated!(
    /// A stream name JetStream accepts.
    StreamName,
    |text| validate::name("stream", text)
);

validated!(
    /// A durable consumer name JetStream accepts.
    ConsumerName,
    |text| validate::name("consumer", text)
);

validated!(
    /// A subject a message may be published to: no wildcards, never a system subject (`$…`,
    /// `_INBOX.…`).
    Subject,
    validate::publish_subject
);

validated!(
    /// A subject filter (wildcards allowed).
    SubjectFilter,
    validate::subject_filter
);

validated!(
    /// A key-value bucket name.
    BucketName,
    validate::bucket
);

validated!(
    /// A key of a key-value bucket (no wildcards).
    Key,
    |text| validate::key(text, false)
);

validated!(
    /// A pattern of keys: a key whose tokens may be `*`, and whose last may be `>`.
    KeyPattern,
    |text| validate::key(text, true)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_subjects_are_checked_once_at_parse() {
        assert_eq!(StreamName::parse("ORDERS").unwrap().as_str(), "ORDERS");
        assert_eq!(StreamName::parse("A.B").unwrap_err().code(), "invalid_name");
        assert_eq!(ConsumerName::parse("").unwrap_err().code(), "invalid_name");
        assert_eq!(&*Subject::parse("orders.new").unwrap(), "orders.new");
        assert_eq!(
            Subject::parse("orders.*").unwrap_err().code(),
            "invalid_subject"
        );
        assert_eq!(
            Subject::parse("$JS.API.STREAM.DELETE.X")
                .unwrap_err()
                .code(),
            "invalid_subject"
        );
        assert!(SubjectFilter::parse("orders.>").is_ok());
    }
}
