//! [`KeyStore`] on SQLite: a rotation runs on the writer, under the `keys` row lock like
//! PostgreSQL's (which here is the database's write lock).

use async_trait::async_trait;
use rusqlite::params;

use super::{SqliteStore, rows};
use crate::jose::{KeyChange, KeyRow, KeyState, RotationMode};
use crate::store::sql;
use crate::store::{KeyStore, StoreError};

/// How many fresh keys a rotation may ask for: two on the first start (one to sign at once, one
/// to publish ahead), otherwise one. The generator cannot cross to the writer's thread, so they
/// are made before, and those not needed are dropped.
const FRESH_KEYS: usize = 2;

#[async_trait]
impl KeyStore for SqliteStore {
    async fn load_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let rows = self.readers.read(|c| {
            let mut s = c.prepare_cached(sql::LOAD_KEYS)?;
            let rows = s.query_map([], rows::key)?;
            rows.collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn rotate_keys(
        &self,
        mode: RotationMode,
        now: i64,
        retired_ttl: i64,
        fresh: &(dyn Fn() -> KeyRow + Send + Sync),
    ) -> Result<bool, StoreError> {
        let made: Vec<KeyRow> = (0..FRESH_KEYS).map(|_| fresh()).collect();
        self.writer
            .tx(move |tx| {
                (tx.prepare_cached(sql::LOCK_KEYS)?).execute([now])?;
                let rows = {
                    let mut s = tx.prepare_cached(sql::LOAD_KEYS)?;
                    let rows = s.query_map([], rows::key)?;
                    rows.collect::<Result<Vec<_>, _>>()?
                };
                let rows =
                    (rows.into_iter().map(TryInto::try_into)).collect::<Result<Vec<_>, _>>()?;
                let mut made = made.into_iter();
                let mut short = false;
                let mut next = || {
                    made.next().unwrap_or_else(|| {
                        short = true;
                        placeholder(now)
                    })
                };
                let (changes, rotated) =
                    crate::jose::plan_rotation(&rows, mode, now, retired_ttl, &mut next);
                if short {
                    return Err(StoreError::Corrupt(format!(
                        "a key rotation asked for more than {FRESH_KEYS} fresh keys"
                    )));
                }
                for c in &changes {
                    match c {
                        KeyChange::Insert(k) => {
                            (tx.prepare_cached(sql::INSERT_KEY)?).execute(params![
                                k.kid,
                                k.state.as_str(),
                                k.private_sealed,
                                k.public_jwk,
                                k.created_at,
                                k.activated_at,
                                k.retired_at,
                                k.publish_until,
                            ])?
                        }
                        KeyChange::Promote { kid, at } => {
                            (tx.prepare_cached(sql::PROMOTE_KEY)?).execute(params![at, kid])?
                        }
                        KeyChange::Retire {
                            kid,
                            at,
                            publish_until,
                        } => (tx.prepare_cached(sql::RETIRE_KEY)?).execute(params![
                            at,
                            publish_until,
                            kid
                        ])?,
                        KeyChange::Delete { kid } => {
                            (tx.prepare_cached(sql::DELETE_KEY)?).execute([kid])?
                        }
                    };
                }
                Ok(rotated)
            })
            .await
    }
}

/// Stands in for a key that was not made; the rotation is then refused whole.
fn placeholder(now: i64) -> KeyRow {
    KeyRow {
        kid: String::new(),
        state: KeyState::Next,
        private_sealed: Vec::new(),
        public_jwk: String::new(),
        created_at: now,
        activated_at: None,
        retired_at: None,
        publish_until: None,
    }
}
