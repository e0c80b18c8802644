//! `oauth::registration::Policy::accept`: RFC 7591 client metadata from anyone on the network
//! (the body of `POST /register`), against a policy allowing everything it can. It must fail
//! closed: any bytes are refused with `invalid_redirect_uri` or `invalid_client_metadata`, or
//! give a client that is no more than the policy allows. And `client::loopback_without_port`,
//! which decides which redirect URIs match with any port, on the same input as text.
#![no_main]
use mandate::config::RegistrationConfig;
use mandate::oauth::client::{ApplicationType, loopback_without_port};
use mandate::oauth::registration::Policy;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((host, tail)) = loopback_without_port(text) {
            let rest = text.strip_prefix("http://").unwrap().strip_prefix(host).unwrap();
            let port = rest.strip_suffix(tail).unwrap();
            if let Some(digits) = port.strip_prefix(':') {
                assert!((1..=5).contains(&digits.len()), "{text}");
                assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{text}");
            } else {
                assert!(port.is_empty(), "{text}");
            }
            assert!(!tail.contains('#'), "{text}");
            assert!(tail.is_empty() || tail.starts_with('/') || tail.starts_with('?'), "{text}");
        }
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let config = RegistrationConfig {
        enabled: true,
        confidential: true,
        grant_types: vec![
            "authorization_code".into(),
            "refresh_token".into(),
            "client_credentials".into(),
        ],
        scopes: vec!["a".into(), "b".into()],
        ..RegistrationConfig::default()
    };
    let policy = Policy::from_config(&config);
    match policy.accept(&value) {
        Err(e) => assert!(
            matches!(
                e.code.as_str(),
                "invalid_redirect_uri" | "invalid_client_metadata"
            ),
            "{}",
            e.code.as_str()
        ),
        Ok(a) => {
            let c = &a.client;
            assert!(c.is_registered() && !c.introspect && c.audience.is_none() && c.jwks.is_none());
            assert!(c.grant_types.iter().all(|g| config.grant_types.contains(g)));
            assert!(c.scopes.iter().all(|s| config.scopes.contains(s)));
            assert!(c.redirect_uris.len() <= 10);
            assert!(!(c.public && c.grant_types.iter().any(|g| g == "client_credentials")));
            assert_eq!(
                c.public,
                a.metadata["token_endpoint_auth_method"] == "none"
            );
            for u in &c.redirect_uris {
                assert!(c.redirect_uri_matches(u));
                assert!(!u.contains('#'));
                if c.application_type == Some(ApplicationType::Web) {
                    assert!(u.starts_with("https://"), "{u}");
                }
            }
            if let Some(n) = &c.client_name {
                assert!(n.len() <= 100 && !n.chars().any(char::is_control));
            }
        }
    }
});
