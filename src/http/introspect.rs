//! `POST /introspect` (RFC 7662 §2).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::extract::Form;
use crate::oauth::{Ctx, OAuthError, introspect};

pub async fn introspect(State(ctx): State<Arc<Ctx>>, form: Form) -> Result<Response, OAuthError> {
    let presented = form.client_credentials()?;
    let caller = ctx.auth.authenticate(presented).await?.client;
    let token = form.params.required("token")?;
    let body = introspect::introspect(&ctx, &caller, token).await?;
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
