//! One `GET` of a client metadata document, refused safely (draft-03 "Client Information
//! Discovery", "Server Side Request Forgery (SSRF) Attacks", "Maximum Response Size"):
//!
//! 1. the host is resolved here, once; if any address it resolves to is not allowed
//!    ([`super::address`]) nothing is fetched, and the connection goes to one of exactly those
//!    addresses, so a name that answers a public address to a check and a private one to the
//!    connect (DNS rebinding) gains nothing;
//! 2. TLS (rustls, aws-lc-rs) with the URL's host as SNI and certificate name;
//! 3. HTTP/1.1 with `Host` from the URL, no redirect followed (a 3xx is a refusal), only 200;
//! 4. `Content-Type` JSON, the body read frame by frame and cut off past the size limit;
//! 5. all of it within the total timeout, the TCP connect within its own; when the timeout
//!    strikes, the connection is dropped with the future (nothing is left running).
//!
//! HTTP/1.1 is spoken over a bare client connection (no pool, no proxy from the
//! environment, no redirect logic to switch off): the notification sender (`notify::webhook`) is
//! the server's only other HTTP client, built the same way.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Refusal;
use super::address;
use super::cache::Headers;
use super::url::{ClientIdUrl, Host};

/// At most this many of the resolved addresses are tried.
const MAX_ADDRESSES_TRIED: usize = 4;
/// A response head (status line and headers) larger than this is refused.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// What the fetch needs of the resolver's settings.
pub(super) struct Limits {
    pub connect_timeout: Duration,
    pub max_bytes: usize,
}

/// A 200 response with a JSON body of at most `max_bytes`.
pub(super) struct Fetched {
    pub body: Vec<u8>,
    pub headers: Headers,
}

/// The addresses `url`'s host stands for, each one allowed; the first disallowed one refuses
/// them all.
pub(super) async fn vetted_addresses(
    url: &ClientIdUrl,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Refusal> {
    let addrs: Vec<SocketAddr> = match url.host() {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, url.port())],
        Host::Name(name) => match tokio::net::lookup_host((name.as_str(), url.port())).await {
            Ok(a) => a.collect(),
            Err(e) => {
                tracing::info!(target: "mandate::cimd", host = %name, error = %e, "client metadata host does not resolve");
                return Err(Refusal::Unresolvable);
            }
        },
    };
    if addrs.is_empty() {
        return Err(Refusal::Unresolvable);
    }
    for a in &addrs {
        let class = address::classify(a.ip());
        if !class.allowed(allow_private) {
            tracing::warn!(target: "mandate::cimd", url = url.as_str(), address = %a.ip(), %class, "client metadata URL refused: special-use address");
            return Err(Refusal::SpecialAddress(class));
        }
    }
    let mut unique = Vec::new();
    for a in addrs {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    Ok(unique)
}

/// Fetches `url` from one of `addrs` (already vetted).
pub(super) async fn get(
    url: &ClientIdUrl,
    addrs: &[SocketAddr],
    tls: &TlsConnector,
    limits: &Limits,
) -> Result<Fetched, Refusal> {
    let tcp = connect(url, addrs, limits.connect_timeout).await?;
    let name = match url.host() {
        Host::Name(n) => ServerName::try_from(n.clone()).map_err(|_| Refusal::Tls)?,
        Host::Ip(ip) => ServerName::IpAddress(ip_for_tls(*ip)),
    };
    let stream = tls.connect(name, tcp).await.map_err(|e| {
        tracing::info!(target: "mandate::cimd", url = url.as_str(), error = %e, "client metadata TLS handshake failed");
        Refusal::Tls
    })?;
    let (mut sender, conn) = http1::Builder::new()
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|_| Refusal::Protocol)?;
    let request = http::Request::get(url.path())
        .header(header::HOST, url.authority())
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("mandate/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|_| Refusal::Protocol)?;
    let exchange = async move {
        let response = sender.send_request(request).await.map_err(|e| {
            tracing::info!(target: "mandate::cimd", url = url.as_str(), error = %e, "client metadata request failed");
            Refusal::Protocol
        })?;
        read(url, response, limits.max_bytes).await
    };
    // The connection is driven here, not spawned, so it ends with this future (at the timeout
    // too). If it finishes first, what it received is already in the body's channel.
    tokio::pin!(exchange, conn);
    tokio::select! {
        r = &mut exchange => r,
        _ = &mut conn => exchange.await,
    }
}

async fn connect(
    url: &ClientIdUrl,
    addrs: &[SocketAddr],
    within: Duration,
) -> Result<TcpStream, Refusal> {
    for addr in addrs.iter().take(MAX_ADDRESSES_TRIED) {
        match tokio::time::timeout(within, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => {
                tracing::info!(target: "mandate::cimd", url = url.as_str(), address = %addr, error = %e, "client metadata connect failed")
            }
            Err(_) => {
                tracing::info!(target: "mandate::cimd", url = url.as_str(), address = %addr, "client metadata connect timed out")
            }
        }
    }
    Err(Refusal::Connect)
}

/// An IPv4-mapped address is checked against a certificate's IPv4 SAN.
fn ip_for_tls(ip: IpAddr) -> rustls::pki_types::IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4).into(),
            None => IpAddr::V6(v6).into(),
        },
        v4 => v4.into(),
    }
}

async fn read<B>(
    url: &ClientIdUrl,
    response: http::Response<B>,
    max: usize,
) -> Result<Fetched, Refusal>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let status = response.status().as_u16();
    if response.status().is_redirection() {
        tracing::info!(target: "mandate::cimd", url = url.as_str(), status, "client metadata URL redirects; not followed");
        return Err(Refusal::Redirect(status));
    }
    if status != 200 {
        return Err(Refusal::Status(status));
    }
    let h = response.headers();
    if !h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json)
    {
        return Err(Refusal::ContentType);
    }
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Refusal::TooLarge(max));
    }
    let joined = |name: header::HeaderName| {
        let values: Vec<&str> = h
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    };
    let headers = Headers {
        cache_control: joined(header::CACHE_CONTROL),
        expires: joined(header::EXPIRES),
        date: joined(header::DATE),
        age: joined(header::AGE),
    };
    let mut body = response.into_body();
    let mut buf = Vec::with_capacity(max.min(8192));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            tracing::info!(target: "mandate::cimd", url = url.as_str(), error = %e, "client metadata body failed");
            Refusal::Protocol
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len().saturating_add(data.len()) > max {
                return Err(Refusal::TooLarge(max));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Fetched { body: buf, headers })
}

/// `application/json` or `application/<anything>+json` (draft-03: "more specific content types
/// as long as the response is JSON"), parameters allowed.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.strip_prefix("application/") {
        Some("json") => true,
        Some(sub) => sub.len() > 5 && sub.ends_with("+json") && !sub.contains(['/', ' ']),
        None => false,
    }
}

/// The TLS client of every fetch: aws-lc-rs, the webpki (Mozilla) roots plus the operator's
/// extra CAs, HTTP/1.1 by ALPN.
pub(crate) fn tls_connector(
    extra: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra {
        roots
            .add(cert)
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/oauth-client+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "text/json",
            "text/html",
            "application/jsonx",
            "application/+json",
            "application/x-www-form-urlencoded",
            "",
            "json",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
