//! Storage for TPM attestation: the last TPM clock each agent's accepted quote showed, as a
//! supertrait of [`super::Store`] so `dyn Store` carries it. Same SQL for both backends through
//! the `tpm_sql_store!` macro, invoked in `sqlite.rs` and `postgres.rs`.

use async_trait::async_trait;

use super::StoreError;

/// TPMS_CLOCK_INFO counters of a quote (TPM 2.0 Part 2 §10.11.1) and the TPM's firmware version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteCounters {
    pub reset_count: i64,
    pub restart_count: i64,
    /// Milliseconds the TPM has been powered since it was cleared.
    pub clock: i64,
    /// firmwareVersion, hex.
    pub firmware: String,
}

/// What [`TpmStore::advance_tpm_counters`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterOutcome {
    /// The quote is newer than every quote accepted before; its counters are now the last seen.
    /// `previous_firmware` is the firmware of the previous accepted quote, if there was one.
    Advanced { previous_firmware: Option<String> },
    /// The quote is not newer than the last accepted one: a replay or an older quote.
    Stale,
}

/// A credential-activation challenge waiting for the agent's answer (zero-touch enrollment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEnrollment {
    pub id: String,
    pub agent: String,
    /// SHA-256 of the EK's SubjectPublicKeyInfo, hex (see `attest::enroll::ek_key_hash`).
    pub ek_hash: String,
    /// Who vouched for the EK: the EK certificate's issuer, or `allowlist`.
    pub ek_issuer: String,
    /// TPM2B_PUBLIC of the attestation key to enroll, base64.
    pub ak_public: String,
    /// SHA-256 of the secret sealed to the EK and the AK's name.
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What the store holds about one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub data: String,
    /// `config`, `cli` or `ek`.
    pub source: String,
    pub ek_hash: Option<String>,
    /// Set when an operator disabled the agent: it gets nothing until enabled again.
    pub disabled_at: Option<i64>,
}

#[async_trait]
pub trait TpmStore: Send + Sync + 'static {
    /// The stored agent `name`, read now (another replica or the CLI may have enrolled it).
    async fn agent_record(&self, name: &str) -> Result<Option<AgentRecord>, StoreError>;
    /// The agent enrolled with the EK whose hash is `ek_hash`, if any.
    async fn agent_by_ek(&self, ek_hash: &str) -> Result<Option<String>, StoreError>;
    async fn create_enrollment(&self, e: &PendingEnrollment) -> Result<(), StoreError>;
    /// Takes the enrollment `id` if it is unexpired: at most once, whatever the answer (and
    /// forgets long-expired ones).
    async fn take_enrollment(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<PendingEnrollment>, StoreError>;
    /// Enrolls (or re-enrolls) agent `name` pinned to `ek_hash`, in one statement: false, and
    /// nothing written, if `name` exists and is not pinned to that EK, or the EK is pinned to
    /// another agent.
    async fn enroll_agent_by_ek(
        &self,
        name: &str,
        data: &str,
        ek_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Records `c` as the agent's last seen counters if (resetCount, restartCount, clock) is
    /// strictly greater than the stored ones, in one statement: of two racing quotes with the same
    /// counters at most one advances.
    async fn advance_tpm_counters(
        &self,
        agent: &str,
        c: &QuoteCounters,
        now: i64,
    ) -> Result<CounterOutcome, StoreError>;
    async fn tpm_counters(&self, agent: &str) -> Result<Option<QuoteCounters>, StoreError>;
}

/// Implements [`TpmStore`] for a struct with a `pool: sqlx::Pool<$db>` field.
macro_rules! tpm_sql_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::tpm::TpmStore for $store {
            async fn advance_tpm_counters(
                &self,
                agent: &str,
                c: &$crate::store::tpm::QuoteCounters,
                now: i64,
            ) -> Result<$crate::store::tpm::CounterOutcome, $crate::store::StoreError> {
                // ON CONFLICT .. DO UPDATE .. WHERE updates (and returns) nothing when the stored
                // counters are not older; the SET's right-hand sides read the old row.
                let row = sqlx::query_as::<_, (Option<String>,)>(
                    "INSERT INTO tpm_counters (agent, reset_count, restart_count, clock, firmware, prev_firmware, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, NULL, $6) \
                     ON CONFLICT (agent) DO UPDATE SET reset_count = excluded.reset_count, \
                     restart_count = excluded.restart_count, clock = excluded.clock, \
                     prev_firmware = tpm_counters.firmware, firmware = excluded.firmware, \
                     updated_at = excluded.updated_at \
                     WHERE tpm_counters.reset_count < excluded.reset_count \
                     OR (tpm_counters.reset_count = excluded.reset_count \
                         AND (tpm_counters.restart_count < excluded.restart_count \
                              OR (tpm_counters.restart_count = excluded.restart_count \
                                  AND tpm_counters.clock < excluded.clock))) \
                     RETURNING prev_firmware",
                )
                .bind(agent)
                .bind(c.reset_count)
                .bind(c.restart_count)
                .bind(c.clock)
                .bind(&c.firmware)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    Some((previous_firmware,)) => {
                        $crate::store::tpm::CounterOutcome::Advanced { previous_firmware }
                    }
                    None => $crate::store::tpm::CounterOutcome::Stale,
                })
            }

            async fn agent_record(
                &self,
                name: &str,
            ) -> Result<Option<$crate::store::tpm::AgentRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as::<_, (String, String, Option<String>, Option<i64>)>(
                    "SELECT data, source, ek_hash, disabled_at FROM agents WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
                .map(|(data, source, ek_hash, disabled_at)| $crate::store::tpm::AgentRecord {
                    data,
                    source,
                    ek_hash,
                    disabled_at,
                }))
            }

            async fn agent_by_ek(
                &self,
                ek_hash: &str,
            ) -> Result<Option<String>, $crate::store::StoreError> {
                Ok(
                    sqlx::query_as::<_, (String,)>("SELECT name FROM agents WHERE ek_hash = $1")
                        .bind(ek_hash)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(|(n,)| n),
                )
            }

            async fn create_enrollment(
                &self,
                e: &$crate::store::tpm::PendingEnrollment,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO tpm_enrollments (id, agent, ek_hash, ek_issuer, ak_public, secret_hash, \
                     created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
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
            ) -> Result<Option<$crate::store::tpm::PendingEnrollment>, $crate::store::StoreError> {
                let row = sqlx::query_as::<_, (String, String, String, String, String, Vec<u8>, i64, i64)>(
                    "DELETE FROM tpm_enrollments WHERE id = $1 RETURNING id, agent, ek_hash, ek_issuer, \
                     ak_public, secret_hash, created_at, expires_at",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                sqlx::query("DELETE FROM tpm_enrollments WHERE expires_at < $1")
                    .bind(now - 3600)
                    .execute(&self.pool)
                    .await?;
                Ok(row
                    .filter(|r| r.7 > now)
                    .map(|(id, agent, ek_hash, ek_issuer, ak_public, secret_hash, created_at, expires_at)| {
                        $crate::store::tpm::PendingEnrollment {
                            id,
                            agent,
                            ek_hash,
                            ek_issuer,
                            ak_public,
                            secret_hash,
                            created_at,
                            expires_at,
                        }
                    }))
            }

            async fn enroll_agent_by_ek(
                &self,
                name: &str,
                data: &str,
                ek_hash: &str,
                now: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                // A name pinned to another EK (or enrolled otherwise, ek_hash NULL) is left alone by
                // the WHERE; an EK pinned to another name trips the unique index.
                let result = sqlx::query_as::<_, (String,)>(
                    "INSERT INTO agents (name, data, source, updated_at, ek_hash) VALUES ($1, $2, 'ek', $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at \
                     WHERE agents.ek_hash = excluded.ek_hash RETURNING name",
                )
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

            async fn tpm_counters(
                &self,
                agent: &str,
            ) -> Result<Option<$crate::store::tpm::QuoteCounters>, $crate::store::StoreError> {
                Ok(sqlx::query_as::<_, (i64, i64, i64, String)>(
                    "SELECT reset_count, restart_count, clock, firmware FROM tpm_counters WHERE agent = $1",
                )
                .bind(agent)
                .fetch_optional(&self.pool)
                .await?
                .map(|(reset_count, restart_count, clock, firmware)| {
                    $crate::store::tpm::QuoteCounters {
                        reset_count,
                        restart_count,
                        clock,
                        firmware,
                    }
                }))
            }
        }
    };
}

pub(super) use tpm_sql_store;
