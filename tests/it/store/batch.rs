//! One batch semantics on both backends (`store::batch`): a token whose parent is revoked
//! (before the batch, or earlier in the same batch) is not issued, its item's outcome is
//! `ParentRevoked` and nothing of it is recorded; everything else in the batch goes ahead.

use mandate::audit::AuditEvent;
use mandate::store::{BatchItem, Party, SharedStore, WriteOp, WriteOutcome};

use super::{h, issue, key, revoke, store_for, token};
use crate::helpers::*;

async fn commit(s: &SharedStore, items: &[BatchItem], now: i64) -> Vec<WriteOutcome> {
    s.commit_batch(items, now, None, &key()).await.unwrap()
}

/// `Some(revoked_at)` of the token named `name`, `None` if it was never recorded.
async fn state(s: &SharedStore, name: &str) -> Option<Option<i64>> {
    s.find_token(&h(name)).await.unwrap().map(|r| r.revoked_at)
}

/// The `token_jti`s of the audit log, in order.
async fn audited(s: &SharedStore) -> Vec<Option<String>> {
    let entries = s.audit_entries(0, 1000).await.unwrap();
    entries.into_iter().map(|e| e.token_jti).collect()
}

#[tokio::test]
async fn a_child_of_a_token_revoked_earlier_in_the_same_batch_is_not_issued() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        commit(&s, &[issue("p", None), issue("q", None)], 10).await;
        let outcomes = commit(
            &s,
            &[
                revoke("p"),
                issue("child", Some("p")),
                issue("beside", Some("q")),
                issue("alone", None),
            ],
            20,
        )
        .await;
        assert_eq!(
            outcomes,
            [
                WriteOutcome::Revoked(1),
                WriteOutcome::ParentRevoked,
                WriteOutcome::Done,
                WriteOutcome::Done
            ],
            "{b:?}"
        );
        assert_eq!(state(&s, "child").await, None, "{b:?}: never recorded");
        assert_eq!(state(&s, "beside").await, Some(None), "{b:?}");
        assert_eq!(state(&s, "alone").await, Some(None), "{b:?}");
        assert!(
            !audited(&s).await.contains(&Some("jti-child".into())),
            "{b:?}: no audit entry claims the refused issuance"
        );
        let v = mandate::audit::verify_store(s.as_ref(), &key()).await;
        assert_eq!(v.unwrap(), Ok(5), "{b:?}");
    }
}

#[tokio::test]
async fn a_child_of_a_token_revoked_in_an_earlier_batch_or_of_an_unknown_one_is_not_issued() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        commit(&s, &[issue("p", None)], 10).await;
        commit(&s, &[revoke("p")], 20).await;
        let outcomes = commit(
            &s,
            &[issue("child", Some("p")), issue("orphan", Some("never"))],
            30,
        )
        .await;
        assert_eq!(
            outcomes,
            [WriteOutcome::ParentRevoked, WriteOutcome::ParentRevoked],
            "{b:?}"
        );
        assert_eq!(state(&s, "child").await, None, "{b:?}");
        assert_eq!(state(&s, "orphan").await, None, "{b:?}");
    }
}

#[tokio::test]
async fn a_child_of_a_token_whose_ancestor_was_revoked_is_not_issued() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        commit(&s, &[issue("a", None), issue("b", Some("a"))], 10).await;
        commit(&s, &[issue("x", None), issue("y", Some("x"))], 10).await;
        commit(&s, &[revoke("a")], 20).await;
        // In a later batch, and in the batch of the ancestor's revocation.
        let outcomes = commit(
            &s,
            &[issue("c", Some("b")), revoke("x"), issue("z", Some("y"))],
            30,
        )
        .await;
        assert_eq!(
            outcomes,
            [
                WriteOutcome::ParentRevoked,
                WriteOutcome::Revoked(2),
                WriteOutcome::ParentRevoked
            ],
            "{b:?}"
        );
        assert_eq!(state(&s, "c").await, None, "{b:?}");
        assert_eq!(state(&s, "z").await, None, "{b:?}");
    }
}

/// A revocation that comes after the issuance in the batch finds the child already issued and
/// revokes it with the rest of the subtree.
#[tokio::test]
async fn a_child_issued_before_its_parents_revocation_in_the_batch_is_issued_then_revoked() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        commit(&s, &[issue("p", None)], 10).await;
        let outcomes = commit(&s, &[issue("child", Some("p")), revoke("p")], 20).await;
        assert_eq!(
            outcomes,
            [WriteOutcome::Done, WriteOutcome::Revoked(2)],
            "{b:?}"
        );
        assert_eq!(state(&s, "child").await, Some(Some(20)), "{b:?}");
        assert!(
            audited(&s).await.contains(&Some("jti-child".into())),
            "{b:?}"
        );
    }
}

/// A parent issued earlier in the same batch is live; a parent refused earlier in it is not.
#[tokio::test]
async fn parents_issued_or_refused_earlier_in_the_batch_count_as_such() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let outcomes = commit(
            &s,
            &[
                issue("a", None),
                issue("b", Some("a")),
                issue("x", Some("never")),
                issue("y", Some("x")),
            ],
            10,
        )
        .await;
        assert_eq!(
            outcomes,
            [
                WriteOutcome::Done,
                WriteOutcome::Done,
                WriteOutcome::ParentRevoked,
                WriteOutcome::ParentRevoked
            ],
            "{b:?}"
        );
        assert_eq!(state(&s, "b").await, Some(None), "{b:?}");
    }
}

/// An item is refused whole: one refused token leaves its sibling unrecorded too.
#[tokio::test]
async fn an_item_with_one_refused_token_records_none_of_its_tokens() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        commit(&s, &[issue("p", None)], 10).await;
        let item = BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::IssueTokens(vec![token("ok", Some("p")), token("bad", Some("gone"))]),
            audit: vec![AuditEvent::new("token.issued")],
        };
        assert_eq!(
            commit(&s, &[item], 20).await,
            [WriteOutcome::ParentRevoked],
            "{b:?}"
        );
        assert_eq!(state(&s, "ok").await, None, "{b:?}");
    }
}

/// Session and party revocations refuse children in the same batch as a token revocation does.
#[tokio::test]
async fn session_and_party_revocations_refuse_later_children_in_the_batch() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let mut in_session = token("s", None);
        in_session.sid = Some("sid-1".into());
        let mut of_client = token("k", None);
        of_client.client_id = "gone-client".into();
        let items = [BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::IssueTokens(vec![in_session, of_client]),
            audit: vec![],
        }];
        commit(&s, &items, 10).await;
        let session = BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::RevokeSession {
                sid: "sid-1".into(),
            },
            audit: vec![],
        };
        let party = BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::RevokeParty(Party::Client("gone-client".into())),
            audit: vec![],
        };
        let outcomes = commit(
            &s,
            &[
                session,
                issue("s-child", Some("s")),
                party,
                issue("k-child", Some("k")),
            ],
            20,
        )
        .await;
        assert_eq!(
            outcomes,
            [
                WriteOutcome::Revoked(1),
                WriteOutcome::ParentRevoked,
                WriteOutcome::Revoked(1),
                WriteOutcome::ParentRevoked
            ],
            "{b:?}"
        );
    }
}
