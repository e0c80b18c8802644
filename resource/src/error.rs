//! Why a request was refused, and how that refusal is answered on the wire (RFC 6750 §3).

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Why a request was refused. It never holds the token: descriptions are built by this crate
/// from what was wrong, so neither `Display` nor `Debug` can leak a credential into a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No bearer token in the request (RFC 6750 §3.1: answered with a bare challenge, no
    /// `error` attribute).
    #[error("the request carries no bearer token")]
    MissingToken,
    /// The `Authorization` header is malformed (RFC 6750 §3.1 `invalid_request`, 400).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The token is expired, revoked, forged, malformed or meant for another audience
    /// (RFC 6750 §3.1 `invalid_token`, 401).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The token is good but lacks scopes the route needs (RFC 6750 §3.1
    /// `insufficient_scope`, 403).
    #[error("insufficient scope: the request needs `{}`", .required.join(" "))]
    InsufficientScope {
        /// Every scope the route requires (all of them are needed).
        required: Vec<String>,
    },
    /// The authorization server could not be asked (metadata, JWKS or introspection failed):
    /// answered 503, since the client's token may well be good.
    #[error("the authorization server is unavailable: {0}")]
    Unavailable(String),
    /// The DPoP proof sent with a DPoP-bound token is missing a part, malformed, replayed, or
    /// made for another request (RFC 9449 §7.1 `invalid_dpop_proof`, 401).
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(String),
    /// The middleware is wired wrongly (for example a [`crate::Principal`] extractor or
    /// [`crate::RequireScopes`] without a [`crate::BearerAuthLayer`] in front): answered 500.
    #[error("resource server misconfigured: {0}")]
    Misconfigured(String),
}

impl AuthError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MissingToken
            | AuthError::InvalidToken(_)
            | AuthError::InvalidDpopProof(_) => StatusCode::UNAUTHORIZED,
            AuthError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            AuthError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6750 §3.1 error code, if this error has one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            AuthError::MissingToken => None,
            AuthError::InvalidRequest(_) => Some("invalid_request"),
            AuthError::InvalidToken(_) => Some("invalid_token"),
            AuthError::InvalidDpopProof(_) => Some("invalid_dpop_proof"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
            AuthError::Unavailable(_) => Some("temporarily_unavailable"),
            AuthError::Misconfigured(_) => Some("server_error"),
        }
    }

    /// The human-readable `error_description` (never the token).
    pub fn description(&self) -> String {
        match self {
            AuthError::MissingToken => "the request carries no bearer token".into(),
            AuthError::InvalidRequest(d)
            | AuthError::InvalidToken(d)
            | AuthError::InvalidDpopProof(d)
            | AuthError::Unavailable(d)
            | AuthError::Misconfigured(d) => d.clone(),
            AuthError::InsufficientScope { required } => {
                format!("the request needs scope `{}`", required.join(" "))
            }
        }
    }
}

/// The parts of a challenge that come from configuration, not from the error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) realm: Option<String>,
    pub(crate) resource_metadata: Option<String>,
}

impl Challenge {
    /// The `WWW-Authenticate` value for `error` (RFC 6750 §3), with `resource_metadata`
    /// (RFC 9728 §5.1). `None` for errors that are not about the token (503, 500).
    pub(crate) fn www_authenticate(&self, error: &AuthError, dpop: bool) -> Option<String> {
        let mut params: Vec<String> = Vec::new();
        if let Some(realm) = &self.realm {
            params.push(format!("realm=\"{}\"", quoted(realm)));
        }
        match error {
            AuthError::MissingToken => {}
            AuthError::InvalidRequest(_)
            | AuthError::InvalidToken(_)
            | AuthError::InvalidDpopProof(_) => {
                params.push(format!(
                    "error=\"{}\"",
                    error.error_code().unwrap_or_default()
                ));
                params.push(format!(
                    "error_description=\"{}\"",
                    quoted(&error.description())
                ));
            }
            AuthError::InsufficientScope { required } => {
                params.push("error=\"insufficient_scope\"".into());
                params.push(format!(
                    "error_description=\"{}\"",
                    quoted(&error.description())
                ));
                params.push(format!("scope=\"{}\"", quoted(&required.join(" "))));
            }
            AuthError::Unavailable(_) | AuthError::Misconfigured(_) => return None,
        }
        if let Some(url) = &self.resource_metadata {
            params.push(format!("resource_metadata=\"{}\"", quoted(url)));
        }
        // RFC 9449 §7.1: a DPoP challenge names the algorithms proofs may use.
        let scheme = if dpop {
            params.push(format!("algs=\"{}\"", mandate_dpop::ALGS.join(" ")));
            "DPoP"
        } else {
            "Bearer"
        };
        Some(if params.is_empty() {
            scheme.to_string()
        } else {
            format!("{scheme} {}", params.join(", "))
        })
    }
}

/// RFC 6750 §3: attribute values are quoted strings of `%x20-21 / %x23-5B / %x5D-7E`; anything
/// else (quotes, backslashes, control or non-ASCII characters) becomes `'` or `?`.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// A refusal ready to be answered: the error and the resource server's challenge parameters.
/// As an axum response it is the RFC 6750 §3 answer: the status, a `WWW-Authenticate: Bearer`
/// header (with `resource_metadata`, RFC 9728 §5.1) and a JSON body
/// `{"error", "error_description"}`.
#[derive(Debug, Clone)]
pub struct AuthRejection {
    error: AuthError,
    challenge: Arc<Challenge>,
    /// Answered with a `DPoP` challenge (RFC 9449 §7.1) rather than `Bearer`.
    dpop: bool,
}

impl AuthRejection {
    pub(crate) fn new(error: AuthError, challenge: Arc<Challenge>) -> Self {
        Self {
            error,
            challenge,
            dpop: false,
        }
    }

    /// The same refusal answered with a `DPoP` challenge: the request or its token was DPoP.
    pub(crate) fn dpop(mut self, dpop: bool) -> Self {
        self.dpop = dpop;
        self
    }

    /// Why the request was refused.
    pub fn error(&self) -> &AuthError {
        &self.error
    }

    /// The `WWW-Authenticate` header value this refusal is answered with, if any (none for
    /// 500 and 503).
    pub fn www_authenticate(&self) -> Option<String> {
        self.challenge.www_authenticate(&self.error, self.dpop)
    }
}

impl std::fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for AuthRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let status = self.error.status();
        // What went wrong on this side (which endpoint failed, how it is configured) is for
        // the logs, not for the client.
        let description = match &self.error {
            AuthError::Unavailable(_) => "the token cannot be checked now; try again later".into(),
            AuthError::Misconfigured(_) => "internal error".into(),
            e => e.description(),
        };
        let mut response = match self.error.error_code() {
            Some(code) => (
                status,
                axum::Json(serde_json::json!({
                    "error": code,
                    "error_description": description,
                })),
            )
                .into_response(),
            None => status.into_response(),
        };
        if let Some(value) = self
            .www_authenticate()
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        // RFC 6750 §3 answers carry credentials-related state: never cache them.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn challenge() -> Challenge {
        Challenge {
            realm: Some("orders".into()),
            resource_metadata: Some(
                "https://api.example.com/.well-known/oauth-protected-resource".into(),
            ),
        }
    }

    #[test]
    fn rfc6750_s3_1_missing_token_challenge_has_no_error_attribute() {
        assert_eq!(
            challenge()
                .www_authenticate(&AuthError::MissingToken, false)
                .unwrap(),
            "Bearer realm=\"orders\", resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\""
        );
        assert_eq!(
            Challenge::default()
                .www_authenticate(&AuthError::MissingToken, false)
                .unwrap(),
            "Bearer"
        );
    }

    #[test]
    fn rfc6750_s3_insufficient_scope_names_the_scope() {
        let v = Challenge::default()
            .www_authenticate(
                &AuthError::InsufficientScope {
                    required: vec!["orders:read".into(), "orders:write".into()],
                },
                false,
            )
            .unwrap();
        assert!(
            v.starts_with("Bearer error=\"insufficient_scope\", "),
            "{v}"
        );
        assert!(v.ends_with("scope=\"orders:read orders:write\""), "{v}");
    }

    #[test]
    fn rfc6750_s3_error_description_stays_inside_its_quoted_string() {
        let v = Challenge::default()
            .www_authenticate(
                &AuthError::InvalidToken("a \"quoted\" \\ é\n".into()),
                false,
            )
            .unwrap();
        assert_eq!(
            v,
            "Bearer error=\"invalid_token\", error_description=\"a 'quoted' ' ??\""
        );
    }

    #[test]
    fn unavailable_is_503_without_a_challenge() {
        let e = AuthError::Unavailable("down".into());
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(challenge().www_authenticate(&e, false).is_none());
    }
}
