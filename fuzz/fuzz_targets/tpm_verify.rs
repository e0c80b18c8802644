//! The whole verifier with the committed P-256 AK, PCR values and nonce: the input is split into
//! a quote and a signature (first byte: the quote's length), so the fuzzer reaches the checks
//! after the signature only through inputs it cannot sign, and must never panic on the way.
#![no_main]
use mandate_fuzz::pcr::PcrValues;
use mandate_fuzz::verify::{Input, verify};

const AK: &[u8] = include_bytes!("../../tests/vectors/tpm/ecc-p256/ak.pub");
const PCRS: &[u8] = include_bytes!("../../tests/vectors/tpm/ecc-p256/pcrs.json");
const NONCE: &str = include_str!("../../tests/vectors/tpm/ecc-p256/nonce.hex");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let Some((quote, signature)) = rest.split_at_checked(usize::from(n)) else {
        return;
    };
    let (Ok(pcrs), Ok(nonce)) = (
        serde_json::from_slice(PCRS).map(|v| PcrValues::from_json(&v)),
        hex::decode(NONCE.trim()),
    ) else {
        return;
    };
    let Ok(pcrs) = pcrs else { return };
    let _ = verify(&Input {
        ak_public: AK,
        quote,
        signature,
        pcrs: &pcrs,
        nonce: &nonce,
        policy: None,
    });
});
