//! RFC 8693 token exchange: delegation only.

use crate::oauth::Ctx;
use crate::oauth::client::Client;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::request::ExchangeRequest;
use crate::oauth::token::Issued;

pub async fn grant(
    _ctx: &Ctx,
    _client: &Client,
    _req: ExchangeRequest,
) -> Result<Issued, OAuthError> {
    Err(OAuthError::new(
        ErrorCode::UnsupportedGrantType,
        "token exchange is not supported yet",
    ))
}
