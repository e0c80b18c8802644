//! `TpmStore` on both backends: enrollments pin agents to their EK, counters only advance.

use mandate::store::tpm::{CounterOutcome, PendingEnrollment, QuoteCounters};

use super::store_for;
use crate::helpers::*;

fn enrollment(id: &str, expires_at: i64) -> PendingEnrollment {
    PendingEnrollment {
        id: id.into(),
        agent: "bot".into(),
        ek_hash: "ek1".into(),
        ek_issuer: "allowlist".into(),
        ak_public: "AAAA".into(),
        secret_hash: vec![5; 32],
        created_at: 10,
        expires_at,
    }
}

#[tokio::test]
async fn enrollments_are_taken_once_and_agents_are_pinned_to_their_ek() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        s.create_enrollment(&enrollment("e1", 100)).await.unwrap();
        s.create_enrollment(&enrollment("e2", 20)).await.unwrap();
        assert_eq!(
            s.take_enrollment("e1", 50).await.unwrap(),
            Some(enrollment("e1", 100)),
            "{b:?}"
        );
        assert_eq!(
            s.take_enrollment("e1", 50).await.unwrap(),
            None,
            "{b:?}: once"
        );
        assert_eq!(
            s.take_enrollment("e2", 50).await.unwrap(),
            None,
            "{b:?}: expired"
        );

        assert!(s.enroll_agent_by_ek("bot", "{1}", "ek1", 60).await.unwrap());
        assert!(
            s.enroll_agent_by_ek("bot", "{2}", "ek1", 61).await.unwrap(),
            "re-enrolls"
        );
        assert!(
            !s.enroll_agent_by_ek("bot", "{3}", "ek2", 62).await.unwrap(),
            "{b:?}: the name is pinned to another EK"
        );
        assert!(
            !s.enroll_agent_by_ek("other", "{4}", "ek1", 63)
                .await
                .unwrap(),
            "{b:?}: the EK is pinned to another name"
        );
        s.upsert_agent("cli-made", "{}", "cli", 1).await.unwrap();
        assert!(
            !s.enroll_agent_by_ek("cli-made", "{5}", "ek3", 64)
                .await
                .unwrap()
        );
        let rec = s.agent_record("bot").await.unwrap().unwrap();
        assert_eq!(
            (
                rec.data.as_str(),
                rec.source.as_str(),
                rec.ek_hash.as_deref()
            ),
            ("{2}", "ek", Some("ek1")),
            "{b:?}"
        );
        assert_eq!(s.agent_by_ek("ek1").await.unwrap().as_deref(), Some("bot"));
        assert_eq!(s.agent_by_ek("ek9").await.unwrap(), None);
    }
}

#[tokio::test]
async fn tpm_counters_only_move_forward() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let c = |reset, restart, clock, fw: &str| QuoteCounters {
            reset_count: reset,
            restart_count: restart,
            clock,
            firmware: fw.into(),
        };
        assert_eq!(s.tpm_counters("bot").await.unwrap(), None);
        assert_eq!(
            s.advance_tpm_counters("bot", &c(1, 1, 100, "fw1"), 1)
                .await
                .unwrap(),
            CounterOutcome::Advanced {
                previous_firmware: None
            },
            "{b:?}"
        );
        for stale in [
            c(1, 1, 100, "fw1"),
            c(1, 1, 99, "fw1"),
            c(1, 0, 500, "fw1"),
            c(0, 9, 9, "fw1"),
        ] {
            assert_eq!(
                s.advance_tpm_counters("bot", &stale, 2).await.unwrap(),
                CounterOutcome::Stale,
                "{b:?} {stale:?}"
            );
        }
        assert_eq!(
            s.advance_tpm_counters("bot", &c(1, 2, 0, "fw2"), 3)
                .await
                .unwrap(),
            CounterOutcome::Advanced {
                previous_firmware: Some("fw1".into())
            },
            "{b:?}"
        );
        assert_eq!(
            s.tpm_counters("bot").await.unwrap(),
            Some(c(1, 2, 0, "fw2"))
        );
    }
}
