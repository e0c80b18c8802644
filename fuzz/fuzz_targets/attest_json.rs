//! The JSON bodies of `/attest/challenge`, `/attest`, `/attest/enroll` and
//! `/attest/enroll/activate` (`serde_json::from_slice` into `ChallengeRequest`, `AttestRequest`,
//! `EnrollRequest`, `ActivateRequest`, as `http::extract::JsonBody` does), then everything the
//! server does with each before it needs the database: the agent-name check; for a TPM quote
//! the base64 of `quote` and `signature`, the `pcrs` map, the base64url nonce and the whole
//! verifier (against a committed AK); for a software proof its JWT checks against a fixed
//! registered key; for an enrollment the AK and EK parsers, the EK key hash, the certificate
//! chain against the committed test root, the AK's Name and MakeCredential; for an activation
//! the secret's base64. Every input is tried as each of the four bodies.
//! Invariants: no panic; a name the check accepts is 1 to 128 characters without whitespace or
//! control characters; nothing verifies (the fuzzer holds no key of the fixed AK or JWK).
#![no_main]
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate::attest::enroll::{ActivateRequest, EnrollRequest, ek_key_hash};
use mandate::attest::tpm::pcr::PcrValues;
use mandate::attest::tpm::{credential, decode_b64, ek, parse, verify};
use mandate::attest::{AttestRequest, ChallengeRequest, software, valid_agent_name};
use serde_json::{Value, json};

const ISSUER: &str = "https://as.example";
/// When the committed EK certificates are valid (`tests/vectors/tpm/ek/valid_at`).
const NOW: i64 = 1_795_729_678;
/// The committed P-256 AK the verifier checks quotes against (an enrolled agent's, never the
/// request's).
const AK: &[u8] = include_bytes!("../../tests/vectors/tpm/ecc-p256/ak.pub");

static ROOTS: LazyLock<ek::EkRoots> = LazyLock::new(|| {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/tpm/ek/root.pem"
    );
    ek::EkRoots::from_pem_or_der_files(&[root.into()]).unwrap()
});

/// A registered P-256 public JWK (of the secret scalar 7, which signs nothing).
static JWK: LazyLock<Value> = LazyLock::new(|| {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let mut scalar = [0u8; 32];
    scalar[31] = 7;
    let point = p256::SecretKey::from_slice(&scalar)
        .unwrap()
        .public_key()
        .to_encoded_point(false);
    let b64 = |b: Option<&p256::FieldBytes>| mandate::crypto::b64url(b.unwrap());
    json!({"kty": "EC", "crv": "P-256", "x": b64(point.x()), "y": b64(point.y())})
});

fn check_name(name: &str) {
    if valid_agent_name(name) {
        let n = name.chars().count();
        assert!((1..=128).contains(&n), "name of {n} characters accepted");
        assert!(!name.chars().any(|c| c.is_whitespace() || c.is_control()));
    }
}

fn attest(req: &AttestRequest) {
    check_name(&req.agent);
    if !valid_agent_name(&req.agent) {
        return;
    }
    if req.quote.is_some() || req.signature.is_some() || req.pcrs.is_some() {
        let (Some(quote), Some(signature)) = (
            req.quote.as_deref().and_then(decode_b64),
            req.signature.as_deref().and_then(decode_b64),
        ) else {
            return;
        };
        let Some(Ok(pcrs)) = req.pcrs.as_ref().map(PcrValues::from_json) else {
            return;
        };
        let Ok(nonce) = URL_SAFE_NO_PAD.decode(&req.nonce) else {
            return;
        };
        let verified = verify::verify(&verify::Input {
            ak_public: AK,
            quote: &quote,
            signature: &signature,
            pcrs: &pcrs,
            nonce: &nonce,
            policy: None,
        });
        // Only a quote the committed AK signed over this nonce passes; the seeds hold one.
        if verified.is_ok() {
            assert_eq!(nonce.len(), 32);
        }
    } else if let Some(proof) = &req.proof {
        let r = software::verify_proof(proof, &JWK, &req.agent, ISSUER, &req.nonce, NOW);
        assert!(r.is_err(), "a proof verified under a key nobody signs with");
    }
}

fn enroll(req: &EnrollRequest) {
    check_name(&req.agent);
    if !valid_agent_name(&req.agent) {
        return;
    }
    let (Some(ak), Some(ek_public)) = (decode_b64(&req.ak_public), decode_b64(&req.ek_public))
    else {
        return;
    };
    if verify::attestation_key(&ak).is_err() {
        return;
    }
    let Ok(parsed) = parse::parse_ek_public(&ek_public) else {
        return;
    };
    if ek_key_hash(&parsed.key).is_none() {
        return;
    }
    let ek_key = match req.ek_certificate.as_deref().map(decode_b64) {
        Some(Some(cert)) => {
            let Some(chain) = req
                .ek_chain
                .iter()
                .map(|c| decode_b64(c))
                .collect::<Option<Vec<_>>>()
            else {
                return;
            };
            match ek::verify_ek(&ROOTS, &cert, &chain, &ek_public, NOW) {
                Ok(v) => v.public,
                Err(_) => return,
            }
        }
        Some(None) => return,
        // As for an EK on the operator's allowlist.
        None => parsed,
    };
    let Ok(name) = credential::tpm_name(&ak) else {
        return;
    };
    let _ = credential::make_credential(&ek_key, &name, &[0x5a; 32]);
}

fn activate(req: &ActivateRequest) {
    let answer = decode_b64(&req.secret).unwrap_or_default();
    let _ = mandate::crypto::sha256(&answer);
}

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<ChallengeRequest>(body)
        && let Some(agent) = &req.agent
    {
        check_name(agent);
    }
    if let Ok(req) = serde_json::from_slice::<AttestRequest>(body) {
        attest(&req);
    }
    if let Ok(req) = serde_json::from_slice::<EnrollRequest>(body) {
        enroll(&req);
    }
    if let Ok(req) = serde_json::from_slice::<ActivateRequest>(body) {
        activate(&req);
    }
});
