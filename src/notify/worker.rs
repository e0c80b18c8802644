//! The delivery task: every replica runs one. It claims the due head of each stream from the
//! outbox under its own lease, sends them at once (one task per stream), and settles each:
//! delivered; retried after a backoff that doubles from `retry_initial` to `retry_max`, with
//! jitter so that replicas and receivers do not retry in step; given up once the message is
//! `give_up_after` old; dropped unsent once the request it announces expired. A channel this
//! replica does not know (another replica's config, or one changed since) counts as a failed
//! attempt, not a lost message: the message waits for a replica that knows it. A message that was not delivered is logged at `warn` and audited
//! (`notification.undelivered`), so an operator learns that a human was not told.
//!
//! A stopping worker gives its leases back; one that dies loses them when they run out
//! (`timeout` plus a minute), and its messages are sent again under the same id.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::email::MailError;
use super::{ApprovalNeeded, Notifier, email, webhook};
use crate::audit::AuditEvent;
use crate::clock::SharedClock;
use crate::config::NotificationsConfig;
use crate::jose::KeyService;
use crate::ssf;
use crate::store::outbox::{Claimed, Settle};
use crate::store::{SharedStore, WriteOp, Writer};

/// Messages claimed at once (at most one per stream).
const CLAIM: i64 = 32;
/// How often the worker looks for due messages when nothing woke it.
const POLL: Duration = Duration::from_secs(1);
/// How often settled messages are purged.
const PURGE_EVERY: i64 = 3600;

pub struct Worker {
    store: SharedStore,
    clock: SharedClock,
    writer: Writer,
    notifier: Arc<Notifier>,
    /// Signs Security Event Tokens as they are sent, with the key signing then.
    keys: Arc<KeyService>,
    /// This worker's lease: unique per process.
    lease: String,
    timeout: Duration,
    retry_initial: i64,
    retry_max: i64,
    give_up_after: i64,
    keep_settled: i64,
}

/// Why a message was not delivered this time.
enum Failure {
    Transient(String),
    Permanent(String),
}

impl Worker {
    pub fn new(
        store: SharedStore,
        clock: SharedClock,
        writer: Writer,
        notifier: Arc<Notifier>,
        keys: Arc<KeyService>,
        c: &NotificationsConfig,
    ) -> Self {
        Self {
            store,
            clock,
            writer,
            notifier,
            keys,
            lease: crate::crypto::random_id(),
            timeout: c.timeout,
            retry_initial: c.retry_initial.as_secs().max(1) as i64,
            retry_max: c.retry_max.as_secs().max(1) as i64,
            give_up_after: c.give_up_after.as_secs() as i64,
            keep_settled: c.keep_settled.as_secs() as i64,
        }
    }

    /// Delivers until `stop` resolves, then gives back what it holds.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut purged_at = i64::MIN;
        loop {
            let now = self.clock.now();
            if now.saturating_sub(purged_at) >= PURGE_EVERY {
                match self.store.purge_outbox(now - self.keep_settled).await {
                    Ok(n) if n > 0 => tracing::debug!(purged = n, "settled notifications purged"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot purge the outbox"),
                }
                // SETs nobody fetched (a poll stream never polled, a stream left paused) for
                // as long as a push is retried: bounded like everything else.
                match self
                    .store
                    .expire_held_sets(now, now - self.give_up_after)
                    .await
                {
                    Ok(n) if n > 0 => tracing::warn!(
                        expired = n,
                        "security events held unfetched past notifications.give_up_after dropped"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot expire held security events"),
                }
                purged_at = now;
            }
            // Not raced against `stop`: sends under way finish (each is bounded by
            // `notifications.timeout`) and are recorded, so a restart repeats none of them.
            let busy = self.round().await;
            // After a busy round, on at once (unless told to stop); after an idle one, wait.
            let pause = if busy { Duration::ZERO } else { POLL };
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = self.notifier.wake.notified(), if !busy => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        if let Err(e) = self.store.release_outbox(&self.lease).await {
            tracing::warn!(error = %e, "cannot release the outbox leases");
        }
    }

    /// Claims what is due and settles it; whether anything was.
    async fn round(self: &Arc<Self>) -> bool {
        let now = self.clock.now();
        let lease_secs = self.timeout.as_secs() as i64 * 3 + 60;
        let claimed = match (self.store)
            .claim_outbox(&self.lease, now, now + lease_secs, CLAIM)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                return false;
            }
        };
        if claimed.is_empty() {
            return false;
        }
        let mut sends = JoinSet::new();
        for m in claimed {
            let me = self.clone();
            sends.spawn(async move { me.settle(m).await });
        }
        while sends.join_next().await.is_some() {}
        true
    }

    async fn settle(&self, m: Claimed) {
        let now = self.clock.now();
        let how = if m.expires_at.is_some_and(|e| now >= e) {
            Settle::Expired
        } else {
            match self.send(&m, now).await {
                Ok(()) => Settle::Delivered,
                Err(Failure::Permanent(error)) => Settle::Failed { error },
                Err(Failure::Transient(error)) => {
                    let at = now + self.backoff(m.attempts);
                    if at - m.created_at > self.give_up_after {
                        Settle::Failed {
                            error: format!("gave up after {} attempts: {error}", m.attempts),
                        }
                    } else {
                        tracing::info!(stream = %m.stream, event = %m.event_id, attempts = m.attempts,
                            retry_in_s = at - now, %error, "notification not delivered; will retry");
                        Settle::Retry { at, error }
                    }
                }
            }
        };
        match self.store.settle_outbox(m.id, &self.lease, &how, now).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(stream = %m.stream, event = %m.event_id,
                    "a notification's lease ran out before it was settled; it may be sent again");
                return;
            }
            Err(e) => {
                tracing::warn!(stream = %m.stream, event = %m.event_id, error = %e,
                    "cannot record a notification's delivery; it will be sent again");
                return;
            }
        }
        match &how {
            Settle::Delivered => {
                tracing::debug!(stream = %m.stream, event = %m.event_id, attempts = m.attempts, "notification delivered")
            }
            Settle::Retry { .. } => {}
            Settle::Failed { .. } | Settle::Expired => self.undelivered(&m, &how).await,
        }
    }

    /// A human was not told: said at `warn` and in the audit log.
    async fn undelivered(&self, m: &Claimed, how: &Settle) {
        let reason = match how {
            Settle::Expired => "the request expired before it could be delivered".to_string(),
            other => other.error().unwrap_or_default().to_string(),
        };
        tracing::warn!(stream = %m.stream, event = %m.event_id, attempts = m.attempts, %reason,
            "a notification was not delivered");
        if m.stream.starts_with(ssf::STREAM) {
            return self.set_undelivered(m, &reason).await;
        }
        let facts: Option<ApprovalNeeded> = serde_json::from_str(&m.payload).ok();
        let mut ev = AuditEvent::new("notification.undelivered");
        ev.subject = facts.as_ref().map(|f| f.user.clone());
        ev.client_id = facts.as_ref().map(|f| f.client.clone());
        ev.detail = serde_json::json!({
            "event": m.kind, "id": m.event_id, "stream": m.stream, "attempts": m.attempts,
            "outcome": how.outcome(), "reason": reason,
            "request": facts.as_ref().map(|f| f.request.clone()),
        });
        if let Err(e) = self.writer.write(WriteOp::None, vec![ev]).await {
            tracing::error!(error = %e, "cannot audit an undelivered notification");
        }
    }

    /// A receiver missed a security event: audited as `ssf.undelivered` with what it was about.
    async fn set_undelivered(&self, m: &Claimed, reason: &str) {
        let claims: Option<ssf::SetClaims> = serde_json::from_str(&m.payload).ok();
        let mut ev = AuditEvent::new("ssf.undelivered");
        ev.detail = serde_json::json!({
            "id": m.event_id, "stream": m.stream, "attempts": m.attempts, "reason": reason,
            "sub_id": claims.map(|c| c.sub_id),
        });
        if let Err(e) = self.writer.write(WriteOp::None, vec![ev]).await {
            tracing::error!(error = %e, "cannot audit an undelivered security event");
        }
    }

    /// RFC 8935 push of a SET, signed now (the key that signs now is in `/jwks.json`).
    async fn push(&self, m: &Claimed, name: &str) -> Result<(), Failure> {
        if name.starts_with(crate::config::RECEIVER_STREAM_MARK) {
            return self.push_to_receiver(m, name).await;
        }
        let push = (self.notifier.ssf.get(name)).ok_or_else(|| {
            Failure::Transient(format!("SSF stream `{name}` is not configured here"))
        })?;
        let set = self.sign(m)?;
        push.post(set).await.map_err(|e| match e {
            ssf::PushError::Refused(e) => Failure::Permanent(e),
            ssf::PushError::Transient(e) => Failure::Transient(e),
        })
    }

    fn sign(&self, m: &Claimed) -> Result<String, Failure> {
        let claims: ssf::SetClaims = serde_json::from_str(&m.payload)
            .map_err(|e| Failure::Permanent(format!("unreadable SET claims: {e}")))?;
        ssf::sign(&self.keys.ring(), &self.notifier.issuer, &claims)
            .map_err(|e| Failure::Transient(format!("cannot sign the SET: {e}")))
    }

    /// A push to a stream a receiver manages: its URL and credential read now (a change
    /// applies to the next push), the URL checked again (`ssf::receiver`).
    async fn push_to_receiver(&self, m: &Claimed, id: &str) -> Result<(), Failure> {
        let push = (self.notifier.receivers.as_ref()).ok_or_else(|| {
            Failure::Transient("receiver streams are not enabled here".to_string())
        })?;
        let stream = match self.store.ssf_stream(id).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(Failure::Permanent("the stream was deleted".into())),
            Err(e) => return Err(Failure::Transient(format!("cannot read the stream: {e}"))),
        };
        // The config says who may hear: a client this replica does not mark (its mark was
        // taken away, and a replica on the old config let it make this stream) gets nothing
        // from here; a replica whose config marks it delivers, and unmarked everywhere, the
        // SET is given up after `give_up_after`, audited.
        if !self.notifier.receiver_clients.contains(&stream.client_id) {
            return Err(Failure::Transient(
                "the stream's client is not an SSF receiver in this replica's config".into(),
            ));
        }
        let url = (stream.endpoint_url.as_deref())
            .ok_or_else(|| Failure::Permanent("the stream has no endpoint_url".into()))?;
        let authorization = match &stream.authorization_header {
            None => None,
            Some(sealed) => {
                let plain = (self
                    .keys
                    .open_secret(&ssf::streams::seal_context(id), sealed))
                .and_then(|p| String::from_utf8(p).ok())
                .ok_or_else(|| {
                    Failure::Permanent("the stream's credential cannot be opened".into())
                })?;
                Some(plain)
            }
        };
        let set = self.sign(m)?;
        push.post(url, authorization, set)
            .await
            .map_err(|e| match e {
                ssf::PushError::Refused(e) => Failure::Permanent(e),
                ssf::PushError::Transient(e) => Failure::Transient(e),
            })
    }

    fn backoff(&self, attempts: i64) -> i64 {
        let r = u16::from_le_bytes(crate::crypto::random_bytes::<2>());
        backoff(self.retry_initial, self.retry_max, attempts, r)
    }

    async fn send(&self, m: &Claimed, now: i64) -> Result<(), Failure> {
        if let Some(name) = m.stream.strip_prefix(ssf::STREAM) {
            return self.push(m, name).await;
        }
        let facts: ApprovalNeeded = serde_json::from_str(&m.payload)
            .map_err(|e| Failure::Permanent(format!("unreadable payload: {e}")))?;
        if let Some(name) = m.stream.strip_prefix(webhook::STREAM) {
            let hook = (self.notifier.webhooks.get(name)).ok_or_else(|| {
                // Another replica may know it (a rolling change of config): left for it, or
                // for this one once configured again, until the message is given up.
                Failure::Transient(format!("webhook `{name}` is not configured here"))
            })?;
            let body = webhook::body(&m.kind, &facts, now);
            return (hook.post(&m.event_id, now, body).await).map_err(Failure::Transient);
        }
        if let Some(user) = m.stream.strip_prefix(email::STREAM) {
            let (Some(mailer), Some(to)) =
                (&self.notifier.mailer, self.notifier.mailboxes.get(user))
            else {
                return Err(Failure::Transient(format!(
                    "mail to {user} is not configured here"
                )));
            };
            return mailer
                .send(to, &m.event_id, &facts)
                .await
                .map_err(|e| match e {
                    MailError::Transient(e) => Failure::Transient(e),
                    MailError::Permanent(e) => Failure::Permanent(e),
                });
        }
        Err(Failure::Permanent(format!("unknown stream {}", m.stream)))
    }
}

/// The wait, in seconds, before retry `attempts` + 1: doubling from `initial` up to `max`, less
/// up to half of it by the random `r`, so that retries spread out (and never under a second).
fn backoff(initial: i64, max: i64, attempts: i64, r: u16) -> i64 {
    let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let full = initial.saturating_mul(1_i64 << doublings).min(max);
    (full - full * i64::from(r) / (2 * i64::from(u16::MAX))).max(1)
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn retries_back_off_doubling_up_to_the_cap_with_jitter_of_up_to_half() {
        for (attempts, full) in [(1, 5), (2, 10), (3, 20), (6, 160), (7, 300), (1000, 300)] {
            assert_eq!(backoff(5, 300, attempts, 0), full, "attempt {attempts}");
            assert_eq!(backoff(5, 300, attempts, u16::MAX), full - full / 2);
            let mid = backoff(5, 300, attempts, u16::MAX / 2);
            assert!(
                mid < full && mid > full - full / 2,
                "attempt {attempts}: {mid}"
            );
        }
        assert_eq!(backoff(1, 1, 1, u16::MAX), 1, "never under a second");
    }
}
