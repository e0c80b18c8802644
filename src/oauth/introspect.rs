//! RFC 7662 token introspection for resource servers.

use serde::Serialize;
use serde_json::json;

use super::Ctx;
use super::act::Actor;
use super::client::Client;
use super::error::{ErrorCode, OAuthError};
use super::token::{actor_chain, live_presented};
use crate::audit::AuditEvent;
use crate::store::{TokenKind, TokenRecord, WriteOp};

/// What `/introspect` answers (RFC 7662 §2.2).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Introspection {
    /// `{"active": false}` and nothing else for anything not live, or not meant for the asking
    /// resource server.
    Inactive {
        active: bool,
    },
    Active(Box<ActiveToken>),
}

/// The claims of a live token, in this order.
#[derive(Debug, Serialize)]
pub struct ActiveToken {
    active: bool,
    iss: String,
    sub: String,
    scope: String,
    client_id: String,
    aud: Vec<String>,
    exp: i64,
    iat: i64,
    jti: String,
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<Actor>,
    /// How the current actor proved itself (`software` or `tpm`), as in the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    att: Option<String>,
    /// RFC 9449 §6.2: the DPoP key a bound token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<crate::oauth::token::Confirmation>,
    /// Where that key lives: `tpm` or `software`.
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_key: Option<String>,
    /// For a delegated token, the DPoP binding of every hop this server issued, the current
    /// actor first (`act` names the same agents in the same order).
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_chain: Option<Vec<HopBinding>>,
}

/// One hop of a delegation chain and the key its token was bound to (none: a bearer token).
#[derive(Debug, Serialize)]
pub struct HopBinding {
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    jkt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_key: Option<String>,
}

/// The longest chain walked: `max_delegation_depth` is far below it.
const MAX_HOPS: usize = 16;

/// RFC 9449 through a delegation: each hop's binding, walking `parent_hash` up from `r` while
/// the tokens are delegated ones. None when no hop is bound (nothing to say beyond `act`).
async fn dpop_chain(ctx: &Ctx, r: &TokenRecord) -> Result<Option<Vec<HopBinding>>, OAuthError> {
    let mut hops = Vec::new();
    let mut cur = Some(r.clone());
    while let Some(t) = cur.take() {
        let Some(act) = &t.act else { break };
        hops.push(HopBinding {
            sub: act.sub.clone(),
            jkt: t.jkt.clone(),
            dpop_key: t.dpop_key.clone(),
        });
        if hops.len() >= MAX_HOPS {
            break;
        }
        if let Some(parent) = &t.parent_hash {
            cur = ctx.store.find_token(parent).await?;
        }
    }
    Ok(hops.iter().any(|h| h.jkt.is_some()).then_some(hops))
}

fn inactive() -> Introspection {
    Introspection::Inactive { active: false }
}

pub async fn introspect(
    ctx: &Ctx,
    caller: &Client,
    token: &str,
) -> Result<Introspection, OAuthError> {
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
    // Only an access token is ever active here (SPEC "Invariants"): refresh tokens, consumed
    // or not, and agent tokens answer `{"active": false}`.
    let live = live_presented(ctx, token, TokenKind::Access, now).await?;
    let for_caller = live.filter(|r| r.aud.iter().any(|a| a == caller.audience()));

    let mut ev = AuditEvent::new("token.introspected");
    ev.client_id = Some(caller.client_id.clone());
    ev.detail = json!({ "active": for_caller.is_some() });
    let Some(r) = for_caller else {
        // Every introspection is audited, also the ones that find nothing.
        ctx.writer.write(WriteOp::None, vec![ev]).await?;
        return Ok(inactive());
    };
    ev.subject = Some(r.sub.clone());
    ev.actors = actor_chain(r.act.as_ref());
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
    let chain = match r.act {
        Some(_) => dpop_chain(ctx, &r).await?,
        None => None,
    };
    Ok(active_response(ctx, r, chain))
}

fn active_response(ctx: &Ctx, r: TokenRecord, chain: Option<Vec<HopBinding>>) -> Introspection {
    Introspection::Active(Box::new(ActiveToken {
        active: true,
        iss: ctx.issuer.clone(),
        sub: r.sub,
        scope: r.scope,
        client_id: r.client_id,
        aud: r.aud.into(),
        exp: r.exp,
        iat: r.iat,
        jti: r.jti,
        // RFC 9449 §6.2: a bound token is a DPoP token, and says which key it is bound to.
        token_type: if r.jkt.is_some() { "DPoP" } else { "Bearer" },
        cnf: crate::oauth::token::Confirmation::of(r.jkt.as_ref()),
        dpop_key: r.dpop_key,
        dpop_chain: chain,
        sid: r.sid,
        act: r.act,
        att: r.att,
    }))
}
