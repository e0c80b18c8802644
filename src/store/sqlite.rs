//! The embedded default: one SQLite file in WAL mode. `synchronous = NORMAL` under WAL makes a
//! committed transaction survive a crash of the process (the guarantee `/token` relies on);
//! `FULL` would add survival of a power cut at the cost of an fsync per commit.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};

use super::StoreError;
use super::ciba::ciba_sql_store;
use super::conns::{Dedicated, readers};
use super::sql::sql_store;
use super::tpm::tpm_sql_store;
use super::web::web_sql_store;

pub struct SqliteStore {
    pool: Pool<Sqlite>,
    /// Token lookups on the hot paths.
    readers: Dedicated<Sqlite>,
    /// The group-commit writer's own connection.
    write_conn: Dedicated<Sqlite>,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(2))
            .min_connections(1)
            .connect_with(opts.clone())
            .await?;
        Ok(Self {
            pool,
            readers: Dedicated::new(opts.clone(), readers(max_connections)),
            // Batches of every size up to 256 rows, three kinds of row: each its own statement.
            write_conn: Dedicated::new(opts.statement_cache_capacity(1024), 1),
        })
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }
}

sql_store!(
    SqliteStore,
    Sqlite,
    "sqlite",
    super::sql::REVOKE_SUBTREE,
    super::sql::REVOKE_SESSION
);
web_sql_store!(SqliteStore, Sqlite);
tpm_sql_store!(SqliteStore, Sqlite);
ciba_sql_store!(SqliteStore, Sqlite);
