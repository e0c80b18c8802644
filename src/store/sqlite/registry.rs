//! [`RegistryStore`] on SQLite.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use crate::store::sql;
use crate::store::{
    Named, RegisterOutcome, RegisteredClient, RegistrationCaps, RegistryStore, StoreError,
};

/// A row of `sql::REGISTERED_COLUMNS`.
fn registered(r: &rusqlite::Row<'_>) -> rusqlite::Result<RegisteredClient> {
    Ok(RegisteredClient {
        client_id: r.get(0)?,
        data: r.get(1)?,
        metadata: r.get(2)?,
        token_hash: r.get(3)?,
        created_at: r.get(4)?,
        created_by: r.get(5)?,
        last_used_at: r.get(6)?,
    })
}

/// `(registrations by `address` after `since`, live registrations)` on `c`.
fn counts(c: &rusqlite::Connection, address: &str, since: i64) -> rusqlite::Result<(u64, u64)> {
    let by: i64 = (c.prepare_cached(sql::REGISTERED_BY_ADDRESS)?)
        .query_row(params![address, since], |r| r.get(0))?;
    let live: i64 = (c.prepare_cached(sql::REGISTERED_LIVE)?).query_row([], |r| r.get(0))?;
    Ok((by.max(0) as u64, live.max(0) as u64))
}

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

    async fn register_client(
        &self,
        client: &RegisteredClient,
        caps: &RegistrationCaps,
    ) -> Result<RegisterOutcome, StoreError> {
        let (c, caps) = (client.clone(), *caps);
        // The writer thread runs one immediate transaction at a time: count and insert are
        // never interleaved with another registration's.
        self.writer
            .tx(move |tx| {
                let (by, live) = counts(tx, &c.created_by, caps.address_since)?;
                if by >= caps.per_address {
                    return Ok(RegisterOutcome::AddressCap);
                }
                if live >= caps.total {
                    return Ok(RegisterOutcome::TotalCap);
                }
                (tx.prepare_cached(sql::INSERT_REGISTERED)?).execute(params![
                    c.client_id,
                    c.data,
                    c.metadata,
                    c.token_hash,
                    c.created_at,
                    c.created_by
                ])?;
                Ok(RegisterOutcome::Registered)
            })
            .await
    }

    async fn registration_counts(
        &self,
        address: &str,
        since: i64,
    ) -> Result<(u64, u64), StoreError> {
        self.readers.read(|c| counts(c, address, since))
    }

    async fn registered_client(
        &self,
        client_id: &str,
    ) -> Result<Option<RegisteredClient>, StoreError> {
        use rusqlite::OptionalExtension;
        self.readers.read(|c| {
            (c.prepare_cached(sql::registered_client())?)
                .query_row([client_id], registered)
                .optional()
        })
    }

    async fn registered_clients(&self) -> Result<Vec<RegisteredClient>, StoreError> {
        self.readers.read(|c| {
            let mut s = c.prepare_cached(sql::registered_clients())?;
            let rows = s.query_map([], registered)?;
            rows.collect()
        })
    }

    async fn touch_registered_client(&self, client_id: &str, now: i64) -> Result<(), StoreError> {
        let id = client_id.to_string();
        self.writer
            .tx(move |tx| {
                (tx.prepare_cached(sql::TOUCH_REGISTERED)?).execute(params![now, id])?;
                Ok(())
            })
            .await
    }

    async fn remove_registered_client(
        &self,
        client_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let id = client_id.to_string();
        self.writer
            .tx(move |tx| {
                Ok((tx.prepare_cached(sql::REMOVE_REGISTERED)?).execute(params![now, id])? == 1)
            })
            .await
    }

    async fn unused_registered_clients(&self, used_before: i64) -> Result<Vec<String>, StoreError> {
        self.readers.read(|c| {
            let mut s = c.prepare_cached(sql::UNUSED_REGISTERED)?;
            let rows = s.query_map([used_before], |r| r.get(0))?;
            rows.collect()
        })
    }

    async fn removed_registered_clients(&self, since: i64) -> Result<Vec<String>, StoreError> {
        self.readers.read(|c| {
            let mut s = c.prepare_cached(sql::REMOVED_REGISTERED)?;
            let rows = s.query_map([since], |r| r.get(0))?;
            rows.collect()
        })
    }

    async fn purge_registered_clients(
        &self,
        created_before: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.writer
            .tx(move |tx| {
                let mut s = tx.prepare_cached(sql::PURGE_REGISTERED)?;
                let rows = s.query_map([created_before], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })
            .await
    }
}
