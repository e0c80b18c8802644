//! Human sign-in: the authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636), the login
//! and consent pages, and rotating refresh tokens (RFC 6749 §6, RFC 9700 §4.14).

mod code;
mod oidc;
mod pages;
mod refresh;
pub mod resources;

use serde_json::Value;

use crate::flows::*;
use crate::helpers::*;

pub const SCOPE: &str = "orders:read orders:write";

pub async fn refresh(
    app: &TestApp,
    client_id: &str,
    token: &str,
    scope: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("refresh_token", token),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let resp = app.post_form("/token", None, &form).await;
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// A code for alice through `cli`, with its PKCE verifier and the browser (signed in).
pub async fn code_for<'a>(app: &'a TestApp, scope: &str) -> (String, Pkce, Browser<'a>) {
    let mut b = Browser::new(app);
    let pkce = Pkce::new();
    let q = authorize_query("cli", scope, "st", &pkce.challenge, &[]);
    let loc = b.authorize_and_approve(&q, "alice", "alice-password").await;
    (code_from(&loc, "st"), pkce, b)
}

pub async fn audit_kinds(app: &TestApp) -> Vec<String> {
    app.audit_entries()
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect()
}
