//! RFC 6749 §4.4: a confidential client gets a token for itself.
//!
//! Needs only to record what it issues ([`ClientCredentialsStorage`]); from the [`Env`]: the
//! mint, `tokens.access_token_ttl`, `high_risk_scopes` and the resource servers' `audiences`.

use super::Env;
use crate::oauth::client::Client;
use crate::oauth::error::OAuthError;
use crate::oauth::request::CLIENT_CREDENTIALS;
use crate::oauth::scope::ScopeSet;
use crate::oauth::token::{AccessSpec, IssueStorage, Issued, issue_access_token};

/// What the client_credentials grant does to storage: record the token and its audit entry.
/// No lookup: the client was authenticated before, and nothing it asks for is stored.
pub trait ClientCredentialsStorage: IssueStorage {}

pub async fn grant<S: ClientCredentialsStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
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
    // RFC 6749 §3.3: without a scope parameter the client gets its registered scopes, less the
    // high-risk ones (below).
    let scope = scope.unwrap_or_else(|| {
        ScopeSet::from_list(
            allowed
                .iter()
                .filter(|s| !env.is_high_risk(s))
                .map(str::to_string),
        )
    });
    // SPEC "Invariants": `high_risk_scopes` hold on every grant path. They need a human's
    // approval, and this grant has no human to give it.
    let risky: Vec<&str> = scope.iter().filter(|s| env.is_high_risk(s)).collect();
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
    let aud = super::resolve_audiences(env.audiences, env.mint.issuer, client, targets)?;
    env.require_bound(&aud)?;
    issue_access_token(
        storage,
        &env.mint,
        AccessSpec {
            sub: client.client_id.clone(),
            client_id: client.client_id.clone(),
            scope: scope.to_string(),
            aud,
            ttl: env.access_ttl(),
            sid: None,
            act: None,
            att: None,
            may_act: None,
            parent_hash: None,
            grant: CLIENT_CREDENTIALS,
            jkt: env.bind(),
            key_in_tpm: false,
        },
    )
    .await
}

#[cfg(test)]
mod tests;
