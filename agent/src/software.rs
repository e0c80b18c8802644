//! The software attestation path: the agent proves it holds the P-256 key registered for it
//! (`[[agents]] public_jwk`) by signing a short ES256 JWT over the server's nonce (SPEC: `iss` =
//! `sub` = agent name, `aud` = issuer, `nonce`, `iat`, `exp` ≤ 5 minutes after `iat`, `jti`).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};

use crate::Error;

/// A registered P-256 key.
#[derive(Clone)]
pub struct SoftwareKey {
    key: SigningKey,
}

impl std::fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SoftwareKey(..)")
    }
}

impl SoftwareKey {
    pub fn from_signing_key(key: SigningKey) -> Self {
        Self { key }
    }

    /// A key from a PKCS#8 or SEC1 PEM file's text.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        use p256::pkcs8::DecodePrivateKey;
        SigningKey::from_pkcs8_pem(pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem).map(SigningKey::from))
            .map(Self::from_signing_key)
            .map_err(|_| {
                Error::Config("the key is not a P-256 private key in PEM (PKCS#8 or SEC1)".into())
            })
    }

    /// A key from PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, Error> {
        use p256::pkcs8::DecodePrivateKey;
        SigningKey::from_pkcs8_der(der)
            .map(Self::from_signing_key)
            .map_err(|_| Error::Config("the key is not a P-256 private key in PKCS#8 DER".into()))
    }

    /// The public JWK to register as `[[agents]] public_jwk`.
    pub fn public_jwk(&self) -> Value {
        let jwk = self.key.verifying_key().to_encoded_point(false);
        let (x, y) = (jwk.x(), jwk.y());
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": x.map(|x| URL_SAFE_NO_PAD.encode(x)),
            "y": y.map(|y| URL_SAFE_NO_PAD.encode(y)),
        })
    }

    /// The `proof` JWT for `nonce`, to `issuer`.
    pub fn proof(&self, agent: &str, issuer: &str, nonce: &str) -> Result<String, Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::Config("the system clock is before 1970".into()))?
            .as_secs();
        let header = json!({ "alg": "ES256", "typ": "JWT" });
        let claims = json!({
            "iss": agent, "sub": agent, "aud": issuer, "nonce": nonce,
            "iat": now, "exp": now + 60, "jti": format!("{agent}.{nonce}"),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig: Signature = self.key.sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.to_bytes())
        ))
    }
}
