//! Client authentication (RFC 6749 §2.3): `client_secret_basic`, `client_secret_post`,
//! `private_key_jwt` (RFC 7523 §2.2, §3) and `none` for public clients.
//!
//! argon2id costs ~14 ms of CPU per check, too much for every request; a verified secret is
//! remembered for a few minutes under an HMAC of (client, stored hash, secret) with a key that
//! exists only in this process, so neither the secret nor an offline-guessable hash is kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::client::{Client, Clients, DECOY_PHC, LookupError};
use super::error::{ErrorCode, OAuthError};
use super::secret_check::{Busy, SecretChecks};
use crate::clock::SharedClock;
use crate::crypto::Keyed;
use crate::store::SharedStore;

pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const CACHE_TTL: i64 = 300;
const CACHE_MAX: usize = 10_000;
/// Longest lifetime accepted for a client assertion, which bounds how long its `jti` is kept.
const ASSERTION_MAX_LIFETIME: i64 = 3600;
const LEEWAY: i64 = 30;

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What the request presented, before anything is checked.
#[derive(Debug, Clone)]
pub enum Presented {
    Basic {
        client_id: String,
        secret: Secret,
    },
    Post {
        client_id: String,
        secret: Secret,
    },
    Assertion {
        assertion: Secret,
        client_id: Option<String>,
    },
    /// Only `client_id`: a public client.
    Public {
        client_id: String,
    },
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Basic,
    Post,
    PrivateKeyJwt,
    None,
}

pub struct Authenticated {
    pub client: Arc<Client>,
    pub method: Method,
}

pub struct ClientAuthenticator {
    clients: Arc<Clients>,
    store: SharedStore,
    clock: SharedClock,
    /// Accepted `aud` values of a client assertion.
    audiences: Vec<String>,
    keyed: Keyed,
    cache: Mutex<HashMap<[u8; 32], i64>>,
    /// The process-wide bound on argon2 (shared with sign-in): see [`SecretChecks`].
    checks: Arc<SecretChecks>,
    /// A P-256 key nobody holds: what an assertion of an unknown or keyless client is checked
    /// against, so it costs what a real check costs.
    decoy: DecodingKey,
    /// Checks under way, by cache tag, so concurrent requests with one secret share one.
    inflight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::OnceCell<bool>>>>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<serde_json::Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

fn bad_client(why: &'static str) -> OAuthError {
    OAuthError::invalid_client(why)
}

/// A client that could not be looked up: a server error (logged), or the source's refusal.
pub fn lookup_failed(e: LookupError) -> OAuthError {
    match e {
        LookupError::Store(e) => OAuthError::from(e),
        LookupError::Refused(why) => OAuthError::invalid_client(why),
    }
}

fn decoy_key() -> DecodingKey {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let point = secret.public_key().to_encoded_point(false);
    let b64 =
        |b: Option<&p256::FieldBytes>| crate::crypto::b64url(b.map_or(&[][..], |b| b.as_slice()));
    DecodingKey::from_ec_components(&b64(point.x()), &b64(point.y()))
        .unwrap_or_else(|_| DecodingKey::from_secret(&crate::crypto::random_bytes::<32>()))
}

/// The parts of a client assertion read before any key is known: its header, whose `alg` must
/// be one of the asymmetric algorithms accepted, and its `iss`, which must equal `sub`
/// (RFC 7523 §3). Nothing here is verified; the answer only says which client's keys to try.
/// Pure, over the caller's bytes, so it is fuzzed (`fuzz/fuzz_targets/client_assertion.rs`).
pub fn peek_assertion(jwt: &str) -> Result<(jsonwebtoken::Header, String), &'static str> {
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| "client_assertion is not a JWT")?;
    if !matches!(
        header.alg,
        Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::RS256
            | Algorithm::PS256
            | Algorithm::EdDSA
    ) {
        return Err("client_assertion must be signed with an asymmetric algorithm");
    }
    let peek: AssertionClaims = jsonwebtoken::dangerous::insecure_decode(jwt)
        .map_err(|_| "client_assertion claims are malformed")?
        .claims;
    let iss = peek.iss.ok_or("client_assertion has no `iss`")?;
    if peek.sub.as_deref() != Some(iss.as_str()) {
        return Err("client_assertion `sub` must equal `iss`, the client_id (RFC 7523 §3)");
    }
    Ok((header, iss))
}

/// RFC 7523 §3: the `aud` claim, a string or an array of strings, names one of `audiences`.
pub fn audience_ok(aud: Option<&serde_json::Value>, audiences: &[String]) -> bool {
    match aud {
        Some(serde_json::Value::String(a)) => audiences.contains(a),
        Some(serde_json::Value::Array(v)) => v
            .iter()
            .any(|a| a.as_str().is_some_and(|a| audiences.iter().any(|x| x == a))),
        _ => false,
    }
}

/// Too many secret checks are waiting for this client (or in all): nothing was checked, so the
/// answer says to retry, not that the secret is wrong.
pub fn busy(_: Busy) -> OAuthError {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "too many authentication attempts are being checked for this client right now; retry in a second",
    )
    .with_status(503)
}

impl ClientAuthenticator {
    pub fn new(
        clients: Arc<Clients>,
        store: SharedStore,
        clock: SharedClock,
        issuer: &str,
        checks: Arc<SecretChecks>,
    ) -> Self {
        Self {
            clients,
            store,
            clock,
            audiences: vec![
                issuer.to_string(),
                format!("{issuer}/token"),
                format!("{issuer}/introspect"),
                format!("{issuer}/revoke"),
            ],
            keyed: Keyed::random(),
            cache: Mutex::new(HashMap::new()),
            checks,
            decoy: decoy_key(),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    #[tracing::instrument(level = "debug", name = "client_auth", skip_all)]
    pub async fn authenticate(&self, presented: Presented) -> Result<Authenticated, OAuthError> {
        match presented {
            Presented::Nothing => Err(bad_client("client authentication is required")),
            Presented::Public { client_id } => {
                let found = self.clients.find(&client_id).await.map_err(lookup_failed)?;
                let client = found.filter(|c| c.public).ok_or_else(|| {
                    bad_client("client authentication failed: unknown client, or a confidential client without credentials")
                })?;
                Ok(Authenticated {
                    client,
                    method: Method::None,
                })
            }
            Presented::Basic { client_id, secret } => {
                let client = self.check_secret(&client_id, &secret).await?;
                Ok(Authenticated {
                    client,
                    method: Method::Basic,
                })
            }
            Presented::Post { client_id, secret } => {
                let client = self.check_secret(&client_id, &secret).await?;
                Ok(Authenticated {
                    client,
                    method: Method::Post,
                })
            }
            Presented::Assertion {
                assertion,
                client_id,
            } => {
                let client = self
                    .check_assertion(&assertion.0, client_id.as_deref())
                    .await?;
                Ok(Authenticated {
                    client,
                    method: Method::PrivateKeyJwt,
                })
            }
        }
    }

    async fn check_secret(
        &self,
        client_id: &str,
        secret: &Secret,
    ) -> Result<Arc<Client>, OAuthError> {
        const FAILED: &str = "client authentication failed: unknown client or wrong secret";
        let client = self.clients.find(client_id).await.map_err(lookup_failed)?;
        let hash = client.as_ref().and_then(|c| c.secret_hash.clone());
        let Some(hash) = hash else {
            // Same cost as a real check, so timing does not reveal which client ids exist;
            // every unknown id shares one key of the bound.
            self.checks
                .verify("client:?", &secret.0, DECOY_PHC)
                .await
                .map_err(busy)?;
            return Err(bad_client(FAILED));
        };
        let client = client.ok_or_else(|| bad_client(FAILED))?;
        let now = self.clock.now();
        let tag = self
            .keyed
            .tag(&[client_id.as_bytes(), hash.as_bytes(), secret.0.as_bytes()]);
        if self.cache_lookup(&tag, now) {
            return Ok(client);
        }
        // Requests presenting the same secret at once (a client opening many connections on a
        // cold cache) share one check; only distinct secrets count against the bound.
        let cell = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(inflight.entry(tag).or_default())
        };
        let key = format!("client:{client_id}");
        let checked = cell
            .get_or_try_init(|| self.checks.verify(&key, &secret.0, &hash))
            .await
            .copied();
        {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if inflight.get(&tag).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                inflight.remove(&tag);
            }
        }
        if !checked.map_err(busy)? {
            return Err(bad_client(FAILED));
        }
        self.cache_insert(tag, now + CACHE_TTL);
        Ok(client)
    }

    fn cache_lookup(&self, tag: &[u8; 32], now: i64) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(tag).is_some_and(|exp| *exp > now)
    }

    fn cache_insert(&self, tag: [u8; 32], exp: i64) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(tag, exp);
    }

    /// RFC 7523 §3: `iss` = `sub` = client_id, `aud` names this server, `exp` in the future,
    /// `jti` used once, signed by a key in the client's registered JWK Set.
    async fn check_assertion(
        &self,
        jwt: &str,
        client_id: Option<&str>,
    ) -> Result<Arc<Client>, OAuthError> {
        let (header, iss) = peek_assertion(jwt).map_err(bad_client)?;
        let iss = iss.as_str();
        if client_id.is_some_and(|c| c != iss) {
            return Err(bad_client(
                "client_id does not match the client_assertion issuer",
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        // An unknown client, a client without keys and a wrong signature get one answer after
        // one signature check (against a decoy key when there is no real one), so the answer
        // does not say which client ids exist or have keys.
        const NOT_VERIFIED: &str = "client authentication failed: the client_assertion does not \
             verify as that client's (unknown client, no registered keys, or wrong signature)";
        let client = self.clients.find(iss).await.map_err(lookup_failed)?;
        let jwks: Option<JwkSet> = client
            .as_ref()
            .and_then(|c| c.jwks.clone())
            .and_then(|v| serde_json::from_value(v).ok());
        let (Some(client), Some(jwks)) = (client, jwks) else {
            let _ = jsonwebtoken::decode::<AssertionClaims>(jwt, &self.decoy, &validation);
            return Err(bad_client(NOT_VERIFIED));
        };
        let verified = jwks
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
            .filter_map(|k| DecodingKey::from_jwk(k).ok())
            .find_map(|key| jsonwebtoken::decode::<AssertionClaims>(jwt, &key, &validation).ok())
            .ok_or_else(|| bad_client(NOT_VERIFIED))?
            .claims;
        let now = self.clock.now();
        let exp = verified
            .exp
            .ok_or_else(|| bad_client("client_assertion has no `exp` (RFC 7523 §3)"))?;
        if exp + LEEWAY <= now {
            return Err(bad_client("client_assertion has expired"));
        }
        if exp - now > ASSERTION_MAX_LIFETIME {
            return Err(bad_client(
                "client_assertion `exp` is more than an hour away",
            ));
        }
        if verified.nbf.is_some_and(|nbf| nbf > now + LEEWAY) {
            return Err(bad_client("client_assertion is not valid yet (`nbf`)"));
        }
        if !audience_ok(verified.aud.as_ref(), &self.audiences) {
            return Err(bad_client(
                "client_assertion `aud` must be this server's issuer or token endpoint (RFC 7523 §3)",
            ));
        }
        let jti = verified
            .jti
            .ok_or_else(|| bad_client("client_assertion has no `jti`"))?;
        let key = crate::crypto::b64url(&crate::crypto::sha256(
            format!("{}\n{jti}", client.client_id).as_bytes(),
        ));
        if !self.store.use_once(&key, exp + LEEWAY, now).await? {
            return Err(bad_client(
                "client_assertion was already used: its `jti` must be unique (RFC 7523 §3)",
            ));
        }
        Ok(client)
    }
}
