//! JOSE: ES256 signing keys (generation, encryption at rest, rotation) and JWT signing and
//! verification. Signatures go through `jsonwebtoken` with its aws-lc-rs backend; nothing here
//! hand-rolls a JOSE primitive.

pub mod kek;
pub mod keyring;
pub mod rotation;

pub use kek::Kek;
pub use keyring::{KeyMaterial, Keyring, VerifyError};
pub use rotation::{KeyChange, KeyRow, KeyState, RotationMode, plan_rotation};
pub mod service;
pub use service::KeyService;

/// The `jti` claim of a compact JWS, read without verifying anything: a lookup key, never a
/// fact. A caller may only trust the record it finds if the stored hash of the token matches the
/// presented bytes (so the token is one this server signed). `None` for anything that is not
/// three base64url parts with a JSON object payload naming a string `jti`.
pub fn unverified_jti(token: &str) -> Option<String> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[derive(serde::Deserialize)]
    struct Jti {
        jti: String,
    }
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 16 * 1024 {
        return None;
    }
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Jti>(&json).ok().map(|c| c.jti)
}

#[cfg(test)]
mod tests {
    use super::unverified_jti;

    #[test]
    fn rfc7519_s4_1_7_jti_is_read_from_a_compact_jws_payload() {
        let payload = crate::crypto::b64url(br#"{"sub":"alice","jti":"0AbC-x_9"}"#);
        assert_eq!(
            unverified_jti(&format!("eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln")).as_deref(),
            Some("0AbC-x_9")
        );
        // Opaque refresh tokens, other shapes and payloads without a string jti name nothing.
        assert_eq!(
            unverified_jti("tV1kq3Y8bq2n0r0ZKJQ4w2kM1d9yYfQ6xq5yR8tX0aU"),
            None
        );
        assert_eq!(unverified_jti(&format!("a.{payload}")), None);
        assert_eq!(unverified_jti(&format!("a.{payload}.b.c")), None);
        assert_eq!(unverified_jti("a.!!!.b"), None);
        let numeric = crate::crypto::b64url(br#"{"jti":7}"#);
        assert_eq!(unverified_jti(&format!("a.{numeric}.b")), None);
    }
}
