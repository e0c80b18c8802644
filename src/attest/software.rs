//! The software attestation path: the agent signs a short JWT over the server's nonce with the
//! P-256 key registered for it (SPEC: `iss` = `sub` = agent name, `aud` = issuer, `nonce`,
//! `iat`, `exp` ≤ 5 minutes after `iat`, `jti`).

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

const LEEWAY: i64 = 30;
const MAX_LIFETIME: i64 = 300;

#[derive(Deserialize)]
struct ProofClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<serde_json::Value>,
    nonce: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
    jti: Option<String>,
}

/// Checks signature and claims; the nonce's single use is the caller's (it needs the store).
pub fn verify_proof(
    proof: &str,
    jwk: &serde_json::Value,
    agent: &str,
    issuer: &str,
    nonce: &str,
    now: i64,
) -> Result<(), &'static str> {
    let header = jsonwebtoken::decode_header(proof).map_err(|_| "proof is not a JWT")?;
    if header.alg != Algorithm::ES256 {
        return Err("proof must be signed ES256");
    }
    let jwk: Jwk =
        serde_json::from_value(jwk.clone()).map_err(|_| "registered public_jwk is not a JWK")?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "registered public_jwk is not usable")?;
    let mut v = Validation::new(Algorithm::ES256);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let c = jsonwebtoken::decode::<ProofClaims>(proof, &key, &v)
        .map_err(|_| "proof signature does not verify with the registered key")?
        .claims;
    if c.iss.as_deref() != Some(agent) || c.sub.as_deref() != Some(agent) {
        return Err("proof iss and sub must be the agent name");
    }
    let aud_ok = match &c.aud {
        Some(serde_json::Value::String(a)) => a == issuer,
        Some(serde_json::Value::Array(v)) => v.iter().any(|a| a.as_str() == Some(issuer)),
        _ => false,
    };
    if !aud_ok {
        return Err("proof aud must be the issuer");
    }
    if c.nonce.as_deref() != Some(nonce) {
        return Err("proof nonce differs from the request's");
    }
    let (iat, exp) = (
        c.iat.ok_or("proof has no iat")?,
        c.exp.ok_or("proof has no exp")?,
    );
    if exp - iat > MAX_LIFETIME || exp < iat {
        return Err("proof exp must be within 5 minutes after iat");
    }
    if exp + LEEWAY <= now || iat > now + LEEWAY {
        return Err("proof is expired or not yet valid");
    }
    c.jti.ok_or("proof has no jti")?;
    Ok(())
}
