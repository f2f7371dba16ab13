//! Where request data may make this process connect: the outbound-address policy for endpoints
//! that come from a request (a RunPod job's `s3Config.endpointUrl`, the local test API's
//! `webhook`), against SSRF.
//!
//! Refused unless the operator allows the host: non-http(s) schemes, and any address that is
//! loopback (127/8, ::1, also spelt `localhost`, `2130706433`, `0x7f.1`, `::ffff:127.0.0.1`),
//! unspecified (0.0.0.0, ::), link-local (169.254/16, fe80::/10: cloud metadata), private
//! (10/8, 172.16/12, 192.168/16, fc00::/7), CGNAT (100.64/10), broadcast, multicast or reserved.
//! IP literals are checked when the endpoint is checked ([`EgressPolicy::check_url`]); names are
//! resolved once by [`GuardedResolver`] (the client's DNS resolver), every address checked, and
//! the client connects only to the addresses it returned. Clients for such endpoints never follow
//! redirects. The URL parser already normalises the decimal, hex and octal IPv4 spellings.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use thiserror::Error;
use url::{Host, Url};

/// Why an endpoint from a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EgressError {
    #[error("{url:?}: only http:// and https:// endpoints are allowed")]
    Scheme { url: String },
    #[error("{url:?} is not a URL with a host")]
    NoHost { url: String },
    #[error("{host} resolves to {addr}, a loopback, private, link-local or reserved address: endpoints from requests must be public (an operator can allow a host with --allow-private-endpoints HOST[:PORT])")]
    Forbidden { host: String, addr: IpAddr },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("--allow-private-endpoints entry {entry:?} is not HOST or HOST:PORT")]
    BadEntry { entry: String },
}

/// Whether `ip` is an address request data must not reach (see the module docs).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 (embeds IPv4)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible ::a.b.c.d
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0 // 0/8 "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || o[0] >= 240 // reserved
}

/// One allowlist entry: a host (name or IP, as in a URL), optionally with a port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    host: String,
    port: Option<u16>,
}

/// The outbound policy: public http(s) endpoints only, plus the hosts the operator allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allowed: Vec<Allowed>,
}

impl EgressPolicy {
    /// Public endpoints only.
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Also allows each `HOST` or `HOST:PORT` (`[v6]:PORT` for IPv6), e.g. a MinIO on the
    /// private network, or `127.0.0.1:9000` in tests.
    pub fn allowing<S: AsRef<str>>(
        entries: impl IntoIterator<Item = S>,
    ) -> Result<Self, EgressError> {
        let mut allowed = Vec::new();
        for e in entries {
            let e = e.as_ref().trim();
            if e.is_empty() {
                continue;
            }
            let bad = || EgressError::BadEntry {
                entry: e.to_string(),
            };
            let u = Url::parse(&format!("http://{e}/")).map_err(|_| bad())?;
            if u.path() != "/" || !u.username().is_empty() || u.query().is_some() {
                return Err(bad());
            }
            let host = u.host_str().ok_or_else(bad)?.to_ascii_lowercase();
            allowed.push(Allowed {
                host,
                port: u.port(),
            });
        }
        Ok(Self { allowed })
    }

    fn allows(&self, host: &str, port: Option<u16>) -> bool {
        self.allowed
            .iter()
            .any(|a| a.host == host && (a.port.is_none() || a.port == port))
    }

    fn allows_host(&self, host: &str) -> bool {
        self.allowed.iter().any(|a| a.host == host)
    }

    /// Checks an endpoint's scheme, and its address when the host is an IP literal (names are
    /// checked when they are resolved, by [`GuardedResolver`]).
    pub fn check_url(&self, url: &Url) -> Result<(), EgressError> {
        let shown = || url.as_str().chars().take(200).collect::<String>();
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(EgressError::Scheme { url: shown() });
        }
        let host = url
            .host_str()
            .ok_or_else(|| EgressError::NoHost { url: shown() })?;
        let bare = host.trim_end_matches('.').to_ascii_lowercase();
        if self.allows(&bare, url.port_or_known_default()) {
            return Ok(());
        }
        let ip = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(Host::Domain(_)) => {
                // A name that is an address in another spelling the URL parser kept as a name.
                match bare.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) if bare == "localhost" || bare.ends_with(".localhost") => {
                        IpAddr::V4(Ipv4Addr::LOCALHOST)
                    }
                    Err(_) => return Ok(()),
                }
            }
            None => return Err(EgressError::NoHost { url: shown() }),
        };
        if is_forbidden(ip) {
            return Err(EgressError::Forbidden {
                host: host.to_string(),
                addr: ip,
            });
        }
        Ok(())
    }

    /// A reqwest client for endpoints from requests: resolves through [`GuardedResolver`] and
    /// never follows redirects. `builder` carries the caller's other settings (timeouts, agent).
    pub fn client(
        self: &Arc<Self>,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::Client, reqwest::Error> {
        builder
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: self.clone(),
            }))
            .build()
    }
}

/// Resolves a name once and hands the client only addresses the policy allows; a name with any
/// forbidden address is refused whole (so a rebinding answer cannot mix one in).
#[derive(Debug)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| {
                    Box::new(EgressError::Resolve {
                        host: host.clone(),
                        reason: e.to_string(),
                    }) as Box<dyn std::error::Error + Send + Sync>
                })?
                .collect();
            if !policy.allows_host(&host) {
                if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
                    return Err(Box::new(EgressError::Forbidden {
                        host,
                        addr: bad.ip(),
                    })
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check(p: &EgressPolicy, u: &str) -> Result<(), EgressError> {
        p.check_url(&Url::parse(u).unwrap())
    }

    #[test]
    fn every_spelling_of_a_private_address_is_refused() {
        let p = EgressPolicy::public_only();
        for u in [
            "http://127.0.0.1:9000/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://localhost:8000/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://0.0.0.0/",
            "http://0/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://10.0.0.1/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://100.64.0.1/",
            "http://100.127.255.254/",
            "http://255.255.255.255/",
            "http://224.0.0.1/",
        ] {
            assert!(
                matches!(check(&p, u), Err(EgressError::Forbidden { .. })),
                "{u}: {:?}",
                check(&p, u)
            );
        }
        for u in ["ftp://example.com/", "file:///etc/passwd", "gopher://x/"] {
            assert!(
                matches!(check(&p, u), Err(EgressError::Scheme { .. })),
                "{u}"
            );
        }
        for u in [
            "https://s3.us-east-1.amazonaws.com/",
            "http://8.8.8.8/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[2606:4700::1111]/",
        ] {
            assert!(check(&p, u).is_ok(), "{u}");
        }
    }

    #[test]
    fn the_allowlist_opens_hosts_and_ports() {
        let p = EgressPolicy::allowing(["127.0.0.1:9000", "minio.internal", "[::1]:80"]).unwrap();
        assert!(check(&p, "http://127.0.0.1:9000/b").is_ok());
        assert!(check(&p, "http://127.0.0.1:9001/b").is_err());
        assert!(check(&p, "http://minio.internal:1234/").is_ok());
        assert!(check(&p, "http://[::1]/").is_ok());
        assert!(check(&p, "http://10.0.0.1/").is_err());
        assert!(EgressPolicy::allowing(["http://x/y"]).is_err());
        assert!(EgressPolicy::allowing(["a b"]).is_err());
    }

    #[tokio::test]
    async fn names_are_checked_when_resolved_and_redirects_are_not_followed() {
        let p = Arc::new(EgressPolicy::public_only());
        let client = p.client(reqwest::Client::builder()).unwrap();
        // `localhost` passes the literal check only through its name; the resolver refuses it.
        let e = client.get("http://localhost:1/").send().await.unwrap_err();
        let chain = format!("{:?}", e);
        assert!(
            chain.contains("Forbidden") || chain.contains("loopback"),
            "{chain}"
        );
        // Allowed: the request reaches the listener (and a redirect answer is returned as is).
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut c, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf).await;
            let _ = c
                .write_all(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n")
                .await;
        });
        let open = Arc::new(EgressPolicy::allowing(["localhost"]).unwrap());
        let r = open
            .client(reqwest::Client::builder())
            .unwrap()
            .get(format!("http://localhost:{port}/"))
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
    }
}
