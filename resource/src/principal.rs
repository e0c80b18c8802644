//! Who a verified token speaks for: the human, the agents acting for them, and what they may do.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::error::{AuthError, AuthRejection, Challenge};

/// Longest `act` chain read; deeper nesting is refused as malformed.
const MAX_CHAIN: usize = 64;

/// One agent in the delegation chain (one level of the RFC 8693 §4.1 `act` claim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    subject: String,
}

impl Actor {
    /// The actor's `sub` as the token carries it, e.g. `agent:payments-bot`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The agent's name: the subject without mandate's `agent:` prefix (`payments-bot`).
    pub fn name(&self) -> &str {
        self.subject.strip_prefix("agent:").unwrap_or(&self.subject)
    }
}

/// The verified identity behind a request, put in the request extensions by
/// [`crate::BearerAuthLayer`] and taken by handlers as an axum extractor.
///
/// `Display` shows the delegation chain, human first: `alice → planner → payments-bot`.
#[derive(Clone)]
pub struct Principal {
    subject: String,
    actors: Vec<Actor>,
    scopes: Vec<String>,
    audience: Vec<String>,
    client_id: Option<String>,
    session_id: Option<String>,
    attestation: Option<String>,
    expires_at: u64,
    token_id: Option<String>,
    claims: Map<String, Value>,
    challenge: Arc<Challenge>,
}

impl Principal {
    /// Reads the claims of a verified token (JWT claims or an active introspection answer).
    pub(crate) fn from_claims(
        claims: Map<String, Value>,
        challenge: Arc<Challenge>,
    ) -> Result<Self, AuthError> {
        let bad = |what: &str| AuthError::InvalidToken(format!("token claim {what}"));
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(bad("`sub` is missing or not a string")),
        };
        let scopes = match claims.get("scope") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(_) => return Err(bad("`scope` is not a string")),
        };
        let audience = audience_of(&claims).ok_or_else(|| bad("`aud` is malformed"))?;
        let expires_at = numeric_date(claims.get("exp"))
            .ok_or_else(|| bad("`exp` is missing or not a number"))?;
        let opt_string = |name: &str| -> Result<Option<String>, AuthError> {
            match claims.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(&format!("`{name}` is not a string"))),
            }
        };
        let client_id = opt_string("client_id")?;
        let session_id = opt_string("sid")?;
        let token_id = opt_string("jti")?;
        let actors = match claims.get("act") {
            None | Some(Value::Null) => Vec::new(),
            Some(act) => actor_chain(act).ok_or_else(|| bad("`act` is malformed"))?,
        };
        // mandate's `att`: how the current actor proved itself; it speaks of the actor only.
        let attestation = opt_string("att")?.filter(|_| !actors.is_empty());
        Ok(Self {
            subject,
            actors,
            scopes,
            audience,
            client_id,
            session_id,
            attestation,
            expires_at,
            token_id,
            claims,
            challenge,
        })
    }

    /// The human the token speaks for (`sub`), e.g. `alice`. For a client's own token
    /// (client credentials) it is the client.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The agents acting for the subject, in delegation order: the first agent the human
    /// delegated to first, the agent presenting the token last. Empty for a token used by the
    /// human's own client.
    pub fn actors(&self) -> &[Actor] {
        &self.actors
    }

    /// The agent presenting the token: the current actor (the outermost `act`), if any.
    pub fn agent(&self) -> Option<&Actor> {
        self.actors.last()
    }

    /// How the current actor proved what it is at mandate (its `att` claim: `"software"` or
    /// `"tpm"`), when the token says; `None` for a token without an actor.
    pub fn attestation(&self) -> Option<&str> {
        self.attestation.as_deref()
    }

    /// The delegation session (`sid`): revoking it at mandate cuts this token and everything
    /// derived from it.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The scopes granted (`scope`, split on spaces).
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Checks that every scope in `required` was granted; the error answers 403
    /// `insufficient_scope` (RFC 6750 §3.1) naming them all. For checks inside a handler:
    /// `principal.require_scopes(["orders:write"])?`.
    pub fn require_scopes<I, T>(&self, required: I) -> Result<(), AuthRejection>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let required: Vec<String> = required
            .into_iter()
            .map(|s| s.as_ref().to_string())
            .collect();
        if required.iter().all(|s| self.has_scope(s)) {
            Ok(())
        } else {
            Err(AuthRejection::new(
                AuthError::InsufficientScope { required },
                self.challenge.clone(),
            )
            .dpop(self.dpop_jkt().is_some()))
        }
    }

    /// The audiences the token is for (`aud`); it contains the verifier's audience.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// The OAuth client the token was issued to (`client_id`).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// When the token expires (`exp`).
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires_at)
    }

    /// The token's id (`jti`).
    pub fn token_id(&self) -> Option<&str> {
        self.token_id.as_deref()
    }

    /// The RFC 7638 thumbprint of the key a DPoP-bound token is bound to (`cnf.jkt`, RFC 9449
    /// §6); `None` for a bearer token.
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.claims.get("cnf")?.get("jkt")?.as_str()
    }

    /// Where that key lives, as mandate says: `tpm` when the acting agent's TPM was shown to
    /// hold it, else `software`.
    pub fn dpop_key(&self) -> Option<&str> {
        self.claims.get("dpop_key")?.as_str()
    }

    /// Every claim as the token (or the introspection answer) carried it.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    pub(crate) fn expires_at_secs(&self) -> u64 {
        self.expires_at
    }

    /// When the token was issued (`iat`), if it says.
    pub(crate) fn issued_at_secs(&self) -> Option<u64> {
        numeric_date(self.claims.get("iat"))
    }
}

impl fmt::Display for Principal {
    /// `alice → planner → payments-bot`: the human, then each agent in delegation order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.subject)?;
        for a in &self.actors {
            write!(f, " → {}", a.name())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.subject)
            .field("actors", &self.actors)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("client_id", &self.client_id)
            .field("session_id", &self.session_id)
            .field("expires_at", &self.expires_at)
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

/// `aud`: a string or an array of strings (RFC 7519 §4.1.3). Absent: none.
pub(crate) fn audience_of(claims: &Map<String, Value>) -> Option<Vec<String>> {
    match claims.get("aud") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(_) => None,
    }
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, possibly fractional; negative or
/// absurd values are refused.
pub(crate) fn numeric_date(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    if f.is_finite() && (0.0..1e15).contains(&f) {
        Some(f as u64)
    } else {
        None
    }
}

/// The `act` claim (current actor outermost, RFC 8693 §4.1) as a list in delegation order.
fn actor_chain(act: &Value) -> Option<Vec<Actor>> {
    let mut out = Vec::new();
    let mut cur = Some(act);
    while let Some(v) = cur {
        if out.len() >= MAX_CHAIN {
            return None;
        }
        let obj = v.as_object()?;
        let subject = obj.get("sub")?.as_str()?.to_string();
        out.push(Actor { subject });
        cur = match obj.get("act") {
            None | Some(Value::Null) => None,
            Some(next) => Some(next),
        };
    }
    out.reverse();
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn principal(claims: Value) -> Result<Principal, AuthError> {
        let Value::Object(map) = claims else {
            panic!("claims must be an object")
        };
        Principal::from_claims(map, Arc::default())
    }

    #[test]
    fn rfc8693_s4_1_act_is_read_newest_outermost_into_delegation_order() {
        let p = principal(json!({
            "sub": "alice", "exp": 2_000_000_000u64, "scope": "orders:read  payments:write",
            "aud": "orders-api", "sid": "s1", "jti": "j1", "client_id": "host", "att": "software",
            "act": {"sub": "agent:payments-bot", "act": {"sub": "agent:planner"}}
        }))
        .unwrap();
        assert_eq!(p.to_string(), "alice → planner → payments-bot");
        assert_eq!(p.actors().len(), 2);
        assert_eq!(p.actors()[0].subject(), "agent:planner");
        assert_eq!(p.agent().unwrap().name(), "payments-bot");
        assert_eq!(p.attestation(), Some("software"));
        assert_eq!(p.scopes(), ["orders:read", "payments:write"]);
        assert_eq!(p.audience(), ["orders-api"]);
        assert_eq!(p.session_id(), Some("s1"));
        assert_eq!(p.token_id(), Some("j1"));
        assert_eq!(p.client_id(), Some("host"));
        assert_eq!(
            p.expires_at(),
            UNIX_EPOCH + Duration::from_secs(2_000_000_000)
        );
        assert!(p.require_scopes(["orders:read"]).is_ok());
        let e = p
            .require_scopes(["orders:read", "orders:write"])
            .unwrap_err();
        assert_eq!(
            e.error(),
            &AuthError::InsufficientScope {
                required: vec!["orders:read".into(), "orders:write".into()]
            }
        );
    }

    #[test]
    fn a_token_without_act_is_the_human_alone() {
        // An `att` without an actor speaks of nobody.
        let p =
            principal(json!({"sub": "alice", "exp": 1, "aud": ["a", "b"], "att": "tpm"})).unwrap();
        assert_eq!(p.to_string(), "alice");
        assert!(p.agent().is_none());
        assert!(p.attestation().is_none());
        assert!(p.scopes().is_empty());
    }

    #[test]
    fn malformed_claims_are_refused_not_guessed() {
        for claims in [
            json!({"exp": 1}),
            json!({"sub": "alice"}),
            json!({"sub": "alice", "exp": -5}),
            json!({"sub": "alice", "exp": 1, "aud": 3}),
            json!({"sub": "alice", "exp": 1, "act": {"att": "tpm"}}),
            json!({"sub": "alice", "exp": 1, "act": {"sub": "agent:a"}, "att": 1}),
            json!({"sub": "alice", "exp": 1, "act": "agent:x"}),
            json!({"sub": "alice", "exp": 1, "scope": ["a"]}),
        ] {
            assert!(
                matches!(principal(claims.clone()), Err(AuthError::InvalidToken(_))),
                "{claims}"
            );
        }
        let mut deep = json!({"sub": "agent:x"});
        for _ in 0..MAX_CHAIN {
            deep = json!({"sub": "agent:x", "act": deep});
        }
        assert!(principal(json!({"sub": "alice", "exp": 1, "act": deep})).is_err());
    }
}
