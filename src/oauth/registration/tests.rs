use serde_json::json;

use super::*;
use crate::config::RegistrationConfig;
use crate::oauth::client::ApplicationType;

fn policy(edit: impl FnOnce(&mut RegistrationConfig)) -> Policy {
    let mut c = RegistrationConfig {
        enabled: true,
        scopes: vec!["orders:read".into(), "orders:write".into()],
        ..RegistrationConfig::default()
    };
    edit(&mut c);
    Policy::from_config(&c)
}

/// The error code of a refusal, or "ok".
fn outcome(p: &Policy, body: Value) -> &'static str {
    match p.accept(&body) {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    }
}

const NATIVE: &str = "http://127.0.0.1:33418/callback";

#[test]
fn rfc7591_s2_metadata_is_checked_against_the_policy() {
    let p = policy(|_| {});
    let long = "x".repeat(600);
    type Row = (&'static str, Value, &'static str);
    let rows: Vec<Row> = vec![
        (
            "RFC 7591 §2: a public native client (what MCP clients send)",
            json!({"redirect_uris": [NATIVE], "token_endpoint_auth_method": "none",
                   "grant_types": ["authorization_code", "refresh_token"],
                   "response_types": ["code"], "client_name": "Claude", "scope": "orders:read",
                   "logo_uri": "https://x.example/l.png", "unknown_member": {"deep": [1, 2]}}),
            "ok",
        ),
        (
            "RFC 7591 §2: defaults (authorization_code, code)",
            json!({"redirect_uris": ["https://app.example/cb"]}),
            "ok",
        ),
        (
            "RFC 8252 §7.1: a private-use scheme in reverse domain form",
            json!({"redirect_uris": ["com.example.app:/cb"], "application_type": "native"}),
            "ok",
        ),
        (
            "RFC 8252 §7.1: javascript: is no private-use scheme",
            json!({"redirect_uris": ["javascript:alert(1)"], "application_type": "native"}),
            "invalid_redirect_uri",
        ),
        (
            "RFC 8252 §7.3: http only on loopback",
            json!({"redirect_uris": ["http://app.example/cb"], "application_type": "native"}),
            "invalid_redirect_uri",
        ),
        (
            "RFC 8252 §8.4: a web client may not redirect to loopback",
            json!({"redirect_uris": [NATIVE], "application_type": "web"}),
            "invalid_redirect_uri",
        ),
        (
            "a web client may not redirect to https on this machine",
            json!({"redirect_uris": ["https://localhost:8443/cb"], "application_type": "web"}),
            "invalid_redirect_uri",
        ),
        (
            "a web client may not redirect to a private-use scheme",
            json!({"redirect_uris": ["com.example.app:/cb"], "application_type": "web"}),
            "invalid_redirect_uri",
        ),
        (
            "RFC 6749 §3.1.2: no fragment",
            json!({"redirect_uris": ["https://app.example/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            "RFC 7591 §2: redirect_uris is required for the code flow",
            json!({"grant_types": ["authorization_code"]}),
            "invalid_redirect_uri",
        ),
        (
            "a redirect URI too long",
            json!({"redirect_uris": [format!("https://app.example/{long}")]}),
            "invalid_redirect_uri",
        ),
        (
            "too many redirect URIs",
            json!({"redirect_uris": (0..11).map(|i| format!("https://app.example/{i}")).collect::<Vec<_>>()}),
            "invalid_redirect_uri",
        ),
        (
            "client_name too long",
            json!({"redirect_uris": [NATIVE], "client_name": long}),
            "invalid_client_metadata",
        ),
        (
            "client_name that reorders itself (bidi override), to look like another",
            json!({"redirect_uris": [NATIVE], "client_name": "Orders \u{202E}ppA"}),
            "invalid_client_metadata",
        ),
        (
            "client_name with a line break",
            json!({"redirect_uris": [NATIVE], "client_name": "Orders\nApproved by your admin"}),
            "invalid_client_metadata",
        ),
        (
            "client_name with control characters",
            json!({"redirect_uris": [NATIVE], "client_name": "a\u{1b}[2Jb"}),
            "invalid_client_metadata",
        ),
        (
            "RFC 7591 §3.2.2: a grant type the policy does not allow",
            json!({"redirect_uris": [NATIVE],
                   "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"]}),
            "invalid_client_metadata",
        ),
        (
            "never CIBA",
            json!({"grant_types": ["urn:openid:params:grant-type:ciba"]}),
            "invalid_client_metadata",
        ),
        (
            "never jwt-bearer",
            json!({"grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer"]}),
            "invalid_client_metadata",
        ),
        (
            "never implicit",
            json!({"redirect_uris": [NATIVE], "grant_types": ["implicit"],
                   "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            "client_credentials is not in the default policy",
            json!({"grant_types": ["client_credentials"],
                   "token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_client_metadata",
        ),
        (
            "RFC 7591 §2.1: response_types agree with grant_types",
            json!({"redirect_uris": [NATIVE], "grant_types": ["refresh_token"],
                   "response_types": ["code"]}),
            "invalid_client_metadata",
        ),
        (
            "a scope outside registration.scopes",
            json!({"redirect_uris": [NATIVE], "scope": "orders:read payments:write"}),
            "invalid_client_metadata",
        ),
        (
            "only the three secret-less or secret methods",
            json!({"redirect_uris": [NATIVE], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            "wrong JSON types",
            json!({"redirect_uris": NATIVE}),
            "invalid_redirect_uri",
        ),
        (
            "wrong JSON types",
            json!({"redirect_uris": [NATIVE], "client_name": 7}),
            "invalid_client_metadata",
        ),
        ("not an object", json!([NATIVE]), "invalid_client_metadata"),
        (
            "an application_type nobody knows",
            json!({"redirect_uris": [NATIVE], "application_type": "desktop"}),
            "invalid_client_metadata",
        ),
    ];
    for (why, body, want) in rows {
        assert_eq!(outcome(&p, body), want, "{why}");
    }
}

#[test]
fn rfc8252_s8_3_localhost_is_the_operators_choice() {
    let body = json!({"redirect_uris": ["http://localhost:3000/cb"]});
    assert_eq!(outcome(&policy(|_| {}), body.clone()), "ok");
    let strict = policy(|c| c.allow_localhost = false);
    assert_eq!(outcome(&strict, body), "invalid_redirect_uri");
}

#[test]
fn rfc7591_s3_2_1_the_server_replaces_a_secret_method_it_does_not_allow() {
    // Confidential registration off: a client asking for a secret is registered public.
    let a = policy(|_| {})
        .accept(&json!({"redirect_uris": [NATIVE]}))
        .unwrap();
    assert!(a.client.public);
    assert_eq!(a.metadata["token_endpoint_auth_method"], "none");
    // On: it gets what it asked for.
    let p = policy(|c| {
        c.confidential = true;
        c.grant_types.push("client_credentials".into());
    });
    let a = p
        .accept(&json!({"grant_types": ["client_credentials"],
                         "token_endpoint_auth_method": "client_secret_post"}))
        .unwrap();
    assert!(!a.client.public);
    assert_eq!(
        a.metadata["token_endpoint_auth_method"],
        "client_secret_post"
    );
    assert_eq!(a.metadata["response_types"], json!([]));
    // A public client still cannot hold client_credentials.
    assert_eq!(
        outcome(
            &p,
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"})
        ),
        "invalid_client_metadata"
    );
}

#[test]
fn a_registered_client_is_never_more_than_the_policy_allows() {
    let a = policy(|_| {})
        .accept(
            &json!({"redirect_uris": [NATIVE, "com.example.app:/cb"], "client_name": "  Orders  "}),
        )
        .unwrap();
    let c = &a.client;
    assert_eq!(c.application_type, Some(ApplicationType::Native));
    assert_eq!(c.provenance, Provenance::Registered);
    assert_eq!(c.client_name.as_deref(), Some("Orders"));
    assert_eq!(
        c.scopes,
        ["orders:read", "orders:write"],
        "no scope asked: all allowed"
    );
    assert!(!c.introspect && c.audience.is_none() && c.jwks.is_none());
    // A stored record that claims more is clamped when it is read.
    let tampered = Client {
        introspect: true,
        ssf_receiver: true,
        audience: Some("orders-api".into()),
        grant_types: vec![
            "authorization_code".into(),
            "client_credentials".into(),
            "urn:ietf:params:oauth:grant-type:token-exchange".into(),
        ],
        provenance: Provenance::Config,
        ..c.clone()
    };
    let resources = ["https://mcp.example/mcp".to_string()];
    let read = clamp(tampered.clone(), &policy(|_| {}), &resources).unwrap();
    assert!(!read.introspect && !read.ssf_receiver && read.audience.is_none());
    assert_eq!(read.grant_types, ["authorization_code"]);
    assert_eq!(
        read.audiences.as_deref(),
        Some(&resources[..]),
        "resources only"
    );
    assert!(read.is_registered());
    // A policy narrowed after the registration reaches it when it is read.
    let narrower = policy(|c| {
        c.scopes = vec!["orders:read".into()];
        c.grant_types = vec!["refresh_token".into()];
    });
    let read = clamp(tampered.clone(), &narrower, &resources).unwrap();
    assert_eq!(read.scopes, ["orders:read"]);
    assert!(read.grant_types.is_empty());
    // A confidential registration once the policy allows none is no client at all.
    let confidential = Client {
        public: false,
        ..tampered
    };
    assert!(
        clamp(
            confidential.clone(),
            &policy(|c| c.confidential = true),
            &resources
        )
        .is_some()
    );
    assert!(
        clamp(
            confidential,
            &policy(|c| c.confidential = false),
            &resources
        )
        .is_none()
    );
}

#[test]
fn web_is_inferred_from_an_https_redirect_and_native_from_loopback_only() {
    let p = policy(|_| {});
    let kind = |uris: Value| {
        p.accept(&json!({ "redirect_uris": uris }))
            .unwrap()
            .client
            .application_type
    };
    assert_eq!(kind(json!([NATIVE])), Some(ApplicationType::Native));
    assert_eq!(
        kind(json!(["https://app.example/cb"])),
        Some(ApplicationType::Web)
    );
    let native_only = policy(|c| c.application_types = vec!["native".into()]);
    assert_eq!(
        outcome(
            &native_only,
            json!({"redirect_uris": ["https://app.example/cb"]})
        ),
        "invalid_client_metadata"
    );
}

#[test]
fn ipv6_callers_are_counted_by_their_64() {
    let k = |s: &str| address_key(s.parse().unwrap());
    assert_eq!(k("192.0.2.7"), "192.0.2.7");
    assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7");
    assert_eq!(k("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
    assert_eq!(k("2001:db8:1:2:ffff::1"), k("2001:db8:1:2::9"));
    assert_ne!(k("2001:db8:1:3::1"), k("2001:db8:1:2::1"));
}

/// RFC 9449 §5.2: `dpop_bound_access_tokens: true` registers a client whose token requests must
/// carry a proof, and the answer says so; anything but a boolean is refused.
#[test]
fn rfc9449_s5_2_dpop_bound_access_tokens_makes_dpop_required() {
    let p = policy(|_| {});
    let body = |v: Value| {
        json!({"redirect_uris": [NATIVE], "token_endpoint_auth_method": "none",
               "dpop_bound_access_tokens": v})
    };
    let bound = p.accept(&body(json!(true))).unwrap();
    assert_eq!(bound.client.dpop, crate::oauth::dpop::Mode::Required);
    assert_eq!(bound.metadata["dpop_bound_access_tokens"], true);
    let plain = p.accept(&body(json!(false))).unwrap();
    assert_eq!(plain.client.dpop, crate::oauth::dpop::Mode::Allowed);
    assert!(!plain.metadata.contains_key("dpop_bound_access_tokens"));
    assert_eq!(outcome(&p, body(json!("yes"))), "invalid_client_metadata");
}
