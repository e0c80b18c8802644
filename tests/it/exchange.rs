//! RFC 8693 token exchange end to end: alice signs in, agent A acts for her, sub-agent B for A,
//! a resource server introspects B's token, and cutting the middle link cuts B off.

use serde_json::{Value, json};

use crate::agents::TestAgent;
use crate::flows::alice_token;
use crate::helpers::*;

struct World {
    app: TestApp,
    a: TestAgent,
    b: TestAgent,
}

async fn world(backend: Backend, extra: &str) -> World {
    let a = TestAgent::new("build-bot");
    let b = TestAgent::new("sub-bot");
    let cfg = format!(
        "{extra}\n[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
         grant_types = [\"{TE}\"]\n{}{}\n[policy]\nhigh_risk_scopes = [\"payments:write\"]\n",
        a.toml(),
        b.toml()
    );
    World {
        app: spawn_app_with(backend, &cfg).await,
        a,
        b,
    }
}

async fn exchange(
    app: &TestApp,
    subject: &str,
    actor: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    token_exchange(app, AGENT_HOST, subject, actor, extra).await
}

fn token(v: &Value) -> String {
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {v}"))
        .to_string()
}

#[tokio::test]
async fn rfc8693_human_agent_subagent_chain_and_revoking_the_middle_link() {
    for backend in backends() {
        let World { app, a, b } = world(backend, "").await;
        let alice_token = alice_token(&app, "orders:read orders:write").await;

        let (status, v) = exchange(&app, &alice_token, Some(&a.attest(&app).await), &[]).await;
        assert_eq!(status, 200, "{backend:?}: {v}");
        assert_eq!(v["issued_token_type"], AT, "RFC 8693 §2.2.1");
        assert_eq!(v["token_type"], "Bearer");
        let a_token = token(&v);
        let ac = claims(&a_token);
        assert_eq!(ac["sub"], "alice", "the human stays the subject");
        assert_eq!(ac["act"], json!({"sub": "agent:build-bot"}));
        assert_eq!(
            ac["att"], "software",
            "the token says how its actor was attested"
        );
        assert_eq!(
            claims(&alice_token).get("att"),
            None,
            "a token without an actor says nothing of attestation"
        );
        assert_eq!(ac["client_id"], "agent-host");
        assert_eq!(ac["scope"], "orders:read orders:write");
        assert_eq!(
            ac["aud"],
            claims(&alice_token)["aud"],
            "no audience asked: the parent's"
        );
        assert!(ac["sid"].is_string());
        assert_eq!(
            jsonwebtoken::decode_header(&a_token)
                .unwrap()
                .typ
                .as_deref(),
            Some("at+jwt")
        );

        let (status, v) = exchange(
            &app,
            &a_token,
            Some(&b.attest(&app).await),
            &[("scope", "orders:read"), ("audience", "orders-api")],
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let b_token = token(&v);
        let bc = claims(&b_token);
        // RFC 8693 §4.1: the current actor outermost, the previous nested inside.
        assert_eq!(
            bc["act"],
            json!({"sub": "agent:sub-bot", "act": {"sub": "agent:build-bot"}})
        );
        assert_eq!(bc["scope"], "orders:read");
        assert_eq!(bc["aud"], "orders-api");
        assert!(
            bc["exp"].as_i64().unwrap() <= ac["exp"].as_i64().unwrap(),
            "never outlives its parent"
        );
        assert_ne!(bc["sid"], ac["sid"], "each delegation is its own session");

        // The resource server sees the whole chain and the session (SPEC: Introspection).
        let before = app.audit_len().await;
        let i = app.introspect(&b_token).await;
        assert_eq!(i["active"], true);
        assert_eq!(i["sub"], "alice");
        assert_eq!(i["act"], bc["act"]);
        assert_eq!(i["sid"], bc["sid"]);
        assert_eq!(i["att"], "software", "how the current actor was attested");
        assert_eq!(i["att"], bc["att"]);
        // ... and that call is an audit entry naming the human, the chain, the resource server, the token.
        let store = mandate::store::open(&app.db.url, 2).await.unwrap();
        let entries = store.audit_entries(before, 10).await.unwrap();
        let e = entries
            .iter()
            .find(|e| e.kind == "token.introspected")
            .expect("introspection audited");
        assert_eq!(e.subject.as_deref(), Some("alice"));
        assert_eq!(e.actors, r#"["agent:sub-bot","agent:build-bot"]"#);
        assert_eq!(e.client_id.as_deref(), Some("orders-api"));
        assert_eq!(e.token_jti.as_deref(), bc["jti"].as_str());
        store.close().await;

        // Cutting the middle link cuts everything below it, and nothing above.
        let resp = app
            .post_form(
                "/revoke",
                Some(("agent-host", "host-secret")),
                &[("token", &a_token)],
            )
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(app.introspect(&b_token).await, json!({"active": false}));
        assert_eq!(app.introspect(&a_token).await, json!({"active": false}));
        assert_eq!(app.introspect(&alice_token).await["active"], true);
        // A revoked subject token cannot be exchanged again.
        let (status, v) = exchange(&app, &a_token, Some(&b.attest(&app).await), &[]).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{v}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc8693_s2_2_2_each_rule_refuses_with_its_own_error() {
    for backend in backends() {
        let World { app, a, .. } = world(backend, "").await;
        let alice = alice_token(&app, "orders:read orders:write").await;
        let actor = a.attest(&app).await;
        let cc = app.cc_token(&[]).await;
        let before = app.audit_len().await;
        let cases: Vec<(&str, u16, &str, Value)> = vec![
            (
                "no actor token: impersonation is refused (RFC 8693 §1.1)",
                400,
                "invalid_request",
                exchange(&app, &alice, None, &[]).await.1,
            ),
            (
                "wrong subject_token_type (RFC 8693 §2.1)",
                400,
                "invalid_request",
                exchange(
                    &app,
                    &alice,
                    Some(&actor),
                    &[("subject_token_type", "urn:x")],
                )
                .await
                .1,
            ),
            (
                "scopes only narrow (RFC 8693 §2.2.2 invalid_scope)",
                400,
                "invalid_scope",
                exchange(
                    &app,
                    &alice,
                    Some(&actor),
                    &[("scope", "orders:read payments:write")],
                )
                .await
                .1,
            ),
            (
                "unknown audience (RFC 8693 §2.2.2 invalid_target)",
                400,
                "invalid_target",
                exchange(&app, &alice, Some(&actor), &[("audience", "nowhere")])
                    .await
                    .1,
            ),
            (
                "garbage subject token (RFC 8693 §2.2.2 invalid_grant)",
                400,
                "invalid_grant",
                exchange(&app, "not-a-token", Some(&actor), &[]).await.1,
            ),
            (
                "garbage actor token",
                400,
                "invalid_grant",
                exchange(&app, &alice, Some("not-a-token"), &[]).await.1,
            ),
            (
                "a human token as the actor",
                400,
                "invalid_grant",
                exchange(&app, &alice, Some(&alice), &[]).await.1,
            ),
            (
                "a client's own token is not a human's",
                400,
                "invalid_grant",
                exchange(&app, &cc, Some(&actor), &[]).await.1,
            ),
            (
                "client without the grant (RFC 6749 §5.2)",
                400,
                "unauthorized_client",
                token_exchange(&app, ("agent-runtime", "s3cret"), &alice, Some(&actor), &[])
                    .await
                    .1,
            ),
        ];
        for (why, _status, error, v) in &cases {
            assert_eq!(v["error"].as_str(), Some(*error), "{backend:?} {why}: {v}");
            assert!(
                v["error_description"]
                    .as_str()
                    .is_some_and(|d| d.len() > 10),
                "{why}: {v}"
            );
        }
        // Wrong actor_token_type, and the repeated-parameter rule (RFC 6749 §3.2).
        let (s, v) = exchange(&app, &alice, Some(&actor), &[("actor_token_type", AT)]).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_request")),
            "{v}"
        );
        assert_eq!(
            app.audit_len().await,
            before,
            "refused exchanges change nothing"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn high_risk_scopes_need_the_humans_approval_and_depth_is_bounded() {
    let World { app, a, b } = world(Backend::Sqlite, "[tokens]\nmax_delegation_depth = 2\n").await;
    let alice = alice_token(&app, "orders:read payments:write").await;
    let (status, v) = exchange(&app, &alice, Some(&a.attest(&app).await), &[]).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_scope")),
        "{v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("/bc-authorize"),
        "{v}"
    );
    // Narrowed to the low-risk scope it goes through, twice; a third hop is too deep.
    let (_, v) = exchange(
        &app,
        &alice,
        Some(&a.attest(&app).await),
        &[("scope", "orders:read")],
    )
    .await;
    let (_, v) = exchange(&app, &token(&v), Some(&b.attest(&app).await), &[]).await;
    let (status, v) = exchange(&app, &token(&v), Some(&a.attest(&app).await), &[]).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("max_delegation_depth 2"),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_exchanged_while_its_parent_is_revoked_never_outlives_it() {
    for backend in backends() {
        let World { app, a, .. } = world(backend, "").await;
        for _ in 0..5 {
            let alice = alice_token(&app, "orders:read").await;
            let actor = a.attest(&app).await;
            let revoke_form = [("token", alice.as_str()), ("client_id", "cli")];
            let (ex, rv) = tokio::join!(
                exchange(&app, &alice, Some(&actor), &[]),
                app.post_form("/revoke", None, &revoke_form)
            );
            assert_eq!(rv.status(), 200);
            if ex.0 == 200 {
                assert_eq!(
                    app.introspect(&token(&ex.1)).await,
                    json!({"active": false}),
                    "{backend:?}"
                );
            } else {
                assert_eq!(ex.1["error"], "invalid_grant");
            }
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn operators_list_and_revoke_sessions_from_the_cli() {
    let World { app, a, b } = world(Backend::Sqlite, "").await;
    let alice = alice_token(&app, "orders:read").await;
    let (_, v) = exchange(&app, &alice, Some(&a.attest(&app).await), &[]).await;
    let a_token = token(&v);
    let (_, v) = exchange(&app, &a_token, Some(&b.attest(&app).await), &[]).await;
    let b_token = token(&v);
    let cfg = app.config_path.to_str().unwrap().to_string();
    let out = mandate_cli(
        &["sessions", "list", "--user", "alice", "--config", &cfg],
        None,
    );
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{listing}");
    assert!(
        listing.contains("agent:sub-bot for agent:build-bot for alice"),
        "{listing}"
    );
    let sid = claims(&a_token)["sid"].as_str().unwrap().to_string();
    let out = mandate_cli(&["sessions", "revoke", &sid, "--config", &cfg], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        app.introspect(&b_token).await,
        json!({"active": false}),
        "the subtree is cut"
    );
    assert_eq!(app.introspect(&alice).await["active"], true);
    let out = mandate_cli(
        &["sessions", "revoke", "no-such-session", "--config", &cfg],
        None,
    );
    assert!(!out.status.success());
    // Session ids made before they were time-ordered start with `-` one time in 64: the CLI
    // takes them as the id, not as a flag.
    let out = mandate_cli(&["sessions", "revoke", "-old-sid", "--config", &cfg], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "session -old-sid has no live tokens; nothing revoked",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !sid.starts_with('-'),
        "{sid}: new session ids never read as flags"
    );
    app.stop().await;
}
