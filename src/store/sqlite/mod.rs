//! The embedded default: one SQLite file in WAL mode, on rusqlite. Every write runs on one
//! thread that owns the only writing connection ([`writer`]); reads run in place on a few
//! read-only connections ([`reader`]). `synchronous = NORMAL` under WAL makes a committed
//! transaction survive a crash of the process (the guarantee `/token` relies on); `FULL` would
//! add survival of a power cut at the cost of an fsync per commit.

mod batch;
mod ciba;
mod keys;
mod migrate;
mod outbox;
mod reader;
mod registry;
mod rows;
mod ssf;
mod tokens;
mod tpm;
mod web;
mod writer;

use std::path::PathBuf;

use async_trait::async_trait;

use super::{PoolUse, Store, StoreError, StoreGauges};
use reader::SqliteReaders;
use writer::SqliteWriter;

pub struct SqliteStore {
    /// Every read.
    readers: SqliteReaders,
    /// Every write, on its own thread.
    writer: SqliteWriter,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database a `sqlite://FILE` URL names, with
    /// `max_connections` readers at most (and two at least).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let path = path_of(url)?;
        let writer = SqliteWriter::open(&path)?;
        Ok(Self {
            readers: SqliteReaders::new(&path, max_connections.clamp(2, 8) as usize),
            writer,
        })
    }
}

/// The file a `sqlite://FILE` (or `sqlite:FILE`) URL names; `%XX` escapes are decoded. Of the
/// query parameters sqlx knew, `mode=rwc` and `mode=rw` are accepted (the file is created if
/// missing either way); an in-memory database cannot be shared by the writer and the readers.
fn path_of(url: &str) -> Result<PathBuf, StoreError> {
    let rest = (url.strip_prefix("sqlite://"))
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (file, query) = rest.split_once('?').unwrap_or((rest, ""));
    for param in query.split('&').filter(|p| !p.is_empty()) {
        if !matches!(param, "mode=rwc" | "mode=rw") {
            return Err(StoreError::Url(format!(
                "the SQLite parameter `{param}` is not supported"
            )));
        }
    }
    let file = percent_encoding::percent_decode_str(file)
        .decode_utf8()
        .map_err(|_| StoreError::Url("the file name is not UTF-8".into()))?;
    if file.is_empty() || file == ":memory:" {
        return Err(StoreError::Url(
            "name an SQLite file (sqlite://FILE)".into(),
        ));
    }
    Ok(PathBuf::from(&*file))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.writer.run(migrate::run).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.readers
            .read(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    async fn close(&self) {
        self.readers.close();
        self.writer.close().await;
    }

    async fn gauges(&self, now: i64) -> Result<StoreGauges, StoreError> {
        // A scan of every token: on a blocking thread and a connection of its own, so it holds
        // neither a runtime thread nor a reader the lookups need.
        let path = self.readers.path().to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<StoreGauges, StoreError> {
            let c = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            let count = |sql: &str| -> Result<Vec<(String, u64)>, StoreError> {
                let mut s = c.prepare(sql)?;
                let rows = s.query_map([now], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?)))?;
                let rows = rows.collect::<Result<Vec<(String, i64)>, _>>()?;
                Ok(rows
                    .into_iter()
                    .map(|(k, n)| (k, n.max(0) as u64))
                    .collect())
            };
            let outbox = c.query_row(super::outbox::sql::COUNTS, [], |r| {
                Ok(super::outbox::OutboxCounts {
                    pending: r.get(0)?,
                    delivered: r.get(1)?,
                    failed: r.get(2)?,
                    expired: r.get(3)?,
                })
            })?;
            Ok(StoreGauges {
                live_tokens: count(super::sql::LIVE_TOKENS_BY_KIND)?,
                approval_requests: count(super::sql::APPROVAL_REQUESTS_BY_STATE)?,
                outbox: StoreGauges::outbox_states(outbox),
            })
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("the count stopped: {e}")))?
    }

    fn pools(&self) -> Vec<PoolUse> {
        let (max, open, busy) = self.readers.usage();
        // The writer's one connection is busy as long as its commits take: see
        // `mandate_writer_commit_seconds`.
        vec![PoolUse {
            name: "readers",
            max,
            open,
            busy,
        }]
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn a_database_url_names_its_file() {
        for (url, file) in [
            ("sqlite://mandate.db", "mandate.db"),
            ("sqlite:///var/lib/m.db", "/var/lib/m.db"),
            ("sqlite:rel/m.db?mode=rwc", "rel/m.db"),
            ("sqlite://with%20space.db", "with space.db"),
        ] {
            assert_eq!(super::path_of(url).unwrap(), PathBuf::from(file), "{url}");
        }
        for bad in ["sqlite::memory:", "sqlite://", "sqlite://x.db?cache=shared"] {
            assert!(super::path_of(bad).is_err(), "{bad}");
        }
    }

    /// Shared statements name their `$N` placeholders in order of first appearance, which is
    /// how SQLite numbers them: bound by position through rusqlite, each value lands on its `$N`.
    #[test]
    fn shared_statements_number_their_placeholders_in_order() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::migrate::run(&mut conn).unwrap();
        for sql in crate::store::sql::all() {
            let s = conn.prepare(sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
            for i in 1..=s.parameter_count() {
                assert_eq!(s.parameter_name(i), Some(format!("${i}").as_str()), "{sql}");
            }
        }
    }
}
