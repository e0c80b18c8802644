//! Endorsement key certificates (TCG EK Credential Profile for TPM 2.0): the TPM vendor's
//! statement that an EK lives in a genuine TPM. Zero-touch enrollment trusts an agent's EK only
//! when its certificate chains to an operator-configured EK root CA and the certificate's key
//! is the EK public key the agent sent — the key TPM2_MakeCredential then encrypts to.
//!
//! Path building and signatures are rustls-webpki's (aws-lc-rs). EK certificates carry the EK
//! extended key usage 2.23.133.8.1 (Profile §3.2.16) while their CAs usually carry none, so the
//! usage is required *if present*: a certificate that lists usages must list the EK's.

use std::path::PathBuf;
use std::time::Duration;

use der::{Decode, Reader, SliceReader, Tag, Tagged, asn1::ObjectIdentifier};
use rsa::pkcs8::DecodePublicKey;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use super::parse::{self, EkKey, EkPublic, ParseError};

/// tcg-kp-EKCertificate, 2.23.133.8.1, as the DER contents of the OID.
const TCG_KP_EK_CERTIFICATE: &[u8] = &[0x67, 0x81, 0x05, 0x08, 0x01];
/// What TPM vendors sign EK certificates and their CAs with (SHA-1 is not accepted).
static SIG_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = {
    use webpki::aws_lc_rs as a;
    &[
        a::RSA_PKCS1_2048_8192_SHA256,
        a::RSA_PKCS1_2048_8192_SHA384,
        a::RSA_PKCS1_2048_8192_SHA512,
        a::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        a::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        a::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        a::ECDSA_P256_SHA256,
        a::ECDSA_P256_SHA384,
        a::ECDSA_P384_SHA256,
        a::ECDSA_P384_SHA384,
        a::ECDSA_P384_SHA512,
        a::ECDSA_P521_SHA256,
        a::ECDSA_P521_SHA384,
        a::ECDSA_P521_SHA512,
    ]
};
/// Longest issuer text kept for the audit.
const MAX_ISSUER_CHARS: usize = 256;

/// Why an EK certificate or EK public key was refused. The text names the reason and never
/// carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EkError {
    #[error("cannot load EK root CA file {path}: {why}")]
    Roots { path: String, why: String },
    #[error("no EK root CA is configured")]
    NoRoots,
    #[error("EK certificate is malformed: {0}")]
    Malformed(String),
    #[error("EK certificate does not chain to a configured EK root CA")]
    UnknownIssuer,
    #[error("EK certificate or a CA certificate in its chain has expired")]
    Expired,
    #[error("EK certificate or a CA certificate in its chain is not valid yet")]
    NotYetValid,
    /// A certificate names a configured CA as issuer but that CA did not sign it (a forgery,
    /// or another CA with the same name).
    #[error("a signature in the EK certificate chain does not verify")]
    BadSignature,
    #[error("EK certificate chain is invalid: {0}")]
    Chain(String),
    #[error("not an endorsement key: {0}")]
    NotAnEk(String),
    #[error("the EK certificate's key is not the EK public key sent")]
    KeyMismatch,
}

/// The EK root CAs an operator trusts (typically the TPM vendors').
#[derive(Debug, Clone, Default)]
pub struct EkRoots {
    anchors: Vec<TrustAnchor<'static>>,
}

impl EkRoots {
    /// Loads every certificate in the files: PEM (any number of `CERTIFICATE` blocks) or a
    /// single DER certificate. A file that cannot be read or holds no certificate is an error.
    pub fn from_pem_or_der_files(paths: &[PathBuf]) -> Result<Self, EkError> {
        let mut anchors = Vec::new();
        for path in paths {
            let fail = |why: String| EkError::Roots {
                path: path.display().to_string(),
                why,
            };
            let certs = crate::crypto::read_certificates(path).map_err(fail)?;
            for cert in &certs {
                let anchor = webpki::anchor_from_trusted_cert(cert)
                    .map_err(|e| fail(format!("not a usable CA certificate: {e:?}")))?;
                anchors.push(anchor.to_owned());
            }
        }
        Ok(Self { anchors })
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

/// An EK whose certificate chained to a configured root and whose public key it certifies.
#[derive(Debug, Clone)]
pub struct VerifiedEk {
    pub public: EkPublic,
    /// The EK certificate's issuer distinguished name, in certificate order
    /// (`CN=..., O=...`), for the audit.
    pub issuer: String,
}

/// Verifies an agent's EK: `ek_public` (TPM2B_PUBLIC) is an endorsement key, `ek_cert_der`
/// (exact DER, no NV padding) chains through `intermediates` to one of `roots` at `now_unix`
/// with the EK usage where usages are listed, and the certificate's key is that EK's key.
pub fn verify_ek(
    roots: &EkRoots,
    ek_cert_der: &[u8],
    intermediates: &[Vec<u8>],
    ek_public: &[u8],
    now_unix: i64,
) -> Result<VerifiedEk, EkError> {
    if roots.is_empty() {
        return Err(EkError::NoRoots);
    }
    let public = parse::parse_ek_public(ek_public).map_err(|e| match e {
        ParseError::Unsupported(_) => EkError::NotAnEk(format!("EK public: {e}")),
        _ => EkError::Malformed(format!("EK public: {e}")),
    })?;
    exact_der(ek_cert_der, "EK certificate")?;
    for i in intermediates {
        exact_der(i, "intermediate certificate")?;
    }
    let cert_der = CertificateDer::from(ek_cert_der);
    let cert = EndEntityCert::try_from(&cert_der)
        .map_err(|e| EkError::Malformed(format!("EK certificate: {e:?}")))?;
    let inter: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let secs =
        u64::try_from(now_unix).map_err(|_| EkError::Malformed("time before 1970".into()))?;
    cert.verify_for_usage(
        SIG_ALGS,
        &roots.anchors,
        &inter,
        UnixTime::since_unix_epoch(Duration::from_secs(secs)),
        KeyUsage::required_if_present(TCG_KP_EK_CERTIFICATE),
        None,
        None,
    )
    .map_err(chain_error)?;
    let spki = cert.subject_public_key_info();
    let same = match &public.key {
        EkKey::Rsa(k) => {
            rsa::RsaPublicKey::from_public_key_der(spki.as_ref()).ok() == Some(k.clone())
        }
        EkKey::P256(k) => p256::PublicKey::from_public_key_der(spki.as_ref()).ok() == Some(*k),
        EkKey::P384(k) => p384::PublicKey::from_public_key_der(spki.as_ref()).ok() == Some(*k),
    };
    if !same {
        return Err(EkError::KeyMismatch);
    }
    Ok(VerifiedEk {
        public,
        issuer: describe_name(cert.issuer()),
    })
}

/// One DER element and nothing after it: NV-stored certificates may be padded, and the
/// server takes only the exact encoding (the agent trims).
fn exact_der(bytes: &[u8], what: &str) -> Result<(), EkError> {
    der::Any::from_der(bytes)
        .map(|_| ())
        .map_err(|e| EkError::Malformed(format!("{what} is not exactly one DER element: {e}")))
}

fn chain_error(e: webpki::Error) -> EkError {
    use webpki::Error as W;
    match e {
        W::UnknownIssuer => EkError::UnknownIssuer,
        W::CertExpired { .. } => EkError::Expired,
        W::CertNotValidYet { .. } => EkError::NotYetValid,
        #[allow(deprecated)]
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => {
            EkError::NotAnEk("certificate lacks the EK extended key usage 2.23.133.8.1".into())
        }
        W::InvalidSignatureForPublicKey => EkError::BadSignature,
        W::BadDer | W::BadDerTime | W::TrailingData(_) => {
            EkError::Malformed(format!("certificate in chain: {e:?}"))
        }
        other => EkError::Chain(format!("{other:?}")),
    }
}

/// A distinguished name's contents (SEQUENCE OF RelativeDistinguishedName, outer tag
/// stripped) as `CN=..., O=...` in certificate order; control characters replaced.
fn describe_name(contents: &[u8]) -> String {
    let mut parts = Vec::new();
    if name_parts(contents, &mut parts).is_err() {
        return "(unparsable issuer name)".into();
    }
    let text = parts.join(", ");
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_ISSUER_CHARS)
        .collect()
}

fn name_parts(contents: &[u8], out: &mut Vec<String>) -> der::Result<()> {
    let mut rdns = SliceReader::new(contents)?;
    while !rdns.is_finished() {
        let rdn: der::Any = rdns.decode()?;
        let mut atvs = SliceReader::new(rdn.value())?;
        while !atvs.is_finished() {
            let atv: der::Any = atvs.decode()?;
            let mut fields = SliceReader::new(atv.value())?;
            let oid: ObjectIdentifier = fields.decode()?;
            let value: der::Any = fields.decode()?;
            let key = match oid.to_string().as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.5" => "serialNumber".to_string(),
                "2.5.4.6" => "C".to_string(),
                "2.5.4.7" => "L".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.11" => "OU".to_string(),
                other => other.to_string(),
            };
            let text = match value.tag() {
                Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
                    String::from_utf8_lossy(value.value()).into_owned()
                }
                _ => format!("#{}", hex::encode(value.value())),
            };
            out.push(format!("{key}={text}"));
        }
    }
    Ok(())
}
