//! RFC 8693 token exchange, delegation only: an agent presents the token of the human (or agent)
//! it acts for as `subject_token` and its own agent token as `actor_token`, and gets a narrower,
//! shorter-lived token whose `act` claim names it, nested over the previous actors.
//!
//! [`plan`] applies every rule (protocol, then policy) and says what would be issued; a direct
//! exchange issues it at once unless policy wants the human's approval, in which case the agent
//! asks through `/bc-authorize` (CIBA, `grant/ciba.rs`) and the same plan is issued once approved.
//!
//! Storage: [`TokenExchangeStorage`]. From the [`Env`]: the mint, `tokens` (access lifetime,
//! `max_delegation_depth`), `high_risk_scopes`, the resource servers' `audiences` and the
//! `policies`.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{AuditStorage, Env, UserStorage};
use crate::audit::AuditEvent;
use crate::oauth::agent::Agent;
use crate::oauth::client::Client;
use crate::oauth::delegation::{Ask, Child, Limits, Parent, narrow};
use crate::oauth::dpop::KeyKind as DpopKind;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::request::{ExchangeRequest, TOKEN_EXCHANGE, TT_ACCESS_TOKEN, TT_JWT};
use crate::oauth::scope::ScopeSet;
use crate::oauth::token::{
    AccessSpec, IssueStorage, Issued, TokenLookup, actor_chain, live_presented, mint_access,
    persist,
};
use crate::policy::{Decision, DelegateRequest, Outcome};
use crate::store::{StoreError, TokenKind, TokenRecord};

/// What a delegation does to storage: find the presented subject and actor tokens, the human
/// and the enrolled agent they name, issue the delegated token, and audit a refusal.
#[async_trait]
pub trait TokenExchangeStorage: IssueStorage + TokenLookup + UserStorage + AuditStorage {
    /// The enrolled agent a token subject `agent:<name>` names: this process's copy, else
    /// the store's (a disabled or removed agent is none).
    async fn agent_by_subject(&self, subject: &str) -> Result<Option<Arc<Agent>>, StoreError>;
}

fn invalid_request(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::invalid_request(d)
}

fn invalid_grant(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, d)
}

/// A delegation that passed every rule: what would be issued, and what policy said of it.
pub struct Plan {
    pub subject: TokenRecord,
    pub actor_jti: String,
    /// The agent token's hash, so an approved request checks it again at issuance.
    pub actor_hash: Vec<u8>,
    pub agent: String,
    pub attestation: String,
    pub child: Child,
    /// The `exp` after `@max_ttl`.
    pub exp: i64,
    pub decision: Decision,
    pub client_id: String,
    /// How the request is bound (RFC 9449): the new token's `dpop_key` and policy's
    /// `context.dpop`.
    pub dpop: DpopKind,
}

impl Plan {
    /// The scopes that make this plan need approval because of `high_risk_scopes`.
    pub fn high_risk<'a>(&'a self, env: &Env<'_>) -> Vec<&'a str> {
        self.child
            .scope
            .iter()
            .filter(|s| env.is_high_risk(s))
            .collect()
    }
}

/// `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`.
pub async fn grant<S: TokenExchangeStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    client: &Client,
    req: ExchangeRequest,
) -> Result<Issued, OAuthError> {
    let plan = plan(storage, env, client, req).await?;
    if plan.decision.outcome == Outcome::NeedsApproval {
        let approving: Vec<String> = plan
            .decision
            .determining
            .iter()
            .filter(|p| env.policies.current().needs_approval(p))
            .map(ToString::to_string)
            .collect();
        let code = if plan.high_risk(env).is_empty() {
            ErrorCode::InvalidGrant
        } else {
            ErrorCode::InvalidScope
        };
        let description = format!(
            "this delegation needs the human's approval (policy {}): ask through /bc-authorize (OpenID CIBA) \
             instead of a direct exchange",
            approving.join(", ")
        );
        audit_refusal(
            storage,
            &plan.subject,
            &plan.agent,
            &plan.child,
            client,
            &plan.decision,
            &description,
        )
        .await?;
        return Err(OAuthError::new(code, description));
    }
    let scope = plan.child.scope.clone();
    issue(storage, env, &plan, &scope, plan.exp).await
}

/// Applies the protocol rules and the policy. A refusal is an error (policy refusals are
/// audited); a permit or a grant that needs approval is a [`Plan`].
pub async fn plan<S: TokenExchangeStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    client: &Client,
    req: ExchangeRequest,
) -> Result<Plan, OAuthError> {
    if !client.allows_grant(TOKEN_EXCHANGE) {
        return Err(OAuthError::unauthorized_client(format!(
            "client `{}` is not allowed the token-exchange grant",
            client.client_id
        )));
    }
    // RFC 8693 §2.1: the type identifiers say what the tokens are.
    if req.subject_token_type != TT_ACCESS_TOKEN && req.subject_token_type != TT_JWT {
        return Err(invalid_request(format!(
            "subject_token_type must be {TT_ACCESS_TOKEN} (RFC 8693 §3)"
        )));
    }
    if req
        .requested_token_type
        .as_deref()
        .is_some_and(|t| t != TT_ACCESS_TOKEN)
    {
        return Err(invalid_request(format!(
            "only {TT_ACCESS_TOKEN} can be requested"
        )));
    }
    // Delegation only: without an actor the request would be impersonation (RFC 8693 §1.1).
    let actor_token = req.actor_token.as_deref().ok_or_else(|| {
        invalid_request(
            "actor_token is required: this server delegates, it never impersonates (RFC 8693 §1.1)",
        )
    })?;
    if req.actor_token_type.as_deref() != Some(TT_JWT) {
        return Err(invalid_request(format!(
            "actor_token_type must be {TT_JWT} with an agent token from /attest (RFC 8693 §2.1)"
        )));
    }
    let now = env.now();
    let subject = live_presented(storage, &req.subject_token, TokenKind::Access, now)
        .await?
        .ok_or_else(|| {
            invalid_grant("subject_token is not an active access token of this server (unknown, expired or revoked)")
        })?;
    if storage.user(&subject.sub).is_none() {
        return Err(invalid_grant(
            "subject_token does not act for a human user of this server",
        ));
    }
    let actor = live_presented(storage, actor_token, TokenKind::Agent, now)
        .await?
        .ok_or_else(|| {
            invalid_grant("actor_token is not an active agent token from /attest (unknown, expired or revoked)")
        })?;
    let agent = storage
        .agent_by_subject(&actor.sub)
        .await?
        .ok_or_else(|| invalid_grant(format!("`{}` is no longer an enrolled agent", actor.sub)))?;
    check_bindings(&subject, &actor, client, env)?;

    let parent = Parent {
        scope: ScopeSet::parse(&subject.scope).unwrap_or_default(),
        aud: subject.aud.to_vec(),
        exp: subject.exp,
        act: subject.act.clone(),
        may_act: subject.may_act.clone(),
    };
    let client_scopes =
        (!client.scopes.is_empty()).then(|| ScopeSet::from_list(client.scopes.iter().cloned()));
    let limits = Limits {
        now,
        ttl: env.access_ttl(),
        max_depth: env.tokens.max_delegation_depth,
        client_scopes: client_scopes.as_ref(),
        known_audiences: env.audiences,
        client_audiences: client.audiences.as_deref(),
    };
    let child = narrow(
        &parent,
        &agent.subject(),
        &Ask {
            scope: req.scope,
            targets: req.targets,
        },
        &limits,
    )?;
    env.require_bound(&child.aud)?;
    let attestation = agent_attestation(actor_token);
    let dpop = DpopKind::of(env.jkt, &actor);
    let decision = decide(
        storage,
        env,
        &Decide {
            agent: &agent.name,
            attestation: &attestation,
            dpop,
            user: &subject.sub,
            child: &child,
            client_id: &client.client_id,
            now,
        },
    );
    if let Outcome::Deny { scopes_only } = decision.outcome {
        let description = format!(
            "{} may not act for {} with this request: {}",
            agent.subject(),
            subject.sub,
            decision.refusal()
        );
        audit_refusal(
            storage,
            &subject,
            &agent.subject(),
            &child,
            client,
            &decision,
            &description,
        )
        .await?;
        let code = if scopes_only {
            ErrorCode::InvalidScope
        } else {
            ErrorCode::InvalidGrant
        };
        return Err(OAuthError::new(code, description));
    }
    // `@max_ttl` caps the lifetime further.
    let exp = decision
        .max_ttl
        .map_or(child.exp, |t| child.exp.min(now + t));
    Ok(Plan {
        subject,
        actor_jti: actor.jti,
        actor_hash: actor.token_hash,
        agent: agent.subject(),
        attestation,
        child,
        exp,
        decision,
        client_id: client.client_id.clone(),
        dpop,
    })
}

/// RFC 9449 through a delegation chain. An actor token bound to a key (its agent attested with
/// a DPoP proof) is good only in a request whose proof that key signed, so a copied agent token
/// cannot act. A subject token bound to a key can be exchanged only by the client it was issued
/// to, or for the actor its `may_act` names (which `narrow` then checks), so a token copied out
/// of any hop cannot become a new delegation elsewhere, whatever agent token the copier holds.
/// An unbound subject token keeps the rules it had.
pub fn check_bindings(
    subject: &TokenRecord,
    actor: &TokenRecord,
    client: &Client,
    env: &Env<'_>,
) -> Result<(), OAuthError> {
    if let Some(bound) = &actor.jkt
        && env.jkt != Some(bound.as_str())
    {
        return Err(invalid_grant(
            "actor_token is bound to a DPoP key: the request's DPoP proof must be signed by that key (RFC 9449)",
        ));
    }
    if subject.jkt.is_some() && subject.client_id != client.client_id && subject.may_act.is_none() {
        return Err(invalid_grant(
            "subject_token is bound to a DPoP key and was issued to another client: only that client may exchange it",
        ));
    }
    Ok(())
}

/// What a delegation decision is about: `child`, which `agent` (attested as `attestation`,
/// bound as `dpop`) would hold for `user` through `client_id`.
pub struct Decide<'a> {
    pub agent: &'a str,
    pub attestation: &'a str,
    pub dpop: DpopKind,
    pub user: &'a str,
    pub child: &'a Child,
    pub client_id: &'a str,
    pub now: i64,
}

/// What policy says of a delegation (SPEC "Policy"). Asked when an exchange is planned, and
/// again when an approved CIBA request is finally issued: a decision taken earlier is taken
/// again.
pub fn decide<S: UserStorage + ?Sized>(users: &S, env: &Env<'_>, d: &Decide<'_>) -> Decision {
    let Decide {
        agent,
        attestation,
        dpop,
        user,
        child,
        client_id,
        now,
    } = *d;
    env.policies.delegate(&DelegateRequest {
        agent: agent.to_string(),
        attestation: attestation.to_string(),
        dpop: dpop.as_str().to_string(),
        user: user.to_string(),
        user_scopes: users
            .user(user)
            .map(|u| u.scopes.clone())
            .unwrap_or_default(),
        scopes: child.scope.iter().map(str::to_string).collect(),
        audiences: child.aud.clone(),
        depth: i64::from(child.depth),
        client: client_id.to_string(),
        // The agents already in the chain: everyone in `act` but the new actor.
        actors: actor_chain(child.act.act.as_deref())
            .iter()
            .map(|a| a.strip_prefix("agent:").unwrap_or(a).to_string())
            .collect(),
        ttl: child.exp - now,
        time: now,
    })
}

/// Issues the planned token with `scope` (the plan's, or narrower) until `exp`.
pub async fn issue<S: TokenExchangeStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    plan: &Plan,
    scope: &ScopeSet,
    exp: i64,
) -> Result<Issued, OAuthError> {
    let now = env.now();
    let exp = exp.min(plan.exp);
    if exp <= now {
        return Err(invalid_grant("the subject token has expired meanwhile"));
    }
    let mut minted = mint_access(
        &env.mint,
        AccessSpec {
            sub: plan.subject.sub.clone(),
            client_id: plan.client_id.clone(),
            scope: scope.to_string(),
            aud: plan.child.aud.clone(),
            ttl: exp - now,
            sid: Some(crate::crypto::time_ordered_id(env.mint.clock)),
            act: Some(plan.child.act.clone()),
            att: Some(plan.attestation.clone()),
            may_act: None,
            parent_hash: Some(plan.subject.token_hash.clone()),
            grant: TOKEN_EXCHANGE,
            jkt: env.bind(),
            key_in_tpm: plan.dpop == DpopKind::Tpm,
        },
    )?;
    if let Some(o) = minted.event.detail.as_object_mut() {
        o.insert("parent_jti".into(), plan.subject.jti.clone().into());
        o.insert("parent_sid".into(), plan.subject.sid.clone().into());
        o.insert("actor_jti".into(), plan.actor_jti.clone().into());
        o.insert("depth".into(), plan.child.depth.into());
        o.insert("attestation".into(), plan.attestation.clone().into());
        o.insert("policies".into(), plan.decision.ids().into());
    }
    persist(storage, &mut [&mut minted]).await?;
    Ok(Issued {
        bound: minted.record.jkt.is_some(),
        access_token: minted.token,
        expires_in: exp - now,
        scope: minted.record.scope,
        refresh_token: None,
        issued_token_type: Some(TT_ACCESS_TOKEN),
        id_token: None,
    })
}

/// A refused delegation is an audit entry naming the policies that refused it.
async fn audit_refusal<S: TokenExchangeStorage + ?Sized>(
    storage: &S,
    subject: &TokenRecord,
    agent: &str,
    child: &Child,
    client: &Client,
    decision: &Decision,
    description: &str,
) -> Result<(), OAuthError> {
    let mut ev = AuditEvent::new("token.exchange_refused");
    ev.subject = Some(subject.sub.clone());
    ev.actors = std::iter::once(agent.to_string())
        .chain(actor_chain(subject.act.as_ref()))
        .collect();
    ev.client_id = Some(client.client_id.clone());
    ev.session = subject.sid.clone();
    ev.token_jti = Some(subject.jti.clone());
    ev.detail = serde_json::json!({
        "scope": child.scope.to_string(),
        "aud": child.aud,
        "policies": decision.determining.iter().map(|p| serde_json::json!({"id": p.id, "file": p.file})).collect::<Vec<_>>(),
        "reason": description,
    });
    storage.audit(vec![ev]).await?;
    Ok(())
}

/// How the actor proved itself (`att` of its agent token). Its bytes matched a stored hash, so
/// it is byte for byte one this server signed: reading its payload needs no second verification.
fn agent_attestation(agent_token: &str) -> String {
    jsonwebtoken::dangerous::insecure_decode::<Value>(agent_token)
        .ok()
        .and_then(|d| {
            d.claims
                .get("att")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "software".into())
}

#[cfg(test)]
mod tests;
