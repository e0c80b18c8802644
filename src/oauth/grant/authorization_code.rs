//! RFC 6749 §4.1.3 with PKCE (RFC 7636): a human's client redeems a code for tokens.

use crate::oauth::Ctx;
use crate::oauth::client::Client;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::token::Issued;

pub async fn grant(
    _ctx: &Ctx,
    _client: &Client,
    _code: &str,
    _redirect_uri: Option<&str>,
    _code_verifier: Option<&str>,
) -> Result<Issued, OAuthError> {
    Err(OAuthError::new(
        ErrorCode::UnsupportedGrantType,
        "grant_type `authorization_code` is not supported yet",
    ))
}
