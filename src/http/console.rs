//! The operator console: the files of `web/`, compiled into the binary. `/` serves the page;
//! `/console/{file}` its stylesheet and ES modules. Nothing is fetched from anywhere else, and
//! the page's Content-Security-Policy allows no inline script or style.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The route of the console's assets (public, like `/`).
pub const ASSETS_ROUTE: &str = "/console/{file}";

struct Asset {
    name: &'static str,
    body: &'static str,
    content_type: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

const PAGE: Asset = Asset {
    name: "index.html",
    body: include_str!("../../web/index.html"),
    content_type: "text/html; charset=utf-8",
};

/// Everything `/console/{file}` serves.
const ASSETS: [Asset; 7] = [
    Asset {
        name: "console.css",
        body: include_str!("../../web/console.css"),
        content_type: "text/css; charset=utf-8",
    },
    Asset {
        name: "app.js",
        body: include_str!("../../web/app.js"),
        content_type: JS,
    },
    Asset {
        name: "api.js",
        body: include_str!("../../web/api.js"),
        content_type: JS,
    },
    Asset {
        name: "dom.js",
        body: include_str!("../../web/dom.js"),
        content_type: JS,
    },
    Asset {
        name: "tail.js",
        body: include_str!("../../web/tail.js"),
        content_type: JS,
    },
    Asset {
        name: "payload.js",
        body: include_str!("../../web/payload.js"),
        content_type: JS,
    },
    Asset {
        name: "inspect.js",
        body: include_str!("../../web/inspect.js"),
        content_type: JS,
    },
];

/// Strong validators of the page (first) and of each asset, in the order of [`ASSETS`]:
/// computed once, so a browser revalidates with `If-None-Match` and gets a `304` until the
/// binary changes.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    std::iter::once(&PAGE)
        .chain(ASSETS.iter())
        .map(|asset| {
            let digest = Sha256::digest(asset.body.as_bytes());
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"\""))
        })
        .collect()
});

/// The page's policy: scripts and styles only from this origin (no inline code), API calls
/// and WebSockets only to this origin, no framing, no form posts, no plugins.
const CSP_HEAD: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                        img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                        frame-ancestors 'none'; require-trusted-types-for 'script'; \
                        trusted-types 'none'; connect-src 'self'";

/// `connect-src 'self'` covers same-origin WebSockets in current browsers; older ones need the
/// ws:/wss: origin spelled out, so it is added for the Host the page was loaded from (when it
/// is a plain host[:port]).
fn content_security_policy(headers: &HeaderMap) -> HeaderValue {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let policy = match host {
        Some(host) => format!("{CSP_HEAD} ws://{host} wss://{host}"),
        None => CSP_HEAD.to_owned(),
    };
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(CSP_HEAD))
}

fn respond(asset: &Asset, etag: &HeaderValue, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim().trim_start_matches("W/") == etag)
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidate every time: the files are small and a new binary must be picked up at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::ETAG, etag.clone());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Serves the console page with its security headers.
pub async fn console(request: HeaderMap) -> Response {
    let mut response = respond(&PAGE, &ETAGS[0], &request);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        content_security_policy(&request),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Serves one of the console's stylesheet and modules; anything else is a `404` problem.
pub async fn asset(Path(file): Path<String>, request: HeaderMap) -> Response {
    match ASSETS.iter().position(|asset| asset.name == file) {
        Some(index) => {
            let mut response = respond(&ASSETS[index], &ETAGS[index + 1], &request);
            response.headers_mut().insert(
                HeaderName::from_static("cross-origin-resource-policy"),
                HeaderValue::from_static("same-origin"),
            );
            response
        }
        None => ApiError::RouteNotFound(format!("/console/{file}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_for(host: &str) -> String {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(host) {
            headers.insert(header::HOST, value);
        }
        content_security_policy(&headers)
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn websocket_sources_name_the_host_the_page_was_loaded_from() {
        assert!(
            policy_for("127.0.0.1:8080")
                .ends_with("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080")
        );
        assert!(policy_for("[::1]:8080").ends_with("ws://[::1]:8080 wss://[::1]:8080"));
    }

    #[test]
    fn a_host_that_could_change_the_policy_is_left_out() {
        for host in ["evil.example; script-src *", "a b", "x'y", ""] {
            assert!(
                policy_for(host).ends_with("connect-src 'self'"),
                "{host}: {}",
                policy_for(host)
            );
        }
    }

    #[test]
    fn every_file_has_its_own_validator() {
        let mut tags: Vec<&HeaderValue> = ETAGS.iter().collect();
        assert_eq!(tags.len(), ASSETS.len() + 1);
        tags.sort_by_key(|t| t.as_bytes());
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len() + 1, "two files share an ETag");
        assert!(tags.iter().all(|t| t.len() > 2));
    }
}
