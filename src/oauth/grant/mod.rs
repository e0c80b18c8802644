//! One module per grant type, each a plain function from a parsed request to an issued token.

pub mod authorization_code;
pub mod ciba;
pub mod client_credentials;
pub mod refresh_token;
pub mod token_exchange;

use super::Ctx;
use super::client::Client;
use super::error::OAuthError;

/// Resolves the resource servers a token will be for. Named ones must exist and be within the
/// client's `audiences`, else `invalid_target` (RFC 8693 §2.2.2); none named means every one the
/// client may reach.
pub fn resolve_audiences(
    ctx: &Ctx,
    client: &Client,
    targets: &[String],
) -> Result<Vec<String>, OAuthError> {
    let reachable = |aud: &str| {
        ctx.clients.is_resource_audience(aud)
            && client
                .audiences
                .as_ref()
                .is_none_or(|allowed| allowed.iter().any(|a| a == aud))
    };
    if targets.is_empty() {
        let all: Vec<String> = ctx
            .clients
            .resource_audiences()
            .iter()
            .filter(|a| reachable(a))
            .cloned()
            .collect();
        return Ok(if all.is_empty() {
            vec![ctx.issuer.clone()]
        } else {
            all
        });
    }
    for t in targets {
        if !reachable(t) {
            return Err(OAuthError::invalid_target(format!(
                "`{t}` is not a resource server this client may get tokens for"
            )));
        }
    }
    Ok(targets.to_vec())
}
