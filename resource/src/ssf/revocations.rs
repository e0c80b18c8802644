//! What the issuer's security events revoked, as the verifier checks every token against it:
//! bounded in time and in entries, and failing closed when full.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

/// Seconds after a revocation's `event_timestamp` that a token's `iat` is still covered by a
/// subject or client revocation: mandate's replicas (and its CLI) stamp with their own clocks.
pub const CLOCK_SKEW_SECS: u64 = 5;

use crate::principal::Principal;

/// One revocation, in the identifiers a token carries (docs/ssf.md, "What is sent").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Revocation {
    /// Every token whose `sid` is `id`, or whose `jti` is (a token without a session is named
    /// by its own id). `at` is the event's time, used only when the entry is evicted.
    Session { id: String, at: u64 },
    /// Every token whose `sub` is `sub` or whose `act` chain names it (an agent,
    /// `agent:<name>`, at any depth), issued at or before `at`.
    Subject { sub: String, at: u64 },
    /// Every token issued to `client_id` at or before `at`.
    Client { client_id: String, at: u64 },
}

/// Why a token is refused; the text is the `error_description` a client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Session,
    Subject,
    Client,
    /// Issued before a revocation this server had to forget (the list was full).
    Watermark,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Session => "token was revoked (its session ended at the issuer)",
            Refusal::Subject => {
                "token was revoked (its subject or agent was cut off at the issuer)"
            }
            Refusal::Client => "token was revoked (its client was cut off at the issuer)",
            Refusal::Watermark => {
                "token was issued before revocations this server no longer holds; get a new one"
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Session,
    Subject,
    Client,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The event's time, on the issuer's clock (compared with tokens' `iat`).
    at: u64,
    /// When this server heard of it, on its own clock (for the retention).
    heard: u64,
    seq: u64,
}

/// The revocations heard of, by what they name. Each lives `retention` after it was heard
/// (then every token it can name has expired, if the retention is at least their lifetime);
/// at most `capacity` live at once. When a new one finds the list full, the oldest goes and
/// the `watermark` rises to its time: every token issued at or before it is refused from then
/// on, so forgetting never lets a revoked token back in.
#[derive(Debug)]
pub(crate) struct RevocationList {
    retention: u64,
    capacity: usize,
    sessions: HashMap<String, Entry>,
    subjects: HashMap<String, Entry>,
    clients: HashMap<String, Entry>,
    /// Oldest heard first; pairs whose `seq` no longer matches their entry are skipped.
    order: VecDeque<(Kind, String, u64)>,
    seq: u64,
    watermark: Option<u64>,
}

impl RevocationList {
    pub(crate) fn new(retention: Duration, capacity: usize) -> Self {
        Self {
            retention: retention.as_secs(),
            capacity: capacity.max(1),
            sessions: HashMap::new(),
            subjects: HashMap::new(),
            clients: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            watermark: None,
        }
    }

    fn map(&mut self, kind: Kind) -> &mut HashMap<String, Entry> {
        match kind {
            Kind::Session => &mut self.sessions,
            Kind::Subject => &mut self.subjects,
            Kind::Client => &mut self.clients,
        }
    }

    /// The capacity and the retention in seconds.
    pub(crate) fn bounds(&self) -> (usize, u64) {
        (self.capacity, self.retention)
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions.len() + self.subjects.len() + self.clients.len()
    }

    #[cfg(test)]
    pub(crate) fn watermark(&self) -> Option<u64> {
        self.watermark
    }

    /// Remembers `r`, heard at `now`. Naming something already remembered keeps the later
    /// time and restarts its retention.
    pub(crate) fn add(&mut self, r: &Revocation, now: u64) {
        self.expire(now);
        let (kind, key, at) = match r {
            Revocation::Session { id, at } => (Kind::Session, id, *at),
            Revocation::Subject { sub, at } => (Kind::Subject, sub, *at),
            Revocation::Client { client_id, at } => (Kind::Client, client_id, *at),
        };
        self.seq += 1;
        let seq = self.seq;
        if let Some(e) = self.map(kind).get_mut(key) {
            e.at = e.at.max(at);
            e.heard = now;
            e.seq = seq;
        } else {
            while self.len() >= self.capacity && self.evict_oldest() {}
            self.map(kind).insert(
                key.clone(),
                Entry {
                    at,
                    heard: now,
                    seq,
                },
            );
        }
        self.order.push_back((kind, key.clone(), seq));
        if self.order.len() > self.capacity.saturating_mul(2).max(16) {
            let (s, u, c) = (&self.sessions, &self.subjects, &self.clients);
            self.order.retain(|(k, key, seq)| {
                let m = match k {
                    Kind::Session => s,
                    Kind::Subject => u,
                    Kind::Client => c,
                };
                m.get(key).is_some_and(|e| e.seq == *seq)
            });
        }
    }

    fn map_ref(&self, kind: Kind) -> &HashMap<String, Entry> {
        match kind {
            Kind::Session => &self.sessions,
            Kind::Subject => &self.subjects,
            Kind::Client => &self.clients,
        }
    }

    /// The oldest live entry, taken out of the queue (stale pairs are dropped on the way);
    /// with `expired_by`, only if it was heard `retention` before that time or earlier.
    fn pop_oldest(&mut self, expired_by: Option<u64>) -> Option<Entry> {
        while let Some((kind, key, seq)) = self.order.front() {
            let live = self
                .map_ref(*kind)
                .get(key)
                .copied()
                .filter(|e| e.seq == *seq);
            if let Some(e) = live
                && expired_by.is_some_and(|now| e.heard.saturating_add(self.retention) > now)
            {
                return None;
            }
            let (kind, key, _) = self.order.pop_front()?;
            if live.is_some() {
                self.map(kind).remove(&key);
                return live;
            }
        }
        None
    }

    /// Forgets what was heard `retention` ago or earlier.
    fn expire(&mut self, now: u64) {
        while self.pop_oldest(Some(now)).is_some() {}
    }

    /// Forgets the oldest entry to make room, and refuses from now on every token it could
    /// have named (fail closed).
    /// `false` when there was nothing to forget.
    fn evict_oldest(&mut self) -> bool {
        let evicted = self.pop_oldest(None);
        if let Some(e) = &evicted {
            if self.watermark.is_none_or(|w| w < e.at) {
                tracing::warn!(
                    issued_at_or_before = e.at,
                    capacity = self.capacity,
                    "revocation list full: forgetting the oldest revocation and refusing every \
                     token issued at or before it (raise revocation_capacity)"
                );
            }
            self.watermark = Some(self.watermark.map_or(e.at, |w| w.max(e.at)));
        }
        evicted.is_some()
    }

    /// Whether a remembered revocation names the token of `p`, as of `now`. A token without
    /// `iat` counts as issued at the dawn of time (mandate's tokens always carry one).
    pub(crate) fn refuses(&mut self, p: &Principal, now: u64) -> Option<Refusal> {
        self.expire(now);
        if self.watermark.is_none() && self.len() == 0 {
            return None;
        }
        let iat = p.issued_at_secs().unwrap_or(0);
        if self.watermark.is_some_and(|w| iat <= w) {
            return Some(Refusal::Watermark);
        }
        let named = |id: Option<&str>| id.is_some_and(|id| self.sessions.contains_key(id));
        if named(p.session_id()) || named(p.token_id()) {
            return Some(Refusal::Session);
        }
        // Replicas (and the CLI) stamp with their own clocks: a token issued just before the
        // revocation by a replica whose clock runs ahead still counts.
        let cut = |m: &HashMap<String, Entry>, id: &str| {
            m.get(id)
                .is_some_and(|e| iat <= e.at.saturating_add(CLOCK_SKEW_SECS))
        };
        if cut(&self.subjects, p.subject())
            || p.actors().iter().any(|a| cut(&self.subjects, a.subject()))
        {
            return Some(Refusal::Subject);
        }
        if p.client_id().is_some_and(|c| cut(&self.clients, c)) {
            return Some(Refusal::Client);
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::sync::Arc;

    const T: u64 = 1_800_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn token(claims: Value) -> Principal {
        let Value::Object(mut m) = claims else {
            unreachable!()
        };
        m.entry("exp").or_insert(json!(T + 600));
        Principal::from_claims(m, Arc::default()).unwrap()
    }

    fn session(id: &str, at: u64) -> Revocation {
        Revocation::Session { id: id.into(), at }
    }

    #[test]
    fn caep_session_revoked_names_tokens_by_sid_or_by_their_own_jti_whenever_issued() {
        let mut l = RevocationList::new(HOUR, 10);
        l.add(&session("sid-1", T), T);
        l.add(&session("jti-9", T), T);
        let same_session = token(json!({"sub": "alice", "sid": "sid-1", "jti": "a", "iat": T}));
        assert_eq!(l.refuses(&same_session, T), Some(Refusal::Session));
        // A session's tokens are never issued after it ended: no `iat` bound needed.
        let later = token(json!({"sub": "alice", "sid": "sid-1", "iat": T + 100}));
        assert_eq!(l.refuses(&later, T), Some(Refusal::Session));
        let sessionless = token(json!({"sub": "svc", "jti": "jti-9", "iat": T}));
        assert_eq!(l.refuses(&sessionless, T), Some(Refusal::Session));
        // Another session of the same human is left alone.
        let other = token(json!({"sub": "alice", "sid": "sid-2", "jti": "b", "iat": T}));
        assert_eq!(l.refuses(&other, T), None);
    }

    #[test]
    fn rfc9493_iss_sub_cuts_the_subject_and_every_chain_naming_the_agent_issued_until_then() {
        let mut l = RevocationList::new(HOUR, 10);
        l.add(
            &Revocation::Subject {
                sub: "agent:planner".into(),
                at: T,
            },
            T,
        );
        l.add(
            &Revocation::Subject {
                sub: "bob".into(),
                at: T,
            },
            T,
        );
        // alice → planner → payments-bot: the planner is nested inside the current actor.
        let chain = json!({"sub": "agent:payments-bot", "act": {"sub": "agent:planner"}});
        let via_planner = token(json!({"sub": "alice", "act": chain, "iat": T - 5}));
        assert_eq!(l.refuses(&via_planner, T), Some(Refusal::Subject));
        let planner_itself =
            token(json!({"sub": "alice", "act": {"sub": "agent:planner"}, "iat": T}));
        assert_eq!(l.refuses(&planner_itself, T), Some(Refusal::Subject));
        assert_eq!(
            l.refuses(&token(json!({"sub": "bob", "iat": T})), T),
            Some(Refusal::Subject)
        );
        // Issued within CLOCK_SKEW_SECS of the event, by a replica whose clock runs ahead:
        // still cut. Issued after that (the agent re-enabled, the user re-created): good.
        let skewed = token(json!({"sub": "alice", "act": chain, "iat": T + CLOCK_SKEW_SECS}));
        assert_eq!(l.refuses(&skewed, T + 1), Some(Refusal::Subject));
        let fresh = token(json!({"sub": "alice", "act": chain, "iat": T + CLOCK_SKEW_SECS + 1}));
        assert_eq!(l.refuses(&fresh, T + 1), None);
        // alice alone, or with another agent, was not cut off.
        let alice = token(json!({"sub": "alice", "iat": T - 5}));
        assert_eq!(l.refuses(&alice, T), None);
        let other = token(json!({"sub": "alice", "act": {"sub": "agent:other"}, "iat": T}));
        assert_eq!(l.refuses(&other, T), None);
        // No `iat`: as old as can be.
        assert_eq!(
            l.refuses(&token(json!({"sub": "bob"})), T),
            Some(Refusal::Subject)
        );
    }

    #[test]
    fn ssf_application_cuts_every_token_of_the_client_issued_until_then() {
        let mut l = RevocationList::new(HOUR, 10);
        l.add(
            &Revocation::Client {
                client_id: "c1".into(),
                at: T,
            },
            T,
        );
        let old = token(json!({"sub": "alice", "client_id": "c1", "iat": T}));
        assert_eq!(l.refuses(&old, T), Some(Refusal::Client));
        let new = token(json!({"sub": "alice", "client_id": "c1", "iat": T + CLOCK_SKEW_SECS + 1}));
        assert_eq!(l.refuses(&new, T), None);
        let other = token(json!({"sub": "alice", "client_id": "c2", "iat": T}));
        assert_eq!(l.refuses(&other, T), None);
        // The same client named again later: the later time holds.
        l.add(
            &Revocation::Client {
                client_id: "c1".into(),
                at: T + 10,
            },
            T + 10,
        );
        assert_eq!(l.refuses(&new, T + 10), Some(Refusal::Client));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn revocations_are_forgotten_after_the_retention_without_a_watermark() {
        let mut l = RevocationList::new(HOUR, 10);
        l.add(&session("s1", T), T);
        let t = token(json!({"sub": "a", "sid": "s1", "iat": T}));
        assert!(l.refuses(&t, T + 3599).is_some());
        assert_eq!(l.refuses(&t, T + 3600), None, "forgotten after an hour");
        assert_eq!(l.len(), 0);
        assert_eq!(l.watermark(), None, "expiry is no eviction");
        // Heard again: remembered again, for another hour.
        l.add(&session("s1", T), T + 4000);
        assert!(l.refuses(&t, T + 7000).is_some());
    }

    #[test]
    fn a_full_list_forgets_the_oldest_and_fails_closed_with_a_watermark() {
        let mut l = RevocationList::new(HOUR, 3);
        for i in 0..3u64 {
            l.add(&session(&format!("s{i}"), T + i), T + i);
        }
        assert_eq!(l.watermark(), None);
        // The fourth evicts s0 (event time T): every token issued at or before T is refused.
        l.add(&session("s3", T + 3), T + 3);
        assert_eq!(l.len(), 3);
        assert_eq!(l.watermark(), Some(T));
        let s0_token = token(json!({"sub": "a", "sid": "s0", "iat": T}));
        assert_eq!(l.refuses(&s0_token, T + 3), Some(Refusal::Watermark));
        let unrelated_old = token(json!({"sub": "z", "sid": "zz", "iat": T - 100}));
        assert_eq!(l.refuses(&unrelated_old, T + 3), Some(Refusal::Watermark));
        let unrelated_new = token(json!({"sub": "z", "sid": "zz", "iat": T + 1}));
        assert_eq!(l.refuses(&unrelated_new, T + 3), None);
        // The watermark only rises.
        for i in 4..100u64 {
            l.add(&session(&format!("s{i}"), T + i), T + i);
            assert!(l.len() <= 3);
        }
        assert_eq!(l.watermark(), Some(T + 96));
        // Re-adding one key many times keeps the queue bounded.
        for i in 0..1000 {
            l.add(&session("s99", T + 99), T + 99 + i / 1000);
        }
        assert!(l.order.len() <= 16, "{}", l.order.len());
        assert_eq!(l.len(), 3);
        // Capacity 0 is taken as 1.
        let mut one = RevocationList::new(HOUR, 0);
        one.add(&session("a", T), T);
        one.add(&session("b", T + 1), T + 1);
        assert_eq!((one.len(), one.watermark()), (1, Some(T)));
    }

    /// The fail-closed property, over many random histories: whatever the capacity and the
    /// order events arrive in, a token a revocation named (issued no later than the event) is
    /// refused for as long as the revocation is within its retention — by its entry, or by the
    /// watermark its eviction raised. Nothing is forgotten silently.
    #[test]
    fn no_revoked_token_comes_back_while_the_list_is_full() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for _ in 0..300 {
            let capacity = 1 + rand(6) as usize;
            let mut l = RevocationList::new(HOUR, capacity);
            let mut named: Vec<(Principal, u64)> = Vec::new();
            for step in 0..40u64 {
                let now = T + step;
                // Event times wander: SETs from the CLI carry another clock.
                let at = T - 30 + rand(60);
                let id = format!("x{}", rand(12));
                let (r, t) = match rand(3) {
                    0 => (
                        session(&id, at),
                        token(json!({"sub": "u", "sid": id, "iat": at - rand(5)})),
                    ),
                    1 => (
                        Revocation::Subject {
                            sub: id.clone(),
                            at,
                        },
                        token(json!({"sub": "u", "act": {"sub": id}, "iat": at - rand(5)})),
                    ),
                    _ => (
                        Revocation::Client {
                            client_id: id.clone(),
                            at,
                        },
                        token(json!({"sub": "u", "client_id": id, "iat": at - rand(5)})),
                    ),
                };
                l.add(&r, now);
                named.push((t, now));
                assert!(l.len() <= capacity);
                for (t, heard) in &named {
                    if heard + 3600 > now {
                        assert!(l.refuses(t, now).is_some(), "{t:?} came back");
                    }
                }
            }
        }
    }
}
