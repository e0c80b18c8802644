//! PostgreSQL, for several replicas sharing one database, on sqlx. Cross-replica critical
//! sections (key rotation, extending the audit chain) are row locks taken inside the
//! transaction. Token lookups on the hot paths go through [`lookup::Lookups`] and the batches
//! through the writer's own connection ([`conns`]); everything else through the pool.

mod batch;
mod ciba;
mod conns;
mod keys;
mod lookup;
mod outbox;
mod registry;
mod ssf;
mod tokens;
mod tpm;
mod web;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Pool, Postgres};

use super::{PoolUse, Store, StoreError, StoreGauges};
use conns::{Dedicated, readers};
use lookup::Lookups;

pub struct PostgresStore {
    pool: Pool<Postgres>,
    /// Connections of the token lookups on the hot paths ...
    readers: Arc<Dedicated<Postgres>>,
    /// ... which are coalesced into one query per batch.
    lookups: Lookups,
    /// The group-commit writer's own connection.
    write_conn: Dedicated<Postgres>,
    /// Single-statement writes outside the group commit (attestation nonces made and used,
    /// identifiers used once): several at a time, where on the writer's one connection each
    /// waited for every other and for the batches (`/attest` stalled at 650/s).
    side_conns: Dedicated<Postgres>,
}

impl PostgresStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        // No JIT: once a table has grown past what the planner expects without statistics,
        // a revocation's estimated cost crossed `jit_above_cost` and every execution paid
        // 10-35 ms compiling itself (revocations fell to ~30/s behind it, and the batches
        // waiting on them with it). Short statements never win that back.
        let opts = PgConnectOptions::from_str(url)?.options([("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await?;
        let n = readers(max_connections);
        let conns = Arc::new(Dedicated::new(opts.clone(), n));
        Ok(Self {
            pool,
            lookups: Lookups::start(Arc::clone(&conns), n),
            readers: conns,
            side_conns: Dedicated::new(opts.clone(), n),
            // Batches of every size up to 256 rows, three kinds of row: each its own statement.
            write_conn: Dedicated::new(opts.statement_cache_capacity(1024), 1),
        })
    }

    /// Runs `statement` on a side connection (see `side_conns`) and returns how many rows it
    /// changed.
    async fn side_execute(
        &self,
        statement: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<u64, StoreError> {
        let mut lease = self.side_conns.get().await?;
        let r = statement.execute(lease.conn()?).await;
        Ok(lease.check(r)?.rows_affected())
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.readers.close().await;
        self.write_conn.close().await;
        self.side_conns.close().await;
        self.pool.close().await;
    }

    async fn gauges(&self, now: i64) -> Result<StoreGauges, StoreError> {
        let count = |sql: &'static str| async move {
            let rows: Vec<(String, i64)> =
                sqlx::query_as(sql).bind(now).fetch_all(&self.pool).await?;
            Ok::<_, StoreError>(
                rows.into_iter()
                    .map(|(k, n)| (k, n.max(0) as u64))
                    .collect::<Vec<_>>(),
            )
        };
        use super::outbox::OutboxStore;
        Ok(StoreGauges {
            live_tokens: count(super::sql::LIVE_TOKENS_BY_KIND).await?,
            approval_requests: count(super::sql::APPROVAL_REQUESTS_BY_STATE).await?,
            outbox: StoreGauges::outbox_states(self.outbox_counts().await?),
        })
    }

    fn pools(&self) -> Vec<PoolUse> {
        let size = self.pool.size() as usize;
        let mut pools = vec![PoolUse {
            name: "general",
            max: self.pool.options().get_max_connections() as usize,
            open: size,
            busy: size.saturating_sub(self.pool.num_idle()),
        }];
        for (name, conns) in [
            ("readers", &*self.readers),
            ("side", &self.side_conns),
            ("writer", &self.write_conn),
        ] {
            let (max, open, busy) = conns.usage();
            pools.push(PoolUse {
                name,
                max,
                open,
                busy,
            });
        }
        pools
    }
}

#[cfg(test)]
mod tests {
    /// Every connection the server opens (the pool, the lookups, the writer) runs without JIT.
    /// Runs where `TEST_DATABASE_URL` names a PostgreSQL database (`.ci/run` sets it).
    #[tokio::test]
    async fn connections_run_without_jit() {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("TEST_DATABASE_URL unset: skipped");
            return;
        };
        let s = super::PostgresStore::connect(&url, 2).await.unwrap();
        let show = "SELECT current_setting('jit')";
        let pooled: String = sqlx::query_scalar(show).fetch_one(&s.pool).await.unwrap();
        let mut lease = s.readers.get().await.unwrap();
        let reader: String = sqlx::query_scalar(show)
            .fetch_one(lease.conn().unwrap())
            .await
            .unwrap();
        drop(lease);
        let mut lease = s.write_conn.get().await.unwrap();
        let writer: String = sqlx::query_scalar(show)
            .fetch_one(lease.conn().unwrap())
            .await
            .unwrap();
        assert_eq!([pooled, reader, writer], ["off", "off", "off"]);
    }
}
