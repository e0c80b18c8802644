//! [`CibaStore`] on SQLite: transitions on the writer, listings on the readers.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, rows};
use crate::oauth::scope::ScopeSet;
use crate::store::StoreError;
use crate::store::ciba::{CibaRecord, CibaStore, Poll, decision};
use crate::store::{records, sql};

/// The request with `key` that `sql` (a `SELECT` of `sql::CIBA_COLUMNS` by one key) finds.
fn ciba_where(
    tx: &rusqlite::Connection,
    sql: &str,
    key: &dyn rusqlite::ToSql,
) -> Result<Option<CibaRecord>, StoreError> {
    let row = (tx.prepare_cached(sql)?)
        .query_row([key], rows::ciba)
        .optional()?;
    row.map(TryInto::try_into).transpose()
}

/// The request `sql` (a `SELECT` of `sql::CIBA_COLUMNS` by one key) finds, if `changed` says
/// the transition before it happened.
fn after(
    tx: &rusqlite::Connection,
    changed: usize,
    sql: &str,
    key: &dyn rusqlite::ToSql,
) -> Result<Option<CibaRecord>, StoreError> {
    if changed != 1 {
        return Ok(None);
    }
    ciba_where(tx, sql, key)
}

#[async_trait]
impl CibaStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "db.create_ciba", skip_all, fields(db.system = "sqlite"))]
    async fn create_ciba(&self, r: &CibaRecord, max_pending: i64) -> Result<bool, StoreError> {
        let r = r.clone();
        self.writer
            .tx(move |tx| {
                let (act, scope, aud, high_risk) = records::ciba_columns(&r);
                let done = (tx.prepare_cached(sql::CREATE_CIBA)?).execute(params![
                    r.id_hash,
                    r.public_id,
                    r.client_id,
                    r.username,
                    r.agent,
                    r.attestation,
                    r.parent_hash,
                    act,
                    scope,
                    aud,
                    r.token_exp,
                    r.depth,
                    r.binding_message,
                    r.policies,
                    high_risk,
                    r.created_at,
                    r.expires_at,
                    r.interval_secs,
                    r.actor_hash,
                    max_pending,
                ])?;
                Ok(done == 1)
            })
            .await
    }

    #[tracing::instrument(level = "debug", name = "db.poll_ciba", skip_all, fields(db.system = "sqlite"))]
    async fn poll_ciba(
        &self,
        id_hash: &[u8],
        now: i64,
        slow_down_step: i64,
    ) -> Result<Poll, StoreError> {
        let id_hash = id_hash.to_vec();
        self.writer
            .tx(move |tx| {
                let Some(r) = ciba_where(tx, sql::ciba_by_hash(), &id_hash)? else {
                    return Ok(Poll::NotFound);
                };
                let poll = Poll::at(r, now, slow_down_step);
                if let Some(r) = poll.record() {
                    (tx.prepare_cached(sql::POLLED_CIBA)?).execute(params![
                        now,
                        r.interval_secs,
                        id_hash
                    ])?;
                }
                Ok(poll)
            })
            .await
    }

    async fn pending_ciba_for(
        &self,
        username: &str,
        now: i64,
    ) -> Result<Vec<CibaRecord>, StoreError> {
        let rows = self.readers.read(|c| {
            let mut s = c.prepare_cached(sql::pending_ciba())?;
            let rows = s.query_map(params![username, now], rows::ciba)?;
            rows.collect::<Result<Vec<_>, _>>()
        })?;
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
        let (public_id, username) = (public_id.to_string(), username.to_string());
        self.writer
            .tx(move |tx| {
                let changed = (tx.prepare_cached(sql::DECIDE_CIBA)?)
                    .execute(params![status, scope, exp, now, public_id, username])?;
                after(tx, changed, sql::ciba_by_public_id(), &public_id)
            })
            .await
    }

    async fn claim_ciba(&self, id_hash: &[u8]) -> Result<Option<CibaRecord>, StoreError> {
        let id_hash = id_hash.to_vec();
        self.writer
            .tx(move |tx| {
                let changed = (tx.prepare_cached(sql::CLAIM_CIBA)?).execute([&id_hash])?;
                after(tx, changed, sql::ciba_by_hash(), &id_hash)
            })
            .await
    }
}
