//! The in-memory key set built from the stored rows: one signing key, every published
//! verification key, and the JWKS document rendered once per reload (not per request).

use std::collections::HashMap;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::kek::{Kek, KekError};
use super::rotation::{KeyRow, KeyState};
use crate::crypto::b64url;

/// A freshly generated ES256 key, ready to be stored.
pub struct KeyMaterial;

impl KeyMaterial {
    /// Generates a P-256 key; `kid` is its RFC 7638 JWK thumbprint (SHA-256).
    pub fn generate(kek: &Kek, now: i64) -> KeyRow {
        let pkcs8 = match EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        ) {
            Ok(doc) => doc,
            Err(_) => panic!("P-256 key generation failed: the system random source is broken"),
        };
        let enc = EncodingKey::from_ec_der(pkcs8.as_ref());
        let jwk = match public_jwk(&enc) {
            Ok(j) => j,
            Err(e) => panic!("a freshly generated P-256 key has no public JWK: {e}"),
        };
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        let published = published_jwk(jwk, &kid);
        KeyRow {
            private_sealed: kek.seal(&kid, pkcs8.as_ref()),
            kid,
            state: KeyState::Next,
            public_jwk: published.to_string(),
            created_at: now,
            activated_at: None,
            retired_at: None,
            publish_until: None,
        }
    }
}

fn public_jwk(enc: &EncodingKey) -> Result<Jwk, jsonwebtoken::errors::Error> {
    Jwk::from_encoding_key(enc, Algorithm::ES256)
}

/// The JWK as published: RFC 7517 members plus `kid`, `use` and `alg`.
fn published_jwk(jwk: Jwk, kid: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(jwk).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("kid".into(), kid.into());
        o.insert("use".into(), "sig".into());
        o.insert("alg".into(), "ES256".into());
    }
    v
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("no current signing key in the database")]
    NoCurrentKey,
    #[error(transparent)]
    Kek(#[from] KekError),
    #[error("stored public key {0} is not a valid JWK")]
    BadJwk(String),
    #[error("stored private key {0} is not a P-256 PKCS#8 key")]
    BadPrivateKey(String),
}

/// Why signing failed (the claims do not serialise, or the crypto library refused).
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("claims do not serialise: {0}")]
    Claims(#[from] serde_json::Error),
    #[error("ECDSA signing failed")]
    Crypto,
}

/// Why a JWT was not accepted. Internal detail: callers map it to one coarse RFC error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("not a JWT")]
    Malformed,
    #[error("signed by a key this server does not publish")]
    UnknownKey,
    #[error("wrong JWT type")]
    WrongType,
    #[error("bad signature or claims")]
    BadSignature,
}

pub struct Keyring {
    signing_kid: String,
    /// When the signing key started signing (its activation, else its creation).
    signing_since: i64,
    /// Parsed (and checked) once per reload: parsing PKCS#8 costs about as much as signing.
    signing_key: EcdsaKeyPair,
    rng: SystemRandom,
    verifiers: HashMap<String, DecodingKey>,
    jwks: String,
    validation: Validation,
}

impl Keyring {
    pub fn from_rows(rows: &[KeyRow], kek: &Kek) -> Result<Self, KeyringError> {
        let current = rows
            .iter()
            .find(|r| r.state == KeyState::Current)
            .ok_or(KeyringError::NoCurrentKey)?;
        let pkcs8 = kek.open(&current.kid, &current.private_sealed)?;
        let mut verifiers = HashMap::new();
        let mut keys = Vec::new();
        for r in rows {
            let jwk: Jwk = serde_json::from_str(&r.public_jwk)
                .map_err(|_| KeyringError::BadJwk(r.kid.clone()))?;
            let dk =
                DecodingKey::from_jwk(&jwk).map_err(|_| KeyringError::BadJwk(r.kid.clone()))?;
            verifiers.insert(r.kid.clone(), dk);
            let v: serde_json::Value = serde_json::from_str(&r.public_jwk)
                .map_err(|_| KeyringError::BadJwk(r.kid.clone()))?;
            keys.push(v);
        }
        let mut validation = Validation::new(Algorithm::ES256);
        // Expiry and audience are checked by the caller against the injected clock and the
        // request; the library only checks the signature.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Ok(Self {
            signing_kid: current.kid.clone(),
            signing_since: current.activated_at.unwrap_or(current.created_at),
            signing_key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                .map_err(|_| KeyringError::BadPrivateKey(current.kid.clone()))?,
            rng: SystemRandom::new(),
            verifiers,
            jwks: serde_json::json!({ "keys": keys }).to_string(),
            validation,
        })
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    /// When the signing key started signing (Unix seconds).
    pub fn signing_since(&self) -> i64 {
        self.signing_since
    }

    /// The RFC 7517 JWK Set document.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    pub fn knows(&self, kid: &str) -> bool {
        self.verifiers.contains_key(kid)
    }

    /// Signs `claims` with the current key; `typ` is the JOSE header type (`at+jwt` for access
    /// tokens, RFC 9068 §2.1). RFC 7515 compact serialisation, RFC 7518 §3.4 ES256 (`R || S`).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, SignError> {
        let header = serde_json::json!({ "typ": typ, "alg": "ES256", "kid": self.signing_kid });
        let mut out = b64url(&serde_json::to_vec(&header)?);
        out.push('.');
        out.push_str(&b64url(&serde_json::to_vec(claims)?));
        let sig = self
            .signing_key
            .sign(&self.rng, out.as_bytes())
            .map_err(|_| SignError::Crypto)?;
        out.push('.');
        out.push_str(&b64url(sig.as_ref()));
        Ok(out)
    }

    /// Verifies a JWT signed by one of our published keys and of the given `typ`.
    pub fn verify<T: DeserializeOwned>(&self, token: &str, typ: &str) -> Result<T, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if !header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(typ))
        {
            return Err(VerifyError::WrongType);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let key = self.verifiers.get(&kid).ok_or(VerifyError::UnknownKey)?;
        jsonwebtoken::decode::<T>(token, key, &self.validation)
            .map(|d| d.claims)
            .map_err(|_| VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::rotation::KeyState;

    fn ring() -> (Keyring, Vec<KeyRow>) {
        let kek = Kek::from_bytes(&[9; 32]);
        let mut a = KeyMaterial::generate(&kek, 0);
        a.state = KeyState::Current;
        let b = KeyMaterial::generate(&kek, 0);
        let rows = vec![a, b];
        (Keyring::from_rows(&rows, &kek).unwrap(), rows)
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint_of_the_published_key() {
        let (_, rows) = ring();
        let jwk: Jwk = serde_json::from_str(&rows[0].public_jwk).unwrap();
        assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256), rows[0].kid);
        assert_eq!(rows[0].kid.len(), 43, "base64url of a SHA-256 digest");
    }

    #[test]
    fn jwks_publishes_current_and_next_without_private_parts() {
        let (ring, rows) = ring();
        let v: serde_json::Value = serde_json::from_str(ring.jwks()).unwrap();
        let keys = v["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for (k, r) in keys.iter().zip(&rows) {
            assert_eq!(k["kid"], r.kid.as_str());
            assert_eq!(k["crv"], "P-256");
            assert!(k.get("d").is_none());
        }
    }

    #[test]
    fn tokens_verify_only_with_the_right_type_and_an_untouched_signature() {
        let (ring, _) = ring();
        let t = ring
            .sign("at+jwt", &serde_json::json!({"sub": "x"}))
            .unwrap();
        let v: serde_json::Value = ring.verify(&t, "at+jwt").unwrap();
        assert_eq!(v["sub"], "x");
        assert_eq!(
            ring.verify::<serde_json::Value>(&t, "jwt"),
            Err(VerifyError::WrongType)
        );
        let mut bad = t.clone();
        bad.pop();
        bad.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(ring.verify::<serde_json::Value>(&bad, "at+jwt").is_err());
        assert_eq!(
            ring.verify::<serde_json::Value>("x.y", "at+jwt"),
            Err(VerifyError::Malformed)
        );
    }
}
