//! rusqlite rows into the store's rows, by column position: each reader matches the column list
//! of the statements that use it (`sql::TOKEN_COLUMNS`, `sql::CIBA_COLUMNS`, ...).

use rusqlite::{Result, Row};

use crate::audit::AuditEntry;
use crate::store::records::{CibaRow, CodeRow, KeyDbRow, TokenRow};

pub fn token(r: &Row<'_>) -> Result<TokenRow> {
    Ok(TokenRow {
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
        att: r.get(16)?,
        jkt: r.get(17)?,
        dpop_key: r.get(18)?,
    })
}

/// A row of `sql::LOAD_KEYS`.
pub fn key(r: &Row<'_>) -> Result<KeyDbRow> {
    Ok(KeyDbRow {
        kid: r.get(0)?,
        state: r.get(1)?,
        private_sealed: r.get(2)?,
        public_jwk: r.get(3)?,
        created_at: r.get(4)?,
        activated_at: r.get(5)?,
        retired_at: r.get(6)?,
        publish_until: r.get(7)?,
    })
}

/// A row of `sql::AUDIT_AFTER`.
pub fn audit(r: &Row<'_>) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        ts: r.get(1)?,
        kind: r.get(2)?,
        subject: r.get(3)?,
        actors: r.get(4)?,
        client_id: r.get(5)?,
        session: r.get(6)?,
        token_jti: r.get(7)?,
        detail: r.get(8)?,
        policy_version: r.get(9)?,
        chain_version: r.get(10)?,
        prev_hash: r.get(11)?,
        hash: r.get(12)?,
    })
}

/// A row of `sql::FIND_CODE`.
pub fn code(r: &Row<'_>) -> Result<CodeRow> {
    Ok(CodeRow {
        code_hash: r.get(0)?,
        client_id: r.get(1)?,
        redirect_uri: r.get(2)?,
        code_challenge: r.get(3)?,
        username: r.get(4)?,
        scope: r.get(5)?,
        aud: r.get(6)?,
        sid: r.get(7)?,
        created_at: r.get(8)?,
        expires_at: r.get(9)?,
        used_at: r.get(10)?,
        replayed_at: r.get(11)?,
        nonce: r.get(12)?,
    })
}

/// A row of `SELECT {sql::CIBA_COLUMNS}`.
pub fn ciba(r: &Row<'_>) -> Result<CibaRow> {
    Ok(CibaRow {
        id_hash: r.get(0)?,
        public_id: r.get(1)?,
        client_id: r.get(2)?,
        username: r.get(3)?,
        agent: r.get(4)?,
        attestation: r.get(5)?,
        parent_hash: r.get(6)?,
        act: r.get(7)?,
        scope: r.get(8)?,
        aud: r.get(9)?,
        token_exp: r.get(10)?,
        depth: r.get(11)?,
        binding_message: r.get(12)?,
        policies: r.get(13)?,
        high_risk: r.get(14)?,
        created_at: r.get(15)?,
        expires_at: r.get(16)?,
        interval_secs: r.get(17)?,
        last_polled_at: r.get(18)?,
        status: r.get(19)?,
        approved_scope: r.get(20)?,
        approved_exp: r.get(21)?,
        decided_at: r.get(22)?,
        actor_hash: r.get(23)?,
    })
}
