//! Request extractors that turn bad input into *our* RFC-shaped errors, never axum's plain-text
//! rejections.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{HeaderMap, Request, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::oauth::client_auth::{JWT_BEARER_ASSERTION, Presented, Secret};
use crate::oauth::params::Params;
use crate::oauth::{Ctx, ErrorCode, OAuthError};

/// An `application/x-www-form-urlencoded` body (RFC 6749 §3.2, RFC 7662 §2.1, RFC 7009 §2.1),
/// together with the request headers (for client authentication).
pub struct Form {
    pub params: Params,
    pub headers: HeaderMap,
}

impl FromRequest<Arc<Ctx>> for Form {
    type Rejection = OAuthError;

    async fn from_request(req: Request<Body>, ctx: &Arc<Ctx>) -> Result<Self, OAuthError> {
        let (parts, body) = req.into_parts();
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded (RFC 6749 §3.2)",
            ));
        }
        let limit = ctx.config.server.max_body_bytes;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            OAuthError::new(
                ErrorCode::InvalidRequest,
                format!("the body is larger than {limit} bytes"),
            )
            .with_status(413)
        })?;
        Ok(Form {
            params: Params::parse(&bytes),
            headers: parts.headers,
        })
    }
}

/// An optional `application/json` body; an empty body is `None`, malformed JSON is
/// `invalid_request` naming what is wrong.
pub struct JsonBody<T>(pub Option<T>);

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<Ctx>> for JsonBody<T> {
    type Rejection = OAuthError;

    async fn from_request(req: Request<Body>, ctx: &Arc<Ctx>) -> Result<Self, OAuthError> {
        let (parts, body) = req.into_parts();
        let limit = ctx.config.server.max_body_bytes;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            OAuthError::new(
                ErrorCode::InvalidRequest,
                format!("the body is larger than {limit} bytes"),
            )
            .with_status(413)
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(None));
        }
        let is_json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(OAuthError::invalid_request(
                "the body must be application/json",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(|v| JsonBody(Some(v)))
            .map_err(|e| {
                OAuthError::invalid_request(format!(
                    "malformed JSON body: {}",
                    e.to_string().replace('"', "'")
                ))
            })
    }
}

impl Form {
    /// The client credentials of the request. Using more than one method is an error
    /// (RFC 6749 §2.3).
    pub fn client_credentials(&self) -> Result<Presented, OAuthError> {
        let basic = basic_credentials(&self.headers)?;
        let id = self.params.one("client_id")?;
        let secret = self.params.one("client_secret")?;
        let assertion = self.params.one("client_assertion")?;
        let assertion_type = self.params.one("client_assertion_type")?;
        let methods = [basic.is_some(), secret.is_some(), assertion.is_some()]
            .iter()
            .filter(|m| **m)
            .count();
        if methods > 1 {
            return Err(OAuthError::invalid_request(
                "use exactly one client authentication method (RFC 6749 §2.3)",
            ));
        }
        if let Some((bid, bsecret)) = basic {
            if id.is_some_and(|i| i != bid) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the Basic credentials",
                ));
            }
            return Ok(Presented::Basic {
                client_id: bid,
                secret: Secret(bsecret),
            });
        }
        if let Some(a) = assertion {
            if assertion_type != Some(JWT_BEARER_ASSERTION) {
                return Err(OAuthError::invalid_request(format!(
                    "client_assertion_type must be {JWT_BEARER_ASSERTION} (RFC 7523 §2.2)"
                )));
            }
            return Ok(Presented::Assertion {
                assertion: Secret(a.to_string()),
                client_id: id.map(str::to_string),
            });
        }
        match (id, secret) {
            (Some(id), Some(s)) => Ok(Presented::Post {
                client_id: id.to_string(),
                secret: Secret(s.to_string()),
            }),
            (None, Some(_)) => Err(OAuthError::invalid_request(
                "client_secret without client_id",
            )),
            (Some(id), None) => Ok(Presented::Public {
                client_id: id.to_string(),
            }),
            (None, None) => Ok(Presented::Nothing),
        }
    }
}

/// RFC 6749 §2.3.1 / RFC 7617: `Basic base64(urlencode(id) ":" urlencode(secret))`.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed =
        || OAuthError::invalid_client("malformed Basic credentials in the Authorization header");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "the Authorization header must use the Basic scheme",
        ));
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let id = form_decode(id).ok_or_else(malformed)?;
    let secret = form_decode(secret).ok_or_else(malformed)?;
    if id.is_empty() {
        return Err(malformed());
    }
    Ok(Some((id, secret)))
}

fn form_decode(s: &str) -> Option<String> {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn rfc6749_s2_3_1_basic_credentials_are_form_decoded() {
        let enc = STANDARD.encode("my%20client:s%3Acret+x");
        let got = basic_credentials(&headers(&format!("Basic {enc}")))
            .unwrap()
            .unwrap();
        assert_eq!(got, ("my client".to_string(), "s:cret x".to_string()));
    }

    #[test]
    fn malformed_basic_credentials_are_invalid_client() {
        for bad in [
            "Basic !!!",
            "Basic",
            "Bearer abc",
            &format!("Basic {}", STANDARD.encode("nocolon")),
        ] {
            let e = basic_credentials(&headers(bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClient, "{bad}");
        }
    }

    #[test]
    fn rfc6749_s2_3_two_methods_at_once_are_refused() {
        let enc = STANDARD.encode("a:b");
        let form = Form {
            params: Params::parse(b"client_id=a&client_secret=b"),
            headers: headers(&format!("Basic {enc}")),
        };
        assert_eq!(
            form.client_credentials().unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }
}
