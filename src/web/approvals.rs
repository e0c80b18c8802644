//! `GET /approvals` and `POST /approvals`: the signed-in human's pending CIBA requests, each
//! showing the agent and how it was attested, the whole delegation chain, the scopes (high-risk
//! ones marked) and audience asked for, the lifetime, the binding message and when the request
//! expires; `Approve` (optionally narrowed: fewer scopes, a shorter lifetime) or `Deny`.

use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::error::SERVER_ERROR_TEXT;
use super::session::Session;
use super::{OrInternal, PageError, login, pages, read_form, redirect};
use crate::audit::AuditEvent;
use crate::oauth::Ctx;
use crate::oauth::params::Params;
use crate::oauth::scope::ScopeSet;
use crate::oauth::token::actor_chain;
use crate::store::WriteOp;
use crate::store::ciba::CibaRecord;

pub struct ScopeRow {
    pub name: String,
    pub high_risk: bool,
}

pub struct RequestRow {
    pub id: String,
    pub agent: String,
    pub attestation: String,
    /// "agent:sub-bot, acting for agent:build-bot, acting for alice".
    pub chain: String,
    pub client: String,
    pub scopes: Vec<ScopeRow>,
    pub audiences: Vec<String>,
    pub max_minutes: i64,
    pub binding_message: Option<String>,
    pub expires_in: i64,
}

#[derive(Template)]
#[template(path = "approvals.html")]
pub struct ApprovalsPage<'a> {
    pub username: &'a str,
    pub csrf: &'a str,
    pub requests: Vec<RequestRow>,
    pub notice: Option<&'a str>,
}

/// One request as listed. Its chain is whole: a request whose stored chain is unreadable is
/// never listed (the store leaves it out), so none is shown shorter than it is.
fn row(r: &CibaRecord, now: i64) -> RequestRow {
    let mut chain = r.act.chain();
    chain.push(r.username.clone());
    RequestRow {
        id: r.public_id.clone(),
        agent: r.agent.clone(),
        attestation: r.attestation.clone(),
        chain: chain.join(", acting for "),
        client: r.client_id.clone(),
        scopes: r
            .scope
            .iter()
            .map(|s| ScopeRow {
                name: s.to_string(),
                high_risk: r.high_risk.contains(s),
            })
            .collect(),
        audiences: r.aud.to_vec(),
        max_minutes: ((r.token_exp - now + 59) / 60).max(1),
        binding_message: r.binding_message.clone(),
        expires_in: r.expires_at - now,
    }
}

async fn page(
    ctx: &Ctx,
    s: &Session,
    status: StatusCode,
    notice: Option<&str>,
) -> Result<Response, PageError> {
    let now = ctx.clock.now();
    let pending = ctx
        .store
        .pending_ciba_for(&s.user.username, now)
        .await
        .doing("listing approvals")?;
    let page = ApprovalsPage {
        username: &s.user.username,
        csrf: &s.csrf,
        requests: pending.iter().map(|r| row(r, now)).collect(),
        notice,
    };
    Ok(pages::render(status, &page, None))
}

pub async fn get(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, PageError> {
    let s = login::require(&ctx, &headers, "/approvals", StatusCode::OK).await?;
    page(&ctx, &s, StatusCode::OK, None).await
}

pub async fn post(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, PageError> {
    let s = login::require(&ctx, &headers, "/approvals", StatusCode::UNAUTHORIZED).await?;
    let p = read_form(&ctx, &headers, body).await?;
    if !s.csrf_ok(p.one("csrf_token").ok().flatten()) {
        return Err(PageError::forged_form("Reload the page and try again."));
    }
    match decide(&ctx, &s, &p).await {
        Ok(()) => Ok(redirect(StatusCode::SEE_OTHER, "/approvals")),
        Err((status, notice)) => page(&ctx, &s, status, Some(notice)).await,
    }
}

/// What the approvals page says above the list about a decision it did not apply.
type Notice = (StatusCode, &'static str);

/// A failure on our side while deciding: logged with what it was doing, shown as a notice.
fn failed<E: std::fmt::Display>(doing: &'static str) -> impl FnOnce(E) -> Notice {
    move |e| {
        tracing::error!(doing, reason = %e, "page failed");
        (StatusCode::INTERNAL_SERVER_ERROR, SERVER_ERROR_TEXT)
    }
}

/// Applies one decision; a request that is not this human's, not pending or expired is "not found".
async fn decide(ctx: &Ctx, s: &Session, p: &Params) -> Result<(), Notice> {
    let bad = |m| (StatusCode::BAD_REQUEST, m);
    let id = p
        .one("request")
        .ok()
        .flatten()
        .ok_or(bad("The form names no request."))?;
    let approve = match p.one("decision").ok().flatten() {
        Some("approve") => true,
        Some("deny") => false,
        _ => return Err(bad("Choose Approve or Deny.")),
    };
    let now = ctx.clock.now();
    let pending = ctx
        .store
        .pending_ciba_for(&s.user.username, now)
        .await
        .map_err(failed("listing approvals"))?;
    let not_found = (
        StatusCode::NOT_FOUND,
        "That request is no longer waiting for you (decided, expired, or not yours).",
    );
    let r = pending
        .iter()
        .find(|r| r.public_id == id)
        .ok_or(not_found)?;
    let decision = if approve {
        let chosen = ScopeSet::from_list(p.all("scope"));
        if chosen.is_empty() {
            return Err(bad("Keep at least one scope ticked to approve, or Deny."));
        }
        if !chosen.is_subset(&r.scope) {
            return Err(bad("An approval can only narrow what was asked for."));
        }
        let max_minutes = ((r.token_exp - now + 59) / 60).max(1);
        let minutes = match p.one("lifetime_minutes").ok().flatten() {
            None => max_minutes,
            Some(m) => m
                .parse::<i64>()
                .ok()
                .filter(|m| (1..=max_minutes).contains(m))
                .ok_or(bad(
                    "The lifetime must be a whole number of minutes within the range shown.",
                ))?,
        };
        Some((chosen, (now + minutes * 60).min(r.token_exp)))
    } else {
        None
    };
    let decided = ctx
        .store
        .decide_ciba(
            id,
            &s.user.username,
            decision.as_ref().map(|(sc, exp)| (sc, *exp)),
            now,
        )
        .await
        .map_err(failed("recording a decision"))?
        .ok_or(not_found)?;
    let mut ev = AuditEvent::new(if approve {
        "ciba.approved"
    } else {
        "ciba.denied"
    });
    ev.subject = Some(decided.username.clone());
    ev.actors = actor_chain(Some(&decided.act));
    ev.client_id = Some(decided.client_id.clone());
    ev.detail = serde_json::json!({
        "request": decided.public_id, "asked_scope": decided.scope.to_string(),
        "approved_scope": decided.approved_scope.as_ref().map(ToString::to_string),
        "approved_exp": decided.approved_exp,
        "binding_message": decided.binding_message,
    });
    ctx.writer
        .write(WriteOp::None, vec![ev])
        .await
        .map_err(failed("auditing a decision"))?;
    Ok(())
}
