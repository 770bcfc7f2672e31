//! Cross-site request forgery: a page of another origin must not change state through a
//! visitor's browser, whether authentication is on or off.
//!
//! A browser lets any page send a "simple" cross-origin request without asking first: a `POST`
//! whose content type is `application/x-www-form-urlencoded`, `multipart/form-data` or
//! `text/plain` (an HTML form), or one without a body. CORS only hides the answer; the request
//! itself is served. With `--no-auth` (or a token in `access_token`) such a request could purge
//! a stream. Other methods (`PUT`, `PATCH`, `DELETE`) and other content types make the browser
//! ask first (a preflight), which jetway answers only for `--cors-origin`.
//!
//! So on every `/v1` request that changes state (`POST`, `PUT`, `PATCH`, `DELETE`):
//!
//! 1. an `Origin` header must name the gateway's own origin or one in `--cors-origin`; browsers
//!    send it on every such request;
//! 2. without `Origin`, a `Sec-Fetch-Site` other than `same-origin` or `none` (a user typing
//!    the address) is refused: a browser that sends one and no `Origin` is not telling where
//!    the request comes from;
//! 3. routes that take JSON refuse the form content types even with an empty body (see
//!    [`super::extract::JsonOrEmpty`]), for browsers old enough to send neither header.
//!
//! Requests without `Origin` or `Sec-Fetch-Site` (curl, SDKs, servers) pass rule 1 and 2: they
//! are not browsers, and they still need a token when authentication is on.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};

use crate::error::ApiError;

/// Fetch metadata: where the browser says the request comes from.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// Middleware: refuses (403 `cross_origin`) a state-changing browser request from another origin.
pub fn refuse_cross_origin(request: &Request, allowed: &[String]) -> Result<(), ApiError> {
    if changes_state(request.method()) {
        check(request.method(), request.headers(), allowed)?;
    }
    Ok(())
}

fn changes_state(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Rules 1 and 2 of the module documentation.
pub fn check(method: &Method, headers: &HeaderMap, allowed: &[String]) -> Result<(), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not visible ASCII)");
        if crate::auth::origin_allowed(headers, origin, allowed) {
            return Ok(());
        }
        return Err(ApiError::CrossOrigin(format!(
            "a {method} from a page of origin '{origin}' is refused: requests that change \
             state must come from this gateway's own origin or one listed in --cors-origin"
        )));
    }
    match headers
        .get(SEC_FETCH_SITE)
        .map(|v| v.to_str().unwrap_or(""))
    {
        None | Some("same-origin" | "none") => Ok(()),
        Some(site) => Err(ApiError::CrossOrigin(format!(
            "a {method} from a browser page of another site (Sec-Fetch-Site: {site}) without \
             an Origin header is refused: requests that change state must come from this \
             gateway's own origin or one listed in --cors-origin"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn allowed(pairs: &[(&'static str, &'static str)], list: &[&str]) -> bool {
        let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        check(&Method::POST, &headers(pairs), &list).is_ok()
    }

    #[test]
    fn requests_without_browser_headers_pass() {
        assert!(allowed(&[("host", "gw:8080")], &[]));
    }

    #[test]
    fn same_origin_and_listed_origins_pass_others_do_not() {
        let host = ("host", "gw:8080");
        assert!(allowed(&[host, ("origin", "http://gw:8080")], &[]));
        assert!(allowed(
            &[host, ("origin", "https://app.example")],
            &["https://app.example"]
        ));
        assert!(!allowed(
            &[host, ("origin", "https://evil.example")],
            &["https://app.example"]
        ));
        assert!(!allowed(&[host, ("origin", "null")], &["null"]));
        // A listed origin wins over what the browser says about the site.
        assert!(allowed(
            &[
                host,
                ("origin", "https://app.example"),
                ("sec-fetch-site", "cross-site")
            ],
            &["https://app.example"]
        ));
    }

    #[test]
    fn cross_site_fetch_metadata_without_origin_is_refused() {
        let host = ("host", "gw:8080");
        assert!(!allowed(&[host, ("sec-fetch-site", "cross-site")], &[]));
        assert!(!allowed(&[host, ("sec-fetch-site", "same-site")], &[]));
        assert!(allowed(&[host, ("sec-fetch-site", "same-origin")], &[]));
        assert!(allowed(&[host, ("sec-fetch-site", "none")], &[]));
    }

    #[test]
    fn reading_is_never_refused() {
        assert!(!changes_state(&Method::GET));
        assert!(!changes_state(&Method::HEAD));
        assert!(!changes_state(&Method::OPTIONS));
        assert!(changes_state(&Method::DELETE));
    }
}
