//! DPoP proofs (RFC 9449 §4.2) as the server and the resource middleware receive them in the
//! `DPoP` header: any text is a proof that passes §4.3 or a refusal, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(proof) = std::str::from_utf8(data) else {
        return;
    };
    let target = mandate_dpop::Target {
        htm: "POST",
        htu: "https://as.example/token",
        access_token: Some("token"),
    };
    let _ = mandate_dpop::check_proof(proof, &target, 1_800_000_000, 60);
});
