//! Bounds-checked parsers for the TPM 2.0 structures an agent sends (TPM 2.0 Library, Part 2
//! "Structures"): TPM2B_PUBLIC (§12.2.5), TPMS_ATTEST (§10.12.12), TPMT_SIGNATURE (§11.3.4) and
//! TPML_PCR_SELECTION (§10.9.7). All are big-endian and sized by their own length fields; every
//! length is checked against what is left, every count is bounded, and trailing bytes are an
//! error, so one byte string has at most one meaning. Parse, don't validate: what comes out is a
//! typed value the verifier can trust to be well formed (an AK's point is on its curve, an RSA
//! modulus has its declared size), never a bag of offsets.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// TPM_GENERATED_VALUE (Part 2 §6.2): only the TPM writes this magic into what it signs.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_QUOTE (Part 2 §6.9).
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

const ALG_RSA: u16 = 0x0001;
const ALG_NULL: u16 = 0x0010;
const ALG_RSASSA: u16 = 0x0014;
const ALG_RSAPSS: u16 = 0x0016;
const ALG_ECDSA: u16 = 0x0018;
const ALG_ECC: u16 = 0x0023;
const ECC_NIST_P256: u16 = 0x0003;
const ECC_NIST_P384: u16 = 0x0004;

/// At most one selection per bank (Part 2 §10.9.7: HASH_COUNT); real TPMs have four banks or fewer.
const MAX_BANKS: u32 = 8;
/// sizeofSelect: 3 bytes cover the 24 PCRs of a PC-client TPM; 4 leave room for 32.
const MAX_SELECT: u8 = 4;

/// Why bytes are not the structure they claim to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("truncated: {0}")]
    Truncated(&'static str),
    #[error("trailing bytes after the structure")]
    Trailing,
    #[error("magic is not TPM_GENERATED_VALUE")]
    BadMagic,
    #[error("type is not TPM_ST_ATTEST_QUOTE")]
    NotAQuote,
    #[error("type is not TPM_ST_ATTEST_CERTIFY")]
    NotACertify,
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    #[error("invalid: {0}")]
    Invalid(&'static str),
}

type Result<T> = std::result::Result<T, ParseError>;

/// A big-endian cursor that never reads past its end.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let (head, tail) = self
            .rest
            .split_at_checked(n)
            .ok_or(ParseError::Truncated(what))?;
        self.rest = tail;
        Ok(head)
    }

    pub(super) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(ParseError::Truncated(what))?;
        self.rest = tail;
        Ok(*head)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }
    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub(super) fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A TPM2B: u16 size, then that many bytes, at most `max`.
    pub(super) fn tpm2b(&mut self, max: usize, what: &'static str) -> Result<&'a [u8]> {
        let n = usize::from(self.u16(what)?);
        if n > max {
            return Err(ParseError::Invalid(what));
        }
        self.take(n, what)
    }

    pub(super) fn finish(self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(ParseError::Trailing)
        }
    }
}

/// TPMI_ALG_HASH values we know the sizes of (Part 2 §6.3). SHA-1 appears only as a PCR bank;
/// it is never accepted for signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    fn from_id(id: u16) -> Result<Self> {
        [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|h| h.id() == id)
            .ok_or(ParseError::Unsupported("hash algorithm"))
    }

    /// The bank name in SPEC's `pcrs` map (`"sha256"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|h| h.name() == name)
    }

    /// TPM_ALG_ID (Part 2 §6.3).
    pub fn id(self) -> u16 {
        match self {
            Self::Sha1 => 0x0004,
            Self::Sha256 => 0x000b,
            Self::Sha384 => 0x000c,
            Self::Sha512 => 0x000d,
        }
    }

    pub fn size(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// The digest of `data`, or `None` for SHA-1 (not accepted where a digest is computed).
    pub fn digest(self, data: &[u8]) -> Option<Vec<u8>> {
        match self {
            Self::Sha1 => None,
            Self::Sha256 => Some(Sha256::digest(data).to_vec()),
            Self::Sha384 => Some(Sha384::digest(data).to_vec()),
            Self::Sha512 => Some(Sha512::digest(data).to_vec()),
        }
    }
}

/// A signing scheme (Part 2 §11.2.1.5 TPMT_SIG_SCHEME), as carried by a key or a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlg {
    Ecdsa,
    RsaSsa,
    RsaPss,
}

impl SigAlg {
    fn from_id(id: u16) -> Result<Self> {
        match id {
            ALG_ECDSA => Ok(Self::Ecdsa),
            ALG_RSASSA => Ok(Self::RsaSsa),
            ALG_RSAPSS => Ok(Self::RsaPss),
            ALG_NULL => Err(ParseError::Unsupported("no signing scheme")),
            _ => Err(ParseError::Unsupported("signing scheme")),
        }
    }
}

/// The public key of an attestation key, already checked to be a usable key.
#[derive(Debug, Clone)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

/// TPM2B_PUBLIC of a signing key (Part 2 §12.2.5), the bits the verifier needs.
#[derive(Debug, Clone)]
pub struct AkPublic {
    pub name_alg: HashAlg,
    /// TPMA_OBJECT (Part 2 §8.3).
    pub attributes: u32,
    pub scheme: SigAlg,
    pub scheme_hash: HashAlg,
    pub key: PublicKey,
    /// SHA-256 of TPMT_PUBLIC (the bytes after the TPM2B size): the key's thumbprint, equal to
    /// the digest in its TPM Name when the name algorithm is SHA-256.
    pub thumbprint: [u8; 32],
}

/// Parses TPM2B_PUBLIC as `tpm2_createak -u` writes it. Only ECC P-256/P-384 keys with ECDSA
/// and RSA keys with RSASSA or RSAPSS are accepted: those are what an AK can be.
pub fn parse_public(bytes: &[u8]) -> Result<AkPublic> {
    let mut outer = Reader::new(bytes);
    let tpmt = outer.tpm2b(usize::from(u16::MAX), "TPM2B_PUBLIC size")?;
    outer.finish()?;
    if tpmt.is_empty() {
        return Err(ParseError::Truncated("empty TPMT_PUBLIC"));
    }
    let mut r = Reader::new(tpmt);
    let ty = r.u16("type")?;
    let name_alg = HashAlg::from_id(r.u16("nameAlg")?)?;
    if name_alg == HashAlg::Sha1 {
        return Err(ParseError::Unsupported("SHA-1 name algorithm"));
    }
    let attributes = r.u32("objectAttributes")?;
    let policy = r.tpm2b(64, "authPolicy")?;
    if !policy.is_empty() && policy.len() != name_alg.size() {
        return Err(ParseError::Invalid("authPolicy size"));
    }
    // TPMT_SYM_DEF_OBJECT: keyBits and mode follow unless the algorithm is NULL.
    if r.u16("symmetric")? != ALG_NULL {
        r.u16("symmetric keyBits")?;
        r.u16("symmetric mode")?;
    }
    let scheme = SigAlg::from_id(r.u16("scheme")?)?;
    let scheme_hash = HashAlg::from_id(r.u16("scheme hash")?)?;
    let key = match ty {
        ALG_ECC => {
            if scheme != SigAlg::Ecdsa {
                return Err(ParseError::Unsupported("ECC key without ECDSA"));
            }
            let (curve, x, y) = ecc_unique(&mut r)?;
            match curve {
                ECC_NIST_P256 => PublicKey::P256(ecc_point::<32, _>(x, y, |p| {
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(p).ok()
                })?),
                ECC_NIST_P384 => PublicKey::P384(ecc_point::<48, _>(x, y, |p| {
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(p).ok()
                })?),
                _ => return Err(ParseError::Unsupported("ECC curve")),
            }
        }
        ALG_RSA => {
            if scheme == SigAlg::Ecdsa {
                return Err(ParseError::Unsupported("RSA key with ECDSA"));
            }
            let bits = r.u16("keyBits")?;
            if !matches!(bits, 2048 | 3072 | 4096) {
                return Err(ParseError::Unsupported("RSA key size"));
            }
            PublicKey::Rsa(rsa_unique(&mut r, bits)?)
        }
        _ => return Err(ParseError::Unsupported("key type")),
    };
    r.finish()?;
    Ok(AkPublic {
        name_alg,
        attributes,
        scheme,
        scheme_hash,
        key,
        thumbprint: Sha256::digest(tpmt).into(),
    })
}

impl AkPublic {
    /// "ECC P-256", "RSA-2048": for operators.
    pub fn describe(&self) -> String {
        use rsa::traits::PublicKeyParts;
        match &self.key {
            PublicKey::P256(_) => "ECC P-256".into(),
            PublicKey::P384(_) => "ECC P-384".into(),
            PublicKey::Rsa(k) => format!("RSA-{}", k.size() * 8),
        }
    }
}

/// Builds a SEC1 uncompressed point from the TPM's x and y (each exactly the field size, as a
/// TPM writes them) and lets `make` check it is on the curve.
fn ecc_point<const N: usize, K>(
    x: &[u8],
    y: &[u8],
    make: impl Fn(&[u8]) -> Option<K>,
) -> Result<K> {
    if x.len() != N || y.len() != N {
        return Err(ParseError::Invalid("ECC coordinate size"));
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * N);
    sec1.push(0x04);
    sec1.extend_from_slice(x);
    sec1.extend_from_slice(y);
    make(&sec1).ok_or(ParseError::Invalid("ECC point is not on the curve"))
}

/// TPMT_SIGNATURE (Part 2 §11.3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature<'a> {
    pub alg: SigAlg,
    pub hash: HashAlg,
    pub body: SignatureBody<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureBody<'a> {
    /// TPMS_SIGNATURE_ECDSA: r and s as sent (the verifier left-pads them).
    Ecdsa { r: &'a [u8], s: &'a [u8] },
    /// TPMS_SIGNATURE_RSA: the signature as one big-endian integer.
    Rsa(&'a [u8]),
}

pub fn parse_signature(bytes: &[u8]) -> Result<Signature<'_>> {
    let mut r = Reader::new(bytes);
    let alg = SigAlg::from_id(r.u16("sigAlg")?)?;
    let hash = HashAlg::from_id(r.u16("signature hash")?)?;
    let body = match alg {
        SigAlg::Ecdsa => SignatureBody::Ecdsa {
            r: r.tpm2b(66, "signatureR")?,
            s: r.tpm2b(66, "signatureS")?,
        },
        SigAlg::RsaSsa | SigAlg::RsaPss => SignatureBody::Rsa(r.tpm2b(512, "RSA signature")?),
    };
    r.finish()?;
    Ok(Signature { alg, hash, body })
}

/// TPML_PCR_SELECTION (Part 2 §10.9.7): per bank, the selected PCR indices in ascending order,
/// banks in the order the TPM listed them (the order of the values in pcrDigest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    pub banks: Vec<(HashAlg, Vec<u8>)>,
}

fn parse_pcr_selection(r: &mut Reader<'_>) -> Result<PcrSelection> {
    let count = r.u32("TPML_PCR_SELECTION count")?;
    if count > MAX_BANKS {
        return Err(ParseError::Invalid("too many PCR banks"));
    }
    let mut banks: Vec<(HashAlg, Vec<u8>)> = Vec::new();
    for _ in 0..count {
        let hash = HashAlg::from_id(r.u16("PCR bank hash")?)?;
        let size = r.u8("sizeofSelect")?;
        if size > MAX_SELECT {
            return Err(ParseError::Invalid("sizeofSelect"));
        }
        if banks.iter().any(|(h, _)| *h == hash) {
            return Err(ParseError::Invalid("PCR bank selected twice"));
        }
        let bitmap = r.take(usize::from(size), "pcrSelect")?;
        // Part 2 §10.6.1: bit 0 of octet 0 is PCR 0.
        let mut pcrs = Vec::new();
        for (octet, byte) in (0u8..).zip(bitmap) {
            for bit in 0..8u8 {
                if byte & (1 << bit) != 0 {
                    pcrs.push(octet * 8 + bit);
                }
            }
        }
        banks.push((hash, pcrs));
    }
    Ok(PcrSelection { banks })
}

/// Parses a TPML_PCR_SELECTION on its own (used by the fuzzer and tests).
pub fn parse_pcr_selection_bytes(bytes: &[u8]) -> Result<PcrSelection> {
    let mut r = Reader::new(bytes);
    let sel = parse_pcr_selection(&mut r)?;
    r.finish()?;
    Ok(sel)
}

/// TPMS_CLOCK_INFO (Part 2 §10.11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
}

/// TPMS_ATTEST (Part 2 §10.12.12) whose `attested` is TPMS_QUOTE_INFO (§10.12.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote<'a> {
    pub qualified_signer: &'a [u8],
    /// The caller's qualifying data: our nonce.
    pub extra_data: &'a [u8],
    pub clock: ClockInfo,
    pub firmware_version: u64,
    pub pcr_select: PcrSelection,
    pub pcr_digest: &'a [u8],
}

pub fn parse_quote(bytes: &[u8]) -> Result<Quote<'_>> {
    let mut r = Reader::new(bytes);
    if r.u32("magic")? != TPM_GENERATED_VALUE {
        return Err(ParseError::BadMagic);
    }
    if r.u16("type")? != TPM_ST_ATTEST_QUOTE {
        return Err(ParseError::NotAQuote);
    }
    // TPM2B_NAME holds a handle (4 bytes) or a hash algorithm and digest (≤ 2 + 64).
    let qualified_signer = r.tpm2b(66, "qualifiedSigner")?;
    // TPM2B_DATA: at most sizeof(TPMT_HA), 66 bytes.
    let extra_data = r.tpm2b(66, "extraData")?;
    let clock = r.u64("clock")?;
    let reset_count = r.u32("resetCount")?;
    let restart_count = r.u32("restartCount")?;
    let safe = match r.u8("safe")? {
        0 => false,
        1 => true,
        _ => return Err(ParseError::Invalid("safe is not TPMI_YES_NO")),
    };
    let firmware_version = r.u64("firmwareVersion")?;
    let pcr_select = parse_pcr_selection(&mut r)?;
    let pcr_digest = r.tpm2b(64, "pcrDigest")?;
    r.finish()?;
    Ok(Quote {
        qualified_signer,
        extra_data,
        clock: ClockInfo {
            clock,
            reset_count,
            restart_count,
            safe,
        },
        firmware_version,
        pcr_select,
        pcr_digest,
    })
}

/// TPM_ALG_AES and TPM_ALG_CFB (Part 2 §6.3).
const ALG_AES: u16 = 0x0006;
const ALG_CFB: u16 = 0x0043;

/// TPMA_OBJECT bits an endorsement key must carry (Part 2 §8.3.2).
pub const TPMA_FIXED_TPM: u32 = 1 << 1;
pub const TPMA_FIXED_PARENT: u32 = 1 << 4;
pub const TPMA_RESTRICTED: u32 = 1 << 16;
pub const TPMA_DECRYPT: u32 = 1 << 17;
pub const TPMA_SIGN_ENCRYPT: u32 = 1 << 18;

/// The symmetric mode of a storage key's TPMT_SYM_DEF_OBJECT; CFB is the only one a TPM
/// uses for object protection (Part 1 §24.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymMode {
    Cfb,
}

/// The public key of an endorsement key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EkKey {
    Rsa(rsa::RsaPublicKey),
    P256(p256::PublicKey),
    P384(p384::PublicKey),
}

/// TPM2B_PUBLIC of an endorsement key (TCG EK Credential Profile §2.2.1: a restricted
/// decryption key), with what TPM2_MakeCredential needs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkPublic {
    pub name_alg: HashAlg,
    /// TPMA_OBJECT (Part 2 §8.3).
    pub attributes: u32,
    /// AES key bits and mode of the EK's TPMT_SYM_DEF_OBJECT: the credential's inner wrap.
    pub symmetric: (u16, SymMode),
    pub key: EkKey,
    /// SHA-256 of TPMT_PUBLIC. Not a unique identity of the TPM: an EK certificate covers
    /// only the key, so the same certified key with other authPolicy or non-EK attribute bits
    /// hashes differently. Pin a TPM by its key where uniqueness matters.
    pub thumbprint: [u8; 32],
    /// The EK's TPM Name: nameAlg ‖ H_nameAlg(TPMT_PUBLIC).
    pub name: Vec<u8>,
}

impl EkPublic {
    /// "RSA-2048", "ECC P-384": for operators.
    pub fn describe(&self) -> String {
        use rsa::traits::PublicKeyParts;
        match &self.key {
            EkKey::Rsa(k) => format!("RSA-{}", k.size() * 8),
            EkKey::P256(_) => "ECC P-256".into(),
            EkKey::P384(_) => "ECC P-384".into(),
        }
    }
}

/// Parses TPM2B_PUBLIC as `tpm2_createek -u` writes it. Accepted: a restricted decryption key
/// (restricted and decrypt set, sign clear) bound to its TPM (fixedTPM, fixedParent), with an
/// AES-CFB symmetric definition, no asymmetric scheme, and an RSA-2048 or ECC P-256/P-384 key
/// without a KDF — what every TCG EK template (low and high range) produces.
pub fn parse_ek_public(bytes: &[u8]) -> Result<EkPublic> {
    let mut outer = Reader::new(bytes);
    let tpmt = outer.tpm2b(usize::from(u16::MAX), "TPM2B_PUBLIC size")?;
    outer.finish()?;
    let mut r = Reader::new(tpmt);
    let ty = r.u16("type")?;
    let name_alg = HashAlg::from_id(r.u16("nameAlg")?)?;
    if name_alg == HashAlg::Sha1 {
        return Err(ParseError::Unsupported("SHA-1 name algorithm"));
    }
    let attributes = r.u32("objectAttributes")?;
    let required = TPMA_FIXED_TPM | TPMA_FIXED_PARENT | TPMA_RESTRICTED | TPMA_DECRYPT;
    if attributes & required != required || attributes & TPMA_SIGN_ENCRYPT != 0 {
        return Err(ParseError::Unsupported(
            "attributes are not those of an EK (restricted decryption key, fixedTPM, fixedParent)",
        ));
    }
    let policy = r.tpm2b(64, "authPolicy")?;
    if !policy.is_empty() && policy.len() != name_alg.size() {
        return Err(ParseError::Invalid("authPolicy size"));
    }
    if r.u16("symmetric")? != ALG_AES {
        return Err(ParseError::Unsupported("EK symmetric algorithm is not AES"));
    }
    let key_bits = r.u16("symmetric keyBits")?;
    if !matches!(key_bits, 128 | 192 | 256) {
        return Err(ParseError::Unsupported("AES key size"));
    }
    if r.u16("symmetric mode")? != ALG_CFB {
        return Err(ParseError::Unsupported("EK symmetric mode is not CFB"));
    }
    if r.u16("scheme")? != ALG_NULL {
        return Err(ParseError::Unsupported("EK with an asymmetric scheme"));
    }
    let key = match ty {
        ALG_RSA => {
            let bits = r.u16("keyBits")?;
            if bits != 2048 {
                return Err(ParseError::Unsupported("RSA EK size (RSA-2048 only)"));
            }
            EkKey::Rsa(rsa_unique(&mut r, bits)?)
        }
        ALG_ECC => {
            let (curve, x, y) = ecc_unique(&mut r)?;
            match curve {
                ECC_NIST_P256 => EkKey::P256(ecc_point::<32, _>(x, y, |p| {
                    p256::PublicKey::from_sec1_bytes(p).ok()
                })?),
                ECC_NIST_P384 => EkKey::P384(ecc_point::<48, _>(x, y, |p| {
                    p384::PublicKey::from_sec1_bytes(p).ok()
                })?),
                _ => return Err(ParseError::Unsupported("ECC curve")),
            }
        }
        _ => return Err(ParseError::Unsupported("key type")),
    };
    r.finish()?;
    let name = name_of(name_alg, tpmt)?;
    Ok(EkPublic {
        name_alg,
        attributes,
        symmetric: (key_bits, SymMode::Cfb),
        key,
        thumbprint: Sha256::digest(tpmt).into(),
        name,
    })
}

/// The TPM Name of the object whose TPM2B_PUBLIC this is (Part 1 §16): nameAlg ‖
/// H_nameAlg(TPMT_PUBLIC). Only the framing and the name algorithm are checked; parse the key
/// with [`parse_public`] or [`parse_ek_public`] to know what it is.
pub fn tpm_name(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut outer = Reader::new(bytes);
    let tpmt = outer.tpm2b(usize::from(u16::MAX), "TPM2B_PUBLIC size")?;
    outer.finish()?;
    let mut r = Reader::new(tpmt);
    r.u16("type")?;
    name_of(HashAlg::from_id(r.u16("nameAlg")?)?, tpmt)
}

/// nameAlg ‖ H_nameAlg(TPMT_PUBLIC); SHA-1 names are refused.
fn name_of(name_alg: HashAlg, tpmt: &[u8]) -> Result<Vec<u8>> {
    let digest = name_alg
        .digest(tpmt)
        .ok_or(ParseError::Unsupported("SHA-1 name algorithm"))?;
    let mut name = name_alg.id().to_be_bytes().to_vec();
    name.extend(digest);
    Ok(name)
}

/// TPMS_ECC_PARMS after the scheme, and TPMS_ECC_POINT (Part 2 §12.2.3.6, §11.2.5.2): the curve
/// and the point's coordinates, as sent. A KDF is refused (no AK or EK template has one).
fn ecc_unique<'a>(r: &mut Reader<'a>) -> Result<(u16, &'a [u8], &'a [u8])> {
    let curve = r.u16("curveID")?;
    if r.u16("kdf")? != ALG_NULL {
        return Err(ParseError::Unsupported("ECC key with a KDF"));
    }
    let x = r.tpm2b(66, "unique.x")?;
    let y = r.tpm2b(66, "unique.y")?;
    Ok((curve, x, y))
}

/// TPMS_RSA_PARMS' exponent (0 = 65537) and the modulus, which must be exactly `bits` long
/// (Part 2 §12.2.3.5).
fn rsa_unique(r: &mut Reader<'_>, bits: u16) -> Result<rsa::RsaPublicKey> {
    let exponent = match r.u32("exponent")? {
        0 => 65537,
        e => e,
    };
    let n = r.tpm2b(512, "unique.rsa")?;
    if n.len() != usize::from(bits / 8) {
        return Err(ParseError::Invalid("RSA modulus size"));
    }
    rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(n), rsa::BigUint::from(exponent))
        .map_err(|_| ParseError::Invalid("RSA public key"))
}
