//! `POST /token` (RFC 6749 §3.2).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::extract::Form;
use crate::oauth::grant;
use crate::oauth::request::TokenRequest;
use crate::oauth::token::Issued;
use crate::oauth::{Ctx, OAuthError};

pub async fn token(State(ctx): State<Arc<Ctx>>, form: Form) -> Response {
    // A repeated `grant_type` is refused by `TokenRequest::parse`; the metric counts it as none.
    let grant = crate::metrics::grant_label(form.params.one("grant_type").ok().flatten());
    let resp = match answer(&ctx, form).await {
        Ok(r) => {
            ctx.metrics.token_request(grant, "issued");
            r
        }
        Err(e) => {
            ctx.metrics.token_request(grant, e.code.as_str());
            e.into_response()
        }
    };
    super::dpop::with_nonce(&ctx, resp)
}

async fn answer(ctx: &Arc<Ctx>, form: Form) -> Result<Response, OAuthError> {
    let presented = form.client_credentials()?;
    let request = TokenRequest::parse(&form.params)?;
    let client = ctx.auth.authenticate(presented).await?.client;
    let jkt = super::dpop::binding(ctx, &form.headers, "/token", client.dpop).await?;
    let env = crate::oauth::grant::Env {
        jkt: jkt.as_deref(),
        ..ctx.grant_env()
    };
    let issued = grant::token(ctx.as_ref(), &env, &client, request).await?;
    if let (true, Some(registry)) = (client.is_registered(), &ctx.registry) {
        // A registration is kept alive by tokens issued to it, nothing less.
        if let Err(e) = registry.used(&client.client_id).await {
            tracing::warn!(client_id = %client.client_id, error = %e, "cannot record a registered client's use");
        }
    }
    Ok(token_response(issued))
}

/// RFC 6749 §5.1: the token response, never cached.
fn token_response(issued: Issued) -> Response {
    let mut body = json!({
        "access_token": issued.access_token,
        // RFC 9449 §5: a bound token says so; RFC 6750 otherwise.
        "token_type": if issued.bound { "DPoP" } else { "Bearer" },
        "expires_in": issued.expires_in,
    });
    if let Some(o) = body.as_object_mut() {
        if !issued.scope.is_empty() {
            o.insert("scope".into(), issued.scope.into());
        }
        if let Some(r) = issued.refresh_token {
            o.insert("refresh_token".into(), r.into());
        }
        if let Some(t) = issued.issued_token_type {
            o.insert("issued_token_type".into(), t.into());
        }
        if let Some(t) = issued.id_token {
            o.insert("id_token".into(), t.into());
        }
    }
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}
