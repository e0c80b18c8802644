//! RFC 9449 DPoP proof checks, shared by mandate (its token endpoint, `/bc-authorize`,
//! `/attest`) and `mandate-resource` (resource servers): [`check_proof`] applies RFC 9449 §4.3
//! to one proof, purely — shape, `typ`, `alg`, the public key and its signature, `htm`, `htu`,
//! `iat`, `ath` — and names the key by its RFC 7638 thumbprint ([`Proof::jkt`]). What needs
//! state (single use of `jti`, server nonces) is the caller's.

#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The base64url SHA-256 of an access token: a proof's `ath` (RFC 9449 §4.2).
pub fn ath(access_token: &str) -> String {
    b64url(&sha256(access_token.as_bytes()))
}

/// The proof algorithms accepted (RFC 9449 §5.1 `dpop_signing_alg_values_supported`): the
/// asymmetric ones a client library offers, never `none` or an HMAC (§4.3 check 5).
pub const ALGS: [&str; 5] = ["ES256", "ES384", "RS256", "PS256", "EdDSA"];

/// Longest proof read: an RSA-4096 key in the header is under 1 KiB.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// Longest `jti` kept; RFC 9449 §4.2 asks for 96 bits of randomness, a UUID is 36 characters.
pub const MAX_JTI: usize = 256;

/// Seconds a proof's `iat` may be ahead of this server's clock (RFC 9449 §4.3 check 11).
pub const IAT_LEEWAY: i64 = 10;

/// RSA keys shorter than this are refused (RFC 7518 §3.3 asks for at least 2048 bits).
const MIN_RSA_BITS: usize = 2048;

/// Members of a JWK that hold private key material (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037
/// §2): a proof's `jwk` carrying any of them is refused (RFC 9449 §4.3 check 7).
pub const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// What a request is, for the proof to match (RFC 9449 §4.3 checks 8, 9, 12).
pub struct Target<'a> {
    /// The HTTP method, as sent (methods are case-sensitive, RFC 9110 §9.1).
    pub htm: &'a str,
    /// The URI the request was sent to; compared without query and fragment.
    pub htu: &'a str,
    /// The access token presented with the proof, if any: the proof's `ath` must be its hash.
    pub access_token: Option<&'a str>,
}

/// A proof that passed [`check_proof`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 SHA-256 thumbprint of the proof's public key, base64url: what a bound token's
    /// `cnf.jkt` says.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    pub nonce: Option<String>,
}

/// Why a proof was refused. Precise, for the log; the client gets `invalid_dpop_proof` with a
/// description naming the check (nothing in it is secret: the client wrote the proof).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the DPoP proof is not a compact JWS of at most 8 KiB")]
    Malformed,
    #[error("the DPoP proof's header must have typ `dpop+jwt` (RFC 9449 §4.2)")]
    Typ,
    #[error(
        "the DPoP proof's alg must be one of ES256, ES384, RS256, PS256, EdDSA (RFC 9449 §4.3)"
    )]
    Alg,
    #[error("the DPoP proof's header must carry the public key as `jwk` (RFC 9449 §4.2)")]
    NoKey,
    #[error("the DPoP proof's `jwk` contains private key material (RFC 9449 §4.3)")]
    PrivateKey,
    #[error("the DPoP proof's `jwk` is not a public key for its alg")]
    BadKey,
    #[error("the DPoP proof's signature does not verify with its `jwk` (RFC 9449 §4.3)")]
    Signature,
    #[error("the DPoP proof lacks `{0}` (RFC 9449 §4.2)")]
    Missing(&'static str),
    #[error("the DPoP proof's `htm` is not this request's method (RFC 9449 §4.3)")]
    Htm,
    #[error("the DPoP proof's `htu` is not this request's URI (RFC 9449 §4.3)")]
    Htu,
    #[error("the DPoP proof's `iat` is too old or in the future (RFC 9449 §4.3)")]
    Iat,
    #[error(
        "the DPoP proof's `ath` is not the hash of the access token sent with it (RFC 9449 §4.3)"
    )]
    Ath,
    #[error("the DPoP proof was already used: its `jti` must be new (RFC 9449 §11.1)")]
    Replayed,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<Value>,
    ath: Option<String>,
    nonce: Option<String>,
}

/// RFC 9449 §4.3 checks 2–9, 11 and 12 on one proof, `max_age` seconds being how old its
/// `iat` may be. Replay (§11.1) and nonces (§8) are [`Dpop::check`]'s.
pub fn check_proof(
    proof: &str,
    target: &Target<'_>,
    now: i64,
    max_age: i64,
) -> Result<Proof, Refusal> {
    if proof.len() > MAX_PROOF_BYTES || proof.split('.').count() != 3 {
        return Err(Refusal::Malformed);
    }
    let header_b64 = proof.split('.').next().ok_or(Refusal::Malformed)?;
    let header: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Refusal::Malformed)?;
    let typ = header.get("typ").and_then(Value::as_str);
    // RFC 7515 §4.1.9: media types compare without case.
    if !typ.is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(Refusal::Typ);
    }
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => Algorithm::ES256,
        Some("ES384") => Algorithm::ES384,
        Some("RS256") => Algorithm::RS256,
        Some("PS256") => Algorithm::PS256,
        Some("EdDSA") => Algorithm::EdDSA,
        _ => return Err(Refusal::Alg),
    };
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(Refusal::NoKey)?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(Refusal::PrivateKey);
    }
    let jkt = thumbprint_for(jwk, alg).ok_or(Refusal::BadKey)?;
    let key = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(Value::Object(jwk.clone()))
        .ok()
        .and_then(|k| DecodingKey::from_jwk(&k).ok())
        .ok_or(Refusal::BadKey)?;
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(proof, &key, &validation)
        .map_err(|_| Refusal::Signature)?
        .claims;
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI)
        .ok_or(Refusal::Missing("jti"))?;
    let htm = claims.htm.ok_or(Refusal::Missing("htm"))?;
    let htu = claims.htu.ok_or(Refusal::Missing("htu"))?;
    let iat = claims
        .iat
        .as_ref()
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
        .ok_or(Refusal::Missing("iat"))?;
    if htm != target.htm {
        return Err(Refusal::Htm);
    }
    if !same_htu(&htu, target.htu) {
        return Err(Refusal::Htu);
    }
    if iat > now + IAT_LEEWAY || iat < now - max_age {
        return Err(Refusal::Iat);
    }
    if let Some(token) = target.access_token {
        let want = ath(token);
        match claims.ath {
            Some(ath)
                if bool::from(subtle::ConstantTimeEq::ct_eq(
                    ath.as_bytes(),
                    want.as_bytes(),
                )) => {}
            Some(_) => return Err(Refusal::Ath),
            None => return Err(Refusal::Missing("ath")),
        }
    }
    Ok(Proof {
        jkt,
        jti,
        iat,
        nonce: claims.nonce,
    })
}

/// RFC 9449 §4.3 check 9: the `htu` names the URI of the request, ignoring query and fragment,
/// after RFC 3986 §6.2.2–6.2.3 normalization (scheme and host without case, default port).
fn same_htu(htu: &str, expected: &str) -> bool {
    let bare = |u: &str| -> String { u.split(['?', '#']).next().unwrap_or_default().to_string() };
    match (
        url::Url::parse(&bare(htu)),
        url::Url::parse(&bare(expected)),
    ) {
        // `Url` lowercases scheme and host and drops the scheme's default port.
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host() == b.host()
                && a.port_or_known_default() == b.port_or_known_default()
                && a.path() == b.path()
                && matches!(a.scheme(), "http" | "https")
        }
        _ => false,
    }
}

/// RFC 7638 §3: the SHA-256 thumbprint of a public JWK, over its required members in
/// lexicographic order, if it is a key of the kind `alg` signs with.
pub fn thumbprint_for(jwk: &Map<String, Value>, alg: Algorithm) -> Option<String> {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str);
    let b64_len = |k: &str| {
        s(k).and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .map(|b| b.len())
    };
    const EC: &[&str] = &["crv", "kty", "x", "y"];
    let fits = match alg {
        Algorithm::ES256 => {
            s("crv") == Some("P-256") && b64_len("x") == Some(32) && b64_len("y") == Some(32)
        }
        Algorithm::ES384 => {
            s("crv") == Some("P-384") && b64_len("x") == Some(48) && b64_len("y") == Some(48)
        }
        Algorithm::RS256 | Algorithm::PS256 => {
            b64_len("n").is_some_and(|n| n * 8 >= MIN_RSA_BITS)
                && b64_len("e").is_some_and(|e| (1..=8).contains(&e))
        }
        Algorithm::EdDSA => s("crv") == Some("Ed25519") && b64_len("x") == Some(32),
        _ => false,
    };
    let (kty, required): (&str, &[&str]) = match alg {
        Algorithm::ES256 | Algorithm::ES384 => ("EC", EC),
        Algorithm::RS256 | Algorithm::PS256 => ("RSA", &["e", "kty", "n"]),
        _ => ("OKP", &["crv", "kty", "x"]),
    };
    if !fits {
        return None;
    }
    if s("kty") != Some(kty) {
        return None;
    }
    let members: BTreeMap<&str, &str> = required
        .iter()
        .map(|k| s(k).map(|v| (*k, v)))
        .collect::<Option<_>>()?;
    let canonical = serde_json::to_string(&members).ok()?;
    Some(b64url(&sha256(canonical.as_bytes())))
}

/// The RFC 7638 thumbprint of the P-256 public key with these base64url coordinates.
pub fn p256_thumbprint(x: &str, y: &str) -> Option<String> {
    let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
    thumbprint_for(jwk.as_object()?, Algorithm::ES256)
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
