//! RFC 6749 §6: refresh tokens, rotated on every use (RFC 9700 §4.14.2). A rotated refresh
//! token presented again means two parties hold it; the whole session is revoked.
//!
//! The new pair names the consumed refresh token as its parent, so the store refuses to record
//! it if the family was revoked while this request ran (`WriteOutcome::ParentRevoked`), and revoking
//! any refresh token cascades to its successors.
//!
//! Storage: [`RefreshTokenStorage`]. From the [`Env`]: the mint and `tokens.access_token_ttl`.

use async_trait::async_trait;
use serde_json::json;

use super::{Env, SessionRevocation, UserStorage};
use crate::audit::AuditEvent;
use crate::crypto::sha256;
use crate::oauth::client::Client;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::request::REFRESH_TOKEN;
use crate::oauth::scope::ScopeSet;
use crate::oauth::token::{
    AccessSpec, IssueStorage, Issued, TokenLookup, mint_access, mint_refresh, persist,
};
use crate::store::{Consumed, StoreError, TokenKind, TokenRecord};

/// What refreshing does to storage: find the presented refresh token, consume it exactly once,
/// issue its successors; on reuse, revoke its session (or the token itself when it has none);
/// and ask whether its human is still a user.
#[async_trait]
pub trait RefreshTokenStorage:
    IssueStorage + TokenLookup + SessionRevocation + UserStorage
{
    /// Marks the refresh token consumed, atomically: of two concurrent uses one gets `Now`.
    async fn consume_token(&self, token_hash: &[u8], now: i64) -> Result<Consumed, StoreError>;
    /// Revokes one token (and what derives from it), with the audit entries saying why.
    async fn revoke_token(
        &self,
        token_hash: &[u8],
        audit: Vec<AuditEvent>,
    ) -> Result<(), StoreError>;
}

fn bad_grant(d: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, d)
}

pub async fn grant<S: RefreshTokenStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    client: &Client,
    refresh_token: &str,
    scope: Option<ScopeSet>,
    targets: &[String],
) -> Result<Issued, OAuthError> {
    if !client.allows_grant(REFRESH_TOKEN) {
        return Err(OAuthError::unauthorized_client(format!(
            "client `{}` is not allowed the refresh_token grant",
            client.client_id
        )));
    }
    let hash = sha256(refresh_token.as_bytes()).to_vec();
    // Checked before consuming, so a wrong client or an access token presented here cannot
    // burn (and so revoke) someone's session.
    let found = storage
        .find_token(&hash)
        .await?
        .filter(|r| r.kind == TokenKind::Refresh);
    let Some(found) = found else {
        return Err(bad_grant("the refresh token is unknown"));
    };
    if found.client_id != client.client_id {
        return Err(bad_grant(
            "the refresh token was issued to another client (RFC 6749 §6)",
        ));
    }
    if found.consumed_at.is_some() {
        return Err(reused(storage, &found).await);
    }
    // SPEC "Invariants": a human taken out of the config gets nothing new (their tokens were
    // revoked at start; this holds even for a replica that has not restarted yet).
    if storage.user(&found.sub).is_none() {
        return Err(bad_grant(
            "the human this refresh token was issued for is no longer a user of this server",
        ));
    }
    check_live(&found, env.now())?;
    // RFC 9449 §5: a refresh token bound to a key is good only with a proof by that key.
    // Checked before consuming, so whoever copied the token cannot burn the session with it.
    if let Some(bound) = &found.jkt
        && env.jkt != Some(bound.as_str())
    {
        return Err(bad_grant(
            "the refresh token is bound to a DPoP key: send a DPoP proof signed by that key (RFC 9449 §5)",
        ));
    }
    let granted = ScopeSet::parse(&found.scope).unwrap_or_default();
    // RFC 6749 §6: a narrower scope may be asked for, never a wider one.
    let scope = match scope {
        Some(s) if !s.is_subset(&granted) => {
            return Err(OAuthError::invalid_scope(format!(
                "scope exceeds what was granted: {}",
                s.excess(&granted).join(" ")
            )));
        }
        Some(s) => s,
        None => granted,
    };
    // Also checked before consuming: a wrong `resource` must not burn the refresh token.
    let aud = super::narrow_audiences(&found.aud, targets)?;
    env.require_bound(&aud)?;
    let narrowed = super::scope_at(env, &scope.to_string(), &aud);
    if narrowed.is_empty() && !scope.is_empty() {
        return Err(OAuthError::invalid_scope(
            "none of the granted scope means anything at the resource asked for",
        ));
    }
    let rec = match storage.consume_token(&hash, env.now()).await? {
        Consumed::Now(rec) => rec,
        Consumed::Before(rec) => return Err(reused(storage, &rec).await),
        Consumed::NotFound => return Err(bad_grant("the refresh token is unknown")),
    };
    let now = env.now();
    check_live(&rec, now)?;
    let ttl = env.access_ttl();
    let mut access = mint_access(
        &env.mint,
        AccessSpec {
            sub: rec.sub.clone(),
            client_id: rec.client_id.clone(),
            scope: narrowed,
            aud,
            ttl,
            sid: rec.sid.clone(),
            act: None,
            att: None,
            may_act: None,
            parent_hash: Some(hash.clone()),
            grant: REFRESH_TOKEN,
            jkt: env.bind(),
            key_in_tpm: false,
        },
    )?;
    // The family keeps its original expiry: rotation does not extend a session forever.
    let mut refresh = mint_refresh(
        &env.mint,
        &access.record,
        (rec.exp - now).max(1),
        REFRESH_TOKEN,
        refresh_binding(client, env),
    );
    // RFC 6749 §6: the new refresh token's scope is identical to the one presented.
    refresh.record.scope = rec.scope.clone();
    refresh.record.aud = rec.aud.clone();
    refresh.record.parent_hash = Some(hash);
    persist(storage, &mut [&mut access, &mut refresh])
        .await
        .map_err(|e| {
            if e.code == ErrorCode::InvalidGrant {
                bad_grant("the refresh token was revoked")
            } else {
                e
            }
        })?;
    Ok(Issued {
        bound: access.record.jkt.is_some(),
        access_token: access.token,
        expires_in: ttl,
        scope: access.record.scope,
        refresh_token: Some(refresh.token),
        issued_token_type: None,
        id_token: None,
    })
}

/// RFC 9449 §5: the key a new refresh token is bound to. A public client's refresh tokens are
/// bound to the key of the request's proof, since nothing else constrains who presents them; a
/// confidential client's are not (its authentication does), so it may change keys.
pub fn refresh_binding(client: &Client, env: &Env<'_>) -> Option<String> {
    client.public.then(|| env.bind()).flatten()
}

fn check_live(r: &TokenRecord, now: i64) -> Result<(), OAuthError> {
    if r.revoked_at.is_some() {
        return Err(bad_grant("the refresh token was revoked"));
    }
    if r.exp <= now {
        return Err(bad_grant("the refresh token has expired"));
    }
    Ok(())
}

/// RFC 9700 §4.14.2: a rotated refresh token came back. Revoke its whole session (every access
/// and refresh token with its `sid`, and what was derived from them) and refuse.
async fn reused<S: RefreshTokenStorage + ?Sized>(storage: &S, r: &TokenRecord) -> OAuthError {
    let mut ev = AuditEvent::new("token.reuse_detected");
    ev.subject = Some(r.sub.clone());
    ev.client_id = Some(r.client_id.clone());
    ev.session = r.sid.clone();
    ev.token_jti = Some(r.jti.clone());
    ev.detail = json!({ "kind": "refresh", "rule": "RFC 9700 §4.14.2" });
    let revoked = match &r.sid {
        Some(sid) => storage.revoke_session(sid, vec![ev]).await,
        None => storage.revoke_token(&r.token_hash, vec![ev]).await,
    };
    if let Err(e) = revoked {
        return e.into();
    }
    bad_grant("the refresh token was already used; its session is revoked (RFC 9700 §4.14.2)")
}

#[cfg(test)]
mod tests;
