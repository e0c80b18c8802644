//! [`RegistryStore`] on SQLite.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use crate::store::sql;
use crate::store::{Named, RegistryStore, StoreError};

impl SqliteStore {
    /// Every row of a two-text-column `sql` (name and data).
    fn pairs(&self, sql: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.readers.read(|c| {
            let mut s = c.prepare_cached(sql)?;
            let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Runs `sql::UPSERT_CLIENT` or `sql::UPSERT_AGENT`.
    async fn upsert(
        &self,
        sql: &'static str,
        key: &str,
        data: &str,
        source: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let (key, data, source) = (key.to_string(), data.to_string(), source.to_string());
        self.writer
            .tx(move |tx| {
                (tx.prepare_cached(sql)?).execute(params![key, data, source, now])?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl RegistryStore for SqliteStore {
    async fn upsert_client(
        &self,
        client_id: &str,
        data: &str,
        source: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.upsert(sql::UPSERT_CLIENT, client_id, data, source, now)
            .await
    }

    async fn load_clients(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.pairs(sql::LOAD_CLIENTS)
    }

    async fn upsert_agent(
        &self,
        name: &str,
        data: &str,
        source: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.upsert(sql::UPSERT_AGENT, name, data, source, now)
            .await
    }

    async fn load_agents(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.pairs(sql::LOAD_AGENTS)
    }

    async fn config_names(&self, kind: Named) -> Result<Vec<String>, StoreError> {
        self.readers.read(|c| {
            let mut s = c.prepare_cached(sql::config_names(kind))?;
            let rows = s.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    async fn forget_name(&self, kind: Named, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.writer
            .tx(move |tx| {
                (tx.prepare_cached(sql::forget_name(kind))?).execute([name])?;
                Ok(())
            })
            .await
    }

    async fn remember_users(&self, names: &[String], now: i64) -> Result<(), StoreError> {
        let names = names.to_vec();
        self.writer
            .tx(move |tx| {
                let mut s = tx.prepare_cached(sql::REMEMBER_USER)?;
                for name in &names {
                    s.execute(params![name, now])?;
                }
                Ok(())
            })
            .await
    }

    async fn set_agent_disabled(&self, name: &str, at: Option<i64>) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .tx(move |tx| {
                Ok((tx.prepare_cached(sql::SET_AGENT_DISABLED)?).execute(params![at, name])? == 1)
            })
            .await
    }

    async fn delete_agent(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .tx(move |tx| Ok((tx.prepare_cached(sql::DELETE_AGENT)?).execute([name])? == 1))
            .await
    }
}
