//! The client metadata document (draft-03 "Client ID Metadata Document"; RFC 7591 §2 for the
//! members): a JSON object whose `client_id` equals the URL it was fetched from, read into a
//! [`ClientMetadata`] that holds only what this server uses, each value checked and bounded.
//!
//! - `client_id`: exactly the URL, byte for byte (draft: "simple string comparison", RFC 3986
//!   §6.2.1);
//! - `redirect_uris`: required and non-empty (the draft's "Redirect URL Registration" makes them
//!   the registered URIs; RFC 9700 §2.1 requires registration), each absolute without a fragment
//!   (RFC 6749 §3.1.2): `https`, `http` on a loopback host (RFC 8252 §7.3), or a private-use
//!   scheme named after a domain (RFC 8252 §7.1: it contains a `.`);
//! - no shared secret: `client_secret` and `client_secret_expires_at` MUST NOT be used, and
//!   `token_endpoint_auth_method` is absent or `none`. `private_key_jwt` (the draft allows it with
//!   `jwks`/`jwks_uri`) is refused for now: this server would have to fetch and cache `jwks_uri`
//!   under the same SSRF rules, which it does not yet;
//! - `grant_types` (default `authorization_code`, RFC 7591 §2) only `authorization_code` and
//!   `refresh_token`, with `authorization_code`; `response_types` (default `code`) only `code`;
//! - `client_name` at most [`MAX_NAME_CHARS`] characters without control or bidirectional-text
//!   control characters; `client_uri`
//!   and `logo_uri` `https` URLs of at most [`MAX_URI_BYTES`]; `scope` bounded;
//! - every other member is ignored (the draft: documents "MAY define additional properties").

use serde_json::{Map, Value};

use super::{ClientIdUrl, Refusal};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_URI_BYTES: usize = 1024;
pub const MAX_REDIRECT_URIS: usize = 20;
pub const MAX_SCOPE_BYTES: usize = 1024;

/// Which rule a document breaks; safe to show (member names and positions only, no values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentRule {
    #[error("its client_id is missing or is not exactly the URL it was fetched from")]
    ClientIdMismatch,
    #[error("redirect_uris is missing or empty")]
    NoRedirectUris,
    #[error("it lists more than {MAX_REDIRECT_URIS} redirect_uris")]
    TooManyRedirectUris,
    #[error("redirect_uris[{0}] {1}")]
    RedirectUri(usize, &'static str),
    #[error("client_secret and client_secret_expires_at must not be used")]
    ClientSecret,
    #[error(
        "token_endpoint_auth_method must be \"none\" (shared secrets are not possible, and private_key_jwt is not supported here yet)"
    )]
    AuthMethod,
    #[error(
        "grant_types may list only authorization_code and refresh_token, and must include authorization_code"
    )]
    GrantTypes,
    #[error("response_types may list only \"code\"")]
    ResponseTypes,
    #[error(
        "client_name must be a string of at most {MAX_NAME_CHARS} characters without control characters"
    )]
    ClientName,
    #[error("{0} must be an https URL of at most {MAX_URI_BYTES} bytes")]
    Uri(&'static str),
    #[error("scope must be a string of space-separated scope names")]
    Scope,
}

/// A grant a metadata-document client may use: it is a public client (RFC 6749 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// A validated client metadata document: a public client that signs users in with the
/// authorization code grant (and PKCE, which the caller requires of every public client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMetadata {
    /// The URL, which is the client's id.
    pub client_id: String,
    /// The host of the `client_id`: the consent page shows it always (draft "OAuth Phishing
    /// Attacks").
    pub host: String,
    /// Whether the host is on the operator's `cimd.allowed_domains`; otherwise the consent page
    /// marks the client as one the operator does not know.
    pub listed: bool,
    pub client_name: Option<String>,
    /// Exactly as in the document (registered URIs are compared as strings, RFC 9700 §2.1).
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    /// The scopes the client says it will ask for (RFC 7591 §2); a bound it sets itself, never
    /// a grant.
    pub scope: Option<String>,
}

impl ClientMetadata {
    /// Whether `requested` is one of the registered redirect URIs: the exact string (RFC 6749
    /// §3.1.2.3, RFC 9700 §2.1), except that a loopback IP literal redirect (`http://127.0.0.1`,
    /// `http://[::1]`) matches on any port (RFC 8252 §7.3: native apps get a port at run time).
    pub fn allows_redirect_uri(&self, requested: &str) -> bool {
        self.redirect_uris.iter().any(|r| {
            r == requested
                || matches!(
                    (loopback_ip_without_port(r), loopback_ip_without_port(requested)),
                    (Some(a), Some(b)) if a == b
                )
        })
    }

    /// Whether every redirect URI is on a loopback host (or a private-use scheme): anyone's
    /// local program can claim those, so the consent page warns (MCP 2026-07-28 "Localhost
    /// Redirect URI Risks").
    pub fn loopback_redirects_only(&self) -> bool {
        self.redirect_uris
            .iter()
            .all(|r| !matches!(redirect_kind(r), Ok(RedirectKind::Https)))
    }

    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g.as_str() == grant_type)
    }
}

/// `http://127.0.0.1:PORT/rest` → `http://127.0.0.1/rest`; `None` unless a loopback IP literal.
fn loopback_ip_without_port(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("http://")?;
    let (host, after) = if let Some(r) = rest.strip_prefix("[::1]") {
        ("[::1]", r)
    } else {
        ("127.0.0.1", rest.strip_prefix("127.0.0.1")?)
    };
    let after = match after.strip_prefix(':') {
        Some(p) => {
            let digits = p.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            p.get(digits..)?
        }
        None => after,
    };
    if !(after.is_empty() || after.starts_with(['/', '?'])) {
        return None;
    }
    Some(format!("http://{host}{after}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RedirectKind {
    Https,
    Loopback,
    PrivateUse,
}

/// RFC 8252 §7 and RFC 6749 §3.1.2: what a native or web client may register.
fn redirect_kind(uri: &str) -> Result<RedirectKind, &'static str> {
    if uri.is_empty() || uri.len() > MAX_URI_BYTES {
        return Err("is empty or longer than 1024 bytes");
    }
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("holds spaces, control or non-ASCII characters");
    }
    if uri.contains('#') {
        return Err("has a fragment (RFC 6749 §3.1.2)");
    }
    let (scheme, rest) = uri.split_once(':').ok_or("is not an absolute URI")?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !scheme_ok {
        return Err("has no valid lowercase scheme");
    }
    match scheme {
        "https" => match authority_host(rest) {
            Some(h) if !h.is_empty() => Ok(RedirectKind::Https),
            _ => Err("is not https://HOST/... without a username or password"),
        },
        "http" => match authority_host(rest) {
            Some("127.0.0.1" | "[::1]" | "localhost") => Ok(RedirectKind::Loopback),
            _ => Err("uses http on a host that is not loopback (RFC 8252 §7.3)"),
        },
        s if s.contains('.') && !rest.is_empty() => Ok(RedirectKind::PrivateUse),
        _ => Err(
            "has a scheme that is neither https, loopback http nor a private-use scheme named after a domain (RFC 8252 §7.1)",
        ),
    }
}

/// The host of `//host[:port]/...`, `None` if there is no authority or it holds userinfo.
fn authority_host(rest: &str) -> Option<&str> {
    let authority = rest.strip_prefix("//")?;
    let authority = authority.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return None;
    }
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        return authority.get(..=end);
    }
    Some(authority.split(':').next().unwrap_or_default())
}

fn https_uri(doc: &Map<String, Value>, member: &'static str) -> Result<Option<String>, Refusal> {
    let bad = || Refusal::Document(DocumentRule::Uri(member));
    match doc.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_URI_BYTES => match redirect_kind(s) {
            Ok(RedirectKind::Https) => Ok(Some(s.clone())),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// Reads and checks a fetched document. `listed` is the domain lists' word on the host.
pub fn validate(url: &ClientIdUrl, body: &[u8], listed: bool) -> Result<ClientMetadata, Refusal> {
    let doc: Map<String, Value> = serde_json::from_slice(body).map_err(|_| Refusal::NotJson)?;
    let rule = |r: DocumentRule| Refusal::Document(r);
    if doc.get("client_id").and_then(Value::as_str) != Some(url.as_str()) {
        return Err(rule(DocumentRule::ClientIdMismatch));
    }
    if doc.contains_key("client_secret") || doc.contains_key("client_secret_expires_at") {
        return Err(rule(DocumentRule::ClientSecret));
    }
    match doc.get("token_endpoint_auth_method") {
        None => {}
        Some(Value::String(m)) if m == "none" => {}
        Some(_) => return Err(rule(DocumentRule::AuthMethod)),
    }
    let redirect_uris = match doc.get("redirect_uris") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        _ => return Err(rule(DocumentRule::NoRedirectUris)),
    };
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(rule(DocumentRule::TooManyRedirectUris));
    }
    let redirect_uris = redirect_uris
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let s = v
                .as_str()
                .ok_or(rule(DocumentRule::RedirectUri(i, "is not a string")))?;
            redirect_kind(s).map_err(|why| rule(DocumentRule::RedirectUri(i, why)))?;
            Ok(s.to_string())
        })
        .collect::<Result<Vec<_>, Refusal>>()?;
    let grant_types = match doc.get("grant_types") {
        None => vec![GrantType::AuthorizationCode],
        Some(Value::Array(list)) => {
            let grants = list
                .iter()
                .map(|g| match g.as_str() {
                    Some("authorization_code") => Ok(GrantType::AuthorizationCode),
                    Some("refresh_token") => Ok(GrantType::RefreshToken),
                    _ => Err(rule(DocumentRule::GrantTypes)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if !grants.contains(&GrantType::AuthorizationCode) {
                return Err(rule(DocumentRule::GrantTypes));
            }
            let mut unique = Vec::new();
            for g in grants {
                if !unique.contains(&g) {
                    unique.push(g);
                }
            }
            unique
        }
        Some(_) => return Err(rule(DocumentRule::GrantTypes)),
    };
    match doc.get("response_types") {
        None => {}
        Some(Value::Array(list)) if list.iter().all(|r| r.as_str() == Some("code")) => {}
        Some(_) => return Err(rule(DocumentRule::ResponseTypes)),
    }
    let client_name = match doc.get("client_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n))
            if !n.trim().is_empty()
                && n.chars().count() <= MAX_NAME_CHARS
                && !n
                    .chars()
                    .any(|c| c.is_control() || crate::input::is_invisible(c)) =>
        {
            Some(n.clone())
        }
        Some(_) => return Err(rule(DocumentRule::ClientName)),
    };
    let scope = match doc.get("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if s.len() <= MAX_SCOPE_BYTES
                && s.bytes()
                    .all(|b| b == b' ' || (b.is_ascii_graphic() && b != b'"' && b != b'\\')) =>
        {
            Some(s.clone())
        }
        Some(_) => return Err(rule(DocumentRule::Scope)),
    };
    Ok(ClientMetadata {
        client_id: url.as_str().to_string(),
        host: url.host_str(),
        listed,
        client_name,
        redirect_uris,
        grant_types,
        client_uri: https_uri(&doc, "client_uri")?,
        logo_uri: https_uri(&doc, "logo_uri")?,
        scope,
    })
}

#[cfg(test)]
mod tests;
