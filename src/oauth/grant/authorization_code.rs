//! RFC 6749 §4.1 with PKCE (RFC 7636): the authorization endpoint issues a single-use code bound
//! to the client, its redirect URI, the PKCE challenge, the human and what was granted; the
//! client redeems it at `/token` for the human's access token and a refresh token.
//!
//! Storage: [`AuthorizationCodeStorage`]. From the [`Env`]: the mint and `tokens` (access,
//! refresh and code lifetimes).

pub mod request;

use async_trait::async_trait;
use serde_json::json;

use super::{Env, SessionRevocation};
use crate::audit::AuditEvent;
use crate::crypto::{b64url, random_bytes, sha256, time_ordered_id};
use crate::oauth::client::Client;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::pkce::CodeChallenge;
use crate::oauth::request::{AUTHORIZATION_CODE, REFRESH_TOKEN};
use crate::oauth::scope::{OPENID, ScopeSet};
use crate::oauth::token::{
    AccessSpec, IssueStorage, Issued, mint_access, mint_id_token, mint_refresh, persist,
};
use crate::store::StoreError;
use crate::store::web::CodeRecord;

use request::AuthorizeRequest;

/// What the code flow does to storage: remember a code, find it, mark it used exactly once
/// (or replayed), issue its tokens, and on a replay revoke the session they belong to.
#[async_trait]
pub trait AuthorizationCodeStorage: IssueStorage + SessionRevocation {
    async fn create_code(&self, code: &CodeRecord, now: i64) -> Result<(), StoreError>;
    async fn find_code(&self, code_hash: &[u8]) -> Result<Option<CodeRecord>, StoreError>;
    /// Marks the code used, atomically: true for exactly one of concurrent redemptions.
    async fn use_code(&self, code_hash: &[u8], now: i64) -> Result<bool, StoreError>;
    async fn mark_code_replayed(&self, code_hash: &[u8], now: i64) -> Result<(), StoreError>;
}

/// Issues a code (256 random bits, stored hashed) for `username`, valid for
/// `tokens.authorization_code_ttl`. Each code starts a new session `sid`, which the tokens it
/// yields (and their refreshed successors) carry.
pub async fn issue_code<S: AuthorizationCodeStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    req: &AuthorizeRequest,
    username: &str,
    scope: &ScopeSet,
) -> Result<String, OAuthError> {
    let now = env.now();
    let code = b64url(&random_bytes::<32>());
    let record = CodeRecord {
        code_hash: sha256(code.as_bytes()).to_vec(),
        client_id: req.client.client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.challenge.as_str().to_string(),
        username: username.to_string(),
        scope: scope.to_string(),
        aud: req.aud.clone().into(),
        sid: time_ordered_id(env.mint.clock),
        created_at: now,
        expires_at: now + env.tokens.authorization_code_ttl.as_secs() as i64,
        used_at: None,
        replayed_at: None,
        nonce: req.nonce.clone(),
    };
    storage.create_code(&record, now).await?;
    Ok(code)
}

/// The parameters of a code redemption at `/token` (RFC 6749 §4.1.3, RFC 7636 §4.5, RFC 8707
/// §2.2).
pub struct Redemption<'a> {
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    pub targets: &'a [String],
}

fn bad_grant(d: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, d)
}

/// RFC 6749 §4.1.3 and RFC 7636 §4.6. Every check runs before the code is marked used, so a
/// party without the verifier cannot burn a stolen code; the mark itself is atomic, so of two
/// concurrent redemptions exactly one wins. A second redemption revokes everything the first
/// issued (RFC 6749 §4.1.2): it may land before or after the first one's tokens are written,
/// so each side checks for the other (see [`revoke_if_replayed`]).
pub async fn grant<S: AuthorizationCodeStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    client: &Client,
    redeem: Redemption<'_>,
) -> Result<Issued, OAuthError> {
    let Redemption {
        code,
        redirect_uri,
        code_verifier,
        targets,
    } = redeem;
    if !client.allows_grant(AUTHORIZATION_CODE) {
        return Err(OAuthError::unauthorized_client(format!(
            "client `{}` is not allowed the authorization_code grant",
            client.client_id
        )));
    }
    let hash = sha256(code.as_bytes()).to_vec();
    let now = env.now();
    let Some(rec) = storage.find_code(&hash).await? else {
        return Err(bad_grant("the authorization code is unknown"));
    };
    if rec.used_at.is_some() {
        return Err(replayed(storage, env, &rec).await);
    }
    if rec.expires_at <= now {
        return Err(bad_grant("the authorization code has expired"));
    }
    if rec.client_id != client.client_id {
        return Err(bad_grant(
            "the authorization code was issued to another client (RFC 6749 §4.1.3)",
        ));
    }
    if redirect_uri != Some(rec.redirect_uri.as_str()) {
        return Err(bad_grant(
            "redirect_uri must be identical to the one in the authorization request (RFC 6749 §4.1.3)",
        ));
    }
    let Some(verifier) = code_verifier else {
        return Err(bad_grant(
            "code_verifier is missing; this code was issued with a PKCE challenge (RFC 7636 §4.5)",
        ));
    };
    if !CodeChallenge::from_stored(rec.code_challenge.clone()).verify(verifier) {
        return Err(bad_grant(
            "code_verifier does not match the code_challenge (RFC 7636 §4.6)",
        ));
    }
    let aud = super::narrow_audiences(&rec.aud, targets)?;
    env.require_bound(&aud)?;
    let scope = super::scope_at(env, &rec.scope, &aud);
    if scope.is_empty() && !rec.scope.is_empty() {
        return Err(OAuthError::invalid_scope(
            "none of the granted scope means anything at the resource asked for",
        ));
    }
    if !storage.use_code(&hash, now).await? {
        return Err(replayed(storage, env, &rec).await);
    }
    let access_ttl = env.access_ttl();
    let mut access = mint_access(
        &env.mint,
        AccessSpec {
            sub: rec.username.clone(),
            client_id: rec.client_id.clone(),
            scope,
            aud,
            ttl: access_ttl,
            sid: Some(rec.sid.clone()),
            act: None,
            att: None,
            may_act: None,
            parent_hash: None,
            grant: AUTHORIZATION_CODE,
            jkt: env.bind(),
            key_in_tpm: false,
        },
    )?;
    // OpenID Connect Core §3.1.3.3: an ID Token beside the access token when `openid` was granted.
    let id_token = match rec.scope.split(' ').any(|s| s == OPENID) {
        true => Some(mint_id_token(
            &env.mint,
            &rec.username,
            &rec.client_id,
            rec.nonce.as_deref(),
            &access,
        )?),
        false => None,
    };
    let mut refresh = client.allows_grant(REFRESH_TOKEN).then(|| {
        let mut r = mint_refresh(
            &env.mint,
            &access.record,
            env.tokens.refresh_token_ttl.as_secs() as i64,
            AUTHORIZATION_CODE,
            super::refresh_token::refresh_binding(client, env),
        );
        // The grant stays for every resource the code was for (RFC 8707 §2.2).
        r.record.aud = rec.aud.clone();
        r
    });
    match &mut refresh {
        Some(r) => persist(storage, &mut [&mut access, r]).await?,
        None => persist(storage, &mut [&mut access]).await?,
    }
    revoke_if_replayed(storage, &hash).await?;
    Ok(Issued {
        bound: access.record.jkt.is_some(),
        access_token: access.token,
        expires_in: access_ttl,
        scope: access.record.scope,
        refresh_token: refresh.map(|r| r.token),
        issued_token_type: None,
        id_token,
    })
}

/// A second redemption: remember it, revoke the code's session, refuse.
async fn replayed<S: AuthorizationCodeStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    rec: &CodeRecord,
) -> OAuthError {
    let now = env.now();
    if let Err(e) = storage.mark_code_replayed(&rec.code_hash, now).await {
        return e.into();
    }
    if let Err(e) = revoke_session(storage, rec).await {
        return e;
    }
    bad_grant("the authorization code was already used; the tokens it issued are revoked")
}

/// The winning redemption's tokens are written after the code was marked used; a replay seen
/// in between revoked a session that had no tokens yet. Looking again after the write closes
/// that gap: whichever of the two writes lands last, the session ends up revoked.
async fn revoke_if_replayed<S: AuthorizationCodeStorage + ?Sized>(
    storage: &S,
    hash: &[u8],
) -> Result<(), OAuthError> {
    if let Some(rec) = storage.find_code(hash).await? {
        if rec.replayed_at.is_some() {
            revoke_session(storage, &rec).await?;
        }
    }
    Ok(())
}

async fn revoke_session<S: AuthorizationCodeStorage + ?Sized>(
    storage: &S,
    rec: &CodeRecord,
) -> Result<(), OAuthError> {
    let mut ev = AuditEvent::new("code.reuse_detected");
    ev.subject = Some(rec.username.clone());
    ev.client_id = Some(rec.client_id.clone());
    ev.session = Some(rec.sid.clone());
    ev.detail = json!({ "rule": "RFC 6749 §4.1.2" });
    storage.revoke_session(&rec.sid, vec![ev]).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
