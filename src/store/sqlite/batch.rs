//! [`AuditStore`] on SQLite: a batch is one immediate transaction on the writer's thread, one
//! prepared statement per row; the reads of the chain run on the readers.

use std::collections::HashSet;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, rows};
use crate::audit::{AuditEntry, ChainKey};
use crate::store::batch::{self, Revocation};
use crate::store::{AuditStore, BatchItem, Cut, Party, StoreError, WriteOutcome};
use crate::store::{records, sql, ssf};

/// Revokes a token and, through `parent_hash`, every token derived from it.
const REVOKE_SUBTREE: &str = "WITH RECURSIVE subtree(h) AS ( \
       SELECT token_hash FROM tokens WHERE token_hash = $1 \
       UNION SELECT t.token_hash FROM tokens t JOIN subtree s ON t.parent_hash = s.h) \
     UPDATE tokens SET revoked_at = $2 WHERE token_hash IN (SELECT h FROM subtree) \
       AND revoked_at IS NULL RETURNING jti, sid, sub, client_id";

/// Revokes every token of a session and, through `parent_hash`, every token derived from them.
const REVOKE_SESSION: &str = "WITH RECURSIVE subtree(h) AS ( \
       SELECT token_hash FROM tokens WHERE sid = $1 \
       UNION SELECT t.token_hash FROM tokens t JOIN subtree s ON t.parent_hash = s.h) \
     UPDATE tokens SET revoked_at = $2 WHERE token_hash IN (SELECT h FROM subtree) \
       AND revoked_at IS NULL RETURNING jti, sid, sub, client_id";

/// Revokes the live tokens of a party ([`sql::party_seed`]) and everything derived from them.
fn revoke_party(party: &Party) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; 3] = [const { std::sync::OnceLock::new() }; 3];
    sql::party_revocation(&SQL, party, |seed| {
        format!(
            "WITH RECURSIVE subtree(h) AS ({seed} \
               UNION SELECT t.token_hash FROM tokens t JOIN subtree s ON t.parent_hash = s.h) \
             UPDATE tokens SET revoked_at = $2 WHERE token_hash IN (SELECT h FROM subtree) \
               AND revoked_at IS NULL RETURNING jti, sid, sub, client_id"
        )
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "db.commit_batch", skip_all, fields(db.system = "sqlite"))]
    async fn commit_batch(
        &self,
        items: &[BatchItem],
        now: i64,
        policy_version: Option<&str>,
        key: &ChainKey,
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        let (items, policy_version) = (items.to_vec(), policy_version.map(str::to_string));
        let key = key.clone();
        self.writer
            .tx(move |tx| commit(tx, &items, now, policy_version.as_deref(), &key))
            .await
    }

    async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        self.readers.read(|c| {
            let mut s = c.prepare_cached(sql::AUDIT_AFTER)?;
            let rows = s.query_map([after, limit], rows::audit)?;
            rows.collect()
        })
    }

    async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError> {
        self.readers.read(|c| {
            (c.prepare_cached(sql::AUDIT_HEAD)?).query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        })
    }

    async fn audit_first_at(&self, ts: i64) -> Result<Option<i64>, StoreError> {
        self.readers.read(|c| {
            (c.prepare_cached(sql::AUDIT_FIRST_AT)?)
                .query_row([ts], |r| r.get(0))
                .optional()
        })
    }

    async fn audit_for_session(
        &self,
        sid: &str,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut v: Vec<AuditEntry> = self.readers.read(|c| {
            let mut s = c.prepare_cached(sql::AUDIT_OF_SESSION)?;
            let rows = s.query_map(params![sid, limit], rows::audit)?;
            rows.collect()
        })?;
        v.reverse();
        Ok(v)
    }
}

/// Applies `items` as `store::batch` decides and extends the audit chain once; see
/// `store::writer`.
fn commit(
    tx: &rusqlite::Connection,
    items: &[BatchItem],
    now: i64,
    policy_version: Option<&str>,
    key: &ChainKey,
) -> Result<Vec<WriteOutcome>, StoreError> {
    let (head_seq, head_hash): (i64, Vec<u8>) =
        (tx.prepare_cached(sql::AUDIT_HEAD)?).query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut outcomes = Vec::with_capacity(items.len());
    // What each item's revocation cut (empty for the others), for the messages about it.
    let mut cuts: Vec<Vec<Cut>> = Vec::with_capacity(items.len());
    let mut live =
        tx.prepare_cached("SELECT 1 FROM tokens WHERE token_hash = $1 AND revoked_at IS NULL")?;
    let mut insert = tx.prepare_cached(&format!(
        "{}VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        sql::INSERT_TOKEN_COLUMNS
    ))?;
    for run in batch::runs(items) {
        let mut found = HashSet::new();
        for p in run.parents() {
            if live.exists([p])? {
                found.insert(p);
            }
        }
        let decided = run.decide(|p| found.contains(p));
        for t in decided.tokens {
            let (aud, act, may_act, actor) = records::token_columns(t);
            insert.execute(params![
                t.token_hash,
                t.jti,
                t.kind.as_str(),
                t.sub,
                t.client_id,
                t.scope,
                aud,
                t.iat,
                t.exp,
                t.sid,
                t.parent_hash,
                act,
                may_act,
                actor,
                t.att,
                t.jkt,
                t.dpop_key,
            ])?;
        }
        outcomes.extend(decided.outcomes);
        cuts.resize(outcomes.len(), Vec::new());
        use rusqlite::types::Value;
        let (statement, seed) = match run.revocation() {
            None => continue,
            Some(Revocation::Token(h)) => (REVOKE_SUBTREE, Value::Blob(h.to_vec())),
            Some(Revocation::Session(sid)) => (REVOKE_SESSION, Value::Text(sid.to_string())),
            Some(Revocation::Party(p)) => (revoke_party(p), Value::Text(p.key())),
        };
        let cut = (tx.prepare_cached(statement)?)
            .query_map(params![seed, now], |r| {
                Ok(Cut {
                    jti: r.get(0)?,
                    sid: r.get(1)?,
                    sub: r.get(2)?,
                    client_id: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        outcomes.push(WriteOutcome::Revoked(cut.len() as u64));
        cuts.push(cut);
    }
    let mut touch =
        tx.prepare_cached("UPDATE tokens SET last_used_at = $1, last_used_by = $2 WHERE jti = $3")?;
    for (by, jtis) in batch::touches(items) {
        for jti in jtis {
            touch.execute(params![now, by, jti])?;
        }
    }
    let mut enqueue = tx.prepare_cached(crate::store::outbox::sql::INSERT)?;
    let mut targets = None;
    for m in batch::outgoing(items, &outcomes, &cuts) {
        // A SET for receiver streams goes to those that exist now, in this transaction.
        let fanned;
        let messages = if m.stream == ssf::FANOUT {
            if targets.is_none() {
                targets = Some(super::ssf::targets(tx)?);
            }
            fanned = ssf::fan_out(&m, targets.as_deref().unwrap_or_default());
            fanned.iter().collect()
        } else {
            vec![&*m]
        };
        for m in messages {
            enqueue.execute(params![
                m.event_id,
                m.stream,
                m.kind,
                m.payload,
                now,
                m.expires_at
            ])?;
        }
    }
    let events = batch::events(items, &outcomes);
    let entries = crate::audit::chain(head_seq, &head_hash, now, policy_version, &events, key);
    if let Some(last) = entries.last() {
        let mut insert = tx.prepare_cached(&format!(
            "{}VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            sql::INSERT_AUDIT_COLUMNS
        ))?;
        for e in &entries {
            insert.execute(params![
                e.seq,
                e.ts,
                e.kind,
                e.subject,
                e.actors,
                e.client_id,
                e.session,
                e.token_jti,
                e.detail,
                e.prev_hash,
                e.hash,
                e.policy_version,
                e.chain_version,
            ])?;
        }
        (tx.prepare_cached(sql::SET_AUDIT_HEAD)?).execute(params![last.seq, last.hash])?;
    }
    Ok(outcomes)
}
