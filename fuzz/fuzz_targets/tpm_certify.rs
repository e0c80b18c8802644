//! TPM2_Certify attestations of a TPM-held DPoP key (TPMS_ATTEST of type certify, TPM 2.0
//! Part 2 §10.12.3): any bytes parse or are refused, and the whole check of a key (signature by
//! the AK of the test vectors, attributes, name) never panics, whatever the attestation.
#![no_main]
const AK: &[u8] = include_bytes!("../../tests/vectors/tpm/dpop/ak.pub");
const KEY: &[u8] = include_bytes!("../../tests/vectors/tpm/dpop/key.pub");
const SIG: &[u8] = include_bytes!("../../tests/vectors/tpm/dpop/certify.sig");
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mandate_fuzz::certify::parse_certify(data);
    let _ = mandate_fuzz::certify::verify_key(AK, KEY, data, SIG);
    let _ = mandate_fuzz::certify::verify_key(AK, data, data, SIG);
});
