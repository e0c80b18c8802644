//! Clients: the programs that call `/authorize`, `/token`, `/introspect` and `/revoke`.
//!
//! [`Clients`] resolves a `client_id` from its sources in order: the config's clients (in
//! memory, loaded at start), then a [`ClientSource`] plugged in for the rest: clients that
//! registered themselves (RFC 7591, `oauth::registration`, read from the database on every
//! lookup so that a registration or deletion on any replica counts at once), and, for ids that
//! are https URLs, a Client ID Metadata Document resolver when one is plugged in.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::ClientConfig;
use crate::store::StoreError;

/// Where a client comes from: what the operator declared, or what a client registered itself.
/// The consent page marks clients the operator does not know.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// `[[clients]]` in the config file.
    #[default]
    Config,
    /// RFC 7591 dynamic registration at `/register`.
    Registered,
    /// A Client ID Metadata Document at its `client_id` URL (`oauth::documents`); `listed`
    /// when its host is on the operator's `cimd.allowed_domains`. Never stored.
    Document { listed: bool },
}

/// RFC 7591 §2 / OpenID Connect Registration §2 `application_type`: which redirect URIs a
/// client may use (RFC 8252 for native apps).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationType {
    Native,
    Web,
}

impl ApplicationType {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationType::Native => "native",
            ApplicationType::Web => "web",
        }
    }
}

/// A client as stored (JSON in the `clients` table). Secrets only as argon2id hashes.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Client {
    pub client_id: String,
    pub secret_hash: Option<String>,
    pub jwks: Option<serde_json::Value>,
    pub public: bool,
    pub grant_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub introspect: bool,
    /// May manage its own Shared Signals streams (only a configured client: `ssf_receiver`).
    #[serde(default)]
    pub ssf_receiver: bool,
    pub audience: Option<String>,
    pub audiences: Option<Vec<String>>,
    /// Config or self-registered (records stored before this field read as config).
    #[serde(default)]
    pub provenance: Provenance,
    /// RFC 7591 `client_name`, as the client gave it: shown (escaped) on the consent page.
    #[serde(default)]
    pub client_name: Option<String>,
    /// Set for registered clients: a native client's loopback redirect URIs match with any
    /// port (RFC 8252 §7.3).
    #[serde(default)]
    pub application_type: Option<ApplicationType>,
    /// RFC 9449: whether this client's tokens are bound to the key of its DPoP proofs.
    #[serde(default)]
    pub dpop: crate::oauth::dpop::Mode,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the stored form of a configured client, hashing a development plain secret.
    pub fn from_config(c: &ClientConfig) -> Result<Self, argon2::password_hash::Error> {
        let secret_hash = match (&c.client_secret, &c.client_secret_hash) {
            (Some(plain), _) => Some(hash_secret(plain)?),
            (None, Some(h)) => Some(h.clone()),
            (None, None) => None,
        };
        Ok(Self {
            client_id: c.client_id.clone(),
            secret_hash,
            jwks: c.jwks.clone(),
            public: c.public,
            grant_types: c.grant_types.clone(),
            redirect_uris: c.redirect_uris.clone(),
            scopes: c.scopes.clone(),
            introspect: c.introspect,
            ssf_receiver: c.ssf_receiver,
            audience: c.audience.clone(),
            audiences: c.audiences.clone(),
            provenance: Provenance::Config,
            client_name: None,
            application_type: None,
            // Validated at load; anything else fails closed.
            dpop: (c.dpop.clone())
                .map_or(Ok(Default::default()), crate::oauth::dpop::Mode::try_from)
                .unwrap_or(crate::oauth::dpop::Mode::Required),
        })
    }

    /// Whether the client registered itself rather than being declared by the operator.
    pub fn is_registered(&self) -> bool {
        self.provenance == Provenance::Registered
    }

    /// Whether the client describes itself in a metadata document at its `client_id` URL.
    pub fn is_document(&self) -> bool {
        matches!(self.provenance, Provenance::Document { .. })
    }

    /// Whether the operator vouches for the client: configured it, or allowed its document's
    /// host. The consent page warns about every other client.
    pub fn known_to_operator(&self) -> bool {
        matches!(
            self.provenance,
            Provenance::Config | Provenance::Document { listed: true }
        )
    }

    /// Whether every redirect URI returns to this machine (http loopback or a private-use
    /// scheme): any local program that takes the port or scheme gets the code, so the consent
    /// page says so (MCP authorization "Localhost Redirect URI Risks").
    pub fn redirects_only_locally(&self) -> bool {
        !self.redirect_uris.is_empty()
            && (self.redirect_uris.iter()).all(|r| !r.starts_with("https://"))
    }

    /// Whether `presented` is one of the client's redirect URIs: compared as exact strings
    /// (RFC 6749 §3.1.2.3, RFC 9700 §2.1), except that for a native client a loopback
    /// redirect URI matches with any port, which the app picks when it runs (RFC 8252 §7.3).
    pub fn redirect_uri_matches(&self, presented: &str) -> bool {
        if self.redirect_uris.iter().any(|r| r == presented) {
            return true;
        }
        if self.application_type != Some(ApplicationType::Native) {
            return false;
        }
        let Some(asked) = loopback_without_port(presented) else {
            return false;
        };
        (self.redirect_uris.iter())
            .filter_map(|r| loopback_without_port(r))
            .any(|r| r == asked)
    }

    /// The `aud` value of tokens meant for this client as a resource server.
    pub fn audience(&self) -> &str {
        self.audience.as_deref().unwrap_or(&self.client_id)
    }

    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

/// An `http` loopback redirect URI (RFC 8252 §7.3: `127.0.0.1`, `[::1]`, or `localhost`, §8.3)
/// split around its port: `(host, path-and-query)`. `None` for anything else, including a
/// port that is not 1 to 5 digits, userinfo, or a fragment.
pub fn loopback_without_port(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let host = ["127.0.0.1", "[::1]", "localhost"]
        .into_iter()
        .find(|h| rest.starts_with(h))?;
    let after = rest.get(host.len()..)?;
    let (port, tail) = match after.strip_prefix(':') {
        Some(p) => {
            let end = p.find(['/', '?']).unwrap_or(p.len());
            (p.get(..end)?, p.get(end..)?)
        }
        None => ("", after),
    };
    let port_ok = port.is_empty() || (port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()));
    let tail_ok = tail.is_empty() || tail.starts_with('/') || tail.starts_with('?');
    (port_ok && tail_ok && !tail.contains('#')).then_some((host, tail))
}

/// Why a client could not be looked up (an unknown client is `Ok(None)`, not an error).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The source could not answer (the database): logged, answered as a server error.
    #[error("client lookup: {0}")]
    Store(#[from] StoreError),
    /// The source refuses the client, with a reason safe to show (a Client ID Metadata
    /// Document that does not validate, say).
    #[error("{0}")]
    Refused(Cow<'static, str>),
}

/// A place clients come from besides the config: asked, in [`Clients::find`], for ids the
/// config does not know. Each answers for its own ids and `Ok(None)` for the rest.
#[async_trait]
pub trait ClientSource: Send + Sync {
    async fn find(&self, client_id: &str) -> Result<Option<Arc<Client>>, LookupError>;
}

/// argon2id with the crate's default (OWASP) parameters, as a PHC string.
pub fn hash_secret(plain: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&crate::crypto::random_bytes::<16>())?;
    Ok(argon2::Argon2::default()
        .hash_password(plain.as_bytes(), &salt)?
        .to_string())
}

/// argon2id (default parameters, the same cost as real hashes) of a secret nobody has: verified
/// for unknown users and clients so that their answer takes as long as a known one's.
pub const DECOY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$bWFuZGF0ZS1kZWNveS0wMQ$grgYj/MuLsIdTGyBPMPa/hIRT65QEulJijEmuPsznKI";

/// Constant-time argon2 verification of a presented secret against a PHC string.
pub fn verify_secret(plain: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(plain.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Every client: the config's, by id, loaded once at start, and the sources consulted after
/// them.
#[derive(Default)]
pub struct Clients {
    by_id: HashMap<String, Arc<Client>>,
    /// The audiences of every resource server (clients with `introspect = true`; only config
    /// clients can be one).
    resource_audiences: Vec<String>,
    /// The audiences of resource servers configured with `dpop = "required"`: every token
    /// for one of them must be DPoP-bound.
    dpop_audiences: Vec<String>,
    /// Clients that registered themselves (RFC 7591), when registration is enabled.
    registered: Option<Arc<dyn ClientSource>>,
    /// Clients whose id is an https URL naming their metadata document
    /// (draft-ietf-oauth-client-id-metadata-document), when a resolver is plugged in.
    documents: Option<Arc<dyn ClientSource>>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("configured", &self.by_id.len())
            .field("registered", &self.registered.is_some())
            .field("documents", &self.documents.is_some())
            .finish()
    }
}

impl Clients {
    pub fn new(list: Vec<Client>) -> Self {
        let mut resource_audiences: Vec<String> = list
            .iter()
            .filter(|c| c.introspect)
            .map(|c| c.audience().to_string())
            .collect();
        resource_audiences.sort();
        resource_audiences.dedup();
        let dpop_audiences = list
            .iter()
            .filter(|c| c.introspect && c.dpop == crate::oauth::dpop::Mode::Required)
            .map(|c| c.audience().to_string())
            .collect();
        Self {
            dpop_audiences,
            by_id: list
                .into_iter()
                .map(|c| (c.client_id.clone(), Arc::new(c)))
                .collect(),
            resource_audiences,
            registered: None,
            documents: None,
        }
    }

    /// Adds audiences that no introspecting client stands for: resource servers named by URL
    /// (`[[resources]]`), which may verify tokens against the JWKS alone.
    pub fn with_audiences(mut self, extra: impl IntoIterator<Item = String>) -> Self {
        self.resource_audiences.extend(extra);
        self.resource_audiences.sort();
        self.resource_audiences.dedup();
        self
    }

    /// Resolves ids the config does not know from the registered clients too.
    pub fn with_registered(mut self, source: Arc<dyn ClientSource>) -> Self {
        self.registered = Some(source);
        self
    }

    /// Resolves ids that are https URLs with a Client ID Metadata Document resolver.
    pub fn with_documents(mut self, source: Arc<dyn ClientSource>) -> Self {
        self.documents = Some(source);
        self
    }

    /// A client of the config (in memory; no other source is asked).
    pub fn configured(&self, id: &str) -> Option<Arc<Client>> {
        self.by_id.get(id).cloned()
    }

    /// The client `id` names, from the first source that knows it: the config, then the
    /// metadata-document resolver for an https URL, else the registered clients.
    pub async fn find(&self, id: &str) -> Result<Option<Arc<Client>>, LookupError> {
        if let Some(c) = self.by_id.get(id) {
            return Ok(Some(c.clone()));
        }
        let source = if id.starts_with("https://") {
            &self.documents
        } else {
            &self.registered
        };
        match source {
            Some(s) => s.find(id).await,
            None => Ok(None),
        }
    }

    pub fn resource_audiences(&self) -> &[String] {
        &self.resource_audiences
    }

    /// The audiences every token for which must be DPoP-bound (RFC 9449).
    pub fn dpop_audiences(&self) -> &[String] {
        &self.dpop_audiences
    }

    pub fn is_resource_audience(&self, aud: &str) -> bool {
        self.resource_audiences.iter().any(|a| a == aud)
    }

    /// The origins (RFC 6454) of every configured client's http(s) redirect URIs: where its browser-side
    /// code runs, so where it may call `/token` from (the CORS layer of the HTTP edge uses this).
    pub fn redirect_origins(&self) -> Vec<String> {
        let mut v: Vec<String> = (self.by_id.values())
            .flat_map(|c| c.redirect_uris.iter())
            .filter_map(|u| crate::input::origin_of(u))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every scope any client may be granted, for metadata `scopes_supported`.
    pub fn all_scopes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_id
            .values()
            .flat_map(|c| c.scopes.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(uris: &[&str]) -> Client {
        Client {
            client_id: "n".into(),
            secret_hash: None,
            jwks: None,
            public: true,
            grant_types: vec![],
            redirect_uris: uris.iter().map(|u| u.to_string()).collect(),
            scopes: vec![],
            introspect: false,
            ssf_receiver: false,
            audience: None,
            audiences: None,
            provenance: Provenance::Registered,
            client_name: None,
            application_type: Some(ApplicationType::Native),
            dpop: Default::default(),
        }
    }

    #[test]
    fn rfc8252_s7_3_a_native_clients_loopback_redirect_matches_with_any_port() {
        let c = native(&[
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb?x=1",
            "com.example.app:/cb",
        ]);
        for ok in [
            "http://127.0.0.1/cb",
            "http://127.0.0.1:51234/cb",
            "http://[::1]:1/cb?x=1",
            "http://[::1]/cb?x=1",
            "com.example.app:/cb",
        ] {
            assert!(c.redirect_uri_matches(ok), "{ok}");
        }
        for no in [
            "http://127.0.0.1:51234/cb/more",
            "http://127.0.0.1:51234/other",
            "http://127.0.0.1:x/cb",
            "http://127.0.0.1:123456/cb",
            "http://[::1]:1/cb",
            "http://localhost:1/cb",
            "https://127.0.0.1:1/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://127.0.0.1:1@evil.example/cb",
            "http://127.0.0.1:1/cb#f",
            "com.example.app:/cb2",
        ] {
            assert!(!c.redirect_uri_matches(no), "{no}");
        }
    }

    #[test]
    fn rfc6749_s3_1_2_3_other_clients_match_redirect_uris_exactly() {
        let mut c = native(&["http://127.0.0.1:9999/cb"]);
        c.application_type = Some(ApplicationType::Web);
        assert!(c.redirect_uri_matches("http://127.0.0.1:9999/cb"));
        assert!(!c.redirect_uri_matches("http://127.0.0.1:9998/cb"));
        c.application_type = None;
        assert!(!c.redirect_uri_matches("http://127.0.0.1:9998/cb"));
    }
}
