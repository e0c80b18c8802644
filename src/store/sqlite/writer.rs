//! The one connection that writes: a thread owns it and runs every write of the store there
//! (a whole batch, statement after statement, with statements prepared once; and every other
//! write, from a code's redemption to a migration), so no write waits on another connection's
//! lock in SQLite's busy handler.
//!
//! Through sqlx each statement of a batch was a hand-off to the connection's worker thread and
//! back to a tokio task, about eight per batch. On two busy cores each hand-off waited to be
//! scheduled, so a batch spent most of its time off-CPU (10 ms for 23 token exchanges, of which
//! the writer thread ran about 40 %) and the writer, being serial, capped every write-bound
//! request. Here a batch costs one hand-off in and one out.
//!
//! Transactions are grouped. Writes that are not part of the group commit of
//! [`crate::store::writer`] (an attestation nonce made or used, a DPoP proof's or a client
//! assertion's `jti` recorded, a code redeemed) came one transaction each, and under load the
//! thread spent its time beginning and committing them: `/attest` made three a request (4,847
//! attestations/s at 64 connections before grouping, 5,486/s after; medians of three runs of `cargo
//! bench --bench load -- --scenarios attest --conns 64`, with glibc's allocator before and mimalloc
//! after, which accounts for part of it). Now the thread takes every transaction that is queued (up
//! to [`MAX_GROUP`]) and runs them in one, each inside its own savepoint: a step that fails rolls
//! back only its own changes, later steps see earlier ones as if each had committed alone, and no
//! step is answered before the whole group committed.
//!
//! Checkpoints run beside the writer. SQLite's automatic checkpoint ran inside the commit that
//! crossed 1,000 WAL pages, fsyncing the log and the database on the writer's time (70 % of the
//! writer thread's CPU in token exchange). Here a second thread copies the log into the database,
//! and syncs the database file, every [`CHECKPOINT_EVERY`] while the writer goes on. A log only
//! starts over from its beginning when a write begins with every frame copied, which a checkpoint
//! racing a busy writer never achieves; so once the log passes [`RESTART_FRAMES`], the writer
//! copies the few frames the last background checkpoint could not see itself, between two batches,
//! and its next batch restarts the log. SQLite's own automatic checkpoint stays armed at a much
//! larger size, in case the background thread falls behind.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Work for the writer thread: alone, with the connection to itself (a migration), or a step of
/// the next group transaction.
enum Job {
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
    Step(Box<dyn Step>),
}

/// One transaction's worth of work, run inside the group's transaction.
trait Step: Send {
    /// Runs the work; whether its changes stay (false: they are rolled back to its savepoint).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the group's fate is known: `Err` if the group did not commit.
    fn answer(self: Box<Self>, group: Result<(), &rusqlite::Error>);
}

struct Typed<T, F> {
    work: Option<F>,
    out: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Step for Typed<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let out = match self.work.take() {
            Some(work) => work(conn),
            None => Err(StoreError::Corrupt("a write step ran twice".into())),
        };
        let keep = out.is_ok();
        self.out = Some(out);
        keep
    }

    fn answer(self: Box<Self>, group: Result<(), &rusqlite::Error>) {
        let out = match (self.out, group) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(StoreError::Corrupt(format!(
                "the write did not commit: {e}"
            ))),
            (None, Ok(())) => Err(StoreError::Corrupt("a write step never ran".into())),
        };
        let _ = self.reply.send(out);
    }
}

/// At most this many transactions share one commit. Each is small (a request's worth; the
/// group commit's batch is one step), so this bounds how long the first of them waits.
const MAX_GROUP: usize = 256;

/// Runs `steps` in one immediate transaction, each in its own savepoint (a lone step needs
/// none), and answers each once the transaction committed or failed.
fn run_group(conn: &Connection, mut steps: Vec<Box<dyn Step>>) {
    let exec = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    let result = (|| -> Result<(), rusqlite::Error> {
        exec("BEGIN IMMEDIATE")?;
        if let [step] = steps.as_mut_slice() {
            return match step.run(conn) {
                true => exec("COMMIT").map(drop),
                false => exec("ROLLBACK").map(drop),
            };
        }
        for step in &mut steps {
            exec("SAVEPOINT step")?;
            if !step.run(conn) {
                exec("ROLLBACK TO step")?;
            }
            exec("RELEASE step")?;
        }
        exec("COMMIT").map(drop)
    })();
    if result.is_err() && !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "rolling back a failed write group failed");
        }
    }
    if let Err(e) = &result {
        tracing::error!(error = %e, steps = steps.len(), "a write group did not commit");
    }
    for step in steps {
        step.answer(result.as_ref().map(drop));
    }
}

/// How often the background thread checkpoints while writes come in.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL frames (pages) after which the writer makes the log start over. Each restart stalls
/// writes for the final copy and its fsync: 10–17 ms on this kind of machine, 30–45 ms while
/// the block layer throttles write-back (the writer seen in `rq_qos_wait`). At 4,096 pages that
/// came every ~0.6 s under client_credentials and set the p99 (22 ms @64 connections; 9–12 ms
/// at 16,384 pages, 64 MiB of log). Token exchange writes about 10 KiB of log per token (each
/// token's hash lands in a random page of its index), so at 16,384 pages it restarted every
/// ~0.7 s and 17 of 20 seconds had a p99 over 20 ms; at 65,536 (256 MiB of log) none did, and
/// the p99 fell from 48 to 16 ms (`cargo bench --bench load -- --scenarios cc,exchange --conns
/// 64 --duration 20s`, two interleaved runs each; these scenarios seed no token pool, so the
/// database held only what the runs wrote). On a database of 1,000,000 live tokens each restart
/// stalled the writer 140-220 ms, every 2-3 s, until the background thread synced what it
/// copied (see [`checkpointer`]); since, 7-47 ms.
const RESTART_FRAMES: i64 = 65536;

/// What the background checkpoint last saw: the log's length in frames, how many of them are
/// copied into the database, and a count of reports.
#[derive(Default)]
struct Backlog {
    frames: AtomicI64,
    copied: AtomicI64,
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
    // WAL is a property of the file (set by `SqliteWriter::open`); the rest are per connection.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// The background checkpoints: one after each burst of writes, at most every
/// [`CHECKPOINT_EVERY`]; ends when the writer thread does.
///
/// A checkpoint that does not reach the end of the log (under load, the writer has always
/// appended more by the time it finishes) copies pages into the database file but leaves them
/// unsynced: SQLite fsyncs the database only when a checkpoint copies the whole log, since
/// until then the log still holds every page. So all the pages copied over a whole log's
/// length were left for the one checkpoint that finally caught up, the writer's: on a database
/// of 1,000,000 tokens, whose pages are scattered, that fsync took 140-150 ms (`perf trace`),
/// though the writer itself had copied only some 500 pages. Here the background thread also
/// syncs the database file after each checkpoint that copied something (`fdatasync` on a file
/// of its own; it flushes the same file's pages), so the writer's sync finds only its own.
fn checkpointer(conn: Connection, db: std::fs::File, dirty: Receiver<()>, backlog: Arc<Backlog>) {
    let mut synced = 0;
    while dirty.recv().is_ok() {
        let started = std::time::Instant::now();
        match checkpoint(&conn) {
            Ok((frames, copied)) => {
                if copied != synced {
                    if let Err(e) = db.sync_data() {
                        tracing::warn!(error = %e, "syncing the database after a checkpoint failed");
                    }
                    synced = copied;
                }
                tracing::trace!(
                    frames,
                    copied,
                    ms = started.elapsed().as_millis() as u64,
                    "background checkpoint"
                );
                backlog.frames.store(frames, Ordering::Relaxed);
                backlog.copied.store(copied, Ordering::Relaxed);
                backlog.reports.fetch_add(1, Ordering::Release);
            }
            Err(e) => tracing::warn!(error = %e, "background checkpoint failed"),
        }
        std::thread::sleep(CHECKPOINT_EVERY);
        while dirty.try_recv().is_ok() {}
    }
}

/// The writer thread: runs jobs, grouping queued transactions; after each, wakes the
/// checkpointer and, once the log is long and a background checkpoint has copied most of it,
/// copies the rest so the log restarts.
fn writer(mut conn: Connection, jobs: Receiver<Job>, dirty: SyncSender<()>, backlog: Arc<Backlog>) {
    let mut seen = 0;
    let mut held: Option<Job> = None;
    loop {
        let job = match held.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        match job {
            Job::Alone(f) => f(&mut conn),
            Job::Step(first) => {
                let mut steps = vec![first];
                while steps.len() < MAX_GROUP {
                    match jobs.try_recv() {
                        Ok(Job::Step(s)) => steps.push(s),
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                run_group(&conn, steps);
            }
        }
        let _ = dirty.try_send(());
        let reports = backlog.reports.load(Ordering::Acquire);
        if reports != seen && backlog.frames.load(Ordering::Relaxed) >= RESTART_FRAMES {
            seen = reports;
            let started = std::time::Instant::now();
            let before = backlog.copied.load(Ordering::Relaxed);
            match checkpoint(&conn) {
                Ok((frames, copied)) => tracing::debug!(
                    frames,
                    copied_here = copied - before,
                    ms = started.elapsed().as_millis() as u64,
                    "the log starts over"
                ),
                Err(e) => tracing::warn!(error = %e, "checkpoint before restarting the log failed"),
            }
        }
    }
}

pub struct SqliteWriter {
    jobs: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl SqliteWriter {
    /// Opens the connection (creating the database if it is missing, in WAL mode) and starts
    /// the thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_conn(path)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "SQLite refused WAL mode ({mode})"
            )));
        }
        // Only if the background checkpoints fall far behind (see the module's comment).
        conn.pragma_update(None, "wal_autocheckpoint", RESTART_FRAMES * 16)?;
        // A log that grew in a burst is cut back when it restarts.
        conn.pragma_update(None, "journal_size_limit", RESTART_FRAMES * 4096 * 4)?;
        // A multi-row statement inside a transaction keeps a statement journal; in memory, not
        // in a temporary file.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Every write statement of the store, and the batches' chunk sizes, stay prepared.
        conn.set_prepared_statement_cache_capacity(128);
        let ckpt = open_conn(path)?;
        let db = std::fs::File::open(path).map_err(|e| {
            StoreError::Corrupt(format!("opening the database file to sync it: {e}"))
        })?;
        let backlog = Arc::new(Backlog::default());
        let (dirty_tx, dirty_rx) = std::sync::mpsc::sync_channel(1);
        let b = backlog.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer(ckpt, db, dirty_rx, b))
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

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let sent = self
            .jobs
            .lock()
            .map_err(|_| StoreError::WriterClosed)?
            .as_ref()
            .map(|jobs| jobs.send(job).is_ok());
        match sent {
            Some(true) => Ok(()),
            _ => Err(StoreError::WriterClosed),
        }
    }

    /// Runs `f` alone on the writer's connection (outside any group) and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.send(Job::Alone(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        })))?;
        wait.await.map_err(|_| StoreError::WriterClosed)?
    }

    /// Runs `f` as one transaction: its changes are kept if it succeeds and rolled back if it
    /// fails, and the answer comes once they are committed. It may share its commit with other
    /// transactions queued at the same time (see the module's comment).
    pub async fn tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.send(Job::Step(Box::new(Typed {
            work: Some(f),
            out: None,
            reply,
        })))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(path: &Path) -> Vec<String> {
        let c = Connection::open(path).unwrap();
        let mut s = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
        let r = s.query_map([], |r| r.get(0)).unwrap();
        r.map(Result::unwrap).collect()
    }

    fn insert(c: &Connection, v: &str) -> Result<(), StoreError> {
        c.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
        Ok(())
    }

    /// Transactions queued while the writer is busy share one commit, and yet each is its own:
    /// one that fails leaves nothing behind and fails no other, a later one sees what an
    /// earlier one wrote, and each caller gets its own answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grouped_transactions_keep_or_drop_their_own_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let w = Arc::new(SqliteWriter::open(&path).unwrap());
        w.run(|c| Ok(c.execute_batch("CREATE TABLE t (v TEXT PRIMARY KEY)")?))
            .await
            .unwrap();
        // Hold the thread so that the steps below queue up and run as one group.
        let (hold, release) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let w = w.clone();
            async move {
                w.run(move |_| {
                    let _ = release.recv();
                    Ok(())
                })
                .await
            }
        });
        let mut steps = Vec::new();
        for (i, v) in ["a", "b", "a", "c"].into_iter().enumerate() {
            let w = w.clone();
            steps.push(tokio::spawn(async move {
                w.tx(move |c| {
                    insert(c, v)?;
                    if i == 1 {
                        insert(c, "b2")?;
                        return Err(StoreError::Corrupt("step b gives up".into()));
                    }
                    if i == 3 {
                        // Sees the first step's row, not the failed one's.
                        let seen: i64 = c.query_row(
                            "SELECT count(*) FROM t WHERE v IN ('a', 'b', 'b2')",
                            [],
                            |r| r.get(0),
                        )?;
                        return Ok(seen);
                    }
                    Ok(0)
                })
                .await
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        hold.send(()).unwrap();
        busy.await.unwrap().unwrap();
        let mut answers = Vec::new();
        for s in steps {
            answers.push(s.await.unwrap());
        }
        assert!(matches!(answers[0], Ok(0)), "{:?}", answers[0]);
        assert!(matches!(&answers[1], Err(StoreError::Corrupt(m)) if m.contains("gives up")));
        assert!(
            matches!(answers[2], Err(StoreError::Sqlite(_))),
            "a duplicate key fails alone: {:?}",
            answers[2]
        );
        assert!(matches!(answers[3], Ok(1)), "{:?}", answers[3]);
        assert_eq!(rows(&path), ["a", "c"]);
        w.close().await;
    }

    /// A lone transaction that fails is rolled back whole (no savepoint needed), and the next
    /// one starts clean.
    #[tokio::test]
    async fn a_lone_failed_transaction_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let w = SqliteWriter::open(&path).unwrap();
        w.run(|c| Ok(c.execute_batch("CREATE TABLE t (v TEXT PRIMARY KEY)")?))
            .await
            .unwrap();
        let r = w
            .tx(|c| {
                insert(c, "x")?;
                Err::<(), _>(StoreError::Corrupt("no".into()))
            })
            .await;
        assert!(r.is_err());
        w.tx(|c| insert(c, "y")).await.unwrap();
        assert_eq!(rows(&path), ["y"]);
        w.close().await;
    }
}
