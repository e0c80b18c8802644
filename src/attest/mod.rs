//! Agent attestation (SPEC "Agent attestation"): single-use challenges, and the proofs that an
//! agent is the enrolled one — a JWT signed with its registered key ([`software`]), or a TPM
//! quote by its enrolled attestation key ([`tpm`]). A passing proof yields a short-lived agent
//! token whose `att` says which.

pub mod enroll;
pub mod software;
pub mod tpm;

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
    /// With a TPM quote: a DPoP key the TPM holds, certified by the AK (docs/dpop.md).
    pub dpop_key: Option<TpmKeyEvidence>,
}

/// A TPM-held DPoP key: its TPM2B_PUBLIC, and TPM2_Certify of it by the agent's AK
/// (TPMS_ATTEST and TPMT_SIGNATURE), each base64.
#[derive(Deserialize)]
pub struct TpmKeyEvidence {
    pub public: String,
    pub certify: String,
    pub signature: String,
}

pub struct Challenge {
    pub nonce: String,
    pub expires_in: i64,
}

/// Agent names: 1 to 128 characters, no whitespace or control characters (as the CLI and
/// enrollment accept them). Checked before anything an unauthenticated caller sends is used.
pub fn valid_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 128
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn bad_agent_name() -> OAuthError {
    OAuthError::invalid_request(
        "agent must be a name of 1 to 128 characters without spaces or control characters",
    )
}

/// A nonce bound to `req.agent` (when named). Nothing the caller sent is stored unless it names
/// an enrolled agent: an unknown name gets a nonce that is never stored (so it can never be
/// used, and the answer does not say which agents exist).
pub async fn challenge(ctx: &Ctx, req: ChallengeRequest) -> Result<Challenge, OAuthError> {
    let nonce = b64url(&random_bytes::<32>());
    let now = ctx.clock.now();
    let known = match req.agent.as_deref() {
        None => true,
        Some(name) if !valid_agent_name(name) => return Err(bad_agent_name()),
        Some(name) => ctx.agents.fresh(ctx.store.as_ref(), name).await?.is_some(),
    };
    if known {
        ctx.store
            .create_nonce(&nonce, req.agent.as_deref(), now + NONCE_TTL, now)
            .await?;
    }
    Ok(Challenge {
        nonce,
        expires_in: NONCE_TTL,
    })
}

/// Why an attestation was refused: logged and audited in full, answered coarsely so a caller
/// cannot probe which agents exist.
/// Every refused attestation gets the same coarse answer, so a caller learns nothing about which
/// check failed (or whether the agent exists); `reason` is precise, for the log and the audit.
pub(crate) fn refused(reason: impl Into<String>) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidGrant,
        "attestation failed: unknown agent, bad proof, or a nonce that is unknown, used or expired",
    )
    .because(reason)
}

/// Verifies the agent's proof or quote and mints its agent token. When the request carried a
/// DPoP proof (RFC 9449), the token is bound to its key, and then exchanges only in requests
/// that key signs. The proof is checked before the attestation (so a missing nonce does not
/// spend the agent's challenge) but its `jti` is recorded only once the attestation passed, so
/// no caller that is not an enrolled agent makes this server store anything.
pub async fn attest(
    ctx: &Ctx,
    req: AttestRequest,
    dpop: Option<&str>,
) -> Result<Minted, OAuthError> {
    let now = ctx.clock.now();
    if !valid_agent_name(&req.agent) {
        return Err(bad_agent_name());
    }
    // Read now, not at start: the CLI, another replica or a zero-touch enrollment may have
    // enrolled or changed this agent.
    let Some(agent) = ctx.agents.fresh(ctx.store.as_ref(), &req.agent).await? else {
        // Nothing the caller chose is written for a name nobody enrolled (the audit log is
        // never pruned); the answer is the one every refusal gets.
        let e = refused("unknown agent");
        tracing::info!(reason = e.reason(), "attestation refused");
        return Err(e);
    };
    // RFC 9449: the proof is checked (and a missing nonce answered) before the attestation
    // uses up the agent's challenge; it is spent only once the attestation passed.
    let htu = ctx.endpoint("/attest");
    let target = crate::oauth::dpop::Target {
        htm: "POST",
        htu: &htu,
        access_token: None,
    };
    let proof = dpop
        .map(|p| ctx.dpop.precheck(p, &target, now))
        .transpose()?;
    let result = verify(ctx, agent, &req, now).await;
    let mut minted = match result {
        Ok(a) => {
            let binding = bind(ctx, proof.as_ref(), a.tpm_key.as_deref(), now).await?;
            let minted = token::mint_agent_with(ctx, &req.agent, a.att, a.claims, binding)?;
            if let Some((before, after)) = a.firmware_change {
                // tpm.md: a firmware change is not a refusal, but operators must see it.
                let mut ev = AuditEvent::new("agent.tpm_firmware_changed");
                ev.subject = Some(format!("agent:{}", req.agent));
                ev.detail = json!({ "before": before, "now": after });
                ctx.writer
                    .write(crate::store::WriteOp::None, vec![ev])
                    .await?;
            }
            minted
        }
        Err(e) => {
            let subject = format!("agent:{}", req.agent);
            if ctx
                .throttle
                .attest_audit
                .attempt(&subject, None, now)
                .is_err()
            {
                tracing::warn!(agent = %req.agent, reason = e.reason(),
                    "attestation refused (not audited: too many refusals of this agent lately)");
                return Err(e);
            }
            tracing::info!(reason = e.reason(), "attestation refused");
            let mut ev = AuditEvent::new("agent.attestation_refused");
            ev.subject = Some(subject);
            ev.detail = json!({ "reason": e.reason() });
            ctx.writer
                .write(crate::store::WriteOp::None, vec![ev])
                .await?;
            return Err(e);
        }
    };
    persist(ctx, &mut [&mut minted]).await?;
    (ctx.throttle.attest_audit).succeeded(&format!("agent:{}", req.agent), None);
    Ok(minted)
}

/// The key the agent token is bound to: the key of the request's DPoP proof, if it sent one
/// (RFC 9449). When the agent also sent a key its TPM holds (certified, `tpm_key` its
/// thumbprint), the proof must be signed by that very key, and the binding says so.
async fn bind(
    ctx: &Ctx,
    proof: Option<&crate::oauth::dpop::Proof>,
    tpm_key: Option<&str>,
    now: i64,
) -> Result<Option<token::KeyBinding>, OAuthError> {
    if let Some(p) = proof {
        ctx.dpop.spend(ctx, p, now).await?;
    }
    match (proof.map(|p| p.jkt.clone()), tpm_key) {
        (Some(jkt), Some(tpm)) if jkt == tpm => Ok(Some(token::KeyBinding { jkt, in_tpm: true })),
        (_, Some(_)) => Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "with a TPM-held `dpop_key`, send a DPoP proof signed by that key",
        )),
        (jkt, None) => Ok(jkt.map(|jkt| token::KeyBinding { jkt, in_tpm: false })),
    }
}

/// A passing attestation: how, and what the agent token says about it besides `att`.
struct Attestation {
    /// The thumbprint of a DPoP key the agent's TPM was shown to hold.
    tpm_key: Option<String>,
    att: &'static str,
    claims: serde_json::Map<String, serde_json::Value>,
    firmware_change: Option<(String, String)>,
}

async fn verify(
    ctx: &Ctx,
    agent: std::sync::Arc<crate::oauth::agent::Agent>,
    req: &AttestRequest,
    now: i64,
) -> Result<Attestation, OAuthError> {
    if req.quote.is_some() || req.signature.is_some() || req.pcrs.is_some() {
        if req.proof.is_some() {
            return Err(OAuthError::invalid_request(
                "send either a software `proof` or a TPM `quote`, not both",
            ));
        }
        let evidence = tpm::Evidence {
            nonce: &req.nonce,
            quote: req.quote.as_deref(),
            signature: req.signature.as_deref(),
            pcrs: req.pcrs.as_ref(),
        };
        let attested = tpm::attest(ctx, &agent, &evidence, now).await?;
        let tpm_key = match &req.dpop_key {
            Some(k) => Some(tpm::certified_key(&agent, k)?),
            None => None,
        };
        allowed(ctx, &agent.name, "tpm", now)?;
        let mut claims = serde_json::Map::new();
        claims.insert("ak_thumbprint".into(), attested.ak_thumbprint.into());
        if let Some(p) = attested.pcr_policy {
            claims.insert("pcr_policy".into(), p);
        }
        return Ok(Attestation {
            tpm_key,
            att: "tpm",
            claims,
            firmware_change: attested.firmware_change,
        });
    }
    let proof = req.proof.as_deref().ok_or(OAuthError::invalid_request(
        "send `proof` (a JWT signed with the agent's registered key)",
    ))?;
    if req.dpop_key.is_some() {
        return Err(OAuthError::invalid_request(
            "`dpop_key` (a TPM-held key) comes with a TPM quote, not a software proof",
        ));
    }
    let jwk = agent
        .public_jwk
        .as_ref()
        .ok_or_else(|| refused("agent has no registered public_jwk"))?;
    software::verify_proof(proof, jwk, &agent.name, &ctx.issuer, &req.nonce, now)
        .map_err(refused)?;
    if !ctx
        .store
        .consume_nonce(&req.nonce, &agent.name, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "nonce check failed");
            refused("nonce check failed")
        })?
    {
        return Err(refused(
            "nonce unknown, expired, used, or issued to another agent",
        ));
    }
    allowed(ctx, &agent.name, "software", now)?;
    Ok(Attestation {
        tpm_key: None,
        att: "software",
        claims: serde_json::Map::new(),
        firmware_change: None,
    })
}

/// Whether policy lets an agent attested this way have an agent token at all.
fn allowed(ctx: &Ctx, agent: &str, attestation: &str, now: i64) -> Result<(), OAuthError> {
    let decision = ctx.policies.attest(&crate::policy::AttestRequest {
        agent: agent.to_string(),
        attestation: attestation.into(),
        time: now,
    });
    if decision.outcome != crate::policy::Outcome::Permit {
        return Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            format!(
                "agent:{agent} may not get an agent token: {}",
                decision.refusal()
            ),
        ));
    }
    Ok(())
}
