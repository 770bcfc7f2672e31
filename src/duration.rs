//! Durations as the API spells them: strings such as `500ms`, `30s`, `5m`, `72h`.
//!
//! Parsing accepts what `humantime` accepts (`1h 30m` too); formatting picks the largest unit
//! that divides the value exactly, so an answer echoes what a client most likely sent.

use std::time::Duration;

/// Parses an API duration string.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; use a value such as 500ms, 30s, 5m or 72h".to_owned());
    }
    humantime::parse_duration(text).map_err(|err| {
        format!("invalid duration '{text}': {err}; use a value such as 500ms, 30s, 5m or 72h")
    })
}

/// Formats a duration in the largest exact unit (`72h`, `90s`, `1500ms`).
pub fn format(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    const UNITS: [(u128, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    for (size, unit) in UNITS {
        if nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{nanos}ns")
}

/// Serde adapter for `Option<Duration>` fields written as API duration strings.
pub mod option {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&super::format(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| super::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Serde adapter for `Duration` fields (clap/TOML config and API bodies).
pub mod required {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter for `Option<Vec<Duration>>` fields: a list that may be left out.
pub mod option_list {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(
        value: &Option<Vec<Duration>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(list) => super::list::serialize(list, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Duration>>, D::Error> {
        let texts: Option<Vec<String>> = Option::deserialize(d)?;
        texts
            .map(|texts| {
                texts
                    .iter()
                    .map(|t| super::parse(t).map_err(serde::de::Error::custom))
                    .collect()
            })
            .transpose()
    }
}

/// Serde adapter for `Vec<Duration>` fields (lists of API duration strings).
pub mod list {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(value.iter().map(|d| super::format(*d)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let texts: Vec<String> = Vec::deserialize(d)?;
        texts
            .iter()
            .map(|t| super::parse(t).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_largest_exact_unit() {
        assert_eq!(format(Duration::from_secs(72 * 3600)), "72h");
        assert_eq!(format(Duration::from_secs(300)), "5m");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }

    #[test]
    fn parses_api_examples_and_round_trips() {
        for text in ["500ms", "30s", "5m", "72h", "90s"] {
            let parsed = parse(text).unwrap();
            assert_eq!(format(parsed), text);
        }
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn rejects_garbage_with_hint() {
        let err = parse("soon").unwrap_err();
        assert!(err.contains("30s"), "{err}");
        assert!(parse("").is_err());
        assert!(parse("-5s").is_err());
    }
}
