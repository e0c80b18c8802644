//! The TPM path of `/attest` (SPEC "Agent attestation"): an agent enrolled with an attestation
//! key (`ak_public`, TPM2B_PUBLIC) posts a TPM2_Quote over the server's nonce. Parsing and
//! verification are pure Rust with no TPM library ([`parse`], [`verify`], [`pcr`]); this module
//! adds what needs the store: the nonce's single use and the per-agent TPM clock, so a replayed
//! or older quote is refused.

pub mod certify;
pub mod credential;
pub mod ek;
pub mod parse;
pub mod pcr;
pub mod verify;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::Value;

use crate::crypto::b64url;
use crate::oauth::agent::Agent;
use crate::oauth::{Ctx, OAuthError};
use crate::store::tpm::{CounterOutcome, QuoteCounters};

use pcr::{PcrPolicy, PcrValues};

/// A TPM attestation that does not prove what it must: the coarse public answer every refused
/// attestation gets, with `why` kept for the log and the audit (see [`super::refused`]).
fn refused(why: impl ToString) -> OAuthError {
    super::refused(why.to_string())
}

/// The evidence posted to `/attest`, still as text.
pub struct Evidence<'a> {
    pub nonce: &'a str,
    pub quote: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub pcrs: Option<&'a Value>,
}

/// What a passing quote established, for the agent token and the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// base64url SHA-256 of the AK's TPMT_PUBLIC.
    pub ak_thumbprint: String,
    /// The PCR policy the quote met, in SPEC's shape, if the agent has one.
    pub pcr_policy: Option<Value>,
    /// `(before, now)` when the TPM's firmwareVersion differs from the previous accepted quote's.
    pub firmware_change: Option<(String, String)>,
}

/// SPEC: binary fields are standard base64; base64url is accepted too, padded or not.
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

/// The thumbprint of the DPoP key `k` names, once the agent's enrolled AK is shown to have
/// certified it as a key its TPM holds ([`certify::verify_key`]).
pub fn certified_key(agent: &Agent, k: &super::TpmKeyEvidence) -> Result<String, OAuthError> {
    let ak = agent
        .ak_public
        .as_deref()
        .and_then(decode_b64)
        .ok_or_else(|| refused("agent has no usable enrolled ak_public"))?;
    let (Some(public), Some(certify), Some(signature)) = (
        decode_b64(&k.public),
        decode_b64(&k.certify),
        decode_b64(&k.signature),
    ) else {
        return Err(OAuthError::invalid_request(
            "`dpop_key` needs `public`, `certify` and `signature`, each base64",
        ));
    };
    let key = certify::verify_key(&ak, &public, &certify, &signature)
        .map_err(|r| refused(format!("dpop_key: {r}")))?;
    crate::oauth::dpop::p256_thumbprint(&key.x, &key.y)
        .ok_or_else(|| refused("dpop_key: not a P-256 point"))
}

pub async fn attest(
    ctx: &Ctx,
    agent: &Agent,
    ev: &Evidence<'_>,
    now: i64,
) -> Result<Attested, OAuthError> {
    let (Some(quote), Some(signature), Some(pcrs)) = (ev.quote, ev.signature, ev.pcrs) else {
        return Err(OAuthError::invalid_request(
            "a TPM attestation needs `quote`, `signature` and `pcrs`",
        ));
    };
    let (Some(quote), Some(signature)) = (decode_b64(quote), decode_b64(signature)) else {
        return Err(OAuthError::invalid_request(
            "`quote` and `signature` must be base64",
        ));
    };
    let pcrs = PcrValues::from_json(pcrs).map_err(|_| {
        OAuthError::invalid_request(
            "`pcrs` must map a bank (\"sha256\") to PCR indices and hex values",
        )
    })?;
    let ak = agent
        .ak_public
        .as_deref()
        .ok_or_else(|| refused("agent has no enrolled ak_public"))?;
    let ak = decode_b64(ak).ok_or_else(|| refused("enrolled ak_public is not base64"))?;
    let policy = agent
        .pcr_policy
        .as_ref()
        .map(PcrPolicy::from_json)
        .transpose()
        .map_err(|e| refused(format!("enrolled pcr_policy is invalid: {e}")))?;
    // The nonce the TPM qualified is the 32 bytes the challenge's base64url text encodes.
    let nonce = URL_SAFE_NO_PAD
        .decode(ev.nonce)
        .map_err(|_| refused("nonce is not base64url"))?;
    let verified = verify::verify(&verify::Input {
        ak_public: &ak,
        quote: &quote,
        signature: &signature,
        pcrs: &pcrs,
        nonce: &nonce,
        policy: policy.as_ref(),
    })
    .map_err(refused)?;
    if !ctx
        .store
        .consume_nonce(ev.nonce, &agent.name, now)
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
    let counters = QuoteCounters {
        reset_count: i64::from(verified.clock.reset_count),
        restart_count: i64::from(verified.clock.restart_count),
        clock: i64::try_from(verified.clock.clock)
            .map_err(|_| refused("TPM clock out of range"))?,
        firmware: format!("{:016x}", verified.firmware_version),
    };
    let outcome = ctx
        .store
        .advance_tpm_counters(&agent.name, &counters, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "TPM counter check failed");
            refused("TPM counter check failed")
        })?;
    let firmware_change = match outcome {
        CounterOutcome::Stale => {
            return Err(refused(
                "quote is not newer than the agent's last accepted quote (resetCount, restartCount, clock)",
            ));
        }
        CounterOutcome::Advanced { previous_firmware } => previous_firmware
            .filter(|p| *p != counters.firmware)
            .map(|p| (p, counters.firmware.clone())),
    };
    Ok(Attested {
        ak_thumbprint: b64url(&verified.ak_thumbprint),
        pcr_policy: policy.as_ref().map(PcrPolicy::to_json),
        firmware_change,
    })
}

#[cfg(test)]
mod ek_tests;
#[cfg(test)]
mod tests;
