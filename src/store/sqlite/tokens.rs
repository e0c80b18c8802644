//! [`TokenStore`] on SQLite: lookups on the readers, single-use transitions on the writer.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, rows};
use crate::store::records::{self, TokenRow};
use crate::store::sql;
use crate::store::{Consumed, StoreError, TokenRecord, TokenStore};

/// The token with `jti` `$1` if its hash is `$2`: the table's key finds the row (one descent of
/// one B-tree instead of the hash index and then the table), the hash only has to match it
/// (`+` keeps the planner from answering through the hash index).
fn token_by_jti_and_hash() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT {} FROM tokens WHERE jti = $1 AND +token_hash = $2",
            sql::TOKEN_COLUMNS
        )
    })
}

impl SqliteStore {
    fn token_where(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = self.readers.read(|c| {
            c.prepare_cached(sql)?
                .query_row(params, rows::token)
                .optional()
        })?;
        row.map(TryInto::try_into).transpose()
    }
}

#[async_trait]
impl TokenStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "db.find_token", skip_all, fields(db.system = "sqlite"))]
    async fn find_token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        self.token_where(sql::token_by_hash(), [token_hash])
    }

    /// A JWT is found by the `jti` of its payload and its hash; anything else (refresh tokens
    /// are opaque) by its hash alone.
    #[tracing::instrument(level = "debug", name = "db.find_presented", skip_all, fields(db.system = "sqlite"))]
    async fn find_presented(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = crate::crypto::sha256(token.as_bytes());
        match crate::jose::unverified_jti(token) {
            Some(jti) => self.token_where(token_by_jti_and_hash(), params![jti, hash]),
            None => self.token_where(sql::token_by_hash(), [hash]),
        }
    }

    #[tracing::instrument(level = "debug", name = "db.consume_token", skip_all, fields(db.system = "sqlite"))]
    async fn consume_token(&self, token_hash: &[u8], now: i64) -> Result<Consumed, StoreError> {
        let token_hash = token_hash.to_vec();
        self.writer
            .tx(move |tx| {
                let won = (tx.prepare_cached(sql::CONSUME_TOKEN)?)
                    .execute(params![now, token_hash])?
                    == 1;
                let row: Option<TokenRow> = (tx.prepare_cached(sql::token_by_hash())?)
                    .query_row([&token_hash], rows::token)
                    .optional()?;
                records::consumed(won, row)
            })
            .await
    }

    async fn live_tokens_of(&self, sub: &str, now: i64) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self.readers.read(|c| {
            let mut s = c.prepare_cached(sql::live_tokens_of())?;
            let rows = s.query_map(params![sub, now], rows::token)?;
            rows.collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn find_token_by_jti(&self, jti: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.token_where(sql::token_by_jti(), [jti])
    }

    #[tracing::instrument(level = "debug", name = "db.use_once", skip_all, fields(db.system = "sqlite"))]
    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let key = key.to_string();
        self.writer
            .tx(move |tx| {
                tx.prepare_cached(sql::FORGET_USED_KEYS)?.execute([now])?;
                let done = (tx.prepare_cached(sql::USE_KEY)?).execute(params![key, expires_at])?;
                Ok(done == 1)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    /// The point of the `jti` lookup: SQLite's plan must search the table by its key (one
    /// B-tree), not the hash index and then the table.
    #[test]
    fn a_jwt_is_looked_up_by_the_table_key_not_the_hash_index() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::super::migrate::run(&mut conn).unwrap();
        let plan = |sql: &str| -> String {
            let mut s = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = s
                .query_map(["jti", "hash"], |r| r.get::<_, String>(3))
                .unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        let by_jti = plan(super::token_by_jti_and_hash());
        assert!(by_jti.contains("USING PRIMARY KEY (jti=?)"), "{by_jti}");
        assert!(!by_jti.contains("INDEX"), "{by_jti}");
        // The hash lookup (opaque tokens) does go through the index.
        let by_hash =
            plan(&crate::store::sql::token_by_hash().replace("$1", "$1 AND $2 IS NOT NULL"));
        assert!(by_hash.contains("INDEX"), "{by_hash}");
    }
}
