//! RFC 7009 token revocation. Revoking a token revokes every token derived from it.

use serde_json::json;

use super::Ctx;
use super::client::Client;
use super::error::OAuthError;
use super::token::actor_chain;
use crate::audit::AuditEvent;
use crate::store::WriteOp;

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
    let act: Option<serde_json::Value> =
        r.act.as_deref().and_then(|a| serde_json::from_str(a).ok());
    let mut ev = AuditEvent::new("token.revoked");
    ev.subject = Some(r.sub.clone());
    ev.actors = actor_chain(act.as_ref());
    ev.client_id = Some(caller.client_id.clone());
    ev.session = r.sid.clone();
    ev.token_jti = Some(r.jti.clone());
    ev.detail = json!({ "via": "revocation_endpoint" });
    ctx.writer
        .write(
            WriteOp::Revoke {
                token_hash: r.token_hash.clone(),
            },
            vec![ev],
        )
        .await?;
    Ok(())
}
