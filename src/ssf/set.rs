//! The Security Event Token (RFC 8417) of a revocation: its claims, built when the event is
//! committed (so every retry carries the same `jti` and `iat`), and its signature, made when
//! it is sent (with the key signing then, which `/jwks.json` publishes).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::AuditEvent;
use crate::config::{REFUSED, SESSION_REVOKED};
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
    /// The parties of a refused request: the human it was for and the client that asked.
    Request {
        user: Option<String>,
        client: Option<String>,
        session: Option<String>,
    },
}

/// What happened to the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// CAEP 1.0 §3.1: it can no longer use what it held.
    Revoked,
    /// mandate's [`REFUSED`]: a request of its was refused; `policies` names the Cedar
    /// policies that decided, when policy did.
    Refused { policies: Vec<String> },
}

/// A committed event that a receiver hears of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    subject: Subject,
    kind: Kind,
    /// CAEP 1.0 §2 `initiating_entity`: `admin`, `user`, `policy` or `system`.
    initiating: &'static str,
    /// CAEP 1.0 §2 `reason_admin` (English): the audit event's kind, for an operator.
    reason: String,
}

impl Signal {
    /// The signal of an audit event, if it is one a receiver should hear of.
    pub fn of(ev: &AuditEvent) -> Option<Self> {
        if let Some(refused) = Self::refused(ev) {
            return Some(refused);
        }
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
            kind: Kind::Revoked,
            initiating,
            reason: ev.kind.clone(),
        })
    }

    /// A refusal a security team hears of: a delegation the policy denied, an approved CIBA
    /// grant refused when it was to be issued, an enrolled agent's attestation refused (an
    /// unknown agent's is never audited). `reason_admin` is the audit kind and its reason.
    fn refused(ev: &AuditEvent) -> Option<Self> {
        let subject = match ev.kind.as_str() {
            "token.exchange_refused" | "ciba.refused_at_issuance" => {
                if ev.subject.is_none() && ev.client_id.is_none() {
                    return None; // RFC 9493 §3.2.4: a complex subject names at least one.
                }
                Subject::Request {
                    user: ev.subject.clone(),
                    client: ev.client_id.clone(),
                    session: ev.session.clone(),
                }
            }
            "agent.attestation_refused" => Subject::Account(ev.subject.clone()?),
            _ => return None,
        };
        let policies = (ev.detail.get("policies").and_then(Value::as_array))
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p.get("id").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        // A refused delegation's reason is the description its client got, which names the
        // policy files and the scopes asked: the SET names the policies by id instead.
        let reason = match ev.detail.get("reason").and_then(Value::as_str) {
            Some(why) if ev.kind != "token.exchange_refused" => format!("{}: {why}", ev.kind),
            _ => ev.kind.clone(),
        };
        Some(Self {
            subject,
            kind: Kind::Refused { policies },
            initiating: "policy",
            reason,
        })
    }

    /// Whether this is a revocation of tokens (a token, a session): those are named by what
    /// the revocation cut ([`Self::session`]), not by the event.
    pub fn names_tokens(&self) -> bool {
        matches!(self.subject, Subject::Session { .. })
    }

    /// Whether a receiver acting on this signal drops `cut` already: a user's or an agent's
    /// tokens (all of theirs, and those derived from them, name them as `sub` or in `act`),
    /// a client's own tokens. Tokens derived from a client's, issued to another, are not.
    pub fn covers(&self, cut: &crate::store::Cut) -> bool {
        match &self.subject {
            Subject::Account(_) => true,
            Subject::Client(id) => cut.client_id == *id,
            Subject::Session { .. } | Subject::Request { .. } => false,
        }
    }

    /// The same revocation, about one session (or one token, by its `jti`) of `user`.
    pub fn session(&self, id: &str, user: &str) -> Self {
        Self {
            subject: Subject::Session {
                id: id.to_string(),
                user: Some(user.to_string()),
            },
            kind: Kind::Revoked,
            initiating: self.initiating,
            reason: self.reason.clone(),
        }
    }

    /// CAEP session-revoked for a revocation, mandate's [`REFUSED`] for a refusal.
    pub fn event_type(&self) -> &'static str {
        match self.kind {
            Kind::Revoked => SESSION_REVOKED,
            Kind::Refused { .. } => REFUSED,
        }
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
            Subject::Request {
                user,
                client,
                session,
            } => {
                let mut v = serde_json::Map::new();
                v.insert("format".into(), "complex".into());
                if let Some(u) = user {
                    v.insert("user".into(), account(u));
                }
                if let Some(c) = client {
                    v.insert("application".into(), json!({ "format": "opaque", "id": c }));
                }
                if let Some(s) = session {
                    v.insert("session".into(), json!({ "format": "opaque", "id": s }));
                }
                Value::Object(v)
            }
        }
    }

    pub fn claims(&self, issuer: &str, aud: &str, jti: &str, now: i64) -> SetClaims {
        SetClaims {
            iss: issuer.to_string(),
            jti: jti.to_string(),
            iat: now,
            aud: aud.to_string(),
            sub_id: self.sub_id(issuer),
            events: {
                let mut event = json!({
                    "event_timestamp": now,
                    "initiating_entity": self.initiating,
                    "reason_admin": { "en": self.reason },
                });
                if let (Kind::Refused { policies }, Some(o)) = (&self.kind, event.as_object_mut()) {
                    o.insert("policies".into(), json!(policies));
                }
                json!({ self.event_type(): event })
            },
        }
    }
}

/// The compact JWS of `claims` under the current signing key (RFC 8417 §2.3, ES256), issued by
/// `issuer`, the server that signs it. A SET the CLI wrote names the issuer the CLI could
/// work out from the config, which is not the server's when the config names none and the
/// server listens on a port it was given (port 0): the server's own issuer replaces it, in
/// `iss` and in every `iss_sub` subject that named it, as the key that signs is the server's.
pub fn sign(ring: &Keyring, issuer: &str, claims: &SetClaims) -> Result<String, SignError> {
    if claims.iss == issuer {
        return ring.sign(TYP, claims);
    }
    let mut claims = claims.clone();
    reissue(&mut claims.sub_id, &claims.iss, issuer);
    claims.iss = issuer.to_string();
    ring.sign(TYP, &claims)
}

/// Replaces `from` by `to` as the `iss` of every `iss_sub` identifier in `sub_id`.
fn reissue(sub_id: &mut Value, from: &str, to: &str) {
    let Some(o) = sub_id.as_object_mut() else {
        return;
    };
    if o.get("format").and_then(Value::as_str) == Some("iss_sub")
        && o.get("iss").and_then(Value::as_str) == Some(from)
    {
        o.insert("iss".into(), to.into());
    }
    for member in o.values_mut().filter(|v| v.is_object()) {
        reissue(member, from, to);
    }
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

    /// RFC 8417 §2.2: a transmitter may define its own event type. A delegation the policy
    /// refused names the human and the client as a complex subject (RFC 9493 §3.2.4), and the
    /// policies that decided; never the scope asked or a token.
    #[test]
    fn rfc8417_s2_2_a_refused_delegation_is_mandates_refused_event_naming_the_policies() {
        let mut ev = AuditEvent::new("token.exchange_refused");
        ev.subject = Some("alice".into());
        ev.client_id = Some("agent-client".into());
        ev.session = Some("sid1".into());
        ev.token_jti = Some("j1".into());
        ev.detail = json!({
            "scope": "orders:write", "aud": "orders",
            "policies": [{"id": "no-writes", "file": "/etc/mandate/policies/p.cedar"}],
            "reason": "forbidden by no-writes (/etc/mandate/policies/p.cedar), orders:write",
        });
        let s = Signal::of(&ev).unwrap();
        assert_eq!(s.event_type(), REFUSED);
        let v = serde_json::to_value(s.claims("i", "a", "s", 7)).unwrap();
        assert_eq!(
            v["sub_id"],
            json!({
                "format": "complex",
                "user": { "format": "iss_sub", "iss": "i", "sub": "alice" },
                "application": { "format": "opaque", "id": "agent-client" },
                "session": { "format": "opaque", "id": "sid1" },
            })
        );
        let e = &v["events"][REFUSED];
        assert_eq!(e["initiating_entity"], "policy");
        assert_eq!(e["policies"], json!(["no-writes"]));
        assert_eq!(e["reason_admin"]["en"], "token.exchange_refused");
        let text = v.to_string();
        assert!(
            !text.contains("orders:write") && !text.contains("/etc/mandate"),
            "{text}"
        );
        assert!(v["events"].get(SESSION_REVOKED).is_none());

        // An enrolled agent whose attestation was refused is named as the agent.
        let mut ev = AuditEvent::new("agent.attestation_refused");
        ev.subject = Some("agent:build-bot".into());
        ev.detail = json!({ "reason": "quote signature invalid" });
        let v = serde_json::to_value(Signal::of(&ev).unwrap().claims("i", "a", "s", 7)).unwrap();
        assert_eq!(
            v["sub_id"],
            json!({ "format": "iss_sub", "iss": "i", "sub": "agent:build-bot" })
        );
        assert_eq!(v["events"][REFUSED]["policies"], json!([]));
        assert_eq!(
            v["events"][REFUSED]["reason_admin"]["en"],
            "agent.attestation_refused: quote signature invalid"
        );
        // A complex subject names at least one member (RFC 9493 §3.2.4).
        assert_eq!(
            Signal::of(&AuditEvent::new("ciba.refused_at_issuance")),
            None
        );
    }

    /// RFC 8417 §2.2 `iss` is the transmitter that signs: a SET written by the CLI under the
    /// issuer it worked out (`http://127.0.0.1:0`) is signed under the server's, in `iss` and
    /// in the `iss_sub` subjects (RFC 9493 §3.2.4) that named the CLI's.
    #[test]
    fn rfc8417_a_set_written_under_another_issuer_is_signed_under_the_servers() {
        let kek = crate::jose::Kek::from_bytes(&[9; 32]);
        let mut row = crate::jose::keyring::KeyMaterial::generate(&kek, 0);
        row.state = crate::jose::rotation::KeyState::Current;
        let ring = Keyring::from_rows(&[row], &kek).unwrap();
        let verify = |set: &str| ring.verify::<Value>(set, TYP).unwrap();
        let mut ev = AuditEvent::new("agent.disabled");
        ev.subject = Some("agent:build-bot".into());
        let c = Signal::of(&ev)
            .unwrap()
            .claims("http://127.0.0.1:0", "a", "s", 1);
        let set = sign(&ring, "http://127.0.0.1:41234", &c).unwrap();
        let v = verify(&set);
        assert_eq!(v["iss"], "http://127.0.0.1:41234");
        assert_eq!(v["sub_id"]["iss"], "http://127.0.0.1:41234");
        let s = Signal::of(&revoked(Some("sid1"), Some("j1"), Some("alice"))).unwrap();
        let c = s.claims("http://127.0.0.1:0", "a", "s", 1);
        let v = verify(&sign(&ring, "https://as", &c).unwrap());
        assert_eq!(v["sub_id"]["user"]["iss"], "https://as");
        assert_eq!(v["sub_id"]["session"]["id"], "sid1");
        // Already the server's: signed as written.
        let c = s.claims("https://as", "a", "s", 1);
        let v = verify(&sign(&ring, "https://as", &c).unwrap());
        assert_eq!(serde_json::from_value::<SetClaims>(v).unwrap(), c);
    }
}
