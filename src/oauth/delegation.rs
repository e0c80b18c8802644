//! The narrowing rules of delegation (RFC 8693 token exchange, SPEC "Delegation") as one pure
//! function: a delegated token never carries more scope or audience, lives no longer, and sits
//! no deeper than allowed, whatever the request asks.

use super::act::{Actor, MayAct};

use super::error::{ErrorCode, OAuthError};
use super::scope::ScopeSet;

/// What the subject token allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    pub scope: ScopeSet,
    pub aud: Vec<String>,
    pub exp: i64,
    /// The RFC 8693 `act` claim of the subject token (None for a human's own token).
    pub act: Option<Actor>,
    /// RFC 8693 §4.4 `may_act` of the subject token.
    pub may_act: Option<MayAct>,
}

impl Parent {
    /// How many agents already act in the chain (0 for a human's own token).
    pub fn depth(&self) -> u32 {
        self.act.as_ref().map_or(0, Actor::depth)
    }
}

/// What the request asks for.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    pub scope: Option<ScopeSet>,
    pub targets: Vec<String>,
}

/// Server-side limits on every delegation.
#[derive(Debug, Clone)]
pub struct Limits<'a> {
    pub now: i64,
    pub ttl: i64,
    pub max_depth: u32,
    /// The requesting client's `scopes`, when it declares any.
    pub client_scopes: Option<&'a ScopeSet>,
    /// Every resource server's audience.
    pub known_audiences: &'a [String],
    /// The requesting client's `audiences`, when it declares any: the same limit
    /// `client_credentials` applies (SPEC "Invariants": every limit holds on every grant path).
    pub client_audiences: Option<&'a [String]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    pub scope: ScopeSet,
    pub aud: Vec<String>,
    pub exp: i64,
    pub act: Actor,
    pub depth: u32,
}

/// Applies the delegation rules; `actor` is the acting agent's subject (`agent:<name>`).
pub fn narrow(
    parent: &Parent,
    actor: &str,
    ask: &Ask,
    limits: &Limits<'_>,
) -> Result<Child, OAuthError> {
    let depth = parent.depth() + 1;
    if depth > limits.max_depth {
        return Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            format!(
                "delegation depth {depth} would exceed max_delegation_depth {}",
                limits.max_depth
            ),
        ));
    }
    if let Some(allowed) = parent.may_act.as_ref().map(|m| m.sub.as_str()) {
        if allowed != actor {
            return Err(OAuthError::new(
                ErrorCode::InvalidGrant,
                format!(
                    "the subject token may only be used by `{allowed}` (may_act, RFC 8693 §4.4)"
                ),
            ));
        }
    }
    let scope = ask.scope.clone().unwrap_or_else(|| parent.scope.clone());
    if !scope.is_subset(&parent.scope) {
        return Err(OAuthError::invalid_scope(format!(
            "scopes only narrow: the subject token does not carry {}",
            scope.excess(&parent.scope).join(" ")
        )));
    }
    if let Some(ceiling) = limits.client_scopes {
        if !scope.is_subset(ceiling) {
            return Err(OAuthError::invalid_scope(format!(
                "scope not allowed for this client: {}",
                scope.excess(ceiling).join(" ")
            )));
        }
    }
    let client_may = |a: &str| {
        limits
            .client_audiences
            .is_none_or(|c| c.iter().any(|x| x == a))
    };
    let aud = if ask.targets.is_empty() {
        // Nothing named: the parent's audiences this client may reach.
        let aud: Vec<String> = parent
            .aud
            .iter()
            .filter(|a| client_may(a))
            .cloned()
            .collect();
        if aud.is_empty() {
            return Err(OAuthError::invalid_target(
                "this client may get tokens for none of the subject token's audiences (its `audiences`)",
            ));
        }
        aud
    } else {
        for t in &ask.targets {
            if !limits.known_audiences.contains(t) {
                return Err(OAuthError::invalid_target(format!(
                    "`{t}` is not a known resource server"
                )));
            }
            if !parent.aud.contains(t) {
                return Err(OAuthError::invalid_target(format!(
                    "audiences only narrow: the subject token is not for `{t}`"
                )));
            }
            if !client_may(t) {
                return Err(OAuthError::invalid_target(format!(
                    "`{t}` is not a resource server this client may get tokens for (its `audiences`)"
                )));
            }
        }
        ask.targets.clone()
    };
    let exp = (limits.now + limits.ttl).min(parent.exp);
    let act = Actor::nest(actor, parent.act.as_ref());
    Ok(Child {
        scope,
        aud,
        exp,
        act,
        depth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const SCOPES: [&str; 5] = ["a", "b", "c", "d", "e"];
    const AUDS: [&str; 3] = ["rs1", "rs2", "rs3"];

    fn known() -> Vec<String> {
        AUDS.iter().map(|s| s.to_string()).collect()
    }

    fn human(now: i64) -> Parent {
        Parent {
            scope: ScopeSet::from_list(["a", "b", "c"]),
            aud: vec!["rs1".into(), "rs2".into()],
            exp: now + 600,
            act: None,
            may_act: None,
        }
    }

    fn limits(known: &[String]) -> Limits<'_> {
        Limits {
            now: 1000,
            ttl: 300,
            max_depth: 3,
            client_scopes: None,
            known_audiences: known,
            client_audiences: None,
        }
    }

    /// Review item 7: the exchanging client's `audiences` bound the token as they bound
    /// `client_credentials` (RFC 8693 §2.2.2 `invalid_target`).
    #[test]
    fn rfc8693_s2_2_2_the_clients_audiences_limit_an_exchange() {
        let k = known();
        let only_rs2 = ["rs2".to_string()];
        let l = Limits {
            client_audiences: Some(&only_rs2),
            ..limits(&k)
        };
        let child = narrow(&human(1000), "agent:a", &Ask::default(), &l).unwrap();
        assert_eq!(
            child.aud,
            vec!["rs2"],
            "nothing named: what the client may reach"
        );
        let rs1 = Ask {
            targets: vec!["rs1".into()],
            ..Ask::default()
        };
        let e = narrow(&human(1000), "agent:a", &rs1, &l).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTarget, "{e}");
        let only_rs3 = ["rs3".to_string()];
        let none = Limits {
            client_audiences: Some(&only_rs3),
            ..limits(&k)
        };
        let e = narrow(&human(1000), "agent:a", &Ask::default(), &none).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTarget, "{e}");
    }

    #[test]
    fn rfc8693_s4_1_the_newest_actor_is_outermost() {
        let k = known();
        let first = narrow(&human(1000), "agent:a", &Ask::default(), &limits(&k)).unwrap();
        assert_eq!(first.act.chain(), vec!["agent:a"]);
        let p = Parent {
            act: Some(first.act),
            ..human(1000)
        };
        let second = narrow(&p, "agent:b", &Ask::default(), &limits(&k)).unwrap();
        assert_eq!(
            serde_json::to_value(&second.act).unwrap(),
            json!({"sub": "agent:b", "act": {"sub": "agent:a"}})
        );
        assert_eq!(second.depth, 2);
    }

    #[test]
    fn rfc8693_s4_4_may_act_restricts_the_actor() {
        let k = known();
        let p = Parent {
            may_act: Some(MayAct {
                sub: "agent:a".into(),
            }),
            ..human(1000)
        };
        assert!(narrow(&p, "agent:a", &Ask::default(), &limits(&k)).is_ok());
        let e = narrow(&p, "agent:b", &Ask::default(), &limits(&k)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidGrant);
        assert!(e.description.contains("agent:a"));
    }

    #[test]
    fn scopes_and_audiences_only_narrow_and_lifetime_is_capped_by_the_parent() {
        let k = known();
        let l = limits(&k);
        let wider = Ask {
            scope: Some(ScopeSet::from_list(["a", "d"])),
            ..Ask::default()
        };
        assert_eq!(
            narrow(&human(1000), "agent:a", &wider, &l)
                .unwrap_err()
                .code,
            ErrorCode::InvalidScope
        );
        let other_aud = Ask {
            targets: vec!["rs3".into()],
            ..Ask::default()
        };
        assert_eq!(
            narrow(&human(1000), "agent:a", &other_aud, &l)
                .unwrap_err()
                .code,
            ErrorCode::InvalidTarget
        );
        let unknown = Ask {
            targets: vec!["nope".into()],
            ..Ask::default()
        };
        assert_eq!(
            narrow(&human(1000), "agent:a", &unknown, &l)
                .unwrap_err()
                .code,
            ErrorCode::InvalidTarget
        );
        let short = Parent {
            exp: 1010,
            ..human(1000)
        };
        assert_eq!(
            narrow(&short, "agent:a", &Ask::default(), &l).unwrap().exp,
            1010
        );
    }

    #[test]
    fn depth_is_bounded() {
        let k = known();
        let deep = Parent {
            act: Some(
                serde_json::from_value(
                    json!({"sub": "agent:c", "act": {"sub": "agent:b", "act": {"sub": "agent:a"}}}),
                )
                .unwrap(),
            ),
            ..human(1000)
        };
        let e = narrow(&deep, "agent:d", &Ask::default(), &limits(&k)).unwrap_err();
        assert!(e.description.contains("max_delegation_depth 3"), "{e}");
    }

    fn ask_strategy() -> impl Strategy<Value = (Option<Vec<usize>>, Vec<usize>, i64)> {
        (
            proptest::option::of(proptest::collection::vec(0..SCOPES.len(), 1..4)),
            proptest::collection::vec(0..AUDS.len(), 0..3),
            0i64..400,
        )
    }

    proptest! {
        /// No sequence of exchanges, in any order and depth, yields a token wider in scope or
        /// audience, or longer-lived, than its parent, or deeper than allowed.
        #[test]
        fn no_exchange_sequence_widens_anything(steps in proptest::collection::vec(ask_strategy(), 1..8)) {
            let k = known();
            let mut now = 1000;
            let mut parent = human(now);
            for (i, (scopes, auds, wait)) in steps.into_iter().enumerate() {
                now += wait;
                let l = Limits { now, ..limits(&k) };
                let ask = Ask {
                    scope: scopes.map(|v| ScopeSet::from_list(v.into_iter().map(|j| SCOPES[j]))),
                    targets: auds.into_iter().map(|j| AUDS[j].to_string()).collect(),
                };
                match narrow(&parent, &format!("agent:{i}"), &ask, &l) {
                    Ok(child) => {
                        prop_assert!(child.scope.is_subset(&parent.scope));
                        prop_assert!(child.aud.iter().all(|a| parent.aud.contains(a)));
                        prop_assert!(child.exp <= parent.exp);
                        prop_assert!(child.depth <= l.max_depth);
                        parent = Parent { scope: child.scope, aud: child.aud, exp: child.exp, act: Some(child.act), may_act: None };
                    }
                    Err(e) => prop_assert!(matches!(e.code, ErrorCode::InvalidScope | ErrorCode::InvalidTarget | ErrorCode::InvalidGrant)),
                }
            }
        }
    }
}
