//! [`RegistryStore`] on PostgreSQL.

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::sql;
use crate::store::{Named, RegistryStore, StoreError};

impl PostgresStore {
    /// Runs `sql::UPSERT_CLIENT` or `sql::UPSERT_AGENT`.
    async fn upsert(
        &self,
        sql: &str,
        key: &str,
        data: &str,
        source: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(sql)
            .bind(key)
            .bind(data)
            .bind(source)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl RegistryStore for PostgresStore {
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
        Ok(sqlx::query_as(sql::LOAD_CLIENTS)
            .fetch_all(&self.pool)
            .await?)
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
        Ok(sqlx::query_as(sql::LOAD_AGENTS)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn config_names(&self, kind: Named) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(sql::config_names(kind))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn forget_name(&self, kind: Named, name: &str) -> Result<(), StoreError> {
        sqlx::query(sql::forget_name(kind))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn remember_users(&self, names: &[String], now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for name in names {
            sqlx::query(sql::REMEMBER_USER)
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_agent_disabled(&self, name: &str, at: Option<i64>) -> Result<bool, StoreError> {
        let r = sqlx::query(sql::SET_AGENT_DISABLED)
            .bind(at)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_agent(&self, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(sql::DELETE_AGENT)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}
