//! Token lookups on SQLite, run in place. A lookup by primary key takes microseconds once its
//! pages are cached; handing it to a connection's worker thread and back (sqlx) cost two thread
//! wake-ups, which on two busy cores took longer than the query. So the calling task runs it on
//! one of a few connections kept here, each behind its own lock: with as many connections as
//! there are runtime threads, a free one is almost always found at once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::sql::{TokenRow, token_by_hash, token_by_jti};
use super::{StoreError, TokenRecord};

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
        Ok(conn)
    }

    pub fn find_token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        self.query_token(token_by_hash(), rusqlite::params![token_hash])
    }

    /// The token with this `jti` (the table's key: one descent of one B-tree instead of the hash
    /// index and then the table), if its hash is `token_hash`.
    pub fn find_token_by_jti(
        &self,
        jti: &str,
        token_hash: &[u8],
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.query_token(token_by_jti(), rusqlite::params![jti, token_hash])
    }

    fn query_token(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let mut guard = self.slot()?;
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let Some(conn) = guard.as_ref() else {
            return Err(StoreError::Corrupt("no reader connection".into()));
        };
        let row = conn
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row(params, TokenRow::from_rusqlite).optional());
        match row {
            Ok(r) => r.map(TryInto::try_into).transpose(),
            Err(e) => {
                // Start afresh next time rather than keep a connection in an unknown state.
                *guard = None;
                Err(e.into())
            }
        }
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

    /// The point of the `jti` lookup: SQLite's plan must search the table by its key (one
    /// B-tree), not the hash index and then the table.
    #[test]
    fn a_jwt_is_looked_up_by_the_table_key_not_the_hash_index() {
        let conn = Connection::open_in_memory().unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            conn.execute_batch(&std::fs::read_to_string(f).unwrap())
                .unwrap();
        }
        let plan = |sql: &str| -> String {
            let mut s = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = s
                .query_map(["jti", "hash"], |r| r.get::<_, String>(3))
                .unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        let by_jti = plan(super::token_by_jti());
        assert!(by_jti.contains("USING PRIMARY KEY (jti=?)"), "{by_jti}");
        assert!(!by_jti.contains("INDEX"), "{by_jti}");
        // The hash lookup (opaque tokens) does go through the index.
        let by_hash = plan(&super::token_by_hash().replace("$1", "?1 AND ?2 IS NOT NULL"));
        assert!(by_hash.contains("INDEX"), "{by_hash}");
    }
}
