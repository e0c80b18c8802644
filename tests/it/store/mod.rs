//! The storage layer on both backends, without HTTP: every method of `Store` and its
//! supertraits, on SQLite and (with `TEST_DATABASE_URL`) PostgreSQL.

mod batch;
mod ciba;
mod methods;
mod migrate;
mod outbox;
mod registration;
mod tpm;
mod web;

use std::sync::Arc;

use mandate::audit::AuditEvent;
use mandate::store::{BatchItem, TokenKind, TokenRecord, WriteOp, WriteOutcome};

use crate::helpers::*;

pub(super) fn token(name: &str, parent: Option<&str>) -> TokenRecord {
    let h = |n: &str| mandate::crypto::sha256(n.as_bytes()).to_vec();
    TokenRecord {
        token_hash: h(name),
        jti: format!("jti-{name}"),
        kind: TokenKind::Access,
        sub: "alice".into(),
        client_id: "c".into(),
        scope: "s".into(),
        aud: vec!["orders-api".to_string()].into(),
        iat: 0,
        exp: i64::MAX / 2,
        sid: None,
        parent_hash: parent.map(h),
        act: None,
        may_act: None,
        att: None,
        jkt: None,
        dpop_key: None,
        revoked_at: None,
        consumed_at: None,
        last_used_at: None,
    }
}

pub(super) fn issue(name: &str, parent: Option<&str>) -> BatchItem {
    let mut ev = AuditEvent::new("token.issued");
    ev.token_jti = Some(format!("jti-{name}"));
    BatchItem {
        signals: Vec::new(),
        on_cut: None,
        op: WriteOp::IssueTokens(vec![token(name, parent)]),
        audit: vec![ev],
    }
}

pub(super) fn revoke(name: &str) -> BatchItem {
    BatchItem {
        signals: Vec::new(),
        on_cut: None,
        op: WriteOp::Revoke {
            token_hash: mandate::crypto::sha256(name.as_bytes()).to_vec(),
        },
        audit: vec![AuditEvent::new("token.revoked")],
    }
}

/// The SHA-256 a token named `name` is recorded under.
pub(super) fn h(name: &str) -> Vec<u8> {
    mandate::crypto::sha256(name.as_bytes()).to_vec()
}

/// The chain key of the KEK `test_db` writes.
pub(super) fn key() -> mandate::audit::ChainKey {
    mandate::jose::Kek::from_bytes(&[7; 32])
        .audit_chain_key()
        .clone()
}

pub(super) async fn store_for(b: Backend) -> (TestDb, mandate::store::SharedStore) {
    let db = test_db(b).await;
    let s = mandate::store::open(&db.url, 4).await.unwrap();
    s.migrate().await.unwrap();
    (db, s)
}

#[tokio::test]
async fn revoking_a_token_revokes_its_whole_subtree_and_nothing_else() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let items = [
            issue("a", None),
            issue("b", Some("a")),
            issue("c", Some("b")),
            issue("d", Some("a")),
            issue("e", None),
        ];
        s.commit_batch(&items, 10, None, &key()).await.unwrap();
        assert_eq!(
            s.commit_batch(&[revoke("b")], 20, None, &key())
                .await
                .unwrap(),
            vec![WriteOutcome::Revoked(2)],
            "{b:?}"
        );
        assert_eq!(
            s.commit_batch(&[revoke("a")], 30, None, &key())
                .await
                .unwrap(),
            vec![WriteOutcome::Revoked(2)],
            "{b:?}"
        );
        for (n, revoked_at) in [
            ("a", Some(30)),
            ("b", Some(20)),
            ("c", Some(20)),
            ("d", Some(30)),
            ("e", None),
        ] {
            let r = s
                .find_token(&mandate::crypto::sha256(n.as_bytes()))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(r.revoked_at, revoked_at, "{b:?} {n}");
        }
        let v = mandate::audit::verify_store(s.as_ref(), &key())
            .await
            .unwrap();
        assert_eq!(v, Ok(7));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_identifier_is_accepted_once_when_raced() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let tries = (0..8).map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.use_once("client-jti", 100, 10).await.unwrap() })
        });
        let mut accepted = 0;
        for t in tries {
            accepted += t.await.unwrap() as usize;
        }
        assert_eq!(accepted, 1, "{b:?}");
        // Expired identifiers are forgotten.
        assert!(s.use_once("client-jti", 300, 200).await.unwrap(), "{b:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_writing_at_once_extend_one_verifiable_chain() {
    for b in backends() {
        let (db, s1) = store_for(b).await;
        let s2: Arc<dyn mandate::store::Store> = mandate::store::open(&db.url, 4).await.unwrap();
        let write = |s: mandate::store::SharedStore, tag: &'static str| {
            tokio::spawn(async move {
                for i in 0..20 {
                    let items: Vec<BatchItem> = (0..5)
                        .map(|j| issue(&format!("{tag}-{i}-{j}"), None))
                        .collect();
                    s.commit_batch(&items, i, Some("v"), &key()).await.unwrap();
                }
            })
        };
        let (x, y) = (write(s1.clone(), "x"), write(s2.clone(), "y"));
        x.await.unwrap();
        y.await.unwrap();
        assert_eq!(
            mandate::audit::verify_store(s1.as_ref(), &key())
                .await
                .unwrap(),
            Ok(200),
            "{b:?}"
        );
    }
}

/// SQLite's log must not grow without bound under writes that never pause: the background
/// checkpoints copy it into the database and the writer makes it start over once it is long
/// (`store::sqlite::writer`, past 65,536 pages = 256 MiB). Unrestarted, the log grows with
/// every batch (about 880 MiB after these writes, 220 MiB per 40,000 tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_log_starts_over_under_sustained_writes() {
    let (db, s) = store_for(Backend::Sqlite).await;
    let wal = db.dir.path().join("mandate.db-wal");
    let mut largest = 0;
    for i in 0..3200 {
        let items: Vec<BatchItem> = (0..50)
            .map(|j| issue(&format!("w-{i}-{j}"), None))
            .collect();
        s.commit_batch(&items, i, None, &key()).await.unwrap();
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    assert!(largest < 448 << 20, "the log reached {} MiB", largest >> 20);
    // Nothing was lost on the way: every token and the whole audit chain are there.
    for name in ["w-0-0", "w-1599-25", "w-3199-49"] {
        let hash = mandate::crypto::sha256(name.as_bytes());
        assert!(s.find_token(&hash).await.unwrap().is_some(), "{name}");
    }
    assert_eq!(
        mandate::audit::verify_store(s.as_ref(), &key())
            .await
            .unwrap(),
        Ok(160_000)
    );
}

/// A database made before tokens were keyed by their jti (SQLite migration 0008) keeps every
/// token through the table's rebuild: found by the presented token's hash with every field,
/// revoked with its subtree, and new tokens (time-ordered jtis) go beside them.
#[tokio::test]
async fn sqlite_tokens_from_before_the_jti_key_survive_the_rebuild() {
    use std::borrow::Cow;
    let db = test_db(Backend::Sqlite).await;
    let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&db.url)
        .unwrap()
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    let mut before = sqlx::migrate!("migrations/sqlite");
    before.migrations = Cow::Owned(
        before
            .migrations
            .iter()
            .filter(|m| m.version < 8)
            .cloned()
            .collect(),
    );
    before.run(&pool).await.unwrap();
    let pk: String =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('tokens') WHERE pk = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pk, "token_hash", "the old layout");
    let h = |n: &str| mandate::crypto::sha256(n.as_bytes()).to_vec();
    for (name, parent) in [("a", None), ("b", Some("a")), ("c", None)] {
        sqlx::query(
            "INSERT INTO tokens (token_hash, jti, kind, sub, client_id, scope, aud, iat, exp, \
             sid, parent_hash, act, last_used_at, last_used_by, may_act) \
             VALUES (?, ?, 'access', 'alice', 'c', 'orders:read', 'orders-api', 5, 99999999999, \
             'sid-1', ?, '{\"sub\":\"agent:x\"}', 7, 'orders-api', '{\"sub\":\"agent:y\"}')",
        )
        .bind(h(name))
        .bind(format!("old-{name}"))
        .bind(parent.map(h))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let s = mandate::store::open(&db.url, 4).await.unwrap();
    s.migrate().await.unwrap();
    let a = s.find_token(&h("a")).await.unwrap().unwrap();
    assert_eq!(
        (
            a.jti.as_str(),
            a.sub.as_str(),
            a.scope.as_str(),
            a.iat,
            a.exp
        ),
        ("old-a", "alice", "orders:read", 5, 99_999_999_999)
    );
    assert_eq!(a.aud, vec!["orders-api".to_string()]);
    assert_eq!(a.sid.as_deref(), Some("sid-1"));
    assert_eq!(
        a.act.as_ref().map(|a| a.chain()),
        Some(vec!["agent:x".to_string()])
    );
    assert_eq!(a.may_act.as_ref().map(|m| m.sub.as_str()), Some("agent:y"));
    assert_eq!(a.last_used_at, Some(7));
    let b = s.find_token(&h("b")).await.unwrap().unwrap();
    assert_eq!(b.parent_hash, Some(h("a")));

    let mut fresh = token("d", Some("c"));
    fresh.jti = mandate::crypto::time_ordered_id(&mandate::clock::SystemClock);
    let issued = BatchItem {
        signals: Vec::new(),
        on_cut: None,
        op: WriteOp::IssueTokens(vec![fresh]),
        audit: vec![AuditEvent::new("token.issued")],
    };
    assert_eq!(
        s.commit_batch(&[issued, revoke("a")], 10, None, &key())
            .await
            .unwrap(),
        vec![WriteOutcome::Done, WriteOutcome::Revoked(2)]
    );
    for (n, revoked) in [("a", true), ("b", true), ("c", false), ("d", false)] {
        let r = s.find_token(&h(n)).await.unwrap().unwrap();
        assert_eq!(r.revoked_at.is_some(), revoked, "{n}");
    }
    assert_eq!(
        s.commit_batch(&[revoke("c")], 11, None, &key())
            .await
            .unwrap(),
        vec![WriteOutcome::Revoked(2)],
        "a token issued after the rebuild is found below its old parent"
    );
    s.close().await;

    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let pk: String =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('tokens') WHERE pk = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pk, "jti");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tokens' \
         AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "tokens_actor",
            "tokens_client",
            "tokens_parent",
            "tokens_sid",
            "tokens_sub"
        ]
    );
    pool.close().await;
}

/// A batch larger than one statement holds (256 rows) keeps every row on both backends: 600
/// tokens, 300 introspections by one resource server and 2 by another, and their 902 audit
/// entries, written in pieces with the last of each and the chain head in one statement.
/// Lookups made at once (PostgreSQL answers them with one query per batch) each get their own
/// token or nothing, and a lookup made after a revocation committed sees it revoked
/// (RFC 7009 §2: the token is invalidated immediately).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_made_at_once_each_get_their_own_answer_and_see_revocations() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let issued: Vec<BatchItem> = (0..100).map(|i| issue(&format!("t{i}"), None)).collect();
        s.commit_batch(&issued, 10, None, &key()).await.unwrap();
        let revoked: Vec<BatchItem> = (0..100)
            .step_by(3)
            .map(|i| revoke(&format!("t{i}")))
            .collect();
        s.commit_batch(&revoked, 20, None, &key()).await.unwrap();
        let s: Arc<dyn mandate::store::Store> = s;
        let mut tasks = Vec::new();
        // Each token twice, and names that were never issued.
        for i in (0..100).chain(0..100).chain(1000..1020) {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                let hash = mandate::crypto::sha256(format!("t{i}").as_bytes());
                (i, s.find_token(&hash).await.unwrap())
            }));
        }
        for t in tasks {
            let (i, found) = t.await.unwrap();
            if i >= 1000 {
                assert!(found.is_none(), "{b:?} t{i}");
                continue;
            }
            let r = found.unwrap_or_else(|| panic!("{b:?} t{i} not found"));
            assert_eq!(r.jti, format!("jti-t{i}"), "{b:?}");
            assert_eq!(r.revoked_at, (i % 3 == 0).then_some(20), "{b:?} t{i}");
        }
    }
}

/// RFC 7662 §2.2 / RFC 9068 §4: a token is only live if it is, byte for byte, one this server
/// issued. SQLite finds a JWT by the `jti` its payload names, so a token that names a live `jti`
/// but carries another signature must still find nothing; opaque tokens are found by hash.
#[tokio::test]
async fn a_presented_token_is_found_only_by_its_exact_bytes() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let payload = mandate::crypto::b64url(br#"{"sub":"alice","jti":"jti-jwt"}"#);
        let jwt = format!("eyJhbGciOiJFUzI1NiJ9.{payload}.c2lnbmF0dXJl");
        let mut rec = token("unused", None);
        rec.token_hash = mandate::crypto::sha256(jwt.as_bytes()).to_vec();
        rec.jti = "jti-jwt".into();
        let opaque = "tV1kq3Y8bq2n0r0ZKJQ4w2kM1d9yYfQ6xq5yR8tX0aU";
        let mut refresh = token(opaque, None);
        refresh.kind = TokenKind::Refresh;
        let items = [BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::IssueTokens(vec![rec, refresh]),
            audit: vec![],
        }];
        s.commit_batch(&items, 10, None, &key()).await.unwrap();

        let found = s.find_presented(&jwt).await.unwrap();
        assert_eq!(found.map(|r| r.jti).as_deref(), Some("jti-jwt"), "{b:?}");
        let forged = format!("eyJhbGciOiJFUzI1NiJ9.{payload}.Zm9yZ2Vk");
        assert!(s.find_presented(&forged).await.unwrap().is_none(), "{b:?}");
        assert!(
            s.find_presented(&format!("{jwt}."))
                .await
                .unwrap()
                .is_none(),
            "{b:?}"
        );
        let found = s.find_presented(opaque).await.unwrap();
        assert_eq!(found.map(|r| r.kind), Some(TokenKind::Refresh), "{b:?}");
        assert!(
            s.find_presented("unknown").await.unwrap().is_none(),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn a_batch_too_large_for_one_statement_keeps_every_row_and_the_chain() {
    for b in backends() {
        let (_db, s) = store_for(b).await;
        let issued: Vec<BatchItem> = (0..600).map(|i| issue(&format!("t{i}"), None)).collect();
        s.commit_batch(&issued, 10, None, &key()).await.unwrap();
        let touch = |i: usize, by: &str| BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::Touch {
                jti: format!("jti-t{i}"),
                by: by.into(),
            },
            audit: vec![AuditEvent::new("token.introspected")],
        };
        let mut items: Vec<BatchItem> = (0..300).map(|i| touch(i, "orders-api")).collect();
        items.push(touch(598, "billing-api"));
        items.push(touch(599, "billing-api"));
        assert!(
            s.commit_batch(&items, 20, None, &key())
                .await
                .unwrap()
                .iter()
                .all(|o| *o == WriteOutcome::Done)
        );
        for i in [0, 255, 256, 299, 300, 597, 598, 599] {
            let r = s
                .find_token(&mandate::crypto::sha256(format!("t{i}").as_bytes()))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{b:?}: t{i} lost"));
            let touched = !(300..598).contains(&i);
            assert_eq!(r.last_used_at, touched.then_some(20), "{b:?} t{i}");
        }
        let v = mandate::audit::verify_store(s.as_ref(), &key())
            .await
            .unwrap();
        assert_eq!(v, Ok(902), "{b:?}");
    }
}
