//! The embedded default: one SQLite file in WAL mode. `synchronous = NORMAL` under WAL makes a
//! committed transaction survive a crash of the process (the guarantee `/token` relies on);
//! `FULL` would add survival of a power cut at the cost of an fsync per commit.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};

use super::ciba::ciba_sql_store;
use super::conns::readers;
use super::sql::sql_store;
use super::sqlite_reader::SqliteReaders;
use super::sqlite_writer::{self, SqliteWriter};
use super::tpm::tpm_sql_store;
use super::web::web_sql_store;
use super::{BatchItem, Consumed, Outcome, StoreError, TokenRecord};

pub struct SqliteStore {
    pool: Pool<Sqlite>,
    /// Token lookups on the hot paths.
    readers: SqliteReaders,
    /// The group-commit writer's own connection, on its own thread.
    writer: SqliteWriter,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(2))
            .min_connections(1)
            .connect_with(opts.clone())
            .await?;
        // The pool has created the file and put it in WAL mode.
        let writer = SqliteWriter::open(opts.get_filename())?;
        Ok(Self {
            pool,
            readers: SqliteReaders::new(opts.get_filename(), readers(max_connections)),
            writer,
        })
    }

    async fn close_writer(&self) {
        self.readers.close();
        self.writer.close().await;
    }

    async fn lookup_token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        self.readers.find_token(token_hash)
    }

    /// A JWT is found by the `jti` of its payload (the table's key) and its hash; anything
    /// else (refresh tokens are opaque) by its hash alone.
    async fn lookup_presented(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = crate::crypto::sha256(token.as_bytes());
        match crate::jose::unverified_jti(token) {
            Some(jti) => self.readers.find_token_by_jti(&jti, &hash),
            None => self.readers.find_token(&hash),
        }
    }

    async fn consume_once(&self, token_hash: &[u8], now: i64) -> Result<Consumed, StoreError> {
        let token_hash = token_hash.to_vec();
        self.writer
            .run(move |c| sqlite_writer::consume_token(c, &token_hash, now))
            .await
    }

    async fn use_key_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let key = key.to_string();
        self.writer
            .run(move |c| sqlite_writer::use_once(c, &key, expires_at, now))
            .await
    }

    async fn write_nonce(
        &self,
        nonce: &str,
        agent: Option<&str>,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let (nonce, agent) = (nonce.to_string(), agent.map(str::to_string));
        self.writer
            .run(move |c| sqlite_writer::create_nonce(c, &nonce, agent.as_deref(), expires_at, now))
            .await
    }

    async fn use_nonce(&self, nonce: &str, agent: &str, now: i64) -> Result<bool, StoreError> {
        let (nonce, agent) = (nonce.to_string(), agent.to_string());
        self.writer
            .run(move |c| sqlite_writer::consume_nonce(c, &nonce, &agent, now))
            .await
    }

    async fn write_batch(
        &self,
        items: &[BatchItem],
        now: i64,
        policy_version: Option<&str>,
        key: &crate::audit::ChainKey,
    ) -> Result<Vec<Outcome>, StoreError> {
        let (items, policy_version) = (items.to_vec(), policy_version.map(str::to_string));
        let key = key.clone();
        self.writer
            .run(move |c| {
                sqlite_writer::commit_batch(c, &items, now, policy_version.as_deref(), &key)
            })
            .await
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }
}

sql_store!(SqliteStore, Sqlite, "sqlite");
web_sql_store!(SqliteStore, Sqlite);
tpm_sql_store!(SqliteStore, Sqlite);
ciba_sql_store!(SqliteStore, Sqlite);
