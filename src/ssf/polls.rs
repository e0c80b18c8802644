//! RFC 8936 §2.4 long polling: a poll that does not ask to `returnImmediately` (the default)
//! and finds no SET waiting is held until one is committed for its stream, or [`HOLD`] passes,
//! so a receiver without a public endpoint hears of a revocation within [`RECHECK`] too. The
//! held request looks at its stream again every [`RECHECK`], which sees what any replica or
//! the CLI committed alike. Bounded: at most [`MAX_HELD`] polls are held at once per process
//! (past that a poll is answered at once, as §2.4 allows), and a stopping server answers every
//! held poll at once instead of waiting out the drain.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// Polls held at once, per process.
pub const MAX_HELD: usize = 32;
/// The longest a poll is held (and at most half of `server.request_timeout`).
pub const HOLD: Duration = Duration::from_secs(15);
/// How often a held poll looks at its stream again.
pub const RECHECK: Duration = Duration::from_millis(200);

pub struct Polls {
    held: AtomicUsize,
    stopping: watch::Sender<bool>,
}

impl Default for Polls {
    fn default() -> Self {
        Self {
            held: AtomicUsize::new(0),
            stopping: watch::channel(false).0,
        }
    }
}

impl Polls {
    /// The server is stopping: held polls are answered now, and none is held any more.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Leave to hold one poll, if fewer than [`MAX_HELD`] are held and the server runs.
    pub fn hold(&self) -> Option<Held<'_>> {
        if *self.stopping.borrow() {
            return None;
        }
        let taken = (self.held).fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_HELD).then_some(n + 1)
        });
        taken.is_ok().then(|| Held {
            polls: self,
            stopping: self.stopping.subscribe(),
        })
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// One held poll; gives its place back when dropped.
pub struct Held<'a> {
    polls: &'a Polls,
    stopping: watch::Receiver<bool>,
}

impl Held<'_> {
    /// Waits [`RECHECK`]; `false` when the server started stopping meanwhile.
    pub async fn pause(&mut self) -> bool {
        if *self.stopping.borrow() {
            return false;
        }
        let stopped = self.stopping.wait_for(|s| *s);
        tokio::time::timeout(RECHECK, stopped).await.is_err()
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.polls.held.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rfc8936_s2_4_at_most_max_held_polls_are_held_and_a_stop_releases_them() {
        let polls = Polls::default();
        let mut held: Vec<Held> = (0..MAX_HELD).map(|_| polls.hold().unwrap()).collect();
        assert!(polls.hold().is_none(), "one more is answered at once");
        held.pop();
        assert_eq!(
            polls.held(),
            MAX_HELD - 1,
            "a finished poll gives its place back"
        );
        let mut one = polls.hold().unwrap();
        assert!(one.pause().await, "a pause while running");
        polls.stop();
        assert!(!one.pause().await, "a stop ends the hold");
        drop(held);
        drop(one);
        assert!(polls.hold().is_none(), "a stopping server holds nothing");
        assert_eq!(polls.held(), 0);
    }
}
