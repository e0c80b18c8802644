//! `/token` requests parsed into one enum before anything runs (RFC 6749 §4, §5).

use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::scope::ScopeSet;

pub const CLIENT_CREDENTIALS: &str = "client_credentials";
pub const AUTHORIZATION_CODE: &str = "authorization_code";
pub const REFRESH_TOKEN: &str = "refresh_token";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// OpenID CIBA Core §10.1.
pub const CIBA: &str = "urn:openid:params:grant-type:ciba";
/// RFC 8693 §3 token type identifiers.
pub const TT_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const TT_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The grant types this server implements, as advertised in its metadata.
pub const SUPPORTED_GRANTS: &[&str] = &[
    AUTHORIZATION_CODE,
    REFRESH_TOKEN,
    CLIENT_CREDENTIALS,
    TOKEN_EXCHANGE,
    CIBA,
];

#[derive(Debug, Clone, PartialEq)]
pub enum TokenRequest {
    /// RFC 6749 §4.4.2.
    ClientCredentials {
        scope: Option<ScopeSet>,
        targets: Vec<String>,
    },
    /// RFC 6749 §4.1.3, with the RFC 7636 §4.5 `code_verifier`.
    AuthorizationCode {
        code: String,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
        /// RFC 8707 §2.2: narrows the access token to some of what the code was for.
        targets: Vec<String>,
    },
    /// RFC 6749 §6.
    RefreshToken {
        refresh_token: String,
        scope: Option<ScopeSet>,
        /// RFC 8707 §2.2: narrows the access token to some of what the grant is for.
        targets: Vec<String>,
    },
    /// RFC 8693 §2.1.
    TokenExchange(ExchangeRequest),
    /// OpenID CIBA Core §10.1: polling for a delegation the human was asked to approve.
    Ciba { auth_req_id: String },
}

/// RFC 8693 §2.1 request parameters.
#[derive(Clone, PartialEq)]
pub struct ExchangeRequest {
    pub subject_token: String,
    pub subject_token_type: String,
    pub actor_token: Option<String>,
    pub actor_token_type: Option<String>,
    pub scope: Option<ScopeSet>,
    pub targets: Vec<String>,
    pub requested_token_type: Option<String>,
}

impl ExchangeRequest {
    /// The RFC 8693 §2.1 parameters, as `/token` and `/bc-authorize` take them.
    pub fn parse(p: &Params) -> Result<Self, OAuthError> {
        Ok(ExchangeRequest {
            subject_token: p.required("subject_token")?.to_string(),
            subject_token_type: p.required("subject_token_type")?.to_string(),
            actor_token: p.one("actor_token")?.map(str::to_string),
            actor_token_type: p.one("actor_token_type")?.map(str::to_string),
            scope: p.one("scope")?.map(ScopeSet::parse).transpose()?,
            targets: targets(p),
            requested_token_type: p.one("requested_token_type")?.map(str::to_string),
        })
    }
}

impl std::fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("subject_token_type", &self.subject_token_type)
            .field("actor_token_type", &self.actor_token_type)
            .field("scope", &self.scope)
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

impl TokenRequest {
    pub fn parse(p: &Params) -> Result<Self, OAuthError> {
        let grant_type = p.required("grant_type")?;
        match grant_type {
            CLIENT_CREDENTIALS => Ok(TokenRequest::ClientCredentials {
                scope: p.one("scope")?.map(ScopeSet::parse).transpose()?,
                targets: targets(p),
            }),
            AUTHORIZATION_CODE => Ok(TokenRequest::AuthorizationCode {
                code: p.required("code")?.to_string(),
                redirect_uri: p.one("redirect_uri")?.map(str::to_string),
                code_verifier: p.one("code_verifier")?.map(str::to_string),
                targets: targets(p),
            }),
            REFRESH_TOKEN => Ok(TokenRequest::RefreshToken {
                refresh_token: p.required("refresh_token")?.to_string(),
                scope: p.one("scope")?.map(ScopeSet::parse).transpose()?,
                targets: targets(p),
            }),
            TOKEN_EXCHANGE => Ok(TokenRequest::TokenExchange(ExchangeRequest::parse(p)?)),
            CIBA => Ok(TokenRequest::Ciba {
                auth_req_id: p.required("auth_req_id")?.to_string(),
            }),
            other => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!(
                    "grant_type `{other}` is not supported; see grant_types_supported in the server metadata"
                ),
            )),
        }
    }
}

/// `audience` (RFC 8693 §2.1) and `resource` (RFC 8707 §2) both name resource servers here.
fn targets(p: &Params) -> Vec<String> {
    let mut v: Vec<String> = p
        .all("audience")
        .into_iter()
        .chain(p.all("resource"))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6749_s5_2_unknown_grant_types_are_unsupported() {
        let e = TokenRequest::parse(&Params::parse(b"grant_type=password")).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedGrantType);
        let e = TokenRequest::parse(&Params::parse(b"scope=a")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn client_credentials_takes_scope_and_targets() {
        let r = TokenRequest::parse(&Params::parse(
            b"grant_type=client_credentials&scope=b+a&audience=x&resource=y",
        ))
        .unwrap();
        assert_eq!(
            r,
            TokenRequest::ClientCredentials {
                scope: Some(ScopeSet::parse("a b").unwrap()),
                targets: vec!["x".into(), "y".into()]
            }
        );
    }
}
