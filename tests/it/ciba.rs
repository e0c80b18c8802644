//! OpenID CIBA Core 1.0 poll mode with the approvals page, and the sessions page, over HTTP as a
//! browser without JavaScript uses them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::agents::TestAgent;
use crate::flows::{Browser, Page, alice_token, parse_form, sign_in};
use crate::helpers::*;

const CIBA: &str = "urn:openid:params:grant-type:ciba";

struct World {
    app: TestApp,
    agent: TestAgent,
}

async fn world(backend: Backend, ciba: &str) -> World {
    let agent = TestAgent::new("build-bot");
    let extra = format!(
        "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\ngrant_types = [\"{TE}\", \"{CIBA}\"]\n\
         {}\n[policy]\nhigh_risk_scopes = [\"payments:write\"]\n[ciba]\n{ciba}\n",
        agent.toml()
    );
    World {
        app: spawn_app_with(backend, &extra).await,
        agent,
    }
}

fn token(v: &Value) -> String {
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {v}"))
        .to_string()
}

async fn bc_authorize(
    app: &TestApp,
    subject: &str,
    actor: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = vec![
        ("subject_token", subject),
        ("subject_token_type", AT),
        ("actor_token", actor),
        ("actor_token_type", JWT),
    ];
    form.extend_from_slice(extra);
    let resp = app
        .post_form("/bc-authorize", Some(("agent-host", "host-secret")), &form)
        .await;
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn poll(app: &TestApp, auth_req_id: &str) -> (u16, Value) {
    let resp = app
        .post_form(
            "/token",
            Some(("agent-host", "host-secret")),
            &[("grant_type", CIBA), ("auth_req_id", auth_req_id)],
        )
        .await;
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Signs `user` in through the login page `path` sends a signed-out browser to.
async fn browser_at<'a>(
    app: &'a TestApp,
    path: &str,
    user: &str,
    password: &str,
) -> (Browser<'a>, Page) {
    let mut b = Browser::new(app);
    let login = b.get(path).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let after = b
        .submit(path, &login, &[("username", user), ("password", password)])
        .await;
    assert_eq!(
        after.location.as_deref(),
        Some(path),
        "back to {path} after sign-in: {}",
        after.body
    );
    let page = b.get(path).await;
    assert_eq!(page.status, 200);
    (b, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ciba_high_risk_delegation_waits_for_the_human_then_issues_once() {
    for backend in backends() {
        let World { app, agent } = world(backend, "interval = \"1s\"").await;
        let alice = alice_token(&app, "orders:read payments:write").await;
        let actor = agent.attest(&app).await;

        // A direct exchange is refused and says where to go.
        let resp = app
            .post_form(
                "/token",
                Some(("agent-host", "host-secret")),
                &[
                    ("grant_type", TE),
                    ("subject_token", &alice),
                    ("subject_token_type", AT),
                    ("actor_token", &actor),
                    ("actor_token_type", JWT),
                ],
            )
            .await;
        let v: Value = resp.json().await.unwrap();
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .contains("/bc-authorize"),
            "{v}"
        );

        // CIBA Core §7.3: auth_req_id, expires_in, interval.
        let (status, v) = bc_authorize(
            &app,
            &alice,
            &actor,
            &[("binding_message", "Pay invoice 4711")],
        )
        .await;
        assert_eq!(status, 200, "{backend:?}: {v}");
        let id = v["auth_req_id"].as_str().unwrap().to_string();
        assert_eq!(v["interval"], 1);
        assert!(v["expires_in"].as_i64().unwrap() > 0);

        // CIBA Core §11: pending, and slow_down when polled faster than the interval.
        let (s, v) = poll(&app, &id).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("authorization_pending")),
            "{v}"
        );
        let (s, v) = poll(&app, &id).await;
        assert_eq!((s, v["error"].as_str()), (400, Some("slow_down")), "{v}");

        // The human sees the whole request and approves it, narrowed.
        let (mut b, page) = browser_at(&app, "/approvals", "alice", "alice-password").await;
        for shown in [
            "agent:build-bot",
            "software",
            "Pay invoice 4711",
            "payments:write",
            "high risk",
            "orders-api",
            "Approve",
            "Deny",
        ] {
            assert!(
                page.body.contains(shown),
                "approvals page shows {shown}: {}",
                page.body
            );
        }
        let form = parse_form(&page.body);
        let request = form
            .hidden
            .iter()
            .find(|(k, _)| k == "request")
            .unwrap()
            .1
            .clone();
        let csrf = form
            .hidden
            .iter()
            .find(|(k, _)| k == "csrf_token")
            .unwrap()
            .1
            .clone();
        let done = b
            .post(
                "/approvals",
                &[
                    ("csrf_token".into(), csrf.clone()),
                    ("request".into(), request.clone()),
                    ("scope".into(), "payments:write".into()),
                    ("lifetime_minutes".into(), "2".into()),
                    ("decision".into(), "approve".into()),
                ],
            )
            .await;
        assert_eq!(done.status, 303, "{}", done.body);
        assert!(
            !b.get("/approvals").await.body.contains(&request),
            "no longer pending"
        );

        app.advance(6); // CIBA Core §11: the interval grew by 5s, to 6
        let (s, v) = poll(&app, &id).await;
        assert_eq!(s, 200, "{backend:?}: {v}");
        assert_eq!(v["scope"], "payments:write", "the human narrowed it");
        assert!(v["expires_in"].as_i64().unwrap() <= 120);
        let i = app.introspect(&token(&v)).await;
        assert_eq!(i["act"], json!({"sub": "agent:build-bot"}));
        assert_eq!(
            i["att"], "software",
            "an approved grant says how its actor was attested"
        );
        assert_eq!(i["sub"], "alice");
        // Exactly once, however patiently the agent polls.
        app.advance(6);
        let (s, v) = poll(&app, &id).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{v}"
        );

        // A decision is audited.
        assert!(
            app.audit_entries()
                .await
                .iter()
                .any(|e| e.kind == "ciba.approved" && e.subject.as_deref() == Some("alice"))
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn ciba_denied_and_expired_requests() {
    let World { app, agent } = world(Backend::Sqlite, "interval = \"1s\"\nexpiry = \"2s\"").await;
    let alice = alice_token(&app, "orders:read payments:write").await;
    let (_, v) = bc_authorize(&app, &alice, &agent.attest(&app).await, &[]).await;
    let denied = v["auth_req_id"].as_str().unwrap().to_string();
    let (mut b, page) = browser_at(&app, "/approvals", "alice", "alice-password").await;
    let after = b.click("/approvals", &page, "Deny").await;
    assert_eq!(after.status, 303);
    let (s, v) = poll(&app, &denied).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("access_denied")),
        "{v}"
    );

    let (_, v) = bc_authorize(&app, &alice, &agent.attest(&app).await, &[]).await;
    let expiring = v["auth_req_id"].as_str().unwrap().to_string();
    app.advance(1);
    let (s, v) = poll(&app, &expiring).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("authorization_pending")),
        "a second before its expiry: {v}"
    );
    app.advance(1);
    let (s, v) = poll(&app, &expiring).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("expired_token")),
        "{v}"
    );
    let (s, v) = poll(&app, "no-such-request").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_human_decides_only_their_own_requests_and_forms_need_the_csrf_token() {
    let World { app, agent } = world(Backend::Sqlite, "interval = \"1s\"").await;
    let alice = alice_token(&app, "orders:read payments:write").await;
    let (_, v) = bc_authorize(&app, &alice, &agent.attest(&app).await, &[]).await;
    let id = v["auth_req_id"].as_str().unwrap().to_string();
    let (mut alice_b, alice_page) = browser_at(&app, "/approvals", "alice", "alice-password").await;
    let hidden = |page: &Page, name: &str| {
        parse_form(&page.body)
            .hidden
            .iter()
            .find(|(k, _)| k == name)
            .map(|x| x.1.clone())
            .unwrap()
    };
    let request = hidden(&alice_page, "request");

    // Bob has a request of his own (a low-risk one), so his page carries his CSRF token.
    let bob_token = token(&sign_in(&app, "bob", "bob-password", "cli", "orders:read").await);
    let (s, _) = bc_authorize(&app, &bob_token, &agent.attest(&app).await, &[]).await;
    assert_eq!(s, 200);
    let (mut bob, bob_page) = browser_at(&app, "/approvals", "bob", "bob-password").await;
    assert!(
        !bob_page.body.contains(&request),
        "bob does not see alice's request"
    );
    let approve_alices = |csrf: String| {
        vec![
            ("csrf_token".to_string(), csrf),
            ("request".to_string(), request.clone()),
            ("decision".to_string(), "approve".to_string()),
            ("scope".to_string(), "payments:write".to_string()),
        ]
    };
    let r = bob
        .post(
            "/approvals",
            &approve_alices(hidden(&bob_page, "csrf_token")),
        )
        .await;
    assert_eq!(r.status, 404, "bob cannot approve alice's request");
    // Alice's own form without its CSRF token changes nothing either.
    let mut no_csrf = approve_alices(String::new());
    no_csrf.remove(0);
    let r = alice_b.post("/approvals", &no_csrf).await;
    assert_eq!(r.status, 403);
    let (s, v) = poll(&app, &id).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("authorization_pending")),
        "{v}"
    );
    // An approval can only narrow.
    let mut widen = approve_alices(hidden(&alice_page, "csrf_token"));
    widen.push(("scope".into(), "orders:write".into()));
    let r = alice_b.post("/approvals", &widen).await;
    assert_eq!(r.status, 400, "{}", r.body);
    app.stop().await;
}

#[tokio::test]
async fn the_sessions_page_shows_the_tree_and_revokes_a_subtree() {
    for backend in backends() {
        let World { app, agent } = world(backend, "").await;
        let sub = TestAgent::new("sub-bot");
        let _ = sub;
        let alice = alice_token(&app, "orders:read").await;
        let exchange = |subject: String, actor: String| {
            let app = &app;
            async move {
                let resp = app
                    .post_form(
                        "/token",
                        Some(("agent-host", "host-secret")),
                        &[
                            ("grant_type", TE),
                            ("subject_token", &subject),
                            ("subject_token_type", AT),
                            ("actor_token", &actor),
                            ("actor_token_type", JWT),
                        ],
                    )
                    .await;
                let v: Value = resp.json().await.unwrap();
                token(&v)
            }
        };
        let a = exchange(alice.clone(), agent.attest(&app).await).await;
        let b = exchange(a.clone(), agent.attest(&app).await).await;
        app.introspect(&b).await; // a use, shown as "last used"

        let (mut browser, page) = browser_at(&app, "/sessions", "alice", "alice-password").await;
        assert!(
            page.body
                .contains("agent:build-bot, acting for agent:build-bot"),
            "{}",
            page.body
        );
        assert!(page.body.contains("s ago"), "last use is shown");
        assert_eq!(
            page.body.matches(">Revoke</button>").count(),
            3,
            "{}",
            page.body
        );
        // Revoke the middle node: its form is the second on the page.
        let forms: Vec<&str> = page
            .body
            .split("<form method=\"post\" action=\"/sessions/revoke\">")
            .skip(1)
            .collect();
        let sid_of = |f: &str| {
            f.split("name=\"sid\" value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string()
        };
        let csrf = parse_form(&page.body)
            .hidden
            .iter()
            .find(|(k, _)| k == "csrf_token")
            .unwrap()
            .1
            .clone();
        let middle = sid_of(forms[1]);
        assert_eq!(middle, jwt_sid(&a));
        let r = browser
            .post(
                "/sessions/revoke",
                &[
                    ("csrf_token".into(), csrf.clone()),
                    ("sid".into(), middle.clone()),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(
            app.introspect(&b).await,
            json!({"active": false}),
            "{backend:?}: the sub-agent is cut off"
        );
        assert_eq!(app.introspect(&a).await, json!({"active": false}));
        assert_eq!(app.introspect(&alice).await["active"], true);
        // The audit trail of the revoked session.
        let trail = browser.get(&format!("/sessions/{middle}")).await;
        assert_eq!(trail.status, 200);
        assert!(
            trail.body.contains("token.issued") && trail.body.contains("token.revoked"),
            "{}",
            trail.body
        );
        // Without the CSRF token nothing happens; bob cannot revoke alice's session.
        let root = sid_of(forms[0]);
        let r = browser
            .post("/sessions/revoke", &[("sid".into(), root.clone())])
            .await;
        assert_eq!(r.status, 403);
        let (mut bob, bob_page) = browser_at(&app, "/sessions", "bob", "bob-password").await;
        let bob_csrf = bob_page
            .body
            .split("name=\"csrf_token\" value=\"")
            .nth(1)
            .map(|s| s.split('"').next().unwrap().to_string());
        let r = bob
            .post(
                "/sessions/revoke",
                &[
                    ("csrf_token".into(), bob_csrf.unwrap_or_default()),
                    ("sid".into(), root.clone()),
                ],
            )
            .await;
        assert!(r.status == 404 || r.status == 403, "{}", r.status);
        assert_eq!(bob.get(&format!("/sessions/{root}")).await.status, 404);
        assert_eq!(app.introspect(&alice).await["active"], true);
        app.stop().await;
    }
}

fn jwt_sid(t: &str) -> String {
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn sign_in_is_throttled_after_repeated_failures() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut b = Browser::new(&app);
    let login = b.get("/login").await;
    for _ in 0..5 {
        let r = b
            .submit(
                "/login",
                &login,
                &[("username", "alice"), ("password", "wrong")],
            )
            .await;
        assert_eq!(r.status, 401);
    }
    let r = b
        .submit(
            "/login",
            &login,
            &[("username", "alice"), ("password", "alice-password")],
        )
        .await;
    assert_eq!(r.status, 429, "locked out even with the right password");
    assert!(r.body.contains("Too many failed sign-ins"));
    assert!(
        !r.headers.contains_key("set-cookie")
            || !r.headers["set-cookie"]
                .to_str()
                .unwrap()
                .contains("mandate_session")
    );
    app.stop().await;
}

#[tokio::test]
async fn approving_with_the_prefilled_lifetime_works_a_second_later() {
    let World { app, agent } = world(Backend::Sqlite, "interval = \"1s\"").await;
    let alice = alice_token(&app, "orders:read payments:write").await;
    let (_, v) = bc_authorize(&app, &alice, &agent.attest(&app).await, &[]).await;
    let id = v["auth_req_id"].as_str().unwrap().to_string();
    let (mut b, page) = browser_at(&app, "/approvals", "alice", "alice-password").await;
    app.advance(1);
    // What a browser submits: the hidden inputs, the ticked boxes, the pre-filled number.
    let mut fields = parse_form(&page.body).hidden;
    fields.push(("scope".into(), "orders:read".into()));
    fields.push(("scope".into(), "payments:write".into()));
    let prefilled = page.body.split("name=\"lifetime_minutes\"").nth(1).unwrap();
    let value = prefilled
        .split("value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    fields.push(("lifetime_minutes".into(), value));
    fields.push(("decision".into(), "approve".into()));
    let after = b.post("/approvals", &fields).await;
    assert_eq!(after.status, 303, "{}", after.body);
    let (s, v) = poll(&app, &id).await;
    assert_eq!(s, 200, "{v}");
    app.stop().await;
}

const ASK_ALICE: &str = r#"
@id("ask-the-human")
@approval("required")
permit (principal, action == Mandate::Action::"delegate", resource);
"#;

const FORBID_ALL: &str = r#"
@id("no-more-delegation")
forbid (principal, action == Mandate::Action::"delegate", resource);
"#;

/// Approves the pending request `request` of the signed-in browser's approvals page.
async fn approve(b: &mut Browser<'_>, request: &str, scope: &str) {
    let page = b.get("/approvals").await;
    let form = parse_form(&page.body);
    let csrf = form
        .hidden
        .iter()
        .find(|(k, _)| k == "csrf_token")
        .unwrap()
        .1
        .clone();
    let done = b
        .post(
            "/approvals",
            &[
                ("csrf_token".into(), csrf),
                ("request".into(), request.into()),
                ("scope".into(), scope.into()),
                ("lifetime_minutes".into(), "2".into()),
                ("decision".into(), "approve".into()),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
}

/// Review item 6. SPEC "Invariants": every decision taken earlier is taken again when the
/// token is finally issued. A request approved before its agent token was revoked, or before
/// the policy changed to forbid it, gets `access_denied` (CIBA Core §11) when polled, and the
/// refusal is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ciba_an_approved_request_is_checked_again_when_the_token_is_issued() {
    for backend in backends() {
        let agent = TestAgent::new("build-bot");
        let db = test_db(backend).await;
        let policy = db.dir.path().join("policy.cedar");
        std::fs::write(&policy, ASK_ALICE).unwrap();
        let extra = format!(
            "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
             grant_types = [\"{TE}\", \"{CIBA}\"]\n{}\n[policy]\nfiles = [\"{}\"]\n\
             [ciba]\ninterval = \"1s\"\n",
            agent.toml(),
            policy.display()
        );
        let app = spawn_on(db, &extra).await;
        let alice = alice_token(&app, "orders:read").await;
        let actor = agent.attest(&app).await;
        let ask = |actor: String| {
            let (app, alice) = (&app, alice.clone());
            async move {
                let (s, v) = bc_authorize(app, &alice, &actor, &[("scope", "orders:read")]).await;
                assert_eq!(s, 200, "{v}");
                v["auth_req_id"].as_str().unwrap().to_string()
            }
        };
        let first = ask(actor.clone()).await;
        let second = ask(agent.attest(&app).await).await;
        let (mut b, page) = browser_at(&app, "/approvals", "alice", "alice-password").await;
        let requests: Vec<String> = page
            .body
            .match_indices("name=\"request\" value=\"")
            .map(|(i, m)| {
                let rest = &page.body[i + m.len()..];
                rest[..rest.find('"').unwrap()].to_string()
            })
            .collect();
        assert_eq!(requests.len(), 2, "{}", page.body);
        for r in &requests {
            approve(&mut b, r, "orders:read").await;
        }

        // The first request's agent token is revoked by the operator after the approval.
        let jti = {
            use base64::Engine;
            let part = actor.split('.').nth(1).unwrap();
            let claims: Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap(),
            )
            .unwrap();
            claims["jti"].as_str().unwrap().to_string()
        };
        let config = app.config_path.to_str().unwrap().to_string();
        let out = mandate_cli(&["--config", &config, "tokens", "revoke", &jti], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (s, v) = poll(&app, &first).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("access_denied")),
            "{backend:?}: {v}"
        );

        // The policy changes to forbid delegation after the second approval.
        std::fs::write(&policy, FORBID_ALL).unwrap();
        let mut reloaded = false;
        for _ in 0..40 {
            if app
                .audit_entries()
                .await
                .iter()
                .any(|e| e.kind == "policy.reloaded")
            {
                reloaded = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(reloaded, "the policy change was picked up");
        let (s, v) = poll(&app, &second).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("access_denied")),
            "{backend:?}: {v}"
        );
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .contains("no-more-delegation"),
            "{v}"
        );
        let refusals = app
            .audit_entries()
            .await
            .iter()
            .filter(|e| e.kind == "ciba.refused_at_issuance")
            .count();
        assert_eq!(refusals, 2, "{backend:?}");
        app.stop().await;
    }
}

/// Review item 9: a human's pending requests are capped (CIBA Core §7.1 says nothing of it; the
/// SPEC's "nothing stored unbounded" does): past the cap an agent gets `slow_down` (429) and
/// nothing is stored, until requests are decided or expire.
#[tokio::test]
async fn ciba_pending_requests_per_human_are_capped() {
    for backend in backends() {
        let World { app, agent } = world(backend, "interval = \"1s\"").await;
        let alice = alice_token(&app, "orders:read payments:write").await;
        let actor = agent.attest(&app).await;
        let cap = mandate::oauth::grant::ciba::MAX_PENDING_PER_USER;
        for i in 0..cap {
            let (s, v) = bc_authorize(&app, &alice, &actor, &[]).await;
            assert_eq!(s, 200, "{backend:?} request {i}: {v}");
        }
        let (s, v) = bc_authorize(&app, &alice, &actor, &[]).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (429, Some("slow_down")),
            "{backend:?}: {v}"
        );
        app.stop().await;
    }
}

/// Fail closed on stored data (RFC 8693 §4.1): a pending request whose stored chain was
/// corrupted is neither shown with a shorter chain nor decidable, nor can its token be polled
/// for; the human's other requests are shown and decided as usual.
#[tokio::test]
async fn rfc8693_s4_1_a_request_with_a_corrupt_stored_chain_is_unusable_and_hides_no_other() {
    for backend in backends() {
        let World { app, agent } = world(backend, "interval = \"1s\"").await;
        let alice = alice_token(&app, "orders:read payments:write").await;
        let actor = agent.attest(&app).await;
        let mut ids = Vec::new();
        for message in ["Pay invoice 4711", "Pay invoice 4712"] {
            let (s, v) = bc_authorize(&app, &alice, &actor, &[("binding_message", message)]).await;
            assert_eq!(s, 200, "{backend:?}: {v}");
            ids.push(v["auth_req_id"].as_str().unwrap().to_string());
        }
        exec_sql(
            &app.db,
            "UPDATE ciba_requests SET act = '{\"sub\":\"agent:build-bot\",' \
             WHERE binding_message = 'Pay invoice 4711'",
        )
        .await;

        let (_b, page) = browser_at(&app, "/approvals", "alice", "alice-password").await;
        assert!(page.body.contains("Pay invoice 4712"), "{}", page.body);
        assert!(
            !page.body.contains("Pay invoice 4711") && !page.body.contains("unreadable"),
            "{backend:?}: the corrupt request is not listed: {}",
            page.body
        );
        let (s, v) = poll(&app, &ids[0]).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{backend:?}: {v}"
        );
        let (s, v) = poll(&app, &ids[1]).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("authorization_pending")),
            "{backend:?}: {v}"
        );
        app.stop().await;
    }
}

/// RFC 9449 with CIBA: a DPoP-bound agent token asks at `/bc-authorize` with its key's proof;
/// a poll without that key learns nothing about the request (not even "pending") and cannot
/// use up the approval; the approved token goes to a poll the key signed, bound to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9449_ciba_polls_must_be_signed_by_the_bound_agents_key() {
    use crate::dpop::{attest_bound, proof};
    use mandate_agent::DpopKey;
    for backend in backends() {
        let World { app, agent } = world(backend, "interval = \"1s\"").await;
        let alice = alice_token(&app, "orders:read payments:write").await;
        let (key, thief) = (DpopKey::generate(), DpopKey::generate());
        let actor = attest_bound(&app, &agent, &key).await;
        let send = |path: &'static str, form: Vec<(&'static str, String)>, dpop: Option<String>| {
            let app = &app;
            async move {
                let mut req = app
                    .http
                    .post(format!("{}{path}", app.url))
                    .basic_auth("agent-host", Some("host-secret"))
                    .form(&form);
                if let Some(p) = dpop {
                    req = req.header("DPoP", p);
                }
                let resp = req.send().await.unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            }
        };
        let ask = vec![
            ("subject_token", alice.clone()),
            ("subject_token_type", AT.to_string()),
            ("actor_token", actor.clone()),
            ("actor_token_type", JWT.to_string()),
            ("scope", "payments:write".to_string()),
        ];
        let (s, v) = send("/bc-authorize", ask.clone(), None).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{backend:?}: {v}"
        );
        let (s, v) = send(
            "/bc-authorize",
            ask,
            Some(proof(&key, &app, "/bc-authorize")),
        )
        .await;
        assert_eq!(s, 200, "{backend:?}: {v}");
        let id = v["auth_req_id"].as_str().unwrap().to_string();
        let poll_form = || {
            vec![
                ("grant_type", CIBA.to_string()),
                ("auth_req_id", id.clone()),
            ]
        };
        // Polls 2 s apart, so none is too fast for the 1 s interval (every poll counts).
        for dpop in [None, Some(proof(&thief, &app, "/token"))] {
            app.advance(2);
            let (s, v) = send("/token", poll_form(), dpop).await;
            assert_eq!(
                (s, v["error"].as_str()),
                (400, Some("invalid_grant")),
                "{backend:?}: {v}"
            );
        }
        app.advance(2);
        let (s, v) = send("/token", poll_form(), Some(proof(&key, &app, "/token"))).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("authorization_pending")),
            "{v}"
        );

        let (mut b, page) = browser_at(&app, "/approvals", "alice", "alice-password").await;
        let request = parse_form(&page.body)
            .hidden
            .into_iter()
            .find(|(k, _)| k == "request")
            .unwrap()
            .1;
        approve(&mut b, &request, "payments:write").await;
        app.advance(2);
        let (s, v) = send("/token", poll_form(), Some(proof(&thief, &app, "/token"))).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "approved, but not for the thief: {v}"
        );
        app.advance(2);
        let (s, v) = send("/token", poll_form(), Some(proof(&key, &app, "/token"))).await;
        assert_eq!(
            (s, v["token_type"].as_str()),
            (200, Some("DPoP")),
            "{backend:?}: {v}"
        );
        assert_eq!(claims(&token(&v))["cnf"]["jkt"], key.jkt());
        app.stop().await;
    }
}
