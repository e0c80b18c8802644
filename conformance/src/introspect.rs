//! Token introspection (RFC 7662) and revocation (RFC 7009).

use serde_json::{Value, json};

use crate::http::{Captured, expect_oauth_error};
use crate::jwt::{aud_contains, scope_set};
use crate::{Check, Ctx, garbage_token, jwt};

pub(crate) async fn run(ctx: &Ctx<'_>) -> Vec<Check> {
    vec![
        introspect_unauthenticated(ctx).await,
        introspect_wrong_secret(ctx).await,
        introspect_active(ctx).await,
        introspect_aud(ctx).await,
        introspect_matches_token(ctx).await,
        introspect_unknown(ctx).await,
        introspect_tampered(ctx).await,
        introspect_unsigned(ctx).await,
        introspect_missing_token(ctx).await,
        revoke_unknown(ctx).await,
        revoke_unauthenticated(ctx).await,
        revoke_live(ctx).await,
        revoked_inactive(ctx).await,
        revoke_other_clients_token(ctx).await,
    ]
}

/// The shared audience token, or a clear precondition failure.
fn live_token<'c>(ctx: &'c Ctx<'_>) -> Result<&'c str, String> {
    ctx.audience_token
        .as_deref()
        .map_err(|e| format!("precondition: no access token for the audience: {e}"))
}

/// Fails unless the response is 200 `application/json` and exactly `{"active": false}`.
pub(crate) fn expect_inactive(resp: &Captured) -> Result<(), String> {
    if resp.status == 200
        && resp.has_json_content_type()
        && resp.json == Some(json!({"active": false}))
    {
        Ok(())
    } else {
        Err(format!(
            "expected HTTP 200 application/json {{\"active\": false}} and nothing else, got {}",
            resp.summary()
        ))
    }
}

/// Fails unless the response is 200 JSON with `active: true`.
pub(crate) fn expect_active(resp: &Captured) -> Result<(), String> {
    resp.expect_status(200)?;
    if !resp.has_json_content_type() {
        return Err(format!(
            "Content-Type is not application/json: {}",
            resp.summary()
        ));
    }
    match resp.object()?.get("active") {
        Some(Value::Bool(true)) => Ok(()),
        other => Err(format!(
            "active is {other:?}, expected true: {}",
            resp.summary()
        )),
    }
}

/// Introspection of the shared live token as the resource server, expected active.
async fn introspect_live(ctx: &Ctx<'_>) -> Result<Captured, String> {
    let resp = ctx.introspect(live_token(ctx)?).await?;
    expect_active(&resp)?;
    Ok(resp)
}

async fn introspect_unauthenticated(ctx: &Ctx<'_>) -> Check {
    let token = ctx
        .audience_token
        .clone()
        .unwrap_or_else(|_| garbage_token());
    let result = ctx
        .post_form(&ctx.introspection_endpoint, &[("token", &token)], None)
        .await
        .and_then(|resp| resp.expect_status(401));
    Check::new(
        "RFC 7662 §2.1: introspection without client authentication gets 401",
        result,
    )
}

async fn introspect_wrong_secret(ctx: &Ctx<'_>) -> Check {
    let t = ctx.target;
    let token = ctx
        .audience_token
        .clone()
        .unwrap_or_else(|_| garbage_token());
    let auth = crate::http::basic_auth(
        &t.resource_server_id,
        &format!("{}-conformance-wrong", t.resource_server_secret),
    );
    let result = ctx
        .post_form(
            &ctx.introspection_endpoint,
            &[("token", &token)],
            Some(&auth),
        )
        .await
        .and_then(|resp| resp.expect_status(401));
    Check::new(
        "RFC 7662 §2.1: introspection with a wrong client secret gets 401",
        result,
    )
}

async fn introspect_active(ctx: &Ctx<'_>) -> Check {
    let t = ctx.target;
    let result = introspect_live(ctx).await.and_then(|resp| {
        let obj = resp.object()?;
        let mut problems = Vec::new();
        for name in ["scope", "client_id", "sub", "jti"] {
            if !obj.get(name).is_some_and(Value::is_string) {
                problems.push(format!("{name} is {:?}", obj.get(name)));
            }
        }
        for name in ["exp", "iat"] {
            if obj.get(name).and_then(Value::as_i64).is_none() {
                problems.push(format!("{name} is {:?}", obj.get(name)));
            }
        }
        if !obj
            .get("aud")
            .is_some_and(|v| v.is_string() || v.is_array())
        {
            problems.push(format!("aud is {:?}", obj.get("aud")));
        }
        if let Some(c) = obj.get("client_id").and_then(Value::as_str)
            && c != t.client_id
        {
            problems.push(format!("client_id is {c:?}, expected {:?}", t.client_id));
        }
        if let Some(s) = obj.get("scope").and_then(Value::as_str)
            && !scope_set(s).contains(t.scope.as_str())
        {
            problems.push(format!("scope {s:?} lacks {:?}", t.scope));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {}", problems.join("; "), resp.summary()))
        }
    });
    Check::new(
        "RFC 7662 §2.2: a live token introspects as active: true with scope, client_id, sub, exp, iat, jti and aud",
        result,
    )
}

async fn introspect_aud(ctx: &Ctx<'_>) -> Check {
    let want = ctx.target.audience.as_str();
    let result = introspect_live(ctx).await.and_then(|resp| {
        let aud = resp.object()?.get("aud");
        if aud_contains(aud, want) {
            Ok(())
        } else {
            Err(format!("aud is {aud:?}, expected it to name {want:?}"))
        }
    });
    Check::new(
        "RFC 7662 §2.2: introspection's aud names the resource server's audience",
        result,
    )
}

async fn introspect_matches_token(ctx: &Ctx<'_>) -> Check {
    let result = async {
        let p = jwt::parse(live_token(ctx)?)?;
        let resp = introspect_live(ctx).await?;
        let obj = resp.object()?;
        let differ: Vec<String> = ["sub", "client_id", "jti", "exp", "iat"]
            .iter()
            .filter(|n| obj.get(**n) != p.claims.get(**n))
            .map(|n| {
                format!(
                    "{n}: introspection {:?}, token {:?}",
                    obj.get(*n),
                    p.claims.get(*n)
                )
            })
            .collect();
        if differ.is_empty() {
            Ok(())
        } else {
            Err(differ.join("; "))
        }
    }
    .await;
    Check::new(
        "RFC 7662 §2.2: introspection's sub, client_id, jti, exp and iat match the token's claims",
        result,
    )
}

async fn introspect_unknown(ctx: &Ctx<'_>) -> Check {
    let result = ctx
        .introspect(&garbage_token())
        .await
        .and_then(|resp| expect_inactive(&resp));
    Check::new(
        "RFC 7662 §2.2: an unknown token introspects as exactly {\"active\": false}",
        result,
    )
}

async fn introspect_tampered(ctx: &Ctx<'_>) -> Check {
    let result = async {
        let forged = jwt::tamper_signature(live_token(ctx)?)?;
        expect_inactive(&ctx.introspect(&forged).await?)
    }
    .await;
    Check::new(
        "RFC 7662 §2.2: a live token with a tampered signature introspects as exactly {\"active\": false}",
        result,
    )
}

async fn introspect_unsigned(ctx: &Ctx<'_>) -> Check {
    let result = async {
        let forged = jwt::unsigned_copy(live_token(ctx)?)?;
        expect_inactive(&ctx.introspect(&forged).await?)
    }
    .await;
    Check::new(
        "RFC 7662 §2.2: an unsigned (alg none) copy of a live token introspects as exactly {\"active\": false}",
        result,
    )
}

async fn introspect_missing_token(ctx: &Ctx<'_>) -> Check {
    let result = ctx
        .post_basic_rs(&ctx.introspection_endpoint, &[])
        .await
        .and_then(|resp| expect_oauth_error(&resp, &[400], "invalid_request"));
    Check::new(
        "RFC 7662 §2.1: introspection without a token parameter gets 400 invalid_request",
        result,
    )
}

async fn revoke_unknown(ctx: &Ctx<'_>) -> Check {
    let result = ctx
        .post_basic_client(&ctx.revocation_endpoint, &[("token", &garbage_token())])
        .await
        .and_then(|resp| resp.expect_status(200));
    Check::new("RFC 7009 §2.2: revoking an unknown token gets 200", result)
}

async fn revoke_unauthenticated(ctx: &Ctx<'_>) -> Check {
    let result = ctx
        .post_form(
            &ctx.revocation_endpoint,
            &[("token", &garbage_token())],
            None,
        )
        .await
        .and_then(|resp| expect_oauth_error(&resp, &[401], "invalid_client"));
    Check::new(
        "RFC 7009 §2.2.1: revocation without client authentication gets 401 invalid_client",
        result,
    )
}

/// Revokes `token` as the client that obtained it; expects 200.
async fn revoke_as_client(ctx: &Ctx<'_>, token: &str) -> Result<(), String> {
    let resp = ctx
        .post_basic_client(&ctx.revocation_endpoint, &[("token", token)])
        .await?;
    resp.expect_status(200)
        .map_err(|e| format!("revocation: {e}"))
}

/// A fresh audience token that introspection currently reports as active.
async fn fresh_active_token(ctx: &Ctx<'_>) -> Result<String, String> {
    let token = ctx
        .issue_audience_token()
        .await
        .map_err(|e| format!("precondition: {e}"))?;
    let resp = ctx.introspect(&token).await?;
    expect_active(&resp).map_err(|e| format!("precondition: a fresh token is not active: {e}"))?;
    Ok(token)
}

async fn revoke_live(ctx: &Ctx<'_>) -> Check {
    let result = async {
        let token = ctx
            .issue_audience_token()
            .await
            .map_err(|e| format!("precondition: {e}"))?;
        revoke_as_client(ctx, &token).await
    }
    .await;
    Check::new(
        "RFC 7009 §2.1: revoking a live token as the client that obtained it gets 200",
        result,
    )
}

async fn revoked_inactive(ctx: &Ctx<'_>) -> Check {
    let result = async {
        let token = fresh_active_token(ctx).await?;
        revoke_as_client(ctx, &token).await?;
        let resp = ctx.introspect(&token).await?;
        expect_inactive(&resp).map_err(|e| format!("after revocation: {e}"))
    }
    .await;
    Check::new(
        "RFC 7009 §2.2: a revoked token introspects as exactly {\"active\": false}",
        result,
    )
}

async fn revoke_other_clients_token(ctx: &Ctx<'_>) -> Check {
    let result = async {
        let token = fresh_active_token(ctx).await?;
        // Any status is acceptable here; what matters is that the token survives.
        let attempt = ctx
            .post_basic_rs(&ctx.revocation_endpoint, &[("token", &token)])
            .await?;
        let after = ctx.introspect(&token).await?;
        expect_active(&after).map_err(|e| {
            format!(
                "after another client's revocation attempt (HTTP {}): {e}",
                attempt.status
            )
        })
    }
    .await;
    Check::new(
        "RFC 7009 §2.1: a client cannot revoke a token issued to another client",
        result,
    )
}
