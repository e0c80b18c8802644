//! Storage for the human-facing flows (authorization codes, consents, browser sessions), as a
//! supertrait of [`super::Store`] so `dyn Store` carries it. Codes and session ids are stored
//! as SHA-256 hashes only.

use async_trait::async_trait;

use super::StoreError;
use crate::oauth::scope::ScopeSet;

/// An authorization code as remembered (RFC 6749 §4.1.2): everything the token request must
/// match (client, redirect URI, PKCE challenge) and everything the tokens will carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub code_hash: Vec<u8>,
    pub client_id: String,
    pub redirect_uri: String,
    /// The S256 challenge (RFC 7636 §4.2).
    pub code_challenge: String,
    pub username: String,
    /// Space-separated (RFC 6749 §3.3).
    pub scope: String,
    pub aud: super::Audiences,
    /// The session the tokens issued for this code belong to: what a replay revokes.
    pub sid: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub replayed_at: Option<i64>,
    /// OpenID Connect Core §3.1.2.1: echoed in the ID Token.
    pub nonce: Option<String>,
}

/// How long a used or expired code is kept, so a late replay is still recognised as one.
pub const CODE_RETENTION: i64 = 3600;

#[async_trait]
pub trait WebStore: Send + Sync + 'static {
    /// Stores a new code (and forgets codes that expired more than [`CODE_RETENTION`] ago).
    async fn create_code(&self, code: &CodeRecord, now: i64) -> Result<(), StoreError>;
    async fn find_code(&self, code_hash: &[u8]) -> Result<Option<CodeRecord>, StoreError>;
    /// Marks the code used, atomically: true only for the one call that did (RFC 6749 §4.1.2,
    /// "MUST NOT use the authorization code more than once").
    async fn use_code(&self, code_hash: &[u8], now: i64) -> Result<bool, StoreError>;
    /// Records that a used code was presented again.
    async fn mark_code_replayed(&self, code_hash: &[u8], now: i64) -> Result<(), StoreError>;

    /// The scopes `username` has approved for `client_id`, if any. A stored consent that does
    /// not parse is none (logged): the human is asked again, and their answer replaces it.
    async fn consent(
        &self,
        username: &str,
        client_id: &str,
    ) -> Result<Option<ScopeSet>, StoreError>;
    async fn save_consent(
        &self,
        username: &str,
        client_id: &str,
        scope: &ScopeSet,
        now: i64,
    ) -> Result<(), StoreError>;

    async fn create_browser_session(
        &self,
        id_hash: &[u8],
        username: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    /// The user of a live browser session.
    async fn browser_session(&self, id_hash: &[u8], now: i64)
    -> Result<Option<String>, StoreError>;
}
