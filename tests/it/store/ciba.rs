//! `CibaStore` on both backends: the transitions that must happen once happen once.

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
        act: r#"{"sub":"agent:build-bot"}"#.into(),
        scope: "orders:read orders:write".into(),
        aud: "orders-api".into(),
        token_exp: 1000,
        depth: 1,
        binding_message: Some("ok?".into()),
        policies: "[]".into(),
        high_risk: "orders:write".into(),
        created_at,
        expires_at: created_at + 300,
        interval_secs: 5,
        last_polled_at: None,
        status: "pending".into(),
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
            .decide_ciba("pub-1", "alice", Some(("orders:read", 900)), 120)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(approved.status(), Some(CibaStatus::Approved), "{b:?}");
        assert_eq!(
            (
                approved.approved_scope.as_deref(),
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
        assert_eq!(denied.status(), Some(CibaStatus::Denied), "{b:?}");

        // The approved token is claimed once; a denied request never.
        let claimed = s.claim_ciba(&[1; 32]).await.unwrap().unwrap();
        assert_eq!(claimed.status(), Some(CibaStatus::Issued), "{b:?}");
        assert_eq!(claimed.actor_hash, Some(vec![8; 32]));
        assert!(s.claim_ciba(&[1; 32]).await.unwrap().is_none(), "{b:?}");
        assert!(s.claim_ciba(&[4; 32]).await.unwrap().is_none(), "{b:?}");
    }
}
