//! `mandate audit verify` finds the first entry that was altered, removed or reordered.

use crate::helpers::*;

async fn app_with_history(b: Backend) -> (TestDb, std::path::PathBuf) {
    let app = spawn_app(b).await;
    for _ in 0..3 {
        let t = app.cc_token(&[("audience", "orders-api")]).await;
        app.introspect(&t).await;
    }
    let config = app.config_path.clone();
    (app.stop().await, config)
}

fn verify(config: &std::path::Path) -> (bool, String) {
    let out = mandate_cli(
        &["audit", "verify", "--config", config.to_str().unwrap()],
        None,
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn audit_verify_names_the_first_altered_removed_or_reordered_entry() {
    let cases = [
        (
            "altered",
            vec!["UPDATE audit_log SET subject = 'mallory' WHERE seq = 3"],
            "entry 3",
        ),
        (
            "removed",
            vec!["DELETE FROM audit_log WHERE seq = 4"],
            "entry 4",
        ),
        (
            "reordered",
            vec![
                "UPDATE audit_log SET seq = -1 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE seq = -1",
            ],
            "entry 3",
        ),
        (
            "newest removed",
            vec!["DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)"],
            "missing",
        ),
    ];
    for b in backends() {
        for (what, sql, expect) in &cases {
            let (db, config) = app_with_history(b).await;
            let (ok, out) = verify(&config);
            assert!(
                ok && out.contains("intact"),
                "{b:?} before tampering: {out}"
            );
            for s in sql {
                exec_sql(&db, s).await;
            }
            let (ok, out) = verify(&config);
            assert!(!ok, "{b:?} {what}: verify passed: {out}");
            assert!(out.contains(expect), "{b:?} {what}: {out}");
        }
    }
}

// Tamper evidence against someone who can write the database but does not hold the KEK (SPEC,
// "Invariants a security team relies on", last bullet), with signed checkpoints of the head in
// the manner of RFC 9162 §4.10 signed tree heads.

use mandate::audit::AuditEntry;
use mandate::audit::checkpoint::{CheckpointKeys, TYP};

/// Audited traffic: issuances and introspections.
async fn some_history(app: &TestApp, n: usize) {
    for _ in 0..n {
        let t = app.cc_token(&[("audience", "orders-api")]).await;
        app.introspect(&t).await;
    }
}

/// `GET /audit/checkpoint`, kept in a file as an auditor would.
async fn keep_checkpoint(app: &TestApp, name: &str) -> std::path::PathBuf {
    let resp = app
        .http
        .get(format!("{}/audit/checkpoint", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", app.label());
    assert_eq!(resp.headers()["content-type"], "application/jwt");
    let path = app.db.dir.path().join(name);
    std::fs::write(&path, resp.text().await.unwrap()).unwrap();
    path
}

fn verify_with(config: &std::path::Path, checkpoints: &[&std::path::Path]) -> (bool, String) {
    verify_args(config, checkpoints, &[])
}

fn verify_args(
    config: &std::path::Path,
    checkpoints: &[&std::path::Path],
    extra: &[&str],
) -> (bool, String) {
    let mut args = vec!["audit", "verify", "--config", config.to_str().unwrap()];
    for c in checkpoints {
        args.extend(["--checkpoint", c.to_str().unwrap()]);
    }
    args.extend_from_slice(extra);
    let out = mandate_cli(&args, None);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn entries(db: &TestDb) -> Vec<AuditEntry> {
    let store = mandate::store::open(&db.url, 2).await.unwrap();
    let entries = store.audit_entries(0, 100_000).await.unwrap();
    store.close().await;
    entries
}

/// A byte string as an SQL literal of the backend.
fn blob(db: &TestDb, bytes: &[u8]) -> String {
    match db.backend {
        Backend::Sqlite => format!("X'{}'", hex::encode(bytes)),
        Backend::Postgres => format!("'\\x{}'::bytea", hex::encode(bytes)),
    }
}

/// What a database writer without the KEK can do: rewrite the entries from `from` on with the
/// plain SHA-256 chain that the unkeyed code computed, and move the head to the last of them.
/// `downgrade` also labels them as plain (chain version 0) entries.
async fn recompute_plain(db: &TestDb, log: &mut [AuditEntry], from: i64, downgrade: bool) {
    let mut prev = match log.iter().find(|e| e.seq == from - 1) {
        Some(e) => e.hash.clone(),
        None => mandate::audit::GENESIS.to_vec(),
    };
    for e in log.iter_mut().filter(|e| e.seq >= from) {
        if downgrade {
            e.chain_version = mandate::audit::CHAIN_PLAIN;
        }
        e.prev_hash = prev.clone();
        e.hash = e.plain_digest(&prev).to_vec();
        prev = e.hash.clone();
        let sql = format!(
            "UPDATE audit_log SET detail = '{}', subject = {}, prev_hash = {}, hash = {}, \
             chain_version = {} WHERE seq = {}",
            e.detail.replace('\'', "''"),
            e.subject
                .as_ref()
                .map(|s| format!("'{}'", s.replace('\'', "''")))
                .unwrap_or("NULL".into()),
            blob(db, &e.prev_hash),
            blob(db, &e.hash),
            e.chain_version,
            e.seq
        );
        exec_sql(db, &sql).await;
    }
    let last = log.last().unwrap();
    move_head(db, last.seq, &last.hash).await;
}

async fn move_head(db: &TestDb, seq: i64, hash: &[u8]) {
    let sql = format!(
        "UPDATE audit_head SET seq = {seq}, hash = {} WHERE id = 1",
        blob(db, hash)
    );
    exec_sql(db, &sql).await;
}

/// Deletes the newest `n` entries and moves the head back onto the entry before them: the
/// chain that remains is intact.
async fn truncate(db: &TestDb, n: i64) -> i64 {
    let log = entries(db).await;
    let keep = log.len() as i64 - n;
    exec_sql(db, &format!("DELETE FROM audit_log WHERE seq > {keep}")).await;
    let last = log.iter().find(|e| e.seq == keep).unwrap();
    move_head(db, keep, &last.hash).await;
    keep
}

/// (a) SPEC last invariant: "recomputed entries" are detected. The attacker rewrites an entry
/// and recomputes the chain and the head exactly as the unkeyed code did.
#[tokio::test]
async fn spec_audit_invariant_a_rewritten_entry_with_a_recomputed_chain_is_detected() {
    for b in backends() {
        let (db, config) = app_with_history(b).await;
        let mut log = entries(&db).await;
        assert!(log.len() >= 6, "{b:?}");
        let target = log.iter_mut().find(|e| e.seq == 3).unwrap();
        target.detail = r#"{"forged":true}"#.into();
        target.subject = Some("mallory".into());
        recompute_plain(&db, &mut log, 3, false).await;
        let (ok, out) = verify(&config);
        assert!(!ok, "{b:?}: verify passed a recomputed chain: {out}");
        assert!(
            out.contains("entry 3") && out.contains("KEK"),
            "{b:?}: {out}"
        );

        // Labelled as plain entries (as if written before the upgrade), from the first entry
        // on so that no keyed entry precedes them: the log then ends unkeyed.
        recompute_plain(&db, &mut log, 1, true).await;
        let last = log.last().unwrap().seq;
        let (ok, out) = verify(&config);
        assert!(!ok, "{b:?}: verify passed a log downgraded to plain: {out}");
        assert!(
            out.contains(&format!("entry {last}")) && out.contains("not keyed"),
            "{b:?}: {out}"
        );
    }
}

/// (b) + (e) RFC 9162 §4.10, §8.1.4: a log must not shrink. Deleting the newest entries and
/// moving the head back leaves a valid chain; a signed checkpoint kept from before shows it.
#[tokio::test]
async fn rfc9162_truncation_is_detected_given_a_checkpoint_kept_from_before() {
    for b in backends() {
        let app = spawn_app(b).await;
        some_history(&app, 3).await;
        let cp = keep_checkpoint(&app, "cp.jwt").await;
        let config = app.config_path.clone();
        let db = app.stop().await;
        // (e) The untouched log verifies with its checkpoint.
        let (ok, out) = verify_with(&config, &[&cp]);
        assert!(ok && out.contains("intact"), "{b:?}: {out}");
        assert!(out.contains("matches the checkpoint"), "{b:?}: {out}");

        let keep = truncate(&db, 3).await;
        // Without a checkpoint this cannot be told apart from a shorter log (docs/audit.md).
        let (ok, out) = verify(&config);
        assert!(ok, "{b:?}: {out}");
        let (ok, out) = verify_with(&config, &[&cp]);
        assert!(!ok, "{b:?}: verify passed a truncated log: {out}");
        assert!(
            out.contains(&format!("entry {}", keep + 1)) && out.contains("removed from the end"),
            "{b:?}: {out}"
        );
    }
}

/// (c) RFC 9162 §8.1.4: two different heads for one size are a fork. The log is cut back and
/// the server, restarted, writes other entries in the place of the checkpointed ones; and a
/// checkpoint (signed with the server's own key, taken from the database with the KEK) that
/// names another hash at its seq.
#[tokio::test]
async fn rfc9162_a_fork_is_detected_at_the_checkpointed_entry() {
    for b in backends() {
        let app = spawn_app(b).await;
        some_history(&app, 3).await;
        let cp = keep_checkpoint(&app, "cp.jwt").await;
        let head = app.audit_len().await;
        let db = app.stop().await;
        truncate(&db, 3).await;
        let app = spawn_on(db, "").await;
        some_history(&app, 3).await;
        assert!(app.audit_len().await > head, "{b:?}");
        let config = app.config_path.clone();
        let db = app.stop().await;
        let (ok, out) = verify(&config);
        assert!(ok, "{b:?}: the forked chain itself is well formed: {out}");
        let (ok, out) = verify_with(&config, &[&cp]);
        assert!(!ok, "{b:?}: verify passed a fork: {out}");
        assert!(
            out.contains(&format!("entry {head}")) && out.contains("fork"),
            "{b:?}: {out}"
        );

        // A well-signed checkpoint whose hash differs from the entry at its seq.
        let kek = mandate::jose::Kek::from_bytes(&[7; 32]);
        let store = mandate::store::open(&db.url, 2).await.unwrap();
        let ring =
            mandate::jose::Keyring::from_rows(&store.load_keys().await.unwrap(), &kek).unwrap();
        store.close().await;
        let forged = ring
            .sign(
                TYP,
                &serde_json::json!({"iss": "x", "iat": 1, "seq": 2, "hash": hex::encode([1u8; 32])}),
            )
            .unwrap();
        let path = db.dir.path().join("forged.jwt");
        std::fs::write(&path, forged).unwrap();
        let (ok, out) = verify_with(&config, &[&path]);
        assert!(!ok, "{b:?}: {out}");
        assert!(
            out.contains("entry 2") && out.contains("differs from the signed checkpoint"),
            "{b:?}: {out}"
        );
    }
}

/// (d) RFC 9162 §4.10: a signed head is only as good as its signature. A checkpoint with a
/// bad signature, or signed by a key the server does not hold, is refused.
#[tokio::test]
async fn rfc9162_a_checkpoint_with_a_bad_signature_or_an_unknown_key_is_refused() {
    for b in backends() {
        let app = spawn_app(b).await;
        some_history(&app, 2).await;
        let cp = keep_checkpoint(&app, "cp.jwt").await;
        let config = app.config_path.clone();
        let db = app.stop().await;
        let genuine = std::fs::read_to_string(&cp).unwrap();

        let mut bad = genuine.trim().to_string();
        let last = bad.pop().unwrap();
        bad.push(if last == 'A' { 'B' } else { 'A' });
        let bad_path = db.dir.path().join("bad.jwt");
        std::fs::write(&bad_path, &bad).unwrap();
        let (ok, out) = verify_with(&config, &[&cp, &bad_path]);
        assert!(!ok, "{b:?}: {out}");
        assert!(
            out.contains("refused") && out.contains("bad signature"),
            "{b:?}: {out}"
        );

        // The same claims under a key of another server.
        let other_kek = mandate::jose::Kek::from_bytes(&[8; 32]);
        let mut row = mandate::jose::KeyMaterial::generate(&other_kek, 0);
        row.state = mandate::jose::KeyState::Current;
        let other = mandate::jose::Keyring::from_rows(&[row], &other_kek).unwrap();
        let payload = genuine.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        let foreign = db.dir.path().join("foreign.jwt");
        std::fs::write(&foreign, other.sign(TYP, &claims).unwrap()).unwrap();
        let (ok, out) = verify_with(&config, &[&foreign]);
        assert!(!ok, "{b:?}: {out}");
        assert!(
            out.contains("refused") && out.contains("does not know"),
            "{b:?}: {out}"
        );
        // Trusted only when the auditor names that key set.
        let jwks = db.dir.path().join("other-jwks.json");
        std::fs::write(&jwks, other.jwks()).unwrap();
        let (ok, out) = verify_args(&config, &[&foreign], &["--jwks", jwks.to_str().unwrap()]);
        assert!(ok, "{b:?}: {out}");
    }
}

/// RFC 9162 §4.10: the checkpoint endpoint signs the current head with the published key; the
/// CLI signs the same way; and the server refuses to sign a head whose entry does not verify
/// under the KEK (it never vouches for what a database writer made up).
#[tokio::test]
async fn rfc9162_checkpoints_sign_the_head_with_a_published_key() {
    for b in backends() {
        let app = spawn_app(b).await;
        some_history(&app, 2).await;
        let path = keep_checkpoint(&app, "cp.jwt").await;
        let (_, _, jwks) = app.get_json("/jwks.json").await;
        let mut keys = CheckpointKeys::default();
        keys.add_jwks(&jwks.to_string()).unwrap();
        let cp =
            mandate::audit::checkpoint::verify(&std::fs::read_to_string(&path).unwrap(), &keys)
                .unwrap();
        let log = app.audit_entries().await;
        let newest = log.iter().find(|e| e.seq == cp.seq).unwrap();
        assert_eq!(cp.hash, newest.hash, "{b:?}");
        assert_eq!(cp.iss, app.url, "{b:?}");

        let out = mandate_cli(
            &[
                "audit",
                "checkpoint",
                "--config",
                app.config_path.to_str().unwrap(),
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{b:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let from_cli =
            mandate::audit::checkpoint::verify(&String::from_utf8_lossy(&out.stdout), &keys)
                .unwrap();
        assert!(from_cli.seq >= cp.seq, "{b:?}");

        // The newest entry rewritten: neither the CLI nor the (restarted) server signs it.
        let newest = app.audit_len().await;
        let db = app.stop().await;
        exec_sql(
            &db,
            &format!("UPDATE audit_log SET detail = '{{}}' WHERE seq = {newest}"),
        )
        .await;
        let app = spawn_on(db, "").await;
        let out = mandate_cli(
            &[
                "audit",
                "checkpoint",
                "--config",
                app.config_path.to_str().unwrap(),
            ],
            None,
        );
        assert!(!out.status.success(), "{b:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("does not verify"),
            "{b:?}"
        );
        let resp = app
            .http
            .get(format!("{}/audit/checkpoint", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500, "{b:?}");
        app.stop().await;
    }
}

/// Applies only the migrations before `version`: a database as an older release left it.
async fn migrate_before(db: &TestDb, version: i64) {
    use std::borrow::Cow;
    match db.backend {
        Backend::Sqlite => {
            let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&db.url)
                .unwrap()
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            let mut m = sqlx::migrate!("migrations/sqlite");
            m.migrations = Cow::Owned(
                m.migrations
                    .iter()
                    .filter(|m| m.version < version)
                    .cloned()
                    .collect(),
            );
            m.run(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let mut m = sqlx::migrate!("migrations/postgres");
            m.migrations = Cow::Owned(
                m.migrations
                    .iter()
                    .filter(|m| m.version < version)
                    .cloned()
                    .collect(),
            );
            m.run(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

/// SPEC last invariant, across the upgrade (migration 0009): entries the unkeyed code wrote
/// stay verifiable as plain SHA-256 entries, are sealed at the server's first start by a keyed
/// entry whose MAC covers the last of them, and a rewrite of them is caught at that seal. Until
/// the seal, a log of plain entries cannot be told from one recomputed without the KEK, so
/// verify refuses it.
#[tokio::test]
async fn spec_audit_invariant_entries_from_before_the_keyed_chain_are_sealed_at_start() {
    for b in backends() {
        let db = test_db(b).await;
        migrate_before(&db, 9).await;
        let mut prev = mandate::audit::GENESIS.to_vec();
        for seq in 1..=3 {
            let mut e = AuditEntry {
                seq,
                ts: 1_700_000_000 + seq,
                kind: "token.issued".into(),
                subject: Some("alice".into()),
                actors: "[]".into(),
                client_id: Some("agent-runtime".into()),
                session: None,
                token_jti: None,
                detail: "{}".into(),
                policy_version: None,
                chain_version: mandate::audit::CHAIN_PLAIN,
                prev_hash: prev.clone(),
                hash: Vec::new(),
            };
            e.hash = e.plain_digest(&prev).to_vec();
            exec_sql(
                &db,
                &format!(
                    "INSERT INTO audit_log (seq, ts, kind, subject, actors, client_id, detail, \
                     prev_hash, hash) VALUES ({seq}, {}, 'token.issued', 'alice', '[]', \
                     'agent-runtime', '{{}}', {}, {})",
                    e.ts,
                    blob(&db, &e.prev_hash),
                    blob(&db, &e.hash)
                ),
            )
            .await;
            prev = e.hash;
        }
        move_head(&db, 3, &prev).await;
        // The signing keys the older release made, so that the first start rotates nothing.
        let kek = mandate::jose::Kek::from_bytes(&[7; 32]);
        for state in [
            mandate::jose::KeyState::Current,
            mandate::jose::KeyState::Next,
        ] {
            let k = mandate::jose::KeyMaterial::generate(&kek, 1_700_000_000);
            exec_sql(
                &db,
                &format!(
                    "INSERT INTO signing_keys (kid, state, private_sealed, public_jwk, created_at, \
                     activated_at) VALUES ('{}', '{}', {}, '{}', 1700000000, 1700000000)",
                    k.kid,
                    state.as_str(),
                    blob(&db, &k.private_sealed),
                    k.public_jwk
                ),
            )
            .await;
        }
        let config = write_config(&db, "");
        let (ok, out) = verify(&config);
        assert!(!ok && out.contains("not keyed"), "{b:?}: {out}");

        let app = spawn_on(db, "").await;
        let config = app.config_path.clone();
        let db = app.stop().await;
        let (ok, out) = verify(&config);
        assert!(ok, "{b:?}: {out}");
        assert!(
            out.contains("entries 1-3 were written before"),
            "{b:?}: {out}"
        );
        let mut log = entries(&db).await;
        assert_eq!(log[3].kind, "audit.chain_keyed", "{b:?}");

        log[1].subject = Some("mallory".into());
        recompute_plain(&db, &mut log, 2, false).await;
        let (ok, out) = verify(&config);
        assert!(!ok, "{b:?}: {out}");
        assert!(
            out.contains("entry 4") && out.contains("KEK"),
            "{b:?}: {out}"
        );
    }
}
