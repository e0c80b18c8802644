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
}
