//! `spawn_app()`: a real server on port 0 with its own database (a temp SQLite file, or a fresh
//! schema in the PostgreSQL named by `TEST_DATABASE_URL`), driven over HTTP. In-process servers
//! run on a [`TestClock`] that stands still until a test advances it: expiry and intervals are
//! tested by moving time, not by sleeping, and no verdict depends on how fast the machine is.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use mandate::App;
use mandate::clock::{Clock, SystemClock, TestClock};
use mandate::config::Config;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// RFC 8693 §2.1 grant type and §3 token types, as the exchange tests send them.
pub const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The confidential client of the default test config that may exchange tokens.
pub const AGENT_HOST: (&str, &str) = ("agent-host", "host-secret");

/// RFC 8693 §2.1 token exchange at `/token` by `client`: `subject` acted on by the agent whose
/// agent token is `actor` (none: impersonation, which mandate refuses), plus `extra` parameters.
pub async fn token_exchange(
    app: &TestApp,
    client: (&str, &str),
    subject: &str,
    actor: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", TE),
        ("subject_token", subject),
        ("subject_token_type", AT),
    ];
    if let Some(a) = actor {
        form.extend([("actor_token", a), ("actor_token_type", JWT)]);
    }
    form.extend_from_slice(extra);
    let resp = app.post_form("/token", Some(client), &form).await;
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The claims of a JWT, read without verifying it (the tests' own view of what was issued).
pub fn claims(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("the payload is base64url"),
    )
    .expect("the payload is JSON")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// SQLite always; PostgreSQL when `TEST_DATABASE_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    if std::env::var("TEST_DATABASE_URL").is_ok() {
        v.push(Backend::Postgres);
    }
    v
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub dir: tempfile::TempDir,
    /// The time of every in-process server on this database: it starts at the real time (so
    /// tokens made by the tests' own signers are current) and moves only when advanced. It
    /// lives with the database so a restarted server goes on from where the last one stopped.
    pub clock: Arc<TestClock>,
}

pub async fn test_db(backend: Backend) -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("mandate.db").display()),
        Backend::Postgres => {
            let base = std::env::var("TEST_DATABASE_URL").unwrap();
            let schema = format!("t_{}", hex::encode(mandate::crypto::random_bytes::<8>()));
            let pool = sqlx::PgPool::connect(&base).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-c%20search_path%3D{schema}")
        }
    };
    std::fs::write(
        dir.path().join("kek"),
        base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    )
    .unwrap();
    let clock = Arc::new(TestClock::new(SystemClock.now()));
    TestDb {
        backend,
        url,
        dir,
        clock,
    }
}

/// A config with two confidential clients and two resource servers.
pub fn config_text(db: &TestDb, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
database_url = "{url}"
kek_file = "{kek}"

[keys]
check_interval = "1s"

[[clients]]
client_id = "agent-runtime"
client_secret = "s3cret"
grant_types = ["client_credentials"]
scopes = ["orders:read", "orders:write"]

[[clients]]
client_id = "other-client"
client_secret = "other-secret"
grant_types = ["client_credentials"]
scopes = ["orders:read"]

[[clients]]
client_id = "no-grants"
client_secret = "ng-secret"
scopes = ["orders:read"]

[[clients]]
client_id = "orders-api"
client_secret = "rs-secret"
introspect = true
audience = "orders-api"

[[clients]]
client_id = "billing-api"
client_secret = "billing-secret"
introspect = true

[[clients]]
client_id = "cli"
public = true
redirect_uris = ["http://127.0.0.1:9999/callback"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["orders:read", "orders:write", "payments:write"]

[[users]]
username = "alice"
password = "alice-password"
email = "alice@example.com"
scopes = ["orders:read", "orders:write", "payments:write"]

[[users]]
username = "bob"
password = "bob-password"
scopes = ["orders:read"]
{extra}
"#,
        url = db.url,
        kek = db.dir.path().join("kek").display(),
    )
}

pub struct TestApp {
    pub url: String,
    /// `http://ADDR/metrics` when the config sets `[metrics] listen`.
    pub metrics_url: Option<String>,
    pub http: reqwest::Client,
    pub db: TestDb,
    pub config_path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, "").await
}

pub async fn spawn_app_with(backend: Backend, extra: &str) -> TestApp {
    let db = test_db(backend).await;
    spawn_on(db, extra).await
}

/// Writes the test config next to the database and returns its path.
pub fn write_config(db: &TestDb, extra: &str) -> PathBuf {
    let path = db.dir.path().join("mandate.toml");
    std::fs::write(&path, config_text(db, extra)).unwrap();
    path
}

pub async fn spawn_on(db: TestDb, extra: &str) -> TestApp {
    spawn_on_top(db, "", extra).await
}

/// [`spawn_on`] with top-level keys (`issuer = ...`) placed before the config's tables.
pub async fn spawn_on_top(db: TestDb, top: &str, extra: &str) -> TestApp {
    let config_path = write_config(&db, extra);
    if !top.is_empty() {
        let text = std::fs::read_to_string(&config_path).unwrap();
        std::fs::write(&config_path, format!("{top}\n{text}")).unwrap();
    }
    let text = std::fs::read_to_string(&config_path).unwrap();
    let config = Config::from_toml(&text, "test.toml", Vec::new()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = match &config.metrics.listen {
        Some(m) => Some(TcpListener::bind(m).await.unwrap()),
        None => None,
    };
    let mut app = App::build_with_clock(config, addr, db.clock.clone())
        .await
        .unwrap();
    let metrics_url = match metrics {
        Some(m) => {
            let url = format!("http://{}/metrics", m.local_addr().unwrap());
            app = app.with_metrics(m);
            Some(url)
        }
        None => None,
    };
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(listener, async {
        let _ = rx.await;
    }));
    TestApp {
        url: format!("http://{addr}"),
        metrics_url,
        http: reqwest::Client::new(),
        db,
        config_path,
        shutdown: Some(tx),
        task: Some(task),
    }
}

impl TestApp {
    /// The test's view of a server running as a process (`spawn_process*`) on `db`, so that the
    /// flows written for in-process servers run against it. Stopping it is the process's
    /// business.
    pub fn of_process(db: TestDb, config_path: PathBuf, server: &ServerProcess) -> TestApp {
        TestApp {
            url: server.url.clone(),
            metrics_url: server.metrics.clone(),
            http: reqwest::Client::new(),
            db,
            config_path,
            shutdown: None,
            task: None,
        }
    }

    pub fn label(&self) -> String {
        format!("{:?}", self.db.backend)
    }

    /// Moves the server's clock forward, as if `secs` seconds had passed.
    pub fn advance(&self, secs: i64) {
        self.db.clock.advance(secs);
    }

    pub async fn post_form(
        &self,
        path: &str,
        auth: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.url)).form(form);
        if let Some((id, secret)) = auth {
            req = req.basic_auth(id, Some(secret));
        }
        req.send().await.unwrap()
    }

    /// A client_credentials token for `agent-runtime`.
    pub async fn cc_token(&self, extra: &[(&str, &str)]) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        let resp = self
            .post_form("/token", Some(("agent-runtime", "s3cret")), &form)
            .await;
        assert_eq!(resp.status(), 200, "{}", self.label());
        let v: Value = resp.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    pub async fn introspect_as(&self, rs: (&str, &str), token: &str) -> Value {
        let resp = self
            .post_form("/introspect", Some(rs), &[("token", token)])
            .await;
        assert_eq!(resp.status(), 200, "{}", self.label());
        resp.json().await.unwrap()
    }

    pub async fn introspect(&self, token: &str) -> Value {
        self.introspect_as(("orders-api", "rs-secret"), token).await
    }

    pub async fn get_json(
        &self,
        path: &str,
    ) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, headers, resp.json().await.unwrap_or(Value::Null))
    }

    /// The number of audit entries, read straight from the database.
    pub async fn audit_len(&self) -> i64 {
        let store = mandate::store::open(&self.db.url, 2).await.unwrap();
        let (seq, _) = store.audit_head().await.unwrap();
        store.close().await;
        seq
    }

    /// Every audit entry, oldest first, read straight from the database.
    pub async fn audit_entries(&self) -> Vec<mandate::audit::AuditEntry> {
        let store = mandate::store::open(&self.db.url, 2).await.unwrap();
        let entries = store.audit_entries(0, 100_000).await.unwrap();
        store.close().await;
        entries
    }

    /// Graceful shutdown; returns the database for a restart.
    pub async fn stop(mut self) -> TestDb {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self.db
    }
}

/// Runs the `mandate` binary to completion.
pub fn mandate_cli(args: &[&str], kek_b64: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mandate"));
    cmd.args(args).env("MANDATE_LOG", "warn");
    if let Some(k) = kek_b64 {
        cmd.env("MANDATE_KEK", k);
    }
    cmd.output().unwrap()
}

/// `mandate keys rotate` against `app`'s config, as an operator runs it; panics if it fails.
pub fn rotate_keys(app: &TestApp) {
    let out = mandate_cli(
        &[
            "keys",
            "rotate",
            "--config",
            app.config_path.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `mandate serve` child process and its address.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub url: String,
    /// What the server printed as `metrics on URL`, when `[metrics] listen` is set.
    pub metrics: Option<String>,
}

pub async fn spawn_process(config_path: &std::path::Path) -> ServerProcess {
    spawn_process_logging(config_path, "warn", Stdio::inherit()).await
}

/// [`spawn_process`] with the log filter `MANDATE_LOG` and where its log (stderr) goes.
pub async fn spawn_process_logging(
    config_path: &std::path::Path,
    filter: &str,
    log: Stdio,
) -> ServerProcess {
    spawn_process_with(config_path, filter, log, &[]).await
}

/// [`spawn_process_logging`] with more environment variables.
pub async fn spawn_process_with(
    config_path: &std::path::Path,
    filter: &str,
    log: Stdio,
    env: &[(&str, &str)],
) -> ServerProcess {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--config", config_path.to_str().unwrap()])
        .env("MANDATE_LOG", filter)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut metrics = None;
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("server did not start in 30s")
            .unwrap()
            .expect("server exited before listening");
        if let Some(m) = line.strip_prefix("metrics on ") {
            metrics = Some(m.to_string());
            continue;
        }
        break line
            .strip_prefix("listening on ")
            .expect("the listening line")
            .to_string();
    };
    ServerProcess {
        child,
        url,
        metrics,
    }
}

/// Runs one SQL statement against the test database (to tamper with it).
pub async fn exec_sql(db: &TestDb, sql: &str) {
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}
