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
        tokio::spawn(checkpoint(pool.clone()));
        let writer_opts = opts
            .clone()
            // Batches of every size up to 256 rows, three kinds of row: each its own statement.
            .statement_cache_capacity(1024)
            // The writer never checkpoints itself; `checkpoint` does it beside it.
            .pragma("wal_autocheckpoint", "0");
        Ok(Self {
            pool,
            readers: Dedicated::new(opts, readers(max_connections)),
            write_conn: Dedicated::new(writer_opts, 1),
        })
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }
}

/// Copies committed WAL frames into the database file a few times a second. SQLite's automatic
/// checkpoint runs inside the COMMIT that crosses 1,000 pages, so it used to stall the
/// group-commit writer (and every request waiting on it) for the copy and its fsync: 11 % of
/// the server's CPU and most of its fsyncs under token exchange. A PASSIVE checkpoint takes no
/// lock that the writer needs; the writer restarts the WAL from the top once it is copied.
async fn checkpoint(pool: Pool<Sqlite>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

sql_store!(SqliteStore, Sqlite, "sqlite");
web_sql_store!(SqliteStore, Sqlite);
tpm_sql_store!(SqliteStore, Sqlite);
ciba_sql_store!(SqliteStore, Sqlite);
