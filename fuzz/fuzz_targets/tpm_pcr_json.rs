//! The `pcrs` map of an `/attest` request and PCR policies: any JSON parses or is refused.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = mandate_fuzz::pcr::PcrValues::from_json(&v);
        if let Ok(p) = mandate_fuzz::pcr::PcrPolicy::from_json(&v) {
            let _ = p.to_json();
        }
    }
});
