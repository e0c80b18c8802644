//! Minimal JWS compact-serialization handling: reading the header and claims, and verifying an
//! ES256 signature against a key of the JWKS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// The decoded header and claims of a JWT (signature not verified).
pub(crate) struct Parts {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
}

fn decode_segment(name: &str, seg: &str) -> Result<Map<String, Value>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(seg)
        .map_err(|e| format!("JWT {name} is not base64url without padding: {e}"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("JWT {name} is JSON but not an object: {other}")),
        Err(e) => Err(format!("JWT {name} is not JSON: {e}")),
    }
}

/// Splits a compact JWS into its three segments.
pub(crate) fn segments(token: &str) -> Result<(&str, &str, &str), String> {
    let mut it = token.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(c), Some(s), None) => Ok((h, c, s)),
        _ => Err(format!(
            "access token is not a three-part JWS compact serialization: {}",
            crate::http::truncate(token, 80)
        )),
    }
}

pub(crate) fn parse(token: &str) -> Result<Parts, String> {
    let (h, c, _) = segments(token)?;
    Ok(Parts {
        header: decode_segment("header", h)?,
        claims: decode_segment("claims", c)?,
    })
}

/// The keys of a JWK Set document.
pub(crate) fn keys(jwks: &Value) -> Result<&Vec<Value>, String> {
    match jwks.get("keys") {
        Some(Value::Array(keys)) => Ok(keys),
        _ => Err(format!(
            "JWK Set has no `keys` array: {}",
            crate::http::truncate(&jwks.to_string(), 300)
        )),
    }
}

/// Verifies the token's ES256 signature with the JWKS key named by its `kid`. Claims are not
/// validated here (the checks look at them one by one).
pub(crate) fn verify(token: &str, jwks: &Value) -> Result<(), String> {
    let parts = parse(token)?;
    let kid = parts
        .header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or("JWT header has no string `kid`")?;
    let key = keys(jwks)?
        .iter()
        .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        .ok_or_else(|| format!("no key with kid {kid:?} in the JWKS"))?;
    let jwk: Jwk = serde_json::from_value(key.clone())
        .map_err(|e| format!("JWKS key {kid:?} is not a usable JWK: {e}"))?;
    let decoding = DecodingKey::from_jwk(&jwk)
        .map_err(|e| format!("JWKS key {kid:?} cannot be used for verification: {e}"))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .map(|_| ())
        .map_err(|e| format!("ES256 signature does not verify with key {kid:?}: {e}"))
}

/// The same token with one signature character changed (in the middle, so that the decoded
/// bytes change rather than just unused padding bits).
pub(crate) fn tamper_signature(token: &str) -> Result<String, String> {
    let (h, c, s) = segments(token)?;
    let mut sig: Vec<char> = s.chars().collect();
    let mid = sig.len() / 2;
    match sig.get_mut(mid) {
        Some(ch) => *ch = if *ch == 'A' { 'B' } else { 'A' },
        None => return Err("access token has an empty signature".to_owned()),
    }
    Ok(format!("{h}.{c}.{}", sig.into_iter().collect::<String>()))
}

/// An unsecured JWT (`alg: none`, RFC 7519 §6) carrying the token's own claims.
pub(crate) fn unsigned_copy(token: &str) -> Result<String, String> {
    let (_, c, _) = segments(token)?;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    Ok(format!("{header}.{c}."))
}

/// Space-separated scope tokens (RFC 6749 §3.3).
pub(crate) fn scope_set(s: &str) -> std::collections::BTreeSet<&str> {
    s.split(' ').filter(|t| !t.is_empty()).collect()
}

/// Whether `aud` (a string or an array of strings) names `audience`.
pub(crate) fn aud_contains(aud: Option<&Value>, audience: &str) -> bool {
    match aud {
        Some(Value::String(s)) => s == audience,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(audience)),
        _ => false,
    }
}
