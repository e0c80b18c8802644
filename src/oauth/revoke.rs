//! RFC 7009 token revocation. Revoking a token revokes every token derived from it.

use serde_json::json;

use super::Ctx;
use super::client::Client;
use super::error::OAuthError;
use super::token::actor_chain;
use crate::audit::AuditEvent;
use crate::store::{TokenKind, TokenRecord, WriteOp};

/// What revoking `r` cuts. A refresh token stands for its whole grant (RFC 7009 §2.1: the
/// server SHOULD also invalidate the access tokens of the same grant): every refresh and access
/// token of its session `sid` (the code's session, kept through every rotation) and everything
/// derived from them. Any other token takes only itself and what was derived from it.
fn revocation_of(r: &TokenRecord) -> WriteOp {
    match (&r.kind, &r.sid) {
        (TokenKind::Refresh, Some(sid)) => WriteOp::RevokeSession { sid: sid.clone() },
        _ => WriteOp::Revoke {
            token_hash: r.token_hash.clone(),
        },
    }
}

/// Returns normally for unknown, expired or already revoked tokens (RFC 7009 §2.2: "invalid
/// tokens do not cause an error response").
pub async fn revoke(ctx: &Ctx, caller: &Client, token: &str) -> Result<(), OAuthError> {
    let Some(r) = ctx.store.find_presented(token).await? else {
        return Ok(());
    };
    // RFC 7009 §2.1: the token must have been issued to the client asking.
    if r.client_id != caller.client_id {
        return Err(OAuthError::unauthorized_client(
            "this token was not issued to the client asking to revoke it (RFC 7009 §2.1)",
        ));
    }
    if r.revoked_at.is_some() {
        return Ok(());
    }
    let mut ev = AuditEvent::new("token.revoked");
    ev.subject = Some(r.sub.clone());
    ev.actors = actor_chain(r.act.as_ref());
    ev.client_id = Some(caller.client_id.clone());
    ev.session = r.sid.clone();
    ev.token_jti = Some(r.jti.clone());
    ev.detail = json!({ "via": "revocation_endpoint", "kind": r.kind.as_str() });
    ctx.writer.write(revocation_of(&r), vec![ev]).await?;
    Ok(())
}
