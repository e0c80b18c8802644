//! The client identifier URL (draft-ietf-oauth-client-id-metadata-document-03, "Client Identifier
//! URL"): it MUST have the `https` scheme and a path component, MUST NOT contain `.` or `..` path
//! segments, a fragment, or a username or password; it SHOULD NOT contain a query string and MAY
//! contain a port.
//!
//! Stricter here, each for a reason:
//! - **a query string is refused**, although the draft only says SHOULD NOT: a query makes many
//!   ids of one document (`?a`, `?b`) that the document's single `client_id` cannot all match,
//!   and it is where a fetch-amplification attack would vary its URLs;
//! - **the path must be more than `/`**, as both MCP SDKs require ("a non-root path");
//! - **lowercase scheme and host, no trailing dot, no leading zeros in the port**: RFC 3986 §6.2.2
//!   normalization, so one document has one id (the document's `client_id` must equal the URL byte
//!   for byte) and `EXAMPLE.com` or `example.com.` cannot slip past a domain list;
//! - **printable ASCII only, at most [`crate::input::MAX_IDENTIFIER_BYTES`] bytes**: the id is a
//!   client id like any other (logs, the audit log, the store);
//! - **a host whose last label starts with a digit must be a dotted-quad IPv4 address**: resolvers
//!   read `2130706433` or `0x7f.1` as IPv4 addresses (WHATWG URL's IPv4 parser does too).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::input::MAX_IDENTIFIER_BYTES;

/// Which rule a `client_id` URL breaks; safe to show (it never quotes the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlRule {
    TooLong,
    /// Space, control or non-ASCII characters.
    Characters,
    NotHttps,
    NotLowercase,
    NoAuthority,
    Userinfo,
    Host,
    Port,
    NoPath,
    PathCharacters,
    DotSegment,
    Query,
    Fragment,
}

impl fmt::Display for UrlRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLong => "it is longer than 256 bytes",
            Self::Characters => "it holds spaces, control or non-ASCII characters",
            Self::NotHttps => "its scheme must be https",
            Self::NotLowercase => "its scheme and host must be in lowercase",
            Self::NoAuthority => "it must be https://HOST/PATH",
            Self::Userinfo => "it must not contain a username or password",
            Self::Host => "its host is not a valid DNS name or IP address",
            Self::Port => "its port is not a number from 1 to 65535 without leading zeros",
            Self::NoPath => "it must have a path other than /",
            Self::PathCharacters => "its path holds characters a URL path may not",
            Self::DotSegment => "its path must not contain . or .. segments",
            Self::Query => "it must not contain a query string",
            Self::Fragment => "it must not contain a fragment (#)",
        })
    }
}

/// The host of a client identifier URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, lowercase, no trailing dot.
    Name(String),
    Ip(IpAddr),
}

/// A `client_id` that passed [`parse`]: the exact string, and its parts for the fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdUrl {
    raw: String,
    host: Host,
    port: u16,
    /// `host[:port]` exactly as written: the `Host` header.
    authority: String,
    path: String,
}

impl ClientIdUrl {
    /// The URL exactly as given: the client id, and what the document's `client_id` must equal.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
    pub fn host(&self) -> &Host {
        &self.host
    }
    /// The host as a user reads it (`app.example.com`, `127.0.0.1`, `::1`): what the consent
    /// page shows (draft "OAuth Phishing Attacks") and what domain lists match.
    pub fn host_str(&self) -> String {
        match &self.host {
            Host::Name(n) => n.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn authority(&self) -> &str {
        &self.authority
    }
    /// The path (the request target of the `GET`).
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Checks `s` against the rules of the module doc.
pub fn parse(s: &str) -> Result<ClientIdUrl, UrlRule> {
    if s.len() > MAX_IDENTIFIER_BYTES {
        return Err(UrlRule::TooLong);
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UrlRule::Characters);
    }
    let (scheme, rest) = s.split_once(':').ok_or(UrlRule::NotHttps)?;
    if scheme != "https" {
        return Err(if scheme.eq_ignore_ascii_case("https") {
            UrlRule::NotLowercase
        } else {
            UrlRule::NotHttps
        });
    }
    let rest = rest.strip_prefix("//").ok_or(UrlRule::NoAuthority)?;
    if rest.contains('#') {
        return Err(UrlRule::Fragment);
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_query) = rest.split_at(end);
    if authority.contains('@') {
        return Err(UrlRule::Userinfo);
    }
    let (host, port) = host_port(authority)?;
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    if query.is_some() {
        return Err(UrlRule::Query);
    }
    if path.len() <= 1 {
        return Err(UrlRule::NoPath);
    }
    check_path(path)?;
    Ok(ClientIdUrl {
        raw: s.to_string(),
        host,
        port,
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

fn host_port(authority: &str) -> Result<(Host, u16), UrlRule> {
    if authority.is_empty() {
        return Err(UrlRule::NoAuthority);
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or(UrlRule::Host)?;
            // Zone ids (`%25eth0`) and anything else `Ipv6Addr` does not read are refused.
            let ip: Ipv6Addr = addr.parse().map_err(|_| UrlRule::Host)?;
            if addr.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(UrlRule::NotLowercase);
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(UrlRule::Host)?),
            };
            (Host::Ip(IpAddr::V6(ip)), port)
        }
        None => {
            let (name, port) = match authority.split_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (authority, None),
            };
            (dns_or_ipv4(name)?, port)
        }
    };
    let port = match port {
        None => 443,
        Some(p) => {
            let ok = !p.is_empty()
                && p.len() <= 5
                && !p.starts_with('0')
                && p.bytes().all(|b| b.is_ascii_digit());
            match p.parse::<u16>() {
                Ok(n) if ok && n > 0 => n,
                _ => return Err(UrlRule::Port),
            }
        }
    };
    Ok((host, port))
}

/// A DNS name in preferred syntax (RFC 1123 §2.1: letters, digits, hyphens, 1 to 63 per label),
/// or a dotted-quad IPv4 address.
fn dns_or_ipv4(name: &str) -> Result<Host, UrlRule> {
    if name.is_empty() || name.len() > 253 {
        return Err(UrlRule::Host);
    }
    let last = name.rsplit('.').next().unwrap_or_default();
    if last.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return name
            .parse::<Ipv4Addr>()
            .map(|ip| Host::Ip(IpAddr::V4(ip)))
            .map_err(|_| UrlRule::Host);
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(UrlRule::Host);
        }
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(UrlRule::NotLowercase);
    }
    Ok(Host::Name(name.to_string()))
}

/// RFC 3986 §3.3: `/`-separated segments of pchars (unreserved, sub-delims, `:`, `@`, `%HH`);
/// no `.` or `..` segment, also not percent-encoded (`%2e`, RFC 3986 §6.2.2.2 decodes it).
fn check_path(path: &str) -> Result<(), UrlRule> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
            if hex.len() != 2 || !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(UrlRule::PathCharacters);
            }
            i += 3;
            continue;
        }
        let pchar = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if !pchar {
            return Err(UrlRule::PathCharacters);
        }
        i += 1;
    }
    for segment in path.split('/') {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return Err(UrlRule::DotSegment);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draft-03 "Client Identifier URL", each MUST and the SHOULD NOT this server makes a MUST.
    #[test]
    fn client_identifier_url_rules_of_the_draft() {
        let table: &[(&str, Result<(), UrlRule>)] = &[
            ("https://app.example.com/client.json", Ok(())),
            ("https://app.example.com:8443/oauth/client", Ok(())),
            ("https://127.0.0.1:4443/c.json", Ok(())),
            ("https://[::1]:4443/c.json", Ok(())),
            ("https://app.example.com/a/b%20c/d", Ok(())),
            // MUST have an "https" scheme.
            ("http://app.example.com/client.json", Err(UrlRule::NotHttps)),
            ("ftp://app.example.com/c", Err(UrlRule::NotHttps)),
            ("app.example.com/c", Err(UrlRule::NotHttps)),
            ("HTTPS://app.example.com/c", Err(UrlRule::NotLowercase)),
            ("https:app.example.com/c", Err(UrlRule::NoAuthority)),
            ("https:///c", Err(UrlRule::NoAuthority)),
            // MUST contain a path component (and this server: not only "/").
            ("https://app.example.com", Err(UrlRule::NoPath)),
            ("https://app.example.com/", Err(UrlRule::NoPath)),
            // MUST NOT contain single-dot or double-dot path segments.
            ("https://app.example.com/./c", Err(UrlRule::DotSegment)),
            ("https://app.example.com/a/../c", Err(UrlRule::DotSegment)),
            ("https://app.example.com/a/..", Err(UrlRule::DotSegment)),
            (
                "https://app.example.com/a/%2e%2E/c",
                Err(UrlRule::DotSegment),
            ),
            ("https://app.example.com/a/.%2e", Err(UrlRule::DotSegment)),
            // MUST NOT contain a fragment.
            ("https://app.example.com/c#x", Err(UrlRule::Fragment)),
            ("https://app.example.com/c#", Err(UrlRule::Fragment)),
            // MUST NOT contain a username or password.
            ("https://user@app.example.com/c", Err(UrlRule::Userinfo)),
            ("https://u:p@app.example.com/c", Err(UrlRule::Userinfo)),
            // SHOULD NOT include a query string: refused here.
            ("https://app.example.com/c?v=1", Err(UrlRule::Query)),
            ("https://app.example.com/c?", Err(UrlRule::Query)),
            // Normalized form only, so one document has one id.
            ("https://App.Example.com/c", Err(UrlRule::NotLowercase)),
            ("https://app.example.com./c", Err(UrlRule::Host)),
            ("https://app..example.com/c", Err(UrlRule::Host)),
            ("https://-app.example.com/c", Err(UrlRule::Host)),
            ("https://app_1.example.com/c", Err(UrlRule::Host)),
            ("https://app%2eexample.com/c", Err(UrlRule::Host)),
            ("https://2130706433/c", Err(UrlRule::Host)),
            ("https://0x7f.0.0.1/c", Err(UrlRule::Host)),
            ("https://127.1/c", Err(UrlRule::Host)),
            ("https://010.0.0.1/c", Err(UrlRule::Host)),
            ("https://[::1%25lo]/c", Err(UrlRule::Host)),
            ("https://[FE80::1]/c", Err(UrlRule::NotLowercase)),
            ("https://app.example.com:/c", Err(UrlRule::Port)),
            ("https://app.example.com:0/c", Err(UrlRule::Port)),
            ("https://app.example.com:0443/c", Err(UrlRule::Port)),
            ("https://app.example.com:65536/c", Err(UrlRule::Port)),
            ("https://app.example.com:x/c", Err(UrlRule::Port)),
            ("https://app.example.com/c d", Err(UrlRule::Characters)),
            ("https://app.example.com/c\u{e9}", Err(UrlRule::Characters)),
            ("https://app.example.com/c\n", Err(UrlRule::Characters)),
            ("https://app.example.com/c<x>", Err(UrlRule::PathCharacters)),
            ("https://app.example.com/c%zz", Err(UrlRule::PathCharacters)),
            ("https://app.example.com/c\\d", Err(UrlRule::PathCharacters)),
        ];
        for (url, want) in table {
            assert_eq!(parse(url).map(drop), *want, "{url}");
        }
        let long = format!("https://app.example.com/{}", "a".repeat(250));
        assert_eq!(parse(&long).map(drop), Err(UrlRule::TooLong));
    }

    #[test]
    fn the_parts_are_those_the_fetch_needs() {
        let u = parse("https://app.example.com:8443/oauth/client.json").unwrap();
        assert_eq!(u.as_str(), "https://app.example.com:8443/oauth/client.json");
        assert_eq!(u.host(), &Host::Name("app.example.com".into()));
        assert_eq!(u.port(), 8443);
        assert_eq!(u.authority(), "app.example.com:8443");
        assert_eq!(u.path(), "/oauth/client.json");
        let v6 = parse("https://[2001:db8::1]/c").unwrap();
        assert_eq!(v6.host_str(), "2001:db8::1");
        assert_eq!(v6.port(), 443);
        assert_eq!(v6.authority(), "[2001:db8::1]");
        let v4 = parse("https://192.0.2.7/c").unwrap();
        assert_eq!(v4.host(), &Host::Ip("192.0.2.7".parse().unwrap()));
    }
}
