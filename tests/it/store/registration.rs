//! Registered clients (RFC 7591) in the store: their lifecycle, and the caps, which must hold
//! when registrations race on two replicas.

use mandate::store::{RegisterOutcome, RegisteredClient, RegistrationCaps};

use super::store_for;
use crate::helpers::*;

fn row(id: &str, by: &str, at: i64) -> RegisteredClient {
    RegisteredClient {
        client_id: id.into(),
        data: format!("{{\"client_id\":\"{id}\"}}"),
        metadata: "{}".into(),
        token_hash: mandate::crypto::sha256(id.as_bytes()).to_vec(),
        created_at: at,
        created_by: by.into(),
        last_used_at: at,
    }
}

const CAPS: RegistrationCaps = RegistrationCaps {
    address_since: 0,
    per_address: 2,
    total: 3,
};

#[tokio::test]
async fn rfc7591_registered_clients_are_stored_read_touched_removed_and_purged() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let a = row("a", "192.0.2.1", 100);
        assert_eq!(
            s.register_client(&a, &CAPS).await.unwrap(),
            RegisterOutcome::Registered
        );
        assert_eq!(s.registered_client("a").await.unwrap(), Some(a.clone()));
        assert_eq!(s.registered_client("b").await.unwrap(), None, "{b:?}");
        s.touch_registered_client("a", 500).await.unwrap();
        s.touch_registered_client("a", 400).await.unwrap();
        assert_eq!(
            s.registered_client("a")
                .await
                .unwrap()
                .unwrap()
                .last_used_at,
            500,
            "{b:?}: a use only moves last_used_at forward"
        );
        s.register_client(&row("b", "192.0.2.2", 200), &CAPS)
            .await
            .unwrap();
        let ids = |v: Vec<RegisteredClient>| v.into_iter().map(|r| r.client_id).collect::<Vec<_>>();
        assert_eq!(ids(s.registered_clients().await.unwrap()), ["a", "b"]);
        assert_eq!(s.unused_registered_clients(300).await.unwrap(), ["b"]);
        // Of two removals, one wins; a removed client reads as gone.
        assert!(s.remove_registered_client("b", 600).await.unwrap());
        assert!(!s.remove_registered_client("b", 601).await.unwrap());
        assert_eq!(s.registered_client("b").await.unwrap(), None);
        assert_eq!(s.removed_registered_clients(600).await.unwrap(), ["b"]);
        assert!(s.removed_registered_clients(601).await.unwrap().is_empty());
        assert_eq!(ids(s.registered_clients().await.unwrap()), ["a"]);
        assert!(s.unused_registered_clients(300).await.unwrap().is_empty());
        // Its row still counts against its address until it is purged.
        assert_eq!(
            s.registration_counts("192.0.2.2", 0).await.unwrap(),
            (1, 1),
            "{b:?}"
        );
        assert!(s.purge_registered_clients(199).await.unwrap().is_empty());
        assert_eq!(s.purge_registered_clients(200).await.unwrap(), ["b"]);
        assert_eq!(s.registration_counts("192.0.2.2", 0).await.unwrap(), (0, 1));
        assert!(
            s.purge_registered_clients(1000).await.unwrap().is_empty(),
            "{b:?}: a live registration is never purged"
        );
    }
}

#[tokio::test]
async fn rfc7591_caps_count_an_address_over_its_window_and_live_clients_in_all() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let reg = |id: &str, by: &str, at: i64, caps: RegistrationCaps| {
            let (s, r) = (s.clone(), row(id, by, at));
            async move { s.register_client(&r, &caps).await.unwrap() }
        };
        use RegisterOutcome::*;
        assert_eq!(reg("a1", "A", 10, CAPS).await, Registered);
        assert_eq!(reg("a2", "A", 11, CAPS).await, Registered);
        assert_eq!(reg("a3", "A", 12, CAPS).await, AddressCap, "{b:?}");
        // Deleting does not give the address its registrations back ...
        assert!(s.remove_registered_client("a2", 13).await.unwrap());
        assert_eq!(reg("a3", "A", 14, CAPS).await, AddressCap, "{b:?}");
        // ... the window passing does.
        let later = RegistrationCaps {
            address_since: 11,
            ..CAPS
        };
        assert_eq!(reg("a3", "A", 20, later).await, Registered);
        assert_eq!(reg("b1", "B", 21, later).await, Registered);
        assert_eq!(reg("b2", "B", 22, later).await, TotalCap, "{b:?}");
        assert_eq!(
            s.registered_client("a3").await.unwrap().unwrap().created_at,
            20
        );
        assert_eq!(
            s.registered_client("b2").await.unwrap(),
            None,
            "nothing stored"
        );
    }
}

/// Two replicas (two stores on one database) register at once with one place left under the
/// cap: exactly one wins, round after round.
#[tokio::test]
async fn rfc7591_two_replicas_racing_at_the_cap_register_only_one() {
    for b in backends() {
        let (db, s1) = store_for(b).await;
        let s2 = mandate::store::open(&db.url, 4).await.unwrap();
        for round in 0..8i64 {
            let caps = RegistrationCaps {
                address_since: 0,
                per_address: 1000,
                total: (round + 1) as u64,
            };
            let (r1, r2) = (
                row(&format!("x{round}"), "A", round),
                row(&format!("y{round}"), "B", round),
            );
            let (a, c) = tokio::join!(
                s1.register_client(&r1, &caps),
                s2.register_client(&r2, &caps)
            );
            let won = [a.unwrap(), c.unwrap()]
                .iter()
                .filter(|o| **o == RegisterOutcome::Registered)
                .count();
            assert_eq!(won, 1, "{b:?} round {round}");
        }
        assert_eq!(s1.registered_clients().await.unwrap().len(), 8);
        s2.close().await;
    }
}
