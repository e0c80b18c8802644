//! The one mapping from [`OAuthError`] to an HTTP response: RFC 6749 §5.2 JSON.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::oauth::{ErrorCode, OAuthError};

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = serde_json::json!({
            "error": self.code.as_str(),
            "error_description": wire_description(&self.description),
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

/// RFC 6749 §5.2 allows only `%x20-21 / %x23-5B / %x5D-7E` in `error_description`: section signs
/// become the word, anything else outside the set becomes `?`.
fn wire_description(d: &str) -> String {
    d.replace('§', "section ")
        .chars()
        .map(|c| match c {
            '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6749_s5_2_error_description_uses_only_allowed_characters() {
        assert_eq!(
            wire_description("repeated (RFC 6749 §3.2)"),
            "repeated (RFC 6749 section 3.2)"
        );
        assert_eq!(wire_description("say \"hi\" \\ ü\n"), "say ?hi? ? ??");
    }
}
