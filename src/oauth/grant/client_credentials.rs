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
    let high_risk = &ctx.config.policy.high_risk_scopes;
    let is_high_risk = |s: &str| high_risk.iter().any(|h| h == s);
    // RFC 6749 §3.3: without a scope parameter the client gets its registered scopes, less the
    // high-risk ones (below).
    let scope = scope.unwrap_or_else(|| {
        ScopeSet::from_list(
            allowed
                .iter()
                .filter(|s| !is_high_risk(s))
                .map(str::to_string),
        )
    });
    // SPEC "Invariants": `high_risk_scopes` hold on every grant path. They need a human's
    // approval, and this grant has no human to give it.
    let risky: Vec<&str> = scope.iter().filter(|s| is_high_risk(s)).collect();
    if !risky.is_empty() {
        return Err(OAuthError::invalid_scope(format!(
            "{} needs a human's approval (policy.high_risk_scopes); client_credentials acts for \
             no human, so it cannot be granted here",
            risky.join(" ")
        )));
    }
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
