//! Cookies, browser sessions and CSRF tokens.
//!
//! Two cookies, both HttpOnly, SameSite=Lax, Path=/, and Secure with the `__Host-` prefix when
//! the issuer is https (so a sibling domain cannot plant them):
//! - `mandate_csrf`: a random seed set on the first page; the login form's CSRF token is derived
//!   from it, so a cross-site page can neither read nor forge the token (login CSRF).
//! - `mandate_session`: a random 256-bit id after sign-in, stored only as its SHA-256.
//!   Forms shown to a signed-in human carry a token derived from this id.
//!
//! Tokens are SHA-256 of a purpose label and the cookie's secret: nothing to keep per form, and
//! any replica sharing the database checks them the same way. Compared in constant time.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};
use subtle::ConstantTimeEq;

use crate::audit::AuditEvent;
use crate::crypto::{b64url, random_bytes, sha256};
use crate::oauth::user::User;
use crate::oauth::{Ctx, OAuthError};
use crate::store::WriteOp;

const CSRF_COOKIE: &str = "mandate_csrf";
const SESSION_COOKIE: &str = "mandate_session";
/// How long a sign-in lasts on the server; the cookie itself ends with the browser session.
pub const SESSION_TTL: i64 = 8 * 3600;

fn secure(ctx: &Ctx) -> bool {
    ctx.issuer.starts_with("https://")
}

fn name(ctx: &Ctx, base: &str) -> String {
    if secure(ctx) {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (RFC 6265 §5.4).
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn set_cookie(ctx: &Ctx, base: &str, value: &str) -> Option<HeaderValue> {
    let secure = if secure(ctx) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax{secure}",
        name(ctx, base)
    ))
    .ok()
}

fn derive(label: &str, secret: &str) -> String {
    let mut buf = Vec::with_capacity(label.len() + 1 + secret.len());
    buf.extend_from_slice(label.as_bytes());
    buf.push(0);
    buf.extend_from_slice(secret.as_bytes());
    b64url(&sha256(&buf))
}

fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The login form's CSRF token and, when the browser had no seed yet, the cookie to set.
pub fn login_csrf(ctx: &Ctx, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, &name(ctx, CSRF_COOKIE)) {
        Some(seed) => (derive("login", seed), None),
        None => {
            let seed = b64url(&random_bytes::<32>());
            (derive("login", &seed), set_cookie(ctx, CSRF_COOKIE, &seed))
        }
    }
}

/// Whether `presented` is the login CSRF token of this browser.
pub fn login_csrf_ok(ctx: &Ctx, headers: &HeaderMap, presented: Option<&str>) -> bool {
    match (cookie(headers, &name(ctx, CSRF_COOKIE)), presented) {
        (Some(seed), Some(p)) => same(&derive("login", seed), p),
        _ => false,
    }
}

/// A signed-in browser.
pub struct Session {
    pub user: Arc<User>,
    /// The CSRF token of forms shown in this session.
    pub csrf: String,
}

impl Session {
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| same(&self.csrf, p))
    }
}

/// The signed-in user of this browser, if its session is live and the user still exists.
pub async fn current(ctx: &Ctx, headers: &HeaderMap) -> Result<Option<Session>, OAuthError> {
    let Some(id) = cookie(headers, &name(ctx, SESSION_COOKIE)) else {
        return Ok(None);
    };
    let username = ctx
        .store
        .browser_session(&sha256(id.as_bytes()), ctx.clock.now())
        .await?;
    Ok(username
        .and_then(|u| ctx.users.get(&u))
        .map(|user| Session {
            user,
            csrf: derive("session", id),
        }))
}

/// Starts a session for `user` (a fresh id at every sign-in, so a planted id is useless) and
/// returns its `Set-Cookie` value.
pub async fn start(ctx: &Ctx, user: &User) -> Result<HeaderValue, OAuthError> {
    let now = ctx.clock.now();
    let id = b64url(&random_bytes::<32>());
    ctx.store
        .create_browser_session(
            &sha256(id.as_bytes()),
            &user.username,
            now,
            now + SESSION_TTL,
        )
        .await?;
    let mut ev = AuditEvent::new("user.signed_in");
    ev.subject = Some(user.username.clone());
    ctx.writer.write(WriteOp::None, vec![ev]).await?;
    set_cookie(ctx, SESSION_COOKIE, &id)
        .ok_or_else(|| OAuthError::internal("session cookie is not a header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6265_s5_4_cookie_is_found_among_several() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; mandate_csrf=xyz ; b=2".parse().unwrap(),
        );
        h.append(header::COOKIE, "c=3".parse().unwrap());
        assert_eq!(cookie(&h, "mandate_csrf"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "mandate"), None);
    }

    #[test]
    fn csrf_tokens_differ_by_purpose_and_secret() {
        assert_ne!(derive("login", "s"), derive("session", "s"));
        assert_ne!(derive("login", "s"), derive("login", "t"));
        assert!(same(&derive("login", "s"), &derive("login", "s")));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
