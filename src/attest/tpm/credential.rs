//! TPM2_MakeCredential in software (TPM 2.0 Library Part 1 §24 "Credential Protection", Part 3
//! §12.6): the server encrypts a random secret to an agent's endorsement key (EK) so that only
//! the TPM holding that EK, and only while an object with exactly the given Name (the agent's
//! attestation key) is loaded beside it, can recover it with TPM2_ActivateCredential.
//!
//! 1. A seed is shared with the EK (§24.3 and Annex B/C "Secret Sharing"): RSA — a random seed
//!    of the EK nameAlg's digest size, RSA-OAEP-encrypted with that hash and the label
//!    `IDENTITY`; ECC — ephemeral ECDH on the EK's curve, seed = KDFe(nameAlg, Z, `IDENTITY`,
//!    ephemeral.x, EK.x, digest bits), the "encrypted secret" being the ephemeral point.
//! 2. symKey = KDFa(nameAlg, seed, `STORAGE`, Name, ∅, EK's AES key bits);
//!    encIdentity = AES-CFB(symKey, IV = 0, TPM2B_DIGEST(secret)) (§24.4).
//! 3. HMACkey = KDFa(nameAlg, seed, `INTEGRITY`, ∅, ∅, digest bits);
//!    outerHMAC = HMAC(HMACkey, encIdentity ‖ Name) (§24.5).
//! 4. idObject = TPM2B_DIGEST(outerHMAC) ‖ encIdentity.
//!
//! The hash and the AES key size are the EK's own (its nameAlg and symmetric definition, Part 3
//! §12.6.1): SHA-256/AES-128 for the low-range templates, SHA-384/AES-256 for H-3 (P-384).
//! Crypto is aws-lc-rs; its RNG makes the seed, the OAEP padding and the ephemeral key.

use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::cipher::{
    AES_128, AES_192, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512, OaepAlgorithm,
    OaepPublicEncryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::{digest, hmac};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rsa::pkcs8::EncodePublicKey;

use super::parse::{EkKey, EkPublic, HashAlg};

pub use super::parse::tpm_name;

/// The output of TPM2_MakeCredential, as the buffers of TPM2B_ID_OBJECT and
/// TPM2B_ENCRYPTED_SECRET (without their u16 size prefixes): what tss-esapi's
/// `IdObject::try_from(Vec<u8>)` and `EncryptedSecret::try_from(Vec<u8>)` take.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub id_object: Vec<u8>,
    pub encrypted_secret: Vec<u8>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("id_object", &format_args!("{} bytes", self.id_object.len()))
            .field(
                "encrypted_secret",
                &format_args!("{} bytes", self.encrypted_secret.len()),
            )
            .finish()
    }
}

/// Why a credential could not be made. Never carries key or secret material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Part 3 §12.6: the credential is at most the size of the EK nameAlg's digest.
    #[error("credential secret must be 1 to {max} bytes")]
    SecretSize { max: usize },
    #[error("object Name is not a hash algorithm followed by a digest of its size")]
    BadName,
    #[error("EK parameters not supported for MakeCredential: {0}")]
    Unsupported(&'static str),
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}

/// TPM2_MakeCredential (Part 3 §12.6) for `secret` to the TPM holding `ek`, bound to the
/// object named `ak_name` (nameAlg ‖ digest, as `tpm2_createak -n` writes it).
pub fn make_credential(
    ek: &EkPublic,
    ak_name: &[u8],
    secret: &[u8],
) -> Result<Credential, CredentialError> {
    let alg = ek.name_alg;
    let digest_len = alg.size();
    if secret.is_empty() || secret.len() > digest_len {
        return Err(CredentialError::SecretSize { max: digest_len });
    }
    check_name(ak_name)?;
    let (seed, encrypted_secret) = share_seed(ek)?;
    let cred = protect(alg, ek.symmetric.0, &seed, ak_name, secret)?;
    Ok(Credential {
        id_object: cred,
        encrypted_secret,
    })
}

/// Steps 2–4 of the module doc, given the shared seed.
fn protect(
    alg: HashAlg,
    sym_bits: u16,
    seed: &[u8],
    name: &[u8],
    secret: &[u8],
) -> Result<Vec<u8>, CredentialError> {
    let sym_key = kdfa(alg, seed, "STORAGE", name, &[], u32::from(sym_bits))?;
    let mut enc_identity = tpm2b(secret)?;
    aes_cfb_encrypt(&sym_key, &mut enc_identity)?;
    let bits = u32::try_from(alg.size() * 8).map_err(|_| CredentialError::Crypto("size"))?;
    let hmac_key = kdfa(alg, seed, "INTEGRITY", &[], &[], bits)?;
    let outer_hmac = hmac_parts(alg, &hmac_key, &[&enc_identity, name])?;
    let mut id_object = tpm2b(&outer_hmac)?;
    id_object.extend_from_slice(&enc_identity);
    Ok(id_object)
}

/// A TPM Name as MakeCredential takes it: a hash algorithm we know and a digest of its size.
fn check_name(name: &[u8]) -> Result<(), CredentialError> {
    let (alg, digest) = name
        .split_first_chunk::<2>()
        .ok_or(CredentialError::BadName)?;
    let ok = [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512]
        .into_iter()
        .any(|h| h.id() == u16::from_be_bytes(*alg) && h.size() == digest.len());
    if ok {
        Ok(())
    } else {
        Err(CredentialError::BadName)
    }
}

/// Secret sharing with the EK (Part 1 Annex B.10.3 for RSA, Annex C.6.4 for ECC): returns
/// the seed and the TPM2B_ENCRYPTED_SECRET buffer that lets the EK recover it.
fn share_seed(ek: &EkPublic) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let alg = ek.name_alg;
    match &ek.key {
        EkKey::Rsa(key) => {
            let mut seed = vec![0u8; alg.size()];
            aws_lc_rs::rand::fill(&mut seed).map_err(|_| CredentialError::Crypto("random"))?;
            let spki = key
                .to_public_key_der()
                .map_err(|_| CredentialError::Crypto("RSA key encoding"))?;
            let key = PublicEncryptingKey::from_der(spki.as_bytes())
                .and_then(|k| OaepPublicEncryptingKey::new(k).map_err(Into::into))
                .map_err(|_| CredentialError::Unsupported("RSA key"))?;
            let mut out = vec![0u8; key.ciphertext_size()];
            // Annex B.10.3: the label is "IDENTITY" with its terminating zero octet.
            let len = key
                .encrypt(oaep(alg)?, &seed, &mut out, Some(b"IDENTITY\0"))
                .map_err(|_| CredentialError::Crypto("RSA-OAEP"))?
                .len();
            out.truncate(len);
            Ok((seed, out))
        }
        EkKey::P256(key) => ecdh_seed(
            alg,
            &agreement::ECDH_P256,
            key.to_encoded_point(false).as_bytes(),
        ),
        EkKey::P384(key) => ecdh_seed(
            alg,
            &agreement::ECDH_P384,
            key.to_encoded_point(false).as_bytes(),
        ),
    }
}

fn oaep(alg: HashAlg) -> Result<&'static OaepAlgorithm, CredentialError> {
    match alg {
        HashAlg::Sha256 => Ok(&OAEP_SHA256_MGF1SHA256),
        HashAlg::Sha384 => Ok(&OAEP_SHA384_MGF1SHA384),
        HashAlg::Sha512 => Ok(&OAEP_SHA512_MGF1SHA512),
        HashAlg::Sha1 => Err(CredentialError::Unsupported("SHA-1 name algorithm")),
    }
}

/// One-pass Diffie-Hellman, C(1, 1, ECC CDH) (Part 1 Annex C.6.4): an ephemeral key on the
/// EK's curve; Z is the x-coordinate of the shared point, padded to the field size.
fn ecdh_seed(
    alg: HashAlg,
    curve: &'static agreement::Algorithm,
    ek_sec1: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let ek_x = sec1_x(ek_sec1)?;
    let ephemeral = EphemeralPrivateKey::generate(curve, &SystemRandom::new())
        .map_err(|_| CredentialError::Crypto("ephemeral key"))?;
    let eph_public = ephemeral
        .compute_public_key()
        .map_err(|_| CredentialError::Crypto("ephemeral key"))?;
    let eph_sec1 = eph_public.as_ref().to_vec();
    let (eph_x, eph_y) = sec1_xy(&eph_sec1)?;
    let bits = u32::try_from(alg.size() * 8).map_err(|_| CredentialError::Crypto("size"))?;
    let seed = agreement::agree_ephemeral(
        ephemeral,
        UnparsedPublicKey::new(curve, ek_sec1),
        CredentialError::Crypto("ECDH"),
        |z| kdfe(alg, z, "IDENTITY", eph_x, ek_x, bits),
    )?;
    // TPMS_ECC_POINT: x and y, each a TPM2B_ECC_PARAMETER.
    let mut point = tpm2b(eph_x)?;
    point.extend(tpm2b(eph_y)?);
    Ok((seed, point))
}

/// x and y of an uncompressed SEC1 point (0x04 ‖ x ‖ y).
fn sec1_xy(sec1: &[u8]) -> Result<(&[u8], &[u8]), CredentialError> {
    match sec1.split_first() {
        Some((4, xy)) if xy.len() % 2 == 0 => Ok(xy.split_at(xy.len() / 2)),
        _ => Err(CredentialError::Crypto("point encoding")),
    }
}

fn sec1_x(sec1: &[u8]) -> Result<&[u8], CredentialError> {
    Ok(sec1_xy(sec1)?.0)
}

/// u16 size ‖ bytes.
fn tpm2b(bytes: &[u8]) -> Result<Vec<u8>, CredentialError> {
    let n = u16::try_from(bytes.len()).map_err(|_| CredentialError::Crypto("TPM2B size"))?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(out)
}

fn hmac_alg(alg: HashAlg) -> Result<hmac::Algorithm, CredentialError> {
    match alg {
        HashAlg::Sha256 => Ok(hmac::HMAC_SHA256),
        HashAlg::Sha384 => Ok(hmac::HMAC_SHA384),
        HashAlg::Sha512 => Ok(hmac::HMAC_SHA512),
        HashAlg::Sha1 => Err(CredentialError::Unsupported("SHA-1 name algorithm")),
    }
}

fn digest_alg(alg: HashAlg) -> Result<&'static digest::Algorithm, CredentialError> {
    match alg {
        HashAlg::Sha256 => Ok(&digest::SHA256),
        HashAlg::Sha384 => Ok(&digest::SHA384),
        HashAlg::Sha512 => Ok(&digest::SHA512),
        HashAlg::Sha1 => Err(CredentialError::Unsupported("SHA-1 name algorithm")),
    }
}

fn hmac_parts(alg: HashAlg, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CredentialError> {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac_alg(alg)?, key));
    for p in parts {
        ctx.update(p);
    }
    Ok(ctx.sign().as_ref().to_vec())
}

/// Keeps the leftmost `bits` of the counter-mode output: whole octets, then the low bits
/// of the first octet when `bits` is not a multiple of 8 (Part 1 §11.4.10.1).
fn truncate_bits(
    alg: HashAlg,
    bits: u32,
    mut block: impl FnMut(u32) -> Result<Vec<u8>, CredentialError>,
) -> Result<Vec<u8>, CredentialError> {
    let bytes = usize::try_from(bits.div_ceil(8)).map_err(|_| CredentialError::Crypto("size"))?;
    let mut out = Vec::with_capacity(bytes + alg.size());
    let mut counter: u32 = 1;
    while out.len() < bytes {
        out.extend(block(counter)?);
        counter = counter
            .checked_add(1)
            .ok_or(CredentialError::Crypto("KDF counter"))?;
    }
    out.truncate(bytes);
    if bits % 8 != 0 {
        if let Some(first) = out.first_mut() {
            *first &= (1u8 << (bits % 8)) - 1;
        }
    }
    Ok(out)
}

/// KDFa (Part 1 §11.4.10.2): SP 800-108 counter mode with HMAC-nameAlg;
/// K(i) = HMAC(key, [i]₃₂ ‖ label ‖ 0x00 ‖ contextU ‖ contextV ‖ [bits]₃₂).
pub(crate) fn kdfa(
    alg: HashAlg,
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Result<Vec<u8>, CredentialError> {
    let hkey = hmac::Key::new(hmac_alg(alg)?, key);
    truncate_bits(alg, bits, |i| {
        let mut ctx = hmac::Context::with_key(&hkey);
        ctx.update(&i.to_be_bytes());
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits.to_be_bytes());
        Ok(ctx.sign().as_ref().to_vec())
    })
}

/// KDFe (Part 1 §11.4.10.3): SP 800-56A concatenation KDF with nameAlg;
/// K(i) = H([i]₃₂ ‖ Z ‖ use ‖ 0x00 ‖ partyUInfo ‖ partyVInfo).
pub(crate) fn kdfe(
    alg: HashAlg,
    z: &[u8],
    use_label: &str,
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Result<Vec<u8>, CredentialError> {
    let dalg = digest_alg(alg)?;
    truncate_bits(alg, bits, |i| {
        let mut ctx = digest::Context::new(dalg);
        ctx.update(&i.to_be_bytes());
        ctx.update(z);
        ctx.update(use_label.as_bytes());
        ctx.update(&[0]);
        ctx.update(party_u);
        ctx.update(party_v);
        Ok(ctx.finish().as_ref().to_vec())
    })
}

/// AES in CFB-128 with a zero IV, in place (Part 1 §24.4: the key is used once).
fn aes_cfb_encrypt(key: &[u8], data: &mut [u8]) -> Result<(), CredentialError> {
    let cipher = match key.len() {
        16 => &AES_128,
        24 => &AES_192,
        32 => &AES_256,
        _ => return Err(CredentialError::Unsupported("AES key size")),
    };
    let key = UnboundCipherKey::new(cipher, key).map_err(|_| CredentialError::Crypto("AES key"))?;
    let key = EncryptingKey::cfb128(key).map_err(|_| CredentialError::Crypto("AES key"))?;
    key.less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from([0u8; 16])))
        .map_err(|_| CredentialError::Crypto("AES-CFB"))?;
    Ok(())
}
