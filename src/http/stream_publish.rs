//! `POST /v1/publish` streaming both ways: an NDJSON body of batch items, read as it arrives,
//! each line published pipelined, and an NDJSON answer with one result per line, in order, sent
//! as each PubAck arrives (chosen with `Accept: application/x-ndjson`).
//!
//! Bounded: at most `--publish-stream-window` lines await their PubAck (the body is not read
//! further until one is answered), a line is at most `--max-batch-bytes` (a longer one gets a
//! `413` result and is skipped), and the body may not pause longer than `--body-idle-timeout`
//! (a blank line keeps a quiet stream open). There is no limit on the number of lines or on the
//! request's duration.

use std::convert::Infallible;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use super::publish::{ItemResult, item_result};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::json::Object;
use crate::ops;
use crate::ops::publish::BatchItem;
use crate::state::AppState;

/// Results gathered into one write when several are ready at once.
const RESULTS_PER_WRITE: usize = 256;

/// The streaming answer to `body`.
pub fn respond(state: AppState, who: Principal, body: axum::body::Body) -> Response {
    let window = state.config.publish_stream_window;
    let items = lines(body.into_data_stream(), state.limits.max_batch_bytes)
        .map(|line| line.and_then(|line| parse_item(&line)));
    let results = ops::publish::stream(state, who, items, window)
        .enumerate()
        .map(|(index, result)| encode(&item_result(index, result)))
        .ready_chunks(RESULTS_PER_WRITE)
        .map(|lines| Ok::<_, Infallible>(Bytes::from(lines.concat())));
    let mut response = Response::new(axum::body::Body::from_stream(results));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    // Proxies that buffer responses (nginx) would hold every result back until the end.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn parse_item(line: &[u8]) -> Result<BatchItem, ApiError> {
    serde_json::from_slice::<Object<BatchItem>>(line)
        .map(|Object(item)| item)
        .map_err(|err| ApiError::InvalidBody(format!("invalid item: {err}")))
}

fn encode(result: &ItemResult) -> Vec<u8> {
    let mut line = serde_json::to_vec(result).unwrap_or_else(|_| {
        // An ItemResult is plain data; this cannot fail, but the stream must stay NDJSON.
        br#"{"status":500}"#.to_vec()
    });
    line.push(b'\n');
    line
}

/// What the line reader keeps between chunks.
struct Reader<S> {
    body: S,
    buffer: BytesMut,
    /// How much of `buffer` is known to hold no newline.
    scanned: usize,
    /// Dropping the rest of a line that was too long (its error was already given).
    skipping: bool,
    done: bool,
    max: usize,
}

/// The non-blank lines of `body` (without the line break). A line longer than `max` yields
/// one `413` error in its place; a body that fails (a pause past the idle timeout, a client
/// that went away) yields its error as a last item.
fn lines<S>(body: S, max: usize) -> impl Stream<Item = Result<Bytes, ApiError>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Send + Unpin + 'static,
{
    let reader = Reader {
        body,
        buffer: BytesMut::new(),
        scanned: 0,
        skipping: false,
        done: false,
        max,
    };
    futures::stream::unfold(reader, |mut reader| async move {
        loop {
            if let Some(at) = reader.buffer[reader.scanned..]
                .iter()
                .position(|b| *b == b'\n')
            {
                let end = reader.scanned + at;
                let line = reader.buffer.split_to(end + 1).freeze();
                reader.scanned = 0;
                if std::mem::take(&mut reader.skipping) {
                    continue;
                }
                if end > reader.max {
                    return Some((Err(too_long(reader.max)), reader));
                }
                let line = line.slice(..trim_end(&line[..end]));
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some((Ok(line), reader));
            }
            reader.scanned = reader.buffer.len();
            if reader.skipping {
                reader.buffer.clear();
                reader.scanned = 0;
            } else if reader.buffer.len() > reader.max {
                reader.buffer.clear();
                reader.scanned = 0;
                reader.skipping = true;
                return Some((Err(too_long(reader.max)), reader));
            }
            if reader.done {
                return None;
            }
            match reader.body.next().await {
                Some(Ok(chunk)) => reader.buffer.extend_from_slice(&chunk),
                Some(Err(err)) => {
                    reader.done = true;
                    reader.buffer.clear();
                    reader.scanned = 0;
                    return Some((Err(body_failed(&err)), reader));
                }
                None => {
                    reader.done = true;
                    let rest = reader.buffer.split().freeze();
                    reader.scanned = 0;
                    if reader.skipping || rest.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    if rest.len() > reader.max {
                        return Some((Err(too_long(reader.max)), reader));
                    }
                    {
                        let rest = rest.slice(..trim_end(&rest));
                        return Some((Ok(rest), reader));
                    }
                }
            }
        }
    })
}

/// The length of `line` without a trailing `\r`.
fn trim_end(line: &[u8]) -> usize {
    if line.last() == Some(&b'\r') {
        line.len() - 1
    } else {
        line.len()
    }
}

fn too_long(max: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the line is longer than {max} bytes (--max-batch-bytes); it was skipped and the stream \
         goes on with the next line"
    ))
}

fn body_failed(err: &axum::Error) -> ApiError {
    if let Some(timeout) = crate::server::BodyTimeout::find(err) {
        return ApiError::RequestTimeout(format!(
            "{timeout}; every line before this one was answered above, nothing after it was \
             read. Send at least a newline every --body-idle-timeout to keep a quiet stream open"
        ));
    }
    ApiError::InvalidBody(format!(
        "cannot read the request body ({err}); every line before this one was answered above"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn split(chunks: &[&[u8]], max: usize) -> Vec<Result<String, u16>> {
        let chunks: Vec<Result<Bytes, axum::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        lines(futures::stream::iter(chunks), max)
            .map(|line| {
                line.map(|l| String::from_utf8_lossy(&l).into_owned())
                    .map_err(|e| e.status().as_u16())
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn lines_are_split_across_chunks_without_blank_ones_or_line_breaks() {
        let got = split(&[b"a\r\n\n  \nbc", b"d\nlast"], 100).await;
        assert_eq!(
            got,
            vec![Ok("a".into()), Ok("bcd".into()), Ok("last".into())]
        );
    }

    #[tokio::test]
    async fn a_line_too_long_is_one_error_and_the_next_line_is_read() {
        // Too long within one chunk, and too long before its newline arrives.
        let got = split(&[b"0123456789\nok\n0123", b"456789", b"01\nfine"], 5).await;
        assert_eq!(
            got,
            vec![Err(413), Ok("ok".into()), Err(413), Ok("fine".into())]
        );
    }
}
