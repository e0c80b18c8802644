//! `CibaStore` on both backends: the transitions that must happen once happen once.

use mandate::oauth::act::Actor;
use mandate::oauth::scope::ScopeSet;
use mandate::store::StoreError;
use mandate::store::ciba::{CibaRecord, CibaStatus, Poll};

use super::store_for;
use crate::helpers::*;

fn request(n: u8, username: &str, created_at: i64) -> CibaRecord {
    CibaRecord {
        id_hash: vec![n; 32],
        public_id: format!("pub-{n}"),
        client_id: "agent-host".into(),
        username: username.into(),
        agent: "build-bot".into(),
        attestation: "none".into(),
        parent_hash: vec![9; 32],
        act: Actor::nest("agent:build-bot", Some(&Actor::nest("agent:sub-bot", None))),
        scope: ScopeSet::parse("orders:read orders:write").unwrap(),
        aud: vec!["orders-api".to_string()].into(),
        token_exp: 1000,
        depth: 1,
        binding_message: Some("ok?".into()),
        policies: "[]".into(),
        high_risk: ScopeSet::parse("orders:write").unwrap(),
        created_at,
        expires_at: created_at + 300,
        interval_secs: 5,
        last_polled_at: None,
        status: CibaStatus::Pending,
        approved_scope: None,
        approved_exp: None,
        decided_at: None,
        actor_hash: Some(vec![8; 32]),
    }
}

#[tokio::test]
async fn ciba_requests_are_capped_polled_decided_and_claimed_once() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        assert!(s.create_ciba(&request(1, "alice", 100), 2).await.unwrap());
        assert!(s.create_ciba(&request(2, "alice", 101), 2).await.unwrap());
        assert!(
            !s.create_ciba(&request(3, "alice", 102), 2).await.unwrap(),
            "{b:?}: at most two pending per human"
        );
        assert!(s.create_ciba(&request(4, "bob", 102), 2).await.unwrap());
        let pending: Vec<String> = (s.pending_ciba_for("alice", 110).await.unwrap())
            .into_iter()
            .map(|r| r.public_id)
            .collect();
        assert_eq!(pending, ["pub-1", "pub-2"], "{b:?}");
        assert!(s.pending_ciba_for("alice", 500).await.unwrap().is_empty());

        // Polls: the first is seen, one sooner than the interval is too fast and slows down.
        match s.poll_ciba(&[1; 32], 110, 5).await.unwrap() {
            Poll::Seen(r) => assert_eq!((r.last_polled_at, r.interval_secs), (Some(110), 5)),
            other => panic!("{b:?}: {other:?}"),
        }
        match s.poll_ciba(&[1; 32], 112, 5).await.unwrap() {
            Poll::TooFast(r) => assert_eq!(r.interval_secs, 10, "{b:?}"),
            other => panic!("{b:?}: {other:?}"),
        }
        match s.poll_ciba(&[1; 32], 130, 5).await.unwrap() {
            Poll::Seen(r) => assert_eq!((r.last_polled_at, r.interval_secs), (Some(130), 10)),
            other => panic!("{b:?}: {other:?}"),
        }
        assert!(matches!(
            s.poll_ciba(&[7; 32], 130, 5).await.unwrap(),
            Poll::NotFound
        ));

        // Decisions: only by its human, only while pending and unexpired.
        assert!(
            s.decide_ciba("pub-1", "bob", None, 120)
                .await
                .unwrap()
                .is_none()
        );
        let approved = s
            .decide_ciba(
                "pub-1",
                "alice",
                Some((&ScopeSet::parse("orders:read").unwrap(), 900)),
                120,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(approved.status, CibaStatus::Approved, "{b:?}");
        assert_eq!(
            (
                approved
                    .approved_scope
                    .as_ref()
                    .map(ToString::to_string)
                    .as_deref(),
                approved.approved_exp,
                approved.decided_at
            ),
            (Some("orders:read"), Some(900), Some(120))
        );
        assert!(
            s.decide_ciba("pub-1", "alice", None, 121)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            s.decide_ciba("pub-2", "alice", None, 999)
                .await
                .unwrap()
                .is_none(),
            "expired"
        );
        let denied = s
            .decide_ciba("pub-4", "bob", None, 120)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(denied.status, CibaStatus::Denied, "{b:?}");

        // The approved token is claimed once; a denied request never.
        let claimed = s.claim_ciba(&[1; 32]).await.unwrap().unwrap();
        assert_eq!(claimed.status, CibaStatus::Issued, "{b:?}");
        assert_eq!(claimed.actor_hash, Some(vec![8; 32]));
        assert!(s.claim_ciba(&[1; 32]).await.unwrap().is_none(), "{b:?}");
        assert!(s.claim_ciba(&[4; 32]).await.unwrap().is_none(), "{b:?}");
    }
}

/// Fail closed on stored data: a request whose stored chain (`act`) or status does not parse is
/// no request. It is not listed to its human (neither shown with a shorter chain nor decidable),
/// a poll or a decision of it fails as unreadable and changes nothing, and the human's other
/// requests are listed and read whole as usual.
#[tokio::test]
async fn a_ciba_request_with_a_corrupt_chain_or_status_is_unusable_and_hides_nothing_else() {
    for b in backends() {
        let (db, s) = store_for(b).await;
        for n in 1..=3 {
            assert!(
                s.create_ciba(&request(n, "alice", 100 + i64::from(n)), 10)
                    .await
                    .unwrap()
            );
        }
        exec_sql(
            &db,
            "UPDATE ciba_requests SET act = '{\"sub\":\"agent:build-bot\",' WHERE public_id = 'pub-2'",
        )
        .await;
        exec_sql(
            &db,
            "UPDATE ciba_requests SET status = 'maybe' WHERE public_id = 'pub-3'",
        )
        .await;

        let listed = s.pending_ciba_for("alice", 110).await.unwrap();
        assert_eq!(
            listed,
            [request(1, "alice", 101)],
            "{b:?}: the readable one, whole"
        );
        assert_eq!(
            listed[0].act.chain(),
            ["agent:build-bot", "agent:sub-bot"],
            "{b:?}"
        );
        for id in [[2; 32], [3; 32]] {
            let polled = s.poll_ciba(&id, 110, 5).await;
            assert!(
                matches!(polled, Err(StoreError::CorruptRecord(_))),
                "{b:?}: {polled:?}"
            );
        }
        let decided = s
            .decide_ciba(
                "pub-2",
                "alice",
                Some((&ScopeSet::parse("orders:read").unwrap(), 900)),
                110,
            )
            .await;
        assert!(
            matches!(decided, Err(StoreError::CorruptRecord(_))),
            "{b:?}: {decided:?}"
        );

        // Repaired, the request is as it was: the failed decision and poll changed nothing.
        exec_sql(
            &db,
            "UPDATE ciba_requests SET act = '{\"sub\":\"agent:build-bot\"}' WHERE public_id = 'pub-2'",
        )
        .await;
        let listed = s.pending_ciba_for("alice", 110).await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|r| r.public_id.as_str()).collect();
        assert_eq!(ids, ["pub-1", "pub-2"], "{b:?}");
        assert_eq!(
            (listed[1].status, listed[1].last_polled_at),
            (CibaStatus::Pending, None),
            "{b:?}"
        );
    }
}
