//! PostgreSQL, for several replicas sharing one database. Cross-replica critical sections
//! (key rotation, extending the audit chain) are row locks taken inside the transaction.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Pool, Postgres};

use std::sync::Arc;

use super::ciba::ciba_sql_store;
use super::conns::{Dedicated, readers};
use super::pg_lookup::Lookups;
use super::sql::{sql_store, sqlx_writer};
use super::tpm::tpm_sql_store;
use super::web::web_sql_store;
use super::{StoreError, TokenRecord};

pub struct PostgresStore {
    pool: Pool<Postgres>,
    /// Connections of the token lookups on the hot paths ...
    readers: Arc<Dedicated<Postgres>>,
    /// ... which are coalesced into one query per batch.
    lookups: Lookups,
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
        let n = readers(max_connections);
        let conns = Arc::new(Dedicated::new(opts.clone(), n));
        Ok(Self {
            pool,
            lookups: Lookups::start(Arc::clone(&conns), n),
            readers: conns,
            // Batches of every size up to 256 rows, three kinds of row: each its own statement.
            write_conn: Dedicated::new(opts.statement_cache_capacity(1024), 1),
        })
    }

    async fn lookup_token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        self.lookups.find(token_hash).await
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
