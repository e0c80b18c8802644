//! Refresh tokens: rotation, narrowing, reuse detection (RFC 6749 §6, RFC 9700 §4.14).

use super::*;
use crate::flows::*;
use crate::helpers::*;

#[tokio::test]
async fn rfc9700_s4_14_refresh_rotates_and_reuse_revokes_the_family() {
    for b in backends() {
        let app = spawn_app(b).await;
        let t = sign_in(&app, "alice", "alice-password", "cli", SCOPE).await;
        let r0 = t["refresh_token"].as_str().unwrap();
        let sid = claims(t["access_token"].as_str().unwrap())["sid"].clone();
        let (status, t1) = refresh(&app, "cli", r0, None).await;
        assert_eq!(status, 200, "{t1}");
        let r1 = t1["refresh_token"].as_str().unwrap();
        assert_ne!(r1, r0, "rotated");
        let a1 = t1["access_token"].as_str().unwrap();
        assert_eq!(claims(a1)["sid"], sid, "same session");
        assert_eq!(claims(a1)["sub"], "alice");
        assert_eq!(app.introspect(a1).await["active"], true);
        // The rotated token comes back: the whole session dies.
        let (status, e) = refresh(&app, "cli", r0, None).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some("invalid_grant")),
            "{}",
            app.label()
        );
        assert_eq!(app.introspect(a1).await["active"], false);
        assert_eq!(
            app.introspect(t["access_token"].as_str().unwrap()).await["active"],
            false
        );
        let (status, e) = refresh(&app, "cli", r1, None).await;
        assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
        assert!(
            audit_kinds(&app)
                .await
                .iter()
                .any(|k| k == "token.reuse_detected")
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc6749_s6_refresh_scope_only_narrows_and_refresh_is_bound_to_its_client() {
    let extra = r#"
[[clients]]
client_id = "cli2"
public = true
redirect_uris = ["http://127.0.0.1:9999/callback"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["orders:read", "orders:write"]
"#;
    for b in backends() {
        let app = spawn_app_with(b, extra).await;
        let t = sign_in(&app, "alice", "alice-password", "cli", SCOPE).await;
        let r0 = t["refresh_token"].as_str().unwrap();
        // Refused requests do not consume the token.
        let (status, e) = refresh(&app, "cli", r0, Some("orders:read payments:write")).await;
        assert_eq!((status, e["error"].as_str()), (400, Some("invalid_scope")));
        let (status, e) = refresh(&app, "cli2", r0, None).await;
        assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
        let (status, e) = refresh(&app, "cli", t["access_token"].as_str().unwrap(), None).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some("invalid_grant")),
            "an access token is no refresh token"
        );
        let (status, t1) = refresh(&app, "cli", r0, Some("orders:read")).await;
        assert_eq!(status, 200, "{t1} {}", app.label());
        assert_eq!(t1["scope"], "orders:read");
        assert_eq!(
            claims(t1["access_token"].as_str().unwrap())["scope"],
            "orders:read"
        );
        // RFC 6749 §6: the new refresh token keeps the original scope.
        let (status, t2) = refresh(&app, "cli", t1["refresh_token"].as_str().unwrap(), None).await;
        assert_eq!(status, 200);
        assert_eq!(t2["scope"], SCOPE);
        app.stop().await;
    }
}
