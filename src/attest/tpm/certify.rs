//! A DPoP key the agent's TPM holds (docs/dpop.md): the agent's enrolled attestation key
//! certifies, with TPM2_Certify, a P-256 signing key the TPM made and cannot let go of, and the
//! agent's DPoP proofs are signed by that key. A token bound to it can only be used by a
//! program that can ask that TPM to sign.
//!
//! Pure, like the quote verifier: the enrolled AK, the key's TPM2B_PUBLIC, the TPMS_ATTEST and
//! its signature in; the key's RFC 7638 thumbprint out, or a precise [`Refusal`]. Freshness is
//! not needed: what a certification says (this key lives in the AK's TPM) stays true for the
//! key's life, and possession of the key is what the DPoP proof beside it shows.

use subtle::ConstantTimeEq;

use super::parse::{self, HashAlg, ParseError, PublicKey, Reader, SigAlg};
use super::verify::{
    self, DECRYPT, FIXED_PARENT, FIXED_TPM, RESTRICTED, SENSITIVE_DATA_ORIGIN, SIGN,
};

/// TPM_ST_ATTEST_CERTIFY (Part 2 §6.9).
pub const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;

/// TPMS_ATTEST (Part 2 §10.12.12) whose `attested` is TPMS_CERTIFY_INFO (§10.12.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certify<'a> {
    pub qualified_signer: &'a [u8],
    pub extra_data: &'a [u8],
    /// The Name of the certified object: nameAlg ‖ H(TPMT_PUBLIC).
    pub name: &'a [u8],
    pub qualified_name: &'a [u8],
}

/// Parses a TPMS_ATTEST of type certify, strictly: magic, type, every size, no trailing bytes.
pub fn parse_certify(bytes: &[u8]) -> Result<Certify<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    if r.u32("magic")? != parse::TPM_GENERATED_VALUE {
        return Err(ParseError::BadMagic);
    }
    if r.u16("type")? != TPM_ST_ATTEST_CERTIFY {
        return Err(ParseError::NotACertify);
    }
    let qualified_signer = r.tpm2b(66, "qualifiedSigner")?;
    let extra_data = r.tpm2b(66, "extraData")?;
    // TPMS_CLOCK_INFO and firmwareVersion: not needed to know where the key lives.
    r.u64("clock")?;
    r.u32("resetCount")?;
    r.u32("restartCount")?;
    r.u8("safe")?;
    r.u64("firmwareVersion")?;
    let name = r.tpm2b(66, "name")?;
    let qualified_name = r.tpm2b(66, "qualifiedName")?;
    r.finish()?;
    Ok(Certify {
        qualified_signer,
        extra_data,
        name,
        qualified_name,
    })
}

/// Why a key was not taken as TPM-held: precise, for the log and the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the enrolled AK: {0}")]
    Ak(verify::Refusal),
    #[error("the certification's signature is not a TPMT_SIGNATURE: {0}")]
    SignatureUnparsable(ParseError),
    #[error("the certification's signature does not verify with the enrolled AK")]
    BadSignature,
    #[error("the certification is not a TPMS_ATTEST of type certify: {0}")]
    CertifyUnparsable(ParseError),
    #[error("the key's public part is not a TPM2B_PUBLIC of a P-256 ECDSA key: {0}")]
    KeyUnparsable(ParseError),
    #[error("the key is not P-256 ECDSA with SHA-256")]
    KeyKind,
    #[error(
        "the key's attributes do not keep it in the TPM (fixedTPM, fixedParent, sensitiveDataOrigin), or it is not an unrestricted signing key"
    )]
    KeyAttributes,
    #[error("the certification names another object than the key sent")]
    NameMismatch,
}

/// A TPM-held P-256 key, as a JWK would name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    /// The public key's coordinates, base64url: the `jwk` of the DPoP proofs it signs.
    pub x: String,
    pub y: String,
}

/// Checks that the enrolled AK (`ak_public`) certified `key_public`, and that the key is one the
/// TPM made (sensitiveDataOrigin), holds (fixedTPM, fixedParent) and signs anything with
/// (sign, not restricted, not decrypt): a P-256 ECDSA SHA-256 key, the only DPoP `alg` a TPM
/// is sure to have.
pub fn verify_key(
    ak_public: &[u8],
    key_public: &[u8],
    attest: &[u8],
    signature: &[u8],
) -> Result<CertifiedKey, Refusal> {
    let ak = verify::attestation_key(ak_public).map_err(Refusal::Ak)?;
    let sig = parse::parse_signature(signature).map_err(Refusal::SignatureUnparsable)?;
    if sig.alg != ak.scheme || sig.hash != ak.scheme_hash {
        return Err(Refusal::BadSignature);
    }
    let digest = sig.hash.digest(attest).ok_or(Refusal::BadSignature)?;
    verify::check_signature(&ak.key, sig.alg, sig.hash, &sig.body, &digest)
        .map_err(|_| Refusal::BadSignature)?;
    let certify = parse_certify(attest).map_err(Refusal::CertifyUnparsable)?;
    let key = parse::parse_public(key_public).map_err(Refusal::KeyUnparsable)?;
    let PublicKey::P256(point) = &key.key else {
        return Err(Refusal::KeyKind);
    };
    if key.scheme != SigAlg::Ecdsa || key.scheme_hash != HashAlg::Sha256 {
        return Err(Refusal::KeyKind);
    }
    let must = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | SIGN;
    if key.attributes & must != must || key.attributes & (RESTRICTED | DECRYPT) != 0 {
        return Err(Refusal::KeyAttributes);
    }
    let name = parse::tpm_name(key_public).map_err(Refusal::KeyUnparsable)?;
    if !bool::from(name.as_slice().ct_eq(certify.name)) {
        return Err(Refusal::NameMismatch);
    }
    let encoded = point.to_encoded_point(false);
    let (Some(x), Some(y)) = (encoded.x(), encoded.y()) else {
        return Err(Refusal::KeyKind);
    };
    // Written without crate paths: the fuzz crate compiles this file on its own.
    use base64::Engine;
    let b64url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    Ok(CertifiedKey {
        x: b64url(x),
        y: b64url(y),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/vectors/tpm/dpop/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// What `tests/vectors/tpm/make-dpop.sh` made with swtpm and tpm2-tools passes, and gives
    /// the key's own coordinates.
    #[test]
    fn a_tpm_held_key_certified_by_the_enrolled_ak_passes() {
        let k = verify_key(
            &vector("ak.pub"),
            &vector("key.pub"),
            &vector("certify.msg"),
            &vector("certify.sig"),
        )
        .unwrap();
        let PublicKey::P256(point) = parse::parse_public(&vector("key.pub")).unwrap().key else {
            panic!("P-256");
        };
        let p = point.to_encoded_point(false);
        assert_eq!(k.x, crate::crypto::b64url(p.x().unwrap()));
        assert_eq!(k.y, crate::crypto::b64url(p.y().unwrap()));
    }

    #[test]
    fn a_key_that_could_leave_the_tpm_or_is_restricted_is_refused() {
        let ak = vector("ak.pub");
        let loose = verify_key(
            &ak,
            &vector("loose.pub"),
            &vector("loose-certify.msg"),
            &vector("loose-certify.sig"),
        );
        assert_eq!(loose, Err(Refusal::KeyAttributes));
        let restricted = verify_key(
            &ak,
            &ak,
            &vector("ak-certify.msg"),
            &vector("ak-certify.sig"),
        );
        assert_eq!(restricted, Err(Refusal::KeyAttributes));
    }

    #[test]
    fn a_certification_of_another_key_or_by_another_ak_is_refused() {
        let (ak, key) = (vector("ak.pub"), vector("key.pub"));
        // The certification is of the key, not of `loose`.
        let other = verify_key(
            &ak,
            &vector("loose.pub"),
            &vector("certify.msg"),
            &vector("certify.sig"),
        );
        assert!(
            matches!(other, Err(Refusal::KeyAttributes | Refusal::NameMismatch)),
            "{other:?}"
        );
        // An AK of another TPM (the quote vectors') did not sign it.
        let foreign_ak = std::fs::read(format!(
            "{}/tests/vectors/tpm/ecc-p256/ak.pub",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let by_other = verify_key(
            &foreign_ak,
            &key,
            &vector("certify.msg"),
            &vector("certify.sig"),
        );
        assert_eq!(by_other, Err(Refusal::BadSignature));
        // A quote is not a certification, even signed by the right AK.
        let mut msg = vector("certify.msg");
        msg[5] = 0x18;
        assert!(verify_key(&ak, &key, &msg, &vector("certify.sig")).is_err());
    }

    /// Every single-byte change to the certification, its signature or the key is refused.
    #[test]
    fn every_single_byte_change_is_refused() {
        let (ak, key, msg, sig) = (
            vector("ak.pub"),
            vector("key.pub"),
            vector("certify.msg"),
            vector("certify.sig"),
        );
        for (which, bytes) in [("key", &key), ("msg", &msg), ("sig", &sig)] {
            for i in 0..bytes.len() {
                let mut changed = bytes.clone();
                changed[i] ^= 0x01;
                let (k, m, s) = match which {
                    "key" => (&changed, &msg, &sig),
                    "msg" => (&key, &changed, &sig),
                    _ => (&key, &msg, &changed),
                };
                assert!(verify_key(&ak, k, m, s).is_err(), "{which} byte {i}");
            }
        }
    }

    #[test]
    fn the_parser_is_strict() {
        let msg = vector("certify.msg");
        assert!(parse_certify(&msg).is_ok());
        let mut trailing = msg.clone();
        trailing.push(0);
        assert_eq!(parse_certify(&trailing), Err(ParseError::Trailing));
        for n in 0..msg.len() {
            assert!(parse_certify(&msg[..n]).is_err(), "cut at {n}");
        }
    }
}
