//! The stream configuration of SSF 1.0 §8.1.1 for streams receivers manage: the bodies of
//! create (POST), update (PATCH) and replace (PUT) parsed into what the receiver may set, and
//! the configuration a receiver reads back. Pure functions; the HTTP edge is
//! `http::ssf_streams`.
//!
//! - Receiver-supplied (§8.1.1): `delivery`, `events_requested`, `description`.
//! - Transmitter-supplied (`stream_id`, `iss`, `aud`, `events_supported`, `events_delivered`,
//!   `min_verification_interval`, a poll stream's `endpoint_url`) may be sent, and must then
//!   be what the transmitter would say (§8.1.1.3, §8.1.1.4); anything else is refused, so a
//!   misspelt member is an error rather than silently ignored.
//! - `events_delivered` is `events_requested` ∩ `events_supported` (an unknown type is never
//!   delivered, and not an error: §8.1.1 "MUST ignore any array values that it does not
//!   understand").
//! - A push stream's `authorization_header` is a secret: sealed when stored, never rendered.

use serde_json::{Map, Value, json};

use crate::config::SSF_EVENTS;
use crate::store::ssf::{Method, StoredStream};

/// SSF 1.0 §6.1.1: the push delivery method (RFC 8935).
pub const PUSH: &str = "urn:ietf:rfc:8935";
/// SSF 1.0 §6.1.2: the poll delivery method (RFC 8936).
pub const POLL: &str = "urn:ietf:rfc:8936";
/// The most streams one receiver may have.
pub const MAX_STREAMS_PER_CLIENT: u64 = 4;
/// SSF 1.0 §8.1.1 `min_verification_interval`, in seconds.
pub const MIN_VERIFICATION_INTERVAL: i64 = 10;
/// The largest request body read.
pub const MAX_BODY: usize = 16 * 1024;
const MAX_EVENTS: usize = 32;
const MAX_EVENT_TYPE: usize = 256;
const MAX_DESCRIPTION: usize = 256;
const MAX_AUTHORIZATION: usize = 4096;
/// Verification `state` (§8.1.4.2) is echoed in a SET: bounded.
pub const MAX_STATE: usize = 256;
const MAX_REASON: usize = 256;

/// Which request the body came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// POST (§8.1.1.1): no `stream_id`; what is missing takes its default.
    Create,
    /// PATCH (§8.1.1.3): `stream_id`; what is missing is unchanged.
    Update,
    /// PUT (§8.1.1.4): `stream_id`; what is missing is deleted (takes its default).
    Replace,
}

/// Where a stream's SETs go, as the receiver asked.
#[derive(Clone, PartialEq, Eq)]
pub enum Delivery {
    Push {
        endpoint_url: String,
        authorization_header: Option<String>,
    },
    Poll,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivery::Push { endpoint_url, .. } => f
                .debug_struct("Push")
                .field("endpoint_url", endpoint_url)
                .finish_non_exhaustive(),
            Delivery::Poll => f.write_str("Poll"),
        }
    }
}

/// A parsed body: the receiver-supplied members it carried, and the transmitter-supplied
/// ones to compare with what the transmitter says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Body {
    pub stream_id: Option<String>,
    pub delivery: Option<Delivery>,
    pub events_requested: Option<Vec<String>>,
    pub description: Option<String>,
    /// Transmitter-supplied members as sent (`stream_id` apart).
    pub transmitter: Map<String, Value>,
    /// A poll delivery's `endpoint_url` as sent (the transmitter's to give).
    pub poll_url: Option<String>,
}

/// A refused body: the text is the `error_description` (it quotes no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

fn invalid(s: impl Into<String>) -> Invalid {
    Invalid(s.into())
}

/// A member's name, quoted for an error (bounded, printable).
fn quoted(name: &str) -> String {
    let short: String = name.chars().take(64).collect();
    format!("{short:?}")
}

fn text(v: &Value, what: &str, max: usize) -> Result<String, Invalid> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid(format!("{what} must be a string")))?;
    if s.len() > max {
        return Err(invalid(format!("{what} is longer than {max} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(format!("{what} must not hold control characters")));
    }
    Ok(s.to_string())
}

/// A stream id as a receiver sends it (bounded; an unknown one is simply not found).
pub fn stream_id(v: &Value) -> Result<String, Invalid> {
    let s = text(v, "stream_id", 64)?;
    if s.is_empty() {
        return Err(invalid("stream_id must not be empty"));
    }
    Ok(s)
}

/// Parses a configuration body (SSF 1.0 §8.1.1.1, §8.1.1.3, §8.1.1.4).
pub fn parse(body: &[u8], mode: Mode) -> Result<Body, Invalid> {
    if body.len() > MAX_BODY {
        return Err(invalid(format!("the body is larger than {MAX_BODY} bytes")));
    }
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        _ => return Err(invalid("the body must be a JSON object (SSF 1.0 §8.1.1)")),
    };
    let mut out = Body::default();
    for (name, v) in &obj {
        match name.as_str() {
            "stream_id" => out.stream_id = Some(stream_id(v)?),
            "delivery" => {
                let (d, poll_url) = delivery(v)?;
                out.delivery = Some(d);
                out.poll_url = poll_url;
            }
            "events_requested" => out.events_requested = Some(events(v)?),
            "description" => out.description = Some(text(v, "description", MAX_DESCRIPTION)?),
            "iss"
            | "aud"
            | "events_supported"
            | "events_delivered"
            | "min_verification_interval" => {
                out.transmitter.insert(name.clone(), v.clone());
            }
            other => {
                return Err(invalid(format!(
                    "unknown member {} (SSF 1.0 §8.1.1 names the stream's members)",
                    quoted(other)
                )));
            }
        }
    }
    match (mode, &out.stream_id) {
        (Mode::Create, Some(_)) => Err(invalid(
            "stream_id is assigned by the transmitter; leave it out to create a stream",
        )),
        (Mode::Update | Mode::Replace, None) => Err(invalid("stream_id is required")),
        _ => Ok(out),
    }
}

fn delivery(v: &Value) -> Result<(Delivery, Option<String>), Invalid> {
    let Value::Object(d) = v else {
        return Err(invalid("delivery must be an object"));
    };
    if let Some(k) = d.keys().find(|k| {
        !matches!(
            k.as_str(),
            "method" | "endpoint_url" | "authorization_header"
        )
    }) {
        return Err(invalid(format!("unknown member {} of delivery", quoted(k))));
    }
    let method = match d.get("method") {
        Some(m) => text(m, "delivery.method", 64)?,
        None => return Err(invalid("delivery.method is required")),
    };
    match method.as_str() {
        PUSH => {
            let url = match d.get("endpoint_url") {
                Some(u) => text(u, "delivery.endpoint_url", super::receiver::MAX_URL)?,
                None => {
                    return Err(invalid(
                        "delivery.endpoint_url is required for push delivery (SSF 1.0 §6.1.1)",
                    ));
                }
            };
            super::receiver::parse_url(&url).map_err(|e| invalid(e.to_string()))?;
            let authorization_header = match d.get("authorization_header") {
                None | Some(Value::Null) => None,
                Some(a) => {
                    let a = text(a, "delivery.authorization_header", MAX_AUTHORIZATION)?;
                    if a.trim().is_empty() || http::HeaderValue::from_str(&a).is_err() {
                        return Err(invalid(
                            "delivery.authorization_header must be a header value",
                        ));
                    }
                    Some(a)
                }
            };
            Ok((
                Delivery::Push {
                    endpoint_url: url,
                    authorization_header,
                },
                None,
            ))
        }
        POLL => {
            if d.contains_key("authorization_header") {
                return Err(invalid(
                    "delivery.authorization_header is for push delivery only; a poll \
                     presents the receiver's access token",
                ));
            }
            let url = match d.get("endpoint_url") {
                Some(u) => Some(text(u, "delivery.endpoint_url", super::receiver::MAX_URL)?),
                None => None,
            };
            Ok((Delivery::Poll, url))
        }
        _ => Err(invalid(format!(
            "delivery.method must be {PUSH} (push) or {POLL} (poll)"
        ))),
    }
}

fn events(v: &Value) -> Result<Vec<String>, Invalid> {
    let Value::Array(list) = v else {
        return Err(invalid(
            "events_requested must be an array of event-type URIs",
        ));
    };
    if list.len() > MAX_EVENTS {
        return Err(invalid(format!(
            "events_requested holds more than {MAX_EVENTS} event types"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for e in list {
        let e = text(e, "an events_requested entry", MAX_EVENT_TYPE)?;
        if e.is_empty() {
            return Err(invalid("an events_requested entry is empty"));
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

/// `events_delivered`: the requested types this transmitter sends, in its order.
pub fn delivered(requested: &[String]) -> Vec<String> {
    (SSF_EVENTS.iter())
        .filter(|e| requested.iter().any(|r| r == *e))
        .map(|e| e.to_string())
        .collect()
}

/// The associated data a stream's sealed `authorization_header` is bound to.
pub fn seal_context(id: &str) -> String {
    format!("ssf-stream:{id}")
}

/// The poll URL of a stream (SSF 1.0 §6.1.2: the transmitter's).
pub fn poll_url(issuer: &str, id: &str) -> String {
    format!("{issuer}/ssf/poll/{id}")
}

/// SSF 1.0 §8.1.1: the configuration a receiver reads. Never the `authorization_header`.
pub fn render(s: &StoredStream, issuer: &str) -> Value {
    let delivery = match (s.method, &s.endpoint_url) {
        (Method::Push, Some(url)) => json!({ "method": PUSH, "endpoint_url": url }),
        (Method::Push, None) => json!({ "method": PUSH }),
        (Method::Poll, _) => json!({ "method": POLL, "endpoint_url": poll_url(issuer, &s.id) }),
    };
    let mut v = json!({
        "stream_id": s.id,
        "iss": issuer,
        "aud": s.client_id,
        "delivery": delivery,
        "events_supported": SSF_EVENTS,
        "events_requested": s.events_requested,
        "events_delivered": s.events_delivered,
        "min_verification_interval": MIN_VERIFICATION_INTERVAL,
    });
    if let (Some(d), Some(o)) = (&s.description, v.as_object_mut()) {
        o.insert("description".into(), d.clone().into());
    }
    v
}

/// §8.1.1.3 / §8.1.1.4: transmitter-supplied members that were sent must be what the
/// transmitter says: `now` is the configuration as it will be, `before` as it was (the
/// `events_delivered` sent is compared with it, "before any updates are applied").
pub fn check_transmitter(body: &Body, now: &Value, before: &Value) -> Result<(), Invalid> {
    for (name, sent) in &body.transmitter {
        let want = match name.as_str() {
            "events_delivered" => before.get(name),
            _ => now.get(name),
        };
        if Some(sent) != want {
            let want = want.cloned().unwrap_or_default();
            return Err(invalid(format!(
                "{name} is set by the transmitter and is {want} here"
            )));
        }
    }
    if let Some(url) = &body.poll_url {
        let given = (now.get("delivery"))
            .and_then(|d| d.get("endpoint_url"))
            .and_then(Value::as_str);
        if Some(url.as_str()) != given {
            return Err(invalid(
                "a poll stream's delivery.endpoint_url is the transmitter's (SSF 1.0 §6.1.2); \
                 leave it out",
            ));
        }
    }
    Ok(())
}

/// A status request's `reason` (§8.1.2.2), bounded.
pub fn reason(v: Option<&Value>) -> Result<Option<String>, Invalid> {
    v.filter(|v| !v.is_null())
        .map(|v| text(v, "reason", MAX_REASON))
        .transpose()
}

/// A verification request's `state` (§8.1.4.2), bounded.
pub fn state(v: Option<&Value>) -> Result<Option<String>, Invalid> {
    v.filter(|v| !v.is_null())
        .map(|v| text(v, "state", MAX_STATE))
        .transpose()
}

/// SSF 1.0 §8.1.4.1: the verification SET of stream `stream_id`, naming the stream as its
/// subject (`opaque`) and echoing the receiver's `state`.
pub fn verification(
    issuer: &str,
    aud: &str,
    jti: &str,
    stream_id: &str,
    state: Option<&str>,
    now: i64,
) -> super::SetClaims {
    let mut event = Map::new();
    if let Some(s) = state {
        event.insert("state".into(), s.into());
    }
    super::SetClaims {
        iss: issuer.to_string(),
        jti: jti.to_string(),
        iat: now,
        aud: aud.to_string(),
        sub_id: json!({ "format": "opaque", "id": stream_id }),
        events: json!({ crate::config::VERIFICATION: event }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SESSION_REVOKED;
    use crate::store::ssf::Status;

    fn body(v: Value, mode: Mode) -> Result<Body, Invalid> {
        parse(v.to_string().as_bytes(), mode)
    }

    fn stored(method: Method) -> StoredStream {
        StoredStream {
            id: "~s1".into(),
            client_id: "rs".into(),
            method,
            endpoint_url: (method == Method::Push).then(|| "https://rs.example/e".into()),
            authorization_header: Some(b"sealed".to_vec()),
            events_requested: vec![SESSION_REVOKED.into(), "urn:other".into()],
            events_delivered: vec![SESSION_REVOKED.into()],
            description: Some("d".into()),
            status: Status::Enabled,
            status_reason: None,
            created_at: 1,
            updated_at: 1,
            verified_at: None,
        }
    }

    /// SSF 1.0 §8.1.1.1: the receiver-supplied members of a create request, push delivery
    /// with the receiver's URL and credential (§6.1.1).
    #[test]
    fn ssf_8_1_1_1_a_push_create_body_parses() {
        let b = body(
            json!({
                "delivery": {
                    "method": PUSH,
                    "endpoint_url": "https://rs.example/events",
                    "authorization_header": "Bearer abc",
                },
                "events_requested": [SESSION_REVOKED, "urn:unknown", SESSION_REVOKED],
                "description": "orders",
            }),
            Mode::Create,
        )
        .unwrap();
        assert_eq!(
            b.delivery,
            Some(Delivery::Push {
                endpoint_url: "https://rs.example/events".into(),
                authorization_header: Some("Bearer abc".into()),
            })
        );
        let requested = b.events_requested.unwrap();
        assert_eq!(requested, [SESSION_REVOKED, "urn:unknown"]);
        // An unknown type is not an error; it is not delivered.
        assert_eq!(delivered(&requested), [SESSION_REVOKED]);
        assert_eq!(b.description.as_deref(), Some("orders"));
        // Without delivery: poll (§8.1.1.1).
        assert_eq!(body(json!({}), Mode::Create).unwrap().delivery, None);
    }

    #[test]
    fn ssf_8_1_1_malformed_and_unknown_members_are_refused_with_a_reason() {
        let table = [
            (json!([]), Mode::Create, "JSON object"),
            (
                json!({ "stream_id": "x" }),
                Mode::Create,
                "assigned by the transmitter",
            ),
            (json!({}), Mode::Update, "stream_id is required"),
            (json!({ "stream_id": 5 }), Mode::Replace, "must be a string"),
            (
                json!({ "colour": "red" }),
                Mode::Create,
                "unknown member \"colour\"",
            ),
            (
                json!({ "status": "enabled" }),
                Mode::Create,
                "unknown member",
            ),
            (
                json!({ "delivery": "push" }),
                Mode::Create,
                "must be an object",
            ),
            (
                json!({ "delivery": {} }),
                Mode::Create,
                "method is required",
            ),
            (
                json!({ "delivery": { "method": "urn:x" } }),
                Mode::Create,
                "must be urn",
            ),
            (
                json!({ "delivery": { "method": PUSH } }),
                Mode::Create,
                "endpoint_url is required",
            ),
            (
                json!({ "delivery": { "method": PUSH, "endpoint_url": "http://rs.example/e" } }),
                Mode::Create,
                "https",
            ),
            (
                json!({ "delivery": { "method": PUSH, "endpoint_url": "https://rs.example/e",
                    "authorization_header": "a\nb" } }),
                Mode::Create,
                "control characters",
            ),
            (
                json!({ "delivery": { "method": PUSH, "endpoint_url": "https://rs.example/e",
                    "extra": 1 } }),
                Mode::Create,
                "unknown member \"extra\" of delivery",
            ),
            (
                json!({ "delivery": { "method": POLL, "authorization_header": "Bearer x" } }),
                Mode::Create,
                "push delivery only",
            ),
            (json!({ "events_requested": "all" }), Mode::Create, "array"),
            (
                json!({ "events_requested": [1] }),
                Mode::Create,
                "must be a string",
            ),
            (json!({ "events_requested": [""] }), Mode::Create, "empty"),
            (
                json!({ "description": "x".repeat(300) }),
                Mode::Create,
                "longer than",
            ),
        ];
        for (v, mode, want) in table {
            let e = body(v.clone(), mode).expect_err(&v.to_string());
            assert!(e.0.contains(want), "{v}: {}", e.0);
        }
        let many: Vec<String> = (0..40).map(|i| format!("urn:e{i}")).collect();
        assert!(body(json!({ "events_requested": many }), Mode::Create).is_err());
        let huge = vec![b' '; MAX_BODY + 1];
        assert!(parse(&huge, Mode::Create).unwrap_err().0.contains("larger"));
    }

    /// §8.1.1: the configuration read back names the receiver as `aud`, the transmitter's
    /// poll URL, the supported and delivered types, and never the authorization header.
    #[test]
    fn ssf_8_1_1_the_rendered_configuration_hides_the_credential() {
        let v = render(&stored(Method::Push), "https://as.example");
        assert_eq!(v["stream_id"], "~s1");
        assert_eq!(v["iss"], "https://as.example");
        assert_eq!(v["aud"], "rs");
        assert_eq!(
            v["delivery"],
            json!({ "method": PUSH, "endpoint_url": "https://rs.example/e" })
        );
        assert_eq!(v["events_delivered"], json!([SESSION_REVOKED]));
        assert_eq!(v["events_supported"], json!(SSF_EVENTS));
        assert_eq!(v["min_verification_interval"], MIN_VERIFICATION_INTERVAL);
        assert!(!v.to_string().contains("authorization") && !v.to_string().contains("sealed"));
        let p = render(&stored(Method::Poll), "https://as.example");
        assert_eq!(
            p["delivery"]["endpoint_url"],
            "https://as.example/ssf/poll/~s1"
        );
    }

    /// §8.1.1.3: transmitter-supplied members may be sent but must match.
    #[test]
    fn ssf_8_1_1_3_transmitter_members_must_match() {
        let now = render(&stored(Method::Poll), "https://as.example");
        let ok = body(
            json!({ "stream_id": "~s1", "iss": "https://as.example", "aud": "rs",
                "delivery": { "method": POLL, "endpoint_url": "https://as.example/ssf/poll/~s1" } }),
            Mode::Update,
        )
        .unwrap();
        assert_eq!(check_transmitter(&ok, &now, &now), Ok(()));
        for bad in [
            json!({ "stream_id": "~s1", "iss": "https://evil.example" }),
            json!({ "stream_id": "~s1", "aud": "someone-else" }),
            json!({ "stream_id": "~s1", "events_delivered": [] }),
            json!({ "stream_id": "~s1", "min_verification_interval": 0 }),
            json!({ "stream_id": "~s1",
                "delivery": { "method": POLL, "endpoint_url": "https://evil.example/p" } }),
        ] {
            let b = body(bad.clone(), Mode::Update).unwrap();
            assert!(check_transmitter(&b, &now, &now).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_verification_state_and_a_status_reason_are_bounded_strings() {
        assert_eq!(state(None), Ok(None));
        assert_eq!(state(Some(&json!("abc"))), Ok(Some("abc".into())));
        assert!(state(Some(&json!("x".repeat(MAX_STATE + 1)))).is_err());
        assert!(state(Some(&json!(5))).is_err());
        assert!(reason(Some(&json!("a\u{7}"))).is_err());
    }
}
