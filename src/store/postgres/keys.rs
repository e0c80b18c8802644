//! [`KeyStore`] on PostgreSQL: a rotation runs under the `keys` row lock, so replicas rotate in
//! turn.

use async_trait::async_trait;

use super::PostgresStore;
use crate::jose::{KeyChange, KeyRow, RotationMode};
use crate::store::records::KeyDbRow;
use crate::store::sql;
use crate::store::{KeyStore, StoreError};

#[async_trait]
impl KeyStore for PostgresStore {
    async fn load_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query_as::<_, KeyDbRow>(sql::LOAD_KEYS)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn rotate_keys(
        &self,
        mode: RotationMode,
        now: i64,
        retired_ttl: i64,
        fresh: &(dyn Fn() -> KeyRow + Send + Sync),
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::LOCK_KEYS)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let rows = (sqlx::query_as::<_, KeyDbRow>(sql::LOAD_KEYS).fetch_all(&mut *tx))
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect::<Result<Vec<_>, _>>()?;
        let (changes, rotated) =
            crate::jose::plan_rotation(&rows, mode, now, retired_ttl, &mut || fresh());
        for c in &changes {
            let q = match c {
                KeyChange::Insert(k) => sqlx::query(sql::INSERT_KEY)
                    .bind(&k.kid)
                    .bind(k.state.as_str())
                    .bind(&k.private_sealed)
                    .bind(&k.public_jwk)
                    .bind(k.created_at)
                    .bind(k.activated_at)
                    .bind(k.retired_at)
                    .bind(k.publish_until),
                KeyChange::Promote { kid, at } => sqlx::query(sql::PROMOTE_KEY).bind(at).bind(kid),
                KeyChange::Retire {
                    kid,
                    at,
                    publish_until,
                } => sqlx::query(sql::RETIRE_KEY)
                    .bind(at)
                    .bind(publish_until)
                    .bind(kid),
                KeyChange::Delete { kid } => sqlx::query(sql::DELETE_KEY).bind(kid),
            };
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(rotated)
    }
}
