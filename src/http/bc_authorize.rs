//! `POST /bc-authorize` (OpenID CIBA Core 1.0 §7, poll mode).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::extract::Form;
use crate::oauth::grant::ciba;
use crate::oauth::{Ctx, OAuthError};

pub async fn bc_authorize(State(ctx): State<Arc<Ctx>>, form: Form) -> Result<Response, OAuthError> {
    let presented = form.client_credentials()?;
    let client = ctx.auth.authenticate(presented).await?.client;
    let r = ciba::bc_authorize(ctx.as_ref(), &ctx.grant_env(), &client, &form.params).await?;
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
