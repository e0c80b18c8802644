//! `/token` requests parsed into one enum before anything runs (RFC 6749 §4, §5).

use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::scope::ScopeSet;

pub const CLIENT_CREDENTIALS: &str = "client_credentials";

#[derive(Debug, Clone, PartialEq)]
pub enum TokenRequest {
    /// RFC 6749 §4.4.2.
    ClientCredentials {
        scope: Option<ScopeSet>,
        targets: Vec<String>,
    },
}

impl TokenRequest {
    pub fn parse(p: &Params) -> Result<Self, OAuthError> {
        let grant_type = p.required("grant_type")?;
        match grant_type {
            CLIENT_CREDENTIALS => Ok(TokenRequest::ClientCredentials {
                scope: p.one("scope")?.map(ScopeSet::parse).transpose()?,
                targets: targets(p),
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
