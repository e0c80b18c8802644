//! [`OutboxStore`] on SQLite: one process owns the database, so a claim is one update on the
//! writer's thread (the lease still guards against a worker that outlived its own).

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::outbox::{Claimed, OutboxCounts, OutboxStore, Settle, sql};

fn claimed(r: &rusqlite::Row<'_>) -> rusqlite::Result<Claimed> {
    Ok(Claimed {
        id: r.get(0)?,
        event_id: r.get(1)?,
        stream: r.get(2)?,
        kind: r.get(3)?,
        payload: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        attempts: r.get(7)?,
    })
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn claim_outbox(
        &self,
        lease: &str,
        now: i64,
        leased_until: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let lease = lease.to_string();
        let mut out: Vec<Claimed> = self
            .writer
            .tx(move |tx| {
                let mut s = tx.prepare_cached(&sql::claim(""))?;
                let rows = s.query_map(params![lease, leased_until, now, limit], claimed)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
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
        let (lease, how) = (lease.to_string(), how.clone());
        self.writer
            .tx(move |tx| {
                let n = match &how {
                    Settle::Retry { at, error } => {
                        (tx.prepare_cached(sql::RETRY)?).execute(params![at, error, id, lease])?
                    }
                    _ => (tx.prepare_cached(sql::SETTLE)?).execute(params![
                        now,
                        how.outcome(),
                        how.error(),
                        id,
                        lease
                    ])?,
                };
                Ok(n == 1)
            })
            .await
    }

    async fn release_outbox(&self, lease: &str) -> Result<u64, StoreError> {
        let lease = lease.to_string();
        self.writer
            .tx(move |tx| Ok((tx.prepare_cached(sql::RELEASE)?).execute([lease])? as u64))
            .await
    }

    async fn purge_outbox(&self, before: i64) -> Result<u64, StoreError> {
        self.writer
            .tx(move |tx| Ok((tx.prepare_cached(sql::PURGE)?).execute([before])? as u64))
            .await
    }

    async fn expire_held_sets(&self, now: i64, written_before: i64) -> Result<u64, StoreError> {
        self.writer
            .tx(move |tx| {
                let n =
                    (tx.prepare_cached(sql::EXPIRE_HELD_SETS)?).execute([now, written_before])?;
                Ok(n as u64)
            })
            .await
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.readers.read(|c| {
            (c.prepare_cached(sql::COUNTS)?).query_row([], |r| {
                Ok(OutboxCounts {
                    pending: r.get(0)?,
                    delivered: r.get(1)?,
                    failed: r.get(2)?,
                    expired: r.get(3)?,
                })
            })
        })
    }

    async fn polled_outbox(
        &self,
        stream: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let stream = stream.to_string();
        self.readers.read(move |c| {
            let mut s = c.prepare_cached(sql::POLL)?;
            let rows = s.query_map(params![stream, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    async fn ack_outbox(
        &self,
        stream: &str,
        event_ids: &[String],
        now: i64,
    ) -> Result<u64, StoreError> {
        let (stream, ids) = (stream.to_string(), event_ids.to_vec());
        self.writer
            .tx(move |tx| {
                let mut s = tx.prepare_cached(sql::ACK)?;
                let mut n = 0;
                for id in &ids {
                    n += s.execute(params![now, stream, id])? as u64;
                }
                Ok(n)
            })
            .await
    }
}
