//! RFC 6749 §6: refresh tokens, rotated on every use (RFC 9700 §4.14).

use crate::oauth::Ctx;
use crate::oauth::client::Client;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::scope::ScopeSet;
use crate::oauth::token::Issued;

pub async fn grant(
    _ctx: &Ctx,
    _client: &Client,
    _refresh_token: &str,
    _scope: Option<ScopeSet>,
) -> Result<Issued, OAuthError> {
    Err(OAuthError::new(
        ErrorCode::UnsupportedGrantType,
        "grant_type `refresh_token` is not supported yet",
    ))
}
