//! [`OutboxStore`] on PostgreSQL, shared by replicas: a claim locks the heads it takes
//! (`FOR UPDATE SKIP LOCKED`, so a replica passes over what another is claiming) and leases
//! them (`leased_until`, so none is taken again while its sender may still be at it).

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::StoreError;
use crate::store::outbox::{Claimed, OutboxCounts, OutboxStore, Settle, sql};

type ClaimedRow = (i64, String, String, String, String, i64, Option<i64>, i64);

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn claim_outbox(
        &self,
        lease: &str,
        now: i64,
        leased_until: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        static CLAIM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let claim = CLAIM.get_or_init(|| sql::claim(" FOR UPDATE OF o SKIP LOCKED"));
        let rows: Vec<ClaimedRow> = sqlx::query_as(claim)
            .bind(lease)
            .bind(leased_until)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<Claimed> = rows
            .into_iter()
            .map(
                |(id, event_id, stream, kind, payload, created_at, expires_at, attempts)| Claimed {
                    id,
                    event_id,
                    stream,
                    kind,
                    payload,
                    created_at,
                    expires_at,
                    attempts,
                },
            )
            .collect();
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    async fn settle_outbox(
        &self,
        id: i64,
        lease: &str,
        how: &Settle,
        now: i64,
    ) -> Result<bool, StoreError> {
        let q = match how {
            Settle::Retry { at, error } => sqlx::query(sql::RETRY).bind(*at).bind(error.as_str()),
            _ => sqlx::query(sql::SETTLE)
                .bind(now)
                .bind(how.outcome())
                .bind(how.error()),
        };
        let r = q.bind(id).bind(lease).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    async fn release_outbox(&self, lease: &str) -> Result<u64, StoreError> {
        let r = sqlx::query(sql::RELEASE)
            .bind(lease)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn purge_outbox(&self, before: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(sql::PURGE)
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn expire_held_sets(&self, now: i64, written_before: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(sql::EXPIRE_HELD_SETS)
            .bind(now)
            .bind(written_before)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let (pending, delivered, failed, expired): (i64, i64, i64, i64) =
            sqlx::query_as(sql::COUNTS).fetch_one(&self.pool).await?;
        Ok(OutboxCounts {
            pending,
            delivered,
            failed,
            expired,
        })
    }

    async fn polled_outbox(
        &self,
        stream: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(sql::POLL)
            .bind(stream)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn ack_outbox(
        &self,
        stream: &str,
        event_ids: &[String],
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut n = 0;
        for id in event_ids {
            let r = sqlx::query(sql::ACK)
                .bind(now)
                .bind(stream)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            n += r.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }
}
