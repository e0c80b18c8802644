//! PostgreSQL, for several replicas sharing one database. Cross-replica critical sections
//! (key rotation, extending the audit chain) are row locks taken inside the transaction.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Pool, Postgres};

use super::StoreError;
use super::ciba::ciba_sql_store;
use super::conns::{Dedicated, readers};
use super::sql::{sql_store, sqlx_writer};
use super::tpm::tpm_sql_store;
use super::web::web_sql_store;

pub struct PostgresStore {
    pool: Pool<Postgres>,
    /// Token lookups on the hot paths.
    readers: Dedicated<Postgres>,
    /// The group-commit writer's own connection.
    write_conn: Dedicated<Postgres>,
}

impl PostgresStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await?;
        Ok(Self {
            pool,
            readers: Dedicated::new(opts.clone(), readers(max_connections)),
            // Batches of every size up to 256 rows, three kinds of row: each its own statement.
            write_conn: Dedicated::new(opts.statement_cache_capacity(1024), 1),
        })
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }
}

sql_store!(PostgresStore, Postgres, "postgres");
sqlx_writer!(
    PostgresStore,
    Postgres,
    super::sql::PG_REVOKE_SUBTREE,
    super::sql::PG_REVOKE_SESSION
);
web_sql_store!(PostgresStore, Postgres);
tpm_sql_store!(PostgresStore, Postgres);
ciba_sql_store!(PostgresStore, Postgres);
