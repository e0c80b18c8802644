//! EK parsing, EK certificate verification and MakeCredential, against what swtpm and
//! tpm2-tools made (tests/vectors/tpm/ek, see its make.sh), published known answers, and a
//! software ActivateCredential. The proof against a real TPM is
//! tests/vectors/tpm/ek/check_activation.sh, which drives `swtpm_credential_files` below.

use std::path::PathBuf;

use aws_lc_rs::cipher::{AES_128, DecryptingKey, DecryptionContext, UnboundCipherKey};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey,
};
use p256::elliptic_curve::point::AffineCoordinates;
use rsa::pkcs8::DecodePublicKey;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::credential::{self, CredentialError, kdfa, kdfe, make_credential, tpm_name};
use super::ek::{EkError, EkRoots, verify_ek};
use super::parse::{self, EkKey, EkPublic, HashAlg, ParseError, SymMode};

fn path(name: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}/tests/vectors/tpm/ek/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

fn file(name: &str) -> Vec<u8> {
    let p = path(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn roots(name: &str) -> EkRoots {
    EkRoots::from_pem_or_der_files(&[path(name)]).unwrap()
}

fn intermediate() -> Vec<Vec<u8>> {
    vec![
        CertificateDer::from_pem_slice(&file("intermediate.pem"))
            .unwrap()
            .to_vec(),
    ]
}

fn valid_at() -> i64 {
    String::from_utf8(file("valid_at"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn verify(cert: &str, public: &str) -> Result<super::ek::VerifiedEk, EkError> {
    verify_ek(
        &roots("root.pem"),
        &file(cert),
        &intermediate(),
        &file(public),
        valid_at(),
    )
}

fn hex(s: &str) -> Vec<u8> {
    ::hex::decode(s).unwrap()
}

// --- KDFa / KDFe known answers (Part 1 §11.4.10) ---

/// TPM 2.0 Part 1 §11.4.10.2 KDFa: the self-test vector of the TCG reference implementation
/// (KdfTestData.h, as shipped in libtpms): 20-byte key, label "KDFSELFTESTLABEL", two 8-byte
/// contexts, 160 bits.
#[test]
fn kdfa_known_answer_part1_11_4_10_2() {
    let key = hex("271FA08BBDC5060EC3DFA928FF9B73123A12DA0C");
    let u = hex("CE244F395DCA7391");
    let v = hex("DA504031DDF12E83");
    assert_eq!(
        kdfa(HashAlg::Sha256, &key, "KDFSELFTESTLABEL", &u, &v, 160).unwrap(),
        hex("bb0259e1c8ba607e6a2cd704b69a902e9ade84c4")
    );
    assert_eq!(
        kdfa(HashAlg::Sha384, &key, "KDFSELFTESTLABEL", &u, &v, 160).unwrap(),
        hex("1dce70c9113eb2dba47bd9cfc72bf46f45b09312")
    );
    assert_eq!(
        kdfa(HashAlg::Sha512, &key, "KDFSELFTESTLABEL", &u, &v, 160).unwrap(),
        hex("8be2c1b85b78569b9fa759f5857c56d684810fd3")
    );
}

/// TPM 2.0 Part 1 §11.4.10.3 KDFe: vectors from chrisfenner/tpm-test-vectors (kdfe.json),
/// validated there against go-tpm and a TPM simulator. Includes a non-octet length (133 bits).
#[test]
fn kdfe_known_answers_part1_11_4_10_3() {
    let cases: [(HashAlg, &str, &str, &str, &str, u32, &str); 4] = [
        (
            HashAlg::Sha256,
            "00",
            "OBFUSCATE",
            "ebcb3cd4a002941ed496ef1d32a70b0b7f6f05b8a51803d5a9ff9b",
            "a1f79a7ee2beee21e2bfaee67769874687bfe21b2468fc8e721b6e967e12ff",
            496,
            "dcd14d72e0d5d8ec15b5ea15ae060e02f0e042f3af7efbd73650bb4457d73b060ef8f78bdf8cea099fe98fad6359bcfe92c1c6be8a157c1064c85ada3ad2",
        ),
        (
            HashAlg::Sha256,
            "fd4f9daba331a0a50a4e4c5fdf55034267",
            "CFB",
            "93bc3d509a00",
            "beb773b718a4642d40ac3f80d34f2361b7c5f47cf7f69bb397a45b00",
            744,
            "cf21b4a548a004a64acf5e5a5a199cfa3407fe691f0eb73a7ec664a973bb22c9fd79155cd0972e0f2b1c135e61749723833e7cfc9e82df2e74e46ab0c3a9a25d64016c1de347bb48d134d9c92e37043497839c57aec585b0f434c79ff5",
        ),
        (
            HashAlg::Sha384,
            "ff1f419e5f1dbb2077d6a82e82a928a56bedf5c8c223a10c6646ca5f0db99f91f0",
            "XOR",
            "6dcf4b9a62a0438b83c7e27d18ecd75075341ae7bd1d3a2615ff09885363abcef324eb1396816c3bb196",
            "004352c8abc6f41bc955e09f9eeab29e83b3451f",
            232,
            "af807b1ff3cf665c976579e765cb93d6c1f35159364fb8e5b6f1742015",
        ),
        (
            HashAlg::Sha384,
            "b53dfac9155409c1479600",
            "STORAGE",
            "00456e4f18d91cf140fb5aa3c93553aae61e5424e945a94cb77b1747f34d",
            "00384c4d9f30a334abea3230fcb16c5460819c57fd7c",
            133,
            "0935e9f44383ba2d6a7b5cb5782b5b6dbf",
        ),
    ];
    for (alg, z, label, u, v, bits, want) in cases {
        assert_eq!(
            kdfe(alg, &hex(z), label, &hex(u), &hex(v), bits).unwrap(),
            hex(want),
            "{label} {bits}"
        );
    }
}

// --- EK public (TCG EK Credential Profile §2.2.1 templates) ---

#[test]
fn ek_templates_parse_with_their_own_name_alg_and_symmetric() {
    let rsa = parse::parse_ek_public(&file("ek_rsa.pub")).unwrap();
    assert!(matches!(rsa.key, EkKey::Rsa(_)));
    assert_eq!(
        (rsa.name_alg, rsa.symmetric),
        (HashAlg::Sha256, (128, SymMode::Cfb))
    );
    assert_eq!(rsa.describe(), "RSA-2048");
    let p256 = parse::parse_ek_public(&file("ek_p256.pub")).unwrap();
    assert!(matches!(p256.key, EkKey::P256(_)));
    assert_eq!(
        (p256.name_alg, p256.symmetric),
        (HashAlg::Sha256, (128, SymMode::Cfb))
    );
    // H-3 (what swtpm certifies): SHA-384 and AES-256, not the low-range defaults.
    let p384 = parse::parse_ek_public(&file("ek_p384.pub")).unwrap();
    assert!(matches!(p384.key, EkKey::P384(_)));
    assert_eq!(
        (p384.name_alg, p384.symmetric),
        (HashAlg::Sha384, (256, SymMode::Cfb))
    );
    for (ek, f) in [
        (&rsa, "ek_rsa.pub"),
        (&p256, "ek_p256.pub"),
        (&p384, "ek_p384.pub"),
    ] {
        assert_eq!(ek.name, tpm_name(&file(f)).unwrap());
        assert_eq!(
            ek.thumbprint,
            crate::crypto::sha256(file(f).get(2..).unwrap())
        );
    }
}

/// Part 1 §16: Name = nameAlg ‖ H(TPMT_PUBLIC); tpm2-tools computed ak.name itself.
#[test]
fn tpm_name_matches_tpm2_tools() {
    assert_eq!(tpm_name(&file("ak.pub")).unwrap(), file("ak.name"));
    assert!(tpm_name(&[0, 1, 0]).is_err());
    let mut trailing = file("ak.pub");
    trailing.push(0);
    assert_eq!(tpm_name(&trailing), Err(ParseError::Trailing));
}

#[test]
fn an_attestation_key_is_not_an_ek() {
    assert!(matches!(
        parse::parse_ek_public(&file("ak.pub")),
        Err(ParseError::Unsupported(_))
    ));
    assert!(matches!(
        verify("ek_rsa.der", "ak.pub"),
        Err(EkError::NotAnEk(_))
    ));
}

// --- EK certificate chain ---

#[test]
fn ek_certificates_chain_to_their_root() {
    let rsa = verify("ek_rsa.der", "ek_rsa.pub").unwrap();
    assert_eq!(rsa.issuer, "CN=swtpm-localca");
    assert!(matches!(rsa.public.key, EkKey::Rsa(_)));
    let p384 = verify("ek_p384.der", "ek_p384.pub").unwrap();
    assert!(matches!(p384.public.key, EkKey::P384(_)));
}

/// Every swtpm local CA is named "CN=swtpm-localca-rootca", so webpki finds a candidate
/// issuer by name and the signature check is what refuses it.
#[test]
fn ek_certificate_refused_by_another_root() {
    let err = verify_ek(
        &roots("other_root.pem"),
        &file("ek_rsa.der"),
        &intermediate(),
        &file("ek_rsa.pub"),
        valid_at(),
    );
    assert_eq!(err.unwrap_err(), EkError::BadSignature);
}

#[test]
fn ek_certificate_refused_without_its_intermediate() {
    let err = verify_ek(
        &roots("root.pem"),
        &file("ek_rsa.der"),
        &[],
        &file("ek_rsa.pub"),
        valid_at(),
    );
    assert_eq!(err.unwrap_err(), EkError::UnknownIssuer);
}

#[test]
fn ek_certificate_refused_outside_its_validity() {
    let at = |t| {
        verify_ek(
            &roots("root.pem"),
            &file("ek_rsa.der"),
            &intermediate(),
            &file("ek_rsa.pub"),
            t,
        )
    };
    assert_eq!(
        at(valid_at() - 2 * 86400).unwrap_err(),
        EkError::NotYetValid
    );
    // notAfter is 9999-12-31T23:59:59Z.
    assert_eq!(at(253_402_300_800 + 1).unwrap_err(), EkError::Expired);
    assert!(matches!(at(-1).unwrap_err(), EkError::Malformed(_)));
}

#[test]
fn ek_certificate_key_must_be_the_ek_public() {
    assert_eq!(
        verify("ek_rsa.der", "ek_p384.pub").unwrap_err(),
        EkError::KeyMismatch
    );
    assert_eq!(
        verify("ek_p384.der", "ek_rsa.pub").unwrap_err(),
        EkError::KeyMismatch
    );
    assert_eq!(
        verify("ek_p384.der", "ek_p256.pub").unwrap_err(),
        EkError::KeyMismatch
    );
}

#[test]
fn ek_certificate_must_be_exact_der() {
    let mut padded = file("ek_rsa.der");
    padded.extend([0xff; 8]);
    let err = verify_ek(
        &roots("root.pem"),
        &padded,
        &intermediate(),
        &file("ek_rsa.pub"),
        valid_at(),
    );
    assert!(matches!(err.unwrap_err(), EkError::Malformed(_)));
    assert!(matches!(
        verify_ek(
            &roots("root.pem"),
            b"",
            &intermediate(),
            &file("ek_rsa.pub"),
            valid_at()
        ),
        Err(EkError::Malformed(_))
    ));
}

#[test]
fn no_roots_no_ek() {
    let empty = EkRoots::from_pem_or_der_files(&[]).unwrap();
    assert!(empty.is_empty());
    let err = verify_ek(
        &empty,
        &file("ek_rsa.der"),
        &[],
        &file("ek_rsa.pub"),
        valid_at(),
    );
    assert_eq!(err.unwrap_err(), EkError::NoRoots);
    assert!(matches!(
        EkRoots::from_pem_or_der_files(&[path("ek_rsa.pub")]),
        Err(EkError::Roots { .. })
    ));
    assert!(matches!(
        EkRoots::from_pem_or_der_files(&[path("missing.pem")]),
        Err(EkError::Roots { .. })
    ));
    // DER roots work as well as PEM.
    let der = CertificateDer::from_pem_slice(&file("root.pem")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("root.der");
    std::fs::write(&p, der.as_ref()).unwrap();
    assert!(!EkRoots::from_pem_or_der_files(&[p]).unwrap().is_empty());
}

/// Every single-byte change of a certified EK public is refused, or — when it only touches
/// fields the certificate does not cover (attributes beyond the EK's, authPolicy, AES size) —
/// still certifies the same key while its thumbprint and Name change.
#[test]
fn every_byte_change_of_the_ek_public_is_refused_or_keeps_the_key() {
    for (cert, public) in [("ek_rsa.der", "ek_rsa.pub"), ("ek_p384.der", "ek_p384.pub")] {
        let good = file(public);
        let original = verify(cert, public).unwrap().public;
        let r = roots("root.pem");
        let inter = intermediate();
        for i in 0..good.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                if let Some(b) = bad.get_mut(i) {
                    *b ^= mask;
                }
                if let Ok(v) = verify_ek(&r, &file(cert), &inter, &bad, valid_at()) {
                    assert_eq!(v.public.key, original.key, "{public} byte {i}");
                    assert_ne!(v.public.thumbprint, original.thumbprint);
                    assert_ne!(v.public.name, original.name);
                }
            }
        }
    }
}

// --- MakeCredential (Part 1 §24, Part 3 §12.6) ---

#[test]
fn make_credential_shapes_per_ek_type() {
    let name = file("ak.name");
    // (EK, digest size, encrypted secret size)
    for (f, digest, enc) in [
        ("ek_rsa.pub", 32, 256),              // OAEP ciphertext: the modulus size
        ("ek_p256.pub", 32, 2 + 32 + 2 + 32), // TPMS_ECC_POINT
        ("ek_p384.pub", 48, 2 + 48 + 2 + 48),
    ] {
        let ek = parse::parse_ek_public(&file(f)).unwrap();
        let c = make_credential(&ek, &name, &[7; 32]).unwrap();
        assert_eq!(c.encrypted_secret.len(), enc, "{f}");
        // TPM2B_DIGEST(outerHMAC) ‖ AES-CFB(TPM2B_DIGEST(secret))
        assert_eq!(c.id_object.len(), 2 + digest + 2 + 32, "{f}");
        assert_eq!(
            c.id_object.get(..2),
            Some(&(digest as u16).to_be_bytes()[..])
        );
        // Fresh randomness every time.
        assert_ne!(make_credential(&ek, &name, &[7; 32]).unwrap(), c);
        assert!(!format!("{c:?}").contains("07"));
    }
}

#[test]
fn make_credential_refuses_bad_inputs() {
    let rsa = parse::parse_ek_public(&file("ek_rsa.pub")).unwrap();
    let p384 = parse::parse_ek_public(&file("ek_p384.pub")).unwrap();
    let name = file("ak.name");
    assert_eq!(
        make_credential(&rsa, &name, &[]).unwrap_err(),
        CredentialError::SecretSize { max: 32 }
    );
    assert_eq!(
        make_credential(&rsa, &name, &[1; 33]).unwrap_err(),
        CredentialError::SecretSize { max: 32 }
    );
    assert!(make_credential(&p384, &name, &[1; 48]).is_ok());
    for bad in [
        &[][..],
        &[0, 0x0b],
        &name[..name.len() - 1],
        &[0, 4, 1, 2, 3],
    ] {
        assert_eq!(
            make_credential(&rsa, bad, &[1; 16]).unwrap_err(),
            CredentialError::BadName
        );
    }
}

/// TPM2_ActivateCredential in software (Part 3 §12.5): seed → HMAC check → AES-CFB. Returns
/// None where a TPM answers TPM_RC_INTEGRITY.
fn activate(
    alg: HashAlg,
    aes_bits: u32,
    seed: &[u8],
    name: &[u8],
    id_object: &[u8],
) -> Option<Vec<u8>> {
    let (hmac_len, rest) = id_object.split_first_chunk::<2>()?;
    let (outer, enc) = rest.split_at_checked(usize::from(u16::from_be_bytes(*hmac_len)))?;
    let hkey = kdfa(alg, seed, "INTEGRITY", &[], &[], alg.size() as u32 * 8).ok()?;
    let halg = match alg {
        HashAlg::Sha384 => hmac::HMAC_SHA384,
        _ => hmac::HMAC_SHA256,
    };
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(halg, &hkey));
    ctx.update(enc);
    ctx.update(name);
    if ctx.sign().as_ref() != outer {
        return None;
    }
    let sym = kdfa(alg, seed, "STORAGE", name, &[], aes_bits).ok()?;
    assert_eq!(aes_bits, 128, "test helper handles AES-128 only");
    let key = DecryptingKey::cfb128(UnboundCipherKey::new(&AES_128, &sym).ok()?).ok()?;
    let mut plain = enc.to_vec();
    key.decrypt(
        &mut plain,
        DecryptionContext::Iv128(FixedLength::from([0u8; 16])),
    )
    .ok()?;
    let (len, secret) = plain.split_first_chunk::<2>()?;
    (usize::from(u16::from_be_bytes(*len)) == secret.len()).then(|| secret.to_vec())
}

fn ek_public_of(key: EkKey) -> EkPublic {
    EkPublic {
        name_alg: HashAlg::Sha256,
        attributes: 0x000300b2,
        symmetric: (128, SymMode::Cfb),
        key,
        thumbprint: [0; 32],
        name: vec![],
    }
}

#[test]
fn rsa_credential_round_trips_through_software_activation() {
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let public = rsa::RsaPublicKey::from_public_key_der(
        aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
            &private.public_key(),
        )
        .unwrap()
        .as_ref(),
    )
    .unwrap();
    let ek = ek_public_of(EkKey::Rsa(public));
    let name = file("ak.name");
    let c = make_credential(&ek, &name, b"the secret").unwrap();
    let oaep = OaepPrivateDecryptingKey::new(private).unwrap();
    let mut buf = vec![0u8; oaep.min_output_size()];
    let seed = oaep
        .decrypt(
            &OAEP_SHA256_MGF1SHA256,
            &c.encrypted_secret,
            &mut buf,
            Some(b"IDENTITY\0"),
        )
        .unwrap()
        .to_vec();
    assert_eq!(seed.len(), 32);
    assert_eq!(
        activate(HashAlg::Sha256, 128, &seed, &name, &c.id_object).unwrap(),
        b"the secret"
    );
    // Part 1 §24.5: another object's Name fails the integrity check.
    let mut other = name.clone();
    if let Some(b) = other.last_mut() {
        *b ^= 1;
    }
    assert_eq!(
        activate(HashAlg::Sha256, 128, &seed, &other, &c.id_object),
        None
    );
}

#[test]
fn p256_credential_round_trips_through_software_activation() {
    let secret_key = p256::SecretKey::from_slice(&crate::crypto::random_bytes::<32>()).unwrap();
    let ek = ek_public_of(EkKey::P256(secret_key.public_key()));
    let name = file("ak.name");
    let c = make_credential(&ek, &name, b"another secret").unwrap();
    // encryptedSecret = TPMS_ECC_POINT of the ephemeral key.
    let point = &c.encrypted_secret;
    assert_eq!(
        (point.get(..2), point.get(34..36)),
        (Some(&[0, 32][..]), Some(&[0, 32][..]))
    );
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(point.get(2..34).unwrap());
    sec1.extend_from_slice(point.get(36..68).unwrap());
    let eph = p256::PublicKey::from_sec1_bytes(&sec1).unwrap();
    let z = (eph.to_projective() * *secret_key.to_nonzero_scalar())
        .to_affine()
        .x();
    let ek_point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
        &secret_key.public_key(),
        false,
    );
    let seed = kdfe(
        HashAlg::Sha256,
        &z,
        "IDENTITY",
        point.get(2..34).unwrap(),
        ek_point.x().unwrap(),
        256,
    )
    .unwrap();
    assert_eq!(
        activate(HashAlg::Sha256, 128, &seed, &name, &c.id_object).unwrap(),
        b"another secret"
    );
}

/// Not a unit test: tests/vectors/tpm/ek/check_activation.sh runs it with MANDATE_CRED_DIR
/// holding `ek.pub` (TPM2B_PUBLIC), `ak.name` and `secret`, and feeds the `cred` it writes
/// (tpm2-tools' format: 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET) to
/// `tpm2_activatecredential` on swtpm.
#[test]
#[ignore = "driven by tests/vectors/tpm/ek/check_activation.sh"]
fn swtpm_credential_files() {
    let dir = PathBuf::from(std::env::var("MANDATE_CRED_DIR").unwrap());
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let ek = parse::parse_ek_public(&read("ek.pub")).unwrap();
    let c = credential::make_credential(&ek, &read("ak.name"), &read("secret")).unwrap();
    let mut out = vec![0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1];
    for part in [&c.id_object, &c.encrypted_secret] {
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    std::fs::write(dir.join("cred"), out).unwrap();
}
