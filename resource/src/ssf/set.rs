//! Verifying a pushed Security Event Token (RFC 8417) against the issuer's keys.

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::SsfError;
use crate::principal::audience_of;
use crate::verifier::{KeyMiss, Verifier};

/// The claims of `set` once it is shown to be a SET the issuer signed for `audience`.
///
/// The claims are read before the signature is checked only to choose the refusal (RFC 8935
/// §2.4: `invalid_issuer` and `invalid_audience` tell a misconfigured transmitter what is
/// wrong); nothing is accepted before the signature verifies.
pub(crate) async fn verify(
    verifier: &Verifier,
    audience: &str,
    set: &str,
) -> Result<Map<String, Value>, SsfError> {
    let not_a_set =
        || SsfError::InvalidRequest("the body is not a compact JWS (RFC 8417 §2.3)".into());
    let mut parts = set.split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_a_set());
    };
    let header = json_part(h).ok_or_else(not_a_set)?;
    // RFC 8417 §2.3: a SET says so in `typ`, so no other JWT of the issuer (an access token,
    // an ID token) passes for one, nor a SET for another JWT.
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
    if !typ.eq_ignore_ascii_case("secevent+jwt")
        && !typ.eq_ignore_ascii_case("application/secevent+jwt")
    {
        return Err(SsfError::InvalidRequest(format!(
            "typ `{}` is not a SET's (RFC 8417 §2.3: secevent+jwt)",
            printable(typ)
        )));
    }
    // Only ES256, what mandate signs with: `none`, HMAC and the rest are refused before a key
    // is looked at (RFC 8725 §3.1).
    match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => {}
        other => {
            return Err(SsfError::InvalidKey(format!(
                "alg `{}` is not accepted: SETs must be signed ES256 with a key of the issuer",
                printable(other.unwrap_or(""))
            )));
        }
    }
    let Some(kid) = header.get("kid").and_then(Value::as_str) else {
        return Err(SsfError::InvalidKey("the SET header has no kid".into()));
    };
    let unverified = json_part(p).ok_or_else(not_a_set)?;
    check_issuer_and_audience(&unverified, verifier.issuer(), audience)?;
    let key = verifier.set_key(kid).await.map_err(|miss| match miss {
        KeyMiss::Unknown => SsfError::InvalidKey(format!(
            "the SET is signed under kid `{}`, which the issuer does not publish",
            printable(kid)
        )),
        KeyMiss::TooSoon => SsfError::Unavailable(
            "the SET's kid is not in the issuer's keys fetched a moment ago".into(),
        ),
        KeyMiss::Unavailable(e) | KeyMiss::FetchFailed(e) => SsfError::Unavailable(e.description()),
    })?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Map<String, Value>>(set, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => SsfError::InvalidKey(
                "the SET's signature does not verify under the issuer's key".into(),
            ),
            _ => SsfError::InvalidRequest("the SET does not verify".into()),
        })?
        .claims;
    check_issuer_and_audience(&claims, verifier.issuer(), audience)?;
    // RFC 8417 §2.2: `jti` is required; it is what duplicates are recognised by.
    match claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() && j.len() <= 1024 => Ok(claims),
        _ => Err(SsfError::InvalidRequest(
            "the SET has no usable `jti` (RFC 8417 §2.2)".into(),
        )),
    }
}

/// RFC 8417 §2.2: `iss` exactly the issuer; `aud` (a string or an array) contains ours.
fn check_issuer_and_audience(
    claims: &Map<String, Value>,
    issuer: &str,
    audience: &str,
) -> Result<(), SsfError> {
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == issuer => {}
        _ => return Err(SsfError::InvalidIssuer),
    }
    let aud = audience_of(claims).unwrap_or_default();
    if aud.iter().any(|a| a == audience) {
        Ok(())
    } else {
        Err(SsfError::InvalidAudience)
    }
}

fn json_part(part: &str) -> Option<Map<String, Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Cuts a value from a SET header to something safe to show.
fn printable(s: &str) -> String {
    s.chars()
        .take(40)
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect()
}
