//! The methods of `Store` itself (the supertraits have their own files), each with what a
//! caller relies on, on both backends.

use mandate::audit::AuditEvent;
use mandate::jose::{KeyRow, KeyState, RotationMode};
use mandate::store::{BatchItem, Consumed, Named, Party, TokenKind, WriteOp, WriteOutcome};

use super::{h, issue, key, store_for, token};
use crate::helpers::*;

#[tokio::test]
async fn the_store_names_its_backend_answers_pings_and_migrates_idempotently() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let name = match b {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        assert_eq!(s.backend(), name);
        s.ping().await.unwrap();
        s.migrate().await.unwrap();
        s.ping().await.unwrap();
        s.close().await;
        assert!(
            s.use_once("after-close", 100, 1).await.is_err(),
            "{b:?}: a closed store writes nothing"
        );
    }
}

#[tokio::test]
async fn clients_and_agents_are_upserted_listed_disabled_and_deleted() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        s.upsert_client("b-client", "{1}", "config", 1)
            .await
            .unwrap();
        s.upsert_client("a-client", "{2}", "cli", 1).await.unwrap();
        s.upsert_client("b-client", "{3}", "config", 2)
            .await
            .unwrap();
        assert_eq!(
            s.load_clients().await.unwrap(),
            [
                ("a-client".into(), "{2}".into()),
                ("b-client".into(), "{3}".into())
            ],
            "{b:?}"
        );
        s.upsert_agent("bot", "{a}", "config", 1).await.unwrap();
        s.upsert_agent("cli-bot", "{b}", "cli", 1).await.unwrap();
        assert!(s.set_agent_disabled("bot", Some(5)).await.unwrap());
        assert!(!s.set_agent_disabled("nobody", Some(5)).await.unwrap());
        assert_eq!(
            s.load_agents().await.unwrap(),
            [("cli-bot".into(), "{b}".into())],
            "{b:?}: a disabled agent is not loaded"
        );
        let rec = s.agent_record("bot").await.unwrap().unwrap();
        assert_eq!((rec.source.as_str(), rec.disabled_at), ("config", Some(5)));
        assert!(s.set_agent_disabled("bot", None).await.unwrap());
        assert_eq!(s.load_agents().await.unwrap().len(), 2, "{b:?}");
        assert!(s.delete_agent("bot").await.unwrap());
        assert!(!s.delete_agent("bot").await.unwrap(), "{b:?}");
        assert!(s.agent_record("bot").await.unwrap().is_none(), "{b:?}");
    }
}

#[tokio::test]
async fn config_names_are_remembered_and_forgotten_by_kind() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        s.upsert_client("from-config", "{}", "config", 1)
            .await
            .unwrap();
        s.upsert_client("from-cli", "{}", "cli", 1).await.unwrap();
        s.upsert_agent("agent-config", "{}", "config", 1)
            .await
            .unwrap();
        s.upsert_agent("agent-ek", "{}", "ek", 1).await.unwrap();
        let users = ["alice".to_string(), "bob".to_string()];
        s.remember_users(&users, 1).await.unwrap();
        s.remember_users(&users[..1], 2).await.unwrap();
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(
            s.config_names(Named::Clients).await.unwrap(),
            ["from-config"]
        );
        assert_eq!(
            s.config_names(Named::Agents).await.unwrap(),
            ["agent-config"]
        );
        assert_eq!(
            sorted(s.config_names(Named::Users).await.unwrap()),
            ["alice", "bob"]
        );
        s.forget_name(Named::Clients, "from-config").await.unwrap();
        s.forget_name(Named::Agents, "agent-config").await.unwrap();
        s.forget_name(Named::Users, "bob").await.unwrap();
        assert!(s.config_names(Named::Clients).await.unwrap().is_empty());
        assert!(s.config_names(Named::Agents).await.unwrap().is_empty());
        assert_eq!(s.config_names(Named::Users).await.unwrap(), ["alice"]);
        assert_eq!(s.load_clients().await.unwrap().len(), 1, "{b:?}");
    }
}

fn fresh(kid: &str) -> KeyRow {
    KeyRow {
        kid: kid.into(),
        state: KeyState::Next,
        private_sealed: vec![1, 2, 3],
        public_jwk: format!("{{\"kid\":\"{kid}\"}}"),
        created_at: 0,
        activated_at: None,
        retired_at: None,
        publish_until: None,
    }
}

#[tokio::test]
async fn key_rotation_promotes_retires_and_forgets_keys() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let n = std::sync::atomic::AtomicUsize::new(0);
        let make = move || {
            fresh(&format!(
                "k{}",
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            ))
        };
        assert!(
            s.rotate_keys(RotationMode::Ensure, 100, 50, &make)
                .await
                .unwrap()
        );
        let states = |rows: Vec<KeyRow>| -> Vec<(String, KeyState)> {
            rows.into_iter().map(|r| (r.kid, r.state)).collect()
        };
        assert_eq!(
            states(s.load_keys().await.unwrap()),
            [
                ("k0".into(), KeyState::Current),
                ("k1".into(), KeyState::Next)
            ],
            "{b:?}"
        );
        assert!(
            !s.rotate_keys(RotationMode::Ensure, 110, 50, &make)
                .await
                .unwrap()
        );
        assert!(
            s.rotate_keys(RotationMode::Force, 120, 50, &make)
                .await
                .unwrap()
        );
        let rows = s.load_keys().await.unwrap();
        let k0 = rows.iter().find(|r| r.kid == "k0").unwrap();
        assert_eq!(
            (k0.state, k0.retired_at, k0.publish_until),
            (KeyState::Retired, Some(120), Some(170))
        );
        assert_eq!(k0.private_sealed, [1, 2, 3]);
        let k1 = rows.iter().find(|r| r.kid == "k1").unwrap();
        assert_eq!((k1.state, k1.activated_at), (KeyState::Current, Some(120)));
        // Past its publication, the retired key is deleted.
        assert!(
            !s.rotate_keys(RotationMode::Ensure, 170, 50, &make)
                .await
                .unwrap()
        );
        assert!(
            s.load_keys().await.unwrap().iter().all(|r| r.kid != "k0"),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn a_single_use_token_is_consumed_once_and_a_replay_is_recognised() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let mut refresh = token("r", None);
        refresh.kind = TokenKind::Refresh;
        let items = [BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::IssueTokens(vec![refresh]),
            audit: vec![],
        }];
        s.commit_batch(&items, 1, None, &key()).await.unwrap();
        match s.consume_token(&h("r"), 10).await.unwrap() {
            Consumed::Now(r) => assert_eq!(r.consumed_at, Some(10), "{b:?}"),
            other => panic!("{b:?}: {other:?}"),
        }
        match s.consume_token(&h("r"), 11).await.unwrap() {
            Consumed::Before(r) => assert_eq!(r.consumed_at, Some(10), "{b:?}"),
            other => panic!("{b:?}: {other:?}"),
        }
        assert_eq!(
            s.consume_token(&h("nope"), 12).await.unwrap(),
            Consumed::NotFound
        );
        let r = s.find_token_by_jti("jti-r").await.unwrap().unwrap();
        assert_eq!(
            (r.kind, r.consumed_at),
            (TokenKind::Refresh, Some(10)),
            "{b:?}"
        );
        assert!(s.find_token_by_jti("jti-nope").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn live_tokens_of_a_subject_are_listed_oldest_first() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let mut old = token("old", None);
        old.iat = 1;
        let mut new = token("new", None);
        new.iat = 2;
        let mut expired = token("expired", None);
        expired.exp = 5;
        let mut other = token("other", None);
        other.sub = "bob".into();
        let items = [
            BatchItem {
                signals: Vec::new(),
                on_cut: None,
                op: WriteOp::IssueTokens(vec![new, expired, other, old]),
                audit: vec![],
            },
            issue("revoked", None),
            super::revoke("revoked"),
        ];
        s.commit_batch(&items, 1, None, &key()).await.unwrap();
        let live: Vec<String> = (s.live_tokens_of("alice", 10).await.unwrap())
            .into_iter()
            .map(|r| r.jti)
            .collect();
        assert_eq!(live, ["jti-old", "jti-new"], "{b:?}");
    }
}

#[tokio::test]
async fn attestation_nonces_are_single_use_bound_and_expire() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        s.create_nonce("n-any", None, 100, 10).await.unwrap();
        s.create_nonce("n-bot", Some("bot"), 100, 10).await.unwrap();
        s.create_nonce("n-old", None, 20, 10).await.unwrap();
        assert!(
            !s.consume_nonce("n-bot", "other", 11).await.unwrap(),
            "{b:?}"
        );
        assert!(s.consume_nonce("n-bot", "bot", 11).await.unwrap(), "{b:?}");
        assert!(
            !s.consume_nonce("n-bot", "bot", 12).await.unwrap(),
            "{b:?}: once"
        );
        assert!(
            s.consume_nonce("n-any", "whoever", 12).await.unwrap(),
            "{b:?}"
        );
        assert!(
            !s.consume_nonce("n-old", "bot", 20).await.unwrap(),
            "{b:?}: expired"
        );
        assert!(!s.consume_nonce("never", "bot", 12).await.unwrap(), "{b:?}");
    }
}

/// RevokeParty seeds: a client's tokens, a user's, and an agent's own and those it acts in.
#[tokio::test]
async fn removing_a_party_revokes_its_tokens_and_their_subtrees() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let mut of_client = token("of-client", None);
        of_client.client_id = "gone".into();
        let mut of_user = token("of-user", None);
        of_user.sub = "mallory".into();
        let mut own = token("own", None);
        own.sub = "agent:bot".into();
        let mut acting = token("acting", None);
        acting.act = Some(mandate::oauth::act::Actor::parse(r#"{"sub":"agent:bot"}"#).unwrap());
        let items = [BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::IssueTokens(vec![of_client, of_user, own, acting]),
            audit: vec![],
        }];
        s.commit_batch(&items, 1, None, &key()).await.unwrap();
        s.commit_batch(&[issue("below", Some("of-user"))], 1, None, &key())
            .await
            .unwrap();
        let party = |p: Party| BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::RevokeParty(p),
            audit: vec![AuditEvent::new("party.removed")],
        };
        let outcomes = s
            .commit_batch(
                &[
                    party(Party::Client("gone".into())),
                    party(Party::User("mallory".into())),
                    party(Party::Agent("bot".into())),
                    party(Party::Agent("bot".into())),
                ],
                5,
                None,
                &key(),
            )
            .await
            .unwrap();
        assert_eq!(
            outcomes,
            [
                WriteOutcome::Revoked(1),
                WriteOutcome::Revoked(2),
                WriteOutcome::Revoked(2),
                WriteOutcome::Revoked(0)
            ],
            "{b:?}"
        );
        let details: Vec<String> = (s.audit_entries(0, 10).await.unwrap())
            .into_iter()
            .filter(|e| e.kind == "party.removed")
            .map(|e| e.detail)
            .collect();
        assert_eq!(
            details,
            [
                r#"{"revoked":1}"#,
                r#"{"revoked":2}"#,
                r#"{"revoked":2}"#,
                r#"{"revoked":0}"#
            ],
            "{b:?}: each audit entry says how many tokens went"
        );
    }
}

#[tokio::test]
async fn audit_entries_are_paged_and_found_by_session() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let (seq0, _) = s.audit_head().await.unwrap();
        let ev = |session: Option<&str>| {
            let mut e = AuditEvent::new("token.introspected");
            e.session = session.map(str::to_string);
            e
        };
        let items = [BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::None,
            audit: vec![
                ev(Some("s1")),
                ev(None),
                ev(Some("s1")),
                ev(Some("s2")),
                ev(Some("s1")),
            ],
        }];
        s.commit_batch(&items, 7, Some("v1"), &key()).await.unwrap();
        let (seq, hash) = s.audit_head().await.unwrap();
        assert_eq!(seq, seq0 + 5, "{b:?}");
        let all = s.audit_entries(seq0, 100).await.unwrap();
        assert_eq!(all.last().map(|e| e.hash.clone()), Some(hash), "{b:?}");
        assert!(
            all.iter()
                .all(|e| e.policy_version.as_deref() == Some("v1") && e.ts == 7)
        );
        let page: Vec<i64> = (s.audit_entries(seq0 + 1, 2).await.unwrap())
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(page, [seq0 + 2, seq0 + 3], "{b:?}");
        let newest: Vec<i64> = (s.audit_for_session("s1", 2).await.unwrap())
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            newest,
            [seq0 + 3, seq0 + 5],
            "{b:?}: the newest two, oldest first"
        );
    }
}

/// `mandate audit export --since TIME` starts at the first entry stamped at or after TIME.
#[tokio::test]
async fn the_first_audit_entry_at_or_after_a_time_is_found() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let (seq0, _) = s.audit_head().await.unwrap();
        for ts in [100, 200, 200, 300] {
            let items = [BatchItem {
                signals: Vec::new(),
                on_cut: None,
                op: WriteOp::None,
                audit: vec![AuditEvent::new("token.introspected")],
            }];
            s.commit_batch(&items, ts, None, &key()).await.unwrap();
        }
        let found = |ts| {
            let s = s.clone();
            async move { s.audit_first_at(ts).await.unwrap().map(|seq| seq - seq0) }
        };
        assert_eq!(found(0).await, Some(1), "{b:?}");
        assert_eq!(found(100).await, Some(1), "{b:?}");
        assert_eq!(found(101).await, Some(2), "{b:?}");
        assert_eq!(found(200).await, Some(2), "{b:?}");
        assert_eq!(found(300).await, Some(4), "{b:?}");
        assert_eq!(found(301).await, None, "{b:?}");
    }
}

#[tokio::test]
async fn a_touch_records_the_last_use_and_its_user() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        s.commit_batch(&[issue("t", None)], 1, None, &key())
            .await
            .unwrap();
        let touch = |by: &str| BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::Touch {
                jti: "jti-t".into(),
                by: by.into(),
            },
            audit: vec![],
        };
        let outcomes = s
            .commit_batch(&[touch("rs"), touch("rs")], 9, None, &key())
            .await
            .unwrap();
        assert_eq!(outcomes, [WriteOutcome::Done, WriteOutcome::Done]);
        let r = s.find_token(&h("t")).await.unwrap().unwrap();
        assert_eq!(r.last_used_at, Some(9), "{b:?}");
    }
}
