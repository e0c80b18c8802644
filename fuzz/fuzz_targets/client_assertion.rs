//! A `private_key_jwt` client assertion (RFC 7523 §2.2, §3) up to the signature check: what
//! `check_assertion` does with the caller's bytes before any key is known
//! (`client_auth::peek_assertion`: `decode_header`, the asymmetric-`alg` check,
//! `insecure_decode` of the claims, `sub` = `iss`), the signature check an unknown client's
//! assertion gets against a decoy P-256 key, and the `aud` shape check (`audience_ok`).
//! Invariants: a peeked assertion has an accepted `alg`, and its claims name that `iss` as both
//! `iss` and `sub`; no assertion verifies under a key nobody holds; `audience_ok` accepts
//! exactly a string, or an array holding a string, that is one of the server's audiences.
#![no_main]
use std::sync::LazyLock;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mandate::oauth::client_auth::{audience_ok, peek_assertion};
use serde_json::Value;

const ISSUER: &str = "https://as.example";

static AUDIENCES: LazyLock<Vec<String>> = LazyLock::new(|| {
    ["", "/token", "/introspect", "/revoke"]
        .iter()
        .map(|p| format!("{ISSUER}{p}"))
        .collect()
});

/// A fixed P-256 public key (of the secret scalar 7, which no client's assertion is signed with).
static DECOY: LazyLock<DecodingKey> = LazyLock::new(|| {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let mut scalar = [0u8; 32];
    scalar[31] = 7;
    let secret = p256::SecretKey::from_slice(&scalar).unwrap();
    let point = secret.public_key().to_encoded_point(false);
    let b64 = |b: Option<&p256::FieldBytes>| mandate::crypto::b64url(b.unwrap());
    DecodingKey::from_ec_components(&b64(point.x()), &b64(point.y())).unwrap()
});

fn expected_audience(aud: Option<&Value>) -> bool {
    let known = |s: &str| AUDIENCES.iter().any(|a| a == s);
    match aud {
        Some(Value::String(s)) => known(s),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(known),
        _ => false,
    }
}

libfuzzer_sys::fuzz_target!(|jwt: &str| {
    let Ok((header, iss)) = peek_assertion(jwt) else {
        return;
    };
    assert!(matches!(
        header.alg,
        Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::RS256
            | Algorithm::PS256
            | Algorithm::EdDSA
    ));
    // The claims struct skips fields it does not name without checking them, so the same
    // payload read as a JSON value may be refused (seeds/client_assertion/ignored_invalid_utf8:
    // invalid UTF-8 in an unknown field's string); when it is read, it names the same `iss`.
    if let Ok(claims) = jsonwebtoken::dangerous::insecure_decode::<Value>(jwt).map(|d| d.claims) {
        assert_eq!(
            claims.get("iss").and_then(Value::as_str),
            Some(iss.as_str())
        );
        assert_eq!(
            claims.get("sub").and_then(Value::as_str),
            Some(iss.as_str())
        );
        let aud = claims.get("aud");
        assert_eq!(
            audience_ok(aud, &AUDIENCES),
            expected_audience(aud),
            "aud {aud:?}"
        );
    }

    // An unknown client's assertion is checked against the decoy, as the server does.
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    assert!(
        jsonwebtoken::decode::<Value>(jwt, &DECOY, &validation).is_err(),
        "an assertion verified under a key nobody signs with"
    );
});
