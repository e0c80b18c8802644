//! RFC 7591 §2 client metadata, checked against the operator's policy: what a client that
//! registers itself may be. Unknown members are ignored (RFC 7591 §2); the members used are
//! bounded in length and count; the answer is `invalid_redirect_uri` or
//! `invalid_client_metadata` (RFC 7591 §3.2.2) naming the member and what is allowed.

use serde_json::{Map, Value};

use crate::config::RegistrationConfig;
use crate::input::{Field, origin_of, text};
use crate::oauth::client::{ApplicationType, Client, Provenance, loopback_without_port};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::request::{AUTHORIZATION_CODE, CLIENT_CREDENTIALS};

/// Most redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 10;
/// Longest redirect URI, in bytes.
pub const MAX_URI_BYTES: usize = 512;
/// Longest `client_name`, in bytes.
pub const MAX_NAME_BYTES: usize = 100;
/// Longest `scope`, in bytes.
pub const MAX_SCOPE_BYTES: usize = 1000;
/// Most entries of `grant_types` or `response_types`.
pub const MAX_TYPES: usize = 8;
/// Largest registration request body, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The operator's `[registration]`, in the form the checks use.
#[derive(Debug, Clone)]
pub struct Policy {
    pub grant_types: Vec<String>,
    pub confidential: bool,
    pub native: bool,
    pub web: bool,
    pub allow_localhost: bool,
    pub scopes: Vec<String>,
    pub per_address_limit: u64,
    /// Seconds.
    pub per_address_window: i64,
    pub max_clients: u64,
    /// Seconds.
    pub expire_unused_after: i64,
}

/// A registration that passed the policy: the client to store (its id and secret are the
/// registry's to make) and the metadata to answer with (RFC 7591 §3.2.1).
#[derive(Debug)]
pub struct Accepted {
    pub client: Client,
    pub metadata: Map<String, Value>,
}

fn metadata_error(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, d)
}

fn redirect_error(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRedirectUri, d)
}

/// The string member `name`, if present: checked like any untrusted text, at most `max` bytes.
fn string<'a>(
    o: &'a Map<String, Value>,
    name: &str,
    max: usize,
) -> Result<Option<&'a str>, OAuthError> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            text(|| Field::json(name), s).map_err(|e| metadata_error(e.to_string()))?;
            if s.len() > max {
                return Err(metadata_error(format!(
                    "`{name}` is longer than {max} bytes"
                )));
            }
            Ok(Some(s))
        }
        Some(_) => Err(metadata_error(format!("`{name}` must be a string"))),
    }
}

/// The array-of-strings member `name`, if present: at most `count` entries of `max` bytes.
fn strings<'a>(
    o: &'a Map<String, Value>,
    name: &str,
    count: usize,
    max: usize,
) -> Result<Option<Vec<&'a str>>, OAuthError> {
    let list = match o.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(metadata_error(format!(
                "`{name}` must be an array of strings"
            )));
        }
    };
    if list.len() > count {
        return Err(metadata_error(format!(
            "`{name}` has more than {count} entries"
        )));
    }
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        let Value::String(s) = v else {
            return Err(metadata_error(format!(
                "`{name}` must be an array of strings"
            )));
        };
        text(|| Field::json(name), s).map_err(|e| metadata_error(e.to_string()))?;
        if s.len() > max {
            return Err(metadata_error(format!(
                "an entry of `{name}` is longer than {max} bytes"
            )));
        }
        if !out.contains(&s.as_str()) {
            out.push(s.as_str());
        }
    }
    Ok(Some(out))
}

/// Whether the host of `origin` (`https://host[:port]`) is this machine: such a redirect URI
/// is a native app's, never a web client's.
fn is_loopback_host(origin: &str) -> bool {
    let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
    let host = match authority.find(']') {
        Some(i) => authority.get(1..i).unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host.ends_with(".localhost")
        || (host.parse::<std::net::IpAddr>())
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// RFC 8252 §7.1: a private-use URI scheme in reverse domain name form (it has a dot), so
/// `javascript:`, `data:`, `file:` and other schemes browsers act on never qualify.
fn private_use_scheme(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    scheme.contains('.')
        && !scheme.starts_with('.')
        && !scheme.ends_with('.')
        && scheme.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+'
        })
        && scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase())
        && !rest.is_empty()
}

/// What kind of redirect URI `uri` is, if it is one a client may register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RedirectKind {
    /// `http` on a loopback IP literal (RFC 8252 §7.3) ...
    Loopback,
    /// ... or on `localhost` (§8.3: NOT RECOMMENDED, allowed by `allow_localhost`).
    Localhost,
    /// A private-use scheme (RFC 8252 §7.1).
    PrivateUse,
    /// `https` on a host that is not this machine.
    Https,
}

fn redirect_kind(uri: &str) -> Result<RedirectKind, OAuthError> {
    // RFC 6749 §3.1.2: an absolute URI without a fragment.
    if uri.contains('#') || uri.chars().any(char::is_whitespace) {
        return Err(redirect_error(
            "a redirect URI may have no fragment and no spaces (RFC 6749 §3.1.2)",
        ));
    }
    if let Some((host, _)) = loopback_without_port(uri) {
        return Ok(if host == "localhost" {
            RedirectKind::Localhost
        } else {
            RedirectKind::Loopback
        });
    }
    if uri.starts_with("https://") {
        let origin = origin_of(uri).ok_or_else(|| {
            redirect_error("a redirect URI is not a valid https URI (host, port, no userinfo)")
        })?;
        if is_loopback_host(&origin) {
            return Err(redirect_error(
                "an https redirect URI must not name this machine; a native app uses \
                 http://127.0.0.1 with any port (RFC 8252 §7.3)",
            ));
        }
        return Ok(RedirectKind::Https);
    }
    if uri.starts_with("http:") {
        return Err(redirect_error(
            "an http redirect URI must be a loopback one, http://127.0.0.1 or http://[::1] \
             (RFC 8252 §7.3); anything else must be https",
        ));
    }
    if private_use_scheme(uri) {
        return Ok(RedirectKind::PrivateUse);
    }
    Err(redirect_error(
        "a redirect URI must be https, http loopback (RFC 8252 §7.3), or a private-use scheme \
         in reverse domain form such as com.example.app:/callback (RFC 8252 §7.1)",
    ))
}

impl Policy {
    pub fn from_config(c: &RegistrationConfig) -> Self {
        Self {
            grant_types: c.grant_types.clone(),
            confidential: c.confidential,
            native: c.application_types.iter().any(|t| t == "native"),
            web: c.application_types.iter().any(|t| t == "web"),
            allow_localhost: c.allow_localhost,
            scopes: c.scopes.clone(),
            per_address_limit: u64::from(c.per_address_limit),
            per_address_window: c.per_address_window.as_secs() as i64,
            max_clients: u64::from(c.max_clients),
            expire_unused_after: c.expire_unused_after.as_secs() as i64,
        }
    }

    /// RFC 7591 §2, §3.2.2: the client `request` (the JSON body) asks to be, within the policy.
    pub fn accept(&self, request: &Value) -> Result<Accepted, OAuthError> {
        let Value::Object(o) = request else {
            return Err(metadata_error(
                "the body must be a JSON object (RFC 7591 §3.1)",
            ));
        };
        // RFC 7591 §2: `token_endpoint_auth_method` defaults to client_secret_basic.
        let asked_method =
            string(o, "token_endpoint_auth_method", 64)?.unwrap_or("client_secret_basic");
        if !matches!(
            asked_method,
            "none" | "client_secret_basic" | "client_secret_post"
        ) {
            return Err(metadata_error(
                "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post",
            ));
        }
        // RFC 7591 §2: `grant_types` defaults to authorization_code.
        let grants =
            strings(o, "grant_types", MAX_TYPES, 128)?.unwrap_or_else(|| vec![AUTHORIZATION_CODE]);
        if grants.is_empty() {
            return Err(metadata_error(
                "grant_types must name at least one grant type",
            ));
        }
        for g in &grants {
            if !self.grant_types.iter().any(|a| a == g) {
                return Err(metadata_error(format!(
                    "grant type `{g}` may not be registered here; allowed: {}",
                    self.grant_types.join(", ")
                )));
            }
        }
        let code_flow = grants.contains(&AUTHORIZATION_CODE);
        // RFC 7591 §3.2.1: the server may replace a requested value. A client that asked for a
        // secret where confidential clients may not register becomes public (the answer says
        // `none`), unless it asked for a grant only a confidential client may hold.
        let confidential = asked_method != "none" && self.confidential;
        let method = if confidential { asked_method } else { "none" };
        if !confidential && grants.contains(&CLIENT_CREDENTIALS) {
            return Err(metadata_error(if self.confidential {
                "client_credentials needs a confidential client: ask for client_secret_basic or client_secret_post"
            } else {
                "client_credentials needs a confidential client, and only public clients may register here"
            }));
        }
        // RFC 7591 §2.1: response_types and grant_types agree; only `code` exists here.
        let responses = strings(o, "response_types", MAX_TYPES, 64)?
            .unwrap_or_else(|| if code_flow { vec!["code"] } else { vec![] });
        if responses.iter().any(|r| *r != "code") {
            return Err(metadata_error("response_types may only be `code`"));
        }
        if responses.contains(&"code") != code_flow {
            return Err(metadata_error(
                "response_types `code` goes with grant type authorization_code, and only with it (RFC 7591 §2.1)",
            ));
        }
        let redirect_uris = strings(o, "redirect_uris", MAX_REDIRECT_URIS, MAX_URI_BYTES)
            .map_err(|e| OAuthError::new(ErrorCode::InvalidRedirectUri, e.description))?
            .unwrap_or_default();
        if code_flow && redirect_uris.is_empty() {
            return Err(redirect_error(
                "redirect_uris is required for the authorization_code grant (RFC 7591 §2)",
            ));
        }
        let kinds = redirect_uris
            .iter()
            .map(|u| redirect_kind(u))
            .collect::<Result<Vec<_>, _>>()?;
        // `application_type` (OpenID Connect Registration §2; RFC 7591 does not define it):
        // absent, a client whose every redirect URI is a native app's is native, else web.
        let app_type = match string(o, "application_type", 16)? {
            Some("native") => ApplicationType::Native,
            Some("web") => ApplicationType::Web,
            Some(_) => return Err(metadata_error("application_type must be native or web")),
            None if !kinds.is_empty() && kinds.iter().all(|k| *k != RedirectKind::Https) => {
                ApplicationType::Native
            }
            None => ApplicationType::Web,
        };
        let allowed_type = match app_type {
            ApplicationType::Native => self.native,
            ApplicationType::Web => self.web,
        };
        if !allowed_type {
            return Err(metadata_error(format!(
                "application_type {} may not register here",
                app_type.as_str()
            )));
        }
        for k in &kinds {
            match (app_type, k) {
                (ApplicationType::Web, RedirectKind::Https) => {}
                (ApplicationType::Web, _) => {
                    return Err(redirect_error(
                        "a web client's redirect URIs must be https on a host that is not this \
                         machine (register as application_type native for loopback or \
                         private-use redirects)",
                    ));
                }
                (ApplicationType::Native, RedirectKind::Localhost) if !self.allow_localhost => {
                    return Err(redirect_error(
                        "use http://127.0.0.1 or http://[::1] rather than localhost (RFC 8252 §8.3)",
                    ));
                }
                (ApplicationType::Native, _) => {}
            }
        }
        // Scopes: within the policy's; none asked means all of them.
        let scopes: Vec<String> = match string(o, "scope", MAX_SCOPE_BYTES)? {
            None => self.scopes.clone(),
            Some(s) => {
                let mut v: Vec<String> = Vec::new();
                for scope in s.split(' ').filter(|x| !x.is_empty()) {
                    if !self.scopes.iter().any(|a| a == scope) {
                        return Err(metadata_error(if self.scopes.is_empty() {
                            format!(
                                "scope `{scope}` may not be registered: registered clients may hold no scopes here"
                            )
                        } else {
                            format!(
                                "scope `{scope}` may not be registered; allowed: {}",
                                self.scopes.join(" ")
                            )
                        }));
                    }
                    if !v.iter().any(|x| x == scope) {
                        v.push(scope.to_string());
                    }
                }
                v
            }
        };
        let client_name = string(o, "client_name", MAX_NAME_BYTES)?
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        // The consent page shows the name: no line breaks, and none of the invisible characters
        // that reorder or hide text, so it reads as what it is.
        if (client_name.as_deref()).is_some_and(|n| {
            n.chars()
                .any(|c| c.is_control() || crate::input::is_invisible(c))
        }) {
            return Err(metadata_error(
                "client_name may not contain line breaks, tabs, or invisible or bidirectional formatting characters",
            ));
        }
        // RFC 9449 §5.2: a client that asks for DPoP-bound tokens gets only those.
        let dpop_bound = match o.get("dpop_bound_access_tokens") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => {
                return Err(metadata_error(
                    "dpop_bound_access_tokens must be true or false (RFC 9449 section 5.2)",
                ));
            }
        };
        let grant_types: Vec<String> = grants.iter().map(|g| g.to_string()).collect();
        let redirect_uris: Vec<String> = redirect_uris.iter().map(|u| u.to_string()).collect();
        let mut metadata = Map::new();
        metadata.insert("redirect_uris".into(), redirect_uris.clone().into());
        metadata.insert("token_endpoint_auth_method".into(), method.into());
        metadata.insert("grant_types".into(), grant_types.clone().into());
        metadata.insert("response_types".into(), responses.clone().into());
        metadata.insert("application_type".into(), app_type.as_str().into());
        if !scopes.is_empty() {
            metadata.insert("scope".into(), scopes.join(" ").into());
        }
        if let Some(n) = &client_name {
            metadata.insert("client_name".into(), n.clone().into());
        }
        if dpop_bound {
            metadata.insert("dpop_bound_access_tokens".into(), true.into());
        }
        let client = Client {
            client_id: String::new(),
            secret_hash: None,
            jwks: None,
            public: !confidential,
            grant_types,
            redirect_uris,
            scopes,
            introspect: false,
            ssf_receiver: false,
            audience: None,
            audiences: None,
            provenance: Provenance::Registered,
            client_name,
            application_type: Some(app_type),
            dpop: if dpop_bound {
                crate::oauth::dpop::Mode::Required
            } else {
                crate::oauth::dpop::Mode::Allowed
            },
        };
        Ok(Accepted { client, metadata })
    }
}
