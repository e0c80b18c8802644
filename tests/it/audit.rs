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

// `mandate audit export` for a SIEM, and `mandate audit verify --file` on what it wrote: an
// export verifies without the database, under the KEK, and an edit to it is caught at the entry.

use mandate::clock::Clock;

/// `mandate audit export --config CONFIG ARGS...` as an operator runs it.
fn export(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["audit", "export", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    mandate_cli(&all, None)
}

/// The export's JSON lines, after checking that the command succeeded.
fn export_lines(config: &std::path::Path, args: &[&str]) -> Vec<String> {
    let out = export(config, args);
    assert!(
        out.status.success(),
        "export {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn seqs(lines: &[String]) -> Vec<i64> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

/// A config for a machine that holds the KEK but no database: `verify --file` must not need one.
fn verifier_config(db: &TestDb) -> std::path::PathBuf {
    let path = db.dir.path().join("verifier.toml");
    std::fs::write(
        &path,
        format!(
            "database_url = \"sqlite://{}\"\nkek_file = \"{}\"\n",
            db.dir.path().join("no-such-dir").join("none.db").display(),
            db.dir.path().join("kek").display()
        ),
    )
    .unwrap();
    path
}

/// `mandate audit verify --file FILE ARGS...`: the exit code and stdout (stderr when it could
/// not run).
fn verify_file(
    config: &std::path::Path,
    file: &std::path::Path,
    args: &[&str],
) -> (Option<i32>, String) {
    let mut all = vec![
        "audit",
        "verify",
        "--config",
        config.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = mandate_cli(&all, None);
    let text = if out.stdout.is_empty() {
        &out.stderr
    } else {
        &out.stdout
    };
    (
        out.status.code(),
        String::from_utf8_lossy(text).into_owned(),
    )
}

fn write_lines(db: &TestDb, name: &str, lines: &[String]) -> std::path::PathBuf {
    let path = db.dir.path().join(name);
    std::fs::write(
        &path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn audit_export_writes_every_entry_with_its_hashes_and_verifies_without_the_database() {
    for b in backends() {
        let app = spawn_app(b).await;
        some_history(&app, 3).await;
        let cp = keep_checkpoint(&app, "cp.jwt").await;
        let (_, _, jwks) = app.get_json("/jwks.json").await;
        let jwks_path = app.db.dir.path().join("jwks.json");
        std::fs::write(&jwks_path, jwks.to_string()).unwrap();
        let config = app.config_path.clone();
        let db = app.stop().await;
        let log = entries(&db).await;

        let out = export(&config, &["--format", "jsonl"]);
        assert_eq!(out.status.code(), Some(0), "{b:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("exported entries 1-{}", log.len())),
            "{b:?}: {stderr}"
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        // Every entry, in order, exactly as stored, hashes in hex.
        assert_eq!(lines.len(), log.len(), "{b:?}");
        for (line, e) in lines.iter().zip(&log) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for field in [
                "seq",
                "ts",
                "kind",
                "subject",
                "actors",
                "client_id",
                "session",
                "token_jti",
                "detail",
                "policy_version",
                "chain_version",
                "prev_hash",
                "hash",
            ] {
                assert!(v.get(field).is_some(), "{b:?}: no {field} in {line}");
            }
            assert_eq!(v["hash"], hex::encode(&e.hash), "{b:?}");
            assert_eq!(
                &serde_json::from_str::<AuditEntry>(line).unwrap(),
                e,
                "{b:?}"
            );
        }
        // Nothing of the KEK in it (the export does not read it).
        let kek = std::fs::read_to_string(db.dir.path().join("kek")).unwrap();
        assert!(
            !text.contains(kek.trim()) && !stderr.contains(kek.trim()),
            "{b:?}"
        );

        let file = write_lines(&db, "export.jsonl", &lines);
        let verifier = verifier_config(&db);
        let (code, out) = verify_file(&verifier, &file, &[]);
        assert_eq!(code, Some(0), "{b:?}: {out}");
        assert!(
            out.contains(&format!(
                "audit export intact: entries 1-{n} ({n} entries)",
                n = log.len()
            )),
            "{b:?}: {out}"
        );
        assert!(out.contains("removed from its end"), "{b:?}: {out}");

        // From standard input, as a pipe from the export would give it.
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["audit", "verify", "--config", verifier.to_str().unwrap()])
            .args(["--file", "-"])
            .env("MANDATE_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{b:?}: {stdout}");
        assert!(stdout.contains("audit export intact"), "{b:?}: {stdout}");

        // RFC 9162 §8.1.4 with an export: a checkpoint kept from before, checked against the
        // JWK Set kept with it, is matched; an export cut back before it is not.
        let cp_args = [
            "--checkpoint",
            cp.to_str().unwrap(),
            "--jwks",
            jwks_path.to_str().unwrap(),
        ];
        let (code, out) = verify_file(&verifier, &file, &cp_args);
        assert_eq!(code, Some(0), "{b:?}: {out}");
        assert!(out.contains("matches the checkpoint"), "{b:?}: {out}");
        let cp_seq = mandate::audit::checkpoint::verify(&std::fs::read_to_string(&cp).unwrap(), &{
            let mut k = CheckpointKeys::default();
            k.add_jwks(&jwks.to_string()).unwrap();
            k
        })
        .unwrap()
        .seq;
        let cut = write_lines(&db, "cut.jsonl", &lines[..cp_seq as usize - 1]);
        let (code, out) = verify_file(&verifier, &cut, &[]);
        assert_eq!(
            code,
            Some(0),
            "{b:?}: without a checkpoint a shorter export verifies: {out}"
        );
        let (code, out) = verify_file(&verifier, &cut, &cp_args);
        assert_eq!(code, Some(1), "{b:?}: {out}");
        assert!(
            out.contains(&format!("entry {cp_seq}")) && out.contains("removed from the end"),
            "{b:?}: {out}"
        );
        // Checkpoints need the key set kept with them: this verification reads no database.
        let (code, out) = verify_file(&verifier, &file, &cp_args[..2]);
        assert_eq!(code, Some(2), "{b:?}: {out}");
        assert!(out.contains("needs --jwks"), "{b:?}: {out}");
    }
}

#[tokio::test]
async fn audit_verify_file_names_the_entry_of_a_changed_removed_swapped_or_garbled_line() {
    for b in backends() {
        let (db, config) = app_with_history(b).await;
        let lines = export_lines(&config, &[]);
        assert!(lines.len() >= 6, "{b:?}");
        let verifier = verifier_config(&db);

        let mut changed = lines.clone();
        let mut v: serde_json::Value = serde_json::from_str(&changed[2]).unwrap();
        v["subject"] = "mallory".into();
        changed[2] = v.to_string();
        let mut removed = lines.clone();
        removed.remove(3);
        let mut swapped = lines.clone();
        swapped.swap(2, 3);
        let mut garbled = lines.clone();
        garbled[1] = "this is not an audit entry".into();
        let cases = [
            (
                "changed",
                changed,
                "line 3: audit entry 3: content does not match",
            ),
            ("removed", removed, "line 4: audit entry 4: missing"),
            ("swapped", swapped, "line 3: audit entry 3: missing"),
            (
                "garbled",
                garbled,
                "line 2: not an audit entry (the line after entry 1)",
            ),
        ];
        for (what, tampered, expect) in cases {
            let file = write_lines(&db, &format!("{what}.jsonl"), &tampered);
            let (code, out) = verify_file(&verifier, &file, &[]);
            assert_eq!(code, Some(1), "{b:?} {what}: {out}");
            assert!(
                out.contains("audit export BROKEN") && out.contains(expect),
                "{b:?} {what}: {out}"
            );
        }
    }
}

#[tokio::test]
async fn audit_export_since_an_entry_or_a_time_gives_the_rest_of_the_log_and_it_verifies() {
    for b in backends() {
        let app = spawn_app(b).await;
        some_history(&app, 2).await;
        app.advance(3600);
        let since = app.db.clock.now();
        some_history(&app, 2).await;
        let config = app.config_path.clone();
        let db = app.stop().await;
        let log = entries(&db).await;
        let last = log.last().unwrap().seq;
        // The entries of the second batch, and only those, are stamped at or after `since`.
        let first = log.iter().find(|e| e.ts >= since).unwrap().seq;
        assert!(first > 1, "{b:?}");
        assert!(
            log.iter().filter(|e| e.seq >= first).all(|e| e.ts >= since),
            "{b:?}"
        );
        let verifier = verifier_config(&db);

        let after = (first - 1).to_string();
        let by_seq = export_lines(&config, &["--since", &after]);
        assert_eq!(seqs(&by_seq), (first..=last).collect::<Vec<_>>(), "{b:?}");
        let time = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(since as u64),
        )
        .to_string();
        let by_time = export_lines(&config, &["--since", &time]);
        assert_eq!(by_time, by_seq, "{b:?} --since {time}");
        // The same instant an hour east of UTC (RFC 3339 §5.6 time-numoffset).
        let east = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(since as u64 + 3600),
        )
        .to_string()
        .replace('Z', "+01:00");
        assert_eq!(
            export_lines(&config, &["--since", &east]),
            by_seq,
            "{b:?} --since {east}"
        );

        let file = write_lines(&db, "since.jsonl", &by_time);
        let (code, out) = verify_file(&verifier, &file, &[]);
        assert_eq!(code, Some(0), "{b:?}: {out}");
        assert!(
            out.contains(&format!("audit export intact: entries {first}-{last}"))
                && out.contains(&format!(
                    "entries before {first} are not in the export and were not verified"
                )),
            "{b:?}: {out}"
        );
        // A tampered entry in a partial export is still caught.
        let mut changed = by_time.clone();
        let mut v: serde_json::Value = serde_json::from_str(&changed[1]).unwrap();
        v["detail"] = r#"{"forged":true}"#.into();
        changed[1] = v.to_string();
        let file = write_lines(&db, "since-changed.jsonl", &changed);
        let (code, out) = verify_file(&verifier, &file, &[]);
        assert_eq!(code, Some(1), "{b:?}: {out}");
        assert!(
            out.contains(&format!("audit entry {}", first + 1)),
            "{b:?}: {out}"
        );

        // Past the newest entry: nothing to export, and nothing to verify.
        let out = export(&config, &["--since", &last.to_string()]);
        assert_eq!(out.status.code(), Some(0), "{b:?}");
        assert!(out.stdout.is_empty(), "{b:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no entries to export"),
            "{b:?}"
        );
        let empty = write_lines(&db, "empty.jsonl", &[]);
        let (code, out) = verify_file(&verifier, &empty, &[]);
        assert_eq!(code, Some(1), "{b:?}: {out}");
        assert!(out.contains("no entries"), "{b:?}: {out}");
    }
}

#[tokio::test]
async fn audit_export_refuses_a_format_or_a_since_it_does_not_know() {
    let db = test_db(Backend::Sqlite).await;
    let config = write_config(&db, "");
    for (args, expect) in [
        (&["--format", "csv"][..], "possible values: jsonl"),
        (
            &["--since", "yesterday"][..],
            "neither an entry number nor an RFC 3339 time",
        ),
        (
            &["--since=-3"][..],
            "neither an entry number nor an RFC 3339 time",
        ),
    ] {
        let out = export(&config, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}

/// A log longer than two pages (`export::PAGE` entries are read at a time): every entry comes
/// out once, in order, across the page boundaries; `--since TIME` finds the first entry stamped
/// at or after it, in the middle of the log; both exports verify.
#[tokio::test]
async fn audit_export_pages_through_a_log_longer_than_a_page() {
    use mandate::audit::AuditEvent;
    use mandate::store::{BatchItem, WriteOp};
    const T0: i64 = 1_700_000_000;
    for b in backends() {
        let db = test_db(b).await;
        let config = write_config(&db, "");
        let store = mandate::store::open(&db.url, 2).await.unwrap();
        store.migrate().await.unwrap();
        let key = mandate::jose::Kek::from_bytes(&[7; 32])
            .audit_chain_key()
            .clone();
        // Batches of 500 entries, each stamped 10 s after the one before.
        let n = mandate::audit::export::PAGE * 2 + 345;
        let mut written = 0;
        while written < n {
            let events = (written..n.min(written + 500))
                .map(|i| {
                    let mut ev = AuditEvent::new("test.event");
                    ev.detail = serde_json::json!({ "i": i });
                    ev
                })
                .collect();
            let item = BatchItem {
                signals: Vec::new(),
                on_cut: None,
                op: WriteOp::None,
                audit: events,
            };
            store
                .commit_batch(&[item], T0 + written / 500 * 10, None, &key)
                .await
                .unwrap();
            written = n.min(written + 500);
        }
        store.close().await;
        let verifier = verifier_config(&db);

        let all = export_lines(&config, &[]);
        assert_eq!(seqs(&all), (1..=n).collect::<Vec<_>>(), "{b:?}");
        let file = write_lines(&db, "all.jsonl", &all);
        let (code, out) = verify_file(&verifier, &file, &[]);
        assert_eq!(code, Some(0), "{b:?}: {out}");
        assert!(
            out.contains(&format!("entries 1-{n} ({n} entries)")),
            "{b:?}: {out}"
        );

        // T0 + 15 s: after the second batch (entries 501-1000, stamped T0 + 10), before the
        // third (1001-1500, T0 + 20).
        let since = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(T0 as u64 + 15),
        )
        .to_string();
        let later = export_lines(&config, &["--since", &since]);
        assert_eq!(seqs(&later), (1001..=n).collect::<Vec<_>>(), "{b:?}");
        let file = write_lines(&db, "later.jsonl", &later);
        let (code, out) = verify_file(&verifier, &file, &[]);
        assert_eq!(code, Some(0), "{b:?}: {out}");
        assert!(out.contains(&format!("entries 1001-{n}")), "{b:?}: {out}");
    }
}
