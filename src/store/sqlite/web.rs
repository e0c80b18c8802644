//! [`WebStore`] on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, rows};
use crate::oauth::scope::ScopeSet;
use crate::store::StoreError;
use crate::store::web::{CODE_RETENTION, CodeRecord, WebStore};
use crate::store::{records, sql};

#[async_trait]
impl WebStore for SqliteStore {
    async fn create_code(&self, c: &CodeRecord, now: i64) -> Result<(), StoreError> {
        let c = c.clone();
        self.writer
            .tx(move |tx| {
                (tx.prepare_cached(sql::FORGET_CODES)?).execute([now - CODE_RETENTION])?;
                (tx.prepare_cached(sql::CREATE_CODE)?).execute(params![
                    c.code_hash,
                    c.client_id,
                    c.redirect_uri,
                    c.code_challenge,
                    c.username,
                    c.scope,
                    c.aud.to_string(),
                    c.sid,
                    c.created_at,
                    c.expires_at,
                    c.nonce,
                ])?;
                Ok(())
            })
            .await
    }

    async fn find_code(&self, code_hash: &[u8]) -> Result<Option<CodeRecord>, StoreError> {
        let row = self.readers.read(|c| {
            (c.prepare_cached(sql::FIND_CODE)?)
                .query_row([code_hash], rows::code)
                .optional()
        })?;
        Ok(row.map(Into::into))
    }

    async fn use_code(&self, code_hash: &[u8], now: i64) -> Result<bool, StoreError> {
        let code_hash = code_hash.to_vec();
        self.writer
            .tx(move |tx| {
                Ok((tx.prepare_cached(sql::USE_CODE)?).execute(params![now, code_hash])? == 1)
            })
            .await
    }

    async fn mark_code_replayed(&self, code_hash: &[u8], now: i64) -> Result<(), StoreError> {
        let code_hash = code_hash.to_vec();
        self.writer
            .tx(move |tx| {
                (tx.prepare_cached(sql::MARK_CODE_REPLAYED)?).execute(params![now, code_hash])?;
                Ok(())
            })
            .await
    }

    async fn consent(
        &self,
        username: &str,
        client_id: &str,
    ) -> Result<Option<ScopeSet>, StoreError> {
        let text = self.readers.read(|c| {
            (c.prepare_cached(sql::CONSENT)?)
                .query_row([username, client_id], |r| r.get(0))
                .optional()
        })?;
        Ok(records::consent(text))
    }

    async fn save_consent(
        &self,
        username: &str,
        client_id: &str,
        scope: &ScopeSet,
        now: i64,
    ) -> Result<(), StoreError> {
        let args = (
            username.to_string(),
            client_id.to_string(),
            scope.to_string(),
        );
        self.writer
            .tx(move |tx| {
                (tx.prepare_cached(sql::SAVE_CONSENT)?)
                    .execute(params![args.0, args.1, args.2, now])?;
                Ok(())
            })
            .await
    }

    async fn create_browser_session(
        &self,
        id_hash: &[u8],
        username: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let (id_hash, username) = (id_hash.to_vec(), username.to_string());
        self.writer
            .tx(move |tx| {
                (tx.prepare_cached(sql::FORGET_BROWSER_SESSIONS)?).execute([now])?;
                (tx.prepare_cached(sql::CREATE_BROWSER_SESSION)?)
                    .execute(params![id_hash, username, now, expires_at])?;
                Ok(())
            })
            .await
    }

    async fn browser_session(
        &self,
        id_hash: &[u8],
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        self.readers.read(|c| {
            (c.prepare_cached(sql::BROWSER_SESSION)?)
                .query_row(params![id_hash, now], |r| r.get(0))
                .optional()
        })
    }
}
