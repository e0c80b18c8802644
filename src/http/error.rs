//! The one mapping from [`OAuthError`] to an HTTP response: RFC 6749 §5.2 JSON.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::oauth::{ErrorCode, OAuthError};

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = serde_json::json!({
            "error": self.code.as_str(),
            "error_description": self.wire_description(),
        });
        let mut resp = (status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.code == ErrorCode::InvalidClient && status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2 and RFC 7235 §3.1: a 401 names the scheme to authenticate with.
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mandate\""),
            );
        }
        if self.code == ErrorCode::InvalidToken && status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3 (RFC 7592 §2): the registration access token is a bearer token.
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mandate\", error=\"invalid_token\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6749_s5_2_error_description_uses_only_allowed_characters() {
        let wire = |d: &'static str| OAuthError::invalid_request(d).wire_description();
        assert_eq!(
            wire("repeated (RFC 6749 §3.2)"),
            "repeated (RFC 6749 section 3.2)"
        );
        assert_eq!(wire("say \"hi\" \\ ü\n"), "say ?hi? ? ??");
    }

    /// The precise reason behind a refusal (here, which TPM check failed) is for the log and the
    /// audit: the body carries only the RFC 6749 §5.2 code and the coarse description.
    #[tokio::test]
    async fn a_refusals_private_reason_never_reaches_the_body() {
        let e = OAuthError::new(ErrorCode::InvalidGrant, "attestation failed")
            .because("PCR 7 differs from the enrolled policy");
        assert_eq!(e.reason(), "PCR 7 differs from the enrolled policy");
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "invalid_grant", "error_description": "attestation failed"})
        );
    }
}
