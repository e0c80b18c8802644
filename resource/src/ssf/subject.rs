//! A verified SET's `events` and `sub_id` (SSF 1.0 §3, RFC 9493, CAEP 1.0 §3.1), parsed into
//! what they revoke. Parse, don't validate: what comes out names only what a token carries.

use serde_json::{Map, Value};

use super::SsfError;
use super::revocations::Revocation;
use crate::principal::numeric_date;

/// CAEP 1.0 §3.1: a session (or every session of a subject) was revoked.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// SSF 1.0 §8.1.4: the transmitter checking that the stream works; nothing to do.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// Longest identifier kept (a session id, a subject, a client id): the list holds up to
/// `revocation_capacity` of them.
const MAX_ID_LEN: usize = 2048;

/// What a SET asks of this server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Events {
    pub(crate) revocations: Vec<Revocation>,
    /// The SSF verification event was among them.
    pub(crate) verification: bool,
    /// Event types this server does not act on (accepted and ignored, SSF 1.0 §4).
    pub(crate) ignored: usize,
}

/// Whom a `sub_id` names, in a token's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Session(String),
    Subject(String),
    Client(String),
}

fn invalid(why: impl Into<String>) -> SsfError {
    SsfError::InvalidRequest(why.into())
}

/// The events of verified SET `claims` from `issuer`. RFC 8417 §2.2: `iat` and `events` are
/// required; CAEP 1.0 §2: `event_timestamp` says when the event happened (the SET's `iat`
/// when absent, which is never earlier).
pub(crate) fn events_of(claims: &Map<String, Value>, issuer: &str) -> Result<Events, SsfError> {
    let iat = numeric_date(claims.get("iat"))
        .ok_or_else(|| invalid("the SET has no valid `iat` (RFC 8417 §2.2)"))?;
    let events = match claims.get("events") {
        Some(Value::Object(e)) if !e.is_empty() => e,
        _ => {
            return Err(invalid("the SET has no `events` object (RFC 8417 §2.2)"));
        }
    };
    let mut out = Events::default();
    for (uri, payload) in events {
        match uri.as_str() {
            SESSION_REVOKED => {
                let Value::Object(payload) = payload else {
                    return Err(invalid("the session-revoked event is not an object"));
                };
                let at = match payload.get("event_timestamp") {
                    None => iat,
                    Some(v) => numeric_date(Some(v)).ok_or_else(|| {
                        invalid("`event_timestamp` is not a NumericDate (CAEP 1.0 §2)")
                    })?,
                };
                let sub_id = claims.get("sub_id").ok_or_else(|| {
                    invalid("the session-revoked SET has no `sub_id` (SSF 1.0 §4.1)")
                })?;
                match target(sub_id, issuer)? {
                    Some(Target::Session(id)) => {
                        out.revocations.push(Revocation::Session { id, at })
                    }
                    Some(Target::Subject(sub)) => {
                        out.revocations.push(Revocation::Subject { sub, at })
                    }
                    Some(Target::Client(client_id)) => {
                        out.revocations.push(Revocation::Client { client_id, at })
                    }
                    None => out.ignored += 1,
                }
            }
            VERIFICATION => out.verification = true,
            _ => out.ignored += 1,
        }
    }
    Ok(out)
}

/// RFC 9493 §3 / SSF 1.0 §3: what a subject identifier names. `None` for formats that name
/// nothing a token carries (`email`, `phone_number`, ...). A `complex` subject (§3.2) with a
/// `session` is that session (mandate's session ids are unique, so its `user` adds nothing);
/// else with an `application`, that client; else with a `user`, that subject. A `session` or
/// `application` in a format tokens do not carry names nothing here: the SET is ignored, never
/// widened to the `user` beside it.
fn target(sub_id: &Value, issuer: &str) -> Result<Option<Target>, SsfError> {
    let obj = format_of(sub_id)?;
    match obj.0 {
        "iss_sub" => iss_sub(obj.1, issuer).map(|s| Some(Target::Subject(s))),
        "complex" => {
            if let Some(session) = obj.1.get("session") {
                return Ok(opaque(session)?.map(Target::Session));
            }
            if let Some(application) = obj.1.get("application") {
                return Ok(opaque(application)?.map(Target::Client));
            }
            match obj.1.get("user") {
                Some(user) => {
                    let (format, fields) = format_of(user)?;
                    if format == "iss_sub" {
                        iss_sub(fields, issuer).map(|s| Some(Target::Subject(s)))
                    } else {
                        Ok(None)
                    }
                }
                None => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// A subject identifier's `format` (RFC 9493 §3: required) and its members.
fn format_of(v: &Value) -> Result<(&str, &Map<String, Value>), SsfError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("a subject identifier is not an object (RFC 9493 §3)"))?;
    let format = obj
        .get("format")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a subject identifier has no `format` (RFC 9493 §3)"))?;
    Ok((format, obj))
}

/// RFC 9493 §3.2.4: `iss` and `sub`; the issuer must be this server's.
fn iss_sub(fields: &Map<String, Value>, issuer: &str) -> Result<String, SsfError> {
    let (Some(Value::String(iss)), Some(Value::String(sub))) =
        (fields.get("iss"), fields.get("sub"))
    else {
        return Err(invalid(
            "an `iss_sub` identifier needs `iss` and `sub` strings (RFC 9493 §3.2.4)",
        ));
    };
    if iss != issuer {
        return Err(invalid(
            "an `iss_sub` identifier names a subject of another issuer",
        ));
    }
    id(sub)
}

/// RFC 9493 §3.2.5 `opaque` `id`; another format names nothing here.
fn opaque(v: &Value) -> Result<Option<String>, SsfError> {
    let (format, fields) = format_of(v)?;
    if format != "opaque" {
        return Ok(None);
    }
    match fields.get("id") {
        Some(Value::String(s)) => id(s).map(Some),
        _ => Err(invalid(
            "an `opaque` identifier needs an `id` string (RFC 9493 §3.2.5)",
        )),
    }
}

fn id(s: &str) -> Result<String, SsfError> {
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(invalid(format!(
            "an identifier is empty or longer than {MAX_ID_LEN} bytes"
        )));
    }
    Ok(s.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://as.example";

    fn set(sub_id: Value, events: Value) -> Map<String, Value> {
        let Value::Object(m) = json!({"iss": ISS, "iat": 100, "jti": "j", "aud": "rs",
                                       "sub_id": sub_id, "events": events})
        else {
            unreachable!()
        };
        m
    }

    fn revoked(sub_id: Value) -> Result<Events, SsfError> {
        events_of(
            &set(
                sub_id,
                json!({ SESSION_REVOKED: { "event_timestamp": 90 } }),
            ),
            ISS,
        )
    }

    #[test]
    fn docs_ssf_every_sub_id_mandate_sends_is_parsed_into_what_a_token_carries() {
        let user = json!({"format": "iss_sub", "iss": ISS, "sub": "alice"});
        let cases = [
            (
                json!({"format": "complex", "session": {"format": "opaque", "id": "sid1"}, "user": user}),
                Revocation::Session {
                    id: "sid1".into(),
                    at: 90,
                },
            ),
            (
                json!({"format": "complex", "session": {"format": "opaque", "id": "jti1"}}),
                Revocation::Session {
                    id: "jti1".into(),
                    at: 90,
                },
            ),
            (
                json!({"format": "iss_sub", "iss": ISS, "sub": "agent:build-bot"}),
                Revocation::Subject {
                    sub: "agent:build-bot".into(),
                    at: 90,
                },
            ),
            (
                json!({"format": "complex", "application": {"format": "opaque", "id": "c1"}}),
                Revocation::Client {
                    client_id: "c1".into(),
                    at: 90,
                },
            ),
            (
                json!({"format": "complex", "user": user}),
                Revocation::Subject {
                    sub: "alice".into(),
                    at: 90,
                },
            ),
        ];
        for (sub_id, want) in cases {
            let e = revoked(sub_id.clone()).unwrap();
            assert_eq!(e.revocations, vec![want], "{sub_id}");
            assert!(!e.verification);
        }
    }

    #[test]
    fn caep_event_timestamp_falls_back_to_the_sets_iat() {
        let e = events_of(
            &set(
                json!({"format": "iss_sub", "iss": ISS, "sub": "bob"}),
                json!({ SESSION_REVOKED: {} }),
            ),
            ISS,
        )
        .unwrap();
        assert_eq!(
            e.revocations,
            vec![Revocation::Subject {
                sub: "bob".into(),
                at: 100
            }]
        );
    }

    #[test]
    fn ssf_verification_and_unknown_events_are_accepted_and_change_nothing() {
        let e = events_of(
            &set(
                json!({"format": "opaque", "id": "stream-1"}),
                json!({ VERIFICATION: {"state": "abc"},
                        "https://schemas.openid.net/secevent/caep/event-type/credential-change": {} }),
            ),
            ISS,
        )
        .unwrap();
        assert!(e.verification);
        assert_eq!((e.revocations.len(), e.ignored), (0, 1));
        // Formats that name nothing a token carries: accepted, nothing revoked.
        for sub_id in [
            json!({"format": "email", "email": "alice@example.com"}),
            json!({"format": "opaque", "id": "x"}),
            json!({"format": "complex", "session": {"format": "uri", "uri": "urn:x"}}),
            // Never widened to the user beside a session it cannot match.
            json!({"format": "complex", "session": {"format": "uri", "uri": "urn:x"},
                "user": {"format": "iss_sub", "iss": ISS, "sub": "alice"}}),
            json!({"format": "complex", "application": {"format": "uri", "uri": "urn:x"},
                "user": {"format": "iss_sub", "iss": ISS, "sub": "alice"}}),
            json!({"format": "complex", "user": {"format": "email", "email": "a@b"}}),
            json!({"format": "complex", "tenant": {"format": "opaque", "id": "t"}}),
        ] {
            let e = revoked(sub_id.clone()).unwrap();
            assert_eq!((e.revocations.len(), e.ignored), (0, 1), "{sub_id}");
        }
    }

    #[test]
    fn rfc8935_s2_4_malformed_sets_are_invalid_request() {
        let bad_sub_ids = [
            json!("alice"),
            json!({"sub": "alice"}),
            json!({"format": "iss_sub", "sub": "alice"}),
            json!({"format": "iss_sub", "iss": "https://other.example", "sub": "alice"}),
            json!({"format": "iss_sub", "iss": ISS, "sub": ""}),
            json!({"format": "iss_sub", "iss": ISS, "sub": "a".repeat(MAX_ID_LEN + 1)}),
            json!({"format": "complex", "session": {"format": "opaque"}}),
            json!({"format": "complex", "session": "sid1"}),
            json!({"format": "complex", "application": {"format": "opaque", "id": 7}}),
            json!({"format": "complex", "user": {"format": "iss_sub", "iss": "https://o", "sub": "a"}}),
        ];
        for sub_id in bad_sub_ids {
            assert!(
                matches!(revoked(sub_id.clone()), Err(SsfError::InvalidRequest(_))),
                "{sub_id}"
            );
        }
        let ok_sub = json!({"format": "iss_sub", "iss": ISS, "sub": "a"});
        let mut no_iat = set(ok_sub.clone(), json!({ VERIFICATION: {} }));
        no_iat.remove("iat");
        let mut no_sub_id = set(ok_sub.clone(), json!({ SESSION_REVOKED: {} }));
        no_sub_id.remove("sub_id");
        for claims in [
            no_iat,
            no_sub_id,
            set(ok_sub.clone(), json!({})),
            set(ok_sub.clone(), json!([SESSION_REVOKED])),
            set(ok_sub.clone(), json!({ SESSION_REVOKED: "yes" })),
            set(
                ok_sub.clone(),
                json!({ SESSION_REVOKED: {"event_timestamp": "now"} }),
            ),
        ] {
            assert!(
                matches!(events_of(&claims, ISS), Err(SsfError::InvalidRequest(_))),
                "{claims:?}"
            );
        }
    }
}
