//! The little cryptography the checks need as a client: random values, the PKCE S256
//! transformation (RFC 7636 §4.2) and ES256 signatures for an agent's attestation proof.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// `n` random bytes, base64url without padding.
pub(crate) fn random_b64url(n: usize) -> Result<String, String> {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| "the system random generator failed".to_owned())?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// RFC 7636 §4.2: `BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`.
pub(crate) fn s256(verifier: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// A PKCE pair (RFC 7636 §4.1): a 43-character verifier (256 random bits) and its S256 challenge.
pub(crate) struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Result<Pkce, String> {
        let verifier = random_b64url(32)?;
        let challenge = s256(&verifier);
        Ok(Pkce {
            verifier,
            challenge,
        })
    }
}

/// A compact JWS (RFC 7515) over `claims`, signed ES256 with a P-256 PKCS#8 private key.
pub(crate) fn es256_jwt(pkcs8_der: &[u8], claims: &Value) -> Result<String, String> {
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8_der)
        .map_err(|e| format!("the agent key is not a P-256 private key in PKCS#8 DER: {e}"))?;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{body}");
    let sig = key
        .sign(&SystemRandom::new(), input.as_bytes())
        .map_err(|_| "signing the attestation proof failed".to_owned())?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
}

/// Whether `pkcs8_der` is a usable P-256 private key.
pub(crate) fn check_p256_key(pkcs8_der: &[u8]) -> Result<(), String> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8_der)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "not a P-256 private key in PKCS#8 DER ({e}); a SEC1 key converts with \
                 `openssl pkcs8 -topk8 -nocrypt -in KEY -outform DER`"
            )
        })
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_43_unreserved_characters() {
        let p = Pkce::new().map_err(|e| e.to_string());
        assert!(p.is_ok_and(|p| {
            p.verifier.len() == 43
                && p.verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }));
    }
}
