//! One module per grant type, each a plain function from a parsed request to an issued token,
//! and [`token`], which picks the grant for a `grant_type` (RFC 6749 §4, §5).
//!
//! A grant never sees the whole process. Beside each handler, as fosite keeps
//! `flow_*_storage.go` next to its flow, is the narrow storage trait it needs, holding only the
//! operations it performs; everything else comes from the [`Env`]:
//!
//! | grant | storage trait | reads from [`Env`] |
//! |---|---|---|
//! | [`client_credentials`] (RFC 6749 §4.4) | [`ClientCredentialsStorage`]: issue tokens | `mint`, `tokens`, `high_risk_scopes`, `audiences` |
//! | [`refresh_token`] (RFC 6749 §6, RFC 9700 §4.14) | [`RefreshTokenStorage`]: find, consume, revoke, users | `mint`, `tokens` |
//! | [`authorization_code`] (RFC 6749 §4.1, RFC 7636) | [`AuthorizationCodeStorage`]: codes, revoke sessions | `mint`, `tokens` |
//! | [`token_exchange`] (RFC 8693) | [`TokenExchangeStorage`]: presented tokens, users, agents, audit | `mint`, `tokens`, `high_risk_scopes`, `audiences`, `policies` |
//! | [`ciba`] (CIBA Core) | [`CibaStorage`]: token exchange's, plus requests and fresh agents | all of token exchange's, `ciba` |
//!
//! The authorization request of the code flow (`authorization_code/request.rs`, RFC 6749 §4.1.1)
//! is parsed against the registered clients and the issuer alone.
//!
//! The process implements every trait over the store, the writer and the config's registries
//! (`live.rs`, for [`crate::oauth::Ctx`]); each grant's unit tests implement them in memory
//! (`testing.rs`).

pub mod authorization_code;
pub mod ciba;
pub mod client_credentials;
mod live;
pub mod refresh_token;
#[cfg(test)]
mod testing;
pub mod token_exchange;

use std::sync::Arc;

use async_trait::async_trait;

pub use authorization_code::AuthorizationCodeStorage;
pub use ciba::CibaStorage;
pub use client_credentials::ClientCredentialsStorage;
pub use refresh_token::RefreshTokenStorage;
pub use token_exchange::TokenExchangeStorage;

use super::client::Client;
use super::error::OAuthError;
use super::request::TokenRequest;
use super::token::{Issued, Mint};
use super::user::User;
use crate::audit::AuditEvent;
use crate::config::{CibaConfig, TokensConfig};
use crate::policy::Policies;
use crate::store::StoreError;

/// What a grant needs besides storage: time and signing ([`Mint`]), the configured lifetimes
/// and limits, and the policies. Lent by the process for one request.
pub struct Env<'a> {
    pub mint: Mint<'a>,
    pub tokens: &'a TokensConfig,
    pub ciba: &'a CibaConfig,
    /// `policy.high_risk_scopes`: granted on no path without a human's approval.
    pub high_risk_scopes: &'a [String],
    /// The audiences of every resource server (clients with `introspect = true`).
    pub audiences: &'a [String],
    pub policies: &'a Policies,
    /// Resource servers named by URL, with the scopes each means something at.
    pub resources: &'a crate::oauth::resource::Resources,
    /// RFC 9449: the thumbprint of the key that signed this request's DPoP proof, when the
    /// client's tokens are to be bound to it (`oauth::dpop::binding`). Every access token the
    /// request gets is bound to it.
    pub jkt: Option<&'a str>,
    /// Resource servers whose tokens must be DPoP-bound (`dpop = "required"` on them).
    pub dpop_audiences: &'a [String],
}

impl Env<'_> {
    pub fn now(&self) -> i64 {
        self.mint.clock.now()
    }

    pub fn access_ttl(&self) -> i64 {
        self.tokens.access_token_ttl.as_secs() as i64
    }

    /// RFC 9449 per resource server: a token for an audience that requires DPoP is issued only
    /// to a request with a proof. Checked before anything is spent (a code, a refresh token, an
    /// approval).
    pub fn require_bound(&self, aud: &[String]) -> Result<(), OAuthError> {
        match aud.iter().find(|a| self.dpop_audiences.contains(a)) {
            Some(a) if self.jkt.is_none() => Err(OAuthError::new(
                super::ErrorCode::InvalidDpopProof,
                format!(
                    "tokens for `{a}` must be DPoP-bound: send a DPoP proof with the request (RFC 9449)"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The key this request's tokens are bound to, owned for a token's spec.
    pub fn bind(&self) -> Option<String> {
        self.jkt.map(str::to_string)
    }

    pub fn is_high_risk(&self, scope: &str) -> bool {
        self.high_risk_scopes.iter().any(|h| h == scope)
    }
}

/// The humans of the config, looked up by the grants that act for one.
pub trait UserStorage: Send + Sync {
    fn user(&self, username: &str) -> Option<Arc<User>>;
}

/// Ends a session: every token with this `sid`, and what was derived from them, revoked, with
/// the audit entries saying why, in one durable write.
#[async_trait]
pub trait SessionRevocation: Send + Sync {
    async fn revoke_session(&self, sid: &str, audit: Vec<AuditEvent>) -> Result<(), StoreError>;
}

/// Audit entries of a refusal, written durably before it is answered.
#[async_trait]
pub trait AuditStorage: Send + Sync {
    async fn audit(&self, events: Vec<AuditEvent>) -> Result<(), StoreError>;
}

/// Every grant's storage at once: what `/token` needs to serve any `grant_type`.
pub trait GrantStorage:
    ClientCredentialsStorage + RefreshTokenStorage + AuthorizationCodeStorage + CibaStorage
{
}

impl<T> GrantStorage for T where
    T: ClientCredentialsStorage + RefreshTokenStorage + AuthorizationCodeStorage + CibaStorage
{
}

/// `POST /token` once the client is authenticated and the request parsed: the grant its
/// `grant_type` names (RFC 6749 §4).
pub async fn token<S: GrantStorage + ?Sized>(
    storage: &S,
    env: &Env<'_>,
    client: &Client,
    request: TokenRequest,
) -> Result<Issued, OAuthError> {
    match request {
        TokenRequest::ClientCredentials { scope, targets } => {
            client_credentials::grant(storage, env, client, scope, &targets).await
        }
        TokenRequest::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
            targets,
        } => {
            authorization_code::grant(
                storage,
                env,
                client,
                authorization_code::Redemption {
                    code: &code,
                    redirect_uri: redirect_uri.as_deref(),
                    code_verifier: code_verifier.as_deref(),
                    targets: &targets,
                },
            )
            .await
        }
        TokenRequest::RefreshToken {
            refresh_token,
            scope,
            targets,
        } => refresh_token::grant(storage, env, client, &refresh_token, scope, &targets).await,
        TokenRequest::TokenExchange(req) => token_exchange::grant(storage, env, client, req).await,
        TokenRequest::Ciba { auth_req_id } => ciba::grant(storage, env, client, &auth_req_id).await,
    }
}

/// Resolves the resource servers a token will be for. Named ones must be among `audiences`
/// (every resource server's) and within the client's `audiences`, or be this server (`issuer`:
/// its own APIs, such as SSF stream management), else `invalid_target` (RFC 8693 §2.2.2); none
/// named means every one the client may reach, or this server when it may reach none. A URL
/// names a resource by its canonical form (RFC 8707 §2, `input::canonical_resource`), and the
/// token carries the resource's own spelling.
pub fn resolve_audiences(
    audiences: &[String],
    issuer: &str,
    client: &Client,
    targets: &[String],
) -> Result<Vec<String>, OAuthError> {
    let allowed = |aud: &str| {
        (client.audiences.as_ref())
            .is_none_or(|allowed| allowed.iter().any(|a| crate::input::same_resource(a, aud)))
    };
    if targets.is_empty() {
        let all: Vec<String> = audiences.iter().filter(|a| allowed(a)).cloned().collect();
        return Ok(if all.is_empty() {
            vec![issuer.to_string()]
        } else {
            all
        });
    }
    let among: Vec<String> = (audiences.iter().cloned())
        .chain(std::iter::once(issuer.to_string()))
        .collect();
    named_among(
        &among,
        targets,
        |a| a == issuer || allowed(a),
        |t| format!("`{t}` is not a resource server this client may get tokens for"),
    )
}

/// Each of `targets` as spelled in `among` (the first entry naming the same resource, RFC 8707
/// §2), once, if `ok` accepts it; else `invalid_target` with `refusal`'s words for it.
fn named_among(
    among: &[String],
    targets: &[String],
    ok: impl Fn(&str) -> bool,
    refusal: impl Fn(&str) -> String,
) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::with_capacity(targets.len());
    for t in targets {
        match (among.iter())
            .find(|a| crate::input::same_resource(a, t))
            .filter(|a| ok(a))
        {
            Some(a) if !out.contains(a) => out.push(a.clone()),
            Some(_) => {}
            None => return Err(OAuthError::invalid_target(refusal(t))),
        }
    }
    Ok(out)
}

/// The scope of an access token narrowed to `aud` (RFC 8707 §2.2): `scope` cut to what those
/// resources list when they all list scopes (`[[resources]]`), as `/authorize` would have for
/// them alone; `openid` stays (it is about the human, not a resource).
pub fn scope_at(env: &Env<'_>, scope: &str, aud: &[String]) -> String {
    let Some(ceiling) = env.resources.scope_ceiling(aud) else {
        return scope.to_string();
    };
    let kept: Vec<&str> = (scope.split(' '))
        .filter(|s| !s.is_empty() && (*s == crate::oauth::scope::OPENID || ceiling.contains(s)))
        .collect();
    kept.join(" ")
}

/// RFC 8707 §2.2: the `resource` values of a request at `/token` that redeems a code or a
/// refresh token narrow the access token to some of the resource servers the grant was for
/// (`granted`), each named by any spelling of its canonical form; one the grant was not for is
/// `invalid_target`. None named: all of them.
pub fn narrow_audiences(granted: &[String], targets: &[String]) -> Result<Vec<String>, OAuthError> {
    let out = named_among(
        granted,
        targets,
        |_| true,
        |t| format!("`{t}` is not among the resource servers this grant is for"),
    )?;
    Ok(if out.is_empty() {
        granted.to_vec()
    } else {
        out
    })
}

#[cfg(test)]
mod tests {
    use super::testing::{Fixture, Memory, client, code_of};
    use super::*;
    use crate::oauth::params::Params;
    use crate::oauth::request::{
        AUTHORIZATION_CODE, CIBA, CLIENT_CREDENTIALS, REFRESH_TOKEN, TOKEN_EXCHANGE,
        TT_ACCESS_TOKEN, TT_JWT,
    };

    /// RFC 6749 §4: each `grant_type` reaches its own grant. Over empty storage every grant but
    /// client_credentials refuses, each in words only it uses.
    #[tokio::test]
    async fn rfc6749_s4_each_grant_type_reaches_its_grant() {
        let rows: [(&str, &str, &str); 5] = [
            ("grant_type=client_credentials", "ok", ""),
            (
                "grant_type=authorization_code&code=c&redirect_uri=https://app.example/cb&code_verifier=v",
                "invalid_grant",
                "authorization code is unknown",
            ),
            (
                "grant_type=refresh_token&refresh_token=r",
                "invalid_grant",
                "refresh token is unknown",
            ),
            (
                "grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token=s",
                "invalid_grant",
                "subject_token is not an active access token",
            ),
            (
                "grant_type=urn:openid:params:grant-type:ciba&auth_req_id=a",
                "invalid_grant",
                "auth_req_id is unknown",
            ),
        ];
        let every = [
            CLIENT_CREDENTIALS,
            AUTHORIZATION_CODE,
            REFRESH_TOKEN,
            TOKEN_EXCHANGE,
            CIBA,
        ];
        let c = client("app", &every, &["read"]);
        for (body, want, says) in rows {
            let exchange = format!(
                "&subject_token_type={TT_ACCESS_TOKEN}&actor_token=a&actor_token_type={TT_JWT}"
            );
            let body = if body.contains("token-exchange") {
                format!("{body}{exchange}")
            } else {
                body.to_string()
            };
            let request = TokenRequest::parse(&Params::parse(body.as_bytes())).unwrap();
            let (fx, m) = (Fixture::new(), Memory::default());
            let r = token(&m, &fx.env(), &c, request).await;
            assert_eq!(code_of(&r), want, "{body}");
            if let Err(e) = r {
                assert!(e.description.contains(says), "{body}: {}", e.description);
            }
        }
    }
}
