//! SQLite's migrations stay compatible with databases that sqlx migrated: the store applies
//! only what `_sqlx_migrations` does not record, and records what it applies the same way.

use mandate::store::WriteOutcome;
use sqlx::Row;

use super::{h, issue, key};
use crate::helpers::*;

/// The schema (every table's and index's SQL) and the migration records, without times.
async fn schema(url: &str) -> (Vec<String>, Vec<(i64, String, bool, Vec<u8>)>) {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let sql: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(sql, name) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let rows = sqlx::query(
        "SELECT version, description, success, checksum, execution_time FROM _sqlx_migrations \
         ORDER BY version",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let applied = rows
        .iter()
        .map(|r| {
            assert!(r.get::<i64, _>(4) >= 0, "the execution time is recorded");
            (r.get(0), r.get(1), r.get(2), r.get(3))
        })
        .collect();
    pool.close().await;
    (sql, applied)
}

async fn migrate_with_sqlx(url: &str) {
    let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
        .unwrap()
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    sqlx::migrate!("migrations/sqlite")
        .run(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn a_database_sqlx_migrated_opens_as_is_and_a_fresh_one_gets_the_same_schema() {
    let old = test_db(Backend::Sqlite).await;
    migrate_with_sqlx(&old.url).await;
    let before = schema(&old.url).await;
    let s = mandate::store::open(&old.url, 2).await.unwrap();
    s.migrate().await.unwrap();
    let outcomes = s.commit_batch(&[issue("t", None)], 1, None, &key()).await;
    assert_eq!(outcomes.unwrap(), [WriteOutcome::Done]);
    assert!(s.find_token(&h("t")).await.unwrap().is_some());
    s.close().await;
    assert_eq!(schema(&old.url).await, before, "nothing re-applied");

    let fresh = test_db(Backend::Sqlite).await;
    let s = mandate::store::open(&fresh.url, 2).await.unwrap();
    s.migrate().await.unwrap();
    s.close().await;
    assert_eq!(schema(&fresh.url).await, before);
    // And sqlx, for one, finds nothing to do and nothing changed in what the store recorded.
    migrate_with_sqlx(&fresh.url).await;
    assert_eq!(schema(&fresh.url).await, before);
}

/// A recorded migration whose text changed since is refused, as sqlx refused it, rather than
/// run again or ignored.
#[tokio::test]
async fn a_recorded_migration_that_changed_is_refused() {
    let db = test_db(Backend::Sqlite).await;
    migrate_with_sqlx(&db.url).await;
    exec_sql(
        &db,
        "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 3",
    )
    .await;
    let s = mandate::store::open(&db.url, 2).await.unwrap();
    let err = s.migrate().await.unwrap_err().to_string();
    assert!(err.contains('3'), "{err}");
    s.close().await;
}
