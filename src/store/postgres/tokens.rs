//! [`TokenStore`] on PostgreSQL: lookups by hash are coalesced ([`super::lookup`]); the
//! single-use transitions are one conditional update each.

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::records::{self, TokenRow};
use crate::store::sql;
use crate::store::{Consumed, StoreError, TokenRecord, TokenStore};

/// Records a key used once in one statement: new, or stored but expired (then its row is
/// taken over), it is recorded and the statement counts one row; stored and live, none. Up to
/// 64 other expired keys are forgotten on the way, `SKIP LOCKED` so that uses at the same time
/// do not wait on each other's deletions (see `CREATE_NONCE_FORGETTING` in `tpm.rs`).
const USE_KEY_FORGETTING: &str = "WITH forgotten AS (DELETE FROM used_assertions \
       WHERE jti_key IN (SELECT jti_key FROM used_assertions \
         WHERE expires_at < $3 AND jti_key <> $1 LIMIT 64 FOR UPDATE SKIP LOCKED)) \
     INSERT INTO used_assertions (jti_key, expires_at) VALUES ($1, $2) \
     ON CONFLICT (jti_key) DO UPDATE SET expires_at = EXCLUDED.expires_at \
       WHERE used_assertions.expires_at < $3";

#[async_trait]
impl TokenStore for PostgresStore {
    #[tracing::instrument(level = "debug", name = "db.find_token", skip_all, fields(db.system = "postgresql"))]
    async fn find_token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        self.lookups.find(token_hash).await
    }

    #[tracing::instrument(level = "debug", name = "db.find_presented", skip_all, fields(db.system = "postgresql"))]
    async fn find_presented(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.lookups
            .find(&crate::crypto::sha256(token.as_bytes()))
            .await
    }

    #[tracing::instrument(level = "debug", name = "db.consume_token", skip_all, fields(db.system = "postgresql"))]
    async fn consume_token(&self, token_hash: &[u8], now: i64) -> Result<Consumed, StoreError> {
        let mut tx = self.pool.begin().await?;
        let won = sqlx::query(sql::CONSUME_TOKEN)
            .bind(now)
            .bind(token_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        let row = sqlx::query_as::<_, TokenRow>(sql::token_by_hash())
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        records::consumed(won, row)
    }

    async fn live_tokens_of(&self, sub: &str, now: i64) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query_as::<_, TokenRow>(sql::live_tokens_of())
            .bind(sub)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn find_token_by_jti(&self, jti: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query_as::<_, TokenRow>(sql::token_by_jti())
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    #[tracing::instrument(level = "debug", name = "db.use_once", skip_all, fields(db.system = "postgresql"))]
    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let statement = sqlx::query(USE_KEY_FORGETTING)
            .bind(key)
            .bind(expires_at)
            .bind(now);
        Ok(self.side_execute(statement).await? == 1)
    }
}
