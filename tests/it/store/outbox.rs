//! `OutboxStore` on both backends: a notification is written with its audit entry or not at
//! all; each stream is delivered in order, one message at a time; a lease keeps two workers
//! (two replicas) from sending the same message; settled messages are purged.

use mandate::audit::AuditEvent;
use mandate::store::outbox::{Claimed, OutboxCounts, Outgoing, Settle};
use mandate::store::{BatchItem, WriteOp, WriteOutcome};

use super::{issue, key, revoke, store_for};
use crate::helpers::*;

fn message(id: &str, stream: &str) -> Outgoing {
    Outgoing {
        event_id: id.into(),
        stream: stream.into(),
        kind: "ciba.requested".into(),
        payload: format!(r#"{{"n":"{id}"}}"#),
        expires_at: None,
    }
}

fn notify(messages: Vec<Outgoing>) -> BatchItem {
    BatchItem {
        signals: Vec::new(),
        on_cut: None,
        op: WriteOp::Notify(messages),
        audit: vec![AuditEvent::new("ciba.requested")],
    }
}

fn ids(claimed: &[Claimed]) -> Vec<&str> {
    claimed.iter().map(|c| c.event_id.as_str()).collect()
}

#[tokio::test]
async fn a_notification_is_written_with_its_audit_entry_in_one_batch() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let items = [
            issue("a", None),
            notify(vec![
                message("m1", "webhook:chat"),
                message("m2", "email:alice"),
            ]),
            revoke("a"),
        ];
        let outcomes = s.commit_batch(&items, 100, None, &key()).await.unwrap();
        assert_eq!(outcomes[1], WriteOutcome::Done, "{b:?}");
        let (seq, _) = s.audit_head().await.unwrap();
        assert_eq!(seq, 3, "{b:?}: the three audit entries");
        let claimed = s.claim_outbox("w1", 100, 160, 10).await.unwrap();
        assert_eq!(ids(&claimed), ["m1", "m2"], "{b:?}");
        let c = &claimed[0];
        assert_eq!(
            (c.stream.as_str(), c.kind.as_str(), c.payload.as_str()),
            ("webhook:chat", "ciba.requested", r#"{"n":"m1"}"#),
            "{b:?}"
        );
        assert_eq!((c.created_at, c.attempts), (100, 1), "{b:?}");

        // A batch that fails (a duplicate event id) keeps neither its entries nor its messages.
        let before = s.audit_head().await.unwrap().0;
        let failed = s
            .commit_batch(
                &[notify(vec![message("m1", "webhook:chat")])],
                101,
                None,
                &key(),
            )
            .await;
        assert!(failed.is_err(), "{b:?}");
        assert_eq!(s.audit_head().await.unwrap().0, before, "{b:?}");
        assert_eq!(s.outbox_counts().await.unwrap().pending, 2, "{b:?}");
    }
}

#[tokio::test]
async fn a_stream_is_delivered_in_order_and_a_failing_one_holds_back_only_itself() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let batch = [notify(vec![
            message("a1", "webhook:a"),
            message("b1", "webhook:b"),
            message("a2", "webhook:a"),
            message("b2", "webhook:b"),
        ])];
        s.commit_batch(&batch, 100, None, &key()).await.unwrap();
        // Only the head of each stream.
        let first = s.claim_outbox("w", 100, 160, 10).await.unwrap();
        assert_eq!(ids(&first), ["a1", "b1"], "{b:?}");
        // Leased: nothing more to claim, not even the next of a stream.
        assert!(s.claim_outbox("w", 100, 160, 10).await.unwrap().is_empty());
        let (a1, b1) = (&first[0], &first[1]);
        assert!(
            s.settle_outbox(a1.id, "w", &Settle::Delivered, 101)
                .await
                .unwrap()
        );
        let retry = Settle::Retry {
            at: 110,
            error: "HTTP 500".into(),
        };
        assert!(s.settle_outbox(b1.id, "w", &retry, 101).await.unwrap());
        // Stream a moves on; stream b waits for its head, which is not due yet.
        assert_eq!(
            ids(&s.claim_outbox("w", 102, 160, 10).await.unwrap()),
            ["a2"]
        );
        let again = s.claim_outbox("w", 110, 170, 10).await.unwrap();
        assert_eq!(ids(&again), ["b1"], "{b:?}: the same message, retried");
        assert_eq!(again[0].attempts, 2, "{b:?}");
        // A message settled once cannot be settled again, nor by another lease.
        assert!(
            !s.settle_outbox(a1.id, "w", &Settle::Delivered, 111)
                .await
                .unwrap()
        );
        assert!(
            !s.settle_outbox(again[0].id, "other", &Settle::Delivered, 111)
                .await
                .unwrap()
        );
        // Giving up moves the stream on too.
        let failed = Settle::Failed {
            error: "gave up".into(),
        };
        assert!(
            s.settle_outbox(again[0].id, "w", &failed, 111)
                .await
                .unwrap()
        );
        assert_eq!(
            ids(&s.claim_outbox("w", 112, 170, 10).await.unwrap()),
            ["b2"]
        );
    }
}

#[tokio::test]
async fn a_lease_that_ran_out_or_was_released_lets_another_worker_take_the_message() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        s.commit_batch(
            &[notify(vec![message("m", "webhook:a")])],
            100,
            None,
            &key(),
        )
        .await
        .unwrap();
        let mine = s.claim_outbox("dead", 100, 130, 10).await.unwrap();
        assert_eq!(ids(&mine), ["m"]);
        assert!(
            s.claim_outbox("live", 129, 160, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let taken = s.claim_outbox("live", 130, 160, 10).await.unwrap();
        assert_eq!(ids(&taken), ["m"], "{b:?}: the lease ran out");
        // The first worker comes back too late: its settlement is refused.
        assert!(
            !s.settle_outbox(mine[0].id, "dead", &Settle::Delivered, 131)
                .await
                .unwrap()
        );
        assert_eq!(s.release_outbox("live").await.unwrap(), 1, "{b:?}");
        let back = s.claim_outbox("next", 131, 190, 10).await.unwrap();
        assert_eq!((ids(&back), back[0].attempts), (vec!["m"], 3), "{b:?}");
    }
}

/// Two workers (two replicas on PostgreSQL) claim at once, many times over: every message is
/// claimed exactly once, and a stream never has two messages out at the same time.
#[tokio::test]
async fn racing_claimers_never_take_the_same_message() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let messages: Vec<Outgoing> = (0..60)
            .map(|i| message(&format!("m{i:02}"), &format!("webhook:{}", i % 6)))
            .collect();
        s.commit_batch(&[notify(messages)], 100, None, &key())
            .await
            .unwrap();
        // The streams with a message out: a claim must never find its stream there.
        let out = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let worker = |lease: &'static str| {
            let (s, out) = (s.clone(), out.clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..200 {
                    let claimed = s.claim_outbox(lease, 100, 1000, 4).await.unwrap();
                    for c in &claimed {
                        assert!(out.lock().unwrap().insert(c.stream.clone()), "{}", c.stream);
                    }
                    for c in claimed {
                        // Out of the set before it is settled: until then nobody can claim
                        // the stream's next message.
                        out.lock().unwrap().remove(&c.stream);
                        assert!(
                            s.settle_outbox(c.id, lease, &Settle::Delivered, 100)
                                .await
                                .unwrap()
                        );
                        got.push(c.event_id);
                    }
                    tokio::task::yield_now().await;
                }
                got
            })
        };
        let (one, two) = (worker("one"), worker("two"));
        let (one, two) = (one.await.unwrap(), two.await.unwrap());
        assert!(
            !one.is_empty() && !two.is_empty(),
            "{b:?}: both workers sent some"
        );
        let mut all: Vec<String> = one.iter().chain(&two).cloned().collect();
        assert_eq!(all.len(), 60, "{b:?}: each message claimed once");
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 60, "{b:?}");
        // In order within each stream, whichever worker sent them.
        for got in [&one, &two] {
            for stream in 0..6 {
                let mine: Vec<&String> = (got.iter())
                    .filter(|m| m[1..].parse::<usize>().unwrap() % 6 == stream)
                    .collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "{b:?}: {mine:?}");
            }
        }
        assert_eq!(
            s.outbox_counts().await.unwrap(),
            OutboxCounts {
                delivered: 60,
                ..Default::default()
            }
        );
    }
}

#[tokio::test]
async fn settled_messages_are_purged_and_pending_ones_kept() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let batch = [notify(vec![
            message("d", "webhook:a"),
            message("x", "webhook:b"),
            message("p", "webhook:c"),
        ])];
        s.commit_batch(&batch, 100, None, &key()).await.unwrap();
        let claimed = s.claim_outbox("w", 100, 160, 10).await.unwrap();
        s.settle_outbox(claimed[0].id, "w", &Settle::Delivered, 110)
            .await
            .unwrap();
        s.settle_outbox(claimed[1].id, "w", &Settle::Expired, 120)
            .await
            .unwrap();
        s.release_outbox("w").await.unwrap();
        assert_eq!(
            s.outbox_counts().await.unwrap(),
            OutboxCounts {
                pending: 1,
                delivered: 1,
                failed: 0,
                expired: 1
            },
            "{b:?}"
        );
        assert_eq!(s.purge_outbox(115).await.unwrap(), 1, "{b:?}");
        assert_eq!(s.purge_outbox(10_000).await.unwrap(), 1, "{b:?}");
        assert_eq!(s.outbox_counts().await.unwrap().pending, 1, "{b:?}");
    }
}

/// RFC 8936 streams (`ssfpoll:`) are the receiver's to fetch: no worker claims them; a poll
/// reads them oldest first, and an acknowledgement settles only that stream's messages.
#[tokio::test]
async fn a_polled_stream_is_never_claimed_and_acks_settle_only_its_own_messages() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let items = [notify(vec![
            message("p1", "ssfpoll:rs"),
            message("p2", "ssfpoll:rs"),
            message("o1", "ssfpoll:other"),
        ])];
        s.commit_batch(&items, 100, None, &key()).await.unwrap();
        assert!(
            s.claim_outbox("w1", 100, 160, 10).await.unwrap().is_empty(),
            "{b:?}"
        );
        let polled = s.polled_outbox("ssfpoll:rs", 10).await.unwrap();
        let ids: Vec<&str> = polled.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["p1", "p2"], "{b:?}");
        let acks = ["p1".to_string(), "o1".to_string(), "nope".to_string()];
        assert_eq!(
            s.ack_outbox("ssfpoll:rs", &acks, 101).await.unwrap(),
            1,
            "{b:?}"
        );
        let left = s.polled_outbox("ssfpoll:rs", 10).await.unwrap();
        assert_eq!(left.len(), 1, "{b:?}");
        assert_eq!(
            s.polled_outbox("ssfpoll:other", 10).await.unwrap().len(),
            1,
            "{b:?}"
        );
        let c = s.outbox_counts().await.unwrap();
        assert_eq!((c.pending, c.delivered), (2, 1), "{b:?}");
    }
}

/// Bounds: a SET nobody fetched (an RFC 8936 stream never polled, a receiver stream left
/// paused) is settled as expired once older than the bound, so held SETs cannot grow the outbox
/// for ever; a recent one, a notification and a SET the worker is retrying stay.
#[tokio::test]
async fn sets_held_unfetched_past_the_bound_expire_and_nothing_else_does() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let old = [notify(vec![
            message("old-poll", "ssfpoll:rs"),
            message("old-poll2", "ssfpoll:other"),
            message("old-webhook", "webhook:a"),
            message("retried", "ssf:orders"),
        ])];
        s.commit_batch(&old, 100, None, &key()).await.unwrap();
        // The worker tried `retried` (it failed and waits for its next attempt).
        let claimed = s.claim_outbox("w", 100, 160, 10).await.unwrap();
        let retried = claimed.iter().find(|c| c.event_id == "retried").unwrap();
        s.settle_outbox(
            retried.id,
            "w",
            &Settle::Retry {
                at: 5_000,
                error: "503".into(),
            },
            110,
        )
        .await
        .unwrap();
        s.release_outbox("w").await.unwrap();
        s.commit_batch(
            &[notify(vec![message("new-poll", "ssfpoll:rs")])],
            900,
            None,
            &key(),
        )
        .await
        .unwrap();
        assert_eq!(s.expire_held_sets(1_000, 500).await.unwrap(), 2, "{b:?}");
        let left: Vec<String> = (s.polled_outbox("ssfpoll:rs", 10).await.unwrap())
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(left, ["new-poll"], "{b:?}");
        let counts = s.outbox_counts().await.unwrap();
        assert_eq!((counts.pending, counts.expired), (3, 2), "{b:?}");
        assert_eq!(
            s.expire_held_sets(1_000, 500).await.unwrap(),
            0,
            "{b:?}: once"
        );
    }
}
