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

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use crate::store::StoreError;

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
    // WAL is a property of the file (set by `SqliteWriter::open`); the rest are per connection.
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

    /// Runs `f` in an immediate transaction on the writer's connection, committed if `f`
    /// succeeds.
    pub async fn tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
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
