//! The form extractor's output as the endpoints use it: `http::extract::Form` built from a body
//! and an `Authorization` header (the input's first line, when it is a valid header value), then
//! `Form::client_credentials`, which decodes Basic credentials (RFC 6749 §2.3.1, RFC 7617) and
//! picks exactly one client authentication method (§2.3). The body read and the content-type
//! check in `FromRequest` need a request and are left to the router tests.
//! Invariants: the method chosen is the only one presented, built from what was presented;
//! every refusal is `invalid_request` or `invalid_client`.
#![no_main]
use http::{HeaderMap, HeaderValue, header};
use mandate::http::extract::Form;
use mandate::oauth::ErrorCode;
use mandate::oauth::client_auth::{JWT_BEARER_ASSERTION, Presented, peek_assertion};
use mandate::oauth::params::Params;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (line, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let mut headers = HeaderMap::new();
    if !line.is_empty() {
        // Only what an HTTP/1 parser would hand over as a header value.
        let Ok(value) = HeaderValue::from_bytes(line) else {
            return;
        };
        headers.insert(header::AUTHORIZATION, value);
    }
    let basic = headers.contains_key(header::AUTHORIZATION);
    let form = Form {
        params: Params::parse(body),
        headers,
    };
    let p = &form.params;
    let one = |name: &str| p.one(name).ok().flatten();
    match form.client_credentials() {
        Ok(Presented::Basic { client_id, .. }) => {
            assert!(basic && !client_id.is_empty());
            assert!(one("client_secret").is_none() && one("client_assertion").is_none());
            assert!(one("client_id").is_none_or(|id| id == client_id));
        }
        Ok(Presented::Assertion {
            assertion,
            client_id,
        }) => {
            assert!(!basic && one("client_secret").is_none());
            assert_eq!(one("client_assertion"), Some(assertion.0.as_str()));
            assert_eq!(one("client_assertion_type"), Some(JWT_BEARER_ASSERTION));
            assert_eq!(one("client_id"), client_id.as_deref());
            let _ = peek_assertion(&assertion.0);
        }
        Ok(Presented::Post { client_id, secret }) => {
            assert!(!basic && one("client_assertion").is_none());
            assert_eq!(one("client_id"), Some(client_id.as_str()));
            assert_eq!(one("client_secret"), Some(secret.0.as_str()));
        }
        Ok(Presented::Public { client_id }) => {
            assert!(!basic && one("client_secret").is_none() && one("client_assertion").is_none());
            assert_eq!(one("client_id"), Some(client_id.as_str()));
        }
        Ok(Presented::Nothing) => {
            assert!(!basic);
            for name in ["client_id", "client_secret", "client_assertion"] {
                assert!(one(name).is_none(), "{name} presented, Nothing returned");
            }
        }
        Err(e) => assert!(
            matches!(e.code, ErrorCode::InvalidRequest | ErrorCode::InvalidClient),
            "{:?}",
            e.code
        ),
    }
});
