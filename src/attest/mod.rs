//! Agent attestation (SPEC "Agent attestation"): single-use challenges, and the proofs that an
//! agent is the enrolled one — a JWT signed with its registered key (software), or a TPM quote
//! (its own issue; not accepted yet). A passing proof yields a short-lived agent token.

pub mod software;

use serde::Deserialize;
use serde_json::json;

use crate::audit::AuditEvent;
use crate::crypto::{b64url, random_bytes};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::token::{Minted, persist};
use crate::oauth::{Ctx, token};

/// Nonces live at most five minutes (SPEC).
pub const NONCE_TTL: i64 = 300;

#[derive(Debug, Default, Deserialize)]
pub struct ChallengeRequest {
    /// Binds the nonce to one agent when given.
    pub agent: Option<String>,
}

/// `POST /attest` body: a software proof or a TPM quote.
#[derive(Deserialize)]
pub struct AttestRequest {
    pub agent: String,
    pub nonce: String,
    pub proof: Option<String>,
    pub quote: Option<String>,
    pub signature: Option<String>,
    pub pcrs: Option<serde_json::Value>,
}

pub struct Challenge {
    pub nonce: String,
    pub expires_in: i64,
}

pub async fn challenge(ctx: &Ctx, req: ChallengeRequest) -> Result<Challenge, OAuthError> {
    let nonce = b64url(&random_bytes::<32>());
    let now = ctx.clock.now();
    ctx.store
        .create_nonce(&nonce, req.agent.as_deref(), now + NONCE_TTL)
        .await?;
    Ok(Challenge {
        nonce,
        expires_in: NONCE_TTL,
    })
}

/// Why an attestation was refused: logged and audited in full, answered coarsely so a caller
/// cannot probe which agents exist.
fn refused(reason: &str) -> OAuthError {
    tracing::info!(reason, "attestation refused");
    OAuthError::new(
        ErrorCode::InvalidGrant,
        "attestation failed: unknown agent, bad proof, or a nonce that is unknown, used or expired",
    )
}

pub async fn attest(ctx: &Ctx, req: AttestRequest) -> Result<Minted, OAuthError> {
    let now = ctx.clock.now();
    let result = verify(ctx, &req, now).await;
    let minted = match result {
        Ok(att) => token::mint_agent(ctx, &req.agent, att)?,
        Err(reason) => {
            let mut ev = AuditEvent::new("agent.attestation_refused");
            ev.subject = Some(format!("agent:{}", req.agent));
            ev.detail = json!({ "reason": reason });
            ctx.writer
                .write(crate::store::WriteOp::None, vec![ev])
                .await?;
            return Err(match reason {
                Reason::Unsupported(m) => OAuthError::invalid_request(m),
                Reason::Refused(m) => refused(m),
                Reason::Policy(m) => OAuthError::new(ErrorCode::InvalidGrant, m),
            });
        }
    };
    persist(ctx, &[&minted]).await?;
    Ok(minted)
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
enum Reason {
    Unsupported(&'static str),
    Refused(&'static str),
    /// A policy forbids this agent a token; the description names it.
    Policy(String),
}

async fn verify(ctx: &Ctx, req: &AttestRequest, now: i64) -> Result<&'static str, Reason> {
    let agent = ctx
        .agents
        .get(&req.agent)
        .ok_or(Reason::Refused("unknown agent"))?;
    if req.quote.is_some() || req.signature.is_some() || req.pcrs.is_some() {
        return Err(Reason::Unsupported(
            "TPM quotes are not accepted yet; send a software `proof`",
        ));
    }
    let proof = req.proof.as_deref().ok_or(Reason::Unsupported(
        "send `proof` (a JWT signed with the agent's registered key)",
    ))?;
    let jwk = agent
        .public_jwk
        .as_ref()
        .ok_or(Reason::Refused("agent has no registered public_jwk"))?;
    software::verify_proof(proof, jwk, &agent.name, &ctx.issuer, &req.nonce, now)
        .map_err(Reason::Refused)?;
    if !ctx
        .store
        .consume_nonce(&req.nonce, &agent.name, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "nonce check failed");
            Reason::Refused("nonce check failed")
        })?
    {
        return Err(Reason::Refused(
            "nonce unknown, expired, used, or issued to another agent",
        ));
    }
    let decision = ctx.policies.attest(&crate::policy::AttestRequest {
        agent: agent.name.clone(),
        attestation: "software".into(),
        time: now,
    });
    if decision.outcome != crate::policy::Outcome::Permit {
        return Err(Reason::Policy(format!(
            "agent:{} may not get an agent token: {}",
            agent.name,
            decision.refusal()
        )));
    }
    Ok("software")
}
