//! RFC 7662 token introspection for resource servers.

use serde_json::{Value, json};

use super::Ctx;
use super::client::Client;
use super::error::{ErrorCode, OAuthError};
use super::token::actor_chain;
use crate::audit::AuditEvent;
use crate::store::{TokenRecord, WriteOp};

/// RFC 7662 §2.2: `{"active": false}` and nothing else for anything not live, or not meant for
/// the asking resource server.
pub fn inactive() -> Value {
    json!({ "active": false })
}

pub async fn introspect(ctx: &Ctx, caller: &Client, token: &str) -> Result<Value, OAuthError> {
    if !caller.introspect {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!(
                "client `{}` may not introspect tokens (introspect = false)",
                caller.client_id
            ),
        )
        .with_status(403));
    }
    let now = ctx.clock.now();
    let record = ctx.store.find_presented(token).await?;
    let live = record.filter(|r| r.revoked_at.is_none() && r.exp > now);
    let for_caller = live.filter(|r| r.aud.iter().any(|a| a == caller.audience()));

    let mut ev = AuditEvent::new("token.introspected");
    ev.client_id = Some(caller.client_id.clone());
    ev.detail = json!({ "active": for_caller.is_some() });
    let Some(r) = for_caller else {
        // Every introspection is audited, also the ones that find nothing.
        ctx.writer.write(WriteOp::None, vec![ev]).await?;
        return Ok(inactive());
    };
    let act: Option<Value> = r.act.as_deref().and_then(|a| serde_json::from_str(a).ok());
    ev.subject = Some(r.sub.clone());
    ev.actors = actor_chain(act.as_ref());
    ev.session = r.sid.clone();
    ev.token_jti = Some(r.jti.clone());
    ctx.writer
        .write(
            WriteOp::Touch {
                jti: r.jti.clone(),
                by: caller.client_id.clone(),
            },
            vec![ev],
        )
        .await?;
    Ok(active_response(ctx, &r, act))
}

fn active_response(ctx: &Ctx, r: &TokenRecord, act: Option<Value>) -> Value {
    let mut v = json!({
        "active": true,
        "iss": ctx.issuer,
        "sub": r.sub,
        "scope": r.scope,
        "client_id": r.client_id,
        "aud": r.aud,
        "exp": r.exp,
        "iat": r.iat,
        "jti": r.jti,
        "token_type": "Bearer",
    });
    if let Some(o) = v.as_object_mut() {
        if let Some(sid) = &r.sid {
            o.insert("sid".into(), sid.clone().into());
        }
        if let Some(act) = act {
            o.insert("act".into(), act);
        }
    }
    v
}
