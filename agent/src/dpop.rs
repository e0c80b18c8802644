//! RFC 9449 DPoP proofs: a key the agent keeps, whose public half the server binds tokens to
//! (`cnf.jkt`), and the proof JWT that goes in the `DPoP` header of each request.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Error;

/// A P-256 key held in memory that signs DPoP proofs (ES256).
#[derive(Clone)]
pub struct DpopKey {
    key: SigningKey,
    jwk: Value,
    jkt: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DpopKey({})", self.jkt)
    }
}

impl DpopKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::random(&mut rand_core::OsRng))
    }

    pub fn from_signing_key(key: SigningKey) -> Self {
        let point = key.verifying_key().to_encoded_point(false);
        let (jwk, jkt) = p256_jwk(
            point.x().map(|x| x.as_slice()).unwrap_or_default(),
            point.y().map(|y| y.as_slice()).unwrap_or_default(),
        );
        Self { key, jwk, jkt }
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key: a bound token's `cnf.jkt`.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// The public key as a JWK.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// A proof for one `htm` request to `htu` (RFC 9449 §4.2), with `ath` when it goes with an
    /// access token and the server's `nonce` when it sent one (§8).
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, Error> {
        let input = signing_input(&self.jwk, htm, htu, access_token, nonce)?;
        let sig: Signature = self.key.sign(input.as_bytes());
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(sig.to_bytes())
        ))
    }
}

/// The public JWK of a P-256 key with these SEC1 coordinates, and its RFC 7638 thumbprint.
pub(crate) fn p256_jwk(x: &[u8], y: &[u8]) -> (Value, String) {
    let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
    // RFC 7638 §3.2: the required members, in lexicographic order, without whitespace.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let jkt = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    (json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }), jkt)
}

/// The ES256 signing input (`header.claims`, base64url) of a proof by the key `jwk` for one
/// `htm` request to `htu` (RFC 9449 §4.2): a fresh random `jti`, `iat` now, `ath` when it goes
/// with an access token, the server's `nonce` when it sent one (§8).
pub(crate) fn signing_input(
    jwk: &Value,
    htm: &str,
    htu: &str,
    access_token: Option<&str>,
    nonce: Option<&str>,
) -> Result<String, Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::Config("the system clock is before 1970".into()))?
        .as_secs();
    let mut jti = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut jti);
    let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk });
    let mut claims = json!({
        "jti": URL_SAFE_NO_PAD.encode(jti), "htm": htm, "htu": htu, "iat": now,
    });
    if let Some(t) = access_token {
        claims["ath"] = URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())).into();
    }
    if let Some(n) = nonce {
        claims["nonce"] = n.into();
    }
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    ))
}
