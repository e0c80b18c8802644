//! Sign-in: the login page and its submission. A failed sign-in says only that the username or
//! password is wrong (never which), costs the same argon2 time for unknown users, and sets no
//! session cookie.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::pages::{self, LoginPage};
use super::session::{self, Session};
use super::{OrInternal, PageError, read_form, redirect};
use crate::oauth::Ctx;
use crate::oauth::client::DECOY_PHC;
#[cfg(test)]
use crate::oauth::client::verify_secret;
use crate::oauth::grant::authorization_code::request::{AuthorizeRequest, Rejection};
use crate::oauth::params::Params;
use crate::oauth::secret_check::Busy;
use crate::oauth::user::User;

const WRONG: &str = "The username or password is incorrect.";

/// The login page, for a pending authorization request or on its own.
pub fn form(
    ctx: &Ctx,
    headers: &HeaderMap,
    pending: Option<&AuthorizeRequest>,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
) -> Response {
    form_next(ctx, headers, pending, None, status, error, username)
}

/// Where a sign-in may continue: only our own pages, never an absolute or protocol-relative URL.
pub fn safe_next(next: &str) -> Option<&str> {
    let ok_prefix = ["/approvals", "/sessions"]
        .iter()
        .any(|p| next == *p || next.starts_with(&format!("{p}/")));
    let ok_chars = next
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_".contains(&b));
    (ok_prefix && ok_chars && !next.contains("//")).then_some(next)
}

/// The login page; after sign-in the browser goes to `next` (a page of ours) or the pending
/// authorization request.
pub fn form_next(
    ctx: &Ctx,
    headers: &HeaderMap,
    pending: Option<&AuthorizeRequest>,
    next: Option<&str>,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
) -> Response {
    let (csrf, set_cookie) = session::login_csrf(ctx, headers);
    let query = pending.map(AuthorizeRequest::to_query);
    let page = LoginPage {
        action: "/login",
        csrf: &csrf,
        pending: query.as_deref(),
        client: pending.map(|r| r.client.client_id.as_str()),
        error,
        username,
        next: next.and_then(safe_next),
    };
    let mut resp = pages::render(status, &page, pending.map(|r| r.redirect_uri.as_str()));
    if let Some(c) = set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// The signed-in human of this browser; a visitor who is not signed in gets the sign-in page
/// (with `status`), which brings them back to `next` (a page of ours) afterwards.
pub async fn require(
    ctx: &Ctx,
    headers: &HeaderMap,
    next: &str,
    status: StatusCode,
) -> Result<Session, PageError> {
    match session::current(ctx, headers)
        .await
        .doing("reading the browser session")?
    {
        Some(s) => Ok(s),
        None => Err(PageError::answer(form_next(
            ctx,
            headers,
            None,
            Some(next),
            status,
            None,
            "",
        ))),
    }
}

/// `GET /login`: sign in without an authorization request (for later pages), or say who is
/// signed in.
pub async fn get(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, PageError> {
    Ok(
        match session::current(&ctx, &headers)
            .await
            .doing("reading the browser session")?
        {
            Some(s) => signed_in_page(&s.user.username),
            None => form(&ctx, &headers, None, StatusCode::OK, None, ""),
        },
    )
}

fn signed_in_page(username: &str) -> Response {
    pages::message(
        StatusCode::OK,
        "Signed in",
        &format!("You are signed in as {username}."),
    )
}

/// `POST /login`.
pub async fn post(
    State(ctx): State<Arc<Ctx>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, PageError> {
    let p = read_form(&ctx, &headers, body).await?;
    submit(&ctx, &headers, &p, peer_address(peer)).await
}

/// The pending authorization request carried by a form, validated again.
pub async fn pending(ctx: &Ctx, p: &Params) -> Result<Option<AuthorizeRequest>, PageError> {
    let Ok(q) = p.one("pending") else {
        return Err(PageError::bad_request(
            "The form was sent with a repeated field.",
        ));
    };
    let Some(q) = q else { return Ok(None) };
    // The pending request came back through the browser: as untrusted as the first time.
    let Ok(params) = Params::parse_untrusted(q.as_bytes()) else {
        return Err(PageError::bad_request(
            "The form carried a malformed authorization request.",
        ));
    };
    match AuthorizeRequest::parse(&ctx.clients, &ctx.issuer, &params).await {
        Ok(r) => Ok(Some(r)),
        Err(Rejection::Fatal(m)) => Err(PageError::bad_request(m)),
        Err(Rejection::Unavailable(reason)) => Err(PageError::Internal {
            doing: "looking up the client",
            reason,
        }),
        Err(Rejection::Redirect(t, e)) => Err(PageError::answer(super::authorize::error_back(
            StatusCode::SEE_OTHER,
            &t,
            &e,
        ))),
    }
}

/// Checks the CSRF token and the credentials; on success starts a session and sends the browser
/// back to `/authorize` (or to the signed-in page).
/// The client's IP address (the TCP peer; a proxy in front would need its own limits).
pub fn peer_address(
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
) -> Option<String> {
    peer.map(|axum::Extension(axum::extract::ConnectInfo(a))| a.ip().to_string())
}

pub async fn submit(
    ctx: &Ctx,
    headers: &HeaderMap,
    p: &Params,
    addr: Option<String>,
) -> Result<Response, PageError> {
    if !session::login_csrf_ok(ctx, headers, p.one("csrf_token").ok().flatten()) {
        return Err(PageError::forged_form(
            "Go back, reload the page and sign in again.",
        ));
    }
    let pending = pending(ctx, p).await?;
    let next = p.one("next").ok().flatten().and_then(safe_next);
    // The sign-in form again, saying what went wrong.
    let again = |status, error: &str, username: &str| {
        Ok(form_next(
            ctx,
            headers,
            pending.as_ref(),
            next,
            status,
            Some(error),
            username,
        ))
    };
    let (Ok(username), Ok(password)) = (p.one("username"), p.one("password")) else {
        return again(StatusCode::BAD_REQUEST, WRONG, "");
    };
    let username = username.unwrap_or("");
    let Some(password) = password.filter(|_| !username.is_empty()) else {
        return again(
            StatusCode::BAD_REQUEST,
            "Enter your username and password.",
            username,
        );
    };
    // No user has a name that is not an identifier; refused before it can become a throttle key.
    if crate::input::identifier(|| crate::input::Field::named("username"), username).is_err() {
        return again(StatusCode::BAD_REQUEST, WRONG, "");
    }
    let now = ctx.clock.now();
    // Counted before the password is checked (see crate::throttle).
    if let Err(wait) = ctx.throttle.login.attempt(username, addr.as_deref(), now) {
        tracing::warn!("sign-in throttled");
        let minutes = (wait + 59) / 60;
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed sign-ins. Try again in {minutes} minutes."),
            username,
        );
    }
    let Ok(checked) = check(ctx, ctx.users.get(username), password).await else {
        ctx.throttle.login.refund(username, addr.as_deref());
        tracing::warn!("sign-in not checked: too many password checks under way");
        return again(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins are being checked right now. Try again in a moment.",
            username,
        );
    };
    let Some(user) = checked else {
        tracing::info!("sign-in failed");
        return again(StatusCode::UNAUTHORIZED, WRONG, username);
    };
    ctx.throttle.login.succeeded(username, addr.as_deref());
    let cookie = session::start(ctx, &user)
        .await
        .doing("starting a browser session")?;
    let location = match (&pending, next) {
        (Some(r), _) => format!("/authorize?{}", r.to_query()),
        (None, Some(n)) => n.to_string(),
        (None, None) => "/login".to_string(),
    };
    let mut resp = redirect(StatusCode::SEE_OTHER, &location);
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// argon2id under the process-wide bound; an unknown user costs one decoy verification (all
/// unknown names share one key of the bound).
async fn check(
    ctx: &Ctx,
    user: Option<Arc<User>>,
    password: &str,
) -> Result<Option<Arc<User>>, Busy> {
    match user {
        Some(u) => {
            let key = format!("user:{}", u.username);
            let ok = ctx
                .secret_checks
                .verify(&key, password, &u.password_hash)
                .await?;
            Ok(ok.then_some(u))
        }
        None => {
            ctx.secret_checks
                .verify("user:?", password, DECOY_PHC)
                .await?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_pages_are_followed_after_sign_in() {
        assert_eq!(safe_next("/approvals"), Some("/approvals"));
        assert_eq!(safe_next("/sessions/abc-_1"), Some("/sessions/abc-_1"));
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/approvalsx",
            "/sessions/../x",
            "/sessions?x",
            "/",
        ] {
            assert_eq!(safe_next(bad), None, "{bad}");
        }
    }

    #[test]
    fn decoy_hash_is_a_valid_argon2id_phc_string_that_matches_nothing_typed() {
        assert!(argon2::PasswordHash::new(DECOY_PHC).is_ok());
        assert!(!verify_secret("alice-password", DECOY_PHC));
        assert!(!verify_secret("", DECOY_PHC));
    }
}
