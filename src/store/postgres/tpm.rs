//! [`TpmStore`] on PostgreSQL. Nonces are written on connections of their own, outside the pool
//! (a pooled connection adds a liveness ping each way: see [`super::conns`]), each in one
//! statement.

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::StoreError;
use crate::store::sql;
use crate::store::tpm::{AgentRecord, CounterOutcome, PendingEnrollment, QuoteCounters, TpmStore};

/// [`sql::CREATE_NONCE`], and up to 64 expired nonces forgotten in the same statement (so a
/// flood of challenges never outgrows the nonces live at once). `SKIP LOCKED`: challenges made
/// at the same time each take other expired rows, where deleting every expired row made each
/// wait on the row locks of the others until they committed.
const CREATE_NONCE_FORGETTING: &str = "WITH forgotten AS (DELETE FROM attest_nonces \
       WHERE nonce IN (SELECT nonce FROM attest_nonces WHERE expires_at < $4 \
         LIMIT 64 FOR UPDATE SKIP LOCKED)) \
     INSERT INTO attest_nonces (nonce, agent, expires_at) VALUES ($1, $2, $3)";

type EnrollmentRow = (String, String, String, String, String, Vec<u8>, i64, i64);

#[async_trait]
impl TpmStore for PostgresStore {
    #[tracing::instrument(level = "debug", name = "db.create_nonce", skip_all, fields(db.system = "postgresql"))]
    async fn create_nonce(
        &self,
        nonce: &str,
        agent: Option<&str>,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let statement = sqlx::query(CREATE_NONCE_FORGETTING)
            .bind(nonce)
            .bind(agent)
            .bind(expires_at)
            .bind(now);
        self.side_execute(statement).await.map(drop)
    }

    #[tracing::instrument(level = "debug", name = "db.consume_nonce", skip_all, fields(db.system = "postgresql"))]
    async fn consume_nonce(&self, nonce: &str, agent: &str, now: i64) -> Result<bool, StoreError> {
        let statement = sqlx::query(sql::CONSUME_NONCE)
            .bind(now)
            .bind(nonce)
            .bind(agent);
        Ok(self.side_execute(statement).await? == 1)
    }

    async fn agent_record(&self, name: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row: Option<(String, String, Option<String>, Option<i64>)> =
            sqlx::query_as(sql::AGENT_RECORD)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(data, source, ek_hash, disabled_at)| AgentRecord {
            data,
            source,
            ek_hash,
            disabled_at,
        }))
    }

    async fn agent_by_ek(&self, ek_hash: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(sql::AGENT_BY_EK)
            .bind(ek_hash)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn create_enrollment(&self, e: &PendingEnrollment) -> Result<(), StoreError> {
        sqlx::query(sql::CREATE_ENROLLMENT)
            .bind(&e.id)
            .bind(&e.agent)
            .bind(&e.ek_hash)
            .bind(&e.ek_issuer)
            .bind(&e.ak_public)
            .bind(&e.secret_hash)
            .bind(e.created_at)
            .bind(e.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn take_enrollment(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<PendingEnrollment>, StoreError> {
        let row: Option<EnrollmentRow> = sqlx::query_as(sql::TAKE_ENROLLMENT)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        sqlx::query(sql::FORGET_ENROLLMENTS)
            .bind(now - 3600)
            .execute(&self.pool)
            .await?;
        Ok(row
            .map(PendingEnrollment::from)
            .filter(|e| e.expires_at > now))
    }

    async fn enroll_agent_by_ek(
        &self,
        name: &str,
        data: &str,
        ek_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result: Result<Option<String>, _> = sqlx::query_scalar(sql::ENROLL_BY_EK)
            .bind(name)
            .bind(data)
            .bind(now)
            .bind(ek_hash)
            .fetch_optional(&self.pool)
            .await;
        match result {
            Ok(row) => Ok(row.is_some()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn advance_tpm_counters(
        &self,
        agent: &str,
        c: &QuoteCounters,
        now: i64,
    ) -> Result<CounterOutcome, StoreError> {
        let row: Option<Option<String>> = sqlx::query_scalar(sql::ADVANCE_COUNTERS)
            .bind(agent)
            .bind(c.reset_count)
            .bind(c.restart_count)
            .bind(c.clock)
            .bind(&c.firmware)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(previous_firmware) => CounterOutcome::Advanced { previous_firmware },
            None => CounterOutcome::Stale,
        })
    }

    async fn tpm_counters(&self, agent: &str) -> Result<Option<QuoteCounters>, StoreError> {
        let row: Option<(i64, i64, i64, String)> = sqlx::query_as(sql::TPM_COUNTERS)
            .bind(agent)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(QuoteCounters::from))
    }
}
