//! Where push subscriptions may deliver: the `--push-allow` policy, checked when a subscription
//! is created and again at every connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::ApiError;

/// Longest push URL.
pub const MAX_URL_LEN: usize = 2048;

/// Where pushes may go: `--push-allow` entries. A host name (`hooks.example.com`) or a suffix
/// (`*.example.com`) admits that name on public addresses; an address or network
/// (`10.1.2.3`, `10.0.0.0/8`, `::1`) admits every address inside it, private ones included.
/// Nothing else is reachable: private, loopback, link-local and other special addresses only
/// through an address entry, and an unlisted host name only when every address it resolves to
/// is inside an address entry.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    hosts: Vec<HostRule>,
    nets: Vec<Net>,
    allow_http: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Exact(String),
    /// `*.example.com` → `.example.com`.
    Suffix(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is an ordinary public address (not private, loopback, link-local, shared,
/// documentation, benchmarking, multicast, reserved or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || first == 0x0064 // NAT64 and local-use translation
        || ip.to_ipv4().is_some_and(|v4| !is_public_v4(v4)))
}

impl Destinations {
    /// From `--push-allow` entries; `allow_http` also admits `http://` URLs.
    pub fn parse(entries: &[String], allow_http: bool) -> Result<Self, String> {
        let mut this = Self {
            allow_http,
            ..Self::default()
        };
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if let Some((addr, prefix)) = entry.split_once('/') {
                let addr: IpAddr = addr
                    .parse()
                    .map_err(|_| format!("--push-allow '{entry}': not an address/prefix"))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let prefix: u8 = prefix
                    .parse()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("--push-allow '{entry}': prefix is 0..={max}"))?;
                this.nets.push(Net {
                    addr: canonical(addr),
                    prefix: if addr.is_ipv6() && canonical(addr).is_ipv4() {
                        prefix.saturating_sub(96)
                    } else {
                        prefix
                    },
                });
            } else if let Ok(addr) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                let addr = canonical(addr);
                this.nets.push(Net {
                    addr,
                    prefix: if addr.is_ipv4() { 32 } else { 128 },
                });
            } else {
                let host = entry.to_ascii_lowercase();
                let (rule, name) = match host.strip_prefix("*.") {
                    Some(rest) => (HostRule::Suffix(format!(".{rest}")), rest.to_owned()),
                    None => (HostRule::Exact(host.clone()), host.clone()),
                };
                let valid = !name.is_empty()
                    && name.len() <= 253
                    && name.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    });
                if !valid {
                    return Err(format!(
                        "--push-allow '{entry}': not a host name, '*.' suffix, address or network"
                    ));
                }
                this.hosts.push(rule);
            }
        }
        Ok(this)
    }

    /// Whether no destination at all is allowed (push subscriptions cannot be created).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.nets.is_empty()
    }

    fn host_listed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        self.hosts.iter().any(|rule| match rule {
            HostRule::Exact(name) => name == host,
            HostRule::Suffix(suffix) => host.ends_with(suffix.as_str()),
        })
    }

    fn net_listed(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(ip))
    }

    /// Whether a connection to `ip` is allowed for a host that is (or is not) listed by name.
    pub fn address_allowed(&self, host_listed: bool, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if ip.is_unspecified() || ip.is_multicast() {
            return false;
        }
        self.net_listed(ip) || (host_listed && is_public(ip))
    }

    /// The addresses of `host` that a delivery may connect to; an error when there are none.
    /// Called at every connection (a host name's addresses can change after creation).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let listed = self.host_listed(host);
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|err| format!("cannot resolve '{host}': {err}"))?
            .collect();
        if found.is_empty() {
            return Err(format!("'{host}' has no address"));
        }
        if !listed && !found.iter().all(|a| self.net_listed(a.ip())) {
            return Err(format!(
                "'{host}' is not allowed by --push-allow (it resolves to {})",
                list_addrs(&found)
            ));
        }
        let allowed: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|a| self.address_allowed(listed, a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(format!(
                "'{host}' resolves only to addresses --push-allow does not admit ({}): \
                 private, loopback and link-local addresses need an address entry",
                list_addrs(&found)
            ));
        }
        Ok(allowed)
    }

    /// Checks a subscription's URL at creation: scheme, no credentials, and a destination the
    /// allowlist admits (a host listed by name is not resolved now; its addresses are checked at
    /// each connection).
    pub async fn check_url(&self, text: &str) -> Result<reqwest::Url, ApiError> {
        let refuse = |why: String| ApiError::DestinationNotAllowed(why);
        if text.len() > MAX_URL_LEN {
            return Err(ApiError::InvalidConfig {
                detail: format!("url is longer than {MAX_URL_LEN} bytes"),
                jetstream_code: None,
            });
        }
        let url = reqwest::Url::parse(text).map_err(|err| ApiError::InvalidConfig {
            detail: format!("url '{text}' is not an absolute URL: {err}"),
            jetstream_code: None,
        })?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(refuse(
                    "http:// URLs are refused (the gateway runs without --push-allow-http); use https://"
                        .to_owned(),
                ));
            }
            other => {
                return Err(ApiError::InvalidConfig {
                    detail: format!("url scheme '{other}' is not http or https"),
                    jetstream_code: None,
                });
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ApiError::InvalidConfig {
                detail: "url carries credentials; put them in 'headers' (e.g. Authorization), \
                         which are stored as secrets"
                    .to_owned(),
                jetstream_code: None,
            });
        }
        if self.is_empty() {
            return Err(refuse(
                "this gateway allows no push destination: start it with --push-allow (hosts or networks)"
                    .to_owned(),
            ));
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(host)) => {
                if !self.host_listed(host) {
                    let port = url.port_or_known_default().unwrap_or(443);
                    self.resolve(host, port).await.map_err(refuse)?;
                }
            }
            None => {
                return Err(ApiError::InvalidConfig {
                    detail: "url has no host".to_owned(),
                    jetstream_code: None,
                });
            }
        }
        Ok(url)
    }

    /// Whether `http://` URLs are allowed (`--push-allow-http`).
    pub fn allows_http(&self) -> bool {
        self.allow_http
    }

    /// Checks an address given literally in a URL.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        if self.address_allowed(false, ip) {
            Ok(())
        } else {
            Err(ApiError::DestinationNotAllowed(format!(
                "address {ip} is not inside a --push-allow address or network"
            )))
        }
    }
}

fn list_addrs(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.ip().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> Destinations {
        let entries: Vec<String> = entries.iter().map(|s| (*s).to_owned()).collect();
        Destinations::parse(&entries, true).expect("valid entries")
    }

    #[test]
    fn public_and_special_addresses() {
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
        for special in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(special.parse().expect("ip")), "{special}");
        }
    }

    #[test]
    fn address_entries_admit_private_addresses_host_entries_do_not() {
        let policy = allow(&["hooks.example.com", "*.corp.example", "10.0.0.0/8", "::1"]);
        assert!(policy.host_listed("hooks.example.com"));
        assert!(policy.host_listed("a.b.corp.example"));
        assert!(!policy.host_listed("corp.example"));
        assert!(!policy.host_listed("evil-hooks.example.com"));
        assert!(policy.address_allowed(true, "8.8.8.8".parse().expect("ip")));
        assert!(!policy.address_allowed(true, "127.0.0.1".parse().expect("ip")));
        assert!(!policy.address_allowed(true, "169.254.169.254".parse().expect("ip")));
        assert!(policy.address_allowed(false, "10.9.9.9".parse().expect("ip")));
        assert!(policy.address_allowed(false, "::ffff:10.9.9.9".parse().expect("ip")));
        assert!(policy.address_allowed(false, "::1".parse().expect("ip")));
        assert!(!policy.address_allowed(false, "8.8.8.8".parse().expect("ip")));
        assert!(!policy.address_allowed(false, "0.0.0.0".parse().expect("ip")));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in ["10.0.0.0/33", "not a host", "a..b", "*.", "::1/129"] {
            assert!(
                Destinations::parse(&[bad.to_owned()], false).is_err(),
                "{bad}"
            );
        }
    }
}
