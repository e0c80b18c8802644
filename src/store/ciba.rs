//! Storage of CIBA requests (OpenID CIBA Core 1.0, poll mode), as a supertrait of
//! [`super::Store`]. The transitions that must happen once — a decision, the one issuance of
//! the approved token — are single conditional updates, so racing requests cannot repeat them.

use async_trait::async_trait;

use super::{Audiences, StoreError};
use crate::oauth::act::Actor;
use crate::oauth::scope::ScopeSet;

/// Where a request is in its life: `pending` until the human decides, then `approved` or
/// `denied`; `issued` once the approved token was handed out (exactly once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CibaStatus {
    Pending,
    Approved,
    Denied,
    Issued,
}

impl CibaStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            CibaStatus::Pending => "pending",
            CibaStatus::Approved => "approved",
            CibaStatus::Denied => "denied",
            CibaStatus::Issued => "issued",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => CibaStatus::Pending,
            "approved" => CibaStatus::Approved,
            "denied" => CibaStatus::Denied,
            "issued" => CibaStatus::Issued,
            _ => return None,
        })
    }
}

/// A delegation waiting for (or decided by) the human. Every value is parsed once, when the
/// row is read; a row whose status, chain or scopes do not parse is not a record at all
/// ([`StoreError::CorruptRecord`]), never one read with a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CibaRecord {
    /// SHA-256 of the `auth_req_id` the client polls with.
    pub id_hash: Vec<u8>,
    /// The id the approvals page uses (not the client's secret `auth_req_id`).
    pub public_id: String,
    pub client_id: String,
    pub username: String,
    pub agent: String,
    pub attestation: String,
    /// The subject token the delegated token derives from.
    pub parent_hash: Vec<u8>,
    /// The RFC 8693 `act` claim the token will carry (stored as JSON).
    pub act: Actor,
    /// The scopes asked for.
    pub scope: ScopeSet,
    pub aud: Audiences,
    /// The latest `exp` the token may have.
    pub token_exp: i64,
    pub depth: i64,
    pub binding_message: Option<String>,
    /// JSON array of the policy `@id`s that decided.
    pub policies: String,
    /// The scopes asked for that made it high-risk.
    pub high_risk: ScopeSet,
    pub created_at: i64,
    pub expires_at: i64,
    pub interval_secs: i64,
    pub last_polled_at: Option<i64>,
    pub status: CibaStatus,
    /// What the human approved (at most what was asked for).
    pub approved_scope: Option<ScopeSet>,
    pub approved_exp: Option<i64>,
    pub decided_at: Option<i64>,
    /// SHA-256 of the agent token the request was made with: checked again when the approved
    /// token is issued (None for requests made before it was recorded).
    pub actor_hash: Option<Vec<u8>>,
}

/// What one poll found.
#[derive(Debug, Clone)]
pub enum Poll {
    NotFound,
    /// Polled sooner than `interval` after the previous poll; the interval grew.
    TooFast(CibaRecord),
    Seen(CibaRecord),
}

#[async_trait]
pub trait CibaStore: Send + Sync + 'static {
    /// Stores a new pending request, unless its human already has `max_pending` pending,
    /// unexpired ones (then false, nothing stored).
    async fn create_ciba(&self, r: &CibaRecord, max_pending: i64) -> Result<bool, StoreError>;
    /// Records a poll at `now`; slow polls push the interval up by `slow_down_step` seconds
    /// (CIBA Core §11 `slow_down`).
    async fn poll_ciba(
        &self,
        id_hash: &[u8],
        now: i64,
        slow_down_step: i64,
    ) -> Result<Poll, StoreError>;
    /// Pending, unexpired requests of a human, oldest first. A request whose row is unreadable
    /// is left out (and logged): it can be neither shown truthfully nor decided, and it expires
    /// like any other; the human's other requests are listed as usual.
    async fn pending_ciba_for(
        &self,
        username: &str,
        now: i64,
    ) -> Result<Vec<CibaRecord>, StoreError>;
    /// Decides a pending request of `username`; false if it is not theirs, not pending, or expired.
    async fn decide_ciba(
        &self,
        public_id: &str,
        username: &str,
        approve: Option<(&ScopeSet, i64)>,
        now: i64,
    ) -> Result<Option<CibaRecord>, StoreError>;
    /// Marks an approved request issued; `None` unless this call made the transition.
    async fn claim_ciba(&self, id_hash: &[u8]) -> Result<Option<CibaRecord>, StoreError>;
}

/// The status, approved scope and `exp` a decision writes (`approve` is the scope and `exp`
/// granted, or `None` for a denial), as column values.
pub(crate) fn decision(
    approve: Option<(&ScopeSet, i64)>,
) -> (&'static str, Option<String>, Option<i64>) {
    match approve {
        Some((scope, exp)) => (
            CibaStatus::Approved.as_str(),
            Some(scope.to_string()),
            Some(exp),
        ),
        None => (CibaStatus::Denied.as_str(), None, None),
    }
}

impl Poll {
    /// A poll of `r` at `now`: sooner than its interval after the previous poll is too fast,
    /// and the interval grows by `slow_down_step` (CIBA Core §11 `slow_down`).
    pub(crate) fn at(mut r: CibaRecord, now: i64, slow_down_step: i64) -> Poll {
        let too_fast = r.last_polled_at.is_some_and(|t| now - t < r.interval_secs);
        r.last_polled_at = Some(now);
        if too_fast {
            r.interval_secs += slow_down_step;
            Poll::TooFast(r)
        } else {
            Poll::Seen(r)
        }
    }

    /// The request polled, if there is one.
    pub(crate) fn record(&self) -> Option<&CibaRecord> {
        match self {
            Poll::NotFound => None,
            Poll::TooFast(r) | Poll::Seen(r) => Some(r),
        }
    }
}
