//! Registered clients: the programs that call `/token`, `/introspect` and `/revoke`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::ClientConfig;

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
    pub audience: Option<String>,
    pub audiences: Option<Vec<String>>,
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
            audience: c.audience.clone(),
            audiences: c.audiences.clone(),
        })
    }

    /// The `aud` value of tokens meant for this client as a resource server.
    pub fn audience(&self) -> &str {
        self.audience.as_deref().unwrap_or(&self.client_id)
    }

    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
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

/// Every client, by id, loaded once at start.
#[derive(Debug, Default)]
pub struct Clients {
    by_id: HashMap<String, Arc<Client>>,
    /// The audiences of every resource server (clients with `introspect = true`).
    resource_audiences: Vec<String>,
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
        Self {
            by_id: list
                .into_iter()
                .map(|c| (c.client_id.clone(), Arc::new(c)))
                .collect(),
            resource_audiences,
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

    pub fn get(&self, id: &str) -> Option<Arc<Client>> {
        self.by_id.get(id).cloned()
    }

    pub fn resource_audiences(&self) -> &[String] {
        &self.resource_audiences
    }

    pub fn is_resource_audience(&self, aud: &str) -> bool {
        self.resource_audiences.iter().any(|a| a == aud)
    }

    /// The origins (RFC 6454) of every client's http(s) redirect URIs: where its browser-side
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
