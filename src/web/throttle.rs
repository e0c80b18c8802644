//! Login (and zero-touch enrollment) throttling: too many failed sign-ins for one username (or
//! enrollments for one agent name), or from one address, within a window lock further attempts
//! out until the window has passed. Kept per process (each replica counts its own attempts);
//! failures are counted before the password is checked, so a flood of guesses costs no argon2
//! time once the limit is reached.

use std::collections::HashMap;
use std::sync::Mutex;

/// Failed attempts allowed per username within [`WINDOW`].
pub const PER_USER: u32 = 5;
/// Failed attempts allowed per client address within [`WINDOW`].
pub const PER_ADDRESS: u32 = 20;
/// Seconds.
pub const WINDOW: i64 = 15 * 60;
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl Throttle {
    /// Seconds until a new attempt is allowed, or `None` if it is allowed now.
    pub fn blocked(&self, user: &str, addr: Option<&str>, now: i64) -> Option<i64> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let wait = |key: String, limit: u32| {
            map.get(&key)
                .filter(|(n, start)| *n >= limit && now - start < WINDOW)
                .map(|(_, start)| start + WINDOW - now)
        };
        wait(format!("u:{user}"), PER_USER)
            .or_else(|| addr.and_then(|a| wait(format!("a:{a}"), PER_ADDRESS)))
    }

    pub fn failed(&self, user: &str, addr: Option<&str>, now: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, (_, start)| now - *start < WINDOW);
        }
        for key in std::iter::once(format!("u:{user}")).chain(addr.map(|a| format!("a:{a}"))) {
            let e = map.entry(key).or_insert((0, now));
            if now - e.1 >= WINDOW {
                *e = (0, now);
            }
            e.0 += 1;
        }
    }

    pub fn succeeded(&self, user: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&format!("u:{user}"));
    }

    #[cfg(test)]
    fn failures_of(&self, user: &str, now: i64) -> u32 {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&format!("u:{user}"))
            .filter(|(_, start)| now - start < WINDOW)
            .map_or(0, |(n, _)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_locked_out_after_too_many_failures_until_the_window_passes() {
        let t = Throttle::default();
        for _ in 0..PER_USER {
            assert_eq!(t.blocked("alice", Some("1.2.3.4"), 100), None);
            t.failed("alice", Some("1.2.3.4"), 100);
        }
        assert_eq!(
            t.blocked("alice", Some("5.6.7.8"), 101),
            Some(WINDOW - 1),
            "per user, from any address"
        );
        assert_eq!(t.blocked("bob", Some("5.6.7.8"), 101), None);
        assert_eq!(t.blocked("alice", None, 100 + WINDOW), None);
        t.succeeded("alice");
        assert_eq!(t.failures_of("alice", 100), 0);
    }

    #[test]
    fn an_address_is_locked_out_across_usernames() {
        let t = Throttle::default();
        for i in 0..PER_ADDRESS {
            t.failed(&format!("user{i}"), Some("9.9.9.9"), 0);
        }
        assert!(t.blocked("someone-else", Some("9.9.9.9"), 1).is_some());
        assert!(t.blocked("someone-else", Some("8.8.8.8"), 1).is_none());
    }
}
