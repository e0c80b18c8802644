//! What a security review proved against the running server, each class as a test that fails if
//! the hole comes back (issue "Trust under attack"). Each runs on SQLite and PostgreSQL.

use serde_json::{Value, json};

use crate::agents::TestAgent;
use crate::flows::sign_in;
use crate::helpers::*;

/// The issuer the tests below fix, so a resource server can (mis)configure it as its audience.
const ISSUER_TOP: &str = "issuer = \"http://mandate.test\"";

fn agent_host(a: &TestAgent) -> String {
    format!(
        "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
         grant_types = [\"{TE}\"]\n{}",
        a.toml()
    )
}

async fn exchange(
    app: &TestApp,
    subject: &str,
    actor: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    token_exchange(app, AGENT_HOST, subject, Some(actor), extra).await
}

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_string()
}

/// `POST /token` with `grant_type=refresh_token` as the public client `cli` (RFC 6749 §6).
async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "cli"),
            ("refresh_token", token),
        ],
    )
    .await
}

/// Attests `agent` against a server whose issuer is fixed to `http://mandate.test` (the proof's
/// `aud` must name it, not the listener's URL).
async fn attest_fixed_issuer(app: &TestApp, agent: &TestAgent) -> String {
    let nonce = agent.challenge(app, true).await;
    let now = crate::agents::now();
    let proof = agent.proof(
        app,
        &nonce,
        Some(
            json!({"iss": agent.name, "sub": agent.name, "aud": "http://mandate.test",
                    "nonce": nonce, "iat": now, "exp": now + 60, "jti": format!("j-{nonce}")}),
        ),
    );
    let (status, v) = agent
        .post_attest(
            app,
            json!({"agent": agent.name, "nonce": nonce, "proof": proof}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    s(&v, "agent_token")
}

/// Review item 1. SPEC "Invariants": only an access token is ever active at `/introspect`;
/// a refresh token (RFC 6749 §1.5: it is never sent to a resource server; RFC 9700 §4.14),
/// consumed or not, and an agent token answer `{"active": false}`, even to a resource server
/// whose audience the token names.
#[tokio::test]
async fn rfc6749_s1_5_only_access_tokens_are_active_at_introspection() {
    for backend in backends() {
        let a = TestAgent::new("build-bot");
        // A resource server whose audience is the issuer: an agent token's `aud`.
        let extra = format!(
            "{}\n[[clients]]\nclient_id = \"self-rs\"\nclient_secret = \"self-secret\"\n\
             introspect = true\naudience = \"http://mandate.test\"\n",
            agent_host(&a)
        );
        let app = spawn_on_top(test_db(backend).await, ISSUER_TOP, &extra).await;
        let pair = sign_in(&app, "alice", "alice-password", "cli", "orders:read").await;
        let access = s(&pair, "access_token");
        let refresh_token = s(&pair, "refresh_token");
        assert_eq!(app.introspect(&access).await["active"], true, "{backend:?}");
        assert_eq!(
            app.introspect(&refresh_token).await,
            json!({"active": false}),
            "{backend:?}: a live refresh token is not an access token"
        );

        // Rotate it: the consumed refresh token stays inactive too.
        let resp = refresh(&app, &refresh_token).await;
        assert_eq!(resp.status(), 200);
        let next: Value = resp.json().await.unwrap();
        assert_eq!(
            app.introspect(&refresh_token).await,
            json!({"active": false})
        );
        assert_eq!(
            app.introspect(&s(&next, "refresh_token")).await,
            json!({"active": false})
        );

        let agent_token = attest_fixed_issuer(&app, &a).await;
        assert_eq!(
            app.introspect_as(("self-rs", "self-secret"), &agent_token)
                .await,
            json!({"active": false}),
            "{backend:?}: an agent token is only good as an actor_token"
        );

        // The same confusion at token exchange: a refresh token is no subject token, an access
        // token no actor token.
        let (status, v) = exchange(&app, &s(&next, "refresh_token"), &agent_token, &[]).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{v}"
        );
        let (status, v) = exchange(&app, &access, &access, &[]).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{v}"
        );
        let (status, v) = exchange(&app, &agent_token, &agent_token, &[]).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{v}"
        );
        // ... and an access token is no refresh token.
        let resp = refresh(&app, &access).await;
        assert_eq!(resp.status(), 400);
        app.stop().await;
    }
}

/// Review item 5. RFC 7009 §2.1 (the server SHOULD revoke the access tokens of the same grant
/// when a refresh token is revoked) and SPEC "Invariants": a grant is one family. Revoking its
/// current refresh token revokes the access token issued beside it, the one issued before the
/// rotation, and the delegations derived from them.
#[tokio::test]
async fn rfc7009_s2_1_revoking_a_refresh_token_revokes_its_whole_grant() {
    for backend in backends() {
        let a = TestAgent::new("build-bot");
        let app = spawn_app_with(backend, &agent_host(&a)).await;
        let first = sign_in(&app, "alice", "alice-password", "cli", "orders:read").await;
        let resp = refresh(&app, &s(&first, "refresh_token")).await;
        assert_eq!(resp.status(), 200);
        let second: Value = resp.json().await.unwrap();
        let (status, v) = exchange(
            &app,
            &s(&second, "access_token"),
            &a.attest(&app).await,
            &[],
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let delegated = s(&v, "access_token");
        // An unrelated sign-in of the same human is another grant.
        let other = sign_in(&app, "alice", "alice-password", "cli", "orders:read").await;

        let resp = app
            .post_form(
                "/revoke",
                None,
                &[
                    ("client_id", "cli"),
                    ("token", &s(&second, "refresh_token")),
                    ("token_type_hint", "refresh_token"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 200, "{backend:?}");
        for (what, t) in [
            (
                "the access token issued with it",
                s(&second, "access_token"),
            ),
            (
                "the access token before the rotation",
                s(&first, "access_token"),
            ),
            ("the delegation derived from it", delegated),
        ] {
            assert_eq!(
                app.introspect(&t).await,
                json!({"active": false}),
                "{backend:?}: {what}"
            );
        }
        let resp = refresh(&app, &s(&second, "refresh_token")).await;
        assert_eq!(
            resp.status(),
            400,
            "the revoked refresh token refreshes nothing"
        );
        assert_eq!(
            app.introspect(&s(&other, "access_token")).await["active"],
            true,
            "{backend:?}: another grant of the same human is untouched"
        );
        app.stop().await;
    }
}

/// Review item 14 (RFC 8693 §4.1, §4.4; fail closed on stored data): a delegated token whose
/// stored `act` or `may_act` was corrupted is not live. Before, the chain was re-parsed with a
/// silent fallback: a broken `act` read as "no actor", so the next delegation counted depth from
/// zero and dropped the earlier agents from its chain.
#[tokio::test]
async fn rfc8693_s4_1_a_corrupt_stored_act_chain_is_refused_not_shortened() {
    for backend in backends() {
        let a = TestAgent::new("build-bot");
        let b = TestAgent::new("sub-bot");
        let app = spawn_app_with(backend, &format!("{}{}", agent_host(&a), b.toml())).await;
        let human = crate::flows::alice_token(&app, "orders:read").await;
        let (status, v) = exchange(&app, &human, &a.attest(&app).await, &[]).await;
        assert_eq!(status, 200, "{v}");
        let delegated = s(&v, "access_token");
        assert_eq!(app.introspect(&delegated).await["active"], true);

        exec_sql(
            &app.db,
            "UPDATE tokens SET act = '{\"sub\":\"agent:build-bot\",' WHERE act IS NOT NULL",
        )
        .await;
        assert_eq!(
            app.introspect(&delegated).await,
            json!({"active": false}),
            "{backend:?}: an unreadable chain is not live"
        );
        let (status, v) = exchange(&app, &delegated, &b.attest(&app).await, &[]).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{backend:?}: never delegated on with a shortened chain: {v}"
        );
        // Other tokens are still answered (one corrupt row does not fail other lookups).
        assert_eq!(app.introspect(&human).await["active"], true, "{backend:?}");
        app.stop().await;
    }
}

/// Review item 7. SPEC "Invariants": every limit a client has holds on every grant path. A
/// client limited to `audiences = ["billing-api"]` gets no token for `orders-api` by exchange
/// (RFC 8693 §2.2.2 `invalid_target`) as by `client_credentials`; and `high_risk_scopes`, which
/// need a human's approval, are never granted by `client_credentials`, which has no human.
#[tokio::test]
async fn rfc8693_s2_2_2_client_audience_and_high_risk_limits_hold_on_every_grant() {
    for backend in backends() {
        let a = TestAgent::new("build-bot");
        let extra = format!(
            "[[clients]]\nclient_id = \"billing-host\"\nclient_secret = \"bh-secret\"\n\
             grant_types = [\"{TE}\", \"client_credentials\"]\naudiences = [\"billing-api\"]\n\
             scopes = [\"orders:read\", \"payments:write\"]\n{}\n\
             [policy]\nhigh_risk_scopes = [\"payments:write\"]\n",
            a.toml()
        );
        let app = spawn_app_with(backend, &extra).await;
        let human = crate::flows::alice_token(&app, "orders:read").await;
        let ex = |extra: Vec<(&'static str, &'static str)>, actor: String| {
            let app = &app;
            let human = human.clone();
            async move {
                let mut form = vec![
                    ("grant_type", TE),
                    ("subject_token", human.as_str()),
                    ("subject_token_type", AT),
                    ("actor_token", actor.as_str()),
                    ("actor_token_type", JWT),
                ];
                form.extend(extra);
                let resp = app
                    .post_form("/token", Some(("billing-host", "bh-secret")), &form)
                    .await;
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            }
        };
        let (status, v) = ex(vec![("audience", "orders-api")], a.attest(&app).await).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_target")),
            "{backend:?}: {v}"
        );
        let (status, v) = ex(vec![], a.attest(&app).await).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            app.introspect_as(("billing-api", "billing-secret"), &s(&v, "access_token"))
                .await["aud"],
            json!(["billing-api"]),
            "{backend:?}: nothing named: only what the client may reach"
        );

        let cc = |scope: Option<&'static str>| {
            let app = &app;
            async move {
                let mut form = vec![("grant_type", "client_credentials")];
                if let Some(sc) = scope {
                    form.push(("scope", sc));
                }
                let resp = app
                    .post_form("/token", Some(("billing-host", "bh-secret")), &form)
                    .await;
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            }
        };
        let (status, v) = cc(Some("payments:write")).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_scope")),
            "{backend:?}: {v}"
        );
        let (status, v) = cc(None).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["scope"], "orders:read",
            "{backend:?}: the default leaves high-risk scopes out"
        );
        app.stop().await;
    }
}

/// The login form's hidden fields and cookie, to post many sign-ins at once.
async fn login_form(http: &reqwest::Client, base: &str) -> (Vec<(String, String)>, String) {
    let resp = http.get(format!("{base}/login")).send().await.unwrap();
    let cookie = resp
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    let form = crate::flows::parse_form(&resp.text().await.unwrap());
    (form.hidden, cookie)
}

/// Posts `n` sign-ins at once; the statuses, sorted.
async fn login_flood(base: &str, n: usize, user: impl Fn(usize) -> String) -> Vec<u16> {
    let http = reqwest::Client::new();
    let (hidden, cookie) = login_form(&http, base).await;
    let posts = (0..n).map(|i| {
        let mut body = hidden.clone();
        body.push(("username".into(), user(i)));
        body.push(("password".into(), format!("guess-{i}")));
        http.post(format!("{base}/login"))
            .header(reqwest::header::COOKIE, &cookie)
            .form(&body)
            .send()
    });
    let mut statuses: Vec<u16> = futures_join(posts)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    statuses.sort_unstable();
    statuses
}

/// Runs every future at once; their outputs in order.
async fn futures_join<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(outs.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().map(Option::unwrap).collect()
}

/// Review item 3: sign-in attempts are counted before the password is checked, atomically. Of
/// 60 concurrent guesses at one user with a limit of 5, exactly 5 are checked (401); the rest
/// are refused before any argon2 (429). And sign-ins and enrollments count in separate spaces:
/// failed sign-ins as the username `enroll:build-bot` leave that agent's enrollment alone.
#[tokio::test]
async fn concurrent_guesses_at_one_user_check_exactly_the_limit_and_spaces_are_separate() {
    for backend in backends() {
        let allow = format!("[attestation]\nek_allowlist = [\"{}\"]\n", "0".repeat(64));
        let app = spawn_app_with(backend, &allow).await;
        let statuses = login_flood(&app.url, 60, |_| "alice".into()).await;
        // Checked (401), refused by the throttle (429), or not checked because the password
        // checks for this name were all busy (503); never more checked than the limit.
        assert!(
            statuses.iter().all(|s| [401, 429, 503].contains(s)),
            "{statuses:?}"
        );
        let mut checked = statuses.iter().filter(|s| **s == 401).count();
        assert!(
            checked <= 5,
            "{backend:?}: {checked} passwords checked: {statuses:?}"
        );
        // Guess on, one at a time: exactly the limit is ever checked in all, then 429.
        loop {
            let s = login_flood(&app.url, 1, |_| "alice".into()).await;
            match s[..] {
                [401] => checked += 1,
                [429] => break,
                _ => panic!("{s:?}"),
            }
            assert!(checked <= 5, "{backend:?}");
        }
        assert_eq!(checked, 5, "{backend:?}");

        let statuses = login_flood(&app.url, 5, |_| "enroll:build-bot".into()).await;
        assert!(
            statuses.iter().all(|s| [401, 429, 503].contains(s)),
            "{statuses:?}"
        );
        let resp = app
            .http
            .post(format!("{}/attest/enroll", app.url))
            .json(
                &json!({"agent": "build-bot", "ek_public": "AAAA", "ek_certificate": "AAAA",
                          "ek_chain": [], "ak_public": "AAAA"}),
            )
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        assert_ne!(
            status, 429,
            "{backend:?}: sign-in failures locked an enrollment: {v}"
        );
        assert_eq!(status, 400, "{v}");
        app.stop().await;
    }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Review item 2. SPEC "Invariants": every expensive check runs under a global bound. 160
/// concurrent wrong-password sign-ins (once took the server from 100 MB to 3 GB) and 400
/// concurrent wrong client secrets leave the server's peak memory bounded, and while they run a
/// legitimate client's first authentication (RFC 6749 §2.3.1) still gets its token: a flood
/// aimed at one name waits in front of nobody else.
#[tokio::test]
async fn rfc6749_s2_3_1_floods_of_wrong_passwords_and_secrets_stay_bounded() {
    for backend in backends() {
        flood_stays_bounded(backend).await;
    }
}

async fn flood_stays_bounded(backend: Backend) {
    let db = test_db(backend).await;
    let config = write_config(&db, "");
    let mut server = spawn_process(&config).await;
    let pid = server.child.id().unwrap();
    let base = server.url.clone();
    let before = vm_hwm_kib(pid);

    let logins = login_flood(&base, 160, |i| format!("nobody-{i}"));
    let http = reqwest::Client::new();
    let secrets = (0..400).map(|i| {
        http.post(format!("{base}/token"))
            .basic_auth("agent-runtime", Some(format!("wrong-{i}")))
            .form(&[("grant_type", "client_credentials")])
            .send()
    });
    let legit = async {
        // Let the floods get in first.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        http.post(format!("{base}/token"))
            .basic_auth("other-client", Some("other-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
    };
    let (logins, secrets, legit) = tokio::join!(logins, futures_join(secrets), legit);
    assert_eq!(
        legit.status(),
        200,
        "the legitimate client got its token during the flood"
    );
    assert!(
        logins.iter().all(|s| [401, 429, 503].contains(s)),
        "{logins:?}"
    );
    for r in secrets {
        let r = r.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        match status {
            401 => assert_eq!(v["error"], "invalid_client"),
            503 => assert_eq!(
                v["error"], "temporarily_unavailable",
                "nothing checked: retry"
            ),
            other => panic!("{other}: {v}"),
        }
    }
    let after = vm_hwm_kib(pid);
    assert!(
        after < before + 200 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    server.child.kill().await.unwrap();
}

/// Review item 15 (RFC 7523 §3, RFC 6749 §5.2): `private_key_jwt` answers an unknown client, a
/// client with no registered keys and a wrong signature alike, so the answers do not enumerate
/// client ids.
#[tokio::test]
async fn rfc7523_s3_private_key_jwt_does_not_tell_unknown_clients_from_keyless_ones() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let doc = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let key = EncodingKey::from_ec_der(doc.as_ref());
    let other = TestAgent::new("unused");
    let extra = format!(
        "[[clients]]\nclient_id = \"jwt-client\"\ngrant_types = [\"client_credentials\"]\n\
         jwks = {{ keys = [ {{ kty = \"EC\", crv = \"P-256\", x = {x}, y = {y} }} ] }}\n",
        x = other.jwk["x"],
        y = other.jwk["y"]
    );
    for backend in backends() {
        let app = spawn_app_with(backend, &extra).await;
        let mut answers = Vec::new();
        // Unknown; known with a secret and no keys; known with keys, signed with another key.
        for (i, client) in ["nobody", "agent-runtime", "jwt-client"].iter().enumerate() {
            let now = crate::agents::now();
            let jwt = jsonwebtoken::encode(
                &Header::new(Algorithm::ES256),
                &json!({"iss": client, "sub": client, "aud": app.url, "exp": now + 60,
                        "iat": now, "jti": format!("j{i}")}),
                &key,
            )
            .unwrap();
            let resp = app
                .post_form(
                    "/token",
                    None,
                    &[
                        ("grant_type", "client_credentials"),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", &jwt),
                    ],
                )
                .await;
            answers.push((resp.status().as_u16(), resp.text().await.unwrap()));
        }
        assert_eq!(answers[0].0, 401, "{answers:?}");
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "{backend:?}: the answers differ: {answers:?}"
        );
        app.stop().await;
    }
}

fn jti_of(jwt: &str) -> String {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_string()
}

async fn cc_as(app: &TestApp, client: (&str, &str)) -> (u16, Value) {
    let resp = app
        .post_form(
            "/token",
            Some(client),
            &[("grant_type", "client_credentials")],
        )
        .await;
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Review item 4. SPEC "Invariants": the config is who exists. A client, agent or human taken
/// out of it gets nothing at the next start, and its live tokens and the delegations derived
/// from them are revoked (audited); others are untouched.
#[tokio::test]
async fn a_client_agent_or_user_removed_from_the_config_is_cut_off_at_the_next_start() {
    for backend in backends() {
        let a = TestAgent::new("build-bot");
        let gone = TestAgent::new("gone-bot");
        let base = format!("{}{}", agent_host(&a), "");
        let before = format!(
            "{base}{}\n[[clients]]\nclient_id = \"temp-client\"\nclient_secret = \"temp-secret\"\n\
             grant_types = [\"client_credentials\"]\n\n[[users]]\nusername = \"carol\"\n\
             password = \"carol-password\"\nscopes = [\"orders:read\"]\n",
            gone.toml()
        );
        let app = spawn_on(test_db(backend).await, &before).await;
        let (status, v) = cc_as(&app, ("temp-client", "temp-secret")).await;
        assert_eq!(status, 200, "{v}");
        let temp_token = s(&v, "access_token");
        let carol = sign_in(&app, "carol", "carol-password", "cli", "orders:read").await;
        let alice = crate::flows::alice_token(&app, "orders:read").await;
        let (status, v) = exchange(&app, &alice, &gone.attest(&app).await, &[]).await;
        assert_eq!(status, 200, "{v}");
        let gone_delegation = s(&v, "access_token");
        let (status, v) = exchange(&app, &alice, &a.attest(&app).await, &[]).await;
        assert_eq!(status, 200, "{v}");
        let kept_delegation = s(&v, "access_token");
        let db = app.stop().await;

        let app = spawn_on(db, &base).await;
        assert_eq!(
            cc_as(&app, ("temp-client", "temp-secret")).await.0,
            401,
            "{backend:?}"
        );
        for (what, t) in [
            ("the removed client's token", temp_token),
            ("the removed human's token", s(&carol, "access_token")),
            ("the removed agent's delegation", gone_delegation),
        ] {
            assert_eq!(
                app.introspect(&t).await,
                json!({"active": false}),
                "{backend:?}: {what}"
            );
        }
        let resp = refresh(&app, &s(&carol, "refresh_token")).await;
        assert_eq!(
            resp.status(),
            400,
            "the removed human's refresh token refreshes nothing"
        );
        let nonce = gone.challenge(&app, false).await;
        let proof = gone.proof(&app, &nonce, None);
        let (status, _) = gone
            .post_attest(
                &app,
                json!({"agent": "gone-bot", "nonce": nonce, "proof": proof}),
            )
            .await;
        assert_eq!(
            status, 400,
            "{backend:?}: the removed agent does not attest"
        );
        assert_eq!(app.introspect(&alice).await["active"], true, "{backend:?}");
        assert_eq!(
            app.introspect(&kept_delegation).await["active"],
            true,
            "{backend:?}"
        );
        let kinds: Vec<String> = app
            .audit_entries()
            .await
            .into_iter()
            .map(|e| e.kind)
            .collect();
        for k in ["client.removed", "user.removed", "agent.removed"] {
            assert_eq!(
                kinds.iter().filter(|x| *x == k).count(),
                1,
                "{backend:?}: {k}"
            );
        }
        // A second start removes nothing more.
        let db = app.stop().await;
        let app = spawn_on(db, &base).await;
        let kinds: Vec<String> = app
            .audit_entries()
            .await
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds.iter().filter(|x| *x == "client.removed").count(), 1);
        app.stop().await;
    }
}

/// Review item 4: operators disable an agent (its agent tokens and every delegation it holds
/// are revoked, it cannot attest until enabled again) and revoke a single agent token by its
/// `jti`, which no client can revoke at `/revoke` (RFC 7009 §2.1: it was issued to no client).
#[tokio::test]
async fn operators_disable_an_agent_and_revoke_an_agent_token_from_the_cli() {
    for backend in backends() {
        let a = TestAgent::new("build-bot");
        let app = spawn_app_with(backend, &agent_host(&a)).await;
        let config = app.config_path.to_str().unwrap().to_string();
        let cli = |args: &[&str]| {
            let mut all = vec!["--config", config.as_str()];
            all.extend_from_slice(args);
            mandate_cli(&all, None)
        };
        let alice = crate::flows::alice_token(&app, "orders:read").await;
        let agent_token = a.attest(&app).await;
        let out = cli(&["tokens", "revoke", &jti_of(&agent_token)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (status, v) = exchange(&app, &alice, &agent_token, &[]).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{backend:?}: {v}"
        );

        let fresh = a.attest(&app).await;
        let (status, v) = exchange(&app, &alice, &fresh, &[]).await;
        assert_eq!(status, 200, "{v}");
        let delegation = s(&v, "access_token");
        let out = cli(&["agents", "disable", "build-bot"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            app.introspect(&delegation).await,
            json!({"active": false}),
            "{backend:?}"
        );
        let (status, _) = exchange(&app, &alice, &fresh, &[]).await;
        assert_eq!(status, 400, "its agent token is revoked too");
        let nonce = a.challenge(&app, false).await;
        let proof = a.proof(&app, &nonce, None);
        let (status, _) = a
            .post_attest(
                &app,
                json!({"agent": "build-bot", "nonce": nonce, "proof": proof}),
            )
            .await;
        assert_eq!(status, 400, "{backend:?}: a disabled agent does not attest");
        assert_eq!(
            app.introspect(&alice).await["active"],
            true,
            "the human's own token stays"
        );

        let out = cli(&["agents", "enable", "build-bot"]);
        assert!(out.status.success());
        let again = a.attest(&app).await;
        assert_eq!(
            exchange(&app, &alice, &again, &[]).await.0,
            200,
            "{backend:?}"
        );
        assert_eq!(cli(&["agents", "disable", "nobody"]).status.code(), Some(1));
        let kinds: Vec<String> = app
            .audit_entries()
            .await
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert!(
            kinds.iter().any(|k| k == "agent.disabled")
                && kinds.iter().any(|k| k == "agent.enabled")
        );
        app.stop().await;
    }
}

async fn count_rows(db: &TestDb, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let n: (i64,) = sqlx::query_as(&sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n.0
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let n: (i64,) = sqlx::query_as(&sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n.0
        }
    }
}

/// Review item 9. SPEC "Invariants": nothing an unauthenticated caller sends is stored
/// unbounded. A 60 KB or unknown agent name at `/attest/challenge` or `/attest` writes no nonce
/// and no audit entry; expired nonces are deleted as new ones are made.
#[tokio::test]
async fn unauthenticated_attestation_requests_store_nothing_the_caller_chose() {
    for backend in backends() {
        let a = TestAgent::new("build-bot");
        let app = spawn_app_with(backend, &agent_host(&a)).await;
        let post = |path: &'static str, body: Value| {
            let app = &app;
            async move {
                let resp = app
                    .http
                    .post(format!("{}{path}", app.url))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            }
        };
        let (nonces, audit) = (
            count_rows(&app.db, "attest_nonces").await,
            app.audit_len().await,
        );
        let huge = "x".repeat(60_000);
        for name in [huge.as_str(), "a\u{0}b", "two words", "nobody-enrolled"] {
            let (status, v) = post("/attest/challenge", json!({"agent": name})).await;
            if name == "nobody-enrolled" {
                assert_eq!(status, 200, "an unknown name is not told apart: {v}");
                assert!(v["nonce"].is_string());
            } else {
                assert_eq!(
                    (status, v["error"].as_str()),
                    (400, Some("invalid_request")),
                    "{v}"
                );
            }
            let (status, v) = post(
                "/attest",
                json!({"agent": name, "nonce": "AAAA", "proof": "x.y.z"}),
            )
            .await;
            assert_eq!(status, 400, "{backend:?}: {v}");
        }
        assert_eq!(
            count_rows(&app.db, "attest_nonces").await,
            nonces,
            "{backend:?}: no nonce stored"
        );
        assert_eq!(app.audit_len().await, audit, "{backend:?}: no audit entry");

        // Expired nonces go as new ones come.
        exec_sql(
            &app.db,
            "INSERT INTO attest_nonces (nonce, agent, expires_at) VALUES ('stale', NULL, 5)",
        )
        .await;
        a.challenge(&app, true).await;
        let left = count_rows(&app.db, "attest_nonces").await;
        assert_eq!(
            left,
            nonces + 1,
            "{backend:?}: the expired nonce is gone, the new one kept"
        );
        app.stop().await;
    }
}
