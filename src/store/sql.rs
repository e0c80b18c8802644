//! The SQL both backends share. Placeholders are `$N`, which SQLite and PostgreSQL both accept,
//! and every type is one both map the same way (`i64`, text, bytes), so one body serves both.
//! What differs (connecting, migrations) lives in `sqlite.rs` and `postgres.rs`.

use crate::jose::{KeyRow, KeyState};
use crate::store::{StoreError, TokenKind, TokenRecord};

#[derive(sqlx::FromRow)]
pub(super) struct TokenRow {
    token_hash: Vec<u8>,
    jti: String,
    kind: String,
    sub: String,
    client_id: String,
    scope: String,
    aud: String,
    iat: i64,
    exp: i64,
    sid: Option<String>,
    parent_hash: Option<Vec<u8>>,
    act: Option<String>,
    may_act: Option<String>,
    revoked_at: Option<i64>,
    consumed_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<Self, StoreError> {
        Ok(TokenRecord {
            kind: TokenKind::parse(&r.kind)
                .ok_or_else(|| StoreError::CorruptRecord(format!("token kind {}", r.kind)))?,
            token_hash: r.token_hash,
            jti: r.jti,
            sub: r.sub,
            client_id: r.client_id,
            scope: r.scope,
            aud: r
                .aud
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            iat: r.iat,
            exp: r.exp,
            sid: r.sid,
            parent_hash: r.parent_hash,
            // Parsed once here, and refused if corrupt (fail closed; see oauth::act).
            act: r
                .act
                .as_deref()
                .map(crate::oauth::act::Actor::parse)
                .transpose()
                .map_err(|e| StoreError::CorruptRecord(e.to_string()))?,
            may_act: r
                .may_act
                .as_deref()
                .map(crate::oauth::act::MayAct::parse)
                .transpose()
                .map_err(|e| StoreError::CorruptRecord(e.to_string()))?,
            revoked_at: r.revoked_at,
            consumed_at: r.consumed_at,
            last_used_at: r.last_used_at,
        })
    }
}

impl TokenRow {
    pub(super) fn token_hash(&self) -> &[u8] {
        &self.token_hash
    }

    /// A row of `SELECT {TOKEN_COLUMNS}` read through rusqlite (SQLite's hot paths).
    pub(super) fn from_rusqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            token_hash: r.get(0)?,
            jti: r.get(1)?,
            kind: r.get(2)?,
            sub: r.get(3)?,
            client_id: r.get(4)?,
            scope: r.get(5)?,
            aud: r.get(6)?,
            iat: r.get(7)?,
            exp: r.get(8)?,
            sid: r.get(9)?,
            parent_hash: r.get(10)?,
            act: r.get(11)?,
            may_act: r.get(12)?,
            revoked_at: r.get(13)?,
            consumed_at: r.get(14)?,
            last_used_at: r.get(15)?,
        })
    }
}

pub(super) const TOKEN_COLUMNS: &str = "token_hash, jti, kind, sub, client_id, scope, aud, iat, exp, sid, \
     parent_hash, act, may_act, revoked_at, consumed_at, last_used_at";

#[derive(sqlx::FromRow)]
pub(super) struct KeyDbRow {
    kid: String,
    state: String,
    private_sealed: Vec<u8>,
    public_jwk: String,
    created_at: i64,
    activated_at: Option<i64>,
    retired_at: Option<i64>,
    publish_until: Option<i64>,
}

impl TryFrom<KeyDbRow> for KeyRow {
    type Error = StoreError;
    fn try_from(r: KeyDbRow) -> Result<Self, StoreError> {
        Ok(KeyRow {
            state: KeyState::parse(&r.state)
                .ok_or_else(|| StoreError::Corrupt(format!("key state {}", r.state)))?,
            kid: r.kid,
            private_sealed: r.private_sealed,
            public_jwk: r.public_jwk,
            created_at: r.created_at,
            activated_at: r.activated_at,
            retired_at: r.retired_at,
            publish_until: r.publish_until,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    pub seq: i64,
    pub ts: i64,
    pub kind: String,
    pub subject: Option<String>,
    pub actors: String,
    pub client_id: Option<String>,
    pub session: Option<String>,
    pub token_jti: Option<String>,
    pub detail: String,
    pub policy_version: Option<String>,
    pub chain_version: i32,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl From<AuditRow> for crate::audit::AuditEntry {
    fn from(r: AuditRow) -> Self {
        crate::audit::AuditEntry {
            seq: r.seq,
            ts: r.ts,
            kind: r.kind,
            subject: r.subject,
            actors: r.actors,
            client_id: r.client_id,
            session: r.session,
            token_jti: r.token_jti,
            detail: r.detail,
            policy_version: r.policy_version,
            chain_version: r.chain_version,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// Revokes a token and, through `parent_hash`, every token derived from it.
pub(super) const REVOKE_SUBTREE: &str = "WITH RECURSIVE subtree(h) AS ( \
       SELECT token_hash FROM tokens WHERE token_hash = $1 \
       UNION SELECT t.token_hash FROM tokens t JOIN subtree s ON t.parent_hash = s.h) \
     UPDATE tokens SET revoked_at = $2 WHERE token_hash IN (SELECT h FROM subtree) AND revoked_at IS NULL";

/// Revokes every token of a session and, through `parent_hash`, every token derived from them.
pub(super) const REVOKE_SESSION: &str = "WITH RECURSIVE subtree(h) AS ( \
       SELECT token_hash FROM tokens WHERE sid = $1 \
       UNION SELECT t.token_hash FROM tokens t JOIN subtree s ON t.parent_hash = s.h) \
     UPDATE tokens SET revoked_at = $2 WHERE token_hash IN (SELECT h FROM subtree) AND revoked_at IS NULL";

/// PostgreSQL's [`REVOKE_SUBTREE`]: the same rows, in a shape whose plan does not depend on table
/// statistics. Without them (a table grown from empty before autovacuum's first ANALYZE) the
/// planner ran the plain recursive join as a hash join over a sequential scan of `tokens` per
/// revocation (80–280 revocations/s at 30,000 tokens); the LATERAL probe (kept from being
/// flattened by `OFFSET 0`) and `= ANY(ARRAY(..))` leave it only index scans on `tokens_parent`
/// and the primary key.
pub(super) const PG_REVOKE_SUBTREE: &str = "WITH RECURSIVE subtree(h) AS ( \
       SELECT token_hash FROM tokens WHERE token_hash = $1 \
       UNION SELECT c.token_hash FROM subtree s CROSS JOIN LATERAL \
         (SELECT t.token_hash FROM tokens t WHERE t.parent_hash = s.h OFFSET 0) c) \
     UPDATE tokens SET revoked_at = $2 WHERE token_hash = ANY (ARRAY(SELECT h FROM subtree)) \
       AND revoked_at IS NULL";

/// PostgreSQL's [`REVOKE_SESSION`], shaped as [`PG_REVOKE_SUBTREE`].
pub(super) const PG_REVOKE_SESSION: &str = "WITH RECURSIVE subtree(h) AS ( \
       SELECT token_hash FROM tokens WHERE sid = $1 \
       UNION SELECT c.token_hash FROM subtree s CROSS JOIN LATERAL \
         (SELECT t.token_hash FROM tokens t WHERE t.parent_hash = s.h OFFSET 0) c) \
     UPDATE tokens SET revoked_at = $2 WHERE token_hash = ANY (ARRAY(SELECT h FROM subtree)) \
       AND revoked_at IS NULL";

/// Revokes the live tokens of a [`crate::store::Party`] (`$1` its key) and, through
/// `parent_hash`, everything derived from them; `pg` picks PostgreSQL's statistics-proof shape
/// (see [`PG_REVOKE_SUBTREE`]).
pub(super) fn revoke_party(party: &crate::store::Party, pg: bool) -> &'static str {
    use crate::store::Party;
    use std::sync::OnceLock;
    static SQL: [OnceLock<String>; 6] = [const { OnceLock::new() }; 6];
    let (i, seed) = match party {
        Party::Client(_) => (0, "client_id = $1"),
        Party::User(_) => (1, "sub = $1"),
        Party::Agent(_) => (2, "(sub = $1 OR actor = $1)"),
    };
    let i = if pg { i + 3 } else { i };
    SQL.get(i).map_or("", |cell| {
        cell.get_or_init(|| {
            let seed = format!("SELECT token_hash FROM tokens WHERE {seed} AND revoked_at IS NULL");
            if pg {
                format!(
                    "WITH RECURSIVE subtree(h) AS ({seed} \
                       UNION SELECT c.token_hash FROM subtree s CROSS JOIN LATERAL \
                         (SELECT t.token_hash FROM tokens t WHERE t.parent_hash = s.h OFFSET 0) c) \
                     UPDATE tokens SET revoked_at = $2 WHERE token_hash = ANY (ARRAY(SELECT h FROM subtree)) \
                       AND revoked_at IS NULL"
                )
            } else {
                format!(
                    "WITH RECURSIVE subtree(h) AS ({seed} \
                       UNION SELECT t.token_hash FROM tokens t JOIN subtree s ON t.parent_hash = s.h) \
                     UPDATE tokens SET revoked_at = $2 WHERE token_hash IN (SELECT h FROM subtree) AND revoked_at IS NULL"
                )
            }
        })
    })
}

/// Splits `rows` into slices of at most 256, so no statement nears SQLite's bound-parameter
/// limit. A batch is written with one statement per kind of row; each size is a distinct
/// statement, which the writer's connection keeps prepared (its cache holds every size).
pub(super) fn chunks<T>(rows: &[T]) -> std::slice::Chunks<'_, T> {
    rows.chunks(CHUNK)
}

const CHUNK: usize = 256;

/// `rows` split before their last [`chunks`] piece: the earlier pieces go in statements of
/// their own, the last rides in a batch's final statement (PostgreSQL's writer).
pub(super) fn split_last_chunk<T>(rows: &[T]) -> (&[T], &[T]) {
    rows.split_at(rows.len().saturating_sub(1) / CHUNK * CHUNK)
}

/// Statements both writers run as they are (`$N` placeholders suit sqlx and rusqlite alike).
pub(super) const CONSUME_TOKEN: &str =
    "UPDATE tokens SET consumed_at = $1 WHERE token_hash = $2 AND consumed_at IS NULL";
pub(super) const FORGET_USED_KEYS: &str = "DELETE FROM used_assertions WHERE expires_at < $1";
pub(super) const USE_KEY: &str = "INSERT INTO used_assertions (jti_key, expires_at) VALUES ($1, $2) ON CONFLICT (jti_key) DO NOTHING";
pub(super) const CREATE_NONCE: &str =
    "INSERT INTO attest_nonces (nonce, agent, expires_at) VALUES ($1, $2, $3)";
pub(super) const CONSUME_NONCE: &str = "UPDATE attest_nonces SET used_at = $1 WHERE nonce = $2 AND used_at IS NULL \
     AND expires_at > $1 AND (agent IS NULL OR agent = $3)";
pub(super) const FORGET_NONCES: &str = "DELETE FROM attest_nonces WHERE expires_at < $1";

/// What a single-use token's consumption found: `won` says whether this call consumed it.
pub(super) fn consumed(
    won: bool,
    row: Option<TokenRow>,
) -> Result<crate::store::Consumed, StoreError> {
    use crate::store::Consumed;
    Ok(match row {
        None => Consumed::NotFound,
        Some(r) if won => Consumed::Now(Box::new(r.try_into()?)),
        Some(r) => Consumed::Before(Box::new(r.try_into()?)),
    })
}

/// `SELECT` [`TOKEN_COLUMNS`] of the token with hash `$1`.
pub(super) fn token_by_hash() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = $1"))
}

/// `SELECT` [`TOKEN_COLUMNS`] of the token with `jti` `?1` if its hash is `?2` (SQLite only: `+`
/// keeps the planner from answering through the hash index; the key finds the row, the hash
/// only has to match it).
pub(super) fn token_by_jti() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE jti = ?1 AND +token_hash = ?2")
    })
}

/// Implements [`crate::store::Store`] for a struct with a `pool: sqlx::Pool<$db>` field and
/// inherent methods for what each backend does its own way: `run_migrations`, `lookup_token`,
/// `consume_once`, `use_key_once`, `write_nonce`, `use_nonce`, `write_batch` and
/// `close_writer` (PostgreSQL's from [`sqlx_writer!`], SQLite's in `sqlite.rs`).
macro_rules! sql_store {
    ($store:ty, $db:ty, $name:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $name
            }

            async fn migrate(&self) -> Result<(), $crate::store::StoreError> {
                self.run_migrations().await
            }

            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn close(&self) {
                self.close_writer().await;
                self.pool.close().await;
            }

            async fn upsert_client(
                &self,
                client_id: &str,
                data: &str,
                source: &str,
                now: i64,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO clients (client_id, data, source, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (client_id) DO UPDATE SET data = excluded.data, source = excluded.source, \
                     updated_at = excluded.updated_at",
                )
                .bind(client_id)
                .bind(data)
                .bind(source)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn load_clients(&self) -> Result<Vec<(String, String)>, $crate::store::StoreError> {
                Ok(sqlx::query_as::<_, (String, String)>("SELECT client_id, data FROM clients ORDER BY client_id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn load_keys(&self) -> Result<Vec<$crate::jose::KeyRow>, $crate::store::StoreError> {
                let rows = sqlx::query_as::<_, $crate::store::sql::KeyDbRow>(
                    "SELECT kid, state, private_sealed, public_jwk, created_at, activated_at, retired_at, \
                     publish_until FROM signing_keys ORDER BY created_at, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn rotate_keys(
                &self,
                mode: $crate::jose::RotationMode,
                now: i64,
                retired_ttl: i64,
                fresh: &(dyn Fn() -> $crate::jose::KeyRow + Send + Sync),
            ) -> Result<bool, $crate::store::StoreError> {
                use $crate::jose::KeyChange;
                let mut tx = self.pool.begin().await?;
                // Taking the row lock first serialises rotations across replicas and processes.
                sqlx::query("UPDATE locks SET taken_at = $1 WHERE name = 'keys'")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let rows = sqlx::query_as::<_, $crate::store::sql::KeyDbRow>(
                    "SELECT kid, state, private_sealed, public_jwk, created_at, activated_at, retired_at, \
                     publish_until FROM signing_keys",
                )
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<Vec<_>, _>>()?;
                let mut make = || fresh();
                let (changes, rotated) = $crate::jose::plan_rotation(&rows, mode, now, retired_ttl, &mut make);
                for c in &changes {
                    match c {
                        KeyChange::Insert(k) => {
                            sqlx::query(
                                "INSERT INTO signing_keys (kid, state, private_sealed, public_jwk, created_at, \
                                 activated_at, retired_at, publish_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                            )
                            .bind(&k.kid)
                            .bind(k.state.as_str())
                            .bind(&k.private_sealed)
                            .bind(&k.public_jwk)
                            .bind(k.created_at)
                            .bind(k.activated_at)
                            .bind(k.retired_at)
                            .bind(k.publish_until)
                            .execute(&mut *tx)
                            .await?;
                        }
                        KeyChange::Promote { kid, at } => {
                            sqlx::query("UPDATE signing_keys SET state = 'current', activated_at = $1 WHERE kid = $2")
                                .bind(at)
                                .bind(kid)
                                .execute(&mut *tx)
                                .await?;
                        }
                        KeyChange::Retire { kid, at, publish_until } => {
                            sqlx::query(
                                "UPDATE signing_keys SET state = 'retired', retired_at = $1, publish_until = $2 \
                                 WHERE kid = $3",
                            )
                            .bind(at)
                            .bind(publish_until)
                            .bind(kid)
                            .execute(&mut *tx)
                            .await?;
                        }
                        KeyChange::Delete { kid } => {
                            sqlx::query("DELETE FROM signing_keys WHERE kid = $1").bind(kid).execute(&mut *tx).await?;
                        }
                    }
                }
                tx.commit().await?;
                Ok(rotated)
            }

            async fn find_token(
                &self,
                token_hash: &[u8],
            ) -> Result<Option<$crate::store::TokenRecord>, $crate::store::StoreError> {
                self.lookup_token(token_hash).await
            }

            async fn find_presented(
                &self,
                token: &str,
            ) -> Result<Option<$crate::store::TokenRecord>, $crate::store::StoreError> {
                self.lookup_presented(token).await
            }

            async fn consume_token(
                &self,
                token_hash: &[u8],
                now: i64,
            ) -> Result<$crate::store::Consumed, $crate::store::StoreError> {
                self.consume_once(token_hash, now).await
            }

            async fn live_tokens_of(
                &self,
                sub: &str,
                now: i64,
            ) -> Result<Vec<$crate::store::TokenRecord>, $crate::store::StoreError> {
                static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                let sql = SQL.get_or_init(|| {
                    format!(
                        "SELECT {} FROM tokens WHERE sub = $1 AND exp > $2 AND revoked_at IS NULL ORDER BY iat, jti",
                        $crate::store::sql::TOKEN_COLUMNS
                    )
                });
                let rows = sqlx::query_as::<_, $crate::store::sql::TokenRow>(sql)
                    .bind(sub)
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn upsert_agent(
                &self,
                name: &str,
                data: &str,
                source: &str,
                now: i64,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO agents (name, data, source, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET data = excluded.data, source = excluded.source, \
                     updated_at = excluded.updated_at",
                )
                .bind(name)
                .bind(data)
                .bind(source)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn load_agents(&self) -> Result<Vec<(String, String)>, $crate::store::StoreError> {
                Ok(sqlx::query_as::<_, (String, String)>(
                    "SELECT name, data FROM agents WHERE disabled_at IS NULL ORDER BY name",
                )
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn create_nonce(
                &self,
                nonce: &str,
                agent: Option<&str>,
                expires_at: i64,
                now: i64,
            ) -> Result<(), $crate::store::StoreError> {
                self.write_nonce(nonce, agent, expires_at, now).await
            }

            async fn config_names(
                &self,
                kind: $crate::store::Named,
            ) -> Result<Vec<String>, $crate::store::StoreError> {
                use $crate::store::Named;
                let select = match kind {
                    Named::Clients => "SELECT client_id FROM clients WHERE source = 'config'",
                    Named::Agents => "SELECT name FROM agents WHERE source = 'config'",
                    Named::Users => "SELECT username FROM known_users",
                };
                let rows: Vec<(String,)> = sqlx::query_as(select).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(|(n,)| n).collect())
            }

            async fn forget_name(
                &self,
                kind: $crate::store::Named,
                name: &str,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::Named;
                let delete = match kind {
                    Named::Clients => "DELETE FROM clients WHERE client_id = $1",
                    Named::Agents => "DELETE FROM agents WHERE name = $1",
                    Named::Users => "DELETE FROM known_users WHERE username = $1",
                };
                sqlx::query(delete).bind(name).execute(&self.pool).await?;
                Ok(())
            }

            async fn remember_users(
                &self,
                names: &[String],
                now: i64,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                for name in names {
                    sqlx::query(
                        "INSERT INTO known_users (username, created_at) VALUES ($1, $2) \
                         ON CONFLICT (username) DO NOTHING",
                    )
                    .bind(name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn set_agent_disabled(
                &self,
                name: &str,
                at: Option<i64>,
            ) -> Result<bool, $crate::store::StoreError> {
                Ok(sqlx::query("UPDATE agents SET disabled_at = $1 WHERE name = $2")
                    .bind(at)
                    .bind(name)
                    .execute(&self.pool)
                    .await?
                    .rows_affected()
                    == 1)
            }

            async fn delete_agent(&self, name: &str) -> Result<bool, $crate::store::StoreError> {
                Ok(sqlx::query("DELETE FROM agents WHERE name = $1")
                    .bind(name)
                    .execute(&self.pool)
                    .await?
                    .rows_affected()
                    == 1)
            }

            async fn find_token_by_jti(
                &self,
                jti: &str,
            ) -> Result<Option<$crate::store::TokenRecord>, $crate::store::StoreError> {
                let sql = format!(
                    "SELECT {} FROM tokens WHERE jti = $1",
                    $crate::store::sql::TOKEN_COLUMNS
                );
                let row: Option<$crate::store::sql::TokenRow> =
                    sqlx::query_as(&sql).bind(jti).fetch_optional(&self.pool).await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn consume_nonce(&self, nonce: &str, agent: &str, now: i64) -> Result<bool, $crate::store::StoreError> {
                self.use_nonce(nonce, agent, now).await
            }

            async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, $crate::store::StoreError> {
                self.use_key_once(key, expires_at, now).await
            }

            async fn commit_batch(
                &self,
                items: &[$crate::store::BatchItem],
                now: i64,
                policy_version: Option<&str>,
                key: &$crate::audit::ChainKey,
            ) -> Result<Vec<$crate::store::Outcome>, $crate::store::StoreError> {
                self.write_batch(items, now, policy_version, key).await
            }

            async fn audit_entries(
                &self,
                after: i64,
                limit: i64,
            ) -> Result<Vec<$crate::audit::AuditEntry>, $crate::store::StoreError> {
                let rows = sqlx::query_as::<_, $crate::store::sql::AuditRow>(
                    "SELECT seq, ts, kind, subject, actors, client_id, session, token_jti, detail, policy_version, chain_version, \
                     prev_hash, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn audit_for_session(
                &self,
                sid: &str,
                limit: i64,
            ) -> Result<Vec<$crate::audit::AuditEntry>, $crate::store::StoreError> {
                let rows = sqlx::query_as::<_, $crate::store::sql::AuditRow>(
                    "SELECT seq, ts, kind, subject, actors, client_id, session, token_jti, detail, policy_version, \
                     chain_version, prev_hash, hash FROM audit_log WHERE session = $1 ORDER BY seq DESC LIMIT $2",
                )
                .bind(sid)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                let mut v: Vec<$crate::audit::AuditEntry> = rows.into_iter().map(Into::into).collect();
                v.reverse();
                Ok(v)
            }

            async fn audit_head(&self) -> Result<(i64, Vec<u8>), $crate::store::StoreError> {
                Ok(sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?)
            }
        }

    };
}

pub(super) use sql_store;

/// The writes through sqlx (PostgreSQL): `consume_once` and `use_key_once` on the pool, and the
/// group-commit writer's `write_batch`, `write_nonce` and `use_nonce` on a
/// `write_conn: Dedicated<$db>` connection, with revocations by
/// `$revoke_subtree` and `$revoke_session`. SQLite has its own (`sqlite_writer.rs`).
macro_rules! sqlx_writer {
    ($store:ty, $db:ty, $revoke_subtree:expr, $revoke_session:expr) => {
        impl $store {
            async fn close_writer(&self) {
                self.readers.close().await;
                self.write_conn.close().await;
            }

            async fn lookup_presented(
                &self,
                token: &str,
            ) -> Result<Option<$crate::store::TokenRecord>, $crate::store::StoreError> {
                self.lookup_token(&$crate::crypto::sha256(token.as_bytes())).await
            }

            async fn consume_once(
                &self,
                token_hash: &[u8],
                now: i64,
            ) -> Result<$crate::store::Consumed, $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                let won = sqlx::query($crate::store::sql::CONSUME_TOKEN)
                .bind(now)
                .bind(token_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                let row = sqlx::query_as::<_, $crate::store::sql::TokenRow>($crate::store::sql::token_by_hash())
                    .bind(token_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                $crate::store::sql::consumed(won, row)
            }

            async fn use_key_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query($crate::store::sql::FORGET_USED_KEYS).bind(now).execute(&mut *tx).await?;
                let done = sqlx::query($crate::store::sql::USE_KEY)
                .bind(key)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(done.rows_affected() == 1)
            }

            async fn write_nonce(
                &self,
                nonce: &str,
                agent: Option<&str>,
                expires_at: i64,
                now: i64,
            ) -> Result<(), $crate::store::StoreError> {
                // On the writer's connection, like the batches: a pooled connection would add a
                // liveness ping each way (see conns.rs).
                let mut lease = self.write_conn.get().await?;
                let r = sqlx::query($crate::store::sql::FORGET_NONCES)
                    .bind(now)
                    .execute(lease.conn()?)
                    .await;
                lease.check(r)?;
                let r = sqlx::query($crate::store::sql::CREATE_NONCE)
                    .bind(nonce)
                    .bind(agent)
                    .bind(expires_at)
                    .execute(lease.conn()?)
                    .await;
                lease.check(r).map(|_| ())
            }

            async fn use_nonce(&self, nonce: &str, agent: &str, now: i64) -> Result<bool, $crate::store::StoreError> {
                let mut lease = self.write_conn.get().await?;
                let r = Self::consume_nonce_on(lease.conn()?, nonce, agent, now).await;
                lease.check(r)
            }

            async fn write_batch(
                &self,
                items: &[$crate::store::BatchItem],
                now: i64,
                policy_version: Option<&str>,
                key: &$crate::audit::ChainKey,
            ) -> Result<Vec<$crate::store::Outcome>, $crate::store::StoreError> {
                let mut lease = self.write_conn.get().await?;
                let r = Self::commit_batch_on(lease.conn()?, items, now, policy_version, key).await;
                lease.check(r)
            }

            /// On the writer's connection, for the reason `write_nonce` gives.
            async fn consume_nonce_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                nonce: &str,
                agent: &str,
                now: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                use sqlx::Connection;
                let mut tx = conn.begin().await?;
                let won = sqlx::query($crate::store::sql::CONSUME_NONCE)
                .bind(now)
                .bind(nonce)
                .bind(agent)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                // Forget nonces that expired long ago.
                sqlx::query($crate::store::sql::FORGET_NONCES).bind(now - 3600).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(won)
            }

            /// One transaction for the whole batch; see `store::writer`.
            async fn commit_batch_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                items: &[$crate::store::BatchItem],
                now: i64,
                policy_version: Option<&str>,
                key: &$crate::audit::ChainKey,
            ) -> Result<Vec<$crate::store::Outcome>, $crate::store::StoreError> {
                use sqlx::Connection;
                use $crate::store::{Outcome, TokenRecord};
                use $crate::store::batch::Revocation;
                let mut tx = conn.begin().await?;
                // Locks the chain head (a row lock on PostgreSQL, the write lock on SQLite) so
                // that replicas extend one chain in turn.
                let (head_seq, head_hash): (i64, Vec<u8>) =
                    sqlx::query_as("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
                        .fetch_one(&mut *tx)
                        .await?;
                let mut outcomes = Vec::with_capacity(items.len());
                // Rows are written many to a statement; a run's tokens are written before its
                // revocation, so that the revocation sees them; the last run's ride in the
                // batch's final statement.
                let mut pending: Vec<&TokenRecord> = Vec::new();
                for run in $crate::store::batch::runs(items) {
                    let live = Self::live_among(&mut tx, &run.parents()).await?;
                    let decided = run.decide(|p| live.contains(p));
                    outcomes.extend(decided.outcomes);
                    pending = decided.tokens;
                    let Some(revocation) = run.revocation() else { continue };
                    Self::insert_tokens(&mut tx, &pending).await?;
                    pending.clear();
                    let r = match revocation {
                        Revocation::Token(h) => sqlx::query($revoke_subtree).bind(h),
                        Revocation::Session(sid) => sqlx::query($revoke_session).bind(sid),
                        Revocation::Party(party) => sqlx::query($crate::store::sql::revoke_party(party, true)).bind(party.key()),
                    }
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    outcomes.push(Outcome::Revoked(r.rows_affected()));
                }
                let touches = $crate::store::batch::touches(items);
                let events = $crate::store::batch::events(items, &outcomes);
                // The batch's last rows and the new chain head go in one statement (a
                // data-modifying WITH runs to completion whether or not the statement reads
                // it): one round trip where there was one per kind of row, plus the head.
                let (earlier, last_tokens) = $crate::store::sql::split_last_chunk(&pending);
                Self::insert_tokens(&mut tx, earlier).await?;
                // Touches by one resource server (the usual case): the last piece rides in the
                // final statement too.
                let single = touches.len() == 1;
                let mut last_touch: Option<(&str, &[&str])> = None;
                for (by, jtis) in &touches {
                    let (earlier, last) = if single {
                        $crate::store::sql::split_last_chunk(jtis)
                    } else {
                        (jtis.as_slice(), &[][..])
                    };
                    for chunk in $crate::store::sql::chunks(earlier) {
                        let mut q = sqlx::QueryBuilder::<$db>::new("");
                        Self::push_touch(&mut q, now, by, chunk);
                        q.build().execute(&mut *tx).await?;
                    }
                    if !last.is_empty() {
                        last_touch = Some((by, last));
                    }
                }
                let entries = $crate::audit::chain(head_seq, &head_hash, now, policy_version, &events, key);
                let (earlier, last_entries) = $crate::store::sql::split_last_chunk(&entries);
                for chunk in $crate::store::sql::chunks(earlier) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("");
                    Self::push_audit(&mut q, chunk);
                    q.build().execute(&mut *tx).await?;
                }
                let mut q = sqlx::QueryBuilder::<$db>::new("WITH ");
                let mut parts = 0;
                if !last_tokens.is_empty() {
                    q.push("t AS (");
                    Self::push_tokens(&mut q, last_tokens);
                    q.push(")");
                    parts += 1;
                }
                if let Some((by, jtis)) = last_touch {
                    q.push(if parts > 0 { ", u AS (" } else { "u AS (" });
                    Self::push_touch(&mut q, now, by, jtis);
                    q.push(")");
                    parts += 1;
                }
                if !last_entries.is_empty() {
                    q.push(if parts > 0 { ", a AS (" } else { "a AS (" });
                    Self::push_audit(&mut q, last_entries);
                    q.push(")");
                    parts += 1;
                }
                if parts > 0 {
                    match entries.last() {
                        Some(head) => {
                            q.push(" UPDATE audit_head SET seq = ")
                                .push_bind(head.seq)
                                .push(", hash = ")
                                .push_bind(&head.hash)
                                .push(" WHERE id = 1");
                        }
                        None => {
                            q.push(" SELECT 1");
                        }
                    }
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(outcomes)
            }

            /// Which of `hashes` name a token that is not revoked.
            async fn live_among(
                tx: &mut sqlx::Transaction<'_, $db>,
                hashes: &[&[u8]],
            ) -> Result<std::collections::HashSet<Vec<u8>>, $crate::store::StoreError> {
                let mut live = std::collections::HashSet::new();
                for chunk in $crate::store::sql::chunks(hashes) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT token_hash FROM tokens WHERE revoked_at IS NULL AND token_hash IN (",
                    );
                    let mut sep = q.separated(", ");
                    for h in chunk {
                        sep.push_bind(*h);
                    }
                    q.push(")");
                    let rows: Vec<(Vec<u8>,)> = q.build_query_as().fetch_all(&mut **tx).await?;
                    live.extend(rows.into_iter().map(|(h,)| h));
                }
                Ok(live)
            }

            /// Writes token records, many to a statement.
            async fn insert_tokens(
                tx: &mut sqlx::Transaction<'_, $db>,
                rows: &[&$crate::store::TokenRecord],
            ) -> Result<(), $crate::store::StoreError> {
                for chunk in $crate::store::sql::chunks(rows) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("");
                    Self::push_tokens(&mut q, chunk);
                    q.build().execute(&mut **tx).await?;
                }
                Ok(())
            }

            fn push_tokens<'q>(
                q: &mut sqlx::QueryBuilder<'q, $db>,
                rows: &'q [&$crate::store::TokenRecord],
            ) {
                q.push(
                    "INSERT INTO tokens (token_hash, jti, kind, sub, client_id, scope, aud, iat, exp, sid, \
                     parent_hash, act, may_act, actor) ",
                );
                q.push_values(rows, |mut b, t| {
                    b.push_bind(&t.token_hash)
                        .push_bind(&t.jti)
                        .push_bind(t.kind.as_str())
                        .push_bind(&t.sub)
                        .push_bind(&t.client_id)
                        .push_bind(&t.scope)
                        .push_bind(t.aud.join(" "))
                        .push_bind(t.iat)
                        .push_bind(t.exp)
                        .push_bind(&t.sid)
                        .push_bind(&t.parent_hash)
                        .push_bind(t.act.as_ref().map(|a| a.to_json()))
                        .push_bind(t.may_act.as_ref().map(|m| m.to_json()))
                        .push_bind(t.act.as_ref().map(|a| a.sub.clone()));
                });
            }

            /// Records that `by` used these tokens at `now` (introspection).
            fn push_touch<'q>(
                q: &mut sqlx::QueryBuilder<'q, $db>,
                now: i64,
                by: &'q str,
                jtis: &'q [&str],
            ) {
                q.push("UPDATE tokens SET last_used_at = ")
                    .push_bind(now)
                    .push(", last_used_by = ")
                    .push_bind(by)
                    .push(" WHERE jti IN (");
                let mut sep = q.separated(", ");
                for j in jtis {
                    sep.push_bind(*j);
                }
                q.push(")");
            }

            fn push_audit<'q>(
                q: &mut sqlx::QueryBuilder<'q, $db>,
                entries: &'q [$crate::audit::AuditEntry],
            ) {
                q.push(
                    "INSERT INTO audit_log (seq, ts, kind, subject, actors, client_id, session, token_jti, \
                     detail, prev_hash, hash, policy_version, chain_version) ",
                );
                q.push_values(entries, |mut b, e| {
                    b.push_bind(e.seq)
                        .push_bind(e.ts)
                        .push_bind(&e.kind)
                        .push_bind(&e.subject)
                        .push_bind(&e.actors)
                        .push_bind(&e.client_id)
                        .push_bind(&e.session)
                        .push_bind(&e.token_jti)
                        .push_bind(&e.detail)
                        .push_bind(&e.prev_hash)
                        .push_bind(&e.hash)
                        .push_bind(&e.policy_version)
                        .push_bind(e.chain_version);
                });
            }
        }

    };
}
pub(super) use sqlx_writer;

#[cfg(test)]
mod tests {
    #[test]
    fn the_last_piece_of_a_batch_is_the_last_statement_chunks_makes() {
        for n in 0..700usize {
            let rows: Vec<usize> = (0..n).collect();
            let (earlier, last) = super::split_last_chunk(&rows);
            assert_eq!([earlier, last].concat(), rows);
            assert_eq!(
                Some(last),
                super::chunks(&rows).last().or(Some(&[][..])),
                "{n}"
            );
            assert_eq!(
                super::chunks(earlier).count(),
                n.div_ceil(256).saturating_sub(1)
            );
        }
    }

    #[test]
    fn batches_split_into_statements_of_at_most_256_rows() {
        for n in 0..700usize {
            let rows: Vec<usize> = (0..n).collect();
            let parts: Vec<&[usize]> = super::chunks(&rows).collect();
            assert_eq!(parts.concat(), rows, "order and content kept");
            assert!(parts.iter().all(|p| !p.is_empty() && p.len() <= 256));
            assert_eq!(
                parts.len(),
                n.div_ceil(256),
                "{n}: {} statements",
                parts.len()
            );
        }
    }
}
