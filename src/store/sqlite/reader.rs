//! Reads on SQLite, run in place. A lookup by primary key takes microseconds once its pages are
//! cached; handing it to a connection's worker thread and back (sqlx) cost two thread wake-ups,
//! which on two busy cores took longer than the query. So the calling task runs it on one of a
//! few read-only connections kept here, each behind its own lock: with as many connections as
//! there are runtime threads, a free one is almost always found at once. The larger reads (a
//! page of 5,000 audit entries when the chain is verified) hold their runtime thread for the
//! few milliseconds they take, as a lookup holds it for microseconds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

pub struct SqliteReaders {
    path: PathBuf,
    slots: Vec<Mutex<Option<Connection>>>,
    next: AtomicUsize,
}

impl SqliteReaders {
    /// `n` read-only connections (at least one), opened on first use.
    pub fn new(path: &Path, n: usize) -> Self {
        Self {
            path: path.to_path_buf(),
            slots: (0..n.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    fn slot(&self) -> Result<MutexGuard<'_, Option<Connection>>, StoreError> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Some(Ok(g)) = self.slots.get((start + i) % n).map(Mutex::try_lock) {
                return Ok(g);
            }
        }
        // Every connection is in use: wait for one (a lookup holds it for microseconds). A
        // poisoned lock only means a panic elsewhere; the connection itself is fine.
        let slot = (self.slots.get(start % n))
            .ok_or_else(|| StoreError::Corrupt("no reader connections".into()))?;
        Ok(slot.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Runs `f` on a free connection. A connection whose statement failed is dropped, and the
    /// next read opens a fresh one rather than keep it in an unknown state.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut guard = self.slot()?;
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let Some(conn) = guard.as_ref() else {
            return Err(StoreError::Corrupt("no reader connection".into()));
        };
        let out = f(conn);
        if out.is_err() {
            *guard = None;
        }
        Ok(out?)
    }

    /// The database file (a scan that must not hold a reader opens its own connection).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `(max, open, busy)`: a connection is busy while a read holds its lock.
    pub fn usage(&self) -> (usize, usize, usize) {
        let (mut open, mut busy) = (0, 0);
        for slot in &self.slots {
            match slot.try_lock() {
                Ok(g) => open += usize::from(g.is_some()),
                Err(_) => {
                    open += 1;
                    busy += 1;
                }
            }
        }
        (self.slots.len(), open, busy)
    }

    pub fn close(&self) {
        for slot in &self.slots {
            slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    /// `.cargo/config.toml` builds the bundled SQLite with a page cache per connection and
    /// without memory counting; otherwise every page a lookup touches goes through locks shared
    /// with the writer and the checkpointer.
    #[test]
    fn the_bundled_sqlite_shares_no_page_cache_lock_between_connections() {
        let conn = Connection::open_in_memory().unwrap();
        let mut s = conn.prepare("PRAGMA compile_options").unwrap();
        let opts: Vec<String> = s
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            !opts.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{opts:?}"
        );
        assert!(opts.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{opts:?}");
    }
}
