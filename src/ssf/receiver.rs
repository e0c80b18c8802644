//! Pushes to URLs that receivers chose (SSF 1.0 §6.1.1 `endpoint_url` of a stream they manage):
//! a stranger's URL is a server-side request forgery vector, so it gets the checks of a client
//! metadata document's (`crate::cimd`): `https` only, no user info or fragment, and every
//! address its host resolves to must be public ([`crate::cimd::address`]; loopback and private
//! networks only with `ssf.allow_private_addresses`, link-local and the like never). The check
//! runs when the stream is created or changed, and again at every push: the host is resolved
//! once, each address vetted, and the connection goes to a vetted one (no second lookup, so a
//! name that answers a public address to the check and a private one to the connect, DNS
//! rebinding, gains nothing). No redirect is followed (only the status is read).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use http::Uri;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::PushError;
use crate::cimd::address;
use crate::config::SsfConfig;

/// The longest `endpoint_url` accepted.
pub const MAX_URL: usize = 2048;
/// At most this many resolved addresses are tried.
const MAX_ADDRESSES_TRIED: usize = 4;

/// Why a receiver's URL is refused; the text is safe to send back (it names no address).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("endpoint_url must be an absolute https URL of at most {MAX_URL} bytes")]
    Malformed,
    #[error("endpoint_url must use https")]
    NotHttps,
    #[error("endpoint_url must not carry user info or a fragment")]
    Parts,
    #[error("endpoint_url's host name does not resolve")]
    Unresolvable,
    #[error(
        "endpoint_url's host resolves to a {0} address, and this server does not push to those"
    )]
    Special(crate::cimd::AddressClass),
}

/// The static rules of a receiver's push URL (no lookup).
pub fn parse_url(url: &str) -> Result<Uri, UrlRefusal> {
    if url.len() > MAX_URL || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(UrlRefusal::Malformed);
    }
    let uri: Uri = url.parse().map_err(|_| UrlRefusal::Malformed)?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => {}
        Some(_) => return Err(UrlRefusal::NotHttps),
        None => return Err(UrlRefusal::Malformed),
    }
    let Some(authority) = uri.authority() else {
        return Err(UrlRefusal::Malformed);
    };
    if authority.as_str().contains('@') || url.contains('#') {
        return Err(UrlRefusal::Parts);
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(UrlRefusal::Malformed);
    }
    Ok(uri)
}

/// Sends SETs to receivers' URLs, and checks those URLs.
pub struct ReceiverPush {
    tls: TlsConnector,
    allow_private: bool,
    timeout: Duration,
}

impl ReceiverPush {
    /// From `[ssf]` (`allow_private_addresses`, `extra_ca_file` relative to `base`); `timeout`
    /// bounds one push as a whole (`notifications.timeout`).
    pub fn new(c: &SsfConfig, base: &Path, timeout: Duration) -> Result<Self, String> {
        let extra = match &c.extra_ca_file {
            Some(p) => crate::crypto::read_certificates(&base.join(p))
                .map_err(|why| format!("ssf.extra_ca_file {}: {why}", p.display()))?,
            None => Vec::new(),
        };
        Ok(Self {
            tls: crate::cimd::tls_connector(extra)?,
            allow_private: c.allow_private_addresses,
            timeout,
        })
    }

    /// The addresses `uri`'s host stands for, each one allowed (the first that is not refuses
    /// them all).
    pub async fn vet(&self, uri: &Uri) -> Result<Vec<SocketAddr>, UrlRefusal> {
        let host = uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(443);
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                let lookup = tokio::net::lookup_host((host, port));
                match tokio::time::timeout(self.timeout, lookup).await {
                    Ok(Ok(a)) => a.collect(),
                    _ => return Err(UrlRefusal::Unresolvable),
                }
            }
        };
        if addrs.is_empty() {
            return Err(UrlRefusal::Unresolvable);
        }
        for a in &addrs {
            let class = address::classify(a.ip());
            if !class.allowed(self.allow_private) {
                return Err(UrlRefusal::Special(class));
            }
        }
        let mut unique: Vec<SocketAddr> = Vec::new();
        for a in addrs {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        Ok(unique)
    }

    /// Checks a URL a receiver asks for (at create and update).
    pub async fn check(&self, url: &str) -> Result<(), UrlRefusal> {
        let uri = parse_url(url)?;
        self.vet(&uri).await.map(drop)
    }

    /// One RFC 8935 push of `set` to `url`, checked again now, with the receiver's
    /// `authorization` header when it gave one.
    pub async fn post(
        &self,
        url: &str,
        authorization: Option<String>,
        set: String,
    ) -> Result<(), PushError> {
        let attempt = async {
            let uri = parse_url(url).map_err(|e| PushError::Refused(e.to_string()))?;
            // A URL that stopped passing (its name now resolves somewhere private) is not
            // retried into: the SET is given up, like a receiver's refusal.
            let addrs = (self.vet(&uri).await).map_err(|e| PushError::Refused(e.to_string()))?;
            let mut tcp = None;
            for a in addrs.iter().take(MAX_ADDRESSES_TRIED) {
                if let Ok(s) = TcpStream::connect(a).await {
                    tcp = Some(s);
                    break;
                }
            }
            let tcp = tcp.ok_or_else(|| PushError::Transient("cannot connect".into()))?;
            let mut headers = vec![("accept", "application/json".to_string())];
            if let Some(a) = authorization {
                headers.push(("authorization", a));
            }
            let status = crate::notify::exchange_on(
                tcp,
                &uri,
                Some(&self.tls),
                "application/secevent+jwt",
                &headers,
                set.into_bytes(),
            )
            .await
            .map_err(PushError::Transient)?;
            super::push::judge(status)
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(PushError::Transient(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The static half of the SSRF rules (draft-ietf-oauth-client-id-metadata-document-03
    /// "Server Side Request Forgery", applied to SSF 1.0 §6.1.1 push URLs).
    #[test]
    fn a_receivers_url_must_be_plain_https() {
        assert!(parse_url("https://rs.example.com/events").is_ok());
        assert!(parse_url("https://127.0.0.1:8443/e?x=1").is_ok());
        for (url, want) in [
            ("http://rs.example.com/events", UrlRefusal::NotHttps),
            ("ftp://rs.example.com/", UrlRefusal::NotHttps),
            ("https://user:pw@rs.example.com/", UrlRefusal::Parts),
            ("https://rs.example.com/#frag", UrlRefusal::Parts),
            ("/relative", UrlRefusal::Malformed),
            ("https://rs.example.com/a b", UrlRefusal::Malformed),
            ("", UrlRefusal::Malformed),
        ] {
            assert_eq!(parse_url(url).err(), Some(want), "{url}");
        }
        let long = format!("https://rs.example.com/{}", "a".repeat(MAX_URL));
        assert_eq!(parse_url(&long).err(), Some(UrlRefusal::Malformed));
    }

    #[tokio::test]
    async fn special_addresses_are_refused_unless_the_operator_allows_private_ones() {
        let push = |allow| ReceiverPush {
            tls: crate::cimd::tls_connector(Vec::new()).unwrap(),
            allow_private: allow,
            timeout: Duration::from_secs(2),
        };
        let (strict, open) = (push(false), push(true));
        for url in [
            "https://127.0.0.1/e",
            "https://10.1.2.3/e",
            "https://[::1]/e",
            "https://[::ffff:127.0.0.1]/e",
        ] {
            assert!(
                matches!(strict.check(url).await, Err(UrlRefusal::Special(_))),
                "{url}"
            );
            assert!(open.check(url).await.is_ok(), "{url}");
        }
        // Cloud metadata lives at a link-local address: never, whatever the setting.
        for url in ["https://169.254.169.254/latest", "https://[fe80::1]/e"] {
            assert!(
                matches!(open.check(url).await, Err(UrlRefusal::Special(_))),
                "{url}"
            );
        }
        assert!(strict.check("https://8.8.8.8/e").await.is_ok());
    }

    /// DNS rebinding: a URL that passed when the stream was made is vetted again at each
    /// push, before any connection; one that now lands on a refused address is given up
    /// (never retried into) and nothing connects.
    #[tokio::test]
    async fn each_push_vets_the_address_again_before_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://127.0.0.1:{}/e",
            listener.local_addr().unwrap().port()
        );
        let strict = ReceiverPush {
            tls: crate::cimd::tls_connector(Vec::new()).unwrap(),
            allow_private: false,
            timeout: Duration::from_secs(2),
        };
        let r = strict
            .post(&url, Some("Bearer x".into()), "set".into())
            .await;
        assert!(matches!(r, Err(PushError::Refused(_))), "{r:?}");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "no connection was made");
    }
}
