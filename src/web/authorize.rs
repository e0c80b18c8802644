//! `GET`/`POST /authorize` (RFC 6749 §3.1, §4.1.1) and `POST /consent`: validate the request,
//! sign the human in if needed, ask for consent the first time a client wants scopes the human
//! has not approved for it, then send the browser back to the client with a code.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::json;

use super::pages::{self, ConsentPage};
use super::session::{self, Session};
use super::{OrInternal, PageError, login, read_form, redirect};
use crate::audit::AuditEvent;
use crate::oauth::grant::authorization_code::issue_code;
use crate::oauth::grant::authorization_code::request::{
    AuthorizeRequest, RedirectTarget, Rejection,
};
use crate::oauth::params::Params;
use crate::oauth::scope::ScopeSet;
use crate::oauth::{Ctx, ErrorCode, OAuthError};
use crate::store::WriteOp;

/// `GET /authorize`: the request is the query string. Redirects are 302 (RFC 6749 §4.1.2).
pub async fn get(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let p = Params::parse_untrusted(uri.query().unwrap_or("").as_bytes())?;
    authorize(&ctx, &headers, &p, StatusCode::FOUND).await
}

/// `POST /authorize`: RFC 6749 §3.1 lets the request come as a form body. A login form posted
/// here (to the page's own URL) is handled as the sign-in it is.
pub async fn post(
    State(ctx): State<Arc<Ctx>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, PageError> {
    let p = read_form(&ctx, &headers, body).await?;
    if !p.all("username").is_empty() || !p.all("password").is_empty() {
        return login::submit(&ctx, &headers, &p, login::peer_address(peer)).await;
    }
    authorize(&ctx, &headers, &p, StatusCode::SEE_OTHER).await
}

/// RFC 6749 §4.1.2.1: an invalid client or redirect URI is shown to the human; any other error
/// goes back to the client's redirect URI.
fn rejected(r: Rejection, status: StatusCode) -> PageError {
    match r {
        Rejection::Fatal(m) => PageError::bad_request(m),
        Rejection::Unavailable(reason) => PageError::Internal {
            doing: "looking up the client",
            reason,
        },
        Rejection::Redirect(t, e) => PageError::answer(error_back(status, &t, &e)),
    }
}

async fn authorize(
    ctx: &Ctx,
    headers: &HeaderMap,
    p: &Params,
    status: StatusCode,
) -> Result<Response, PageError> {
    let req = AuthorizeRequest::parse(&ctx.clients, &ctx.issuer, p)
        .await
        .map_err(|r| rejected(r, status))?;
    match session::current(ctx, headers)
        .await
        .doing("reading the browser session")?
    {
        Some(s) => decide(ctx, &req, &s, status).await,
        None => Ok(login::form(
            ctx,
            headers,
            Some(&req),
            StatusCode::OK,
            None,
            "",
        )),
    }
}

/// Signed in: a code at once if the human already approved these scopes for this confidential
/// client, else the consent page. A public client sees the consent page on every request (RFC
/// 8252 §8.6): anyone can claim its client_id, and any local process that binds its loopback
/// port would otherwise receive the human's code with no one looking.
async fn decide(
    ctx: &Ctx,
    req: &AuthorizeRequest,
    s: &Session,
    status: StatusCode,
) -> Result<Response, PageError> {
    let target = req.target(&ctx.issuer);
    let ceiling = ctx.resources.scope_ceiling(&req.aud);
    let scope = match req.scope_for(&s.user, ceiling.as_ref()) {
        Ok(scope) => scope,
        Err(e) => return Ok(error_back(status, &target, &e)),
    };
    let consented = ctx
        .store
        .consent(&s.user.username, &req.client.client_id)
        .await
        .doing("reading consent")?
        .unwrap_or_default();
    // A remembered consent speaks for scopes, not audiences: only clients the operator
    // vouches for skip the page (a self-made client could ask for another audience later).
    if !req.client.public && req.client.known_to_operator() && scope.is_subset(&consented) {
        return Ok(code_redirect(ctx, req, &s.user.username, &scope, status).await);
    }
    let pending = req.to_query();
    Ok(pages::render(
        StatusCode::OK,
        &ConsentPage {
            username: &s.user.username,
            client: &req.client.client_id,
            client_name: req.client.client_name.as_deref(),
            self_registered: req.client.is_registered(),
            document_host: (req.client.is_document())
                .then(|| host_of(&req.client.client_id))
                .flatten(),
            known: req.client.known_to_operator(),
            redirect_host: return_place(&req.redirect_uri),
            local_only: req.client.redirects_only_locally(),
            scopes: (scope.iter())
                .map(|name| pages::ScopeLine {
                    name,
                    uses: ctx.resources.uses(&req.aud, name),
                })
                .collect(),
            audiences: (req.aud.iter())
                .map(|uri| pages::AudienceLine {
                    uri,
                    name: ctx.resources.find(uri).map(|r| r.name.as_str()),
                })
                .collect(),
            redirect_uri: &req.redirect_uri,
            csrf: &s.csrf,
            pending: &pending,
        },
        Some(&req.redirect_uri),
    ))
}

async fn code_redirect(
    ctx: &Ctx,
    req: &AuthorizeRequest,
    username: &str,
    scope: &ScopeSet,
    status: StatusCode,
) -> Response {
    match issue_code(ctx, &ctx.grant_env(), req, username, scope).await {
        Ok(code) => redirect(status, &req.target(&ctx.issuer).with_code(&code)),
        Err(e) => {
            tracing::error!(reason = %e, "cannot issue an authorization code");
            error_back(
                status,
                &req.target(&ctx.issuer),
                &OAuthError::new(
                    ErrorCode::ServerError,
                    "the server could not complete the request; try again",
                ),
            )
        }
    }
}

/// `POST /consent`: the human's answer. Needs the session and its CSRF token; Deny sends
/// `access_denied` back (RFC 6749 §4.1.2.1), Approve remembers the consent and issues a code.
pub async fn consent(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, PageError> {
    let p = read_form(&ctx, &headers, body).await?;
    let s = session::current(&ctx, &headers)
        .await
        .doing("reading the browser session")?;
    let csrf = p.one("csrf_token").ok().flatten();
    let Some(s) = s.filter(|s| s.csrf_ok(csrf)) else {
        return Err(PageError::forged_form(
            "Go back to the application and start again.",
        ));
    };
    let Some(req) = login::pending(&ctx, &p).await? else {
        return Err(PageError::bad_request(
            "The form did not say which request it answers.",
        ));
    };
    let target = req.target(&ctx.issuer);
    let approve = match p.one("decision") {
        Ok(Some("approve")) => true,
        Ok(Some("deny")) => false,
        _ => return Err(PageError::bad_request("Choose Approve or Deny.")),
    };
    let status = StatusCode::SEE_OTHER;
    let ceiling = ctx.resources.scope_ceiling(&req.aud);
    let scope = match req.scope_for(&s.user, ceiling.as_ref()) {
        Ok(scope) => scope,
        Err(e) => return Ok(error_back(status, &target, &e)),
    };
    let username = &s.user.username;
    let mut ev = AuditEvent::new(if approve {
        "consent.granted"
    } else {
        "consent.denied"
    });
    ev.subject = Some(username.clone());
    ev.client_id = Some(req.client.client_id.clone());
    ev.detail = json!({ "scope": scope.to_string(), "aud": req.aud });
    if !approve {
        ctx.writer
            .write(WriteOp::None, vec![ev])
            .await
            .doing("auditing a denied consent")?;
        return Ok(redirect(
            status,
            &target.with_error(&OAuthError::new(
                ErrorCode::AccessDenied,
                "the user denied the request",
            )),
        ));
    }
    let client_id = &req.client.client_id;
    let saved = async {
        let before = ctx.store.consent(username, client_id).await?;
        let union = ScopeSet::from_list(before.iter().flat_map(ScopeSet::iter).chain(scope.iter()));
        ctx.store
            .save_consent(username, client_id, &union, ctx.clock.now())
            .await?;
        ctx.writer.write(WriteOp::None, vec![ev]).await
    };
    saved.await.doing("saving consent")?;
    Ok(code_redirect(&ctx, &req, username, &scope, status).await)
}

/// The host of an http(s) URI as a human reads it (lowercase, without the default port).
fn host_of(uri: &str) -> Option<String> {
    let origin = crate::input::origin_of(uri)?;
    origin.split_once("://").map(|(_, host)| host.to_string())
}

/// Where a redirect URI returns the human, in words: its host, or for a private-use scheme
/// (RFC 8252 §7.1) the application that scheme opens.
fn return_place(redirect_uri: &str) -> String {
    host_of(redirect_uri).unwrap_or_else(|| {
        let scheme = redirect_uri.split(':').next().unwrap_or_default();
        format!("the application for {scheme}:")
    })
}

/// An error for the client (RFC 6749 §4.1.2.1): a redirect to its redirect URI, unless the
/// operator does not vouch for that URI (a self-registered client, or a metadata document whose
/// host is not allowed): then a page says what went wrong and offers the way back as a link, so
/// this server is no open redirector for whoever registers a URI (RFC 9700 §4.11.2).
pub(crate) fn error_back(status: StatusCode, target: &RedirectTarget, e: &OAuthError) -> Response {
    let location = target.with_error(e);
    if !target.unvouched {
        return redirect(status, &location);
    }
    let host = return_place(&target.redirect_uri);
    let message = format!("{}: {}", e.code.as_str(), e.wire_description());
    pages::render(
        StatusCode::BAD_REQUEST,
        &pages::RefusedPage {
            message: &message,
            location: &location,
            host: &host,
        },
        None,
    )
}
