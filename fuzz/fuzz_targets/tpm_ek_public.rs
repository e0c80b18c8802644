//! TPM2B_PUBLIC of an endorsement key (zero-touch enrollment) and the TPM Name of any public
//! area: any bytes parse or are refused, never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mandate_fuzz::parse::parse_ek_public(data);
    let _ = mandate_fuzz::parse::tpm_name(data);
});
