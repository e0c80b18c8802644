//! RFC 9449 DPoP: a client proves, with a JWT it signs for each request (the `DPoP` header),
//! that it holds a private key, and the tokens it gets are bound to that key (`cnf.jkt`, the
//! RFC 7638 thumbprint of the public key). A bound token copied out of a log or a prompt is
//! useless without the key.
//!
//! `mandate_dpop::check_proof` (shared with the resource-server middleware) applies RFC 9449
//! §4.3 to one proof, purely: shape, `typ`, `alg`, the public key and its signature, `htm`,
//! `htu`, `iat`, `ath`. [`Dpop`] adds what needs state: the
//! server's nonces (§8), stateless so that every replica holding the KEK accepts every other's,
//! and the single use of each proof's `jti` (§11.1), recorded in the database shared by every
//! replica ([`ProofReplay`]).

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

pub use mandate_dpop::{
    ALGS, IAT_LEEWAY, MAX_PROOF_BYTES, Proof, Refusal, Target, check_proof, p256_thumbprint,
};

use super::error::{ErrorCode, OAuthError};
use crate::crypto::{Keyed, b64url, sha256};
use crate::store::StoreError;

/// Per client (and, later, per resource server): whether tokens are bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Mode {
    /// A `DPoP` header is ignored: tokens are bearer tokens.
    Off,
    /// Tokens are bound when the request carries a proof (RFC 9449's default).
    #[default]
    Allowed,
    /// Every token request must carry a proof (RFC 9449 §5.2 `dpop_bound_access_tokens`).
    Required,
}

impl TryFrom<String> for Mode {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "off" => Ok(Mode::Off),
            "allowed" => Ok(Mode::Allowed),
            "required" => Ok(Mode::Required),
            _ => Err(format!(
                "unknown DPoP mode `{s}`: expected `off`, `allowed` or `required`"
            )),
        }
    }
}

/// How a delegation request is bound, as policy sees it (`context.dpop`): not at all, to a key
/// in memory somewhere, or to a key the acting agent's TPM was shown to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    None,
    Software,
    Tpm,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::None => "none",
            KeyKind::Software => "software",
            KeyKind::Tpm => "tpm",
        }
    }

    /// The binding of a request whose proof `jkt` signed, acting with `actor`'s agent token:
    /// `tpm` only when it is the very key the agent's TPM was shown to hold at `/attest`.
    pub fn of(jkt: Option<&str>, actor: &crate::store::TokenRecord) -> Self {
        match jkt {
            None => KeyKind::None,
            Some(j)
                if actor.jkt.as_deref() == Some(j) && actor.dpop_key.as_deref() == Some("tpm") =>
            {
                KeyKind::Tpm
            }
            Some(_) => KeyKind::Software,
        }
    }
}

impl From<Refusal> for OAuthError {
    fn from(r: Refusal) -> Self {
        OAuthError::new(ErrorCode::InvalidDpopProof, r.to_string())
    }
}

/// Records a proof's `jti` once, in storage every replica shares (RFC 9449 §11.1).
#[async_trait]
pub trait ProofReplay: Send + Sync {
    /// False if `key` was recorded before and has not expired.
    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError>;
}

/// Server-provided nonces (RFC 9449 §8): the time slot, MACed under a key derived from the KEK,
/// so a nonce any replica made is good at every other until it is two periods old, and none is
/// ever stored.
pub struct Nonces {
    key: Keyed,
    period: i64,
}

impl Nonces {
    pub fn new(key: Keyed, period: i64) -> Self {
        Self {
            key,
            period: period.max(1),
        }
    }

    fn tag(&self, slot: i64) -> [u8; 32] {
        self.key.tag(&[b"dpop-nonce", &slot.to_be_bytes()])
    }

    /// The nonce for now.
    pub fn current(&self, now: i64) -> String {
        let slot = now.div_euclid(self.period);
        let mut bytes = slot.to_be_bytes().to_vec();
        bytes.extend_from_slice(self.tag(slot).get(..16).unwrap_or_default());
        b64url(&bytes)
    }

    /// Whether `nonce` was made by a replica of this server in this period or the last.
    pub fn valid(&self, nonce: &str, now: i64) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let (Some(slot), Some(tag)) = (bytes.get(..8), bytes.get(8..)) else {
            return false;
        };
        let Ok(slot) = <[u8; 8]>::try_from(slot).map(i64::from_be_bytes) else {
            return false;
        };
        let current = now.div_euclid(self.period);
        (slot == current || slot == current - 1)
            && tag.len() == 16
            && crate::crypto::ct_eq(tag, self.tag(slot).get(..16).unwrap_or_default())
    }
}

/// DPoP as this process applies it: the nonce key and the `[dpop]` settings.
pub struct Dpop {
    pub nonces: Nonces,
    /// RFC 9449 §8: every proof must carry a nonce this server made.
    pub require_nonce: bool,
    /// How old a proof's `iat` may be, in seconds.
    pub max_age: i64,
}

impl Dpop {
    /// The `DPoP-Nonce` to send with a response, when nonces are required.
    pub fn nonce_to_send(&self, now: i64) -> Option<String> {
        self.require_nonce.then(|| self.nonces.current(now))
    }

    /// The key a token request's tokens are bound to, under the client's `mode`: none when DPoP
    /// is off for it or no proof came (unless it is required), else the key of a proof that
    /// passed [`Self::check`].
    pub async fn binding<R: ProofReplay + ?Sized>(
        &self,
        replay: &R,
        mode: Mode,
        proof: Option<&str>,
        target: &Target<'_>,
        now: i64,
    ) -> Result<Option<String>, OAuthError> {
        match (mode, proof) {
            (Mode::Off, _) | (Mode::Allowed, None) => Ok(None),
            (Mode::Required, None) => Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "this client's tokens must be DPoP-bound: send a DPoP proof with the request (RFC 9449 §5.2)",
            )),
            (_, Some(p)) => Ok(Some(self.check(replay, p, target, now).await?.jkt)),
        }
    }

    /// Every RFC 9449 §4.3 check on `proof` for `target`, the nonce (§8) and single use
    /// (§11.1). A missing or stale nonce is `use_dpop_nonce`, so the client retries with the
    /// `DPoP-Nonce` the response carries.
    pub async fn check<R: ProofReplay + ?Sized>(
        &self,
        replay: &R,
        proof: &str,
        target: &Target<'_>,
        now: i64,
    ) -> Result<Proof, OAuthError> {
        let p = self.precheck(proof, target, now)?;
        self.spend(replay, &p, now).await?;
        Ok(p)
    }

    /// [`Self::check`] without single use: what needs no write. `/attest` runs it before the
    /// attestation (so a missing nonce does not use up the agent's challenge) and spends the
    /// proof only after it (so no caller that is not an enrolled agent makes us store anything).
    pub fn precheck(
        &self,
        proof: &str,
        target: &Target<'_>,
        now: i64,
    ) -> Result<Proof, OAuthError> {
        let p = check_proof(proof, target, now, self.max_age)?;
        let nonce_ok = match &p.nonce {
            Some(n) => self.nonces.valid(n, now),
            None => !self.require_nonce,
        };
        if !nonce_ok {
            return Err(OAuthError::new(
                ErrorCode::UseDpopNonce,
                "the DPoP proof must carry the nonce this server sent in the DPoP-Nonce header (RFC 9449 §8)",
            ));
        }
        Ok(p)
    }

    /// Records a checked proof's `jti` (RFC 9449 §11.1): a second use is `invalid_dpop_proof`.
    pub async fn spend<R: ProofReplay + ?Sized>(
        &self,
        replay: &R,
        p: &Proof,
        now: i64,
    ) -> Result<(), OAuthError> {
        let key = format!(
            "dpop:{}",
            b64url(&sha256(format!("{}\n{}", p.jkt, p.jti).as_bytes()))
        );
        // Kept until no proof with this `iat` could be accepted any more.
        let keep_until = p.iat.max(now) + self.max_age + IAT_LEEWAY;
        if !replay.use_once(&key, keep_until, now).await? {
            return Err(Refusal::Replayed.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
