//! Storage of CIBA requests (OpenID CIBA Core 1.0, poll mode), as a supertrait of
//! [`super::Store`]. The transitions that must happen once — a decision, the one issuance of
//! the approved token — are single conditional updates, so racing requests cannot repeat them.

use async_trait::async_trait;

use super::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A delegation waiting for (or decided by) the human.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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
    /// The `act` claim the token will carry (JSON).
    pub act: String,
    /// Space-separated scopes asked for.
    pub scope: String,
    /// Space-separated audiences.
    pub aud: String,
    /// The latest `exp` the token may have.
    pub token_exp: i64,
    pub depth: i64,
    pub binding_message: Option<String>,
    /// JSON array of the policy `@id`s that decided.
    pub policies: String,
    /// Space-separated scopes that made it high-risk.
    pub high_risk: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub interval_secs: i64,
    pub last_polled_at: Option<i64>,
    pub status: String,
    pub approved_scope: Option<String>,
    pub approved_exp: Option<i64>,
    pub decided_at: Option<i64>,
    /// SHA-256 of the agent token the request was made with: checked again when the approved
    /// token is issued (None for requests made before it was recorded).
    pub actor_hash: Option<Vec<u8>>,
}

impl CibaRecord {
    pub fn status(&self) -> Option<CibaStatus> {
        CibaStatus::parse(&self.status)
    }
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
    /// Pending, unexpired requests of a human, oldest first.
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
        approve: Option<(&str, i64)>,
        now: i64,
    ) -> Result<Option<CibaRecord>, StoreError>;
    /// Marks an approved request issued; `None` unless this call made the transition.
    async fn claim_ciba(&self, id_hash: &[u8]) -> Result<Option<CibaRecord>, StoreError>;
}

pub(super) const CIBA_COLUMNS: &str = "id_hash, public_id, client_id, username, agent, attestation, parent_hash, \
     act, scope, aud, token_exp, depth, binding_message, policies, high_risk, created_at, expires_at, \
     interval_secs, last_polled_at, status, approved_scope, approved_exp, decided_at, actor_hash";

/// Implements [`CibaStore`] for a struct with a `pool: sqlx::Pool<$db>` field.
macro_rules! ciba_sql_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::ciba::CibaStore for $store {
            async fn create_ciba(&self, r: &$crate::store::ciba::CibaRecord, max_pending: i64) -> Result<bool, $crate::store::StoreError> {
                // One statement counts and inserts (concurrent requests of one human may each
                // see the count just under the cap on PostgreSQL: the cap holds within the
                // number of requests racing, not beyond).
                let done = sqlx::query(
                    "INSERT INTO ciba_requests (id_hash, public_id, client_id, username, agent, attestation, \
                     parent_hash, act, scope, aud, token_exp, depth, binding_message, policies, high_risk, \
                     created_at, expires_at, interval_secs, status, actor_hash) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 'pending', $19 \
                     WHERE (SELECT count(*) FROM ciba_requests WHERE username = $4 AND status = 'pending' \
                            AND expires_at > $16) < $20",
                )
                .bind(&r.id_hash)
                .bind(&r.public_id)
                .bind(&r.client_id)
                .bind(&r.username)
                .bind(&r.agent)
                .bind(&r.attestation)
                .bind(&r.parent_hash)
                .bind(&r.act)
                .bind(&r.scope)
                .bind(&r.aud)
                .bind(r.token_exp)
                .bind(r.depth)
                .bind(&r.binding_message)
                .bind(&r.policies)
                .bind(&r.high_risk)
                .bind(r.created_at)
                .bind(r.expires_at)
                .bind(r.interval_secs)
                .bind(&r.actor_hash)
                .bind(max_pending)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(done == 1)
            }

            async fn poll_ciba(
                &self,
                id_hash: &[u8],
                now: i64,
                slow_down_step: i64,
            ) -> Result<$crate::store::ciba::Poll, $crate::store::StoreError> {
                use $crate::store::ciba::{CibaRecord, Poll};
                let mut tx = self.pool.begin().await?;
                // Taking the row first (a write) serialises concurrent polls of one request.
                let touched = sqlx::query("UPDATE ciba_requests SET last_polled_at = last_polled_at WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if touched == 0 {
                    tx.commit().await?;
                    return Ok(Poll::NotFound);
                }
                let sql = format!("SELECT {} FROM ciba_requests WHERE id_hash = $1", $crate::store::ciba::CIBA_COLUMNS);
                let mut r: CibaRecord = sqlx::query_as(&sql).bind(id_hash).fetch_one(&mut *tx).await?;
                let too_fast = r.last_polled_at.is_some_and(|t| now - t < r.interval_secs);
                if too_fast {
                    r.interval_secs += slow_down_step;
                }
                r.last_polled_at = Some(now);
                sqlx::query("UPDATE ciba_requests SET last_polled_at = $1, interval_secs = $2 WHERE id_hash = $3")
                    .bind(now)
                    .bind(r.interval_secs)
                    .bind(id_hash)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(if too_fast { Poll::TooFast(r) } else { Poll::Seen(r) })
            }

            async fn pending_ciba_for(
                &self,
                username: &str,
                now: i64,
            ) -> Result<Vec<$crate::store::ciba::CibaRecord>, $crate::store::StoreError> {
                let sql = format!(
                    "SELECT {} FROM ciba_requests WHERE username = $1 AND status = 'pending' AND expires_at > $2 \
                     ORDER BY created_at, public_id",
                    $crate::store::ciba::CIBA_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(username).bind(now).fetch_all(&self.pool).await?)
            }

            async fn decide_ciba(
                &self,
                public_id: &str,
                username: &str,
                approve: Option<(&str, i64)>,
                now: i64,
            ) -> Result<Option<$crate::store::ciba::CibaRecord>, $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                let (status, scope, exp) = match approve {
                    Some((scope, exp)) => ("approved", Some(scope), Some(exp)),
                    None => ("denied", None, None),
                };
                let done = sqlx::query(
                    "UPDATE ciba_requests SET status = $1, approved_scope = $2, approved_exp = $3, decided_at = $4 \
                     WHERE public_id = $5 AND username = $6 AND status = 'pending' AND expires_at > $4",
                )
                .bind(status)
                .bind(scope)
                .bind(exp)
                .bind(now)
                .bind(public_id)
                .bind(username)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let sql = format!("SELECT {} FROM ciba_requests WHERE public_id = $1", $crate::store::ciba::CIBA_COLUMNS);
                let r = if done == 1 { sqlx::query_as(&sql).bind(public_id).fetch_optional(&mut *tx).await? } else { None };
                tx.commit().await?;
                Ok(r)
            }

            async fn claim_ciba(
                &self,
                id_hash: &[u8],
            ) -> Result<Option<$crate::store::ciba::CibaRecord>, $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query("UPDATE ciba_requests SET status = 'issued' WHERE id_hash = $1 AND status = 'approved'")
                    .bind(id_hash)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let sql = format!("SELECT {} FROM ciba_requests WHERE id_hash = $1", $crate::store::ciba::CIBA_COLUMNS);
                let r = if done == 1 { sqlx::query_as(&sql).bind(id_hash).fetch_optional(&mut *tx).await? } else { None };
                tx.commit().await?;
                Ok(r)
            }
        }
    };
}

pub(super) use ciba_sql_store;
