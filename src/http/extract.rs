//! Request extractors that turn bad input into *our* RFC-shaped errors, never axum's plain-text
//! rejections.

use std::sync::Arc;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::http::{HeaderMap, Request, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::input::{self, Field, InputError};
use crate::oauth::client_auth::{JWT_BEARER_ASSERTION, Presented, Secret};
use crate::oauth::params::Params;
use crate::oauth::{Ctx, ErrorCode, OAuthError};

/// An `application/x-www-form-urlencoded` body (RFC 6749 §3.2, RFC 7662 §2.1, RFC 7009 §2.1),
/// together with the request headers (for client authentication).
pub struct Form {
    pub params: Params,
    pub headers: HeaderMap,
}

/// Whether the body is declared `application/x-www-form-urlencoded` (parameters after `;`, such
/// as a charset, are allowed; the media type is case-insensitive, RFC 9110 §8.3.1).
pub fn is_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

impl FromRequest<Arc<Ctx>> for Form {
    type Rejection = OAuthError;

    async fn from_request(req: Request<Body>, ctx: &Arc<Ctx>) -> Result<Self, OAuthError> {
        let (parts, body) = req.into_parts();
        if !is_form(&parts.headers) {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded (RFC 6749 §3.2)",
            ));
        }
        let bytes = read_body(body, ctx.config.server.max_body_bytes)
            .await
            .map_err(BodyError::into_oauth)?;
        Ok(Form {
            params: Params::parse_untrusted(&bytes).map_err(bad_input)?,
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
        let bytes = read_body(body, ctx.config.server.max_body_bytes)
            .await
            .map_err(BodyError::into_oauth)?;
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
        let malformed = |e: serde_json::Error| {
            OAuthError::invalid_request(format!(
                "malformed JSON body: {}",
                e.to_string().replace('"', "'")
            ))
        };
        // Every string in the document — member names too — is checked first, in a pass of
        // its own, so that `T`'s own rules (duplicate or unknown fields) still apply after.
        serde_json::from_slice::<JsonText>(&bytes).map_err(malformed)?;
        serde_json::from_slice(&bytes)
            .map(|v| JsonBody(Some(v)))
            .map_err(malformed)
    }
}

/// Walks a JSON document and checks every string in it with [`input::text`], naming the member
/// it belongs to; allocates nothing but escaped strings.
struct JsonText;

/// The member name a value sits under, for the message.
struct JsonTextAt(Option<String>);

impl<'de> serde::Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::DeserializeSeed::deserialize(JsonTextAt(None), d)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonTextAt {
    type Value = JsonText;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<JsonText, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonTextAt {
    type Value = JsonText;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<JsonText, E> {
        let field = || match &self.0 {
            Some(name) => Field::json(name),
            None => Field::named("a JSON string"),
        };
        input::text(field, v).map_err(E::custom)?;
        Ok(JsonText)
    }

    fn visit_bool<E>(self, _: bool) -> Result<JsonText, E> {
        Ok(JsonText)
    }

    fn visit_i64<E>(self, _: i64) -> Result<JsonText, E> {
        Ok(JsonText)
    }

    fn visit_u64<E>(self, _: u64) -> Result<JsonText, E> {
        Ok(JsonText)
    }

    fn visit_f64<E>(self, _: f64) -> Result<JsonText, E> {
        Ok(JsonText)
    }

    fn visit_unit<E>(self) -> Result<JsonText, E> {
        Ok(JsonText)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonText, A::Error> {
        while seq.next_element_seed(JsonTextAt(self.0.clone()))?.is_some() {}
        Ok(JsonText)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<JsonText, A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            input::text(|| Field::named("a JSON member name"), &name)
                .map_err(serde::de::Error::custom)?;
            map.next_value_seed(JsonTextAt(Some(name)))?;
        }
        Ok(JsonText)
    }
}

/// An untrusted string that failed [`crate::input`]'s checks: `invalid_request` saying which
/// field and why (never the value).
pub fn bad_input(e: InputError) -> OAuthError {
    OAuthError::invalid_request(e.to_string())
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than `max_body_bytes`.
    TooLarge(usize),
    /// The client broke off, or the chunked framing was malformed.
    Unreadable,
}

impl BodyError {
    fn into_oauth(self) -> OAuthError {
        match self {
            BodyError::TooLarge(limit) => OAuthError::new(
                ErrorCode::InvalidRequest,
                format!("the body is larger than {limit} bytes"),
            )
            .with_status(413),
            BodyError::Unreadable => {
                OAuthError::invalid_request("the request body could not be read in full")
            }
        }
    }
}

/// Reads a whole body of at most `limit` bytes; a larger one is refused as soon as the limit
/// is passed, not buffered.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Err(_) => Err(BodyError::Unreadable),
    }
}

impl Form {
    /// The client credentials of the request. Using more than one method is an error
    /// (RFC 6749 §2.3).
    pub fn client_credentials(&self) -> Result<Presented, OAuthError> {
        let basic = basic_credentials(&self.headers)?;
        let id = self
            .params
            .one("client_id")?
            .map(|id| input::identifier(|| Field::param("client_id"), id))
            .transpose()
            .map_err(bad_input)?;
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
    input::identifier(|| Field::named("client_id"), &id).map_err(|_| malformed())?;
    input::text(|| Field::named("client_secret"), &secret).map_err(|_| malformed())?;
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
    fn basic_credentials_with_nul_or_control_characters_are_invalid_client() {
        for raw in ["a%00b:s", "a:s%00", "a%0Ab:s", "a:s%1B"] {
            let enc = STANDARD.encode(raw);
            let e = basic_credentials(&headers(&format!("Basic {enc}"))).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClient, "{raw}");
        }
    }

    #[test]
    fn every_json_string_is_checked_and_the_member_is_named() {
        let check = |j: &str| {
            serde_json::from_str::<JsonText>(j)
                .map(drop)
                .map_err(|e| e.to_string())
        };
        assert!(
            check(r#"{"agent": "bot", "pcrs": {"sha256": {"0": "ab"}}, "n": [1, true, null]}"#)
                .is_ok()
        );
        let e = check(r#"{"agent": "a\u0000b"}"#).unwrap_err();
        assert!(
            e.starts_with("JSON member `agent` contains a NUL character"),
            "{e}"
        );
        let e = check(r#"{"pcrs": {"sha256": {"0": ["x", "\u001b"]}}}"#).unwrap_err();
        assert!(
            e.starts_with("JSON member `0` contains a control character"),
            "{e}"
        );
        let e = check(r#"{"a\u0000": 1}"#).unwrap_err();
        assert!(e.starts_with("a JSON member name contains a NUL"), "{e}");
        let e = check(r#"["\u0000"]"#).unwrap_err();
        assert!(e.starts_with("a JSON string contains a NUL"), "{e}");
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
