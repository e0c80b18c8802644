//! OpenID CIBA Core 1.0, poll mode, for delegations that need the human's approval.
//!
//! `POST /bc-authorize` takes the token-exchange parameters (the human's or a delegated token as
//! `subject_token`, the agent token as `actor_token`, `scope`, `audience`) plus a
//! `binding_message`; every exchange rule and the policy are applied up front, so the human is
//! only ever asked about a grant the server could issue. The human decides on `/approvals`; the
//! agent polls `/token` with `grant_type=urn:openid:params:grant-type:ciba` and gets the token
//! exactly once. The request's audit entry carries, in its transaction, the notifications
//! that tell the human a request waits ([`crate::notify`]): only what they need to decide.
//!
//! Storage: [`CibaStorage`]. From the [`Env`]: everything token exchange reads, and `ciba`
//! (`interval`, `expiry`).

use std::sync::Arc;

use async_trait::async_trait;

use super::Env;
use super::token_exchange::{self, Plan, TokenExchangeStorage};
use crate::audit::AuditEvent;
use crate::crypto::{b64url, random_bytes, random_id, sha256};
use crate::notify::ApprovalNeeded;
use crate::oauth::agent::Agent;
use crate::oauth::client::Client;
use crate::oauth::delegation::Child;
use crate::oauth::dpop::KeyKind as DpopKind;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::params::Params;
use crate::oauth::request::{CIBA, ExchangeRequest};
use crate::oauth::scope::ScopeSet;
use crate::oauth::token::{Issued, actor_chain};
use crate::policy::Outcome;
use crate::store::ciba::{CibaRecord, CibaStatus, Poll};
use crate::store::{StoreError, TokenKind};

/// What CIBA does to storage, besides everything a token exchange does: keep the request,
/// record each poll, claim the approved token exactly once, and read the agent afresh when the
/// token is finally issued.
#[async_trait]
pub trait CibaStorage: TokenExchangeStorage {
    /// Stores a pending request unless its human already has `max_pending` waiting (false).
    async fn create_ciba(&self, r: &CibaRecord, max_pending: i64) -> Result<bool, StoreError>;
    /// Records a poll at `now`; one sooner than the interval grows it by `slow_down_step`.
    async fn poll_ciba(
        &self,
        id_hash: &[u8],
        now: i64,
        slow_down_step: i64,
    ) -> Result<Poll, StoreError>;
    /// Marks an approved request issued; `None` unless this call made the transition.
    async fn claim_ciba(&self, id_hash: &[u8]) -> Result<Option<CibaRecord>, StoreError>;
    /// The agent `name` as stored now (not a cached copy): `None` if removed or disabled.
    async fn fresh_agent(&self, name: &str) -> Result<Option<Arc<Agent>>, StoreError>;
    /// Audits `ev` (the request was made) and, in the same transaction, enqueues the
    /// notifications that tell the human a request waits for them.
    async fn audit_waiting(
        &self,
        ev: AuditEvent,
        waiting: &ApprovalNeeded,
    ) -> Result<(), StoreError>;
}

/// Longest `binding_message` shown to the human (CIBA Core §7.1: short, displayable).
const BINDING_MESSAGE_MAX: usize = 200;
/// Bounds on `requested_expiry` (CIBA Core §7.1), in seconds.
const EXPIRY_MIN: i64 = 30;
/// CIBA Core §11: after `slow_down` the interval grows by at least five seconds.
const SLOW_DOWN_STEP: i64 = 5;
/// Requests one human may have waiting at once: an agent cannot flood a human's approvals
/// page (or the database) with requests nobody will read.
pub const MAX_PENDING_PER_USER: i64 = 20;

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
pub async fn bc_authorize<S: CibaStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    client: &Client,
    p: &Params,
) -> Result<BcResponse, OAuthError> {
    check_client(client)?;
    let binding_message = p.one("binding_message")?.map(str::to_string);
    if binding_message.as_deref().is_some_and(|m| {
        m.chars().count() > BINDING_MESSAGE_MAX
            || (m.chars()).any(|c| {
                c.is_control()
                    || crate::input::is_invisible(c)
                    || c == '\u{2028}'
                    || c == '\u{2029}'
            })
    }) {
        return Err(OAuthError::invalid_request(format!(
            "binding_message must be at most {BINDING_MESSAGE_MAX} printable characters, with no \
             line breaks, bidirectional or zero-width characters (CIBA Core 7.1)"
        )));
    }
    let max_expiry = env.ciba.expiry.as_secs() as i64;
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
    let plan = token_exchange::plan(storage, env, client, req).await?;
    let now = env.now();
    let auth_req_id = b64url(&random_bytes::<32>());
    let record = CibaRecord {
        id_hash: sha256(auth_req_id.as_bytes()).to_vec(),
        public_id: random_id(),
        client_id: client.client_id.clone(),
        username: plan.subject.sub.clone(),
        agent: plan.agent.clone(),
        attestation: plan.attestation.clone(),
        parent_hash: plan.subject.token_hash.clone(),
        act: plan.child.act.clone(),
        scope: plan.child.scope.clone(),
        aud: plan.child.aud.clone().into(),
        token_exp: plan.exp,
        depth: i64::from(plan.child.depth),
        binding_message,
        policies: serde_json::to_string(&plan.decision.ids()).unwrap_or_else(|_| "[]".into()),
        high_risk: ScopeSet::from_list(plan.high_risk(env)),
        created_at: now,
        expires_at: now + expiry,
        interval_secs: env.ciba.interval.as_secs().max(1) as i64,
        last_polled_at: None,
        status: CibaStatus::Pending,
        approved_scope: None,
        approved_exp: None,
        decided_at: None,
        actor_hash: Some(plan.actor_hash.clone()),
    };
    if !storage.create_ciba(&record, MAX_PENDING_PER_USER).await? {
        return Err(OAuthError::new(
            ErrorCode::SlowDown,
            format!(
                "{} already has {MAX_PENDING_PER_USER} requests waiting for a decision; \
                 wait for those to be decided or to expire",
                record.username
            ),
        )
        .with_status(429));
    }
    let mut ev = AuditEvent::new("ciba.requested");
    ev.subject = Some(record.username.clone());
    ev.actors = actor_chain(Some(&plan.child.act));
    ev.client_id = Some(client.client_id.clone());
    ev.session = plan.subject.sid.clone();
    ev.token_jti = Some(plan.subject.jti.clone());
    ev.detail = serde_json::json!({
        "request": record.public_id, "scope": record.scope.to_string(), "aud": plan.child.aud,
        "binding_message": record.binding_message, "policies": plan.decision.ids(),
        "needs_approval": plan.decision.outcome == Outcome::NeedsApproval,
    });
    let mut chain = plan.child.act.chain();
    chain.push(record.username.clone());
    let waiting = ApprovalNeeded {
        request: record.public_id.clone(),
        user: record.username.clone(),
        client: record.client_id.clone(),
        agent: record.agent.clone(),
        chain,
        scopes: record.scope.iter().map(ToString::to_string).collect(),
        high_risk: record.high_risk.iter().map(ToString::to_string).collect(),
        audience: record.aud.to_vec(),
        binding_message: record.binding_message.clone(),
        expires_at: record.expires_at,
        approvals_url: String::new(),
    };
    storage.audit_waiting(ev, &waiting).await?;
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
pub async fn grant<S: CibaStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    client: &Client,
    auth_req_id: &str,
) -> Result<Issued, OAuthError> {
    check_client(client)?;
    let id_hash = sha256(auth_req_id.as_bytes()).to_vec();
    let now = env.now();
    let poll = match storage.poll_ciba(&id_hash, now, SLOW_DOWN_STEP).await {
        // Fail closed: a request whose stored row is unreadable is not one; the operator is
        // told, the client hears what it would for an unknown id.
        Err(StoreError::CorruptRecord(why)) => {
            tracing::error!(%why, "a polled CIBA request is unreadable; refused");
            Poll::NotFound
        }
        other => other?,
    };
    let (record, too_fast) = match poll {
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
    // Before anything about the request is told: a poll without the bound key learns nothing,
    // and cannot use up the human's approval.
    check_poll_binding(storage, env, &record).await?;
    match record.status {
        CibaStatus::Issued => Err(ciba_error(
            ErrorCode::InvalidGrant,
            "the token of this request was already issued",
        )),
        CibaStatus::Denied => Err(ciba_error(
            ErrorCode::AccessDenied,
            "the human denied this request",
        )),
        CibaStatus::Pending if now >= record.expires_at => Err(ciba_error(
            ErrorCode::ExpiredToken,
            "the request expired before the human decided; ask again",
        )),
        CibaStatus::Pending if too_fast => Err(ciba_error(
            ErrorCode::SlowDown,
            "polled faster than the interval; wait longer between polls (the interval grew by 5 seconds)",
        )),
        CibaStatus::Pending => Err(ciba_error(
            ErrorCode::AuthorizationPending,
            "the human has not decided yet",
        )),
        CibaStatus::Approved => {
            env.require_bound(&record.aud)?;
            issue_approved(storage, env, &id_hash).await
        }
    }
}

/// RFC 9449: when the agent token the request was made with is bound to a DPoP key, only a
/// poll whose proof that key signed gets the approved token. Checked before the approval is
/// claimed, so a poll with a copied `auth_req_id` cannot use up the human's approval.
async fn check_poll_binding<S: CibaStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    r: &CibaRecord,
) -> Result<(), OAuthError> {
    let Some(h) = &r.actor_hash else {
        return Ok(());
    };
    let bound = storage.find_token(h).await?.and_then(|a| a.jkt);
    match bound {
        Some(jkt) if env.jkt != Some(jkt.as_str()) => Err(ciba_error(
            ErrorCode::InvalidGrant,
            "the agent token this request was made with is bound to a DPoP key: poll with a DPoP proof signed by that key (RFC 9449)",
        )),
        _ => Ok(()),
    }
}

/// Issues the approved token, once: the claim is a single conditional update.
async fn issue_approved<S: CibaStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    id_hash: &[u8],
) -> Result<Issued, OAuthError> {
    let Some(r) = storage.claim_ciba(id_hash).await? else {
        return Err(ciba_error(
            ErrorCode::InvalidGrant,
            "the token of this request was already issued",
        ));
    };
    let plan = recheck(storage, env, &r).await?;
    let scope = plan.child.scope.clone();
    token_exchange::issue(
        storage,
        env,
        &plan,
        &scope,
        r.approved_exp.unwrap_or(r.token_exp),
    )
    .await
}

/// SPEC "Invariants": every decision taken when the request was made is taken again when the
/// approved token is finally issued — minutes later, after the policy, the agent's enrollment
/// or the tokens may have changed. The subject token must still be a live access token of a
/// human who still exists, the actor token unrevoked, the agent still enrolled (not disabled
/// or removed), and the policy must still permit the grant as approved. A refusal is audited
/// (`ciba.refused_at_issuance`) and answers `access_denied`.
async fn recheck<S: CibaStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    r: &CibaRecord,
) -> Result<Plan, OAuthError> {
    let now = env.now();
    let refuse = |why: String| async move {
        let mut ev = AuditEvent::new("ciba.refused_at_issuance");
        ev.subject = Some(r.username.clone());
        ev.client_id = Some(r.client_id.clone());
        ev.detail = serde_json::json!({ "request": r.public_id, "reason": why });
        if let Err(e) = storage.audit(vec![ev]).await {
            return OAuthError::from(e);
        }
        OAuthError::new(
            ErrorCode::AccessDenied,
            format!("the approved request can no longer be granted: {why}"),
        )
        .with_status(400)
    };
    let corrupt =
        |what: &str| OAuthError::internal(format!("CIBA request {}: {what}", r.public_id));
    let subject = storage
        .find_token(&r.parent_hash)
        .await?
        .filter(|t| t.is_live(TokenKind::Access, now));
    let Some(subject) = subject else {
        return Err(refuse("the subject token was revoked or expired".into()).await);
    };
    if storage.user(&subject.sub).is_none() {
        return Err(refuse(format!("{} is no longer a user", subject.sub)).await);
    }
    let mut actor = None;
    if let Some(h) = &r.actor_hash {
        actor = storage.find_token(h).await?;
        if actor.as_ref().is_none_or(|a| a.revoked_at.is_some()) {
            return Err(refuse("the agent token it was asked with was revoked".into()).await);
        }
    }
    let name = r.agent.strip_prefix("agent:").unwrap_or(&r.agent);
    if storage.fresh_agent(name).await?.is_none() {
        return Err(refuse(format!("{} is no longer an enrolled agent", r.agent)).await);
    }
    let child = Child {
        scope: r.approved_scope.as_ref().unwrap_or(&r.scope).clone(),
        aud: r.aud.to_vec(),
        exp: r.approved_exp.unwrap_or(r.token_exp).min(r.token_exp),
        act: r.act.clone(),
        depth: u32::try_from(r.depth).map_err(|_| corrupt("depth"))?,
    };
    // RFC 9449: bound as the poll is, to the agent token's key when it was bound (checked
    // before the approval was claimed).
    let dpop = match &actor {
        Some(a) => DpopKind::of(env.jkt, a),
        None if env.jkt.is_some() => DpopKind::Software,
        None => DpopKind::None,
    };
    let decision = token_exchange::decide(
        storage,
        env,
        &token_exchange::Decide {
            agent: name,
            attestation: &r.attestation,
            dpop,
            user: &subject.sub,
            child: &child,
            client_id: &r.client_id,
            now,
        },
    );
    if let Outcome::Deny { .. } = decision.outcome {
        return Err(refuse(format!("policy now refuses it: {}", decision.refusal())).await);
    }
    // `@max_ttl` as the policy now says.
    let exp = decision
        .max_ttl
        .map_or(child.exp, |t| child.exp.min(now + t));
    Ok(Plan {
        subject,
        actor_jti: String::new(),
        actor_hash: r.actor_hash.clone().unwrap_or_default(),
        agent: r.agent.clone(),
        attestation: r.attestation.clone(),
        child,
        exp,
        decision,
        client_id: r.client_id.clone(),
        dpop,
    })
}

#[cfg(test)]
mod tests;
