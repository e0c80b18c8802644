//! `POST /bc-authorize` (OpenID CIBA Core 1.0 §7, poll mode).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::extract::Form;
use crate::oauth::grant::ciba;
use crate::oauth::{Ctx, OAuthError};

pub async fn bc_authorize(State(ctx): State<Arc<Ctx>>, form: Form) -> Response {
    let resp = match answer(&ctx, form).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    super::dpop::with_nonce(&ctx, resp)
}

async fn answer(ctx: &Arc<Ctx>, form: Form) -> Result<Response, OAuthError> {
    let presented = form.client_credentials()?;
    let client = ctx.auth.authenticate(presented).await?.client;
    // A proof here is checked against the agent token's binding; the token is bound when it
    // is finally polled for, to the key of that request's proof.
    let jkt = super::dpop::binding(ctx, &form.headers, "/bc-authorize", client.dpop).await?;
    let env = crate::oauth::grant::Env {
        jkt: jkt.as_deref(),
        ..ctx.grant_env()
    };
    let r = ciba::bc_authorize(ctx.as_ref(), &env, &client, &form.params).await?;
    let mut resp = axum::Json(json!({
        "auth_req_id": r.auth_req_id,
        "expires_in": r.expires_in,
        "interval": r.interval,
    }))
    .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
