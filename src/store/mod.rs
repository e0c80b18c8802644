//! Persistence behind one narrow trait. `sqlite.rs` and `postgres.rs` are chosen once, at start,
//! from the database URL; both share their SQL through the `sql_store!` macro in `sql.rs`, so the
//! two backends cannot drift apart. Writes that must be durable before a response (token records,
//! audit entries, revocations) go through [`writer::Writer`], which commits them in batches.

pub mod ciba;
mod conns;
mod pg_lookup;
mod postgres;
mod sql;
mod sqlite;
mod sqlite_reader;
mod sqlite_writer;
pub mod tpm;
pub mod web;
pub mod writer;

use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::{AuditEntry, AuditEvent, ChainKey};
use crate::jose::{KeyRow, RotationMode};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use writer::Writer;

/// Internal storage failure. Its text is logged, never sent to a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("the writer has shut down")]
    WriterClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Agent,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Agent => "agent",
            TokenKind::Refresh => "refresh",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "access" => Some(TokenKind::Access),
            "agent" => Some(TokenKind::Agent),
            "refresh" => Some(TokenKind::Refresh),
            _ => None,
        }
    }
}

/// What the server remembers about a token it issued. Looked up by the SHA-256 of the token,
/// so a presented token is recognised without verifying its signature again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token_hash: Vec<u8>,
    pub jti: String,
    pub kind: TokenKind,
    pub sub: String,
    pub client_id: String,
    /// Space-separated (RFC 6749 §3.3).
    pub scope: String,
    pub aud: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub sid: Option<String>,
    pub parent_hash: Option<Vec<u8>>,
    /// The RFC 8693 `act` claim as JSON text.
    pub act: Option<String>,
    /// RFC 8693 §4.4 `may_act` as JSON text: who may use this token as a subject token.
    pub may_act: Option<String>,
    pub revoked_at: Option<i64>,
    /// Set when a single-use token (refresh token) was used.
    pub consumed_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// What [`Store::consume_token`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// This call consumed it.
    Now(Box<TokenRecord>),
    /// It had been consumed before: a replay (RFC 9700 §4.14 reuse detection).
    Before(Box<TokenRecord>),
    NotFound,
}

/// A write that must be durable before the request that asked for it is answered.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Only the audit events.
    None,
    /// Records tokens. If one has a parent that is revoked by the time the batch commits, none
    /// is recorded and the outcome is [`Outcome::ParentRevoked`]: a token derived from a
    /// revoked one never becomes live, however the requests race.
    IssueTokens(Vec<TokenRecord>),
    /// Revokes the token and every token derived from it.
    Revoke { token_hash: Vec<u8> },
    /// Revokes every token of the session `sid` and everything derived from them.
    RevokeSession { sid: String },
    /// Records a use (introspection) of a token.
    Touch { jti: String, by: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// How many tokens were newly revoked.
    Revoked(u64),
    /// The parent of a token to issue is revoked; nothing was issued.
    ParentRevoked,
}

#[derive(Debug, Clone)]
pub struct BatchItem {
    pub op: WriteOp,
    pub audit: Vec<AuditEvent>,
}

#[async_trait]
pub trait Store: web::WebStore + ciba::CibaStore + tpm::TpmStore + Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    async fn migrate(&self) -> Result<(), StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    async fn close(&self);

    async fn upsert_client(
        &self,
        client_id: &str,
        data: &str,
        source: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// `(client_id, data)` of every client.
    async fn load_clients(&self) -> Result<Vec<(String, String)>, StoreError>;

    async fn load_keys(&self) -> Result<Vec<KeyRow>, StoreError>;
    /// Runs [`crate::jose::plan_rotation`] under a database lock shared by all replicas and
    /// applies it. Returns whether a rotation happened.
    async fn rotate_keys(
        &self,
        mode: RotationMode,
        now: i64,
        retired_ttl: i64,
        fresh: &(dyn Fn() -> KeyRow + Send + Sync),
    ) -> Result<bool, StoreError>;

    async fn find_token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError>;
    /// The token a client presented (its bytes), if this server recorded it: found by its hash,
    /// or on SQLite, for a JWT, by the `jti` of its payload (the table's key) and then the hash,
    /// so only a byte-identical token matches.
    async fn find_presented(&self, token: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Marks a single-use token consumed, atomically.
    async fn consume_token(&self, token_hash: &[u8], now: i64) -> Result<Consumed, StoreError>;
    /// Live (unrevoked, unexpired) tokens whose subject is `sub`, oldest first.
    async fn live_tokens_of(&self, sub: &str, now: i64) -> Result<Vec<TokenRecord>, StoreError>;

    async fn upsert_agent(
        &self,
        name: &str,
        data: &str,
        source: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// `(name, data)` of every agent.
    async fn load_agents(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Stores an attestation nonce, optionally bound to one agent.
    async fn create_nonce(
        &self,
        nonce: &str,
        agent: Option<&str>,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    /// Uses a nonce once: true only if it exists, is unexpired, unused, and bound to `agent` or
    /// to no agent.
    async fn consume_nonce(&self, nonce: &str, agent: &str, now: i64) -> Result<bool, StoreError>;

    /// Records a single-use identifier until `expires_at`; false if it was already used.
    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError>;

    /// Applies `items` and appends their audit events in one transaction, chained under
    /// `key` (derived from the KEK, which the database never holds: see [`crate::audit`]).
    /// Entries are stamped with `policy_version`, the policy set in force.
    async fn commit_batch(
        &self,
        items: &[BatchItem],
        now: i64,
        policy_version: Option<&str>,
        key: &ChainKey,
    ) -> Result<Vec<Outcome>, StoreError>;

    /// Entries with `seq > after`, in order, at most `limit`.
    async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;
    async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError>;
    /// The newest `limit` entries naming session `sid`, oldest first.
    async fn audit_for_session(&self, sid: &str, limit: i64)
    -> Result<Vec<AuditEntry>, StoreError>;
}

pub type SharedStore = Arc<dyn Store>;

/// Where audit entries get the version of the policy set in force when they are written.
pub type PolicyVersion = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Opens the backend named by the URL's scheme.
pub async fn open(url: &str, max_connections: u32) -> Result<SharedStore, StoreError> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(
            PostgresStore::connect(url, max_connections).await?,
        ))
    } else {
        Ok(Arc::new(SqliteStore::connect(url, max_connections).await?))
    }
}
