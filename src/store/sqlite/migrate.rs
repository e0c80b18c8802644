//! SQLite's migrations, applied on the writer's connection and recorded in `_sqlx_migrations`
//! exactly as sqlx 0.8 did before (version, description, success, the SHA-384 of the SQL text,
//! the execution time in nanoseconds), so a database sqlx migrated opens as it is and either
//! can migrate the other's. The migrations themselves are embedded by `sqlx::migrate!`, which
//! computes their descriptions and checksums as sqlx always has; only the driver is rusqlite.
//! As with sqlx: a failed migration leaves nothing (each runs in a transaction with its
//! record), and a recorded migration that is unknown or whose text changed is refused.

use std::collections::HashMap;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sqlx::migrate::{MigrateError, Migration, Migrator};

use crate::store::StoreError;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// sqlx's table, as sqlx creates it (the text is kept as it is, so the schema is the same
/// whoever made it).
const MIGRATIONS_TABLE: &str = r#"
CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
);
                "#;

pub fn run(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(MIGRATIONS_TABLE)?;
    let dirty: Option<i64> = conn
        .query_row(
            "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(v) = dirty {
        return Err(MigrateError::Dirty(v).into());
    }
    let applied: HashMap<i64, Vec<u8>> = {
        let mut s =
            conn.prepare("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")?;
        let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let known: Vec<&Migration> = (MIGRATOR.iter())
        .filter(|m| !m.migration_type.is_down_migration())
        .collect();
    if let Some(v) = (applied.keys()).find(|v| !known.iter().any(|m| m.version == **v)) {
        return Err(MigrateError::VersionMissing(*v).into());
    }
    for m in known {
        match applied.get(&m.version) {
            Some(sum) if *sum != *m.checksum => {
                return Err(MigrateError::VersionMismatch(m.version).into());
            }
            Some(_) => {}
            None => apply(conn, m)?,
        }
    }
    Ok(())
}

fn apply(conn: &mut Connection, m: &Migration) -> Result<(), StoreError> {
    let start = Instant::now();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(&m.sql)
        .map_err(|e| StoreError::Migration(m.version, e))?;
    tx.execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (?1, ?2, TRUE, ?3, -1)",
        params![m.version, &*m.description, &*m.checksum],
    )?;
    tx.commit()?;
    // Like sqlx: the time is recorded after the commit, for the record only.
    let nanos = i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX);
    conn.execute(
        "UPDATE _sqlx_migrations SET execution_time = ?1 WHERE version = ?2",
        params![nanos, m.version],
    )?;
    Ok(())
}
