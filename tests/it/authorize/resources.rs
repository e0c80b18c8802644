//! Resource servers named by URL (`[[resources]]`): the `resource` parameter (RFC 8707 §2)
//! matched by canonical form as the MCP authorization spec asks, the resource's scopes as a
//! ceiling, and its tools described on the consent page.

use serde_json::Value;

use crate::flows::*;
use crate::helpers::*;

const FILES: &str = r#"
[[resources]]
uri = "https://files.example/mcp"
name = "Team files"
scopes = ["orders:read", "orders:write"]
tools = [
  { name = "read_order", scope = "orders:read", description = "Read your orders" },
  { name = "cancel_order", scope = "orders:write", description = "Cancel <b>any</b> order" },
]
"#;

/// The consent page for `query` after alice signs in.
pub async fn consent_page(br: &mut Browser<'_>, query: &str) -> String {
    let url = format!("/authorize?{query}");
    let login = br.get(&url).await;
    let after = br
        .submit(
            &url,
            &login,
            &[("username", "alice"), ("password", "alice-password")],
        )
        .await;
    assert_eq!(after.status, 303, "{}", after.body);
    let consent = br.get(after.location.as_deref().unwrap()).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    consent.body
}

/// RFC 8707 §2 and MCP authorization "canonical server URI": a `resource` spelled with another
/// case of scheme and host, or with the default port, names the configured resource, and the
/// token's `aud` is the URI as configured; the resource's scopes bound the default scope.
#[tokio::test]
async fn rfc8707_s2_resource_matches_by_canonical_uri_and_aud_is_the_configured_one() {
    for b in backends() {
        let app = spawn_app_with(b, FILES).await;
        let mut br = Browser::new(&app);
        let pkce = Pkce::new();
        // No scope asked: what client, user and resource all allow (not payments:write).
        let q = authorize_query(
            "cli",
            "",
            "s",
            &pkce.challenge,
            &[("resource", "HTTPS://Files.Example:443/mcp")],
        );
        let loc = br
            .authorize_and_approve(&q, "alice", "alice-password")
            .await;
        let t: Value = redeem(&app, "cli", &code_from(&loc, "s"), &pkce.verifier)
            .await
            .json()
            .await
            .unwrap();
        let c = claims(t["access_token"].as_str().unwrap());
        assert_eq!(c["aud"], "https://files.example/mcp", "{}", app.label());
        assert_eq!(c["scope"], "orders:read orders:write");
        // The path stays case-sensitive: another path is another (unknown) resource.
        let q = authorize_query(
            "cli",
            "orders:read",
            "s2",
            &pkce.challenge,
            &[("resource", "https://files.example/MCP")],
        );
        let page = br.get(&format!("/authorize?{q}")).await;
        let p = redirect_params(page.location.as_deref().unwrap());
        assert_eq!(p["error"], "invalid_target");
        app.stop().await;
    }
}

/// RFC 6749 §3.3: a scope the resource does not list is refused for a grant to that resource
/// alone (`invalid_scope` back to the client, state echoed), and nothing is issued.
#[tokio::test]
async fn rfc6749_s3_3_a_scope_the_resource_does_not_list_is_invalid_scope() {
    for b in backends() {
        let app = spawn_app_with(b, FILES).await;
        let mut br = Browser::new(&app);
        let pkce = Pkce::new();
        let q = authorize_query(
            "cli",
            "orders:read payments:write",
            "s3",
            &pkce.challenge,
            &[("resource", "https://files.example/mcp")],
        );
        let loc = br
            .authorize_and_approve(&q, "alice", "alice-password")
            .await;
        let p = redirect_params(&loc);
        assert_eq!(p["error"], "invalid_scope", "{}", app.label());
        assert!(p["error_description"].contains("payments:write"));
        assert_eq!(p["state"], "s3");
        assert!(!p.contains_key("code"));
        app.stop().await;
    }
}

/// The consent page says, per scope, which tools it opens and what they do, names the
/// resource, and escapes the operator's words like anything else.
#[tokio::test]
async fn the_consent_page_says_what_each_scope_lets_the_agent_do() {
    let app = spawn_app_with(backends()[0], FILES).await;
    let mut br = Browser::new(&app);
    let pkce = Pkce::new();
    let q = authorize_query(
        "cli",
        "orders:read orders:write",
        "s",
        &pkce.challenge,
        &[("resource", "https://files.example/mcp")],
    );
    let body = consent_page(&mut br, &q).await;
    assert!(body.contains("Read your orders"), "{body}");
    assert!(body.contains("read_order at Team files"), "{body}");
    assert!(
        body.contains("Cancel &#60;b&#62;any&#60;/b&#62; order"),
        "{body}"
    );
    assert!(!body.contains("<b>any</b>"));
    assert!(body.contains("Team files <code>https://files.example/mcp</code>"));
    app.stop().await;
}

/// RFC 8707 §2.2: `resource` at `/token` narrows the access token to some of what the grant is
/// for, on the code and on each refresh, while the refresh token keeps the whole grant; a
/// resource the grant is not for is `invalid_target` and burns neither the code nor the
/// refresh token.
#[tokio::test]
async fn rfc8707_s2_2_resource_at_the_token_endpoint_narrows_the_access_token() {
    for b in backends() {
        let app = spawn_app(b).await;
        let mut br = Browser::new(&app);
        let pkce = Pkce::new();
        // No resource asked at /authorize: the grant is for both resource servers.
        let q = authorize_query("cli", "orders:read", "s", &pkce.challenge, &[]);
        let loc = br
            .authorize_and_approve(&q, "alice", "alice-password")
            .await;
        let code = code_from(&loc, "s");
        let form = |extra: &'static str| {
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", "cli"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", pkce.verifier.as_str()),
                ("resource", extra),
            ]
        };
        let r = app.post_form("/token", None, &form("nope")).await;
        assert_eq!(r.status(), 400, "{}", app.label());
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_target");
        let t: Value = app
            .post_form("/token", None, &form("orders-api"))
            .await
            .json()
            .await
            .unwrap();
        let at = t["access_token"].as_str().expect("the code still works");
        assert_eq!(claims(at)["aud"], "orders-api");
        let rt = t["refresh_token"].as_str().unwrap().to_string();
        let refresh = |rt: String, resource: &'static str| {
            let app = &app;
            async move {
                app.post_form(
                    "/token",
                    None,
                    &[
                        ("grant_type", "refresh_token"),
                        ("client_id", "cli"),
                        ("refresh_token", &rt),
                        ("resource", resource),
                    ],
                )
                .await
            }
        };
        let r = refresh(rt.clone(), "nope").await;
        assert_eq!(r.status(), 400);
        let t: Value = refresh(rt, "billing-api").await.json().await.unwrap();
        let at = t["access_token"]
            .as_str()
            .expect("the refresh token still works");
        assert_eq!(claims(at)["aud"], "billing-api", "the grant kept both");
        app.stop().await;
    }
}
