//! Times in the API: RFC 3339 text, within what JetStream can represent.

use time::OffsetDateTime;

use crate::error::ApiError;

/// Formats a JetStream timestamp as RFC 3339 with nanoseconds.
pub fn format_time(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| time.unix_timestamp_nanos().to_string())
}

/// The earliest time a client may name: JetStream counts time in nanoseconds since 1970.
const EARLIEST_TIME: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;
/// The latest time a client may name: the last nanosecond a signed 64-bit count from 1970
/// reaches. JetStream wraps later times around (a start time in 2300 started at sequence 1).
const LATEST_TIME: OffsetDateTime = time::macros::datetime!(2262-04-11 23:47:16.854_775_807 UTC);

/// Parses an RFC 3339 time from a client, within what JetStream can represent (1970 to 2262).
pub fn parse_time(text: &str) -> Result<OffsetDateTime, ApiError> {
    let time = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|err| {
            ApiError::InvalidParameter(format!(
                "'{text}' is not an RFC 3339 time such as 2026-11-26T09:00:00Z: {err}"
            ))
        })?;
    if !(EARLIEST_TIME..=LATEST_TIME).contains(&time) {
        return Err(ApiError::InvalidParameter(format!(
            "'{text}' is outside the times JetStream can represent: give one from \
             1970-01-01T00:00:00Z to 2262-04-11T23:47:16Z"
        )));
    }
    Ok(time)
}
