//! What mandate writes to its log (stderr), as an operator's log file or collector receives it.

/// A log that is not a terminal (a file, a pipe to a collector) gets plain text: no ANSI colour
/// escapes to strip or to garble a search.
#[test]
fn log_lines_to_a_file_or_pipe_carry_no_ansi_escapes() {
    let dir = tempfile::tempdir().unwrap();
    // No config file in the working directory: mandate warns and uses its defaults (a SQLite
    // file there), so there is a log line to look at.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
        .arg("migrate")
        .current_dir(dir.path())
        .env("MANDATE_LOG", "info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("mandate.toml not found"),
        "a warning was logged: {log}"
    );
    assert!(!log.contains('\u{1b}'), "no escape sequences: {log:?}");
}

/// `log_format = "json"`: every line the server writes is one JSON object, each line logged
/// while serving a request carries that request's id (the caller's `X-Request-Id` when it is a
/// plain token, else a fresh one, returned in the answer either way), and neither the client
/// secret nor the token a request carried appears in any line.
#[tokio::test]
async fn json_log_lines_parse_and_carry_the_request_id_but_no_secret() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mandate.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:0"
database_url = "sqlite://{db}"
log_format = "json"

[[clients]]
client_id = "agent-host"
client_secret = "correct-horse-battery-staple"
grant_types = ["client_credentials"]
scopes = ["orders:read"]

[[clients]]
client_id = "orders-api"
client_secret = "rs-secret"
grant_types = []
introspect = true
audience = "orders-api"
"#,
            db = dir.path().join("m.db").display(),
        ),
    )
    .unwrap();
    let server = crate::helpers::spawn_process_logging(
        &config,
        "info,mandate::http=debug",
        std::process::Stdio::piped(),
    )
    .await;
    let (mut child, url) = (server.child, server.url);
    let http = reqwest::Client::new();

    // A caller's id is kept and returned.
    let r = http
        .get(format!("{url}/.well-known/oauth-authorization-server"))
        .header("x-request-id", "lb-7f3a.42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "lb-7f3a.42");
    // One that could forge a log line is replaced, not logged.
    let r = http
        .get(format!("{url}/.well-known/oauth-authorization-server"))
        .header("x-request-id", "x\",\"level\":\"ERROR")
        .send()
        .await
        .unwrap();
    let replaced = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(replaced, "x\",\"level\":\"ERROR");
    // A token is issued; then a wrong secret and the token itself are presented.
    let token: serde_json::Value = http
        .post(format!("{url}/token"))
        .basic_auth("agent-host", Some("correct-horse-battery-staple"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "orders:read"),
            ("audience", "orders-api"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().expect("a token").to_string();
    let r = http
        .post(format!("{url}/token"))
        .basic_auth("agent-host", Some("wrong-secret-value-123"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let refused = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(refused.len() > 12, "a fresh id: {refused}");
    let r = http
        .post(format!("{url}/revoke"))
        .basic_auth("agent-host", Some("correct-horse-battery-staple"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // SIGTERM: the server drains and exits, and its log ends.
    let pid = child.id().unwrap() as i32;
    sigterm(pid);
    let mut log = String::new();
    let mut stderr = child.stderr.take().unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stderr.read_to_string(&mut log),
    )
    .await
    .expect("the server exited")
    .unwrap();
    let _ = child.wait().await;

    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let answered = |id: &str| {
        lines.iter().find(|l| {
            l["fields"]["message"] == "answered"
                && l["span"]["id"] == id
                && l["span"]["name"] == "request"
        })
    };
    let kept = answered("lb-7f3a.42").unwrap_or_else(|| panic!("the caller's id: {log}"));
    assert_eq!(kept["fields"]["status"], 200);
    assert_eq!(
        kept["span"]["path"],
        "/.well-known/oauth-authorization-server"
    );
    assert!(answered(&replaced).is_some(), "the replacement id: {log}");
    assert_eq!(answered(&refused).unwrap()["fields"]["status"], 401);
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "mandate started")
    );
    for secret in [
        "correct-horse-battery-staple",
        "wrong-secret-value-123",
        &access,
    ] {
        assert!(!log.contains(secret), "{secret} leaked into the log: {log}");
    }
}

/// Sends SIGTERM with the `kill` command (no unsafe code in the tests).
fn sigterm(pid: i32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}
