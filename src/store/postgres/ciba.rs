//! [`CibaStore`] on PostgreSQL: each transition is one conditional update.

use async_trait::async_trait;

use super::PostgresStore;
use crate::oauth::scope::ScopeSet;
use crate::store::StoreError;
use crate::store::ciba::{CibaRecord, CibaStore, Poll, decision};
use crate::store::records::{self, CibaRow};
use crate::store::sql;

/// The request with `key` that `sql` (a `SELECT` of `sql::CIBA_COLUMNS` by one key) finds.
async fn ciba_where(
    tx: &mut sqlx::PgConnection,
    sql: &str,
    key: impl for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
) -> Result<Option<CibaRecord>, StoreError> {
    let row = sqlx::query_as::<_, CibaRow>(sql)
        .bind(key)
        .fetch_optional(tx)
        .await?;
    row.map(TryInto::try_into).transpose()
}

#[async_trait]
impl CibaStore for PostgresStore {
    #[tracing::instrument(level = "debug", name = "db.create_ciba", skip_all, fields(db.system = "postgresql"))]
    async fn create_ciba(&self, r: &CibaRecord, max_pending: i64) -> Result<bool, StoreError> {
        let (act, scope, aud, high_risk) = records::ciba_columns(r);
        let done = sqlx::query(sql::CREATE_CIBA)
            .bind(&r.id_hash)
            .bind(&r.public_id)
            .bind(&r.client_id)
            .bind(&r.username)
            .bind(&r.agent)
            .bind(&r.attestation)
            .bind(&r.parent_hash)
            .bind(act)
            .bind(scope)
            .bind(aud)
            .bind(r.token_exp)
            .bind(r.depth)
            .bind(&r.binding_message)
            .bind(&r.policies)
            .bind(high_risk)
            .bind(r.created_at)
            .bind(r.expires_at)
            .bind(r.interval_secs)
            .bind(&r.actor_hash)
            .bind(max_pending)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(level = "debug", name = "db.poll_ciba", skip_all, fields(db.system = "postgresql"))]
    async fn poll_ciba(
        &self,
        id_hash: &[u8],
        now: i64,
        slow_down_step: i64,
    ) -> Result<Poll, StoreError> {
        let mut tx = self.pool.begin().await?;
        let taken = sqlx::query(sql::LOCK_CIBA)
            .bind(id_hash)
            .execute(&mut *tx)
            .await?;
        if taken.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(Poll::NotFound);
        }
        let r = ciba_where(&mut tx, sql::ciba_by_hash(), id_hash)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a locked CIBA request vanished".into()))?;
        let poll = Poll::at(r, now, slow_down_step);
        let r = poll
            .record()
            .ok_or_else(|| StoreError::Corrupt("no poll".into()))?;
        sqlx::query(sql::POLLED_CIBA)
            .bind(now)
            .bind(r.interval_secs)
            .bind(id_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(poll)
    }

    async fn pending_ciba_for(
        &self,
        username: &str,
        now: i64,
    ) -> Result<Vec<CibaRecord>, StoreError> {
        let rows = sqlx::query_as::<_, CibaRow>(sql::pending_ciba())
            .bind(username)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        Ok(records::readable_cibas(rows))
    }

    async fn decide_ciba(
        &self,
        public_id: &str,
        username: &str,
        approve: Option<(&ScopeSet, i64)>,
        now: i64,
    ) -> Result<Option<CibaRecord>, StoreError> {
        let (status, scope, exp) = decision(approve);
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(sql::DECIDE_CIBA)
            .bind(status)
            .bind(scope)
            .bind(exp)
            .bind(now)
            .bind(public_id)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        let r = match done.rows_affected() {
            1 => ciba_where(&mut tx, sql::ciba_by_public_id(), public_id).await?,
            _ => None,
        };
        tx.commit().await?;
        Ok(r)
    }

    async fn claim_ciba(&self, id_hash: &[u8]) -> Result<Option<CibaRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(sql::CLAIM_CIBA)
            .bind(id_hash)
            .execute(&mut *tx)
            .await?;
        let r = match done.rows_affected() {
            1 => ciba_where(&mut tx, sql::ciba_by_hash(), id_hash).await?,
            _ => None,
        };
        tx.commit().await?;
        Ok(r)
    }
}
