use serde_json::json;

use super::*;
use crate::cimd::url;

const URL: &str = "https://app.example.com/oauth/client.json";

fn check(doc: serde_json::Value) -> Result<ClientMetadata, Refusal> {
    let u = url::parse(URL).unwrap();
    validate(&u, doc.to_string().as_bytes(), false)
}

fn good() -> serde_json::Value {
    json!({
        "client_id": URL,
        "client_name": "Example MCP Client",
        "client_uri": "https://app.example.com",
        "logo_uri": "https://app.example.com/logo.png",
        "redirect_uris": ["http://127.0.0.1:3000/callback", "http://localhost:3000/callback"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "software_id": "ignored",
        "contacts": ["ignored"],
    })
}

fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut d = good();
    d[key] = value;
    d
}

fn without(key: &str) -> serde_json::Value {
    let mut d = good();
    d.as_object_mut().unwrap().remove(key);
    d
}

fn rule(r: DocumentRule) -> Result<(), Refusal> {
    Err(Refusal::Document(r))
}

/// The MCP 2026-07-28 example document is accepted as it is, and read into the typed struct.
#[test]
fn the_mcp_example_document_is_accepted() {
    let m = check(good()).unwrap();
    assert_eq!(m.client_id, URL);
    assert_eq!(m.host, "app.example.com");
    assert_eq!(m.client_name.as_deref(), Some("Example MCP Client"));
    assert_eq!(m.redirect_uris.len(), 2);
    assert_eq!(m.grant_types, vec![GrantType::AuthorizationCode]);
    assert_eq!(m.client_uri.as_deref(), Some("https://app.example.com"));
    assert_eq!(
        m.logo_uri.as_deref(),
        Some("https://app.example.com/logo.png")
    );
    assert!(m.loopback_redirects_only());
    assert!(!m.listed);
    // The minimum: client_id and redirect_uris; RFC 7591 §2 defaults apply.
    let min =
        check(json!({"client_id": URL, "redirect_uris": ["https://app.example.com/cb"]})).unwrap();
    assert_eq!(min.grant_types, vec![GrantType::AuthorizationCode]);
    assert_eq!(min.client_name, None);
    assert!(!min.loopback_redirects_only());
}

/// Draft-03 "Client ID Metadata Document": the `client_id` member MUST equal the URL by simple
/// string comparison (RFC 3986 §6.2.1): no normalization, no trailing slash, no case folding.
#[test]
fn client_id_must_equal_the_url_byte_for_byte() {
    for other in [
        json!("https://app.example.com/oauth/client.json/"),
        json!("https://APP.example.com/oauth/client.json"),
        json!("https://app.example.com:443/oauth/client.json"),
        json!("https://app.example.com/oauth/client.json?x"),
        json!("https://other.example.com/oauth/client.json"),
        json!(" https://app.example.com/oauth/client.json"),
        json!(["https://app.example.com/oauth/client.json"]),
        json!(null),
    ] {
        assert_eq!(
            check(with("client_id", other.clone())).map(drop),
            rule(DocumentRule::ClientIdMismatch),
            "{other}"
        );
    }
    assert_eq!(
        check(without("client_id")).map(drop),
        rule(DocumentRule::ClientIdMismatch)
    );
}

#[test]
fn a_document_is_a_json_object() {
    let u = url::parse(URL).unwrap();
    for body in [
        &b"[]"[..],
        b"\"x\"",
        b"{",
        b"",
        b"{\"client_id\": 1}x",
        b"\xff\xfe{}",
    ] {
        let got = validate(&u, body, false).map(drop);
        assert_eq!(got, Err(Refusal::NotJson), "{body:?}");
    }
}

/// Draft-03: no shared secret can exist, so `client_secret`, `client_secret_expires_at` and a
/// secret-based `token_endpoint_auth_method` are refused; `private_key_jwt` is refused by this
/// server for now (module doc).
#[test]
fn shared_secrets_and_confidential_auth_methods_are_refused() {
    assert_eq!(
        check(with("client_secret", json!("s3cret"))).map(drop),
        rule(DocumentRule::ClientSecret)
    );
    assert_eq!(
        check(with("client_secret_expires_at", json!(0))).map(drop),
        rule(DocumentRule::ClientSecret)
    );
    for m in [
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt",
        "tls_client_auth",
        "",
    ] {
        assert_eq!(
            check(with("token_endpoint_auth_method", json!(m))).map(drop),
            rule(DocumentRule::AuthMethod),
            "{m}"
        );
    }
    assert!(check(without("token_endpoint_auth_method")).is_ok());
}

/// RFC 6749 §3.1.2 (absolute, no fragment), RFC 8252 §7.1 (private-use schemes named after a
/// domain), §7.3 (http only on loopback), and the draft's "Redirect URL Registration" (the
/// document's list is the registration, so it must exist).
#[test]
fn redirect_uris_are_required_and_each_is_one_a_client_may_register() {
    assert_eq!(
        check(without("redirect_uris")).map(drop),
        rule(DocumentRule::NoRedirectUris)
    );
    assert_eq!(
        check(with("redirect_uris", json!([]))).map(drop),
        rule(DocumentRule::NoRedirectUris)
    );
    assert_eq!(
        check(with("redirect_uris", json!("https://app.example.com/cb"))).map(drop),
        rule(DocumentRule::NoRedirectUris)
    );
    let many: Vec<String> = (0..21).map(|i| format!("https://a.example/{i}")).collect();
    assert_eq!(
        check(with("redirect_uris", json!(many))).map(drop),
        rule(DocumentRule::TooManyRedirectUris)
    );
    for ok in [
        "https://app.example.com/callback",
        "https://app.example.com:8443/cb?x=1",
        "http://127.0.0.1/cb",
        "http://127.0.0.1:49152/cb",
        "http://[::1]:8080/cb",
        "http://localhost:3000/callback",
        "com.example.app:/oauth2redirect",
        "com.example.app://cb",
    ] {
        assert!(
            check(with("redirect_uris", json!([ok]))).is_ok(),
            "{ok} should be accepted"
        );
    }
    for bad in [
        "/callback",
        "callback",
        "https://app.example.com/cb#frag",
        "http://app.example.com/cb",
        "http://127.0.0.1.evil.example/cb",
        "http://localhost.evil.example/cb",
        "https://user@app.example.com/cb",
        "https:///cb",
        "https:cb",
        "javascript:alert(1)",
        "data:text/html,x",
        "file:///etc/passwd",
        "myapp:/cb",
        "com.example.app:",
        "HTTPS://app.example.com/cb",
        "https://app.example.com/c b",
        "https://app.example.com/\u{e9}",
        "",
    ] {
        let got = check(with("redirect_uris", json!([bad])));
        assert!(
            matches!(got, Err(Refusal::Document(DocumentRule::RedirectUri(0, _)))),
            "{bad:?} gave {got:?}"
        );
    }
    let got = check(with("redirect_uris", json!(["https://a.example/cb", 7])));
    assert!(matches!(
        got,
        Err(Refusal::Document(DocumentRule::RedirectUri(1, _)))
    ));
}

/// RFC 7591 §2: a public client that signs users in uses the authorization code grant (and may
/// refresh); nothing else, and the implicit flow's `token` response type is not offered.
#[test]
fn grant_and_response_types_are_those_of_a_public_authorization_code_client() {
    let m = check(with(
        "grant_types",
        json!(["authorization_code", "refresh_token", "refresh_token"]),
    ))
    .unwrap();
    assert_eq!(
        m.grant_types,
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    );
    assert!(m.allows_grant("refresh_token") && !m.allows_grant("client_credentials"));
    for bad in [
        json!(["client_credentials"]),
        json!(["authorization_code", "client_credentials"]),
        json!([
            "authorization_code",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ]),
        json!(["refresh_token"]),
        json!(["implicit", "authorization_code"]),
        json!([]),
        json!("authorization_code"),
    ] {
        assert_eq!(
            check(with("grant_types", bad.clone())).map(drop),
            rule(DocumentRule::GrantTypes),
            "{bad}"
        );
    }
    for bad in [json!(["token"]), json!(["code", "token"]), json!("code")] {
        assert_eq!(
            check(with("response_types", bad.clone())).map(drop),
            rule(DocumentRule::ResponseTypes),
            "{bad}"
        );
    }
}

#[test]
fn display_members_are_bounded() {
    assert!(check(with("client_name", json!("x".repeat(100)))).is_ok());
    assert!(check(with("client_name", json!("é".repeat(100)))).is_ok());
    for bad in [
        json!("x".repeat(101)),
        json!("Evil\u{202e}gnp.exe"),
        json!("a\u{2066}b"),
        json!("a\nb"),
        json!("\u{1b}[2J"),
        json!("   "),
        json!(5),
    ] {
        let got = check(with("client_name", bad.clone())).map(drop);
        assert_eq!(got, rule(DocumentRule::ClientName), "{bad}");
    }
    for member in ["client_uri", "logo_uri"] {
        for bad in [
            json!("http://app.example.com"),
            json!("javascript:alert(1)"),
            json!(format!("https://app.example.com/{}", "a".repeat(1024))),
            json!(1),
        ] {
            let want = match member {
                "client_uri" => rule(DocumentRule::Uri("client_uri")),
                _ => rule(DocumentRule::Uri("logo_uri")),
            };
            assert_eq!(
                check(with(member, bad.clone())).map(drop),
                want,
                "{member} {bad}"
            );
        }
    }
    assert_eq!(
        check(with("scope", json!("read write")))
            .unwrap()
            .scope
            .as_deref(),
        Some("read write")
    );
    for bad in [json!("a\"b"), json!("a\tb"), json!(["read"])] {
        assert_eq!(
            check(with("scope", bad.clone())).map(drop),
            rule(DocumentRule::Scope),
            "{bad}"
        );
    }
}

/// RFC 8252 §7.3: a loopback IP redirect URI matches on any port; every other registered URI
/// only as the exact string (RFC 9700 §2.1).
#[test]
fn redirect_uri_matching_is_exact_except_the_loopback_port() {
    let m = check(with(
        "redirect_uris",
        json!([
            "http://127.0.0.1:3000/callback",
            "http://[::1]/cb",
            "http://localhost:3000/callback",
            "https://app.example.com/cb"
        ]),
    ))
    .unwrap();
    assert!(m.allows_redirect_uri("http://127.0.0.1:3000/callback"));
    assert!(m.allows_redirect_uri("http://127.0.0.1:51234/callback"));
    assert!(m.allows_redirect_uri("http://127.0.0.1/callback"));
    assert!(m.allows_redirect_uri("http://[::1]:9999/cb"));
    assert!(m.allows_redirect_uri("http://localhost:3000/callback"));
    assert!(m.allows_redirect_uri("https://app.example.com/cb"));
    assert!(!m.allows_redirect_uri("http://127.0.0.1:51234/callback2"));
    assert!(!m.allows_redirect_uri("http://127.0.0.1:51234/callback?x"));
    assert!(!m.allows_redirect_uri("http://localhost:4000/callback"));
    assert!(!m.allows_redirect_uri("http://127.0.0.1.evil.example:3000/callback"));
    assert!(!m.allows_redirect_uri("http://127.0.0.1:/callback"));
    assert!(!m.allows_redirect_uri("https://app.example.com/cb/"));
    assert!(!m.allows_redirect_uri("https://app.example.com:443/cb"));
    assert!(!m.loopback_redirects_only());
}

/// A refusal is shown to the user and may go into `error_description`: it names the rule and
/// never repeats what the document said.
#[test]
fn refusals_never_echo_the_document() {
    let evil = "https://evil.example/<script>alert(1)</script>";
    let cases = [
        with("client_id", json!(evil)),
        with("client_secret", json!("hunter2-secret")),
        with("redirect_uris", json!(["javascript:alert('hunter2')"])),
        with("token_endpoint_auth_method", json!("hunter2_method")),
        with("client_name", json!(format!("hunter2{}", "x".repeat(200)))),
        with("logo_uri", json!("http://hunter2.example/logo")),
        with("grant_types", json!(["hunter2_grant"])),
    ];
    for doc in cases {
        let text = check(doc.clone()).unwrap_err().to_string();
        for secret in ["hunter2", "<script>", "evil.example"] {
            assert!(!text.contains(secret), "{text} (from {doc})");
        }
    }
}
