//! [`RegistryStore`] on PostgreSQL.

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::sql;
use crate::store::{
    Named, RegisterOutcome, RegisteredClient, RegistrationCaps, RegistryStore, StoreError,
};

/// Serialises registrations across replicas for the rest of the transaction (the key is the
/// RFC's number; no other lock of ours uses advisory locks).
const LOCK_REGISTRATIONS: &str = "SELECT pg_advisory_xact_lock(7591)";

type Row = (String, String, String, Vec<u8>, i64, String, i64);

fn registered(r: Row) -> RegisteredClient {
    let (client_id, data, metadata, token_hash, created_at, created_by, last_used_at) = r;
    RegisteredClient {
        client_id,
        data,
        metadata,
        token_hash,
        created_at,
        created_by,
        last_used_at,
    }
}

/// `(registrations by `address` after `since`, live registrations)` on `conn`.
async fn counts(
    conn: &mut sqlx::PgConnection,
    address: &str,
    since: i64,
) -> Result<(u64, u64), StoreError> {
    let by: i64 = sqlx::query_scalar(sql::REGISTERED_BY_ADDRESS)
        .bind(address)
        .bind(since)
        .fetch_one(&mut *conn)
        .await?;
    let live: i64 = sqlx::query_scalar(sql::REGISTERED_LIVE)
        .fetch_one(&mut *conn)
        .await?;
    Ok((by.max(0) as u64, live.max(0) as u64))
}

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

    async fn register_client(
        &self,
        client: &RegisteredClient,
        caps: &RegistrationCaps,
    ) -> Result<RegisterOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Every replica's registration waits here until the one before it committed, so the
        // counts below include it: two registrations at the cap cannot both pass.
        sqlx::query(LOCK_REGISTRATIONS).execute(&mut *tx).await?;
        let (by, live) = counts(&mut tx, &client.created_by, caps.address_since).await?;
        let outcome = if by >= caps.per_address {
            RegisterOutcome::AddressCap
        } else if live >= caps.total {
            RegisterOutcome::TotalCap
        } else {
            sqlx::query(sql::INSERT_REGISTERED)
                .bind(&client.client_id)
                .bind(&client.data)
                .bind(&client.metadata)
                .bind(&client.token_hash)
                .bind(client.created_at)
                .bind(&client.created_by)
                .execute(&mut *tx)
                .await?;
            RegisterOutcome::Registered
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn registration_counts(
        &self,
        address: &str,
        since: i64,
    ) -> Result<(u64, u64), StoreError> {
        let mut conn = self.pool.acquire().await?;
        counts(&mut conn, address, since).await
    }

    async fn registered_client(
        &self,
        client_id: &str,
    ) -> Result<Option<RegisteredClient>, StoreError> {
        let row: Option<Row> = sqlx::query_as(sql::registered_client())
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(registered))
    }

    async fn registered_clients(&self) -> Result<Vec<RegisteredClient>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(sql::registered_clients())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(registered).collect())
    }

    async fn touch_registered_client(&self, client_id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(sql::TOUCH_REGISTERED)
            .bind(now)
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn remove_registered_client(
        &self,
        client_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(sql::REMOVE_REGISTERED)
            .bind(now)
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn unused_registered_clients(&self, used_before: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(sql::UNUSED_REGISTERED)
            .bind(used_before)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn removed_registered_clients(&self, since: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(sql::REMOVED_REGISTERED)
            .bind(since)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn purge_registered_clients(
        &self,
        created_before: i64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(sql::PURGE_REGISTERED)
            .bind(created_before)
            .fetch_all(&self.pool)
            .await?)
    }
}
