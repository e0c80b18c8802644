//! Access tokens: RFC 9068 JWT profile, ES256, recorded by hash so introspection and revocation
//! see them without verifying the signature again.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::act::{Actor, MayAct};
use super::error::{ErrorCode, OAuthError};
use crate::audit::AuditEvent;
use crate::clock::Clock;
use crate::crypto::{b64url, sha256, time_ordered_id};
use crate::jose::Keyring;
use crate::store::{StoreError, TokenKind, TokenRecord, WriteOutcome};

/// What signing a token needs and nothing more: who we are (`iss`), the time (`iat`, `exp`)
/// and the current signing key (RFC 9068 §2.2).
#[derive(Clone)]
pub struct Mint<'a> {
    pub issuer: &'a str,
    pub clock: &'a dyn Clock,
    pub keys: Arc<Keyring>,
}

/// The one write every path that issues tokens makes: the tokens and their audit entries,
/// durably and together. `WriteOutcome::ParentRevoked` when a token's parent was revoked while the
/// request ran (so a revoked family never grows).
#[async_trait]
pub trait IssueStorage: Send + Sync {
    async fn issue_tokens(
        &self,
        tokens: Vec<TokenRecord>,
        audit: Vec<AuditEvent>,
    ) -> Result<WriteOutcome, StoreError>;
}

/// Lookups of tokens this server recorded.
#[async_trait]
pub trait TokenLookup: Send + Sync {
    /// By the SHA-256 of its bytes.
    async fn find_token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError>;
    /// A token as a client presented it: found only if its bytes are the ones recorded.
    async fn find_presented(&self, token: &str) -> Result<Option<TokenRecord>, StoreError>;
}

/// RFC 9068 §2.2 claims, plus RFC 8693 `act` and our delegated-session id `sid`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    /// A string when there is one audience, an array otherwise (RFC 7519 §4.1.3).
    #[serde(with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub act: Option<Actor>,
    /// How the current actor (`act.sub`) proved itself (`software` or `tpm`), as its agent
    /// token's `att` said: what a resource server reads to require a TPM-attested agent.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub att: Option<String>,
    /// RFC 9449 §6.1: the DPoP key the token is bound to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cnf: Option<Confirmation>,
    /// Where the key of `cnf` lives, for a bound token: `tpm` when the acting agent's TPM was
    /// shown to hold it (TPM2_Certify by its enrolled attestation key), else `software`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dpop_key: Option<String>,
}

/// RFC 7800 §3.1 `cnf`, with RFC 9449 §6.1's `jkt`: the thumbprint of the key a token is bound
/// to, which a resource server compares with the key of the DPoP proof sent with the token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    pub jkt: String,
}

impl Confirmation {
    pub fn of(jkt: Option<&String>) -> Option<Self> {
        jkt.map(|j| Self { jkt: j.clone() })
    }
}

pub mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        match v {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        })
    }
}

/// What a grant decided to issue.
pub struct AccessSpec {
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub aud: Vec<String>,
    pub ttl: i64,
    pub sid: Option<String>,
    pub act: Option<Actor>,
    /// How the current actor proved itself (`att` of its agent token); only with `act`.
    pub att: Option<String>,
    /// RFC 8693 §4.4: the only actor that may use this token as a subject token.
    pub may_act: Option<MayAct>,
    pub parent_hash: Option<Vec<u8>>,
    pub grant: &'static str,
    /// RFC 9449 §6: bind the token to the DPoP key with this thumbprint.
    pub jkt: Option<String>,
    /// That key was shown to live in the acting agent's TPM.
    pub key_in_tpm: bool,
}

/// The `dpop_key` of a token bound to `jkt` (none for a bearer token).
pub fn dpop_key(jkt: Option<&String>, in_tpm: bool) -> Option<String> {
    jkt.map(|_| if in_tpm { "tpm" } else { "software" }.to_string())
}

/// A signed (or, for refresh tokens, random) token with its record and audit entry, not yet
/// persisted.
pub struct Minted {
    pub token: String,
    pub record: TokenRecord,
    pub event: AuditEvent,
}

/// What `/token` answers (RFC 6749 §5.1, RFC 8693 §2.2.1).
pub struct Issued {
    pub access_token: String,
    /// RFC 9449 §5: `DPoP` for a token bound to a key, else `Bearer`.
    pub bound: bool,
    pub expires_in: i64,
    pub scope: String,
    pub refresh_token: Option<String>,
    /// RFC 8693 §2.2.1 `issued_token_type`, for token exchange.
    pub issued_token_type: Option<&'static str>,
    /// OpenID Connect Core §3.1.3.3: for a code whose scope has `openid`.
    pub id_token: Option<String>,
}

/// OpenID Connect Core §2: who signed in (`sub`), for which client (`aud`), with the client's
/// `nonce` echoed (§3.1.2.1) and `at_hash` binding it to the access token issued beside it
/// (§3.1.3.6: the left half of the SHA-256 of the token's ASCII bytes).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub at_hash: String,
}

/// Signs an ID Token for `sub` at `client_id`, valid as long as `access` (the token it goes with).
pub fn mint_id_token(
    mint: &Mint,
    sub: &str,
    client_id: &str,
    nonce: Option<&str>,
    access: &Minted,
) -> Result<String, OAuthError> {
    let digest = sha256(access.token.as_bytes());
    let claims = IdClaims {
        iss: mint.issuer.to_string(),
        sub: sub.to_string(),
        aud: client_id.to_string(),
        exp: access.record.exp,
        iat: mint.clock.now(),
        nonce: nonce.map(str::to_string),
        at_hash: b64url(digest.get(..16).unwrap_or_default()),
    };
    mint.keys.sign("JWT", &claims).map_err(OAuthError::internal)
}

/// Signs an RFC 9068 access token for `spec`.
pub fn mint_access(mint: &Mint, spec: AccessSpec) -> Result<Minted, OAuthError> {
    let now = mint.clock.now();
    let claims = AccessClaims {
        iss: mint.issuer.to_string(),
        sub: spec.sub,
        aud: spec.aud,
        exp: now + spec.ttl,
        iat: now,
        jti: time_ordered_id(mint.clock),
        client_id: spec.client_id,
        scope: spec.scope,
        sid: spec.sid,
        // Only a token with an actor says how that actor was attested.
        att: spec.act.as_ref().and(spec.att),
        act: spec.act,
        cnf: Confirmation::of(spec.jkt.as_ref()),
        dpop_key: dpop_key(spec.jkt.as_ref(), spec.key_in_tpm),
    };
    let mut signed = serde_json::to_value(&claims).map_err(OAuthError::internal)?;
    if let (Some(m), Some(o)) = (&spec.may_act, signed.as_object_mut()) {
        o.insert(
            "may_act".into(),
            serde_json::to_value(m).map_err(OAuthError::internal)?,
        );
    }
    let token = mint
        .keys
        .sign("at+jwt", &signed)
        .map_err(OAuthError::internal)?;
    let mut event = AuditEvent::new("token.issued");
    event.subject = Some(claims.sub.clone());
    event.actors = actor_chain(claims.act.as_ref());
    event.client_id = Some(claims.client_id.clone());
    event.session = claims.sid.clone();
    event.token_jti = Some(claims.jti.clone());
    event.detail = serde_json::json!({
        "grant": spec.grant, "scope": claims.scope, "aud": claims.aud, "exp": claims.exp,
    });
    let record = TokenRecord {
        token_hash: sha256(token.as_bytes()).to_vec(),
        jti: claims.jti,
        kind: TokenKind::Access,
        sub: claims.sub,
        client_id: claims.client_id,
        scope: claims.scope,
        aud: claims.aud.into(),
        iat: claims.iat,
        exp: claims.exp,
        sid: claims.sid,
        parent_hash: spec.parent_hash,
        act: claims.act,
        may_act: spec.may_act,
        att: claims.att,
        jkt: spec.jkt,
        dpop_key: claims.dpop_key,
        revoked_at: None,
        consumed_at: None,
        last_used_at: None,
    };
    Ok(Minted {
        token,
        record,
        event,
    })
}

/// An opaque refresh token (256 random bits) bound to the session `sid` of its access token,
/// and to the DPoP key `jkt` when given: RFC 9449 §5 binds the refresh tokens of public
/// clients, whose refresh requests no client authentication constrains.
pub fn mint_refresh(
    mint: &Mint,
    access: &TokenRecord,
    ttl: i64,
    grant: &'static str,
    jkt: Option<String>,
) -> Minted {
    let now = mint.clock.now();
    let token = crate::crypto::b64url(&crate::crypto::random_bytes::<32>());
    let mut record = access.clone();
    record.token_hash = sha256(token.as_bytes()).to_vec();
    record.jti = time_ordered_id(mint.clock);
    record.kind = TokenKind::Refresh;
    record.iat = now;
    record.exp = now + ttl;
    record.parent_hash = None;
    record.dpop_key = dpop_key(jkt.as_ref(), false);
    record.jkt = jkt;
    let mut event = AuditEvent::new("token.issued");
    event.subject = Some(record.sub.clone());
    event.client_id = Some(record.client_id.clone());
    event.session = record.sid.clone();
    event.token_jti = Some(record.jti.clone());
    event.detail = serde_json::json!({ "grant": grant, "kind": "refresh", "exp": record.exp });
    Minted {
        token,
        record,
        event,
    }
}

/// An agent token (SPEC "Agent attestation"): `sub` = `agent:<name>`, `att` = how it proved
/// itself, `aud` = this server (it is only good as an `actor_token`, never at a resource server).
pub fn mint_agent(ctx: &Ctx, agent: &str, att: &str) -> Result<Minted, OAuthError> {
    mint_agent_with(ctx, agent, att, serde_json::Map::new(), None)
}

/// The DPoP key an agent token is bound to: its thumbprint, and whether the agent's TPM was
/// shown to hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBinding {
    pub jkt: String,
    pub in_tpm: bool,
}

/// [`mint_agent`] with claims that say more about the attestation (the TPM path adds the AK
/// thumbprint and the PCR policy met); they never replace a registered claim.
pub fn mint_agent_with(
    ctx: &Ctx,
    agent: &str,
    att: &str,
    extra: serde_json::Map<String, serde_json::Value>,
    binding: Option<KeyBinding>,
) -> Result<Minted, OAuthError> {
    let ttl = ctx.config.tokens.agent_token_ttl.as_secs() as i64;
    mint_agent_for(&ctx.mint(), ttl, agent, att, extra, binding)
}

/// [`mint_agent_with`] over its environment alone: lives `ttl` seconds, bound to the DPoP key
/// `jkt` when the attestation came with a proof (then only that key's proofs can exchange it).
pub fn mint_agent_for(
    mint: &Mint,
    ttl: i64,
    agent: &str,
    att: &str,
    extra: serde_json::Map<String, serde_json::Value>,
    binding: Option<KeyBinding>,
) -> Result<Minted, OAuthError> {
    let jkt = binding.as_ref().map(|b| b.jkt.clone());
    let key = dpop_key(jkt.as_ref(), binding.as_ref().is_some_and(|b| b.in_tpm));
    let now = mint.clock.now();
    let sub = format!("agent:{agent}");
    let jti = time_ordered_id(mint.clock);
    let mut claims = serde_json::json!({
        "iss": mint.issuer, "sub": sub, "aud": mint.issuer, "iat": now, "exp": now + ttl, "jti": jti, "att": att,
    });
    if let Some(c) = claims.as_object_mut() {
        if let Some(cnf) = Confirmation::of(jkt.as_ref()) {
            c.insert(
                "cnf".into(),
                serde_json::to_value(cnf).map_err(OAuthError::internal)?,
            );
        }
        if let Some(k) = &key {
            c.insert("dpop_key".into(), k.clone().into());
        }
        for (k, v) in extra {
            c.entry(k).or_insert(v);
        }
    }
    let token = mint
        .keys
        .sign("JWT", &claims)
        .map_err(OAuthError::internal)?;
    let mut event = AuditEvent::new("agent.attested");
    event.subject = Some(sub.clone());
    event.actors = vec![sub.clone()];
    event.token_jti = Some(jti.clone());
    event.detail = serde_json::json!({ "att": att, "exp": now + ttl });
    let record = TokenRecord {
        token_hash: sha256(token.as_bytes()).to_vec(),
        jti,
        kind: TokenKind::Agent,
        client_id: sub.clone(),
        sub,
        scope: String::new(),
        aud: vec![mint.issuer.to_string()].into(),
        iat: now,
        exp: now + ttl,
        sid: None,
        parent_hash: None,
        act: None,
        may_act: None,
        att: None,
        jkt,
        dpop_key: key,
        revoked_at: None,
        consumed_at: None,
        last_used_at: None,
    };
    Ok(Minted {
        token,
        record,
        event,
    })
}

/// Records the tokens and their audit entries in one durable write. The audit events are
/// handed over (left empty in `minted`); the records are copied, the caller still reads them.
pub async fn persist<S: IssueStorage + ?Sized>(
    storage: &S,
    minted: &mut [&mut Minted],
) -> Result<(), OAuthError> {
    let records = minted.iter().map(|m| m.record.clone()).collect();
    let events = minted
        .iter_mut()
        .map(|m| std::mem::take(&mut m.event))
        .collect();
    match storage.issue_tokens(records, events).await? {
        WriteOutcome::ParentRevoked => Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "the subject token was revoked while this request was processed",
        )),
        _ => Ok(()),
    }
}

/// Signs the token, then records it and its audit entry durably before returning it.
pub async fn issue_access_token<S: IssueStorage + ?Sized>(
    storage: &S,
    mint: &Mint<'_>,
    spec: AccessSpec,
) -> Result<Issued, OAuthError> {
    let ttl = spec.ttl;
    let mut minted = mint_access(mint, spec)?;
    persist(storage, &mut [&mut minted]).await?;
    Ok(Issued {
        bound: minted.record.jkt.is_some(),
        access_token: minted.token,
        expires_in: ttl,
        scope: minted.record.scope,
        refresh_token: None,
        issued_token_type: None,
        id_token: None,
    })
}

/// A token presented to us, found only if this server issued exactly these bytes, it is of the
/// `kind` the caller expects, and it is live: not revoked, not consumed (a rotated refresh
/// token), not expired. The one lookup every place that accepts a presented token uses, so a
/// refresh token is never taken where an access token is expected (RFC 6749 §1.5, RFC 9700
/// §4.14), nor an agent token (good only as an `actor_token`) at a resource server.
pub async fn live_presented<S: TokenLookup + ?Sized>(
    storage: &S,
    token: &str,
    kind: TokenKind,
    now: i64,
) -> Result<Option<TokenRecord>, OAuthError> {
    match storage.find_presented(token).await {
        Ok(r) => Ok(r.filter(|t| t.is_live(kind, now))),
        // Fail closed: a token whose stored record does not parse is not live. Say so to the
        // operator, never to the caller.
        Err(StoreError::CorruptRecord(why)) => {
            tracing::error!(%why, "a presented token's stored record is unreadable; refused");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The agents of an RFC 8693 `act` claim, outermost (the current actor) first.
pub fn actor_chain(act: Option<&Actor>) -> Vec<String> {
    super::act::chain_of(act)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7519_s4_1_3_aud_is_a_string_for_one_audience() {
        let mut c = AccessClaims {
            iss: "i".into(),
            sub: "s".into(),
            aud: vec!["a".into()],
            exp: 1,
            iat: 0,
            jti: "j".into(),
            client_id: "c".into(),
            scope: "x".into(),
            sid: None,
            act: None,
            att: None,
            cnf: None,
            dpop_key: None,
        };
        assert_eq!(serde_json::to_value(&c).unwrap()["aud"], "a");
        c.aud.push("b".into());
        assert_eq!(
            serde_json::to_value(&c).unwrap()["aud"],
            serde_json::json!(["a", "b"])
        );
        let back: AccessClaims = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
