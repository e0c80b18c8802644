//! The quote verifier, in the order of shared/notes/tpm.md, failing closed at the first check
//! that does not pass. It is pure: the enrolled AK, the expected nonce and the PCR policy come in,
//! a [`Verified`] quote or a precise [`Refusal`] comes out. Single use of the nonce and the
//! per-agent counters need the store and are the caller's (see `super::attest_tpm`).

use subtle::ConstantTimeEq;

use super::parse::{
    self, AkPublic, ClockInfo, HashAlg, ParseError, PublicKey, SigAlg, SignatureBody,
};
use super::pcr::{PcrPolicy, PcrValues, PolicyMismatch};

/// TPMA_OBJECT bits (Part 2 §8.3.2) an attestation key must have: its private part never left
/// the TPM it was made in, and it only signs what the TPM itself produced.
pub const FIXED_TPM: u32 = 1 << 1;
pub const FIXED_PARENT: u32 = 1 << 4;
pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
pub const RESTRICTED: u32 = 1 << 16;
pub const DECRYPT: u32 = 1 << 17;
pub const SIGN: u32 = 1 << 18;
pub const USER_WITH_AUTH: u32 = 1 << 6;
/// The attributes of an AK, exactly: those tpm2-tools' `tpm2_createak` and tss-esapi's
/// `create_ak` give (0x00050072). Requiring equality rather than a subset means a changed bit
/// (stClear, noDA, adminWithPolicy, a reserved bit) can never describe the same enrolled key, so
/// one key has one description.
pub const AK_ATTRIBUTES: u32 =
    FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | USER_WITH_AUTH | RESTRICTED | SIGN;

/// The nonce is 32 bytes (SPEC "Agent attestation").
pub const NONCE_LEN: usize = 32;

/// Why a quote was refused: precise, for the log and the audit; the wire answer is coarse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the enrolled ak_public is not a usable TPM2B_PUBLIC: {0}")]
    AkUnparsable(ParseError),
    #[error(
        "the enrolled AK's attributes are not exactly fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|sign"
    )]
    AkAttributes,
    #[error("the signature is not a TPMT_SIGNATURE: {0}")]
    SignatureUnparsable(ParseError),
    #[error("the signature's scheme or hash differs from the AK's")]
    SchemeMismatch,
    #[error("the signature does not verify with the enrolled AK")]
    BadSignature,
    #[error("the quote is not a TPMS_ATTEST quote: {0}")]
    QuoteUnparsable(ParseError),
    #[error("the quote's qualifiedSigner is not a name in the AK's name algorithm")]
    SignerNameAlg,
    #[error("the quote's extraData is not the 32-byte nonce")]
    NonceMismatch,
    #[error("the posted PCR values are not exactly the quoted selection")]
    PcrValuesMismatch,
    #[error("the posted PCR values do not hash to the quote's pcrDigest")]
    PcrDigestMismatch,
    #[error("the quote selects other PCRs than the agent's PCR policy names")]
    PcrSelectionMismatch,
    #[error("PCR {1} of bank {0:?} has a value the agent's PCR policy does not allow")]
    PcrPolicyValue(HashAlg, u8),
    #[error("the TPM clock is not safe (it may have gone back)")]
    ClockUnsafe,
}

/// What a quote proves once it passed: where the TPM's clock was, and which AK signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub clock: ClockInfo,
    pub firmware_version: u64,
    pub ak_thumbprint: [u8; 32],
}

/// Everything a quote is checked against; nothing in it comes from the request except the quote,
/// the signature and the PCR values themselves.
pub struct Input<'a> {
    /// The enrolled agent's TPM2B_PUBLIC, never one taken from the request.
    pub ak_public: &'a [u8],
    pub quote: &'a [u8],
    pub signature: &'a [u8],
    pub pcrs: &'a PcrValues,
    /// The decoded request nonce, which must also be issued and unused (the caller checks).
    pub nonce: &'a [u8],
    pub policy: Option<&'a PcrPolicy>,
}

/// Step 1 on its own: `bytes` are a TPM2B_PUBLIC of a key fit to be an AK. Enrollment uses it too.
pub fn attestation_key(bytes: &[u8]) -> Result<AkPublic, Refusal> {
    let ak = parse::parse_public(bytes).map_err(Refusal::AkUnparsable)?;
    if ak.attributes != AK_ATTRIBUTES {
        return Err(Refusal::AkAttributes);
    }
    Ok(ak)
}

pub fn verify(input: &Input<'_>) -> Result<Verified, Refusal> {
    // 1. The enrolled AK, and that it is an AK.
    let ak = attestation_key(input.ak_public)?;
    // 2. The signature over the exact bytes received, in the AK's own scheme.
    let sig = parse::parse_signature(input.signature).map_err(Refusal::SignatureUnparsable)?;
    if sig.alg != ak.scheme || sig.hash != ak.scheme_hash {
        return Err(Refusal::SchemeMismatch);
    }
    let digest = sig
        .hash
        .digest(input.quote)
        .ok_or(Refusal::SchemeMismatch)?;
    check_signature(&ak.key, sig.alg, sig.hash, &sig.body, &digest)?;
    // 3. Strict parse: magic, type, every length, no trailing bytes.
    let quote = parse::parse_quote(input.quote).map_err(Refusal::QuoteUnparsable)?;
    // The qualified name of the signer is computed with the AK's nameAlg (Part 1 §16): a quote
    // names the AK's hash even though we cannot recompute the name without its parent.
    if !signer_uses(quote.qualified_signer, ak.name_alg) {
        return Err(Refusal::SignerNameAlg);
    }
    // 4. extraData is the nonce, compared in constant time; empty or short never matches.
    if input.nonce.len() != NONCE_LEN
        || quote.extra_data.len() != NONCE_LEN
        || !bool::from(quote.extra_data.ct_eq(input.nonce))
    {
        return Err(Refusal::NonceMismatch);
    }
    // 6a. The posted values are the quoted ones: TPM2_Quote hashes them with the signing hash.
    let preimage = input
        .pcrs
        .concat_for(&quote.pcr_select)
        .ok_or(Refusal::PcrValuesMismatch)?;
    if sig.hash.digest(&preimage).as_deref() != Some(quote.pcr_digest) {
        return Err(Refusal::PcrDigestMismatch);
    }
    // 5 and 6b. The selection is the policy's, and each value an allowed one.
    if let Some(policy) = input.policy {
        policy
            .check(&quote.pcr_select, input.pcrs)
            .map_err(|m| match m {
                PolicyMismatch::Selection => Refusal::PcrSelectionMismatch,
                PolicyMismatch::Value(h, i) => Refusal::PcrPolicyValue(h, i),
            })?;
    }
    // 7 (the part that needs no history): a clock that may have gone back proves no order.
    if !quote.clock.safe {
        return Err(Refusal::ClockUnsafe);
    }
    Ok(Verified {
        clock: quote.clock,
        firmware_version: quote.firmware_version,
        ak_thumbprint: ak.thumbprint,
    })
}

pub(super) fn check_signature(
    key: &PublicKey,
    alg: SigAlg,
    hash: HashAlg,
    body: &SignatureBody<'_>,
    digest: &[u8],
) -> Result<(), Refusal> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let ok = match (key, body) {
        (PublicKey::P256(k), SignatureBody::Ecdsa { r, s }) => {
            // High-S signatures are common from TPMs and valid ECDSA: no low-S rule here.
            let sig = p256::ecdsa::Signature::from_slice(&concat_rs(r, s, 32)?)
                .map_err(|_| Refusal::BadSignature)?;
            k.verify_prehash(digest, &sig).is_ok()
        }
        (PublicKey::P384(k), SignatureBody::Ecdsa { r, s }) => {
            let sig = p384::ecdsa::Signature::from_slice(&concat_rs(r, s, 48)?)
                .map_err(|_| Refusal::BadSignature)?;
            k.verify_prehash(digest, &sig).is_ok()
        }
        (PublicKey::Rsa(k), SignatureBody::Rsa(sig)) => {
            use rsa::traits::PublicKeyParts;
            if sig.len() != k.size() {
                return Err(Refusal::BadSignature);
            }
            match (alg, hash) {
                (SigAlg::RsaSsa, HashAlg::Sha256) => k
                    .verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), digest, sig)
                    .is_ok(),
                (SigAlg::RsaSsa, HashAlg::Sha384) => k
                    .verify(rsa::Pkcs1v15Sign::new::<sha2::Sha384>(), digest, sig)
                    .is_ok(),
                (SigAlg::RsaSsa, HashAlg::Sha512) => k
                    .verify(rsa::Pkcs1v15Sign::new::<sha2::Sha512>(), digest, sig)
                    .is_ok(),
                // TPMs sign PSS with the salt as long as the digest (Part 1 §B.7).
                (SigAlg::RsaPss, HashAlg::Sha256) => k
                    .verify(rsa::Pss::new::<sha2::Sha256>(), digest, sig)
                    .is_ok(),
                (SigAlg::RsaPss, HashAlg::Sha384) => k
                    .verify(rsa::Pss::new::<sha2::Sha384>(), digest, sig)
                    .is_ok(),
                (SigAlg::RsaPss, HashAlg::Sha512) => k
                    .verify(rsa::Pss::new::<sha2::Sha512>(), digest, sig)
                    .is_ok(),
                _ => false,
            }
        }
        _ => return Err(Refusal::SchemeMismatch),
    };
    if ok {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

fn signer_uses(qualified_signer: &[u8], alg: HashAlg) -> bool {
    qualified_signer
        .split_first_chunk::<2>()
        .is_some_and(|(id, digest)| *id == alg.id().to_be_bytes() && digest.len() == alg.size())
}

/// r‖s with each left-padded to the field size `n` (a TPM may drop leading zero bytes).
fn concat_rs(r: &[u8], s: &[u8], n: usize) -> Result<Vec<u8>, Refusal> {
    if r.len() > n || s.len() > n {
        return Err(Refusal::BadSignature);
    }
    let mut out = vec![0u8; 2 * n];
    for (part, at) in [(r, n - r.len()), (s, 2 * n - s.len())] {
        out.get_mut(at..at + part.len())
            .ok_or(Refusal::BadSignature)?
            .copy_from_slice(part);
    }
    Ok(out)
}
