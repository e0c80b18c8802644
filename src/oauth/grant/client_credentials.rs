//! RFC 6749 §4.4: a confidential client gets a token for itself.

use crate::oauth::Ctx;
use crate::oauth::client::Client;
use crate::oauth::error::OAuthError;
use crate::oauth::request::CLIENT_CREDENTIALS;
use crate::oauth::scope::ScopeSet;
use crate::oauth::token::{AccessSpec, Issued, issue_access_token};

pub async fn grant(
    ctx: &Ctx,
    client: &Client,
    scope: Option<ScopeSet>,
    targets: &[String],
) -> Result<Issued, OAuthError> {
    if client.public {
        return Err(OAuthError::unauthorized_client(
            "a public client may not use client_credentials (RFC 6749 §4.4)",
        ));
    }
    if !client.allows_grant(CLIENT_CREDENTIALS) {
        return Err(OAuthError::unauthorized_client(format!(
            "client `{}` is not allowed the client_credentials grant",
            client.client_id
        )));
    }
    let allowed = ScopeSet::from_list(client.scopes.iter().cloned());
    // RFC 6749 §3.3: without a scope parameter the client gets its registered scopes.
    let scope = scope.unwrap_or_else(|| allowed.clone());
    if !scope.is_subset(&allowed) {
        return Err(OAuthError::invalid_scope(format!(
            "scope not allowed for this client: {}",
            scope.excess(&allowed).join(" ")
        )));
    }
    let aud = super::resolve_audiences(ctx, client, targets)?;
    issue_access_token(
        ctx,
        AccessSpec {
            sub: client.client_id.clone(),
            client_id: client.client_id.clone(),
            scope: scope.to_string(),
            aud,
            ttl: ctx.config.tokens.access_token_ttl.as_secs() as i64,
            sid: None,
            act: None,
            may_act: None,
            parent_hash: None,
            grant: CLIENT_CREDENTIALS,
        },
    )
    .await
}
