//! Two layers of error, as rustls does it: callers build an [`OAuthError`] with the RFC code a
//! client can act on and a description that is safe to show; internal detail (database or crypto
//! text) is logged where it happens and never put in the description.

use std::borrow::Cow;
use std::fmt::Display;

/// RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 8693 §2.2.2, RFC 7591 §3.2.2 and RFC 9449 §5 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    UnsupportedTokenType,
    AccessDenied,
    /// RFC 6749 §4.1.2.1: the authorization endpoint supports no such `response_type`.
    UnsupportedResponseType,
    /// CIBA Core §11: the human has not decided yet.
    AuthorizationPending,
    /// CIBA Core §11: polled faster than `interval`.
    SlowDown,
    /// CIBA Core §11: the request expired before the human decided.
    ExpiredToken,
    /// RFC 7591 §3.2.2: a redirect URI the registration policy refuses.
    InvalidRedirectUri,
    /// RFC 7591 §3.2.2: other client metadata the registration policy refuses.
    InvalidClientMetadata,
    /// RFC 6750 §3.1 (for RFC 7592): the registration access token is missing or wrong.
    InvalidToken,
    /// RFC 9449 §5: the `DPoP` proof is missing a part, malformed, replayed or does not match.
    InvalidDpopProof,
    /// RFC 9449 §8: the proof must carry the nonce sent in the `DPoP-Nonce` header.
    UseDpopNonce,
    NotFound,
    MethodNotAllowed,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status RFC 6749 §5.2 pairs with the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
            ErrorCode::AccessDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

/// A refused request: the RFC code and a description that is safe to send, and, kept apart from
/// them, the precise reason (rustls' split between a precise internal error and the coarse alert
/// on the wire). The reason goes to the log and the audit log, never to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    pub status: u16,
    reason: Option<String>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            status: code.status(),
            reason: None,
        }
    }
    /// Records the precise reason behind a deliberately coarse description.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    /// The description as it may be sent: RFC 6749 §5.2 and §4.1.2.1 allow only
    /// `%x20-21 / %x23-5B / %x5D-7E` in `error_description`, so section signs become the word
    /// and anything else outside the set becomes `?`.
    pub fn wire_description(&self) -> String {
        self.description
            .replace('§', "section ")
            .chars()
            .map(|c| match c {
                '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e' => c,
                _ => '?',
            })
            .collect()
    }
    /// The precise reason, for the log and the audit: the one given to [`Self::because`], else
    /// the description.
    pub fn reason(&self) -> &str {
        self.reason.as_deref().unwrap_or(&self.description)
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    pub fn invalid_target(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidTarget, d)
    }
    pub fn unauthorized_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, d)
    }
    /// Logs `detail` and answers a generic `server_error`: internal text never reaches a client.
    pub fn internal(detail: impl Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            ErrorCode::ServerError,
            "the server could not complete the request; try again",
        )
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}

impl Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}
