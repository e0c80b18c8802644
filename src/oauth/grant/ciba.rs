//! OpenID CIBA Core 1.0, poll mode, for delegations that need the human's approval.
//!
//! `POST /bc-authorize` takes the token-exchange parameters (the human's or a delegated token as
//! `subject_token`, the agent token as `actor_token`, `scope`, `audience`) plus a
//! `binding_message`; every exchange rule and the policy are applied up front, so the human is
//! only ever asked about a grant the server could issue. The human decides on `/approvals`; the
//! agent polls `/token` with `grant_type=urn:openid:params:grant-type:ciba` and gets the token
//! exactly once.

use crate::audit::AuditEvent;
use crate::crypto::{b64url, random_bytes, random_id, sha256};
use crate::oauth::Ctx;
use crate::oauth::act::Actor;
use crate::oauth::client::Client;
use crate::oauth::delegation::Child;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::grant::token_exchange::{self, Plan};
use crate::oauth::params::Params;
use crate::oauth::request::{CIBA, ExchangeRequest};
use crate::oauth::scope::ScopeSet;
use crate::oauth::token::{Issued, actor_chain};
use crate::policy::{Decision, Outcome, PolicyRef};
use crate::store::WriteOp;
use crate::store::ciba::{CibaRecord, CibaStatus, Poll};

/// Longest `binding_message` shown to the human (CIBA Core §7.1: short, displayable).
const BINDING_MESSAGE_MAX: usize = 200;
/// Bounds on `requested_expiry` (CIBA Core §7.1), in seconds.
const EXPIRY_MIN: i64 = 30;
/// CIBA Core §11: after `slow_down` the interval grows by at least five seconds.
const SLOW_DOWN_STEP: i64 = 5;

/// The CIBA Core §7.3 response.
pub struct BcResponse {
    pub auth_req_id: String,
    pub expires_in: i64,
    pub interval: i64,
}

fn check_client(client: &Client) -> Result<(), OAuthError> {
    if client.public || !client.allows_grant(CIBA) {
        return Err(OAuthError::unauthorized_client(format!(
            "client `{}` is not allowed the CIBA grant ({CIBA})",
            client.client_id
        )));
    }
    Ok(())
}

/// `POST /bc-authorize`.
pub async fn bc_authorize(
    ctx: &Ctx,
    client: &Client,
    p: &Params,
) -> Result<BcResponse, OAuthError> {
    check_client(client)?;
    let binding_message = p.one("binding_message")?.map(str::to_string);
    if binding_message
        .as_deref()
        .is_some_and(|m| m.chars().count() > BINDING_MESSAGE_MAX || m.chars().any(char::is_control))
    {
        return Err(OAuthError::invalid_request(format!(
            "binding_message must be at most {BINDING_MESSAGE_MAX} printable characters (CIBA Core 7.1)"
        )));
    }
    let max_expiry = ctx.config.ciba.expiry.as_secs() as i64;
    let expiry = match p.one("requested_expiry")? {
        None => max_expiry,
        Some(e) => e
            .parse::<i64>()
            .ok()
            .filter(|e| *e >= EXPIRY_MIN)
            .map(|e| e.min(max_expiry))
            .ok_or_else(|| {
                OAuthError::invalid_request(format!(
                    "requested_expiry must be a number of seconds, at least {EXPIRY_MIN}"
                ))
            })?,
    };
    let req = ExchangeRequest::parse(p)?;
    let plan = token_exchange::plan(ctx, client, req).await?;
    let now = ctx.clock.now();
    let auth_req_id = b64url(&random_bytes::<32>());
    let record = CibaRecord {
        id_hash: sha256(auth_req_id.as_bytes()).to_vec(),
        public_id: random_id(),
        client_id: client.client_id.clone(),
        username: plan.subject.sub.clone(),
        agent: plan.agent.clone(),
        attestation: plan.attestation.clone(),
        parent_hash: plan.subject.token_hash.clone(),
        act: plan.child.act.to_json(),
        scope: plan.child.scope.to_string(),
        aud: plan.child.aud.join(" "),
        token_exp: plan.exp,
        depth: i64::from(plan.child.depth),
        binding_message,
        policies: serde_json::to_string(&plan.decision.ids()).unwrap_or_else(|_| "[]".into()),
        high_risk: plan.high_risk(ctx).join(" "),
        created_at: now,
        expires_at: now + expiry,
        interval_secs: ctx.config.ciba.interval.as_secs().max(1) as i64,
        last_polled_at: None,
        status: CibaStatus::Pending.as_str().into(),
        approved_scope: None,
        approved_exp: None,
        decided_at: None,
    };
    ctx.store.create_ciba(&record).await?;
    let mut ev = AuditEvent::new("ciba.requested");
    ev.subject = Some(record.username.clone());
    ev.actors = actor_chain(Some(&plan.child.act));
    ev.client_id = Some(client.client_id.clone());
    ev.session = plan.subject.sid.clone();
    ev.token_jti = Some(plan.subject.jti.clone());
    ev.detail = serde_json::json!({
        "request": record.public_id, "scope": record.scope, "aud": plan.child.aud,
        "binding_message": record.binding_message, "policies": plan.decision.ids(),
        "needs_approval": plan.decision.outcome == Outcome::NeedsApproval,
    });
    ctx.writer.write(WriteOp::None, vec![ev]).await?;
    Ok(BcResponse {
        auth_req_id,
        expires_in: expiry,
        interval: record.interval_secs,
    })
}

fn ciba_error(code: ErrorCode, d: &'static str) -> OAuthError {
    // CIBA Core §11: every token error is a 400.
    OAuthError::new(code, d).with_status(400)
}

/// `grant_type=urn:openid:params:grant-type:ciba`: the agent polls.
pub async fn grant(ctx: &Ctx, client: &Client, auth_req_id: &str) -> Result<Issued, OAuthError> {
    check_client(client)?;
    let id_hash = sha256(auth_req_id.as_bytes()).to_vec();
    let now = ctx.clock.now();
    let (record, too_fast) = match ctx.store.poll_ciba(&id_hash, now, SLOW_DOWN_STEP).await? {
        Poll::NotFound => {
            return Err(ciba_error(
                ErrorCode::InvalidGrant,
                "auth_req_id is unknown",
            ));
        }
        Poll::TooFast(r) => (r, true),
        Poll::Seen(r) => (r, false),
    };
    if record.client_id != client.client_id {
        return Err(ciba_error(
            ErrorCode::InvalidGrant,
            "auth_req_id was issued to another client",
        ));
    }
    match record.status() {
        Some(CibaStatus::Issued) => Err(ciba_error(
            ErrorCode::InvalidGrant,
            "the token of this request was already issued",
        )),
        Some(CibaStatus::Denied) => Err(ciba_error(
            ErrorCode::AccessDenied,
            "the human denied this request",
        )),
        Some(CibaStatus::Pending) if now >= record.expires_at => Err(ciba_error(
            ErrorCode::ExpiredToken,
            "the request expired before the human decided; ask again",
        )),
        Some(CibaStatus::Pending) if too_fast => Err(ciba_error(
            ErrorCode::SlowDown,
            "polled faster than the interval; wait longer between polls (the interval grew by 5 seconds)",
        )),
        Some(CibaStatus::Pending) => Err(ciba_error(
            ErrorCode::AuthorizationPending,
            "the human has not decided yet",
        )),
        Some(CibaStatus::Approved) => issue_approved(ctx, &id_hash).await,
        None => Err(OAuthError::internal(format!(
            "CIBA request in unknown state {}",
            record.status
        ))),
    }
}

/// Issues the approved token, once: the claim is a single conditional update.
async fn issue_approved(ctx: &Ctx, id_hash: &[u8]) -> Result<Issued, OAuthError> {
    let Some(r) = ctx.store.claim_ciba(id_hash).await? else {
        return Err(ciba_error(
            ErrorCode::InvalidGrant,
            "the token of this request was already issued",
        ));
    };
    let now = ctx.clock.now();
    let subject = ctx
        .store
        .find_token(&r.parent_hash)
        .await?
        .filter(|t| t.revoked_at.is_none() && t.exp > now)
        .ok_or_else(|| {
            ciba_error(
                ErrorCode::InvalidGrant,
                "the subject token was revoked or expired before the approval",
            )
        })?;
    let approved_scope = r.approved_scope.as_deref().unwrap_or(&r.scope);
    let scope = ScopeSet::parse(approved_scope).unwrap_or_default();
    let ids: Vec<String> = serde_json::from_str(&r.policies).unwrap_or_default();
    let plan = Plan {
        subject,
        actor_jti: String::new(),
        agent: r.agent.clone(),
        attestation: r.attestation.clone(),
        child: Child {
            scope: ScopeSet::parse(&r.scope).unwrap_or_default(),
            aud: r
                .aud
                .split(' ')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
            exp: r.token_exp,
            act: Actor::parse(&r.act).map_err(OAuthError::internal)?,
            depth: u32::try_from(r.depth).unwrap_or(u32::MAX),
        },
        exp: r.token_exp,
        decision: Decision {
            outcome: Outcome::Permit,
            determining: ids
                .into_iter()
                .map(|id| PolicyRef {
                    id,
                    file: String::new(),
                })
                .collect(),
            max_ttl: None,
            version: ctx.policies.version(),
        },
        client_id: r.client_id.clone(),
    };
    token_exchange::issue(ctx, &plan, &scope, r.approved_exp.unwrap_or(r.token_exp)).await
}
