//! The key of the audit chain. A plain hash chain can be recomputed by anyone who can write the
//! database; keyed by a secret that never lives there, it can only be extended by the holder of
//! the key-encryption key (KEK).
//!
//! The key is derived from the KEK with HKDF-SHA-256 (RFC 5869) under its own label, so the
//! same 32 bytes never serve both as an AES-GCM key (signing keys at rest) and as an HMAC key
//! (RFC 2104). Derivation happens once, when the KEK is loaded; the HMAC state (the key's inner
//! and outer pads) is computed then and copied for each entry, not re-derived.

use aws_lc_rs::{hkdf, hmac};

/// HKDF `info` (RFC 5869 §2.3): names this use of the KEK and the chain's version.
const LABEL: &[u8] = b"mandate audit chain v1";

/// The HMAC-SHA-256 key that chains audit entries (chain version 1).
#[derive(Clone)]
pub struct ChainKey(hmac::Key);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(<redacted>)")
    }
}

impl ChainKey {
    /// HKDF-Extract with an empty salt (RFC 5869 §2.2: the KEK is already uniformly random),
    /// then HKDF-Expand to one HMAC-SHA-256 key.
    pub(crate) fn derive(kek: &[u8; 32]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(kek);
        match prk.expand(&[LABEL], hmac::HMAC_SHA256) {
            Ok(okm) => Self(hmac::Key::from(okm)),
            // Expanding to one hash length is always within HKDF's 255 * HashLen bound.
            Err(_) => unreachable!("HKDF-Expand of 32 bytes cannot fail"),
        }
    }

    /// HMAC-SHA-256 of `message`.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.0, message);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Whether `tag` is the MAC of `message`, compared in constant time.
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.0, message, tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5869_the_chain_key_depends_on_the_kek_and_nothing_else() {
        let a = ChainKey::derive(&[1; 32]);
        let again = ChainKey::derive(&[1; 32]);
        let b = ChainKey::derive(&[2; 32]);
        assert_eq!(a.mac(b"entry"), again.mac(b"entry"));
        assert_ne!(a.mac(b"entry"), b.mac(b"entry"));
        assert!(a.verify(b"entry", &a.mac(b"entry")));
        assert!(!b.verify(b"entry", &a.mac(b"entry")));
        // Not the KEK used as an HMAC key directly: the label separates the two uses.
        let raw = hmac::Key::new(hmac::HMAC_SHA256, &[1; 32]);
        assert_ne!(hmac::sign(&raw, b"entry").as_ref(), a.mac(b"entry"));
        assert_eq!(format!("{a:?}"), "ChainKey(<redacted>)");
    }
}
