//! [`WebStore`] on PostgreSQL.

use async_trait::async_trait;

use super::PostgresStore;
use crate::oauth::scope::ScopeSet;
use crate::store::StoreError;
use crate::store::records::{self, CodeRow};
use crate::store::sql;
use crate::store::web::{CODE_RETENTION, CodeRecord, WebStore};

#[async_trait]
impl WebStore for PostgresStore {
    async fn create_code(&self, c: &CodeRecord, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::FORGET_CODES)
            .bind(now - CODE_RETENTION)
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql::CREATE_CODE)
            .bind(&c.code_hash)
            .bind(&c.client_id)
            .bind(&c.redirect_uri)
            .bind(&c.code_challenge)
            .bind(&c.username)
            .bind(&c.scope)
            .bind(c.aud.to_string())
            .bind(&c.sid)
            .bind(c.created_at)
            .bind(c.expires_at)
            .bind(&c.nonce)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_code(&self, code_hash: &[u8]) -> Result<Option<CodeRecord>, StoreError> {
        let row = sqlx::query_as::<_, CodeRow>(sql::FIND_CODE)
            .bind(code_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn use_code(&self, code_hash: &[u8], now: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(sql::USE_CODE)
            .bind(now)
            .bind(code_hash)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn mark_code_replayed(&self, code_hash: &[u8], now: i64) -> Result<(), StoreError> {
        sqlx::query(sql::MARK_CODE_REPLAYED)
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
    ) -> Result<Option<ScopeSet>, StoreError> {
        let text = sqlx::query_scalar(sql::CONSENT)
            .bind(username)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(records::consent(text))
    }

    async fn save_consent(
        &self,
        username: &str,
        client_id: &str,
        scope: &ScopeSet,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(sql::SAVE_CONSENT)
            .bind(username)
            .bind(client_id)
            .bind(scope.to_string())
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
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::FORGET_BROWSER_SESSIONS)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql::CREATE_BROWSER_SESSION)
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
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(sql::BROWSER_SESSION)
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
    }
}
