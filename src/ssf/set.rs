//! The Security Event Token (RFC 8417) of a revocation: its claims, built when the event is
//! committed (so every retry carries the same `jti` and `iat`), and its signature, made when
//! it is sent (with the key signing then, which `/jwks.json` publishes).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::AuditEvent;
use crate::config::SESSION_REVOKED;
use crate::jose::Keyring;
use crate::jose::keyring::SignError;

/// RFC 8417 §2.3: the JOSE `typ` of a SET.
pub const TYP: &str = "secevent+jwt";

/// The claims of a SET, as stored in the outbox and signed at delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetClaims {
    pub iss: String,
    pub jti: String,
    pub iat: i64,
    pub aud: String,
    /// SSF 1.0 §3 / RFC 9493: whom the event is about.
    pub sub_id: Value,
    pub events: Value,
}

/// Who is cut off, in the identifiers a resource server knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    /// A token's session (its `sid` claim), else the token itself (its `jti`), with the
    /// subject (`sub`) of the token when known.
    Session { id: String, user: Option<String> },
    /// Every session of a user or an agent (`sub` = `alice`, `agent:build-bot`).
    Account(String),
    /// Every token issued to a client (`client_id`).
    Client(String),
}

/// A committed event that a receiver hears of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    subject: Subject,
    /// CAEP 1.0 §2 `initiating_entity`: `admin`, `user`, `policy` or `system`.
    initiating: &'static str,
    /// CAEP 1.0 §2 `reason_admin` (English): the audit event's kind, for an operator.
    reason: String,
}

impl Signal {
    /// The signal of an audit event, if it is one a receiver should hear of.
    pub fn of(ev: &AuditEvent) -> Option<Self> {
        let via = ev.detail.get("via").and_then(Value::as_str).unwrap_or("");
        let initiating = match (ev.kind.as_str(), via) {
            // A security rule revoked it (RFC 9700 §4.14.2, RFC 6749 §4.1.2: a replay).
            ("token.reuse_detected" | "code.reuse_detected", _) => "policy",
            (_, "cli" | "config") => "admin",
            (_, "revocation_endpoint" | "sessions_page" | "client") => "user",
            _ => "system",
        };
        let subject = match ev.kind.as_str() {
            "token.revoked" | "token.reuse_detected" | "code.reuse_detected" => Subject::Session {
                id: ev.session.clone().or_else(|| ev.token_jti.clone())?,
                user: ev.subject.clone(),
            },
            "agent.disabled" | "agent.removed" | "user.removed" => {
                Subject::Account(ev.subject.clone()?)
            }
            "client.deleted" | "client.removed" | "client.expired" => {
                Subject::Client(ev.client_id.clone()?)
            }
            _ => return None,
        };
        Some(Self {
            subject,
            initiating,
            reason: ev.kind.clone(),
        })
    }

    /// Every signal is CAEP session-revoked for now (docs/ssf.md says why).
    pub fn event_type(&self) -> &'static str {
        SESSION_REVOKED
    }

    fn sub_id(&self, issuer: &str) -> Value {
        let account = |sub: &str| json!({ "format": "iss_sub", "iss": issuer, "sub": sub });
        match &self.subject {
            Subject::Session { id, user } => {
                let mut v = json!({
                    "format": "complex",
                    "session": { "format": "opaque", "id": id },
                });
                if let (Some(u), Some(o)) = (user, v.as_object_mut()) {
                    o.insert("user".into(), account(u));
                }
                v
            }
            Subject::Account(sub) => account(sub),
            Subject::Client(id) => json!({
                "format": "complex",
                "application": { "format": "opaque", "id": id },
            }),
        }
    }

    pub fn claims(&self, issuer: &str, aud: &str, jti: &str, now: i64) -> SetClaims {
        SetClaims {
            iss: issuer.to_string(),
            jti: jti.to_string(),
            iat: now,
            aud: aud.to_string(),
            sub_id: self.sub_id(issuer),
            events: json!({
                self.event_type(): {
                    "event_timestamp": now,
                    "initiating_entity": self.initiating,
                    "reason_admin": { "en": self.reason },
                }
            }),
        }
    }
}

/// The compact JWS of `claims` under the current signing key (RFC 8417 §2.3, ES256).
pub fn sign(ring: &Keyring, claims: &SetClaims) -> Result<String, SignError> {
    ring.sign(TYP, claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoked(session: Option<&str>, jti: Option<&str>, sub: Option<&str>) -> AuditEvent {
        let mut ev = AuditEvent::new("token.revoked");
        ev.session = session.map(str::to_string);
        ev.token_jti = jti.map(str::to_string);
        ev.subject = sub.map(str::to_string);
        ev.detail = json!({ "via": "revocation_endpoint" });
        ev
    }

    /// RFC 8417 §2.2 (iss, iat, jti, aud, events), SSF 1.0 §3 (`sub_id`, complex subjects of
    /// RFC 9493 identifiers) and CAEP 1.0 §3.1 (session-revoked with its optional claims).
    #[test]
    fn rfc8417_caep_3_1_a_revoked_session_names_the_session_and_its_user() {
        let s = Signal::of(&revoked(Some("sid1"), Some("j1"), Some("alice"))).unwrap();
        let c = s.claims(
            "https://as.example",
            "https://rs.example",
            "set1",
            1_700_000_001,
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["iss"], "https://as.example");
        assert_eq!(v["aud"], "https://rs.example");
        assert_eq!(v["jti"], "set1");
        assert_eq!(v["iat"], 1_700_000_001);
        assert_eq!(
            v["sub_id"],
            json!({
                "format": "complex",
                "session": { "format": "opaque", "id": "sid1" },
                "user": { "format": "iss_sub", "iss": "https://as.example", "sub": "alice" },
            })
        );
        let e = &v["events"][SESSION_REVOKED];
        assert_eq!(e["event_timestamp"], 1_700_000_001);
        assert_eq!(e["initiating_entity"], "user");
        assert_eq!(e["reason_admin"]["en"], "token.revoked");
        assert_eq!(
            v["events"].as_object().unwrap().len(),
            1,
            "one event per SET"
        );
        // RFC 8417 §3: a SET is no access token: no `exp`, no `sub`, and nothing of a token.
        assert!(v.get("exp").is_none() && v.get("sub").is_none());
    }

    #[test]
    fn a_sessionless_token_is_named_by_its_jti_and_other_events_are_not_signalled() {
        let s = Signal::of(&revoked(None, Some("j1"), None)).unwrap();
        let v = serde_json::to_value(s.claims("i", "a", "s", 1)).unwrap();
        assert_eq!(
            v["sub_id"],
            json!({ "format": "complex", "session": { "format": "opaque", "id": "j1" } })
        );
        assert_eq!(Signal::of(&revoked(None, None, None)), None);
        // A replayed refresh token or code revokes its session by rule (RFC 9700 §4.14.2).
        let mut ev = revoked(Some("sid1"), Some("j1"), Some("alice"));
        ev.kind = "token.reuse_detected".into();
        let v = serde_json::to_value(Signal::of(&ev).unwrap().claims("i", "a", "s", 1)).unwrap();
        assert_eq!(v["sub_id"]["session"]["id"], "sid1");
        assert_eq!(v["events"][SESSION_REVOKED]["initiating_entity"], "policy");
        assert_eq!(Signal::of(&AuditEvent::new("token.issued")), None);
    }

    /// RFC 9493 §3.2.4 `iss_sub` for an agent or a human cut off as a whole; a client by an
    /// opaque application id (SSF 1.0 §3.2 complex subject).
    #[test]
    fn rfc9493_a_disabled_agent_and_a_deleted_client_are_named_by_their_ids() {
        let mut ev = AuditEvent::new("agent.disabled");
        ev.subject = Some("agent:build-bot".into());
        ev.detail = json!({ "via": "cli" });
        let v = serde_json::to_value(Signal::of(&ev).unwrap().claims("i", "a", "s", 5)).unwrap();
        assert_eq!(
            v["sub_id"],
            json!({ "format": "iss_sub", "iss": "i", "sub": "agent:build-bot" })
        );
        assert_eq!(v["events"][SESSION_REVOKED]["initiating_entity"], "admin");
        assert_eq!(v["events"][SESSION_REVOKED]["event_timestamp"], 5);
        let mut ev = AuditEvent::new("client.deleted");
        ev.client_id = Some("c1".into());
        let v = serde_json::to_value(Signal::of(&ev).unwrap().claims("i", "a", "s", 5)).unwrap();
        assert_eq!(
            v["sub_id"]["application"],
            json!({ "format": "opaque", "id": "c1" })
        );
    }
}
