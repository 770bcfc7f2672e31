//! The outbound HTTP client of push deliveries: TLS verified, no redirects, and every connection
//! checked against `--push-allow` when the host name is resolved (not only at creation: a name
//! can be pointed elsewhere later).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::destinations::Destinations;

/// How long a connection may take to open (each delivery's own `timeout` bounds the whole
/// request as well).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept per host, and for how long.
const IDLE_PER_HOST: usize = 64;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Resolves host names to the addresses `--push-allow` admits, and to nothing else.
struct Guarded(Arc<Destinations>);

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let destinations = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let allowed: Vec<SocketAddr> = destinations
                .resolve(&host, 0)
                .await
                .map_err(|why| -> Box<dyn std::error::Error + Send + Sync> { why.into() })?;
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The CA certificates of `--push-ca`, read at start: a file that cannot be read or holds no
/// certificate stops the start.
pub fn trust_roots(path: Option<&Path>) -> Result<Vec<reqwest::Certificate>, String> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(path)
        .map_err(|err| format!("--push-ca {}: cannot read it: {err}", path.display()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|err| format!("--push-ca {}: not PEM certificates: {err}", path.display()))?;
    if roots.is_empty() {
        return Err(format!(
            "--push-ca {}: no certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)",
            path.display()
        ));
    }
    Ok(roots)
}

/// The client every push delivery of this replica shares: the built-in web roots, and `roots`
/// besides.
pub fn build(
    destinations: Arc<Destinations>,
    roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, reqwest::Error> {
    roots
        .iter()
        .fold(reqwest::Client::builder(), |builder, root| {
            builder.add_root_certificate(root.clone())
        })
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(Guarded(destinations)))
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_max_idle_per_host(IDLE_PER_HOST)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .user_agent(concat!("jetway/", env!("CARGO_PKG_VERSION"), " (push)"))
        .no_proxy()
        .build()
}
