//! The RFC 8693 delegation claims as types: `act` (§4.1), the chain of actors, and `may_act`
//! (§4.4), who may use a token as a subject token. Stored as JSON text and parsed into these
//! types once, when a row is read; a row that does not parse is refused, never read as "no
//! actor" or "anyone may act" (fail closed: a shortened chain would undercount the delegation
//! depth, a dropped `may_act` would let any agent use the token).

use serde::{Deserialize, Serialize};

/// Longest chain a stored claim may hold; deeper than any `max_delegation_depth` makes sense.
const MAX_CHAIN: usize = 64;

/// RFC 8693 §4.1 `act`: the current actor, the previous one nested inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

/// RFC 8693 §4.4 `may_act`: the only actor that may present this token as a subject token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MayAct {
    pub sub: String,
}

/// A stored claim that does not parse into its type.
#[derive(Debug, thiserror::Error)]
#[error("stored `{claim}` claim is malformed: {why}")]
pub struct ClaimError {
    pub claim: &'static str,
    pub why: String,
}

impl Actor {
    /// `sub` acting on top of `previous` (RFC 8693 §4.1: the newest actor is outermost).
    pub fn nest(sub: &str, previous: Option<&Actor>) -> Self {
        Self {
            sub: sub.to_string(),
            act: previous.map(|p| Box::new(p.clone())),
        }
    }

    /// The actors' subjects, the current one first.
    pub fn chain(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = Some(self);
        while let Some(a) = cur {
            out.push(a.sub.clone());
            cur = a.act.as_deref();
        }
        out
    }

    /// How many agents stand between the human and the token (1 for a first delegation).
    pub fn depth(&self) -> u32 {
        let mut n = 0;
        let mut cur = Some(self);
        while let Some(a) = cur {
            n += 1;
            cur = a.act.as_deref();
        }
        n
    }

    /// Parses stored JSON text: every actor named, the chain bounded.
    pub fn parse(text: &str) -> Result<Self, ClaimError> {
        let bad = |why: String| ClaimError { claim: "act", why };
        let a: Actor = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let chain = a.chain();
        if chain.len() > MAX_CHAIN {
            return Err(bad(format!("a chain of {} actors", chain.len())));
        }
        if chain.iter().any(String::is_empty) {
            return Err(bad("an actor without `sub`".into()));
        }
        Ok(a)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl MayAct {
    pub fn parse(text: &str) -> Result<Self, ClaimError> {
        let bad = |why: String| ClaimError {
            claim: "may_act",
            why,
        };
        let m: MayAct = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if m.sub.is_empty() {
            return Err(bad("no `sub`".into()));
        }
        Ok(m)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The actors of an optional `act` claim, the current one first; empty for a human's own token.
pub fn chain_of(act: Option<&Actor>) -> Vec<String> {
    act.map(Actor::chain).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8693_s4_1_the_chain_lists_the_current_actor_first_and_round_trips() {
        let a = Actor::nest("agent:sub", Some(&Actor::nest("agent:build-bot", None)));
        assert_eq!(a.chain(), vec!["agent:sub", "agent:build-bot"]);
        assert_eq!(a.depth(), 2);
        let text = a.to_json();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            serde_json::json!({"sub": "agent:sub", "act": {"sub": "agent:build-bot"}})
        );
        assert_eq!(Actor::parse(&text).unwrap(), a);
        assert!(chain_of(None).is_empty());
    }

    /// Review item 14: a corrupt stored claim is refused, never read as a shorter chain or as
    /// "no restriction".
    #[test]
    fn rfc8693_s4_corrupt_stored_claims_are_refused_not_defaulted() {
        for bad in [
            "",
            "null",
            "{}",
            "[]",
            "\"agent:x\"",
            r#"{"sub": 1}"#,
            r#"{"sub": ""}"#,
            r#"{"sub": "agent:a", "act": "agent:b"}"#,
            r#"{"sub": "agent:a", "act": {}}"#,
            r#"{"sub": "agent:a", "extra": true}"#,
            r#"{"sub": "agent:a", "act": {"sub": "agent:b""#,
        ] {
            assert!(Actor::parse(bad).is_err(), "act {bad:?}");
            assert!(MayAct::parse(bad).is_err(), "may_act {bad:?}");
        }
        let deep = (0..=MAX_CHAIN).fold(None, |prev: Option<Actor>, i| {
            Some(Actor::nest(&format!("agent:{i}"), prev.as_ref()))
        });
        assert!(Actor::parse(&deep.unwrap().to_json()).is_err());
        assert_eq!(
            MayAct::parse(r#"{"sub":"agent:y"}"#).unwrap().sub,
            "agent:y"
        );
    }
}
