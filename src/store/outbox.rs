//! The outbox, as a supertrait of [`super::Store`]: messages that leave the server (approval
//! notifications; later the Security Event Tokens of OpenID Shared Signals, RFC 8935 push).
//!
//! A message is enqueued only by [`super::WriteOp::Notify`], in the batch transaction that
//! appends the audit entry of the event causing it: a crash keeps both or neither. Delivery is
//! at least once, and looks exactly once to a receiver that deduplicates on the message's
//! stable `event_id`. Within a stream (one receiver) messages go out in the order they were
//! written: only the oldest unsettled message of a stream is ever claimed, so a receiver that
//! is down holds its own stream back and no other.
//!
//! Replicas sharing a PostgreSQL database claim under a lease (`FOR UPDATE SKIP LOCKED`, then
//! `leased_until`): two never send the same message at once. A worker that dies mid-send loses
//! its lease when `leased_until` passes, and the message is sent again (same `event_id`).

use async_trait::async_trait;

use super::StoreError;
use crate::audit::AuditEvent;

/// What turns committed events into messages for outside receivers (the Shared Signals
/// transmitter): the [`super::Writer`] asks it for each item it queues, and the messages are
/// written in that item's transaction, kept only if the item was applied (a revocation that
/// found nothing left to revoke signals nothing: another one already did).
pub trait Tap: Send + Sync + 'static {
    /// The messages `ev` causes, stamped `now`.
    fn signals(&self, ev: &AuditEvent, now: i64) -> Vec<Outgoing>;
    /// The messages about each token the revocation `ev` records will cut, made in the
    /// transaction once the backend knows them (a revocation cuts what was derived from its
    /// token too, under sessions of their own).
    fn on_cut(&self, _ev: &AuditEvent, _now: i64) -> Option<OnCut> {
        None
    }
    /// Called once messages were committed (wakes the delivery worker).
    fn enqueued(&self) {}
}

/// What makes the messages about the tokens a revocation cut.
pub type CutMessages = dyn Fn(&super::Revocation<'_>, &[super::Cut]) -> Vec<Outgoing> + Send + Sync;

/// Makes the messages about the tokens a revocation cut ([`Tap::on_cut`]).
#[derive(Clone)]
pub struct OnCut(pub std::sync::Arc<CutMessages>);

impl std::fmt::Debug for OnCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnCut")
    }
}

/// A message to enqueue (its times come from the batch that writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Stable across retries; what a receiver deduplicates on.
    pub event_id: String,
    /// The receiver: messages of one stream are delivered in order (`webhook:<name>`).
    pub stream: String,
    /// The audit event that caused it.
    pub kind: String,
    /// JSON the channel renders. Holds only what the receiver needs, never a token or secret.
    pub payload: String,
    /// Past this the message is dropped unsent (what it announces is over).
    pub expires_at: Option<i64>,
}

/// A message claimed for sending, under this worker's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    pub event_id: String,
    pub stream: String,
    pub kind: String,
    pub payload: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// How a claimed message ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Delivered,
    /// Not delivered; try again at `at`.
    Retry {
        at: i64,
        error: String,
    },
    /// Given up (too old, or its channel is gone): the stream moves on.
    Failed {
        error: String,
    },
    /// Dropped unsent: what it announced is over.
    Expired,
}

impl Settle {
    /// The `outcome` column of a settled message.
    pub fn outcome(&self) -> Option<&'static str> {
        match self {
            Settle::Delivered => Some("delivered"),
            Settle::Retry { .. } => None,
            Settle::Failed { .. } => Some("failed"),
            Settle::Expired => Some("expired"),
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Settle::Retry { error, .. } | Settle::Failed { error } => Some(error),
            Settle::Delivered | Settle::Expired => None,
        }
    }
}

/// What the outbox holds, by state (for operators and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    pub expired: i64,
}

#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Claims, under `lease` until `leased_until`, the oldest unsettled message of each stream
    /// when it is due (`next_attempt_at <= now`) and not leased by anyone else: at most
    /// `limit` messages, oldest first, their `attempts` counted.
    async fn claim_outbox(
        &self,
        lease: &str,
        now: i64,
        leased_until: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError>;
    /// Records how message `id` ended, if `lease` still holds it (false otherwise: the lease
    /// ran out and someone else took it, or it was settled already).
    async fn settle_outbox(
        &self,
        id: i64,
        lease: &str,
        how: &Settle,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Gives back every message `lease` holds unsettled, due at once (a worker that stops).
    async fn release_outbox(&self, lease: &str) -> Result<u64, StoreError>;
    /// Deletes messages settled before `before`; returns how many.
    async fn purge_outbox(&self, before: i64) -> Result<u64, StoreError>;
    /// Settles as `expired`, at `now`, every SET (a stream `ssf…`) still unsettled, never
    /// attempted and not leased that was written before `written_before` (one being retried is
    /// the worker's to give up, audited): those a poll receiver never fetched or
    /// a paused stream held that long. What they name has long expired, and unbounded they
    /// would grow the outbox for every other receiver. Returns how many.
    async fn expire_held_sets(&self, now: i64, written_before: i64) -> Result<u64, StoreError>;
    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;
    /// RFC 8936 poll: the oldest `limit` unsettled messages of a stream its receiver polls
    /// (`{POLLED}<name>`, never claimed by a worker), as `(event_id, payload)`.
    async fn polled_outbox(
        &self,
        stream: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// RFC 8936 §2.4 acknowledgement: settles the stream's messages `event_ids` as delivered;
    /// returns how many were pending (an id of another stream, or already settled, is not).
    async fn ack_outbox(
        &self,
        stream: &str,
        event_ids: &[String],
        now: i64,
    ) -> Result<u64, StoreError>;
}

/// The prefix of streams a receiver polls: the delivery worker never claims them.
pub const POLLED: &str = "ssfpoll:";

/// The SQL both backends run as it is (PostgreSQL's claim adds its row locks).
pub(super) mod sql {
    pub const INSERT: &str = "INSERT INTO outbox (event_id, stream, kind, payload, created_at, \
         expires_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $5)";

    /// The heads of the streams that may be claimed; `{lock}` is PostgreSQL's row lock.
    pub fn claim(lock: &str) -> String {
        format!(
            "UPDATE outbox SET lease = $1, leased_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT o.id FROM outbox o \
               WHERE o.settled_at IS NULL AND o.next_attempt_at <= $3 \
                 AND o.stream NOT LIKE 'ssfpoll:%' \
                 AND NOT EXISTS (SELECT 1 FROM ssf_streams s \
                   WHERE s.status = 'paused' AND o.stream = 'ssf:' || s.id) \
                 AND (o.leased_until IS NULL OR o.leased_until <= $3) \
                 AND NOT EXISTS (SELECT 1 FROM outbox e \
                   WHERE e.stream = o.stream AND e.settled_at IS NULL AND e.id < o.id) \
               ORDER BY o.id LIMIT $4{lock}) \
             RETURNING id, event_id, stream, kind, payload, created_at, expires_at, attempts"
        )
    }

    pub const SETTLE: &str = "UPDATE outbox SET settled_at = $1, outcome = $2, last_error = $3, \
         lease = NULL, leased_until = NULL \
         WHERE id = $4 AND lease = $5 AND settled_at IS NULL";

    pub const RETRY: &str = "UPDATE outbox SET next_attempt_at = $1, last_error = $2, \
         lease = NULL, leased_until = NULL \
         WHERE id = $3 AND lease = $4 AND settled_at IS NULL";

    pub const RELEASE: &str = "UPDATE outbox SET lease = NULL, leased_until = NULL \
         WHERE lease = $1 AND settled_at IS NULL";

    pub const POLL: &str = "SELECT event_id, payload FROM outbox \
         WHERE stream = $1 AND settled_at IS NULL ORDER BY id LIMIT $2";

    pub const ACK: &str = "UPDATE outbox SET settled_at = $1, outcome = 'delivered' \
         WHERE stream = $2 AND event_id = $3 AND settled_at IS NULL";

    pub const PURGE: &str = "DELETE FROM outbox WHERE settled_at IS NOT NULL AND settled_at < $1";

    pub const EXPIRE_HELD_SETS: &str = "UPDATE outbox SET settled_at = $1, outcome = 'expired', \
         lease = NULL, leased_until = NULL WHERE settled_at IS NULL AND stream LIKE 'ssf%' \
         AND attempts = 0 AND created_at < $2 AND (leased_until IS NULL OR leased_until <= $1)";

    pub const COUNTS: &str = "SELECT \
         COALESCE(SUM(CASE WHEN settled_at IS NULL THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN outcome = 'delivered' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN outcome = 'expired' THEN 1 ELSE 0 END), 0) FROM outbox";
}
