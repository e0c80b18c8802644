//! TPMS_ATTEST quotes (TPM 2.0 Part 2 §10.12.12): any bytes parse or are refused, never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mandate_fuzz::parse::parse_quote(data);
});
