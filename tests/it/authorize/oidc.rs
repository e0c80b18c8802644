//! OpenID Connect Core 1.0 on the code flow: `openid` in the scope yields an ID Token beside
//! the access token, and `/.well-known/openid-configuration` says only what that supports.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::flows::*;
use crate::helpers::*;

const OIDC_APP: &str = r#"
[[clients]]
client_id = "oidc-app"
public = true
redirect_uris = ["http://127.0.0.1:9999/callback"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["openid", "orders:read"]
"#;

/// §3.1.3.3, §3.1.3.7, §3.1.2.1, §3.1.3.6: the ID Token is signed by a key of the JWKS, names
/// the human as `sub` and the client as `aud`, echoes the `nonce`, and its `at_hash` is the left
/// half of the SHA-256 of the access token it came with. Every human may grant `openid` (bob's
/// own scopes do not list it).
#[tokio::test]
async fn oidc_core_s3_1_3_3_openid_scope_yields_a_signed_id_token_with_the_nonce() {
    for b in backends() {
        let app = spawn_app_with(b, OIDC_APP).await;
        let mut br = Browser::new(&app);
        let pkce = Pkce::new();
        let q = authorize_query(
            "oidc-app",
            "openid orders:read",
            "s",
            &pkce.challenge,
            &[("nonce", "n-0S6_WzA2Mj")],
        );
        let loc = br.authorize_and_approve(&q, "bob", "bob-password").await;
        let t: Value = redeem(&app, "oidc-app", &code_from(&loc, "s"), &pkce.verifier)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(t["scope"], "openid orders:read", "{}", app.label());
        let id = t["id_token"].as_str().expect("an id_token");
        let header = jsonwebtoken::decode_header(id).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        let (_, _, jwks) = app.get_json("/jwks.json").await;
        let set: JwkSet = serde_json::from_value(jwks).unwrap();
        let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["oidc-app"]);
        v.set_issuer(&[app.url.as_str()]);
        let c: Value = jsonwebtoken::decode(id, &DecodingKey::from_jwk(jwk).unwrap(), &v)
            .unwrap()
            .claims;
        assert_eq!(c["sub"], "bob");
        assert_eq!(c["nonce"], "n-0S6_WzA2Mj");
        let at = t["access_token"].as_str().unwrap();
        let digest = mandate::crypto::sha256(at.as_bytes());
        assert_eq!(c["at_hash"], mandate::crypto::b64url(&digest[..16]));
        assert!(c["exp"].as_i64().unwrap() > c["iat"].as_i64().unwrap());
        // Without `openid`, no ID Token.
        let pkce = Pkce::new();
        let q = authorize_query("oidc-app", "orders:read", "s2", &pkce.challenge, &[]);
        let loc = br.authorize_and_approve(&q, "bob", "bob-password").await;
        let t: Value = redeem(&app, "oidc-app", &code_from(&loc, "s2"), &pkce.verifier)
            .await
            .json()
            .await
            .unwrap();
        assert!(t.get("id_token").is_none(), "{t}");
        app.stop().await;
    }
}

/// §3.1.2.2: a malformed `nonce` is `invalid_request` back to the client, before sign-in.
#[tokio::test]
async fn oidc_core_s3_1_2_2_an_overlong_nonce_is_invalid_request() {
    let app = spawn_app_with(backends()[0], OIDC_APP).await;
    let mut br = Browser::new(&app);
    let pkce = Pkce::new();
    let long = "n".repeat(513);
    let q = authorize_query(
        "oidc-app",
        "openid",
        "s",
        &pkce.challenge,
        &[("nonce", &long)],
    );
    let page = br.get(&format!("/authorize?{q}")).await;
    let p = redirect_params(page.location.as_deref().unwrap());
    assert_eq!(p["error"], "invalid_request");
    assert_eq!(p["state"], "s");
    app.stop().await;
}

/// OpenID Connect Discovery 1.0 §3: the REQUIRED fields are present and true of what the server
/// does: public subject identifiers, ES256 ID Tokens, `openid` among the scopes.
#[tokio::test]
async fn oidc_discovery_s3_required_metadata_is_present_and_true() {
    let app = spawn_app_with(backends()[0], OIDC_APP).await;
    let (status, _, m) = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
    for field in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ] {
        assert!(m.get(field).is_some(), "{field} missing: {m}");
    }
    assert_eq!(m["subject_types_supported"], serde_json::json!(["public"]));
    assert_eq!(
        m["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    let scopes = m["scopes_supported"].as_array().unwrap();
    assert!(scopes.iter().any(|s| s == "openid"), "{m}");
    app.stop().await;
}
