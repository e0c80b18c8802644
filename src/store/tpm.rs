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

#[async_trait]
pub trait TpmStore: Send + Sync + 'static {
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
