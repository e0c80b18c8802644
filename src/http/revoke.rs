//! `POST /revoke` (RFC 7009 §2).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use super::extract::Form;
use crate::oauth::{Ctx, OAuthError, revoke};

pub async fn revoke(State(ctx): State<Arc<Ctx>>, form: Form) -> Result<StatusCode, OAuthError> {
    let presented = form.client_credentials()?;
    let caller = ctx.auth.authenticate(presented).await?.client;
    let token = form.params.required("token")?;
    // `token_type_hint` is optional and only a hint (RFC 7009 §2.1); tokens are found by hash.
    let _hint = form.params.one("token_type_hint")?;
    revoke::revoke(&ctx, &caller, token).await?;
    Ok(StatusCode::OK)
}
