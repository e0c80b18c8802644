//! `jose::unverified_jti`: the lookup key read from a presented token before anything is
//! verified (revocation and introspection of refresh and access tokens). Any string gives a
//! `jti` or `None`, never a panic; and a `jti` is only ever read from three dot-separated parts.
#![no_main]
libfuzzer_sys::fuzz_target!(|token: &str| {
    if let Some(jti) = mandate::jose::unverified_jti(token) {
        assert_eq!(
            token.split('.').count(),
            3,
            "a jti from a token that is not a compact JWS"
        );
        // The payload was base64url JSON naming this jti; nothing longer than the cap is decoded.
        let payload = token.split('.').nth(1).unwrap();
        assert!(payload.len() <= 16 * 1024);
        assert!(payload.len() >= jti.len(), "a jti longer than its payload");
    }
});
