//! `jetway healthcheck`: one GET of a running jetway's health route, so that a container image
//! without curl or a shell can have a health check (`HEALTHCHECK CMD ["jetway", "healthcheck"]`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::HealthcheckArgs;

/// `/healthz` on the port jetway listens on: a wildcard listen address (`0.0.0.0`, `[::]`) is
/// asked on loopback, any other address as it is; over HTTPS when jetway serves TLS.
pub fn default_url(listen: SocketAddr, tls: bool) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}/healthz", SocketAddr::new(ip, listen.port()))
}

/// Asks `args.url` (default [`default_url`] of `listen`) within `args.timeout`. `Ok` with the
/// URL and status on a 2xx; `Err` saying what went wrong otherwise (no answer, or the status and
/// the start of the body, which for `/readyz` says why it is not ready).
///
/// With `tls` (jetway serves HTTPS) the default URL is asked over HTTPS without verifying the
/// certificate: it names the service's host names, not the loopback address, and the check is
/// only whether this process answers. A URL given with `--url` is always verified.
pub async fn run(args: &HealthcheckArgs, listen: SocketAddr, tls: bool) -> Result<String, String> {
    match &args.url {
        Some(url) => check(url, args.timeout, false).await,
        None => check(&default_url(listen, tls), args.timeout, tls).await,
    }
}

/// One GET of `url`, without any proxy from the environment; `any_certificate` skips verifying
/// an HTTPS server's certificate.
pub async fn check(url: &str, timeout: Duration, any_certificate: bool) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .danger_accept_invalid_certs(any_certificate)
        .build()
        .map_err(|err| format!("cannot build an HTTP client: {err}"))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|err| format!("{url}: no answer: {}", causes(&err)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(format!("{url}: {status}"));
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    Err(format!("{url}: {status} {body}").trim_end().to_owned())
}

/// An error and its sources, `: `-separated (reqwest's own message alone does not say
/// "connection refused").
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_asks_loopback_for_a_wildcard_listener() {
        let url = |listen: &str| default_url(listen.parse().unwrap(), false);
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/healthz");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/healthz");
        assert_eq!(url("10.1.2.3:8081"), "http://10.1.2.3:8081/healthz");
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080/healthz");
    }
}
