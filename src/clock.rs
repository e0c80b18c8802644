//! Time, injected. Nothing else in the crate reads the system clock (a test below checks), so
//! tests can move time (token expiry, key rotation, nonce lifetimes, the time in token ids)
//! without sleeping. Monotonic `Instant`s for timeouts and rate-limited logging are not wall
//! time and stay where they are used.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch: the unit of JWT `exp`/`iat` (RFC 7519 §2, NumericDate).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> i64;

    /// Milliseconds since the Unix epoch, for the time part of ids
    /// ([`crate::crypto::time_ordered_id`]): finer than a second so ids made in the same second
    /// still sort by time. Clocks that only know seconds give the start of the second.
    fn now_ms(&self) -> i64 {
        self.now().saturating_mul(1000)
    }
}

pub type SharedClock = Arc<dyn Clock>;

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct TestClock(AtomicI64);

impl TestClock {
    pub fn new(start: i64) -> Self {
        Self(AtomicI64::new(start))
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The promise at the top of this file, kept: no other file in `src/` reads the wall clock,
    /// so a test clock moves every time the server shows (`exp`, `iat`, the time in a `jti`).
    #[test]
    fn nothing_but_this_module_reads_the_wall_clock() {
        let forbidden = [
            concat!("SystemTime", "::now"),
            concat!("Utc", "::now"),
            concat!("Local", "::now"),
            concat!("OffsetDateTime", "::now"),
            concat!("Timestamp", "::now"),
        ];
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut dirs = vec![src.clone()];
        let mut offenders = Vec::new();
        let mut files = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") || path == src.join("clock.rs") {
                    continue;
                }
                files += 1;
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    if forbidden.iter().any(|f| line.contains(f)) {
                        offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
        assert!(files > 20, "scanned {files} files: the walk missed src/");
        assert!(
            offenders.is_empty(),
            "read the time from the injected Clock instead:\n{}",
            offenders.join("\n")
        );
    }

    #[test]
    fn a_test_clock_moves_only_when_told_and_in_whole_seconds() {
        let c = TestClock::new(1_700_000_000);
        assert_eq!((c.now(), c.now_ms()), (1_700_000_000, 1_700_000_000_000));
        c.advance(90);
        assert_eq!((c.now(), c.now_ms()), (1_700_000_090, 1_700_000_090_000));
        let s = SystemClock;
        assert!(s.now_ms() / 1000 - s.now() <= 1);
    }
}
