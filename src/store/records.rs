//! The rows the SQL of `sql.rs` reads, as stored (text, integers, bytes), and their conversion
//! into the records the store hands out: done once, here, for both backends. A value that does
//! not parse makes its record [`StoreError::CorruptRecord`] (fail closed), never a default.

use super::ciba::{CibaRecord, CibaStatus};
use super::web::CodeRecord;
use super::{Audiences, StoreError, TokenKind, TokenRecord};
use crate::jose::{KeyRow, KeyState};
use crate::oauth::act::Actor;
use crate::oauth::scope::ScopeSet;

/// A row of `SELECT {sql::TOKEN_COLUMNS}`, as stored.
#[derive(sqlx::FromRow)]
pub struct TokenRow {
    pub token_hash: Vec<u8>,
    pub jti: String,
    pub kind: String,
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub sid: Option<String>,
    pub parent_hash: Option<Vec<u8>>,
    pub act: Option<String>,
    pub may_act: Option<String>,
    pub revoked_at: Option<i64>,
    pub consumed_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub att: Option<String>,
    pub jkt: Option<String>,
    pub dpop_key: Option<String>,
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<Self, StoreError> {
        Ok(TokenRecord {
            kind: TokenKind::parse(&r.kind)
                .ok_or_else(|| StoreError::CorruptRecord(format!("token kind {}", r.kind)))?,
            aud: Audiences::from_stored(&r.aud),
            // Parsed once here, and refused if corrupt (fail closed; see oauth::act).
            act: (r.act.as_deref())
                .map(Actor::parse)
                .transpose()
                .map_err(|e| StoreError::CorruptRecord(e.to_string()))?,
            may_act: (r.may_act.as_deref())
                .map(crate::oauth::act::MayAct::parse)
                .transpose()
                .map_err(|e| StoreError::CorruptRecord(e.to_string()))?,
            token_hash: r.token_hash,
            jti: r.jti,
            sub: r.sub,
            client_id: r.client_id,
            scope: r.scope,
            iat: r.iat,
            exp: r.exp,
            sid: r.sid,
            parent_hash: r.parent_hash,
            att: r.att,
            jkt: r.jkt,
            dpop_key: r.dpop_key,
            revoked_at: r.revoked_at,
            consumed_at: r.consumed_at,
            last_used_at: r.last_used_at,
        })
    }
}

/// The values of `sql::INSERT_TOKEN_COLUMNS` that are not the record's own fields: the audiences
/// joined, `act` and `may_act` as JSON, and the current actor (a column of its own, so that an
/// agent's delegations can be found and revoked).
pub fn token_columns(t: &TokenRecord) -> (String, Option<String>, Option<String>, Option<&str>) {
    (
        t.aud.to_string(),
        t.act.as_ref().map(|a| a.to_json()),
        t.may_act.as_ref().map(|m| m.to_json()),
        t.act.as_ref().map(|a| a.sub.as_str()),
    )
}

/// What a single-use token's consumption found: `won` says whether this call consumed it.
pub fn consumed(won: bool, row: Option<TokenRow>) -> Result<super::Consumed, StoreError> {
    use super::Consumed;
    Ok(match row {
        None => Consumed::NotFound,
        Some(r) if won => Consumed::Now(Box::new(r.try_into()?)),
        Some(r) => Consumed::Before(Box::new(r.try_into()?)),
    })
}

#[derive(sqlx::FromRow)]
pub struct KeyDbRow {
    pub kid: String,
    pub state: String,
    pub private_sealed: Vec<u8>,
    pub public_jwk: String,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    pub publish_until: Option<i64>,
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
pub struct CodeRow {
    pub code_hash: Vec<u8>,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub username: String,
    pub scope: String,
    pub aud: String,
    pub sid: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub replayed_at: Option<i64>,
    pub nonce: Option<String>,
}

impl From<CodeRow> for CodeRecord {
    fn from(r: CodeRow) -> Self {
        CodeRecord {
            aud: Audiences::from_stored(&r.aud),
            code_hash: r.code_hash,
            client_id: r.client_id,
            redirect_uri: r.redirect_uri,
            code_challenge: r.code_challenge,
            username: r.username,
            scope: r.scope,
            sid: r.sid,
            created_at: r.created_at,
            expires_at: r.expires_at,
            used_at: r.used_at,
            replayed_at: r.replayed_at,
            nonce: r.nonce,
        }
    }
}

/// A row of `SELECT {sql::CIBA_COLUMNS}`, as stored.
#[derive(sqlx::FromRow)]
pub struct CibaRow {
    pub id_hash: Vec<u8>,
    pub public_id: String,
    pub client_id: String,
    pub username: String,
    pub agent: String,
    pub attestation: String,
    pub parent_hash: Vec<u8>,
    pub act: String,
    pub scope: String,
    pub aud: String,
    pub token_exp: i64,
    pub depth: i64,
    pub binding_message: Option<String>,
    pub policies: String,
    pub high_risk: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub interval_secs: i64,
    pub last_polled_at: Option<i64>,
    pub status: String,
    pub approved_scope: Option<String>,
    pub approved_exp: Option<i64>,
    pub decided_at: Option<i64>,
    pub actor_hash: Option<Vec<u8>>,
}

/// A stored scope list: space-separated scope tokens, or empty (a request that asked for none,
/// no high-risk scope).
fn scopes(what: &str, public_id: &str, text: &str) -> Result<ScopeSet, StoreError> {
    if text.is_empty() {
        return Ok(ScopeSet::default());
    }
    ScopeSet::parse(text)
        .map_err(|_| StoreError::CorruptRecord(format!("CIBA request {public_id}: {what}")))
}

impl TryFrom<CibaRow> for CibaRecord {
    type Error = StoreError;
    /// Fails closed: an unknown status or an unreadable chain makes the request unusable,
    /// never one read as pending or as a shorter chain.
    fn try_from(r: CibaRow) -> Result<Self, StoreError> {
        let id = r.public_id.as_str();
        let corrupt =
            |what: String| StoreError::CorruptRecord(format!("CIBA request {id}: {what}"));
        Ok(CibaRecord {
            status: CibaStatus::parse(&r.status)
                .ok_or_else(|| corrupt(format!("status {:?}", r.status)))?,
            act: Actor::parse(&r.act).map_err(|e| corrupt(e.to_string()))?,
            scope: scopes("scope", id, &r.scope)?,
            aud: Audiences::from_stored(&r.aud),
            high_risk: scopes("high_risk", id, &r.high_risk)?,
            approved_scope: (r.approved_scope.as_deref())
                .map(|s| scopes("approved_scope", id, s))
                .transpose()?,
            id_hash: r.id_hash,
            public_id: r.public_id,
            client_id: r.client_id,
            username: r.username,
            agent: r.agent,
            attestation: r.attestation,
            parent_hash: r.parent_hash,
            token_exp: r.token_exp,
            depth: r.depth,
            binding_message: r.binding_message,
            policies: r.policies,
            created_at: r.created_at,
            expires_at: r.expires_at,
            interval_secs: r.interval_secs,
            last_polled_at: r.last_polled_at,
            decided_at: r.decided_at,
            approved_exp: r.approved_exp,
            actor_hash: r.actor_hash,
        })
    }
}

/// A stored consent: the scopes approved, space-separated. An unreadable one reads as no
/// consent (the restrictive reading: the human is asked again), and is logged.
pub fn consent(text: Option<String>) -> Option<ScopeSet> {
    let text = text?;
    if text.is_empty() {
        return Some(ScopeSet::default());
    }
    match ScopeSet::parse(&text) {
        Ok(s) => Some(s),
        Err(_) => {
            tracing::error!("a stored consent is unreadable; the human is asked again");
            None
        }
    }
}

/// The values of `sql::CREATE_CIBA` that are text of the record's typed fields: `act` as JSON,
/// the scopes asked for, the audiences and the high-risk scopes, each as stored.
pub fn ciba_columns(r: &CibaRecord) -> (String, String, String, String) {
    (
        r.act.to_json(),
        r.scope.to_string(),
        r.aud.to_string(),
        r.high_risk.to_string(),
    )
}

/// The requests of `rows` that are readable; each unreadable one is logged and left out, so
/// one corrupt row does not hide a human's other requests.
pub fn readable_cibas(rows: Vec<CibaRow>) -> Vec<CibaRecord> {
    rows.into_iter()
        .filter_map(|r| match CibaRecord::try_from(r) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "a pending CIBA request is unreadable; not listed");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CibaRecord {
        CibaRecord {
            id_hash: vec![1; 32],
            public_id: "pub-1".into(),
            client_id: "agent-host".into(),
            username: "alice".into(),
            agent: "agent:build-bot".into(),
            attestation: "none".into(),
            parent_hash: vec![2; 32],
            act: Actor::nest("agent:sub-bot", Some(&Actor::nest("agent:build-bot", None))),
            scope: ScopeSet::parse("orders:read orders:write").unwrap(),
            aud: vec!["orders-api".to_string(), "billing-api".to_string()].into(),
            token_exp: 1000,
            depth: 2,
            binding_message: Some("ok?".into()),
            policies: "[]".into(),
            high_risk: ScopeSet::parse("orders:write").unwrap(),
            created_at: 100,
            expires_at: 400,
            interval_secs: 5,
            last_polled_at: Some(110),
            status: CibaStatus::Approved,
            approved_scope: Some(ScopeSet::parse("orders:read").unwrap()),
            approved_exp: Some(900),
            decided_at: Some(120),
            actor_hash: Some(vec![3; 32]),
        }
    }

    /// The row a record is stored as: the columns `sql::CREATE_CIBA` and `sql::DECIDE_CIBA`
    /// write.
    fn row(r: &CibaRecord) -> CibaRow {
        let (act, scope, aud, high_risk) = ciba_columns(r);
        let (status, approved_scope, _) = match r.status {
            CibaStatus::Approved => {
                super::super::ciba::decision(r.approved_scope.as_ref().zip(r.approved_exp))
            }
            s => (s.as_str(), None, None),
        };
        CibaRow {
            id_hash: r.id_hash.clone(),
            public_id: r.public_id.clone(),
            client_id: r.client_id.clone(),
            username: r.username.clone(),
            agent: r.agent.clone(),
            attestation: r.attestation.clone(),
            parent_hash: r.parent_hash.clone(),
            act,
            scope,
            aud,
            token_exp: r.token_exp,
            depth: r.depth,
            binding_message: r.binding_message.clone(),
            policies: r.policies.clone(),
            high_risk,
            created_at: r.created_at,
            expires_at: r.expires_at,
            interval_secs: r.interval_secs,
            last_polled_at: r.last_polled_at,
            status: status.into(),
            approved_scope,
            approved_exp: r.approved_exp,
            decided_at: r.decided_at,
            actor_hash: r.actor_hash.clone(),
        }
    }

    #[test]
    fn a_ciba_record_round_trips_through_its_stored_row() {
        let r = record();
        let stored = row(&r);
        assert_eq!(
            (
                stored.scope.as_str(),
                stored.aud.as_str(),
                stored.high_risk.as_str()
            ),
            (
                "orders:read orders:write",
                "orders-api billing-api",
                "orders:write"
            ),
            "the column text is what it always was"
        );
        assert_eq!(CibaRecord::try_from(stored).unwrap(), r);
        let mut pending = record();
        pending.status = CibaStatus::Pending;
        pending.approved_scope = None;
        pending.high_risk = ScopeSet::default();
        let stored = row(&pending);
        assert_eq!(stored.high_risk, "", "no high-risk scope is stored empty");
        assert_eq!(CibaRecord::try_from(stored).unwrap(), pending);
    }

    /// Fail closed (RFC 8693 §4.1): an unknown status is never read as pending, an unreadable
    /// chain never as a shorter one, an unreadable scope never as none.
    #[test]
    fn a_ciba_row_with_an_unreadable_value_is_a_corrupt_record() {
        type Spoil = fn(&mut CibaRow);
        let corrupt: [(&str, Spoil); 6] = [
            ("unknown status", |r| r.status = "maybe".into()),
            ("empty status", |r| r.status = String::new()),
            ("truncated act", |r| r.act = r#"{"sub":"agent:a","#.into()),
            ("act without sub", |r| r.act = "{}".into()),
            ("scope", |r| r.scope = "a  b".into()),
            ("approved scope", |r| r.approved_scope = Some("\"".into())),
        ];
        for (why, spoil) in corrupt {
            let mut stored = row(&record());
            spoil(&mut stored);
            assert!(
                matches!(
                    CibaRecord::try_from(stored),
                    Err(StoreError::CorruptRecord(_))
                ),
                "{why}"
            );
        }
    }

    #[test]
    fn unreadable_pending_requests_are_left_out_not_failing_the_list() {
        let mut bad = row(&record());
        bad.act = "null".into();
        let listed = readable_cibas(vec![row(&record()), bad, row(&record())]);
        assert_eq!(listed, [record(), record()]);
    }
}
