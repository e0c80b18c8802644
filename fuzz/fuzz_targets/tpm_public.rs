//! TPM2B_PUBLIC (TPM 2.0 Part 2 §12.2.5): any bytes parse or are refused, never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mandate_fuzz::parse::parse_public(data);
    let _ = mandate_fuzz::verify::attestation_key(data);
});
