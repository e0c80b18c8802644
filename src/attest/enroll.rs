//! Zero-touch TPM enrollment by credential activation (`/attest/enroll`, `/attest/enroll/activate`).
//!
//! An agent nobody registered presents its TPM's endorsement key — with the EK certificate its
//! manufacturer issued, or an EK an operator put on `attestation.ek_allowlist` — and the
//! attestation key (AK) it wants enrolled. The server checks the certificate chain against
//! `attestation.ek_roots`, that the certificate is for that EK, and that the AK is an AK; then it
//! seals a random secret to the EK *and* the AK's Name (TPM2_MakeCredential, TPM 2.0 Part 1 §24,
//! done in pure Rust by [`super::tpm::credential`]). Only a TPM that holds that EK and an AK with
//! exactly that Name can recover the secret (TPM2_ActivateCredential, Part 3 §12.5). When the
//! agent returns it, the AK is enrolled, and the agent name is pinned to the EK: a different EK
//! can never take the name, and one EK enrolls one agent. Every refusal is audited with its
//! reason; the challenge is single use (a wrong answer burns it).

use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::tpm::{credential, decode_b64, ek, parse, verify};
use crate::audit::AuditEvent;
use crate::crypto::{b64url, random_bytes, random_id, sha256};
use crate::oauth::Ctx;
use crate::oauth::agent::Agent;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::store::WriteOp;
use crate::store::tpm::PendingEnrollment;

/// `POST /attest/enroll`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The agent name to enroll (`agent:<name>` in tokens).
    pub agent: String,
    /// TPM2B_PUBLIC of the endorsement key, base64.
    pub ek_public: String,
    /// The EK certificate, DER, base64. Optional only for an allowlisted EK.
    pub ek_certificate: Option<String>,
    /// Intermediate CA certificates, DER, base64, nearest first.
    #[serde(default)]
    pub ek_chain: Vec<String>,
    /// TPM2B_PUBLIC of the attestation key to enroll, base64.
    pub ak_public: String,
}

/// The credential-activation challenge.
pub struct EnrollChallenge {
    pub enrollment_id: String,
    /// TPM2B_ID_OBJECT's buffer (no size prefix), standard base64.
    pub credential_blob: String,
    /// TPM2B_ENCRYPTED_SECRET's buffer (no size prefix), standard base64.
    pub encrypted_secret: String,
    pub expires_in: i64,
}

/// `POST /attest/enroll/activate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    pub enrollment_id: String,
    /// What TPM2_ActivateCredential returned, base64.
    pub secret: String,
}

/// A completed enrollment.
pub struct Enrolled {
    pub agent: String,
    /// base64url SHA-256 of the AK's TPMT_PUBLIC (the `ak_thumbprint` of its agent tokens).
    pub ak_thumbprint: String,
}

/// A request that is not a well-formed enrollment.
fn malformed(what: &'static str) -> OAuthError {
    OAuthError::invalid_request(what)
}

/// A refused enrollment: `reason` is precise, for the log and the audit; `public` is what the
/// caller is told.
fn denied(reason: impl Into<String>, public: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, public).because(reason)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Whether zero-touch enrollment is configured at all.
pub fn enabled(ctx: &Ctx) -> bool {
    !ctx.ek_roots.is_empty() || !ctx.config.attestation.ek_allowlist.is_empty()
}

/// Failed enrollments are throttled like sign-ins (per agent name and per client address, see
/// [`crate::web::throttle`]): a flood of bad attempts is refused early, costs no crypto and
/// writes no audit entry once the limit is reached.
fn throttled(ctx: &Ctx, key: &str, addr: Option<&str>, now: i64) -> Result<(), OAuthError> {
    match ctx.throttle.enroll.attempt(key, addr, now) {
        Ok(()) => Ok(()),
        Err(wait) => {
            tracing::warn!(key, "TPM enrollment throttled");
            Err(OAuthError::new(
                ErrorCode::SlowDown,
                format!(
                    "too many failed enrollments for this agent name or from this address: retry in {wait} s"
                ),
            )
            .with_status(429))
        }
    }
}

fn throttle_key(agent: &str) -> String {
    format!("enroll:{agent}")
}

/// `addr` is the client's IP address, for throttling.
pub async fn begin(
    ctx: &Ctx,
    req: EnrollRequest,
    addr: Option<&str>,
) -> Result<EnrollChallenge, OAuthError> {
    if !enabled(ctx) {
        return Err(OAuthError::invalid_request(
            "zero-touch enrollment is not enabled on this server (no attestation.ek_roots or ek_allowlist)",
        ));
    }
    if !super::valid_agent_name(&req.agent) {
        return Err(OAuthError::invalid_request(
            "agent must be a name of 1 to 128 characters without spaces or control characters",
        ));
    }
    let now = ctx.clock.now();
    throttled(ctx, &throttle_key(&req.agent), addr, now)?;
    match challenge(ctx, &req, now).await {
        Ok((challenge, pending)) => {
            let mut ev = AuditEvent::new("agent.enrollment_challenged");
            ev.subject = Some(format!("agent:{}", req.agent));
            ev.detail = json!({
                "ek_hash": pending.ek_hash,
                "ek_issuer": pending.ek_issuer,
                "ak_thumbprint": thumbprint(&pending.ak_public),
            });
            ctx.writer.write(WriteOp::None, vec![ev]).await?;
            ctx.throttle
                .enroll
                .succeeded(&throttle_key(&req.agent), addr);
            Ok(challenge)
        }
        Err(Stop::Store(e)) => Err(e.into()),
        Err(Stop::Refused(r)) => {
            Err(refuse(ctx, &req.agent, (&throttle_key(&req.agent), addr), r).await)
        }
    }
}

enum Stop {
    Refused(OAuthError),
    Store(crate::store::StoreError),
}

impl From<OAuthError> for Stop {
    fn from(r: OAuthError) -> Self {
        Self::Refused(r)
    }
}

impl From<crate::store::StoreError> for Stop {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Store(e)
    }
}

/// Audits a refusal and counts it against `throttle` (key, client address).
async fn refuse(
    ctx: &Ctx,
    agent: &str,
    throttle: (&str, Option<&str>),
    r: OAuthError,
) -> OAuthError {
    // The attempt was counted when it began (see `throttled`).
    tracing::info!(
        agent,
        reason = r.reason(),
        throttle = throttle.0,
        "TPM enrollment refused"
    );
    let mut ev = AuditEvent::new("agent.enrollment_refused");
    ev.subject = Some(format!("agent:{agent}"));
    ev.detail = json!({ "reason": r.reason() });
    if let Err(e) = ctx.writer.write(WriteOp::None, vec![ev]).await {
        return e.into();
    }
    r
}

fn thumbprint(ak_public_b64: &str) -> String {
    decode_b64(ak_public_b64)
        .and_then(|b| b.get(2..).map(sha256))
        .map(|d| b64url(&d))
        .unwrap_or_default()
}

/// What pins an agent to its TPM: SHA-256 of the EK's SubjectPublicKeyInfo (DER), hex — the
/// key the EK certificate certifies, not the TPM2B_PUBLIC around it, whose other fields (auth
/// policy, attribute bits) a caller could vary to look like another TPM. Operators compute it for
/// `attestation.ek_allowlist` with `tpm2_readpublic -c EK -f pem -o ek.pem; openssl pkey -pubin
/// -in ek.pem -outform DER | sha256sum`.
pub fn ek_key_hash(key: &parse::EkKey) -> Option<String> {
    use p256::pkcs8::EncodePublicKey;
    let der = match key {
        parse::EkKey::Rsa(k) => k.to_public_key_der().ok()?,
        parse::EkKey::P256(k) => k.to_public_key_der().ok()?,
        parse::EkKey::P384(k) => k.to_public_key_der().ok()?,
    };
    Some(hex::encode(sha256(der.as_bytes())))
}

async fn challenge(
    ctx: &Ctx,
    req: &EnrollRequest,
    now: i64,
) -> Result<(EnrollChallenge, PendingEnrollment), Stop> {
    let ak = decode_b64(&req.ak_public).ok_or(malformed("ak_public is not base64"))?;
    let ek_public = decode_b64(&req.ek_public).ok_or(malformed("ek_public is not base64"))?;
    verify::attestation_key(&ak).map_err(|e| {
        denied(
            e.to_string(),
            "ak_public is not a TPM attestation key (restricted signing key made under the EK)",
        )
    })?;

    // The EK: on the operator's allowlist, or vouched for by its certificate.
    let parsed = parse::parse_ek_public(&ek_public).map_err(|e| {
        denied(
            format!("ek_public: {e}"),
            "ek_public is not a TPM endorsement key",
        )
    })?;
    let ek_hash = ek_key_hash(&parsed.key).ok_or_else(|| {
        denied(
            "the EK's key cannot be encoded",
            "ek_public is not a usable EK",
        )
    })?;
    let (ek_key, ek_issuer) = if ctx.config.attestation.ek_allowlist.contains(&ek_hash) {
        (parsed, "allowlist".to_string())
    } else {
        let cert = req.ek_certificate.as_deref().ok_or_else(|| {
            denied(
                format!("EK {ek_hash} has no certificate and is not on attestation.ek_allowlist"),
                "send ek_certificate: this EK is not on the server's allowlist",
            )
        })?;
        let cert = decode_b64(cert).ok_or(malformed("ek_certificate is not base64"))?;
        let chain = req
            .ek_chain
            .iter()
            .map(|c| decode_b64(c).ok_or(malformed("ek_chain holds a value that is not base64")))
            .collect::<Result<Vec<_>, _>>()?;
        let verified = ek::verify_ek(&ctx.ek_roots, &cert, &chain, &ek_public, now).map_err(|e| {
            denied(
                format!("EK certificate: {e}"),
                "the EK certificate does not verify against this server's EK roots, or is not for this EK",
            )
        })?;
        (verified.public, verified.issuer)
    };

    // Pinning: the name belongs to this EK, or to nobody yet; the EK to this name, or nobody.
    if let Some(existing) = ctx.store.agent_record(&req.agent).await?
        && existing.ek_hash.as_deref() != Some(ek_hash.as_str())
    {
        return Err(denied(
            match existing.ek_hash {
                Some(other) => format!("agent is pinned to another EK ({other})"),
                None => format!("agent was enrolled by {} without an EK", existing.source),
            },
            "this agent name is not available to this TPM",
        )
        .into());
    }
    if let Some(other) = ctx.store.agent_by_ek(&ek_hash).await?
        && other != req.agent
    {
        return Err(denied(
            format!("this EK already enrolled agent:{other}"),
            "this TPM already enrolled another agent",
        )
        .into());
    }

    let name = credential::tpm_name(&ak).map_err(|e| {
        denied(
            format!("ak_public: {e}"),
            "ak_public has no usable TPM Name",
        )
    })?;
    let secret = random_bytes::<32>();
    let cred = credential::make_credential(&ek_key, &name, &secret).map_err(|e| {
        denied(
            format!("MakeCredential: {e}"),
            "this EK cannot be used for credential activation",
        )
    })?;
    let ttl = ctx.config.attestation.enrollment_ttl.as_secs() as i64;
    let pending = PendingEnrollment {
        id: random_id(),
        agent: req.agent.clone(),
        ek_hash,
        ek_issuer,
        ak_public: b64(&ak),
        secret_hash: sha256(&secret).to_vec(),
        created_at: now,
        expires_at: now + ttl,
    };
    ctx.store.create_enrollment(&pending).await?;
    Ok((
        EnrollChallenge {
            enrollment_id: pending.id.clone(),
            credential_blob: b64(&cred.id_object),
            encrypted_secret: b64(&cred.encrypted_secret),
            expires_in: ttl,
        },
        pending,
    ))
}

/// `addr` is the client's IP address, for throttling.
pub async fn activate(
    ctx: &Ctx,
    req: ActivateRequest,
    addr: Option<&str>,
) -> Result<Enrolled, OAuthError> {
    let now = ctx.clock.now();
    // An unknown id counts against the address only (its own key is never asked again).
    let id_key = format!("enrollment-id:{}", req.enrollment_id);
    throttled(ctx, &id_key, addr, now)?;
    let Some(pending) = ctx.store.take_enrollment(&req.enrollment_id, now).await? else {
        return Err(refuse(
            ctx,
            "(unknown)",
            (&id_key, addr),
            denied(
                "unknown, used or expired enrollment_id",
                "enrollment_id is unknown, used or expired: start again at /attest/enroll",
            ),
        )
        .await);
    };
    let answer = decode_b64(&req.secret).unwrap_or_default();
    if !bool::from(sha256(&answer).ct_eq(pending.secret_hash.as_slice())) {
        return Err(refuse(
            ctx,
            &pending.agent,
            (&throttle_key(&pending.agent), addr),
            denied(
                "credential activation failed: the secret returned is not the one sealed to the EK and AK",
                "credential activation failed: start again at /attest/enroll",
            ),
        )
        .await);
    }
    // Re-enrolling (a new AK in the same TPM) keeps the PCR policy an operator set.
    let previous = ctx
        .store
        .agent_record(&pending.agent)
        .await?
        .and_then(|r| serde_json::from_str::<Agent>(&r.data).ok());
    let agent = Agent {
        name: pending.agent.clone(),
        public_jwk: None,
        ak_public: Some(pending.ak_public.clone()),
        pcr_policy: previous.and_then(|a| a.pcr_policy),
    };
    let data = serde_json::to_string(&agent)
        .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
    if !ctx
        .store
        .enroll_agent_by_ek(&pending.agent, &data, &pending.ek_hash, now)
        .await?
    {
        return Err(refuse(
            ctx,
            &pending.agent,
            (&throttle_key(&pending.agent), addr),
            denied(
                "the agent name or the EK was pinned elsewhere while the challenge was out",
                "this agent name is not available to this TPM",
            ),
        )
        .await);
    }
    ctx.throttle.enroll.succeeded(&id_key, addr);
    let ak_thumbprint = thumbprint(&pending.ak_public);
    let mut ev = AuditEvent::new("agent.enrolled");
    ev.subject = Some(format!("agent:{}", pending.agent));
    ev.detail = json!({
        "via": if pending.ek_issuer == "allowlist" { "ek_allowlist" } else { "ek_certificate" },
        "ek_hash": pending.ek_hash,
        "ek_issuer": pending.ek_issuer,
        "ak_thumbprint": ak_thumbprint,
    });
    ctx.writer.write(WriteOp::None, vec![ev]).await?;
    ctx.agents.fresh(ctx.store.as_ref(), &pending.agent).await?;
    Ok(Enrolled {
        agent: pending.agent,
        ak_thumbprint,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::ek_key_hash;
    use crate::attest::tpm::parse::parse_ek_public;
    use crate::attest::valid_agent_name as valid_name;

    /// The pin is SHA-256 of the EK's SubjectPublicKeyInfo: the value openssl computes from the
    /// EK certificate (tests/vectors/tpm/ek/make.sh), for the RSA-2048 and the P-384 EK.
    #[test]
    fn ek_pin_is_the_certified_keys_spki_hash() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/tpm/ek");
        for k in ["rsa", "p384"] {
            let public = std::fs::read(format!("{dir}/ek_{k}.pub")).unwrap();
            let want = std::fs::read_to_string(format!("{dir}/ek_{k}.spki.sha256")).unwrap();
            let ek = parse_ek_public(&public).unwrap();
            assert_eq!(ek_key_hash(&ek.key).as_deref(), Some(want.trim()), "{k}");
        }
    }

    #[test]
    fn agent_names_are_printable_words() {
        assert!(valid_name("build-bot"));
        assert!(valid_name("ci.runner_7"));
        assert!(!valid_name(""));
        assert!(!valid_name("two words"));
        assert!(!valid_name("tab\there"));
        assert!(!valid_name(&"x".repeat(129)));
    }
}
