//! Sign-in and zero-touch enrollment throttling. Each counts *attempts*, atomically, before any
//! password or crypto is checked: of 60 concurrent guesses at one user with a limit of 5, exactly
//! 5 are checked (counting failures after the check let 21 through). A success forgets the
//! name's count and gives its attempt back to the address, so people signing in from one
//! address are not locked out by each other's successes.
//!
//! Sign-ins and enrollments count in separate [`Throttle`]s ([`Throttles`]): five failed
//! sign-ins as the username `enroll:build-bot` no longer lock that agent's enrollment.
//! Kept per process (each replica counts its own). Bounded: a key longer than [`MAX_KEY`] bytes
//! is kept as its SHA-256, and at most [`MAX_KEYS`] keys are kept; when that many are live at
//! once, attempts under new keys are refused until some expire (fail closed).

use std::collections::HashMap;
use std::sync::Mutex;

/// Attempts allowed per name (username, agent name) within [`WINDOW`].
pub const PER_USER: u32 = 5;
/// Attempts allowed per client address within [`WINDOW`].
pub const PER_ADDRESS: u32 = 20;
/// Seconds.
pub const WINDOW: i64 = 15 * 60;
/// Keys kept at once.
pub const MAX_KEYS: usize = 100_000;
/// Longest key kept as it is, in bytes.
pub const MAX_KEY: usize = 128;

/// One throttle per kind of attempt.
#[derive(Default)]
pub struct Throttles {
    pub login: Throttle,
    pub enroll: Throttle,
    /// Not a lockout: refused attestations of one enrolled agent are audited (and signalled)
    /// up to [`PER_USER`] within [`WINDOW`]; past that they are still checked and refused, and
    /// only logged, so a flood under an agent's name cannot grow the audit log (which is never
    /// pruned) or the outbox, and cannot lock the agent out either.
    pub attest_audit: Throttle,
}

#[derive(Default)]
pub struct Throttle {
    attempts: Mutex<HashMap<String, (u32, i64)>>,
}

fn key(prefix: &str, name: &str) -> String {
    if name.len() <= MAX_KEY {
        format!("{prefix}:{name}")
    } else {
        format!(
            "{prefix}#{}",
            hex::encode(crate::crypto::sha256(name.as_bytes()))
        )
    }
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, i64)>> {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an attempt for `name` from `addr`, or refuses it with the seconds until one is
    /// allowed. Counting and checking are one step under one lock.
    pub fn attempt(&self, name: &str, addr: Option<&str>, now: i64) -> Result<(), i64> {
        let mut map = self.lock();
        let keys: Vec<(String, u32)> = std::iter::once((key("u", name), PER_USER))
            .chain(addr.map(|a| (key("a", a), PER_ADDRESS)))
            .collect();
        let mut wait = None;
        for (k, limit) in &keys {
            if let Some((n, start)) = map.get(k) {
                if now - start < WINDOW && *n >= *limit {
                    wait = wait.max(Some(start + WINDOW - now));
                }
            }
        }
        if let Some(w) = wait {
            return Err(w.max(1));
        }
        let new_keys = keys.iter().filter(|(k, _)| !map.contains_key(k)).count();
        if map.len() + new_keys > MAX_KEYS {
            map.retain(|_, (_, start)| now - *start < WINDOW);
            if map.len() + new_keys > MAX_KEYS {
                tracing::warn!("throttle is full: refusing attempts under new names");
                return Err(WINDOW);
            }
        }
        for (k, _) in keys {
            let e = map.entry(k).or_insert((0, now));
            if now - e.1 >= WINDOW {
                *e = (0, now);
            }
            e.0 += 1;
        }
        Ok(())
    }

    /// The attempt succeeded: forget `name`'s count and give the attempt back to `addr`.
    pub fn succeeded(&self, name: &str, addr: Option<&str>) {
        let mut map = self.lock();
        map.remove(&key("u", name));
        if let Some(a) = addr {
            if let Some(e) = map.get_mut(&key("a", a)) {
                e.0 = e.0.saturating_sub(1);
            }
        }
    }

    /// The attempt was never checked (the server was too busy): give it back to both.
    pub fn refund(&self, name: &str, addr: Option<&str>) {
        let mut map = self.lock();
        for k in std::iter::once(key("u", name)).chain(addr.map(|a| key("a", a))) {
            if let Some(e) = map.get_mut(&k) {
                e.0 = e.0.saturating_sub(1);
            }
        }
    }

    #[cfg(test)]
    fn attempts_of(&self, name: &str, now: i64) -> u32 {
        self.lock()
            .get(&key("u", name))
            .filter(|(_, start)| now - start < WINDOW)
            .map_or(0, |(n, _)| *n)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_locked_out_after_too_many_attempts_until_the_window_passes() {
        let t = Throttle::default();
        for _ in 0..PER_USER {
            assert_eq!(t.attempt("alice", Some("1.2.3.4"), 100), Ok(()));
        }
        assert_eq!(
            t.attempt("alice", Some("5.6.7.8"), 101),
            Err(WINDOW - 1),
            "per user, from any address"
        );
        assert_eq!(t.attempt("bob", Some("5.6.7.8"), 101), Ok(()));
        assert_eq!(t.attempt("alice", None, 100 + WINDOW), Ok(()));
        t.succeeded("alice", None);
        assert_eq!(t.attempts_of("alice", 100 + WINDOW), 0);
    }

    #[test]
    fn an_address_is_locked_out_across_usernames_and_successes_give_attempts_back() {
        let t = Throttle::default();
        for i in 0..PER_ADDRESS {
            assert!(t.attempt(&format!("user{i}"), Some("9.9.9.9"), 0).is_ok());
        }
        assert!(t.attempt("someone-else", Some("9.9.9.9"), 1).is_err());
        assert!(t.attempt("someone-else", Some("8.8.8.8"), 1).is_ok());
        t.succeeded("user0", Some("9.9.9.9"));
        assert!(t.attempt("someone-else", Some("9.9.9.9"), 1).is_ok());
    }

    /// Review item 3: attempts are counted before the check, in one step, so concurrent
    /// guesses cannot all pass a check made before any of them was counted.
    #[test]
    fn concurrent_attempts_at_one_user_pass_exactly_the_limit() {
        let t = std::sync::Arc::new(Throttle::default());
        let passed: u32 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..60)
                .map(|i| {
                    let t = &t;
                    s.spawn(move || {
                        u32::from(t.attempt("alice", Some(&format!("10.0.0.{i}")), 0).is_ok())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(passed, PER_USER);
    }

    #[test]
    fn keys_are_bounded_in_length_and_number() {
        let t = Throttle::default();
        let long = "x".repeat(60_000);
        assert!(t.attempt(&long, None, 0).is_ok());
        let map = t.lock();
        assert!(
            map.keys().all(|k| k.len() <= MAX_KEY + 2),
            "a long name is kept hashed"
        );
        drop(map);
        let t = Throttle::default();
        for i in 0..MAX_KEYS {
            assert!(t.attempt(&format!("n{i}"), None, 0).is_ok());
        }
        assert_eq!(
            t.attempt("one-more", None, 1),
            Err(WINDOW),
            "full: new names refused"
        );
        assert!(
            t.attempt("n0", None, 1).is_ok(),
            "known names still counted"
        );
        assert!(
            t.attempt("one-more", None, WINDOW + 1).is_ok(),
            "expired keys make room"
        );
        assert!(t.len() <= MAX_KEYS);
    }
}
