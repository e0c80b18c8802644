//! SQLite's group-commit writer: one thread owns one connection and applies a whole batch
//! there, statement after statement, with statements prepared once.
//!
//! Through sqlx each statement of a batch was a hand-off to the connection's worker thread and
//! back to a tokio task, about eight per batch. On two busy cores each hand-off waited to be
//! scheduled, so a batch spent most of its time off-CPU (10 ms for 23 token exchanges, of which
//! the writer thread ran about 40 %) and the writer, being serial, capped every write-bound
//! request. Here a batch costs one hand-off in and one out. The other writes of hot paths
//! (attestation nonces, refresh-token rotation, client-assertion `jti`s) are made here too: a
//! second connection would wait on this one's write lock in SQLite's busy handler.
//!
//! Checkpoints run beside the writer. SQLite's automatic checkpoint ran inside the commit that
//! crossed 1,000 WAL pages, fsyncing the log and the database on the writer's time (70 % of the
//! writer thread's CPU in token exchange). Here a second thread copies the log into the database
//! every [`CHECKPOINT_EVERY`] while the writer goes on. A log only starts over from its beginning
//! when a write begins with every frame copied, which a checkpoint racing a busy writer never
//! achieves; so once the log passes [`RESTART_FRAMES`], the writer copies the few frames the last
//! background checkpoint could not see itself, between two batches, and its next batch restarts
//! the log. SQLite's own automatic checkpoint stays armed at a much larger size, in case the
//! background thread falls behind.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::batch::{self, Revocation};
use super::sql::{self, TokenRow};
use super::{BatchItem, Consumed, Outcome, StoreError};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// How often the background thread checkpoints while writes come in.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL frames (pages) after which the writer makes the log start over. Each restart stalls
/// writes for the final copy and its fsync (10–17 ms on this kind of machine); at 4,096 pages
/// that came every ~0.6 s under client_credentials and set the p99 (22 ms @64 connections;
/// 9–12 ms at 16,384 pages, 64 MiB of log).
const RESTART_FRAMES: i64 = 16384;

/// What the background checkpoint last saw: the log's length in frames, and a count of reports.
#[derive(Default)]
struct Backlog {
    frames: AtomicI64,
    reports: AtomicU64,
}

fn checkpoint(conn: &Connection) -> Result<(i64, i64), rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // WAL is a property of the file (set by the pool); the rest are per connection.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// The background checkpoints: one after each burst of writes, at most every
/// [`CHECKPOINT_EVERY`]; ends when the writer thread does.
fn checkpointer(conn: Connection, dirty: Receiver<()>, backlog: Arc<Backlog>) {
    while dirty.recv().is_ok() {
        match checkpoint(&conn) {
            Ok((frames, _)) => {
                backlog.frames.store(frames, Ordering::Relaxed);
                backlog.reports.fetch_add(1, Ordering::Release);
            }
            Err(e) => tracing::warn!(error = %e, "background checkpoint failed"),
        }
        std::thread::sleep(CHECKPOINT_EVERY);
        while dirty.try_recv().is_ok() {}
    }
}

/// The writer thread: runs jobs; after each, wakes the checkpointer and, once the log is long
/// and a background checkpoint has copied most of it, copies the rest so the log restarts.
fn writer(mut conn: Connection, jobs: Receiver<Job>, dirty: SyncSender<()>, backlog: Arc<Backlog>) {
    let mut seen = 0;
    while let Ok(job) = jobs.recv() {
        job(&mut conn);
        let _ = dirty.try_send(());
        let reports = backlog.reports.load(Ordering::Acquire);
        if reports != seen && backlog.frames.load(Ordering::Relaxed) >= RESTART_FRAMES {
            seen = reports;
            if let Err(e) = checkpoint(&conn) {
                tracing::warn!(error = %e, "checkpoint before restarting the log failed");
            }
        }
    }
}

pub struct SqliteWriter {
    jobs: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl SqliteWriter {
    /// Opens the connection (the database must exist) and starts the thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_conn(path)?;
        // Only if the background checkpoints fall far behind (see the module's comment).
        conn.pragma_update(None, "wal_autocheckpoint", RESTART_FRAMES * 16)?;
        // A log that grew in a burst is cut back when it restarts.
        conn.pragma_update(None, "journal_size_limit", RESTART_FRAMES * 4096 * 4)?;
        // A multi-row statement inside a transaction keeps a statement journal; in memory, not
        // in a temporary file.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(32);
        let ckpt = open_conn(path)?;
        let backlog = Arc::new(Backlog::default());
        let (dirty_tx, dirty_rx) = std::sync::mpsc::sync_channel(1);
        let b = backlog.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer(ckpt, dirty_rx, b))
            .map_err(|e| StoreError::Corrupt(format!("starting the checkpoint thread: {e}")))?;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer(conn, rx, dirty_tx, backlog))
            .map_err(|e| StoreError::Corrupt(format!("starting the writer thread: {e}")))?;
        Ok(Self {
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Runs `f` on the writer's connection and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, wait) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        let sent = self
            .jobs
            .lock()
            .map_err(|_| StoreError::WriterClosed)?
            .as_ref()
            .map(|jobs| jobs.send(job).is_ok());
        if sent != Some(true) {
            return Err(StoreError::WriterClosed);
        }
        wait.await.map_err(|_| StoreError::WriterClosed)?
    }

    /// Lets the queued jobs finish, then closes the connection.
    pub async fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Marks a single-use token consumed; see [`crate::store::Store::consume_token`].
pub fn consume_token(
    conn: &mut Connection,
    token_hash: &[u8],
    now: i64,
) -> Result<Consumed, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let won = tx
        .prepare_cached(sql::CONSUME_TOKEN)?
        .execute(params![now, token_hash])?
        == 1;
    let row = tx
        .prepare_cached(sql::token_by_hash())?
        .query_row([token_hash], TokenRow::from_rusqlite)
        .optional()?;
    tx.commit()?;
    sql::consumed(won, row)
}

/// Records `key` until `expires_at`; false if it was already used.
pub fn use_once(
    conn: &mut Connection,
    key: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(sql::FORGET_USED_KEYS)?
        .execute(params![now])?;
    let done = tx
        .prepare_cached(sql::USE_KEY)?
        .execute(params![key, expires_at])?;
    tx.commit()?;
    Ok(done == 1)
}

pub fn create_nonce(
    conn: &mut Connection,
    nonce: &str,
    agent: Option<&str>,
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(sql::FORGET_NONCES)?
        .execute(params![now])?;
    tx.prepare_cached(sql::CREATE_NONCE)?
        .execute(params![nonce, agent, expires_at])?;
    tx.commit()?;
    Ok(())
}

pub fn consume_nonce(
    conn: &mut Connection,
    nonce: &str,
    agent: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let won = tx
        .prepare_cached(sql::CONSUME_NONCE)?
        .execute(params![now, nonce, agent])?
        == 1;
    // Forget nonces that expired long ago.
    tx.prepare_cached(sql::FORGET_NONCES)?
        .execute(params![now - 3600])?;
    tx.commit()?;
    Ok(won)
}

/// Applies `items` in order in one transaction and extends the audit chain once; see
/// `store::writer`. Tokens are inserted as their item comes, so a later item in the same batch
/// (a revocation, a child token) sees them.
pub fn commit_batch(
    conn: &mut Connection,
    items: &[BatchItem],
    now: i64,
    policy_version: Option<&str>,
    key: &crate::audit::ChainKey,
) -> Result<Vec<Outcome>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (head_seq, head_hash): (i64, Vec<u8>) = tx
        .prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut outcomes = Vec::with_capacity(items.len());
    {
        let mut live =
            tx.prepare_cached("SELECT 1 FROM tokens WHERE token_hash = ?1 AND revoked_at IS NULL")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO tokens (token_hash, jti, kind, sub, client_id, scope, aud, iat, exp, sid, \
             parent_hash, act, may_act, actor) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        for run in batch::runs(items) {
            let mut found = std::collections::HashSet::new();
            for p in run.parents() {
                if live.exists([p])? {
                    found.insert(p);
                }
            }
            let decided = run.decide(|p| found.contains(p));
            for t in decided.tokens {
                insert.execute(params![
                    t.token_hash,
                    t.jti,
                    t.kind.as_str(),
                    t.sub,
                    t.client_id,
                    t.scope,
                    t.aud.join(" "),
                    t.iat,
                    t.exp,
                    t.sid,
                    t.parent_hash,
                    t.act.as_ref().map(|a| a.to_json()),
                    t.may_act.as_ref().map(|m| m.to_json()),
                    t.act.as_ref().map(|a| a.sub.as_str()),
                ])?;
            }
            outcomes.extend(decided.outcomes);
            let revoked = match run.revocation() {
                None => continue,
                Some(Revocation::Token(h)) => tx
                    .prepare_cached(sql::REVOKE_SUBTREE)?
                    .execute(params![h, now])?,
                Some(Revocation::Session(sid)) => tx
                    .prepare_cached(sql::REVOKE_SESSION)?
                    .execute(params![sid, now])?,
                Some(Revocation::Party(party)) => tx
                    .prepare_cached(sql::revoke_party(party, false))?
                    .execute(params![party.key(), now])?,
            };
            outcomes.push(Outcome::Revoked(revoked as u64));
        }
    }
    let touches = batch::touches(items);
    if !touches.is_empty() {
        let mut touch = tx.prepare_cached(
            "UPDATE tokens SET last_used_at = ?1, last_used_by = ?2 WHERE jti = ?3",
        )?;
        for (by, jtis) in &touches {
            for jti in jtis {
                touch.execute(params![now, by, jti])?;
            }
        }
    }
    let events = batch::events(items, &outcomes);
    let entries = crate::audit::chain(head_seq, &head_hash, now, policy_version, &events, key);
    if let Some(last) = entries.last() {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit_log (seq, ts, kind, subject, actors, client_id, session, token_jti, \
             detail, prev_hash, hash, policy_version, chain_version) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
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
        tx.prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")?
            .execute(params![last.seq, last.hash])?;
    }
    tx.commit()?;
    Ok(outcomes)
}
