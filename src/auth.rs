//! Client authentication and authorization.
//!
//! Clients present a JWT: `Authorization: Bearer <token>` on HTTP, or for browsers (which cannot
//! set headers on `WebSocket` and `EventSource`) the `access_token` query parameter or a
//! `bearer.<token>` entry in `Sec-WebSocket-Protocol`. Keys come from configuration: HMAC
//! secrets, PEM public keys (RSA, EC, Ed25519), and a JWKS document (file or URL, refreshed).
//! A token's `alg` selects only keys of its family, so an HMAC token is never checked against a
//! public key (algorithm confusion); `none` is not an algorithm jetway knows.
//!
//! The permissions claim (`jetway` by default) grants subjects to publish to, streams to read,
//! and administration. Everything is denied unless granted. [`Principal`] carries the result
//! and answers every permission question with a 403 problem when the answer is no.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::ApiError;

/// Longest token accepted, in bytes.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Least time between two JWKS refreshes triggered by an unknown `kid`.
const MIN_KID_REFRESH: Duration = Duration::from_secs(10);

/// What a token grants (the permissions claim).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Subject patterns (NATS wildcards `*`, `>`) the holder may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Streams the holder may read (messages, consumers' fetch and acks, WebSocket, SSE);
    /// `*` for all.
    #[serde(default)]
    pub read: Vec<String>,
    /// Create, update, delete and purge streams and consumers.
    #[serde(default)]
    pub admin: bool,
    /// Key-value buckets the holder may read (get, history, list keys, watch); `*` for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv_read: Vec<String>,
    /// Key-value buckets the holder may write (put, delete, purge keys), which includes reading
    /// them; `*` for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv_write: Vec<String>,
    /// Tenant namespace: every subject the holder names is under `<prefix>.` (publishes to
    /// `orders.new` are stored at `<prefix>.orders.new`), reads see only that namespace, and
    /// subjects are shown without the prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's `sub` (or `anonymous` without authentication): the key of rate limits.
    pub id: Arc<str>,
    pub permissions: Arc<Permissions>,
    /// When the token expires (unix seconds), for long-lived connections.
    pub expires_at: Option<u64>,
    /// Authentication is off: everything is allowed.
    unrestricted: bool,
}

impl Principal {
    /// Whether the token has expired since the request was authenticated (long-lived
    /// requests check it as they go).
    pub fn expired(&self) -> bool {
        self.expires_at.is_some_and(|exp| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            now >= exp
        })
    }

    /// The caller when jetway runs with `--no-auth`.
    pub fn unrestricted() -> Self {
        static UNRESTRICTED: std::sync::LazyLock<Principal> =
            std::sync::LazyLock::new(|| Principal {
                id: Arc::from("anonymous"),
                permissions: Arc::new(Permissions::default()),
                expires_at: None,
                unrestricted: true,
            });
        UNRESTRICTED.clone()
    }

    /// May publish to `subject`?
    pub fn check_publish(&self, subject: &str) -> Result<(), ApiError> {
        if self.unrestricted
            || self
                .permissions
                .publish
                .iter()
                .any(|p| subject_matches(p, subject))
        {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the token does not grant publishing to '{subject}'"
            )))
        }
    }

    /// May read `stream`?
    pub fn check_read(&self, stream: &str) -> Result<(), ApiError> {
        if self.can_read(stream) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the token does not grant reading stream '{stream}'"
            )))
        }
    }

    /// Whether `stream` is readable (for filtering lists). The stream of a key-value bucket
    /// (`KV_<bucket>`) is readable as the bucket is: a `read` grant of every stream does not
    /// open buckets.
    pub fn can_read(&self, stream: &str) -> bool {
        if let Some(bucket) = stream.strip_prefix(crate::validate::KV_STREAM_PREFIX) {
            return self.can_read_bucket(bucket);
        }
        self.unrestricted
            || self.permissions.admin
            || self
                .permissions
                .read
                .iter()
                .any(|s| s == "*" || s == stream)
    }

    /// Whether the key-value `bucket` is readable (for filtering lists).
    pub fn can_read_bucket(&self, bucket: &str) -> bool {
        if bucket == crate::validate::INTERNAL_BUCKET {
            // Push secrets: nobody reads them back, administrators included.
            return false;
        }
        let granted = |list: &[String]| list.iter().any(|b| b == "*" || b == bucket);
        self.unrestricted
            || self.permissions.admin
            || granted(&self.permissions.kv_read)
            || granted(&self.permissions.kv_write)
    }

    /// May read the key-value `bucket`?
    pub fn check_bucket_read(&self, bucket: &str) -> Result<(), ApiError> {
        if self.can_read_bucket(bucket) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the token does not grant reading key-value bucket '{bucket}' (\"kv_read\")"
            )))
        }
    }

    /// May write keys of the key-value `bucket`?
    pub fn check_bucket_write(&self, bucket: &str) -> Result<(), ApiError> {
        if self.unrestricted
            || self.permissions.admin
            || self
                .permissions
                .kv_write
                .iter()
                .any(|b| b == "*" || b == bucket)
        {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the token does not grant writing key-value bucket '{bucket}' (\"kv_write\")"
            )))
        }
    }

    /// The real subject of a subject the caller names (its tenant prefix added).
    pub fn subject_in(&self, subject: &str) -> String {
        match &self.permissions.prefix {
            Some(prefix) => format!("{prefix}.{subject}"),
            None => subject.to_owned(),
        }
    }

    /// The filters of a read: the caller's filters in its namespace, or the whole namespace.
    pub fn filters_in(&self, filters: &[String]) -> Vec<String> {
        match &self.permissions.prefix {
            None => filters.to_vec(),
            Some(prefix) if filters.is_empty() => vec![format!("{prefix}.>")],
            Some(_) => filters.iter().map(|f| self.subject_in(f)).collect(),
        }
    }

    /// Whether a stored subject lies in the caller's namespace.
    pub fn sees(&self, subject: &str) -> bool {
        match &self.permissions.prefix {
            None => true,
            Some(prefix) => subject
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with('.')),
        }
    }

    /// A stored subject as the caller names it: the tenant prefix removed.
    pub fn shown<'a>(&self, subject: &'a str) -> &'a str {
        shown_under(self.tenant(), subject)
    }

    /// The tenant prefix of the caller's namespace, if it has one.
    pub fn tenant(&self) -> Option<&str> {
        self.permissions.prefix.as_deref()
    }

    /// May the caller consume through a durable consumer with these filters? A tenant only when
    /// every filter lies inside its namespace (no filter means the whole stream: refused).
    pub fn check_consumer(
        &self,
        stream: &str,
        consumer: &str,
        filters: &[String],
    ) -> Result<(), ApiError> {
        let Some(prefix) = &self.permissions.prefix else {
            return Ok(());
        };
        let inside = |filter: &str| {
            filter
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|rest| !rest.is_empty())
        };
        if !filters.is_empty() && filters.iter().all(|f| inside(f)) {
            return Ok(());
        }
        let delivers = if filters.is_empty() {
            "every subject of the stream".to_owned()
        } else {
            format!("'{}'", filters.join("', '"))
        };
        Err(ApiError::Forbidden(format!(
            "consumer '{consumer}' on stream '{stream}' delivers {delivers}, not only subjects in \
             this token's namespace '{prefix}.>'; use a consumer whose filter_subjects all start \
             with '{prefix}.'"
        )))
    }

    /// Shows a message as the caller names things.
    pub fn present(&self, message: &mut crate::message::Message) {
        if self.permissions.prefix.is_some() {
            message.subject = self.shown(&message.subject).to_owned();
        }
    }

    /// May administer streams and consumers?
    pub fn check_admin(&self) -> Result<(), ApiError> {
        if self.unrestricted || self.permissions.admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "the token does not grant administration (\"admin\": true)".to_owned(),
            ))
        }
    }
}

/// A stored subject as a holder of the tenant `prefix` names it: the prefix removed.
pub fn shown_under<'a>(prefix: Option<&str>, subject: &'a str) -> &'a str {
    match prefix {
        Some(prefix) => subject
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(subject),
        None => subject,
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("authentication required".to_owned()))
    }
}

/// Does a NATS subject pattern match a concrete subject? `*` matches one token, `>` one or more
/// trailing tokens.
///
/// A pattern that starts with a wildcard never matches a reserved subject (`$JS.…`, `$SYS.…`,
/// `_INBOX.…`): a grant of `>` or `*.>` is for the application's subjects, never NATS's own.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    if crate::validate::is_reserved(subject) && !crate::validate::is_reserved(pattern) {
        return false;
    }
    let mut pattern = pattern.split('.');
    let mut subject = subject.split('.');
    loop {
        match (pattern.next(), subject.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A verification key.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    key: DecodingKey,
}

/// Verifies tokens. Cheap to clone; the JWKS keys are refreshed in place.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    static_keys: Vec<Key>,
    jwks: RwLock<Vec<Key>>,
    jwks_source: Option<String>,
    last_kid_refresh: std::sync::Mutex<Option<Instant>>,
    algorithms: Vec<Algorithm>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: u64,
    claim: String,
    http: reqwest::Client,
}

/// Why the authentication configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthConfigError(pub String);

impl Authenticator {
    /// Builds the key set from the configuration (reading PEM files and the JWKS once).
    pub async fn from_config(config: &Config) -> Result<Self, AuthConfigError> {
        let err = |m: String| AuthConfigError(m);
        let mut static_keys = Vec::new();
        for secret in config
            .jwt_secret
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            static_keys.push(Key {
                kid: None,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        for path in &config.jwt_public_key {
            static_keys.push(Key {
                kid: None,
                key: read_pem(path).map_err(err)?,
            });
        }
        let algorithms = match &config.jwt_algorithms {
            Some(list) => list
                .iter()
                .map(|a| {
                    Algorithm::from_str(a.trim())
                        .map_err(|_| err(format!("--jwt-algorithms: unknown algorithm '{a}'")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![
                Algorithm::HS256,
                Algorithm::HS384,
                Algorithm::HS512,
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::EdDSA,
            ],
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| err(format!("cannot build the JWKS HTTP client: {e}")))?;
        let auth = Self {
            inner: Arc::new(Inner {
                static_keys,
                jwks: RwLock::new(Vec::new()),
                jwks_source: config.jwks.clone(),
                last_kid_refresh: std::sync::Mutex::new(None),
                algorithms,
                issuers: config.jwt_issuer.clone(),
                audiences: config.jwt_audience.clone(),
                leeway: config.jwt_leeway.as_secs(),
                claim: config.jwt_claim.clone(),
                http,
            }),
        };
        if auth.inner.jwks_source.is_some() {
            auth.refresh_jwks()
                .await
                .map_err(|e| err(format!("--jwks: {e}")))?;
        }
        if auth.inner.static_keys.is_empty() && auth.inner.jwks_source.is_none() {
            return Err(err(
                "no key to verify client tokens: give --jwt-secret, --jwt-public-key or --jwks \
                 (or --no-auth to run without client authentication, for development only)"
                    .to_owned(),
            ));
        }
        Ok(auth)
    }

    /// Re-reads the JWKS document.
    pub async fn refresh_jwks(&self) -> Result<usize, String> {
        let Some(source) = &self.inner.jwks_source else {
            return Ok(0);
        };
        let text = if source.starts_with("http://") || source.starts_with("https://") {
            let response = self
                .inner
                .http
                .get(source)
                .send()
                .await
                .map_err(|e| format!("cannot fetch {source}: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("{source} answered {}", response.status()));
            }
            response
                .text()
                .await
                .map_err(|e| format!("cannot read {source}: {e}"))?
        } else {
            tokio::fs::read_to_string(source)
                .await
                .map_err(|e| format!("cannot read {source}: {e}"))?
        };
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| format!("{source} is not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => keys.push(Key {
                    kid: jwk.common.key_id.clone(),
                    key,
                }),
                Err(e) => {
                    tracing::warn!(kid = ?jwk.common.key_id, error = %e, "skipping unusable JWKS key")
                }
            }
        }
        let count = keys.len();
        if let Ok(mut current) = self.inner.jwks.write() {
            *current = keys;
        }
        Ok(count)
    }

    /// Refreshes the JWKS periodically until shutdown.
    pub fn spawn_refresh(
        &self,
        every: Duration,
        tasks: &tokio_util::task::TaskTracker,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        if self.inner.jwks_source.is_none() {
            return;
        }
        let this = self.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = this.refresh_jwks().await {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys");
                }
            }
        });
    }

    /// Verifies a token and reads its permissions.
    pub async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let unauthorized = |why: &str| ApiError::Unauthorized(why.to_owned());
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(unauthorized("the token is empty or too long"));
        }
        let header =
            decode_header(token).map_err(|_| unauthorized("the token is not a valid JWT"))?;
        if !self.inner.algorithms.contains(&header.alg) {
            return Err(unauthorized("the token's algorithm is not accepted"));
        }
        // RFC 7515 §4.1.11: a recipient must refuse a token whose `crit` header names an
        // extension it does not understand, and jetway understands none.
        if header.crit.is_some() {
            return Err(unauthorized(
                "the token's header lists critical extensions ('crit') that jetway does not \
                 understand",
            ));
        }
        let family = header.alg.family();
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.inner.leeway;
        validation.validate_nbf = true;
        // A configured issuer or audience must be present in the token, not merely not wrong.
        let mut required = vec!["exp"];
        if !self.inner.issuers.is_empty() {
            required.push("iss");
        }
        if !self.inner.audiences.is_empty() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        if self.inner.issuers.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&self.inner.issuers);
        }
        if self.inner.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.inner.audiences);
        }
        let mut candidates = self.candidates(header.kid.as_deref(), family);
        if candidates.is_empty() && header.kid.is_some() && self.may_refresh_for_kid() {
            if let Err(e) = self.refresh_jwks().await {
                tracing::warn!(error = %e, "JWKS refresh for an unknown kid failed");
            }
            candidates = self.candidates(header.kid.as_deref(), family);
        }
        if candidates.is_empty() {
            return Err(unauthorized(
                "no key matches the token (unknown kid or algorithm family)",
            ));
        }
        let mut last = None;
        for key in &candidates {
            match decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &validation)
            {
                Ok(data) => return self.principal(&data.claims),
                Err(e) => last = Some(e),
            }
        }
        let why = match last.as_ref().map(|e| e.kind()) {
            Some(jsonwebtoken::errors::ErrorKind::ExpiredSignature) => "the token has expired",
            Some(jsonwebtoken::errors::ErrorKind::ImmatureSignature) => {
                "the token is not valid yet (nbf)"
            }
            Some(jsonwebtoken::errors::ErrorKind::InvalidAudience) => {
                "the token's audience is not accepted"
            }
            Some(jsonwebtoken::errors::ErrorKind::InvalidIssuer) => {
                "the token's issuer is not accepted"
            }
            Some(jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_)) => {
                "the token lacks a required claim (exp, and iss/aud when configured)"
            }
            _ => "the token's signature is invalid",
        };
        Err(unauthorized(why))
    }

    fn may_refresh_for_kid(&self) -> bool {
        if self.inner.jwks_source.is_none() {
            return false;
        }
        let Ok(mut last) = self.inner.last_kid_refresh.lock() else {
            return false;
        };
        match *last {
            Some(at) if at.elapsed() < MIN_KID_REFRESH => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }

    fn candidates(&self, kid: Option<&str>, family: jsonwebtoken::AlgorithmFamily) -> Vec<Key> {
        let jwks = self
            .inner
            .jwks
            .read()
            .map(|k| k.clone())
            .unwrap_or_default();
        self.inner
            .static_keys
            .iter()
            .chain(jwks.iter())
            .filter(|k| k.key.family() == family)
            .filter(|k| match (kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                // A token with a kid only matches JWKS keys with that kid, or kid-less keys.
                (Some(_), None) | (None, _) => true,
            })
            .cloned()
            .collect()
    }

    fn principal(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Principal, ApiError> {
        let permissions = match claims.get(&self.inner.claim) {
            None => Permissions::default(),
            Some(value) => serde_json::from_value(value.clone()).map_err(|e| {
                ApiError::Unauthorized(format!(
                    "the token's '{}' claim is malformed: {e}",
                    self.inner.claim
                ))
            })?,
        };
        if let Some(prefix) = &permissions.prefix {
            crate::validate::publish_subject(prefix).map_err(|e| {
                ApiError::Unauthorized(format!(
                    "the token's '{}' claim has an invalid prefix: {e}",
                    self.inner.claim
                ))
            })?;
        }
        Ok(Principal {
            id: claims
                .get("sub")
                .and_then(|s| s.as_str())
                .unwrap_or("unknown")
                .into(),
            permissions: Arc::new(permissions),
            expires_at: claims.get("exp").and_then(serde_json::Value::as_u64),
            unrestricted: false,
        })
    }
}

fn read_pem(path: &PathBuf) -> Result<DecodingKey, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read --jwt-public-key {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("PRIVATE KEY") {
        return Err(format!(
            "--jwt-public-key {} holds a private key: give the public key",
            path.display()
        ));
    }
    DecodingKey::from_rsa_pem(&pem)
        .or_else(|_| DecodingKey::from_ec_pem(&pem))
        .or_else(|_| DecodingKey::from_ed_pem(&pem))
        .map_err(|e| {
            format!(
                "--jwt-public-key {}: not an RSA, EC or Ed25519 public key in PEM: {e}",
                path.display()
            )
        })
}

/// Mints an HS256 token (`jetway token`), for tests and development.
pub fn mint(args: &crate::config::TokenArgs) -> Result<String, String> {
    if args.secret.is_empty() {
        return Err("--secret must not be empty".to_owned());
    }
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), args.sub.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + args.ttl.as_secs()).into());
    if let Some(iss) = &args.iss {
        claims.insert("iss".into(), iss.clone().into());
    }
    if let Some(aud) = &args.aud {
        claims.insert("aud".into(), aud.clone().into());
    }
    let permissions = Permissions {
        publish: args.publish.clone(),
        read: args.read.clone(),
        kv_read: args.kv_read.clone(),
        kv_write: args.kv_write.clone(),
        admin: args.admin,
        prefix: args.prefix.clone(),
    };
    claims.insert(
        args.claim.clone(),
        serde_json::to_value(permissions).map_err(|e| e.to_string())?,
    );
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(args.secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

/// The token of a request: `Authorization: Bearer`, else (browsers) `access_token` in the query
/// or `bearer.<token>` in `Sec-WebSocket-Protocol`.
pub fn request_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    if let Some(query) = query
        && let Some((_, token)) =
            form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "access_token")
    {
        return Some(token.into_owned());
    }
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("bearer.").map(str::to_owned))
}

/// Refuses a WebSocket upgrade from a browser page of another origin unless that origin is in
/// the allowlist (`--cors-origin`); requests without `Origin` (non-browser clients) pass.
pub fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), ApiError> {
    let Some(origin) = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    if origin_allowed(headers, origin, allowed) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "WebSocket connections from origin '{origin}' are not allowed (see --cors-origin)"
        )))
    }
}

/// Whether a browser page of `origin` may call jetway: it is the gateway's own origin (its
/// authority equals `Host`) or in the allowlist (`--cors-origin`). `null` (sandboxed frames,
/// `file:` pages) is never either.
pub fn origin_allowed(headers: &HeaderMap, origin: &str, allowed: &[String]) -> bool {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let same_origin = origin
        .split_once("://")
        .is_some_and(|(_, authority)| !host.is_empty() && authority.eq_ignore_ascii_case(host));
    origin != "null"
        && (same_origin
            || allowed
                .iter()
                .any(|a| a.trim().eq_ignore_ascii_case(origin)))
}

/// Per-principal token buckets (per replica).
#[derive(Clone)]
pub struct RateLimiter {
    /// `None` when the limit is off.
    inner: Option<Arc<governor::DefaultKeyedRateLimiter<Arc<str>>>>,
    rate: u32,
    what: &'static str,
}

/// Principals tracked before the state of idle ones is dropped.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    /// `rate` per second with a burst of one second's worth; 0 disables the limit.
    pub fn new(rate: u32, what: &'static str) -> Self {
        let inner = std::num::NonZeroU32::new(rate).map(|rate| {
            Arc::new(governor::RateLimiter::keyed(governor::Quota::per_second(
                rate,
            )))
        });
        Self { inner, rate, what }
    }

    /// Takes `cost` tokens for `who`, or answers 429 with the wait. Lock-free per principal
    /// (governor's keyed GCRA over a concurrent map); the key is the principal's shared id, so
    /// a check allocates nothing.
    pub fn check(&self, who: &Arc<str>, cost: u32) -> Result<(), ApiError> {
        use governor::clock::Clock as _;
        let (Some(limiter), Some(cost)) = (&self.inner, std::num::NonZeroU32::new(cost)) else {
            return Ok(());
        };
        if limiter.len() >= MAX_BUCKETS {
            limiter.retain_recent();
        }
        match limiter.check_key_n(who, cost) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                Err(ApiError::RateLimitedFor {
                    detail: format!(
                        "{} rate limit of {} per second reached for this principal",
                        self.what, self.rate
                    ),
                    retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
            Err(_) => Err(ApiError::RateLimitedFor {
                detail: format!(
                    "{} of {cost} messages exceeds the {} rate limit of {} per second for this \
                     principal; send smaller batches",
                    self.what, self.what, self.rate
                ),
                retry_after: 1,
            }),
        }
    }
}

impl RateLimiter {
    /// Waits until `who` may publish one more message, for long-lived streams of messages
    /// where the rate slows the sender down instead of refusing a message.
    pub async fn wait(&self, who: &Arc<str>) {
        use governor::clock::Clock as _;
        let Some(limiter) = &self.inner else {
            return;
        };
        loop {
            if limiter.len() >= MAX_BUCKETS {
                limiter.retain_recent();
            }
            match limiter.check_key(who) {
                Ok(()) => return,
                Err(not_until) => {
                    let wait =
                        not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Counts open streaming connections (WebSocket and SSE), in total and per principal.
#[derive(Clone, Default)]
pub struct ConnectionLimits {
    inner: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    total: Arc<std::sync::atomic::AtomicUsize>,
    max_total: usize,
    max_per_principal: usize,
}

/// Releases a connection slot when dropped.
pub struct ConnectionSlot {
    limits: ConnectionLimits,
    who: String,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limits
            .total
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut map) = self.limits.inner.lock()
            && let Some(count) = map.get_mut(&self.who)
        {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.who);
            }
        }
    }
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_principal: usize) -> Self {
        Self {
            max_total,
            max_per_principal,
            ..Default::default()
        }
    }

    /// A slot for one more streaming connection, or 429.
    pub fn acquire(&self, who: &str) -> Result<ConnectionSlot, ApiError> {
        let Ok(mut map) = self.inner.lock() else {
            return Err(ApiError::Internal(
                "connection limits unavailable".to_owned(),
            ));
        };
        let total = self.total.load(std::sync::atomic::Ordering::Relaxed);
        if total >= self.max_total {
            return Err(ApiError::RateLimited(format!(
                "the gateway serves its maximum of {} streaming connections; retry later",
                self.max_total
            )));
        }
        let count = map.entry(who.to_owned()).or_insert(0);
        if *count >= self.max_per_principal {
            return Err(ApiError::RateLimited(format!(
                "at most {} streaming connections per principal",
                self.max_per_principal
            )));
        }
        *count += 1;
        self.total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(ConnectionSlot {
            limits: self.clone(),
            who: who.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_patterns() {
        assert!(subject_matches("orders.>", "orders.new"));
        assert!(subject_matches("orders.>", "orders.eu.new"));
        assert!(!subject_matches("orders.>", "orders"));
        assert!(subject_matches("orders.*", "orders.new"));
        assert!(!subject_matches("orders.*", "orders.eu.new"));
        assert!(subject_matches("orders.new", "orders.new"));
        assert!(!subject_matches("orders.new", "orders.old"));
        assert!(subject_matches(">", "anything.at.all"));
        for reserved in [
            "$JS.API.STREAM.DELETE.ORDERS",
            "$SYS.REQ.SERVER.PING",
            "_INBOX.x.y",
        ] {
            for grant in [">", "*.>", "*.*.*.*.*"] {
                assert!(
                    !subject_matches(grant, reserved),
                    "{grant} matched {reserved}"
                );
            }
        }
        assert!(subject_matches("$JS.API.>", "$JS.API.INFO"));
    }

    #[test]
    fn permissions_deny_by_default() {
        let p = Principal {
            id: "a".into(),
            permissions: Arc::new(Permissions::default()),
            expires_at: None,
            unrestricted: false,
        };
        assert!(p.check_publish("a.b").is_err());
        assert!(p.check_read("S").is_err());
        assert!(p.check_admin().is_err());
    }

    #[test]
    fn rate_limiter_refuses_past_burst() {
        let limiter = RateLimiter::new(2, "publish");
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        assert!(limiter.check(&a, 1).is_ok());
        assert!(limiter.check(&a, 1).is_ok());
        let err = limiter.check(&a, 1).unwrap_err();
        assert_eq!(err.status().as_u16(), 429);
        assert!(limiter.check(&b, 1).is_ok(), "buckets are per principal");
        let too_big = limiter.check(&b, 3).unwrap_err();
        assert_eq!(too_big.status().as_u16(), 429);
        assert!(
            RateLimiter::new(0, "publish").check(&a, 1000).is_ok(),
            "0 is off"
        );
    }

    #[test]
    fn token_sources() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            request_token(&headers, Some("access_token=abc&x=1")).as_deref(),
            Some("abc")
        );
        headers.insert(
            axum::http::header::SEC_WEBSOCKET_PROTOCOL,
            "jetway.v1, bearer.tok".parse().unwrap(),
        );
        assert_eq!(request_token(&headers, None).as_deref(), Some("tok"));
        headers.insert(
            axum::http::header::AUTHORIZATION,
            "Bearer xyz".parse().unwrap(),
        );
        assert_eq!(request_token(&headers, None).as_deref(), Some("xyz"));
    }
}
