//! The SQL both backends run as it is (the rows it reads are in `records.rs`). Placeholders are `$N`: PostgreSQL numbers them, SQLite names them `$1`, `$2`
//! ... and numbers the names in order of first appearance, so every statement here names them
//! in ascending order (`sqlite`'s tests check each). Statements only one backend runs live in
//! its module: PostgreSQL's statistics-proof revocations and lookups by many hashes, SQLite's
//! plain recursive revocations and its lookup by `jti`.

use std::sync::OnceLock;

use super::{Named, Party};

/// A statement built once from [`TOKEN_COLUMNS`], [`CIBA_COLUMNS`] or [`REGISTERED_COLUMNS`]
/// and a tail.
fn built(cell: &'static OnceLock<String>, columns: &str, from_where: &str) -> &'static str {
    cell.get_or_init(|| format!("SELECT {columns} {from_where}"))
}

pub const TOKEN_COLUMNS: &str = "token_hash, jti, kind, sub, client_id, scope, aud, iat, exp, sid, \
     parent_hash, act, may_act, revoked_at, consumed_at, last_used_at, att, jkt, dpop_key";

/// The token with hash `$1`.
pub fn token_by_hash() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    built(&SQL, TOKEN_COLUMNS, "FROM tokens WHERE token_hash = $1")
}

/// The token with `jti` `$1`.
pub fn token_by_jti() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    built(&SQL, TOKEN_COLUMNS, "FROM tokens WHERE jti = $1")
}

/// Live tokens of subject `$1` at `$2`, oldest first.
pub fn live_tokens_of() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    built(
        &SQL,
        TOKEN_COLUMNS,
        "FROM tokens WHERE sub = $1 AND exp > $2 AND revoked_at IS NULL ORDER BY iat, jti",
    )
}

/// Live tokens by kind (a scan of the token table; see `Store::gauges`).
pub const LIVE_TOKENS_BY_KIND: &str = "SELECT kind, count(*) FROM tokens \
     WHERE exp > $1 AND revoked_at IS NULL AND consumed_at IS NULL GROUP BY kind ORDER BY kind";
/// CIBA requests by state: an undecided one is `pending` until it expires, then `expired`.
pub const APPROVAL_REQUESTS_BY_STATE: &str = "SELECT CASE WHEN status = 'pending' AND \
     expires_at <= $1 THEN 'expired' ELSE status END AS state, count(*) FROM ciba_requests \
     GROUP BY 1 ORDER BY 1";

pub const INSERT_TOKEN_COLUMNS: &str = "INSERT INTO tokens (token_hash, jti, kind, sub, client_id, \
     scope, aud, iat, exp, sid, parent_hash, act, may_act, actor, att, jkt, dpop_key) ";
pub const CONSUME_TOKEN: &str =
    "UPDATE tokens SET consumed_at = $1 WHERE token_hash = $2 AND consumed_at IS NULL";
pub const FORGET_USED_KEYS: &str = "DELETE FROM used_assertions WHERE expires_at < $1";
pub const USE_KEY: &str = "INSERT INTO used_assertions (jti_key, expires_at) VALUES ($1, $2) \
     ON CONFLICT (jti_key) DO NOTHING";

/// The live tokens a [`Party`]'s removal seeds its revocation with (`$1` its key).
pub fn party_seed(party: &Party) -> &'static str {
    match party {
        Party::Client(_) => {
            "SELECT token_hash FROM tokens WHERE client_id = $1 AND revoked_at IS NULL"
        }
        Party::User(_) => "SELECT token_hash FROM tokens WHERE sub = $1 AND revoked_at IS NULL",
        Party::Agent(_) => {
            "SELECT token_hash FROM tokens WHERE (sub = $1 OR actor = $1) AND revoked_at IS NULL"
        }
    }
}

/// A party revocation of `shape` (each backend has its own), built once per kind of party from
/// its [`party_seed`]; `cells` is the backend's cache.
pub fn party_revocation(
    cells: &'static [OnceLock<String>; 3],
    party: &Party,
    shape: fn(&str) -> String,
) -> &'static str {
    let i = match party {
        Party::Client(_) => 0,
        Party::User(_) => 1,
        Party::Agent(_) => 2,
    };
    cells
        .get(i)
        .map_or("", |cell| cell.get_or_init(|| shape(party_seed(party))))
}

pub const AUDIT_HEAD: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";
pub const SET_AUDIT_HEAD: &str = "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1";
pub const INSERT_AUDIT_COLUMNS: &str = "INSERT INTO audit_log (seq, ts, kind, subject, actors, \
     client_id, session, token_jti, detail, prev_hash, hash, policy_version, chain_version) ";
pub const AUDIT_AFTER: &str = "SELECT seq, ts, kind, subject, actors, client_id, session, token_jti, \
     detail, policy_version, chain_version, prev_hash, hash FROM audit_log WHERE seq > $1 \
     ORDER BY seq LIMIT $2";
/// The first entry stamped at or after `$1`: the first in `seq` order, which is the order the
/// primary key walks, so the scan stops there.
pub const AUDIT_FIRST_AT: &str = "SELECT seq FROM audit_log WHERE ts >= $1 ORDER BY seq LIMIT 1";
pub const AUDIT_OF_SESSION: &str = "SELECT seq, ts, kind, subject, actors, client_id, session, \
     token_jti, detail, policy_version, chain_version, prev_hash, hash FROM audit_log \
     WHERE session = $1 ORDER BY seq DESC LIMIT $2";

pub const UPSERT_CLIENT: &str = "INSERT INTO clients (client_id, data, source, updated_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (client_id) DO UPDATE SET data = excluded.data, \
     source = excluded.source, updated_at = excluded.updated_at";
pub const LOAD_CLIENTS: &str = "SELECT client_id, data FROM clients ORDER BY client_id";
pub const UPSERT_AGENT: &str = "INSERT INTO agents (name, data, source, updated_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET data = excluded.data, \
     source = excluded.source, updated_at = excluded.updated_at";
pub const LOAD_AGENTS: &str =
    "SELECT name, data FROM agents WHERE disabled_at IS NULL ORDER BY name";
pub const REMEMBER_USER: &str = "INSERT INTO known_users (username, created_at) VALUES ($1, $2) \
     ON CONFLICT (username) DO NOTHING";
pub const SET_AGENT_DISABLED: &str = "UPDATE agents SET disabled_at = $1 WHERE name = $2";
pub const DELETE_AGENT: &str = "DELETE FROM agents WHERE name = $1";

pub const REGISTERED_BY_ADDRESS: &str =
    "SELECT count(*) FROM registered_clients WHERE created_by = $1 AND created_at > $2";
pub const REGISTERED_LIVE: &str =
    "SELECT count(*) FROM registered_clients WHERE removed_at IS NULL";
pub const INSERT_REGISTERED: &str = "INSERT INTO registered_clients (client_id, data, metadata, \
     token_hash, created_at, created_by, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $5)";
pub const REGISTERED_COLUMNS: &str =
    "client_id, data, metadata, token_hash, created_at, created_by, last_used_at";
/// The live registered client `$1`.
pub fn registered_client() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    built(
        &SQL,
        REGISTERED_COLUMNS,
        "FROM registered_clients WHERE client_id = $1 AND removed_at IS NULL",
    )
}
/// Every live registered client, oldest first.
pub fn registered_clients() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    built(
        &SQL,
        REGISTERED_COLUMNS,
        "FROM registered_clients WHERE removed_at IS NULL ORDER BY created_at, client_id",
    )
}
pub const TOUCH_REGISTERED: &str = "UPDATE registered_clients SET last_used_at = $1 \
     WHERE client_id = $2 AND last_used_at < $1 AND removed_at IS NULL";
pub const REMOVE_REGISTERED: &str = "UPDATE registered_clients SET removed_at = $1 \
     WHERE client_id = $2 AND removed_at IS NULL";
pub const UNUSED_REGISTERED: &str = "SELECT client_id FROM registered_clients \
     WHERE removed_at IS NULL AND last_used_at <= $1 ORDER BY last_used_at, client_id";
pub const REMOVED_REGISTERED: &str = "SELECT client_id FROM registered_clients \
     WHERE removed_at IS NOT NULL AND removed_at >= $1 ORDER BY client_id";
pub const PURGE_REGISTERED: &str = "DELETE FROM registered_clients \
     WHERE removed_at IS NOT NULL AND created_at <= $1 RETURNING client_id";

/// The stored names of `kind` that came from a config.
pub fn config_names(kind: Named) -> &'static str {
    match kind {
        Named::Clients => "SELECT client_id FROM clients WHERE source = 'config'",
        Named::Agents => "SELECT name FROM agents WHERE source = 'config'",
        Named::Users => "SELECT username FROM known_users",
    }
}

/// Deletes the name `$1` of `kind`.
pub fn forget_name(kind: Named) -> &'static str {
    match kind {
        Named::Clients => "DELETE FROM clients WHERE client_id = $1",
        Named::Agents => "DELETE FROM agents WHERE name = $1",
        Named::Users => "DELETE FROM known_users WHERE username = $1",
    }
}

/// Taking this row lock first serialises key rotations across replicas and processes.
pub const LOCK_KEYS: &str = "UPDATE locks SET taken_at = $1 WHERE name = 'keys'";
pub const LOAD_KEYS: &str = "SELECT kid, state, private_sealed, public_jwk, created_at, \
     activated_at, retired_at, publish_until FROM signing_keys ORDER BY created_at, kid";
pub const INSERT_KEY: &str = "INSERT INTO signing_keys (kid, state, private_sealed, public_jwk, \
     created_at, activated_at, retired_at, publish_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
pub const PROMOTE_KEY: &str =
    "UPDATE signing_keys SET state = 'current', activated_at = $1 WHERE kid = $2";
pub const RETIRE_KEY: &str = "UPDATE signing_keys SET state = 'retired', retired_at = $1, \
     publish_until = $2 WHERE kid = $3";
pub const DELETE_KEY: &str = "DELETE FROM signing_keys WHERE kid = $1";

pub const CREATE_NONCE: &str =
    "INSERT INTO attest_nonces (nonce, agent, expires_at) VALUES ($1, $2, $3)";
pub const CONSUME_NONCE: &str = "UPDATE attest_nonces SET used_at = $1 WHERE nonce = $2 \
     AND used_at IS NULL AND expires_at > $1 AND (agent IS NULL OR agent = $3)";
pub const FORGET_NONCES: &str = "DELETE FROM attest_nonces WHERE expires_at < $1";

/// Of two racing quotes with the same counters at most one advances: `ON CONFLICT .. DO UPDATE
/// .. WHERE` updates (and returns) nothing when the stored counters are not older, and the
/// SET's right-hand sides read the old row.
pub const ADVANCE_COUNTERS: &str = "INSERT INTO tpm_counters (agent, reset_count, restart_count, \
     clock, firmware, prev_firmware, updated_at) VALUES ($1, $2, $3, $4, $5, NULL, $6) \
     ON CONFLICT (agent) DO UPDATE SET reset_count = excluded.reset_count, \
     restart_count = excluded.restart_count, clock = excluded.clock, \
     prev_firmware = tpm_counters.firmware, firmware = excluded.firmware, \
     updated_at = excluded.updated_at \
     WHERE tpm_counters.reset_count < excluded.reset_count \
     OR (tpm_counters.reset_count = excluded.reset_count \
         AND (tpm_counters.restart_count < excluded.restart_count \
              OR (tpm_counters.restart_count = excluded.restart_count \
                  AND tpm_counters.clock < excluded.clock))) \
     RETURNING prev_firmware";
pub const TPM_COUNTERS: &str =
    "SELECT reset_count, restart_count, clock, firmware FROM tpm_counters WHERE agent = $1";
pub const AGENT_RECORD: &str =
    "SELECT data, source, ek_hash, disabled_at FROM agents WHERE name = $1";
pub const AGENT_BY_EK: &str = "SELECT name FROM agents WHERE ek_hash = $1";
pub const CREATE_ENROLLMENT: &str = "INSERT INTO tpm_enrollments (id, agent, ek_hash, ek_issuer, \
     ak_public, secret_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
pub const TAKE_ENROLLMENT: &str = "DELETE FROM tpm_enrollments WHERE id = $1 RETURNING id, agent, \
     ek_hash, ek_issuer, ak_public, secret_hash, created_at, expires_at";
pub const FORGET_ENROLLMENTS: &str = "DELETE FROM tpm_enrollments WHERE expires_at < $1";
/// A name pinned to another EK (or enrolled otherwise, `ek_hash` NULL) is left alone by the
/// WHERE; an EK pinned to another name trips the unique index.
pub const ENROLL_BY_EK: &str = "INSERT INTO agents (name, data, source, updated_at, ek_hash) \
     VALUES ($1, $2, 'ek', $3, $4) ON CONFLICT (name) DO UPDATE SET data = excluded.data, \
     updated_at = excluded.updated_at WHERE agents.ek_hash = excluded.ek_hash RETURNING name";

pub const FORGET_CODES: &str = "DELETE FROM auth_codes WHERE expires_at < $1";
pub const CREATE_CODE: &str = "INSERT INTO auth_codes (code_hash, client_id, redirect_uri, \
     code_challenge, username, scope, aud, sid, created_at, expires_at, nonce) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
pub const FIND_CODE: &str = "SELECT code_hash, client_id, redirect_uri, code_challenge, username, \
     scope, aud, sid, created_at, expires_at, used_at, replayed_at, nonce FROM auth_codes \
     WHERE code_hash = $1";
pub const USE_CODE: &str =
    "UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL";
pub const MARK_CODE_REPLAYED: &str =
    "UPDATE auth_codes SET replayed_at = $1 WHERE code_hash = $2 AND replayed_at IS NULL";
pub const CONSENT: &str = "SELECT scope FROM consents WHERE username = $1 AND client_id = $2";
pub const SAVE_CONSENT: &str = "INSERT INTO consents (username, client_id, scope, granted_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (username, client_id) DO UPDATE SET \
     scope = excluded.scope, granted_at = excluded.granted_at";
pub const FORGET_BROWSER_SESSIONS: &str = "DELETE FROM browser_sessions WHERE expires_at < $1";
pub const CREATE_BROWSER_SESSION: &str = "INSERT INTO browser_sessions (id_hash, username, \
     created_at, expires_at) VALUES ($1, $2, $3, $4)";
pub const BROWSER_SESSION: &str =
    "SELECT username FROM browser_sessions WHERE id_hash = $1 AND expires_at > $2";

pub const CIBA_COLUMNS: &str = "id_hash, public_id, client_id, username, agent, attestation, \
     parent_hash, act, scope, aud, token_exp, depth, binding_message, policies, high_risk, \
     created_at, expires_at, interval_secs, last_polled_at, status, approved_scope, approved_exp, \
     decided_at, actor_hash";
/// One statement counts and inserts (concurrent requests of one human may each see the count
/// just under the cap on PostgreSQL: the cap holds within the number of requests racing, not
/// beyond).
pub const CREATE_CIBA: &str = "INSERT INTO ciba_requests (id_hash, public_id, client_id, username, \
     agent, attestation, parent_hash, act, scope, aud, token_exp, depth, binding_message, policies, \
     high_risk, created_at, expires_at, interval_secs, status, actor_hash) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     'pending', $19 WHERE (SELECT count(*) FROM ciba_requests WHERE username = $4 \
     AND status = 'pending' AND expires_at > $16) < $20";
/// Taking the row first (a write) serialises concurrent polls of one request.
pub const LOCK_CIBA: &str =
    "UPDATE ciba_requests SET last_polled_at = last_polled_at WHERE id_hash = $1";
pub const POLLED_CIBA: &str =
    "UPDATE ciba_requests SET last_polled_at = $1, interval_secs = $2 WHERE id_hash = $3";
pub const DECIDE_CIBA: &str = "UPDATE ciba_requests SET status = $1, approved_scope = $2, \
     approved_exp = $3, decided_at = $4 WHERE public_id = $5 AND username = $6 \
     AND status = 'pending' AND expires_at > $4";
pub const CLAIM_CIBA: &str =
    "UPDATE ciba_requests SET status = 'issued' WHERE id_hash = $1 AND status = 'approved'";

pub fn ciba_by_hash() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    built(&SQL, CIBA_COLUMNS, "FROM ciba_requests WHERE id_hash = $1")
}

pub fn ciba_by_public_id() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    built(
        &SQL,
        CIBA_COLUMNS,
        "FROM ciba_requests WHERE public_id = $1",
    )
}

/// Pending, unexpired requests of human `$1` at `$2`, oldest first.
pub fn pending_ciba() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    built(
        &SQL,
        CIBA_COLUMNS,
        "FROM ciba_requests WHERE username = $1 AND status = 'pending' AND expires_at > $2 \
         ORDER BY created_at, public_id",
    )
}

/// Every statement above, for the test that their placeholders come in order.
#[cfg(test)]
pub fn all() -> Vec<&'static str> {
    let mut v = vec![
        token_by_hash(),
        token_by_jti(),
        live_tokens_of(),
        CONSUME_TOKEN,
        FORGET_USED_KEYS,
        USE_KEY,
        AUDIT_HEAD,
        SET_AUDIT_HEAD,
        AUDIT_AFTER,
        AUDIT_FIRST_AT,
        AUDIT_OF_SESSION,
        UPSERT_CLIENT,
        LOAD_CLIENTS,
        UPSERT_AGENT,
        LOAD_AGENTS,
        REMEMBER_USER,
        SET_AGENT_DISABLED,
        DELETE_AGENT,
        REGISTERED_BY_ADDRESS,
        REGISTERED_LIVE,
        INSERT_REGISTERED,
        registered_client(),
        registered_clients(),
        TOUCH_REGISTERED,
        REMOVE_REGISTERED,
        UNUSED_REGISTERED,
        REMOVED_REGISTERED,
        PURGE_REGISTERED,
        LOCK_KEYS,
        LOAD_KEYS,
        INSERT_KEY,
        PROMOTE_KEY,
        RETIRE_KEY,
        DELETE_KEY,
        CREATE_NONCE,
        CONSUME_NONCE,
        FORGET_NONCES,
        ADVANCE_COUNTERS,
        TPM_COUNTERS,
        AGENT_RECORD,
        AGENT_BY_EK,
        CREATE_ENROLLMENT,
        TAKE_ENROLLMENT,
        FORGET_ENROLLMENTS,
        ENROLL_BY_EK,
        FORGET_CODES,
        CREATE_CODE,
        FIND_CODE,
        USE_CODE,
        MARK_CODE_REPLAYED,
        CONSENT,
        SAVE_CONSENT,
        FORGET_BROWSER_SESSIONS,
        CREATE_BROWSER_SESSION,
        BROWSER_SESSION,
        CREATE_CIBA,
        LOCK_CIBA,
        POLLED_CIBA,
        DECIDE_CIBA,
        CLAIM_CIBA,
        ciba_by_hash(),
        ciba_by_public_id(),
        pending_ciba(),
    ];
    for kind in [Named::Clients, Named::Agents, Named::Users] {
        v.extend([config_names(kind), forget_name(kind)]);
    }
    for p in [
        Party::Client(String::new()),
        Party::User(String::new()),
        Party::Agent(String::new()),
    ] {
        v.push(party_seed(&p));
    }
    v
}

/// Splits `rows` into slices of at most 256, so no statement nears SQLite's bound-parameter
/// limit. A batch is written with one statement per kind of row; each size is a distinct
/// statement, which the writer's connection keeps prepared (its cache holds every size).
pub fn chunks<T>(rows: &[T]) -> std::slice::Chunks<'_, T> {
    rows.chunks(CHUNK)
}

const CHUNK: usize = 256;

/// `rows` split before their last [`chunks`] piece: the earlier pieces go in statements of
/// their own, the last rides in a batch's final statement (PostgreSQL's writer).
pub fn split_last_chunk<T>(rows: &[T]) -> (&[T], &[T]) {
    rows.split_at(rows.len().saturating_sub(1) / CHUNK * CHUNK)
}

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
