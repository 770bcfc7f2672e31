//! Reading stored messages without a consumer, through the stream's leader (`STREAM.MSG.GET`),
//! so that a read right after a write sees it (a direct get may be served by a lagging replica).

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::RawMessage;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Nats, Op};
use crate::error::ApiError;

/// Which message to get.
#[derive(Debug, Clone, Serialize, Default)]
struct GetRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(rename = "last_by_subj", skip_serializing_if = "Option::is_none")]
    last_by_subject: Option<String>,
    #[serde(rename = "next_by_subj", skip_serializing_if = "Option::is_none")]
    next_by_subject: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    start_time: Option<OffsetDateTime>,
}

/// JetStream's one error code for a refused message delete (`JSStreamMsgDeleteFailedF`).
const DELETE_FAILED: u64 = 10057;

fn not_there(stream: &str, seq: u64) -> ApiError {
    ApiError::MessageNotFound(format!(
        "stream '{stream}' has no message at sequence {seq} (never stored, deleted, expired or purged)"
    ))
}

#[derive(Deserialize)]
struct GetAnswer {
    message: RawMessage,
}

/// Where a page of messages starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    Sequence(u64),
    Time(OffsetDateTime),
}

/// A page of stored messages and where the next page starts.
pub struct Page {
    pub messages: Vec<StreamMessage>,
    /// `None` when the page reached the end of the stream.
    pub next_seq: Option<u64>,
}

impl Nats {
    async fn get(
        &self,
        stream: &str,
        request: &GetRequest,
    ) -> Result<Option<StreamMessage>, ApiError> {
        let answer: Result<GetAnswer, ApiError> = self
            .api(
                &format!("STREAM.MSG.GET.{stream}"),
                request,
                Op::Stream(stream),
            )
            .await;
        match answer {
            Ok(answer) => decode(answer.message).map(Some),
            Err(ApiError::MessageNotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The message stored at `seq`.
    pub async fn get_message(&self, stream: &str, seq: u64) -> Result<StreamMessage, ApiError> {
        if seq == 0 {
            return Err(ApiError::InvalidParameter(
                "sequences start at 1".to_owned(),
            ));
        }
        let request = GetRequest {
            seq: Some(seq),
            ..Default::default()
        };
        self.get(stream, &request).await?.ok_or_else(|| {
            ApiError::MessageNotFound(format!(
                "stream '{stream}' has no message at sequence {seq} (never stored, deleted, expired or purged)"
            ))
        })
    }

    /// Removes the message at `seq` (`STREAM.MSG.DELETE`). With `erase`, JetStream overwrites
    /// the stored bytes with random data before it frees them (slower); without, the message
    /// is only marked deleted and its bytes go when the block is compacted.
    ///
    /// JetStream answers every refusal of a delete with one code (10057): a sequence it does
    /// not hold, a stream with `deny_delete`, a store failure. The answer is told apart by
    /// asking the stream leader whether the message is there.
    pub async fn delete_message(
        &self,
        stream: &str,
        seq: u64,
        erase: bool,
    ) -> Result<(), ApiError> {
        #[derive(Serialize)]
        struct DeleteRequest {
            seq: u64,
            no_erase: bool,
        }
        #[derive(Deserialize)]
        struct DeleteAnswer {
            success: bool,
        }
        let request = DeleteRequest {
            seq,
            no_erase: !erase,
        };
        let answer: Result<DeleteAnswer, ApiError> = self
            .api(
                &format!("STREAM.MSG.DELETE.{stream}"),
                &request,
                Op::MessageDelete(stream),
            )
            .await;
        match answer {
            Ok(DeleteAnswer { success: true }) => Ok(()),
            Ok(DeleteAnswer { success: false }) => Err(ApiError::JetStream {
                detail: format!("JetStream did not delete sequence {seq} of stream '{stream}'"),
                jetstream_code: None,
            }),
            Err(ApiError::JetStream {
                detail,
                jetstream_code: Some(DELETE_FAILED),
            }) => match self.get_message(stream, seq).await {
                Err(ApiError::MessageNotFound(_)) => Err(not_there(stream, seq)),
                Err(err) => Err(err),
                Ok(_) => Err(ApiError::StreamConflict {
                    detail: format!(
                        "JetStream refused to delete sequence {seq} of stream '{stream}': \
                         {detail} (a stream created with deny_delete keeps every message)"
                    ),
                    jetstream_code: Some(DELETE_FAILED),
                }),
            },
            Err(ApiError::MessageNotFound(_)) => Err(not_there(stream, seq)),
            Err(err) => Err(err),
        }
    }

    /// The newest message on `subject` (wildcards allowed).
    pub async fn last_message(
        &self,
        stream: &str,
        subject: &str,
    ) -> Result<StreamMessage, ApiError> {
        let request = GetRequest {
            last_by_subject: Some(subject.to_owned()),
            ..Default::default()
        };
        self.get(stream, &request).await?.ok_or_else(|| {
            ApiError::MessageNotFound(format!(
                "stream '{stream}' holds no message on subject '{subject}'"
            ))
        })
    }

    /// The sequence of the first message on `filter` (wildcards allowed) at or after `start`, as
    /// the stream leader has it.
    pub async fn first_sequence(
        &self,
        stream: &str,
        start: Start,
        filter: &str,
    ) -> Result<Option<u64>, ApiError> {
        let request = match start {
            Start::Sequence(seq) => GetRequest {
                seq: Some(seq.max(1)),
                next_by_subject: Some(filter.to_owned()),
                ..Default::default()
            },
            Start::Time(time) => GetRequest {
                start_time: Some(time),
                next_by_subject: Some(filter.to_owned()),
                ..Default::default()
            },
        };
        Ok(self.get(stream, &request).await?.map(|m| m.sequence))
    }

    /// The sequence of the last message on `filter` (wildcards allowed), as the stream leader
    /// has it.
    pub async fn last_sequence(&self, stream: &str, filter: &str) -> Result<Option<u64>, ApiError> {
        let request = GetRequest {
            last_by_subject: Some(filter.to_owned()),
            ..Default::default()
        };
        Ok(self.get(stream, &request).await?.map(|m| m.sequence))
    }

    /// Up to `limit` messages from `start`, in stream order, optionally only on `subject`.
    pub async fn page(
        &self,
        stream: &str,
        start: Start,
        subject: Option<&str>,
        limit: usize,
    ) -> Result<Page, ApiError> {
        let filter = subject.unwrap_or(">").to_owned();
        let mut messages = Vec::with_capacity(limit.min(256));
        let mut request = match start {
            Start::Sequence(seq) => GetRequest {
                seq: Some(seq.max(1)),
                next_by_subject: Some(filter.clone()),
                ..Default::default()
            },
            Start::Time(time) => GetRequest {
                start_time: Some(time),
                next_by_subject: Some(filter.clone()),
                ..Default::default()
            },
        };
        while messages.len() < limit {
            let Some(message) = self.get(stream, &request).await? else {
                return Ok(Page {
                    messages,
                    next_seq: None,
                });
            };
            request = GetRequest {
                seq: Some(message.sequence + 1),
                next_by_subject: Some(filter.clone()),
                ..Default::default()
            };
            messages.push(message);
        }
        // The page is full; whether anything follows is known only by asking.
        let more = self.get(stream, &request).await?;
        Ok(Page {
            messages,
            next_seq: more.map(|m| m.sequence),
        })
    }
}

/// Decodes a stored message. Headers are parsed here, keeping every value of a repeated header
/// (async-nats' own conversion keeps only the last).
fn decode(raw: RawMessage) -> Result<StreamMessage, ApiError> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let payload = STANDARD
        .decode(raw.payload.as_bytes())
        .map_err(|err| ApiError::internal("cannot decode stored payload", err))?;
    let headers = match raw.headers {
        Some(encoded) => {
            let block = STANDARD
                .decode(encoded.as_bytes())
                .map_err(|err| ApiError::internal("cannot decode stored headers", err))?;
            parse_headers(&block)
        }
        None => async_nats::HeaderMap::new(),
    };
    Ok(StreamMessage {
        subject: raw.subject.into(),
        sequence: raw.sequence,
        headers,
        payload: payload.into(),
        time: raw.time,
    })
}

/// Parses a NATS header block (`NATS/1.0` line, then `Name: value` lines).
pub fn parse_headers(block: &[u8]) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    let text = String::from_utf8_lossy(block);
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            async_nats::HeaderName::try_from(name.trim()),
            value.trim().parse::<async_nats::HeaderValue>(),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_keep_every_value() {
        let headers =
            parse_headers(b"NATS/1.0\r\nTag: a\r\nTag: b\r\nContent-Type: text/plain\r\n\r\n");
        let tags: Vec<&str> = headers.get_all("Tag").map(|v| v.as_str()).collect();
        assert_eq!(tags, ["a", "b"]);
        assert_eq!(headers.get("Content-Type").unwrap().as_str(), "text/plain");
    }
}
