//! Signing-key rotation as a pure decision over the stored key rows.
//!
//! A key is published as `next` one full rotation interval before it signs, so that verifiers
//! that cache the JWKS already hold it; after it stops signing it stays published (`retired`)
//! until every token it signed has expired. The store runs [`plan_rotation`] inside a locked
//! transaction, so when several replicas race only the first one rotates: the others see the
//! fresh `current` key and find nothing due.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Next,
    Current,
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Current => "current",
            KeyState::Retired => "retired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "next" => Some(KeyState::Next),
            "current" => Some(KeyState::Current),
            "retired" => Some(KeyState::Retired),
            _ => None,
        }
    }
}

/// One stored signing key. `private_sealed` is the PKCS#8 document sealed under the KEK.
#[derive(Clone)]
pub struct KeyRow {
    pub kid: String,
    pub state: KeyState,
    pub private_sealed: Vec<u8>,
    /// The public JWK (JSON) as published.
    pub public_jwk: String,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    /// A retired key leaves the JWKS after this instant.
    pub publish_until: Option<i64>,
}

impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("kid", &self.kid)
            .field("state", &self.state)
            .field("activated_at", &self.activated_at)
            .field("publish_until", &self.publish_until)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationMode {
    /// Make sure a current and a next key exist; rotate nothing that is not missing.
    Ensure,
    /// Rotate if the current key has signed for at least this many seconds.
    IfOlderThan(i64),
    /// Rotate now (`mandate keys rotate`).
    Force,
}

#[derive(Debug, Clone)]
pub enum KeyChange {
    Insert(KeyRow),
    Promote {
        kid: String,
        at: i64,
    },
    Retire {
        kid: String,
        at: i64,
        publish_until: i64,
    },
    Delete {
        kid: String,
    },
}

/// Decides what to change. `fresh` supplies newly generated keys (in state `Next`) as needed;
/// `retired_ttl` is how long a retired key stays published (the longest token lifetime).
pub fn plan_rotation(
    rows: &[KeyRow],
    mode: RotationMode,
    now: i64,
    retired_ttl: i64,
    fresh: &mut dyn FnMut() -> KeyRow,
) -> (Vec<KeyChange>, bool) {
    let mut changes = Vec::new();
    for r in rows {
        if r.state == KeyState::Retired && r.publish_until.is_some_and(|t| t <= now) {
            changes.push(KeyChange::Delete { kid: r.kid.clone() });
        }
    }
    let current = rows.iter().find(|r| r.state == KeyState::Current);
    let next = rows.iter().find(|r| r.state == KeyState::Next);
    let due = match (mode, current) {
        (_, None) => true,
        (RotationMode::Ensure, Some(_)) => false,
        (RotationMode::Force, Some(_)) => true,
        (RotationMode::IfOlderThan(age), Some(c)) => {
            c.activated_at.unwrap_or(c.created_at) + age <= now
        }
    };
    if !due {
        if next.is_none() {
            changes.push(KeyChange::Insert(fresh()));
        }
        return (changes, false);
    }
    if let Some(c) = current {
        changes.push(KeyChange::Retire {
            kid: c.kid.clone(),
            at: now,
            publish_until: now + retired_ttl,
        });
    }
    match next {
        Some(n) => changes.push(KeyChange::Promote {
            kid: n.kid.clone(),
            at: now,
        }),
        None => {
            // First start: nothing was published before, so the first key signs at once.
            let first = fresh();
            changes.push(KeyChange::Promote {
                kid: first.kid.clone(),
                at: now,
            });
            changes.insert(changes.len() - 1, KeyChange::Insert(first));
        }
    }
    changes.push(KeyChange::Insert(fresh()));
    (changes, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kid: &str, state: KeyState, activated: Option<i64>, until: Option<i64>) -> KeyRow {
        KeyRow {
            kid: kid.into(),
            state,
            private_sealed: vec![],
            public_jwk: "{}".into(),
            created_at: 0,
            activated_at: activated,
            retired_at: None,
            publish_until: until,
        }
    }

    fn fresh_counter() -> impl FnMut() -> KeyRow {
        let mut n = 0;
        move || {
            n += 1;
            row(&format!("new{n}"), KeyState::Next, None, None)
        }
    }

    fn apply(rows: &mut Vec<KeyRow>, changes: Vec<KeyChange>) {
        for c in changes {
            match c {
                KeyChange::Insert(r) => rows.push(r),
                KeyChange::Promote { kid, at } => {
                    let r = rows.iter_mut().find(|r| r.kid == kid).unwrap();
                    r.state = KeyState::Current;
                    r.activated_at = Some(at);
                }
                KeyChange::Retire {
                    kid,
                    at,
                    publish_until,
                } => {
                    let r = rows.iter_mut().find(|r| r.kid == kid).unwrap();
                    r.state = KeyState::Retired;
                    r.retired_at = Some(at);
                    r.publish_until = Some(publish_until);
                }
                KeyChange::Delete { kid } => rows.retain(|r| r.kid != kid),
            }
        }
    }

    #[test]
    fn first_start_creates_a_signing_key_and_publishes_the_next() {
        let mut rows = vec![];
        let (changes, rotated) =
            plan_rotation(&rows, RotationMode::Ensure, 100, 60, &mut fresh_counter());
        assert!(rotated);
        apply(&mut rows, changes);
        assert_eq!(
            rows.iter().filter(|r| r.state == KeyState::Current).count(),
            1
        );
        assert_eq!(rows.iter().filter(|r| r.state == KeyState::Next).count(), 1);
    }

    #[test]
    fn rotation_promotes_the_published_next_key_and_keeps_the_old_one_until_tokens_expire() {
        let mut rows = vec![
            row("a", KeyState::Current, Some(0), None),
            row("b", KeyState::Next, None, None),
        ];
        let (c, rotated) = plan_rotation(
            &rows,
            RotationMode::IfOlderThan(1000),
            999,
            600,
            &mut fresh_counter(),
        );
        assert!(!rotated && c.is_empty(), "not due yet");
        let (c, rotated) = plan_rotation(
            &rows,
            RotationMode::IfOlderThan(1000),
            1000,
            600,
            &mut fresh_counter(),
        );
        assert!(rotated);
        apply(&mut rows, c);
        fn state(rows: &[KeyRow], k: &str) -> Option<KeyState> {
            rows.iter().find(|r| r.kid == k).map(|r| r.state)
        }
        assert_eq!(
            state(&rows, "b"),
            Some(KeyState::Current),
            "the key published in advance signs now"
        );
        assert_eq!(state(&rows, "a"), Some(KeyState::Retired));
        assert_eq!(state(&rows, "new1"), Some(KeyState::Next));
        // Still published while its tokens may live, gone afterwards.
        let (c, _) = plan_rotation(&rows, RotationMode::Ensure, 1599, 600, &mut fresh_counter());
        assert!(c.is_empty());
        let (c, _) = plan_rotation(&rows, RotationMode::Ensure, 1600, 600, &mut fresh_counter());
        apply(&mut rows, c);
        assert_eq!(state(&rows, "a"), None);
    }

    #[test]
    fn a_second_replica_finds_nothing_due_after_the_first_rotated() {
        let mut rows = vec![
            row("a", KeyState::Current, Some(0), None),
            row("b", KeyState::Next, None, None),
        ];
        let (c, _) = plan_rotation(
            &rows,
            RotationMode::IfOlderThan(10),
            50,
            60,
            &mut fresh_counter(),
        );
        apply(&mut rows, c);
        let (c, rotated) = plan_rotation(
            &rows,
            RotationMode::IfOlderThan(10),
            50,
            60,
            &mut fresh_counter(),
        );
        assert!(!rotated && c.is_empty());
    }
}
