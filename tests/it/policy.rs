//! Cedar policies in the running server: refusals name the policy, edits take effect without a
//! restart, invalid edits are refused while the old set keeps serving, and every audit entry is
//! stamped with the policy version in force.

use std::time::Duration;

use serde_json::Value;

use crate::agents::TestAgent;
use crate::flows::alice_token;
use crate::helpers::*;

const POLICY_V1: &str = r#"
@id("orders-read-only")
@max_ttl("2m")
permit (principal, action == Mandate::Action::"delegate", resource)
when { ["orders:read"].containsAll(context.scopes) };

@id("no-sub-bot")
forbid (principal == Mandate::Agent::"sub-bot", action == Mandate::Action::"delegate", resource);
"#;

const POLICY_V2: &str = r#"
@id("orders-read-only")
@max_ttl("1m")
permit (principal, action == Mandate::Action::"delegate", resource)
when { ["orders:read"].containsAll(context.scopes) };
"#;

fn extra(a: &TestAgent, b: &TestAgent, policy_file: &std::path::Path) -> String {
    format!(
        "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\ngrant_types = [\"{TE}\"]\n{}{}\
         [policy]\nfiles = [\"{}\"]\n",
        a.toml(),
        b.toml(),
        policy_file.display()
    )
}

async fn exchange(app: &TestApp, subject: &str, actor: &str, scope: &str) -> (u16, Value) {
    token_exchange(app, AGENT_HOST, subject, Some(actor), &[("scope", scope)]).await
}

async fn audit_since(app: &TestApp, after: i64) -> Vec<mandate::audit::AuditEntry> {
    let store = mandate::store::open(&app.db.url, 2).await.unwrap();
    let e = store.audit_entries(after, 1000).await.unwrap();
    store.close().await;
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_decide_explain_and_reload_without_a_restart() {
    let (a, b) = (TestAgent::new("build-bot"), TestAgent::new("sub-bot"));
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("orders.cedar");
        std::fs::write(&file, POLICY_V1).unwrap();
        let app = spawn_app_with(backend, &extra(&a, &b, &file)).await;
        let alice = alice_token(&app, "orders:read orders:write").await;
        let start = app.audit_len().await;

        // Permitted, and @max_ttl caps the lifetime.
        let (status, v) = exchange(&app, &alice, &a.attest(&app).await, "orders:read").await;
        assert_eq!(status, 200, "{backend:?}: {v}");
        assert!(v["expires_in"].as_i64().unwrap() <= 120, "{v}");
        // Only the scopes are refused: invalid_scope (SPEC "Policy (Cedar)").
        let (status, v) = exchange(&app, &alice, &a.attest(&app).await, "orders:write").await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_scope")),
            "{v}"
        );
        // A forbid: the description names the policy and its file.
        let (status, v) = exchange(&app, &alice, &b.attest(&app).await, "orders:read").await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{v}"
        );
        let d = v["error_description"].as_str().unwrap();
        assert!(
            d.contains("no-sub-bot") && d.contains("orders.cedar"),
            "{d}"
        );
        let entries = audit_since(&app, start).await;
        let refused = entries
            .iter()
            .find(|e| e.kind == "token.exchange_refused" && e.detail.contains("no-sub-bot"))
            .expect("the refusal is audited with the refusing policy");
        assert_eq!(refused.actors, r#"["agent:sub-bot"]"#);
        let v1 = refused.policy_version.clone().expect("stamped");
        assert!(
            entries
                .iter()
                .all(|e| e.policy_version.as_deref() == Some(v1.as_str()))
        );

        // An invalid edit is refused; the old set keeps serving.
        std::fs::write(&file, "permit (principal, action resource);").unwrap();
        let mut refused_seen = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if audit_since(&app, start)
                .await
                .iter()
                .any(|e| e.kind == "policy.reload_refused")
            {
                refused_seen = true;
                break;
            }
        }
        assert!(
            refused_seen,
            "{backend:?}: the invalid edit was noticed and refused"
        );
        let (status, _) = exchange(&app, &alice, &b.attest(&app).await, "orders:read").await;
        assert_eq!(status, 400, "the forbid still applies");

        // A valid edit takes effect without a restart.
        std::fs::write(&file, POLICY_V2).unwrap();
        let mut last = (0, Value::Null);
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            last = exchange(&app, &alice, &b.attest(&app).await, "orders:read").await;
            if last.0 == 200 {
                break;
            }
        }
        assert_eq!(
            last.0, 200,
            "{backend:?}: the new policy serves: {}",
            last.1
        );
        assert!(last.1["expires_in"].as_i64().unwrap() <= 60);
        let entries = audit_since(&app, start).await;
        let reloaded = entries
            .iter()
            .find(|e| e.kind == "policy.reloaded")
            .expect("reload audited");
        let v2 = reloaded.policy_version.clone().unwrap();
        assert_ne!(v1, v2, "entries after the reload carry the new version");
        app.stop().await;
    }
}

#[tokio::test]
async fn sighup_reloads_policies() {
    let (a, b) = (TestAgent::new("build-bot"), TestAgent::new("sub-bot"));
    let db = test_db(Backend::Sqlite).await;
    let file = db.dir.path().join("orders.cedar");
    std::fs::write(&file, POLICY_V1).unwrap();
    let config = write_config(&db, &extra(&a, &b, &file));
    let server = spawn_process(&config).await;
    // The watcher (and its SIGHUP handler) starts before the server listens; an answered
    // request means the runtime has run the tasks queued before it.
    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    // New content under the same name and modification time, put in place by one rename: the
    // watcher's every-two-seconds look (names and modification times) sees no change at any
    // moment, so only the signal can make the server read the file again. That is checked
    // here instead of waiting out a poll to prove that nothing happened.
    let next = db.dir.path().join("orders.next");
    std::fs::write(&next, POLICY_V2).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&next)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&next, &file).unwrap();
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        mtime,
        "the edit is invisible to the modification-time watcher"
    );
    let store = mandate::store::open(&db.url, 2).await.unwrap();
    let reloads = |entries: &[mandate::audit::AuditEntry]| {
        entries
            .iter()
            .filter(|e| e.kind == "policy.reloaded")
            .count()
    };
    assert_eq!(
        reloads(&store.audit_entries(0, 1000).await.unwrap()),
        0,
        "no reload without a signal"
    );
    let pid = server.child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut n = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        n = reloads(&store.audit_entries(0, 1000).await.unwrap());
        if n > 0 {
            break;
        }
    }
    assert_eq!(n, 1, "SIGHUP reloaded the policies");
    store.close().await;
}

#[tokio::test]
async fn an_invalid_policy_stops_the_server_naming_file_and_line() {
    let db = test_db(Backend::Sqlite).await;
    let file = db.dir.path().join("bad.cedar");
    std::fs::write(&file, "@id(\"ok\")\npermit (principal, action, resource);\n\npermit (principal, action, resource)\nwhen { context.nope };\n").unwrap();
    let config = write_config(
        &db,
        &format!("[policy]\nfiles = [\"{}\"]\n", file.display()),
    );
    let out = mandate_cli(&["serve", "--config", config.to_str().unwrap()], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.cedar:5") && err.contains("`bad.cedar#2`") && !err.contains("\\u{1f}"),
        "{err}"
    );
    let out = mandate_cli(
        &["policy", "check", "--config", config.to_str().unwrap()],
        None,
    );
    assert!(!out.status.success());
}

#[test]
fn policy_cli_checks_and_simulates_the_example_policies() {
    let root = env!("CARGO_MANIFEST_DIR");
    let config = format!("{root}/policies/example.toml");
    let out = mandate_cli(&["policy", "check", "--config", &config], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("policies valid"));
    let out = mandate_cli(
        &[
            "policy",
            "test",
            &format!("{root}/policies/cases.toml"),
            "--config",
            &config,
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("0 failed"), "{stdout}");
    // A case that contradicts the policies fails, naming it.
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        "[[case]]\nname = \"report-bot deploys\"\nagent = \"report-bot\"\nuser = \"alice\"\nscopes = [\"deploy:staging\"]\nexpect = \"permit\"\n",
    )
    .unwrap();
    let out = mandate_cli(
        &[
            "policy",
            "test",
            cases.to_str().unwrap(),
            "--config",
            &config,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  report-bot deploys"));
}
