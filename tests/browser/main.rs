//! The web pages in a real browser: headless Chromium, driven over WebDriver (chromedriver) with
//! JavaScript switched off, while an agent polls `/token` over HTTP as CIBA poll mode wants.
//!
//! A human signs in on the approvals page, approves one high-risk request and denies another;
//! the agent's polling ends with a token and with `access_denied`. The agent delegates once
//! more, the human revokes the approved session on the sessions page, and introspection of
//! everything below it answers `{"active": false}` while the human's own token stays active.
//! Every page is saved as a PNG under `target/screenshots/` to be looked at.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`): `scripts/test` installs them. Without them this test fails, it is never
//! skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[allow(dead_code)]
#[path = "../it/agents.rs"]
mod agents;
#[allow(dead_code)]
#[path = "../it/flows.rs"]
mod flows;
#[allow(dead_code)]
#[path = "../it/helpers.rs"]
mod helpers;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use agents::TestAgent;
use helpers::{Backend, TestApp, backends, spawn_app_with};

/// Debian's; `BROWSER_TEST_CHROMIUM` and `BROWSER_TEST_CHROMEDRIVER` name others.
fn chromium() -> String {
    std::env::var("BROWSER_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn chromedriver() -> String {
    std::env::var("BROWSER_TEST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const CIBA: &str = "urn:openid:params:grant-type:ciba";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// How long any element may take to appear.
const WAIT: Duration = Duration::from_secs(10);
const FIRST: &str = "Pay invoice 4711 to ACME";
const SECOND: &str = "Wire 9000 EUR to an unknown account";

/// A chromedriver child on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
    log: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_browser() {
    let missing: Vec<String> = [chromium(), chromedriver()]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "the browser tests need {missing:?} (Debian packages chromium and chromium-driver): \
         run scripts/test, which installs them, or `apt-get install -y chromium chromium-driver`"
    );
}

fn start_driver() -> Driver {
    require_browser();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let profile = tempfile::tempdir().unwrap();
    let log = profile.path().join("chromedriver.log");
    let child = Command::new(chromedriver())
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; run scripts/test", chromedriver()));
    let mut driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
        log,
    };
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = driver.child.try_wait() {
            panic!("chromedriver exited at start ({status})");
        }
        assert!(
            started.elapsed() < WAIT,
            "chromedriver did not listen in {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    driver
}

/// A Chromium session with JavaScript disabled (every page must work without it).
async fn open_browser(driver: &Driver) -> Client {
    let profile = driver._profile.path().join("chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", "--window-size=1024,900",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {"profile.managed_default_content_settings.javascript": 2},
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(&driver.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "no Chromium session: {e}\nchromedriver log (last lines, newest first):\n{}",
                tail.join("\n")
            )
        })
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Chrome DevTools Protocol command, sent through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp(&'static str, Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (reqwest::Method, Option<String>) {
        let body = json!({"cmd": self.0, "params": self.1});
        (reqwest::Method::POST, Some(body.to_string()))
    }
}

async fn cdp(c: &Client, cmd: &'static str, params: Value) -> Value {
    c.issue_cmd(Cdp(cmd, params))
        .await
        .unwrap_or_else(|e| panic!("CDP {cmd}: {e}"))
}

/// Lays the page out in a `width` x `height` viewport (a phone's, with touch-style viewport
/// handling, when narrower than 600 px).
async fn viewport(c: &Client, width: u32, height: u32) {
    cdp(
        c,
        "Emulation.setDeviceMetricsOverride",
        json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
    )
    .await;
}

/// The laid-out page's `(width, height)` in CSS pixels.
async fn content_size(c: &Client) -> (f64, f64) {
    let m = cdp(c, "Page.getLayoutMetrics", json!({})).await;
    let size = &m["cssContentSize"];
    (
        size["width"].as_f64().unwrap(),
        size["height"].as_f64().unwrap(),
    )
}

/// Saves the whole page, laid out in a `width` x `height` viewport, as
/// `target/screenshots/<name>.png`, and returns the page's width: wider than the viewport, it
/// scrolls sideways, which on a phone means something is cut off (the screenshot is then as
/// wide as the page, so that it shows what sticks out).
async fn shot(c: &Client, name: &str, width: u32, height: u32) -> f64 {
    viewport(c, width, height).await;
    let (w, h) = content_size(c).await;
    let v = cdp(
        c,
        "Page.captureScreenshot",
        json!({"format": "png", "captureBeyondViewport": true, "clip": {
            "x": 0, "y": 0, "width": w.max(f64::from(width)), "height": h.max(f64::from(height)),
            "scale": 1}}),
    )
    .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(v["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = screenshot_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
    cdp(c, "Emulation.clearDeviceMetricsOverride", json!({})).await;
    w
}

/// [`shot`], and the page fits the viewport's width.
async fn shot_fits(c: &Client, name: &str, width: u32, height: u32) {
    let w = shot(c, name, width, height).await;
    assert!(
        w <= f64::from(width) + 0.5,
        "{name}: the page is {w}px wide in a {width}px viewport, see target/screenshots/{name}.png"
    );
}

fn access_token(v: &Value) -> String {
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {v}"))
        .to_string()
}

fn jwt_sid(t: &str) -> String {
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().to_string()
}

async fn bc_authorize(app: &TestApp, subject: &str, actor: &str, message: &str) -> (String, u64) {
    let resp = app
        .post_form(
            "/bc-authorize",
            Some(("agent-host", "host-secret")),
            &[
                ("subject_token", subject),
                ("subject_token_type", AT),
                ("actor_token", actor),
                ("actor_token_type", JWT),
                ("binding_message", message),
            ],
        )
        .await;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "/bc-authorize: {v}");
    (
        v["auth_req_id"].as_str().unwrap().to_string(),
        v["interval"].as_u64().unwrap_or(5),
    )
}

/// What the agent's polling ended with, and how often it polled.
struct PollResult {
    status: u16,
    body: Value,
    polls: u32,
}

/// The agent polls `/token` every `interval` seconds (CIBA Core §7.3), 5 s more after each
/// `slow_down` (§11), until the answer is anything but `authorization_pending`.
fn poll_in_background(url: String, auth_req_id: String, interval: u64) -> JoinHandle<PollResult> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut interval = Duration::from_secs(interval);
        let mut polls = 0;
        loop {
            tokio::time::sleep(interval).await;
            polls += 1;
            let resp = http
                .post(format!("{url}/token"))
                .basic_auth("agent-host", Some("host-secret"))
                .form(&[("grant_type", CIBA), ("auth_req_id", auth_req_id.as_str())])
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            match body["error"].as_str() {
                Some("authorization_pending") => {}
                Some("slow_down") => interval += Duration::from_secs(5),
                _ => {
                    return PollResult {
                        status,
                        body,
                        polls,
                    };
                }
            }
        }
    })
}

async fn exchange(app: &TestApp, subject: &str, actor: &str, scope: &str) -> String {
    let resp = app
        .post_form(
            "/token",
            Some(("agent-host", "host-secret")),
            &[
                ("grant_type", TE),
                ("subject_token", subject),
                ("subject_token_type", AT),
                ("actor_token", actor),
                ("actor_token_type", JWT),
                ("scope", scope),
            ],
        )
        .await;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "token exchange: {v}");
    access_token(&v)
}

/// `//section[...]` whose text contains `text`: one pending request on the approvals page.
fn request_button(message: &str, button: &str) -> String {
    format!("//section[contains(., '{message}')]//button[normalize-space()='{button}']")
}

/// Clicks what `search` finds and waits until the browser has left the page (its old `<html>`
/// is gone): a click that submits a form does not wait for the next page by itself.
async fn click_through(c: &Client, search: Locator<'_>) {
    let old = c.find(Locator::Css("html")).await.unwrap();
    c.find(search).await.unwrap().click().await.unwrap();
    let started = Instant::now();
    while old.tag_name().await.is_ok() {
        assert!(
            started.elapsed() < WAIT,
            "the click did not lead to a new page"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn main_text(c: &Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The login page: one POST form, every visible input labelled, a viewport meta tag, a language.
async fn check_login_page(c: &Client) {
    let forms = c.find_all(Locator::Css("form")).await.unwrap();
    assert_eq!(forms.len(), 1, "one form on the login page");
    assert_eq!(
        forms[0].attr("method").await.unwrap().as_deref(),
        Some("post")
    );
    for name in ["username", "password"] {
        c.find(Locator::Css(&format!("form input[name='{name}']")))
            .await
            .unwrap_or_else(|_| panic!("an input named {name}"));
    }
    let inputs = c
        .find_all(Locator::Css("input:not([type='hidden'])"))
        .await
        .unwrap();
    assert!(inputs.len() >= 2);
    for input in inputs {
        let id = input.attr("id").await.unwrap();
        let name = input.attr("name").await.unwrap();
        let id = id.unwrap_or_else(|| panic!("input {name:?} has no id for a label"));
        let labels = c
            .find_all(Locator::Css(&format!("label[for='{id}']")))
            .await
            .unwrap();
        assert_eq!(labels.len(), 1, "one <label for=\"{id}\">");
        assert!(
            !labels[0].text().await.unwrap().trim().is_empty(),
            "label of {id} has text"
        );
    }
    let viewport = c
        .find(Locator::Css("meta[name='viewport']"))
        .await
        .expect("a viewport meta tag");
    assert!(
        viewport
            .attr("content")
            .await
            .unwrap()
            .unwrap_or_default()
            .contains("width=device-width")
    );
    let lang = c
        .find(Locator::Css("html"))
        .await
        .unwrap()
        .attr("lang")
        .await
        .unwrap();
    assert!(lang.is_some_and(|l| !l.is_empty()), "<html lang>");
    assert!(!c.title().await.unwrap().is_empty(), "a <title>");
    let submit = c
        .find(Locator::Css("form button[type='submit']"))
        .await
        .expect("a submit button");
    assert!(!submit.text().await.unwrap().trim().is_empty());
}

async fn scenario(c: Client, backend: Backend) {
    let tag = format!("{backend:?}").to_lowercase();
    let agent = TestAgent::new("build-bot");
    let extra = format!(
        "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
         grant_types = [\"{TE}\", \"{CIBA}\"]\n{}\n[policy]\nhigh_risk_scopes = [\"payments:write\"]\n\
         [ciba]\ninterval = \"1s\"\n",
        agent.toml()
    );
    let app = spawn_app_with(backend, &extra).await;
    let url = app.url.clone();

    // 1. Alice signs in (over HTTP); the agent asks twice for a high-risk delegation and polls.
    let alice = access_token(
        &flows::sign_in(
            &app,
            "alice",
            "alice-password",
            "cli",
            "orders:read payments:write",
        )
        .await,
    );
    let (first, interval) = bc_authorize(&app, &alice, &agent.attest(&app).await, FIRST).await;
    assert_eq!(interval, 1);
    let (second, _) = bc_authorize(&app, &alice, &agent.attest(&app).await, SECOND).await;
    let first_poll = poll_in_background(url.clone(), first.clone(), interval);
    let second_poll = poll_in_background(url.clone(), second.clone(), interval);

    // 2. In the browser: /approvals asks a signed-out human to sign in first.
    c.delete_all_cookies().await.unwrap();
    c.goto(&format!("{url}/approvals")).await.unwrap();
    let username = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("input[name='username']"))
        .await
        .expect("the login page");
    check_login_page(&c).await;
    shot_fits(&c, &format!("{tag}-login"), 1024, 700).await;
    shot_fits(&c, &format!("{tag}-login-phone"), 390, 844).await;
    username.send_keys("alice").await.unwrap();
    c.find(Locator::Css("input[name='password']"))
        .await
        .unwrap()
        .send_keys("alice-password")
        .await
        .unwrap();
    click_through(
        &c,
        Locator::XPath("//form//button[normalize-space()='Sign in']"),
    )
    .await;

    // Both requests, with what the human needs to decide.
    let approve_first = request_button(FIRST, "Approve");
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(&approve_first))
        .await
        .expect("the first request on the approvals page");
    c.find(Locator::XPath(&request_button(SECOND, "Deny")))
        .await
        .expect("the second request on the approvals page");
    assert_eq!(c.current_url().await.unwrap().path(), "/approvals");
    let cookies = c.get_all_cookies().await.unwrap();
    assert!(!cookies.is_empty(), "a session cookie");
    for cookie in &cookies {
        assert_eq!(cookie.http_only(), Some(true), "{cookie} is HttpOnly");
        assert!(cookie.same_site().is_some(), "{cookie} has SameSite");
    }
    let text = main_text(&c).await;
    for shown in [
        "agent:build-bot",
        "payments:write",
        "high risk",
        "orders-api",
        "agent-host",
    ] {
        assert!(
            text.contains(shown),
            "the approvals page shows {shown}: {text}"
        );
    }
    assert_eq!(
        c.find_all(Locator::Css("section.request"))
            .await
            .unwrap()
            .len(),
        2
    );
    shot_fits(&c, &format!("{tag}-approvals"), 1024, 900).await;
    shot_fits(&c, &format!("{tag}-approvals-phone"), 390, 844).await;

    // Nothing was decided yet: both agents are still waiting.
    assert!(!first_poll.is_finished() && !second_poll.is_finished());

    // Alice shortens the first delegation's lifetime to 5 minutes and approves it.
    // (With the pre-filled maximum, the approval fails once the clock has passed a second since
    // the request: the maximum shrinks by a minute at the server. See the report of issue 5.)
    let lifetime = c
        .find(Locator::XPath(&format!(
            "//section[contains(., '{FIRST}')]//input[@name='lifetime_minutes']"
        )))
        .await
        .unwrap();
    lifetime.clear().await.unwrap();
    lifetime.send_keys("5").await.unwrap();
    click_through(&c, Locator::XPath(&approve_first)).await;
    // Back on the approvals page, with only the second request left.
    let deny_second = request_button(SECOND, "Deny");
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(&deny_second))
        .await
        .expect("back on the approvals page");
    assert!(
        c.find_all(Locator::XPath(&approve_first))
            .await
            .unwrap()
            .is_empty(),
        "the approved request is no longer pending: {}",
        main_text(&c).await
    );
    shot_fits(&c, &format!("{tag}-approvals-after-approve"), 1024, 900).await;

    click_through(&c, Locator::XPath(&deny_second)).await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//p[contains(., 'No request is waiting for your approval')]",
        ))
        .await
        .expect("no request left after denying the second");
    shot_fits(&c, &format!("{tag}-approvals-after-deny"), 1024, 900).await;

    // The agent's polling: a token for the approved request, access_denied for the denied one.
    let approved = tokio::time::timeout(Duration::from_secs(30), first_poll)
        .await
        .expect("the agent's polling of the approved request ends")
        .unwrap();
    assert_eq!(
        approved.status, 200,
        "{tag}: after {} polls: {}",
        approved.polls, approved.body
    );
    let expires_in = approved.body["expires_in"].as_i64().unwrap();
    assert!(
        (1..=300).contains(&expires_in),
        "the 5 minutes alice chose: {}",
        approved.body
    );
    let ciba_token = access_token(&approved.body);
    let i = app.introspect(&ciba_token).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["sub"], "alice");
    assert_eq!(i["act"], json!({"sub": "agent:build-bot"}));
    let denied = tokio::time::timeout(Duration::from_secs(30), second_poll)
        .await
        .expect("the agent's polling of the denied request ends")
        .unwrap();
    assert_eq!(
        (denied.status, denied.body["error"].as_str()),
        (400, Some("access_denied")),
        "{tag}: after {} polls: {}",
        denied.polls,
        denied.body
    );

    // 3. The agent delegates further (low risk: no approval needed): alice → agent → sub-agent.
    let sub_token = exchange(&app, &ciba_token, &agent.attest(&app).await, "orders:read").await;
    assert_eq!(app.introspect(&sub_token).await["active"], true);
    let middle = jwt_sid(&ciba_token);

    click_through(&c, Locator::LinkText("Your delegated sessions")).await;
    let revoke_middle = format!(
        "//form[input[@name='sid' and @value='{middle}']]//button[normalize-space()='Revoke']"
    );
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(&revoke_middle))
        .await
        .expect("the approved session on the sessions page");
    assert_eq!(c.current_url().await.unwrap().path(), "/sessions");
    let revokes = "//button[normalize-space()='Revoke']";
    assert_eq!(
        c.find_all(Locator::XPath(revokes)).await.unwrap().len(),
        3,
        "alice's sign-in, the agent and the sub-agent"
    );
    let text = main_text(&c).await;
    assert!(
        text.contains("agent:build-bot, acting for agent:build-bot"),
        "the sub-agent's chain: {text}"
    );
    shot_fits(&c, &format!("{tag}-sessions"), 1024, 900).await;
    shot_fits(&c, &format!("{tag}-sessions-phone"), 390, 844).await;

    click_through(&c, Locator::XPath(&revoke_middle)).await;
    let started = Instant::now();
    loop {
        let left = c.find_all(Locator::XPath(revokes)).await.unwrap().len();
        if left == 1 {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "{left} sessions left after revoking the middle one"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.current_url().await.unwrap().path(), "/sessions");
    shot_fits(&c, &format!("{tag}-sessions-after-revoke"), 1024, 900).await;

    // The agent's token and everything below it are dead; alice's own token lives.
    assert_eq!(
        app.introspect(&ciba_token).await,
        json!({"active": false}),
        "{tag}: the revoked session"
    );
    assert_eq!(
        app.introspect(&sub_token).await,
        json!({"active": false}),
        "{tag}: the sub-agent below it"
    );
    assert_eq!(app.introspect(&alice).await["active"], true, "{tag}");

    // The revoked session's audit trail.
    c.goto(&format!("{url}/sessions/{middle}")).await.unwrap();
    let table = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("table.trail"))
        .await
        .expect("the session's audit trail");
    let trail = table.text().await.unwrap();
    for kind in ["token.issued", "token.revoked"] {
        assert!(trail.contains(kind), "the trail shows {kind}: {trail}");
    }
    shot_fits(&c, &format!("{tag}-session-detail"), 1024, 700).await;
    // The audit trail scrolls sideways inside its table; the page itself fits a phone.
    shot_fits(&c, &format!("{tag}-session-detail-phone"), 390, 844).await;

    app.stop().await;
}

/// Proves the browser really runs without JavaScript: a `<noscript>` element renders.
async fn assert_javascript_is_off(c: &Client) {
    c.goto("data:text/html,<noscript><p id=off>JavaScript is off</p></noscript>")
        .await
        .unwrap();
    let found = c.find_all(Locator::Id("off")).await.unwrap();
    assert_eq!(found.len(), 1, "Chromium runs with JavaScript disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_approves_denies_and_revokes_in_a_real_browser() {
    let driver = start_driver();
    let client = open_browser(&driver).await;
    let c = client.clone();
    let outcome = tokio::spawn(async move {
        assert_javascript_is_off(&c).await;
        for backend in backends() {
            let started = Instant::now();
            scenario(c.clone(), backend).await;
            eprintln!("{backend:?}: {:.1?}", started.elapsed());
        }
    })
    .await;
    // Close the browser even when the scenario failed, then report the failure.
    let _ = client.close().await;
    drop(driver);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
