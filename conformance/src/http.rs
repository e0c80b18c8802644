//! HTTP plumbing shared by the checks: requests that never panic, captured responses, the
//! `application/x-www-form-urlencoded` encoding of RFC 6749 and the RFC 6749 §5.2 error shape.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

/// Everything observed about one HTTP response.
pub(crate) struct Captured {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    pub json: Option<Value>,
}

impl Captured {
    /// The first value of a header, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A short description for failure details: status, content type and the start of the body.
    pub fn summary(&self) -> String {
        let ct = self.header("content-type").unwrap_or("<none>");
        format!(
            "HTTP {}, Content-Type {ct}, body {}",
            self.status,
            truncate(&self.body, 300)
        )
    }

    /// Whether the media type is `application/json` (parameters such as charset allowed).
    pub fn has_json_content_type(&self) -> bool {
        media_type(self.header("content-type")).is_some_and(|m| m == "application/json")
    }

    /// The body as a JSON object, or a description of what was there instead.
    pub fn object(&self) -> Result<&Map<String, Value>, String> {
        match &self.json {
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(format!(
                "body is JSON but not an object: {}",
                self.summary()
            )),
            None => Err(format!("body is not JSON: {}", self.summary())),
        }
    }

    /// A string member of the JSON object body.
    pub fn str_member(&self, name: &str) -> Option<&str> {
        self.json.as_ref()?.get(name)?.as_str()
    }

    /// Fails unless the status is `expected`.
    pub fn expect_status(&self, expected: u16) -> Result<(), String> {
        if self.status == expected {
            Ok(())
        } else {
            Err(format!("expected HTTP {expected}, got {}", self.summary()))
        }
    }
}

/// The lower-cased media type of a Content-Type value, without parameters.
pub(crate) fn media_type(value: Option<&str>) -> Option<String> {
    let v = value?;
    let mt = v.split(';').next().unwrap_or(v).trim();
    Some(mt.to_ascii_lowercase())
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head:?}…")
    }
}

/// An error and its causes, e.g. "error sending request: connection refused".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Sends a request and captures the response; any transport error becomes an `Err` detail.
pub(crate) async fn send(req: reqwest::RequestBuilder) -> Result<Captured, String> {
    let resp = req
        .send()
        .await
        .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.map_err(|e| {
        format!(
            "HTTP {status}, reading the body failed: {}",
            error_chain(&e)
        )
    })?;
    let json = serde_json::from_str(&body).ok();
    Ok(Captured {
        status,
        headers,
        body,
        json,
    })
}

/// `application/x-www-form-urlencoded` encoding of one name or value (WHATWG URL §5.2).
pub(crate) fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A form body; a name may be given several times on purpose.
pub(crate) fn form(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `Authorization` value for `client_secret_basic`: RFC 6749 §2.3.1 form-encodes the id and
/// the secret before joining them with a colon and base64-encoding the result.
pub(crate) fn basic_auth(id: &str, secret: &str) -> String {
    let raw = format!("{}:{}", form_encode(id), form_encode(secret));
    format!("Basic {}", STANDARD.encode(raw))
}

/// RFC 6749 §5.2: `error` and `error_description` use only %x20-21 / %x23-5B / %x5D-7E.
fn allowed_error_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// Checks an RFC 6749 §5.2 error response: one of `statuses`, a JSON object body with
/// Content-Type `application/json`, and `error` equal to `code`.
pub(crate) fn expect_oauth_error(
    resp: &Captured,
    statuses: &[u16],
    code: &str,
) -> Result<(), String> {
    if !statuses.contains(&resp.status) {
        let want = statuses
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" or ");
        return Err(format!(
            "expected HTTP {want} with error {code:?}, got {}",
            resp.summary()
        ));
    }
    if !resp.has_json_content_type() {
        return Err(format!(
            "error response is not Content-Type application/json: {}",
            resp.summary()
        ));
    }
    let obj = resp.object()?;
    let error = match obj.get("error") {
        Some(Value::String(e)) => e,
        other => {
            return Err(format!(
                "`error` is not a string ({other:?}): {}",
                resp.summary()
            ));
        }
    };
    if error != code {
        return Err(format!(
            "expected error {code:?}, got {error:?}: {}",
            resp.summary()
        ));
    }
    match obj.get("error_description") {
        None => {}
        Some(Value::String(d)) if allowed_error_chars(d) => {}
        Some(other) => {
            return Err(format!(
                "error_description must be a string of %x20-21 / %x23-5B / %x5D-7E characters, got {other}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_follows_rfc6749_appendix_b() {
        assert_eq!(form_encode("a b+c/%é"), "a+b%2Bc%2F%25%C3%A9");
        assert_eq!(form(&[("x", "1"), ("x", "2")]), "x=1&x=2");
    }

    #[test]
    fn basic_auth_encodes_before_base64() {
        // "id:se cret" → "id:se+cret"
        assert_eq!(basic_auth("id", "se cret"), "Basic aWQ6c2UrY3JldA==");
    }

    #[test]
    fn error_charset() {
        assert!(allowed_error_chars("invalid_client: bad secret!"));
        assert!(!allowed_error_chars("say \"hi\""));
        assert!(!allowed_error_chars("back\\slash"));
    }
}
