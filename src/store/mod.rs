//! Persistence: what the server remembers, behind [`Store`] and its supertraits (one per
//! concept), with one plain module per backend chosen once, at start, from the database URL.
//!
//! # Layout
//! - `mod.rs`: the records and the traits. [`Store`] is the sum of [`TokenStore`] (token
//!   lookups, single use), [`AuditStore`] (the batched writes and the audit chain they extend),
//!   [`RegistryStore`] (clients, agents, config names), [`KeyStore`] (signing keys), and
//!   [`web::WebStore`], [`ciba::CibaStore`], [`tpm::TpmStore`], [`outbox::OutboxStore`],
//!   [`ssf::SsfStreamStore`] in their files.
//! - `audiences.rs`: [`Audiences`], the one stored list that is split and joined.
//! - `batch.rs`: what one [`AuditStore::commit_batch`] does, decided once for both backends.
//! - `sql.rs`: the SQL both backends run as it is; `records.rs`: the rows it reads, converted
//!   once into records (fail closed).
//! - `writer.rs`: the group-commit [`Writer`] that feeds `commit_batch`.
//! - `sqlite/`: the embedded default, on rusqlite: every write on one writer thread, reads on a
//!   few reader connections in place.
//! - `postgres/`: several replicas on one database, on sqlx.
//!
//! Each backend is split by concept like the traits (`tokens.rs`, `batch.rs`, `registry.rs`,
//! `keys.rs`, `web.rs`, `ciba.rs`, `tpm.rs`, `outbox.rs`), each an ordinary `impl` of its trait.
//!
//! # Layering
//! The store depends on nothing above it except the types it stores and their pure helpers:
//! audit entries and `audit::chain`, signing keys and `jose::plan_rotation`, the `act` claims,
//! scopes (`oauth::scope::ScopeSet`, a CIBA request's), and, to find a presented token, `crypto::sha256` and `jose::unverified_jti`. It never calls
//! into the protocol, the web layer or the policy; they call it through the traits.

mod audiences;
mod batch;
pub use batch::Revocation;
pub mod ciba;
pub mod outbox;
mod postgres;
mod records;
mod sql;
mod sqlite;
pub mod ssf;
pub mod tpm;
pub mod web;
pub mod writer;

use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::{AuditEntry, AuditEvent, ChainKey};
use crate::jose::{KeyRow, RotationMode};
use crate::oauth::act::{Actor, MayAct};

pub use audiences::Audiences;
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
    /// An SQLite migration could not be applied (the database is left as it was).
    #[error("migration {0}: {1}")]
    Migration(i64, rusqlite::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// One stored record does not parse (a token's claims or kind, a CIBA request's status or
    /// chain). Callers treat that record as unusable, and other lookups are unaffected.
    #[error("a stored record is unreadable: {0}")]
    CorruptRecord(String),
    /// The database URL does not name a database this backend can open.
    #[error("database_url: {0}")]
    Url(String),
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
    pub aud: Audiences,
    pub iat: i64,
    pub exp: i64,
    pub sid: Option<String>,
    pub parent_hash: Option<Vec<u8>>,
    /// The RFC 8693 `act` claim (stored as JSON text, parsed when the row is read).
    pub act: Option<Actor>,
    /// RFC 8693 §4.4 `may_act`: who may use this token as a subject token.
    pub may_act: Option<MayAct>,
    /// How the current actor (`act.sub`) proved itself at `/attest` (`software` or `tpm`), for
    /// tokens with an actor: the access token's `att` claim and introspection's.
    pub att: Option<String>,
    /// RFC 9449 §6: the thumbprint of the DPoP key the token is bound to (`cnf.jkt`).
    pub jkt: Option<String>,
    /// Where the key of `jkt` lives: `tpm` (certified by the agent's attestation key) or
    /// `software`; the `dpop_key` claim.
    pub dpop_key: Option<String>,
    pub revoked_at: Option<i64>,
    /// Set when a single-use token (refresh token) was used.
    pub consumed_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

impl TokenRecord {
    /// Whether this is a `kind` token that may still be used: unrevoked, unconsumed, unexpired.
    pub fn is_live(&self, kind: TokenKind, now: i64) -> bool {
        self.kind == kind
            && self.revoked_at.is_none()
            && self.consumed_at.is_none()
            && self.exp > now
    }
}

/// What [`TokenStore::consume_token`] found.
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
    /// is recorded and the outcome is [`WriteOutcome::ParentRevoked`]: a token derived from a
    /// revoked one never becomes live, however the requests race.
    IssueTokens(Vec<TokenRecord>),
    /// Revokes the token and every token derived from it.
    Revoke { token_hash: Vec<u8> },
    /// Revokes every token of the session `sid` and everything derived from them.
    RevokeSession { sid: String },
    /// Revokes every live token of a client, human or agent that no longer exists (or was
    /// disabled), and everything derived from them (SPEC "Invariants": removed means removed).
    RevokeParty(Party),
    /// Records a use (introspection) of a token.
    Touch { jti: String, by: String },
    /// Enqueues messages to deliver outside ([`outbox`]), in the transaction of the item's
    /// audit events: the event and its notifications are kept together or not at all.
    Notify(Vec<outbox::Outgoing>),
}

impl WriteOp {
    /// What the write does, in a word (a span's attribute).
    pub fn name(&self) -> &'static str {
        match self {
            WriteOp::None => "audit",
            WriteOp::IssueTokens(_) => "issue",
            WriteOp::Revoke { .. } => "revoke",
            WriteOp::RevokeSession { .. } => "revoke_session",
            WriteOp::RevokeParty(_) => "revoke_party",
            WriteOp::Touch { .. } => "touch",
            WriteOp::Notify(_) => "notify",
        }
    }
}

/// Whose tokens a [`WriteOp::RevokeParty`] revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    /// Every token issued to this client (`client_id`).
    Client(String),
    /// Every token whose subject is this human.
    User(String),
    /// The agent's own tokens (`sub` = `agent:<name>`) and every delegation it is the current
    /// actor of.
    Agent(String),
}

impl Party {
    /// The value the party's seed statement binds.
    pub fn key(&self) -> String {
        match self {
            Party::Client(c) => c.clone(),
            Party::User(u) => u.clone(),
            Party::Agent(a) => format!("agent:{a}"),
        }
    }
}

/// The config's names of one kind, for [`RegistryStore::config_names`] and
/// [`RegistryStore::forget_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    Clients,
    Agents,
    Users,
}

/// A client that registered itself (RFC 7591), as stored. Only live registrations are read
/// back; a removed one keeps its row until it no longer counts against its address's cap.
#[derive(Clone, PartialEq, Eq)]
pub struct RegisteredClient {
    pub client_id: String,
    /// The client as the server uses it (JSON; a secret only as its argon2id hash).
    pub data: String,
    /// The client metadata the registration answered (JSON), for RFC 7592 reads.
    pub metadata: String,
    /// SHA-256 of the RFC 7592 registration access token.
    pub token_hash: Vec<u8>,
    pub created_at: i64,
    /// The address that registered it (an IPv6 address by its /64).
    pub created_by: String,
    pub last_used_at: i64,
}

impl std::fmt::Debug for RegisteredClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredClient")
            .field("client_id", &self.client_id)
            .field("created_at", &self.created_at)
            .field("created_by", &self.created_by)
            .field("last_used_at", &self.last_used_at)
            .finish_non_exhaustive()
    }
}

/// The caps a registration must stay within, checked and applied in one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationCaps {
    /// Registrations (removed ones too) made by one address after this time count ...
    pub address_since: i64,
    /// ... and must be fewer than this.
    pub per_address: u64,
    /// Live registrations in all must be fewer than this.
    pub total: u64,
}

/// What [`RegistryStore::register_client`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    Registered,
    /// The address made `per_address` registrations within the window: nothing stored.
    AddressCap,
    /// `total` registrations exist: nothing stored.
    TotalCap,
}

/// What one [`WriteOp`] of a batch did (named apart from `policy::Outcome`, a decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
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
    /// Messages the item's events cause ([`outbox::Tap`]), written with them if it applies.
    pub signals: Vec<outbox::Outgoing>,
    /// Messages about the tokens its revocation cut, made once the backend knows which
    /// ([`outbox::Tap::on_cut`]).
    pub on_cut: Option<outbox::OnCut>,
}

impl BatchItem {
    pub fn new(op: WriteOp, audit: Vec<AuditEvent>) -> Self {
        Self {
            op,
            audit,
            signals: Vec::new(),
            on_cut: None,
        }
    }

    /// Adds the messages `tap` makes of the item's events, and of what its revocation cuts.
    pub fn tapped(mut self, tap: &dyn outbox::Tap, now: i64) -> Self {
        for ev in &self.audit {
            self.signals.extend(tap.signals(ev, now));
            if self.on_cut.is_none() {
                self.on_cut = tap.on_cut(ev, now);
            }
        }
        self
    }
}

/// A token a revocation cut, by what a resource server knows of it (its claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub jti: String,
    pub sid: Option<String>,
    pub sub: String,
    pub client_id: String,
}

/// The whole store, as the server holds it (`dyn Store`).
#[async_trait]
pub trait Store:
    TokenStore
    + AuditStore
    + RegistryStore
    + KeyStore
    + web::WebStore
    + ciba::CibaStore
    + tpm::TpmStore
    + outbox::OutboxStore
    + ssf::SsfStreamStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> &'static str;
    /// Brings the schema up to date (every replica may run it at start).
    async fn migrate(&self) -> Result<(), StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    /// Lets queued writes finish and closes every connection.
    async fn close(&self);
    /// The counts a metrics scrape shows (`crate::metrics`). Counting live tokens scans the
    /// token table, so it runs off the request path (on SQLite a connection of its own on a
    /// blocking thread) and the scrape asks at most every few seconds.
    async fn gauges(&self, now: i64) -> Result<StoreGauges, StoreError>;
    /// The connections of each of this store's pools, as they are now.
    fn pools(&self) -> Vec<PoolUse>;
}

/// What [`Store::gauges`] counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreGauges {
    /// Unrevoked, unexpired tokens by kind.
    pub live_tokens: Vec<(String, u64)>,
    /// CIBA requests by state: `pending` (undecided, unexpired), `expired` (undecided, past
    /// their expiry), and the decided ones by status (`approved`, `denied`, `issued`).
    pub approval_requests: Vec<(String, u64)>,
    /// Outbox messages (notifications) by state: `pending` (not yet delivered), `delivered`,
    /// `failed` (given up), `expired` (dropped with their request); settled ones until purged.
    pub outbox: Vec<(String, u64)>,
}

impl StoreGauges {
    /// The outbox's counts, as [`StoreGauges::outbox`] lists them.
    fn outbox_states(c: outbox::OutboxCounts) -> Vec<(String, u64)> {
        [
            ("pending", c.pending),
            ("delivered", c.delivered),
            ("failed", c.failed),
            ("expired", c.expired),
        ]
        .into_iter()
        .map(|(s, n)| (s.to_string(), n.max(0) as u64))
        .collect()
    }
}

/// One pool of database connections: the most it opens, how many are open, how many in use.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolUse {
    pub name: &'static str,
    pub max: usize,
    pub open: usize,
    pub busy: usize,
}

/// Issued tokens as the protocol looks them up, and identifiers used once.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    async fn find_token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError>;
    /// The token a client presented (its bytes), if this server recorded it: found by its hash,
    /// or on SQLite, for a JWT, by the `jti` of its payload (the table's key) and then the hash,
    /// so only a byte-identical token matches.
    async fn find_presented(&self, token: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Marks a single-use token consumed, atomically.
    async fn consume_token(&self, token_hash: &[u8], now: i64) -> Result<Consumed, StoreError>;
    /// Live (unrevoked, unexpired) tokens whose subject is `sub`, oldest first.
    async fn live_tokens_of(&self, sub: &str, now: i64) -> Result<Vec<TokenRecord>, StoreError>;
    /// The token with this `jti` (operators name tokens by the `jti` the audit log shows).
    async fn find_token_by_jti(&self, jti: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Records a single-use identifier until `expires_at`; false if it was already used.
    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError>;
}

/// The writes that must be durable before a response, and the audit chain they extend.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Applies `items` and appends their audit events in one transaction, chained under
    /// `key` (derived from the KEK, which the database never holds: see [`crate::audit`]).
    /// Entries are stamped with `policy_version`, the policy set in force. What the items do
    /// to each other (a child of a token revoked earlier in the batch) is decided by `batch.rs`.
    async fn commit_batch(
        &self,
        items: &[BatchItem],
        now: i64,
        policy_version: Option<&str>,
        key: &ChainKey,
    ) -> Result<Vec<WriteOutcome>, StoreError>;
    /// Entries with `seq > after`, in order, at most `limit`.
    async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;
    async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError>;
    /// The first entry (the lowest `seq`) stamped at or after `ts`, if any.
    async fn audit_first_at(&self, ts: i64) -> Result<Option<i64>, StoreError>;
    /// The newest `limit` entries naming session `sid`, oldest first.
    async fn audit_for_session(&self, sid: &str, limit: i64)
    -> Result<Vec<AuditEntry>, StoreError>;
}

/// Clients, agents and human usernames, as the config and the CLI declare them.
#[async_trait]
pub trait RegistryStore: Send + Sync + 'static {
    async fn upsert_client(
        &self,
        client_id: &str,
        data: &str,
        source: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// `(client_id, data)` of every client.
    async fn load_clients(&self) -> Result<Vec<(String, String)>, StoreError>;
    async fn upsert_agent(
        &self,
        name: &str,
        data: &str,
        source: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// `(name, data)` of every agent that is not disabled.
    async fn load_agents(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// The stored names of `kind` that came from a config (clients and agents the CLI or an
    /// enrollment made are not among them; users live only in the config and are remembered
    /// by [`RegistryStore::remember_users`]).
    async fn config_names(&self, kind: Named) -> Result<Vec<String>, StoreError>;
    /// Deletes the stored `name` of `kind`.
    async fn forget_name(&self, kind: Named, name: &str) -> Result<(), StoreError>;
    /// Remembers the config's usernames, so one taken out is noticed at the next start.
    async fn remember_users(&self, names: &[String], now: i64) -> Result<(), StoreError>;
    /// Disables (`Some(now)`) or re-enables (`None`) agent `name`; false if there is none.
    async fn set_agent_disabled(&self, name: &str, at: Option<i64>) -> Result<bool, StoreError>;
    /// Deletes agent `name`; false if there was none.
    async fn delete_agent(&self, name: &str) -> Result<bool, StoreError>;
    /// Stores a registered client if `caps` allow it: the counts and the insert are one
    /// transaction serialised across replicas (PostgreSQL: an advisory transaction lock), so
    /// concurrent registrations never pass a cap together.
    async fn register_client(
        &self,
        client: &RegisteredClient,
        caps: &RegistrationCaps,
    ) -> Result<RegisterOutcome, StoreError>;
    /// `(registrations by `address` after `since`, live registrations)`: the caps' counts, read
    /// without a lock (a cheap early refusal before a secret is hashed).
    async fn registration_counts(
        &self,
        address: &str,
        since: i64,
    ) -> Result<(u64, u64), StoreError>;
    /// The live registered client `client_id`.
    async fn registered_client(
        &self,
        client_id: &str,
    ) -> Result<Option<RegisteredClient>, StoreError>;
    /// Every live registered client, oldest first.
    async fn registered_clients(&self) -> Result<Vec<RegisteredClient>, StoreError>;
    /// Records that the registered client was used at `now`.
    async fn touch_registered_client(&self, client_id: &str, now: i64) -> Result<(), StoreError>;
    /// Marks the registration removed at `now`; true only for the one call that did (of
    /// concurrent removals on any replica, one wins, and only it revokes and audits).
    async fn remove_registered_client(&self, client_id: &str, now: i64)
    -> Result<bool, StoreError>;
    /// Live registered clients last used at or before `used_before`.
    async fn unused_registered_clients(&self, used_before: i64) -> Result<Vec<String>, StoreError>;
    /// The ids of registrations removed at or after `since` (whose rows are not purged yet).
    async fn removed_registered_clients(&self, since: i64) -> Result<Vec<String>, StoreError>;
    /// Deletes the rows of removed registrations made at or before `created_before` (they no
    /// longer count against their address's cap); returns their ids.
    async fn purge_registered_clients(
        &self,
        created_before: i64,
    ) -> Result<Vec<String>, StoreError>;
}

/// The signing keys, sealed under the KEK.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
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
