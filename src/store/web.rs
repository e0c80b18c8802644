//! Storage for the human-facing flows (authorization codes, consents, browser sessions), as a
//! supertrait of [`super::Store`] so `dyn Store` carries it. Same SQL for both backends through
//! the `web_sql_store!` macro, invoked in `sqlite.rs` and `postgres.rs`. Codes and session ids
//! are stored as SHA-256 hashes only.

use async_trait::async_trait;

use super::StoreError;

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
    pub aud: Vec<String>,
    /// The session the tokens issued for this code belong to: what a replay revokes.
    pub sid: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub replayed_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
pub(super) struct CodeRow {
    code_hash: Vec<u8>,
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    username: String,
    scope: String,
    aud: String,
    sid: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    replayed_at: Option<i64>,
}

impl From<CodeRow> for CodeRecord {
    fn from(r: CodeRow) -> Self {
        CodeRecord {
            code_hash: r.code_hash,
            client_id: r.client_id,
            redirect_uri: r.redirect_uri,
            code_challenge: r.code_challenge,
            username: r.username,
            scope: r.scope,
            aud: r
                .aud
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            sid: r.sid,
            created_at: r.created_at,
            expires_at: r.expires_at,
            used_at: r.used_at,
            replayed_at: r.replayed_at,
        }
    }
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

    /// The scopes `username` has approved for `client_id` (space-separated), if any.
    async fn consent(&self, username: &str, client_id: &str) -> Result<Option<String>, StoreError>;
    async fn save_consent(
        &self,
        username: &str,
        client_id: &str,
        scope: &str,
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

/// Implements [`WebStore`] for a struct with a `pool: sqlx::Pool<$db>` field.
macro_rules! web_sql_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::web::WebStore for $store {
            async fn create_code(
                &self,
                c: &$crate::store::web::CodeRecord,
                now: i64,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM auth_codes WHERE expires_at < $1")
                    .bind(now - $crate::store::web::CODE_RETENTION)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO auth_codes (code_hash, client_id, redirect_uri, code_challenge, username, \
                     scope, aud, sid, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&c.code_hash)
                .bind(&c.client_id)
                .bind(&c.redirect_uri)
                .bind(&c.code_challenge)
                .bind(&c.username)
                .bind(&c.scope)
                .bind(c.aud.join(" "))
                .bind(&c.sid)
                .bind(c.created_at)
                .bind(c.expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn find_code(
                &self,
                code_hash: &[u8],
            ) -> Result<Option<$crate::store::web::CodeRecord>, $crate::store::StoreError> {
                let row = sqlx::query_as::<_, $crate::store::web::CodeRow>(
                    "SELECT code_hash, client_id, redirect_uri, code_challenge, username, scope, aud, sid, \
                     created_at, expires_at, used_at, replayed_at FROM auth_codes WHERE code_hash = $1",
                )
                .bind(code_hash)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn use_code(&self, code_hash: &[u8], now: i64) -> Result<bool, $crate::store::StoreError> {
                let r = sqlx::query("UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL")
                    .bind(now)
                    .bind(code_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn mark_code_replayed(&self, code_hash: &[u8], now: i64) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "UPDATE auth_codes SET replayed_at = $1 WHERE code_hash = $2 AND replayed_at IS NULL",
                )
                .bind(now)
                .bind(code_hash)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn consent(
                &self,
                username: &str,
                client_id: &str,
            ) -> Result<Option<String>, $crate::store::StoreError> {
                Ok(sqlx::query_as::<_, (String,)>(
                    "SELECT scope FROM consents WHERE username = $1 AND client_id = $2",
                )
                .bind(username)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?
                .map(|(s,)| s))
            }

            async fn save_consent(
                &self,
                username: &str,
                client_id: &str,
                scope: &str,
                now: i64,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO consents (username, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (username, client_id) DO UPDATE SET scope = excluded.scope, \
                     granted_at = excluded.granted_at",
                )
                .bind(username)
                .bind(client_id)
                .bind(scope)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn create_browser_session(
                &self,
                id_hash: &[u8],
                username: &str,
                now: i64,
                expires_at: i64,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM browser_sessions WHERE expires_at < $1")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO browser_sessions (id_hash, username, created_at, expires_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(id_hash)
                .bind(username)
                .bind(now)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn browser_session(
                &self,
                id_hash: &[u8],
                now: i64,
            ) -> Result<Option<String>, $crate::store::StoreError> {
                Ok(sqlx::query_as::<_, (String,)>(
                    "SELECT username FROM browser_sessions WHERE id_hash = $1 AND expires_at > $2",
                )
                .bind(id_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?
                .map(|(u,)| u))
            }
        }
    };
}

pub(super) use web_sql_store;
