//! [`SsfStreamStore`] on PostgreSQL, shared by replicas: a client's creations are serialised
//! by an advisory transaction lock on its id, so two replicas cannot both pass its cap.

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, Transaction};

use super::PostgresStore;
use crate::store::StoreError;
use crate::store::ssf::{
    self, Method, SsfStreamStore, Status, StoredStream, from_row, list_text, outbox_stream, sql,
};

/// Serialises one client's stream creations (the key pair's first half is RFC 8935's number;
/// the registrations' lock is the one-key form, a separate lock space).
const LOCK_CLIENT: &str = "SELECT pg_advisory_xact_lock(8935, hashtext($1))";

/// Every receiver stream a SET may go to, read in the batch's transaction.
pub(super) async fn targets(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<Vec<ssf::Target>, StoreError> {
    let conn: &mut PgConnection = tx;
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as(sql::TARGETS).fetch_all(conn).await?;
    Ok(rows.into_iter().filter_map(ssf::target).collect())
}

async fn drop_pending(tx: &mut PgConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query(sql::DROP_PENDING)
        .bind(outbox_stream(id, Method::Push))
        .bind(outbox_stream(id, Method::Poll))
        .execute(tx)
        .await?;
    Ok(())
}

#[async_trait]
impl SsfStreamStore for PostgresStore {
    async fn create_ssf_stream(
        &self,
        s: &StoredStream,
        max_per_client: u64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(LOCK_CLIENT)
            .bind(&s.client_id)
            .execute(&mut *tx)
            .await?;
        let (n,): (i64,) = sqlx::query_as(sql::COUNT_OF)
            .bind(&s.client_id)
            .fetch_one(&mut *tx)
            .await?;
        if n.max(0) as u64 >= max_per_client {
            return Ok(false);
        }
        sqlx::query(sql::INSERT)
            .bind(&s.id)
            .bind(&s.client_id)
            .bind(s.method.as_str())
            .bind(&s.endpoint_url)
            .bind(&s.authorization_header)
            .bind(list_text(&s.events_requested))
            .bind(list_text(&s.events_delivered))
            .bind(&s.description)
            .bind(s.status.as_str())
            .bind(&s.status_reason)
            .bind(s.created_at)
            .bind(s.updated_at)
            .bind(s.verified_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn ssf_stream(&self, id: &str) -> Result<Option<StoredStream>, StoreError> {
        let row: Option<ssf::Row> = sqlx::query_as(&sql::one())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(from_row).transpose()
    }

    async fn ssf_streams_of(&self, client_id: &str) -> Result<Vec<StoredStream>, StoreError> {
        let rows: Vec<ssf::Row> = sqlx::query_as(&sql::of_client())
            .bind(client_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(from_row).collect()
    }

    async fn ssf_stream_owners(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(sql::OWNERS).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(c,)| c).collect())
    }

    async fn replace_ssf_stream(&self, s: &StoredStream, was: Method) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(sql::REPLACE)
            .bind(s.method.as_str())
            .bind(&s.endpoint_url)
            .bind(&s.authorization_header)
            .bind(list_text(&s.events_requested))
            .bind(list_text(&s.events_delivered))
            .bind(&s.description)
            .bind(s.updated_at)
            .bind(&s.id)
            .bind(&s.client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 && was != s.method {
            sqlx::query(sql::MOVE_PENDING)
                .bind(s.outbox())
                .bind(outbox_stream(&s.id, was))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn delete_ssf_stream(&self, id: &str, client_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(sql::DELETE)
            .bind(id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 {
            drop_pending(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn set_ssf_stream_status(
        &self,
        id: &str,
        client_id: &str,
        status: Status,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(sql::STATUS)
            .bind(status.as_str())
            .bind(reason)
            .bind(now)
            .bind(id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 && status == Status::Disabled {
            drop_pending(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn verify_ssf_stream(
        &self,
        id: &str,
        client_id: &str,
        now: i64,
        interval: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(sql::VERIFY)
            .bind(now)
            .bind(id)
            .bind(client_id)
            .bind(now - interval)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }
}
