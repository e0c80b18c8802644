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
