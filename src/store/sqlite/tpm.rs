//! [`TpmStore`] on SQLite: nonces, enrollments and counters change on the writer; agents are
//! read on the readers.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::sql;
use crate::store::tpm::{AgentRecord, CounterOutcome, PendingEnrollment, QuoteCounters, TpmStore};

/// Whether `e` says a unique index refused the row.
fn unique_violation(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == SQLITE_CONSTRAINT_UNIQUE || f.extended_code == SQLITE_CONSTRAINT_PRIMARYKEY)
}

#[async_trait]
impl TpmStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "db.create_nonce", skip_all, fields(db.system = "sqlite"))]
    async fn create_nonce(
        &self,
        nonce: &str,
        agent: Option<&str>,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let (nonce, agent) = (nonce.to_string(), agent.map(str::to_string));
        self.writer
            .tx(move |tx| {
                (tx.prepare_cached(sql::FORGET_NONCES)?).execute([now])?;
                (tx.prepare_cached(sql::CREATE_NONCE)?)
                    .execute(params![nonce, agent, expires_at])?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(level = "debug", name = "db.consume_nonce", skip_all, fields(db.system = "sqlite"))]
    async fn consume_nonce(&self, nonce: &str, agent: &str, now: i64) -> Result<bool, StoreError> {
        let (nonce, agent) = (nonce.to_string(), agent.to_string());
        self.writer
            .tx(move |tx| {
                let won = (tx.prepare_cached(sql::CONSUME_NONCE)?)
                    .execute(params![now, nonce, agent])?
                    == 1;
                // Forget nonces that expired long ago.
                (tx.prepare_cached(sql::FORGET_NONCES)?).execute([now - 3600])?;
                Ok(won)
            })
            .await
    }

    async fn agent_record(&self, name: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.readers.read(|c| {
            (c.prepare_cached(sql::AGENT_RECORD)?)
                .query_row([name], |r| {
                    Ok(AgentRecord {
                        data: r.get(0)?,
                        source: r.get(1)?,
                        ek_hash: r.get(2)?,
                        disabled_at: r.get(3)?,
                    })
                })
                .optional()
        })
    }

    async fn agent_by_ek(&self, ek_hash: &str) -> Result<Option<String>, StoreError> {
        self.readers.read(|c| {
            (c.prepare_cached(sql::AGENT_BY_EK)?)
                .query_row([ek_hash], |r| r.get(0))
                .optional()
        })
    }

    async fn create_enrollment(&self, e: &PendingEnrollment) -> Result<(), StoreError> {
        let e = e.clone();
        self.writer
            .tx(move |tx| {
                (tx.prepare_cached(sql::CREATE_ENROLLMENT)?).execute(params![
                    e.id,
                    e.agent,
                    e.ek_hash,
                    e.ek_issuer,
                    e.ak_public,
                    e.secret_hash,
                    e.created_at,
                    e.expires_at,
                ])?;
                Ok(())
            })
            .await
    }

    async fn take_enrollment(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<PendingEnrollment>, StoreError> {
        let id = id.to_string();
        self.writer
            .tx(move |tx| {
                let row = (tx.prepare_cached(sql::TAKE_ENROLLMENT)?)
                    .query_row([id], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                        ))
                    })
                    .optional()?;
                (tx.prepare_cached(sql::FORGET_ENROLLMENTS)?).execute([now - 3600])?;
                Ok(row
                    .map(PendingEnrollment::from)
                    .filter(|e| e.expires_at > now))
            })
            .await
    }

    async fn enroll_agent_by_ek(
        &self,
        name: &str,
        data: &str,
        ek_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (name, data, ek_hash) = (name.to_string(), data.to_string(), ek_hash.to_string());
        self.writer
            .tx(move |tx| {
                let row: Result<Option<String>, _> = (tx.prepare_cached(sql::ENROLL_BY_EK)?)
                    .query_row(params![name, data, now, ek_hash], |r| r.get(0))
                    .optional();
                match row {
                    Ok(row) => Ok(row.is_some()),
                    Err(e) if unique_violation(&e) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            })
            .await
    }

    async fn advance_tpm_counters(
        &self,
        agent: &str,
        c: &QuoteCounters,
        now: i64,
    ) -> Result<CounterOutcome, StoreError> {
        let (agent, c) = (agent.to_string(), c.clone());
        self.writer
            .tx(move |tx| {
                let row: Option<Option<String>> = (tx.prepare_cached(sql::ADVANCE_COUNTERS)?)
                    .query_row(
                        params![
                            agent,
                            c.reset_count,
                            c.restart_count,
                            c.clock,
                            c.firmware,
                            now
                        ],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(match row {
                    Some(previous_firmware) => CounterOutcome::Advanced { previous_firmware },
                    None => CounterOutcome::Stale,
                })
            })
            .await
    }

    async fn tpm_counters(&self, agent: &str) -> Result<Option<QuoteCounters>, StoreError> {
        self.readers.read(|c| {
            (c.prepare_cached(sql::TPM_COUNTERS)?)
                .query_row([agent], |r| {
                    Ok(QuoteCounters::from((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                    )))
                })
                .optional()
        })
    }
}
