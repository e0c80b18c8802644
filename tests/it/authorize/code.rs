//! The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3) and code redemption (§4.1.3).

use serde_json::Value;

use super::*;
use crate::flows::*;
use crate::helpers::*;

#[tokio::test]
async fn rfc6749_s4_1_pkce_sign_in_issues_the_humans_access_and_refresh_tokens() {
    for b in backends() {
        let app = spawn_app(b).await;
        let t = sign_in(&app, "alice", "alice-password", "cli", SCOPE).await;
        assert_eq!(t["token_type"], "Bearer");
        assert_eq!(t["scope"], SCOPE);
        assert!(t["refresh_token"].as_str().unwrap().len() >= 43);
        let c = claims(t["access_token"].as_str().unwrap());
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["client_id"], "cli");
        assert_eq!(c["scope"], SCOPE);
        assert_eq!(c["aud"], serde_json::json!(["billing-api", "orders-api"]));
        assert!(c["sid"].as_str().unwrap().len() >= 22);
        let i = app.introspect(t["access_token"].as_str().unwrap()).await;
        assert_eq!(i["active"], true, "{}", app.label());
        assert_eq!(i["sid"], c["sid"]);
        assert!(
            audit_kinds(&app)
                .await
                .iter()
                .any(|k| k == "user.signed_in")
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc6749_s3_3_default_scope_is_what_both_client_and_user_may_hold() {
    for b in backends() {
        let app = spawn_app(b).await;
        let t = sign_in(&app, "bob", "bob-password", "cli", "").await;
        assert_eq!(t["scope"], "orders:read", "{}", app.label());
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc8707_audience_on_the_authorization_request_sets_aud() {
    for b in backends() {
        let app = spawn_app(b).await;
        let mut br = Browser::new(&app);
        let pkce = Pkce::new();
        let q = authorize_query(
            "cli",
            "orders:read",
            "s",
            &pkce.challenge,
            &[("audience", "orders-api")],
        );
        let loc = br
            .authorize_and_approve(&q, "alice", "alice-password")
            .await;
        let t: Value = redeem(&app, "cli", &code_from(&loc, "s"), &pkce.verifier)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            claims(t["access_token"].as_str().unwrap())["aud"],
            "orders-api"
        );
        // An unknown resource server: invalid_target back to the client, state echoed.
        let q = authorize_query(
            "cli",
            "orders:read",
            "s2",
            &pkce.challenge,
            &[("resource", "nope")],
        );
        let page = br.get(&format!("/authorize?{q}")).await;
        let p = redirect_params(page.location.as_deref().unwrap());
        assert_eq!(p["error"], "invalid_target");
        assert_eq!(p["state"], "s2");
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc6749_s4_1_2_1_scope_beyond_the_user_is_invalid_scope_with_state() {
    for b in backends() {
        let app = spawn_app(b).await;
        let mut br = Browser::new(&app);
        let pkce = Pkce::new();
        // Within the client's scopes, beyond bob's: known only after sign-in.
        let q = authorize_query("cli", "orders:write", "xyz", &pkce.challenge, &[]);
        let loc = br.authorize_and_approve(&q, "bob", "bob-password").await;
        let p = redirect_params(&loc);
        assert_eq!(p["error"], "invalid_scope", "{}", app.label());
        assert_eq!(p["state"], "xyz");
        assert!(!p.contains_key("code"));
        // Beyond the client's scopes: refused before sign-in.
        let q = authorize_query("cli", "admin", "abc", &pkce.challenge, &[]);
        let page = Browser::new(&app).get(&format!("/authorize?{q}")).await;
        assert_eq!(page.status, 302);
        let p = redirect_params(page.location.as_deref().unwrap());
        assert_eq!(p["error"], "invalid_scope");
        assert_eq!(p["state"], "abc");
        assert_eq!(p["iss"], app.url, "RFC 9207 iss");
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc6749_s3_1_2_unknown_client_or_unregistered_redirect_uri_is_a_page_never_a_redirect() {
    for b in backends() {
        let app = spawn_app(b).await;
        let pkce = Pkce::new();
        let good = authorize_query("cli", SCOPE, "s", &pkce.challenge, &[]);
        let cases = [
            good.replace("client_id=cli", "client_id=nobody"),
            good.replace("client_id=cli&", ""),
            good.replace("client_id=cli", "client_id=cli&client_id=cli"),
            // Exact match only (RFC 9700 §2.1): no trailing slash, no other port, no prefix.
            good.replace("callback", "callback%2F"),
            good.replace("9999", "9998"),
            good.replace("callback", "callback%3Fx%3D1"),
            good.replace("redirect_uri=http%3A%2F%2F127.0.0.1%3A9999%2Fcallback&", ""),
            // A confidential client with no redirect URIs.
            good.replace("client_id=cli", "client_id=agent-runtime"),
        ];
        for q in cases {
            let page = Browser::new(&app).get(&format!("/authorize?{q}")).await;
            assert_eq!(page.status, 400, "{q}");
            assert!(page.location.is_none(), "{q}");
            assert!(
                page.headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
            assert!(
                !page.body.contains("9999"),
                "the bad target is not linked: {q}"
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc7636_s4_4_1_plain_or_missing_pkce_and_bad_response_type_redirect_with_errors() {
    for b in backends() {
        let app = spawn_app(b).await;
        let pkce = Pkce::new();
        let good = authorize_query("cli", SCOPE, "st8", &pkce.challenge, &[]);
        let cases = [
            (good.replace("S256", "plain"), "invalid_request", "plain"),
            (
                good.replace("&code_challenge_method=S256", ""),
                "invalid_request",
                "S256",
            ),
            (
                good.replace(&format!("code_challenge={}&", pkce.challenge), ""),
                "invalid_request",
                "code_challenge",
            ),
            (
                good.replace(&pkce.challenge, "short"),
                "invalid_request",
                "43",
            ),
            (
                good.replace("response_type=code", "response_type=token"),
                "unsupported_response_type",
                "code",
            ),
            (
                good.replace("response_type=code&", ""),
                "invalid_request",
                "response_type",
            ),
            (
                format!("{good}&scope=orders%3Aread"),
                "invalid_request",
                "scope",
            ),
        ];
        for (q, error, hint) in cases {
            let page = Browser::new(&app).get(&format!("/authorize?{q}")).await;
            assert_eq!(page.status, 302, "{q}");
            let p = redirect_params(page.location.as_deref().unwrap());
            assert_eq!(p["error"], error, "{q}");
            assert_eq!(p["state"], "st8", "state is echoed on errors: {q}");
            assert!(
                p["error_description"].contains(hint),
                "{q}: {}",
                p["error_description"]
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc7636_s4_6_wrong_or_missing_verifier_is_invalid_grant_and_does_not_burn_the_code() {
    for b in backends() {
        let app = spawn_app(b).await;
        let (code, pkce, _) = code_for(&app, SCOPE).await;
        let other = Pkce::new();
        for verifier in [other.verifier.as_str(), "too-short", &pkce.challenge] {
            let resp = redeem(&app, "cli", &code, verifier).await;
            assert_eq!(resp.status(), 400);
            let e: Value = resp.json().await.unwrap();
            assert_eq!(e["error"], "invalid_grant", "{}", app.label());
            assert!(!e.to_string().contains(verifier), "no secret in error text");
        }
        let resp = app
            .post_form(
                "/token",
                None,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", "cli"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT_URI),
                ],
            )
            .await;
        assert_eq!(
            resp.json::<Value>().await.unwrap()["error"],
            "invalid_grant"
        );
        assert_eq!(
            redeem(&app, "cli", &code, &pkce.verifier).await.status(),
            200
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc6749_s4_1_3_code_is_bound_to_redirect_uri_and_client_and_expires() {
    let extra = r#"
[[clients]]
client_id = "cli2"
public = true
redirect_uris = ["http://127.0.0.1:9999/callback", "http://127.0.0.1:9999/other"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["orders:read"]
"#;
    for b in backends() {
        let app = spawn_app_with(b, extra).await;
        let (code, pkce, _) = code_for(&app, "orders:read").await;
        let form = |client: &'static str, uri: &'static str| {
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", client),
                ("code", code.as_str()),
                ("redirect_uri", uri),
                ("code_verifier", pkce.verifier.as_str()),
            ]
        };
        for (f, why) in [
            (form("cli", "http://127.0.0.1:9999/other"), "redirect_uri"),
            (
                form("cli", "http://127.0.0.1:9999/callback/"),
                "redirect_uri",
            ),
            (form("cli2", REDIRECT_URI), "another client"),
        ] {
            let e: Value = app
                .post_form("/token", None, &f)
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(e["error"], "invalid_grant", "{f:?}");
            assert!(
                e["error_description"].as_str().unwrap().contains(why),
                "{e}"
            );
        }
        assert_eq!(
            redeem(&app, "cli", &code, &pkce.verifier).await.status(),
            200
        );
        app.stop().await;

        let app = spawn_app_with(b, "[tokens]\nauthorization_code_ttl = \"1s\"\n").await;
        let (code, pkce, _) = code_for(&app, "orders:read").await;
        app.advance(1); // RFC 6749 §4.1.2: a code lives its lifetime and not a second more
        let e: Value = redeem(&app, "cli", &code, &pkce.verifier)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(e["error"], "invalid_grant", "expired codes are refused");
        assert!(e["error_description"].as_str().unwrap().contains("expired"));
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc6749_s4_1_2_code_reuse_revokes_tokens() {
    for b in backends() {
        let app = spawn_app(b).await;
        let (code, pkce, _) = code_for(&app, SCOPE).await;
        let unknown = redeem(&app, "cli", "not-a-code", &pkce.verifier).await;
        assert_eq!(unknown.status(), 400, "bad input is never a 500");
        assert_eq!(
            unknown.json::<Value>().await.unwrap()["error"],
            "invalid_grant"
        );
        let first: Value = redeem(&app, "cli", &code, &pkce.verifier)
            .await
            .json()
            .await
            .unwrap();
        let access = first["access_token"].as_str().unwrap();
        assert_eq!(app.introspect(access).await["active"], true);
        let resp = redeem(&app, "cli", &code, &pkce.verifier).await;
        assert_eq!(resp.status(), 400);
        assert_eq!(
            resp.json::<Value>().await.unwrap()["error"],
            "invalid_grant"
        );
        assert_eq!(
            app.introspect(access).await["active"],
            false,
            "{}",
            app.label()
        );
        let (status, e) =
            refresh(&app, "cli", first["refresh_token"].as_str().unwrap(), None).await;
        assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
        assert!(
            audit_kinds(&app)
                .await
                .iter()
                .any(|k| k == "code.reuse_detected")
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc6749_s4_1_2_two_concurrent_redemptions_exactly_one_wins() {
    for b in backends() {
        let app = spawn_app(b).await;
        for _ in 0..3 {
            let (code, pkce, _) = code_for(&app, SCOPE).await;
            let (r1, r2) = tokio::join!(
                redeem(&app, "cli", &code, &pkce.verifier),
                redeem(&app, "cli", &code, &pkce.verifier)
            );
            let mut statuses = [r1.status().as_u16(), r2.status().as_u16()];
            let bodies: Vec<Value> = vec![r1.json().await.unwrap(), r2.json().await.unwrap()];
            statuses.sort();
            assert_eq!(statuses, [200, 400], "{} {bodies:?}", app.label());
            let won = bodies
                .iter()
                .find(|b| b.get("access_token").is_some())
                .unwrap();
            let lost = bodies.iter().find(|b| b.get("error").is_some()).unwrap();
            assert_eq!(lost["error"], "invalid_grant");
            // The loser is a replay: whatever the winner got is dead, whichever write landed first.
            let at = won["access_token"].as_str().unwrap();
            assert_eq!(app.introspect(at).await["active"], false);
        }
        app.stop().await;
    }
}
