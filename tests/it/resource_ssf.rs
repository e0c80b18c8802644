//! mandate-resource's Shared Signals receiver (`SsfReceiver`) against a real mandate: an axum
//! resource server on 127.0.0.1:0 mounts a protected route (`BearerAuthLayer`, JWT mode) and
//! the receiver route; mandate pushes a SET (RFC 8417, RFC 8935) to it for every revocation,
//! and the resource server refuses the revoked token at once, without ever introspecting.
//! Then the pushes an attacker could make, each refused (RFC 8935 §2, RFC 8417).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::routing::get;
use base64::Engine;
use jsonwebtoken::{Algorithm, Header};
use mandate_resource::{BearerAuthLayer, RequireScopes, SsfReceiverConfig, Verifier};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::agents::TestAgent;
use crate::helpers::*;

/// The resource server's audience (mandate's `orders-api` client) and its stream's `aud`.
const AUD: &str = "orders-api";
/// What mandate sends in `Authorization` with each push, and the receiver expects.
const AUTHORIZATION: &str = "Bearer rs-receiver-credential-0123456789";
const EVENTS: &str = "/ssf/events";

/// One push the resource server's receiver got: the SET and what it answered.
#[derive(Debug, Clone)]
struct Push {
    set: String,
    answered: u16,
}

/// A resource server: its URL and the pushes its receiver answered.
struct Rs {
    url: String,
    pushes: Arc<Mutex<Vec<Push>>>,
}

impl Rs {
    fn pushes(&self) -> Vec<Push> {
        self.pushes.lock().unwrap().clone()
    }
}

/// Binds a resource server's port first: mandate's config names its receiver's URL, and its
/// verifier needs mandate's issuer.
async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// Serves on `listener`: `GET /orders` (`orders:read`) behind the bearer layer, and the SET
/// receiver at [`EVENTS`] for `audience`, outside it, with every push and answer recorded.
fn serve(listener: TcpListener, verifier: Verifier, audience: &str) -> Rs {
    let url = format!("http://{}", listener.local_addr().unwrap());
    let receiver = verifier
        .ssf_receiver(SsfReceiverConfig::new(audience, AUTHORIZATION))
        .unwrap();
    let pushes: Arc<Mutex<Vec<Push>>> = Arc::default();
    let log = pushes.clone();
    let record = axum::middleware::from_fn(move |req: Request, next: Next| {
        let log = log.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let resp = next
                .run(Request::from_parts(parts, Body::from(bytes.clone())))
                .await;
            log.lock().unwrap().push(Push {
                set: String::from_utf8_lossy(&bytes).into_owned(),
                answered: resp.status().as_u16(),
            });
            resp
        }
    });
    let app = Router::new()
        .route(
            "/orders",
            get(|| async { "the orders" }).layer(RequireScopes::new(["orders:read"])),
        )
        .layer(BearerAuthLayer::new(verifier))
        .merge(receiver.router(EVENTS).layer(record));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Rs { url, pushes }
}

/// mandate's config: the exchanging client, `extra`, and one push stream to `rs_url`'s
/// receiver, its credential in a file.
fn stream(db: &TestDb, rs_url: &str, extra: &str) -> String {
    let credential = db.dir.path().join("orders.ssf.credential");
    std::fs::write(&credential, format!("{AUTHORIZATION}\n")).unwrap();
    format!(
        "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
         grant_types = [\"{TE}\"]\n{extra}\
         [notifications]\ntimeout = \"1s\"\nretry_initial = \"1s\"\nretry_max = \"2s\"\n\
         [[ssf.streams]]\nname = \"orders\"\nendpoint_url = \"{rs_url}{EVENTS}\"\n\
         audience = \"{AUD}\"\nauthorization_header_file = \"{}\"\n",
        credential.display()
    )
}

/// `GET /orders` with `token`: the status and the challenge.
async fn orders(rs: &Rs, token: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("{}/orders", rs.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (resp.status().as_u16(), challenge)
}

/// Asks the resource server until it refuses `token` as revoked; how long that took.
async fn until_refused(rs: &Rs, token: &str, app: Option<&TestApp>) -> Duration {
    let start = Instant::now();
    loop {
        let (status, challenge) = orders(rs, token).await;
        if status == 401 {
            assert!(challenge.contains("invalid_token"), "{challenge}");
            assert!(challenge.contains("revoked"), "{challenge}");
            return start.elapsed();
        }
        assert_eq!(status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the resource server still accepts the revoked token; pushes: {:?}",
            rs.pushes()
        );
        if let Some(app) = app {
            // A SET stamped by another process (the CLI) is due on the server's test clock
            // once it is advanced past it.
            app.advance(1);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// RFC 7009 revocation by `client` (with its secret, or as a public client).
async fn revoke(app: &TestApp, client: (&str, Option<&str>), token: &str) {
    let resp = match client {
        (id, Some(secret)) => {
            app.post_form("/revoke", Some((id, secret)), &[("token", token)])
                .await
        }
        (id, None) => {
            app.post_form("/revoke", None, &[("token", token), ("client_id", id)])
                .await
        }
    };
    assert_eq!(resp.status(), 200);
}

async fn orders_token(app: &TestApp) -> String {
    app.cc_token(&[("audience", AUD), ("scope", "orders:read")])
        .await
}

/// The measure behind "a resource server that verifies JWTs locally refuses a revoked token
/// well under a second after `/revoke` answers": five revocations per backend, each timed
/// until the resource server refuses the token; it never asked mandate about a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8935_a_jwt_resource_server_refuses_a_revoked_token_well_under_a_second() {
    for b in backends() {
        let (listener, rs_url) = bind().await;
        let db = test_db(b).await;
        let config = stream(&db, &rs_url, "");
        let app = spawn_on(db, &config).await;
        let verifier = Verifier::builder(&app.url, AUD).jwt().build().unwrap();
        verifier.warm_up().await.unwrap();
        let rs = serve(listener, verifier, AUD);
        let bystander = orders_token(&app).await;
        let mut took = Vec::new();
        for _ in 0..5 {
            let t = orders_token(&app).await;
            assert_eq!(orders(&rs, &t).await.0, 200, "{b:?}");
            revoke(&app, ("agent-runtime", Some("s3cret")), &t).await;
            took.push(until_refused(&rs, &t, None).await);
        }
        assert_eq!(
            orders(&rs, &bystander).await.0,
            200,
            "{b:?}: others stay good"
        );
        took.sort();
        eprintln!(
            "{b:?}: /revoke answered -> resource server refuses (JWT mode, SET pushed): \
             median {:?}, max {:?} (5 revocations)",
            took[2], took[4]
        );
        assert!(took[4] < Duration::from_millis(500), "{b:?}: {took:?}");
        let pushes = rs.pushes();
        assert_eq!(pushes.len(), 5, "{b:?}: one SET per revocation: {pushes:?}");
        assert!(
            pushes.iter().all(|p| p.answered == 202),
            "{b:?}: {pushes:?}"
        );
        // JWT mode: mandate was never asked about a token.
        let introspected = (app.audit_entries().await.into_iter())
            .filter(|e| e.kind == "token.introspected")
            .count();
        assert_eq!(introspected, 0, "{b:?}");
        app.stop().await;
    }
}

/// CAEP 1.0 §3.1 session-revoked with an `opaque` session id (SSF 1.0 §3): revoking a
/// session's refresh token at mandate (RFC 7009 §2.1: the whole grant) makes the resource
/// server refuse every access token of that session, and nothing of the human's other session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caep_session_revoked_refuses_every_token_of_the_session_and_only_those() {
    for b in backends() {
        let (listener, rs_url) = bind().await;
        let db = test_db(b).await;
        let config = stream(&db, &rs_url, "");
        let app = spawn_on(db, &config).await;
        let rs = serve(
            listener,
            Verifier::builder(&app.url, AUD).build().unwrap(),
            AUD,
        );
        let first =
            crate::flows::sign_in(&app, "alice", "alice-password", "cli", "orders:read").await;
        let a1 = first["access_token"].as_str().unwrap().to_string();
        // RFC 6749 §6: a refresh gives a sibling access token in the same session.
        let resp = app
            .post_form(
                "/token",
                None,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", first["refresh_token"].as_str().unwrap()),
                    ("client_id", "cli"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 200, "{b:?}");
        let refreshed: Value = resp.json().await.unwrap();
        let a2 = refreshed["access_token"].as_str().unwrap().to_string();
        assert_eq!(claims(&a1)["sid"], claims(&a2)["sid"], "{b:?}: one session");
        let other = crate::flows::alice_token(&app, "orders:read").await;
        assert_ne!(claims(&other)["sid"], claims(&a1)["sid"]);
        for t in [&a1, &a2, &other] {
            assert_eq!(orders(&rs, t).await.0, 200, "{b:?}");
        }
        let r2 = refreshed["refresh_token"].as_str().unwrap();
        revoke(&app, ("cli", None), r2).await;
        until_refused(&rs, &a2, None).await;
        until_refused(&rs, &a1, None).await;
        assert_eq!(
            orders(&rs, &other).await.0,
            200,
            "{b:?}: another session of alice"
        );
        app.stop().await;
    }
}

/// RFC 8693 §2.1 exchange: alice's token, acted on by `planner`, then by `payments-bot`.
async fn exchange(app: &TestApp, subject: &str, actor: &str, extra: &[(&str, &str)]) -> String {
    let (_, v) = token_exchange(app, AGENT_HOST, subject, Some(actor), extra).await;
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("exchange failed: {v}"))
        .to_string()
}

/// RFC 9493 §3.2.4 `iss_sub` naming an agent (`agent:<name>`): an operator disabling it from
/// the CLI makes the resource server refuse every token whose `act` chain names it — the
/// agent's own, and a sub-agent's that it delegated to — while alice's own token still works.
///
/// The server runs as a process on a fixed port, as an operator's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9493_iss_sub_an_agent_disabled_from_the_cli_cuts_every_chain_naming_it() {
    for b in backends() {
        agent_disabled_from_the_cli(b, true).await;
    }
}

/// The same with the server in-process on port 0 and no `issuer` in the config: the CLI
/// (another process) can only name `http://127.0.0.1:0` as the issuer of the SETs it writes,
/// and the server signs them under its own (RFC 8417 §2.2 `iss`), which the receiver expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9493_an_agent_disabled_from_the_cli_of_a_server_on_port_0() {
    agent_disabled_from_the_cli(Backend::Sqlite, false).await;
}

async fn agent_disabled_from_the_cli(b: Backend, fixed_port: bool) {
    let planner = TestAgent::new("planner");
    let bot = TestAgent::new("payments-bot");
    let (listener, rs_url) = bind().await;
    let db = test_db(b).await;
    let agents = format!("{}{}", planner.toml(), bot.toml());
    let config = stream(&db, &rs_url, &agents);
    let mut process = None;
    let app = if fixed_port {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let path = write_config(&db, &config);
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        std::fs::write(&path, text).unwrap();
        let server = spawn_process(&path).await;
        let app = TestApp::of_process(db, path, &server);
        process = Some(server);
        app
    } else {
        spawn_on(db, &config).await
    };
    let rs = serve(
        listener,
        Verifier::builder(&app.url, AUD).build().unwrap(),
        AUD,
    );
    let alice = crate::flows::alice_token(&app, "orders:read orders:write").await;
    let planner_token = exchange(&app, &alice, &planner.attest(&app).await, &[]).await;
    let bot_token = exchange(
        &app,
        &planner_token,
        &bot.attest(&app).await,
        &[("scope", "orders:read"), ("audience", AUD)],
    )
    .await;
    assert_eq!(
        claims(&bot_token)["act"],
        json!({"sub": "agent:payments-bot", "act": {"sub": "agent:planner"}})
    );
    for t in [&alice, &planner_token, &bot_token] {
        assert_eq!(orders(&rs, t).await.0, 200, "{b:?}");
    }
    let path = app.config_path.to_str().unwrap().to_string();
    let out = mandate_cli(&["--config", &path, "agents", "disable", "planner"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until_refused(&rs, &bot_token, Some(&app)).await;
    until_refused(&rs, &planner_token, None).await;
    assert_eq!(
        orders(&rs, &alice).await.0,
        200,
        "{b:?}: alice was not cut off"
    );
    let c = claims(&rs.pushes()[0].set);
    assert_eq!(c["sub_id"]["format"], "iss_sub", "{b:?}: {c}");
    assert_eq!(c["sub_id"]["sub"], "agent:planner");
    assert_eq!(c["iss"], app.url.as_str());
    if let Some(mut server) = process {
        server.child.kill().await.unwrap();
    } else {
        app.stop().await;
    }
}

/// RFC 7662 with mandate's SETs: an introspecting resource server caches active answers (30 s
/// by default); the revocation's SET drops the cached answer, so the revoked token is refused
/// at once rather than when the cache lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7662_the_set_drops_the_cached_introspection_answer_at_once() {
    let (listener, rs_url) = bind().await;
    let db = test_db(Backend::Sqlite).await;
    let config = stream(&db, &rs_url, "");
    let app = spawn_on(db, &config).await;
    let verifier = Verifier::builder(&app.url, AUD)
        .introspection("orders-api", "rs-secret")
        .introspection_cache_ttl(Duration::from_secs(300))
        .build()
        .unwrap();
    let rs = serve(listener, verifier, AUD);
    let t = orders_token(&app).await;
    assert_eq!(orders(&rs, &t).await.0, 200);
    assert_eq!(orders(&rs, &t).await.0, 200);
    revoke(&app, ("agent-runtime", Some("s3cret")), &t).await;
    let took = until_refused(&rs, &t, None).await;
    assert!(
        took < Duration::from_secs(5),
        "{took:?}: not the cache's 300 s"
    );
    app.stop().await;
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
}

/// Posts `body` to `rs`'s receiver as a push: the status and the RFC 8935 §2.3 `err`.
async fn push(rs: &Rs, auth: Option<&str>, body: String) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{EVENTS}", rs.url))
        .header("content-type", "application/secevent+jwt")
        .body(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (status, v["err"].as_str().unwrap_or_default().to_string())
}

/// What an attacker can push to a resource server's receiver, each with the SET mandate really
/// signed for a revocation as raw material. A second resource server, `other`, was never sent
/// that SET by mandate: each push below is refused by it and revokes nothing there, until the
/// very SET is pushed with the credential. None of it touches another session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8935_s2_attacker_pushes_are_refused_and_revoke_nothing() {
    let (listener, rs_url) = bind().await;
    let (other_listener, _) = bind().await;
    let (billing_listener, _) = bind().await;
    let db = test_db(Backend::Sqlite).await;
    let config = stream(&db, &rs_url, "");
    let app = spawn_on(db, &config).await;
    let rs = serve(
        listener,
        Verifier::builder(&app.url, AUD).build().unwrap(),
        AUD,
    );
    let other = serve(
        other_listener,
        Verifier::builder(&app.url, AUD).build().unwrap(),
        AUD,
    );
    // A receiver for another audience, as another resource server's would be.
    let billing = serve(
        billing_listener,
        Verifier::builder(&app.url, AUD).build().unwrap(),
        "billing-api",
    );
    let victim = orders_token(&app).await;
    let bystander = orders_token(&app).await;
    for r in [&rs, &other, &billing] {
        assert_eq!(orders(r, &victim).await.0, 200);
    }
    revoke(&app, ("agent-runtime", Some("s3cret")), &victim).await;
    until_refused(&rs, &victim, None).await;
    let set = rs.pushes()[0].set.clone();
    let real = claims(&set);
    assert_eq!(real["sub_id"]["session"]["id"], claims(&victim)["jti"]);
    let kid = jsonwebtoken::decode_header(&set).unwrap().kid.unwrap();
    let untouched = |why: &'static str| {
        let (other, victim) = (&other, victim.clone());
        async move {
            assert_eq!(
                orders(other, &victim).await.0,
                200,
                "{why}: revoked something"
            );
        }
    };

    // RFC 8935 §2 (the transmitter authenticates): no credential, a wrong one, a prefix of
    // the right one, two headers. 401, so a transmitter with a stale credential retries.
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer rs-receiver-credential-012345678"),
        Some(&AUTHORIZATION[7..]),
    ] {
        let (status, err) = push(&other, auth, set.clone()).await;
        assert_eq!(
            (status, err.as_str()),
            (401, "authentication_failed"),
            "{auth:?}"
        );
        untouched("a push without the credential").await;
    }
    let resp = reqwest::Client::new()
        .post(format!("{}{EVENTS}", other.url))
        .header("content-type", "application/secevent+jwt")
        .header("authorization", AUTHORIZATION)
        .header("authorization", "Bearer wrong")
        .body(set.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "two Authorization headers");

    // RFC 8417 §2.3 / RFC 8935 §2.4: SETs that are not mandate's, each with its `err`.
    let forger = TestAgent::new("forger");
    let forge = |claims: &Value, kid: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("secevent+jwt".into());
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, claims, &forger.key).unwrap()
    };
    let mut wrong_iss = real.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    let mut about_bystander = real.clone();
    about_bystander["sub_id"]["session"]["id"] = claims(&bystander)["jti"].clone();
    about_bystander["jti"] = json!("forged-1");
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "secevent+jwt", "kid": kid})),
        b64(&about_bystander)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "RFC 8417 §5: signed by another key under mandate's kid",
            forge(&about_bystander, &kid),
            "invalid_key",
        ),
        ("RFC 8725 §3.1: alg none", alg_none, "invalid_key"),
        (
            "RFC 8417 §2.2: another issuer",
            forge(&wrong_iss, &kid),
            "invalid_issuer",
        ),
        (
            "RFC 8417 §2.3: typ at+jwt, an access token mandate signed, is no SET",
            bystander.clone(),
            "invalid_request",
        ),
        (
            "RFC 8935 §2: a body over 64 KiB",
            format!("{set}{}", " ".repeat(mandate_resource::MAX_SET_BYTES)),
            "invalid_request",
        ),
    ];
    for (why, body, want) in cases {
        let (status, err) = push(&other, Some(AUTHORIZATION), body).await;
        assert_eq!((status, err.as_str()), (400, want), "{why}");
        untouched(why).await;
        assert_eq!(orders(&other, &bystander).await.0, 200, "{why}");
    }
    // RFC 8417 §2.2: mandate's very SET, for orders-api, is not for a billing-api receiver.
    let (status, err) = push(&billing, Some(AUTHORIZATION), set.clone()).await;
    assert_eq!((status, err.as_str()), (400, "invalid_audience"));
    assert_eq!(
        orders(&billing, &victim).await.0,
        200,
        "nothing revoked there"
    );

    // The real SET with the credential: accepted, the victim refused, the bystander not
    // (a SET about one session leaves the others alone).
    assert_eq!(push(&other, Some(AUTHORIZATION), set.clone()).await.0, 202);
    until_refused(&other, &victim, None).await;
    assert_eq!(orders(&other, &bystander).await.0, 200);
    // RFC 8935 §2 / SSF: the same SET again (a replay, or mandate resending after a crash) is
    // accepted and changes nothing, on both servers.
    for r in [&other, &rs, &other] {
        assert_eq!(push(r, Some(AUTHORIZATION), set.clone()).await.0, 202);
        assert_eq!(orders(r, &bystander).await.0, 200);
        assert_eq!(orders(r, &victim).await.0, 401);
    }
    app.stop().await;
}

/// SPEC: "revoking any link cuts off everything below it", at a JWT resource server too. Each
/// exchange gives the new token a session of its own (`sid`), so the revocation's SETs name
/// every token it cut (docs/ssf.md), and the agent's token is refused as alice's is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_revoking_alices_token_cuts_the_agent_tokens_exchanged_from_it() {
    let planner = TestAgent::new("planner");
    let (listener, rs_url) = bind().await;
    let db = test_db(Backend::Sqlite).await;
    let config = stream(&db, &rs_url, &planner.toml());
    let app = spawn_on(db, &config).await;
    let rs = serve(
        listener,
        Verifier::builder(&app.url, AUD).build().unwrap(),
        AUD,
    );
    let alice = crate::flows::alice_token(&app, "orders:read").await;
    let planner_token = exchange(&app, &alice, &planner.attest(&app).await, &[]).await;
    assert_ne!(claims(&alice)["sid"], claims(&planner_token)["sid"]);
    assert_eq!(orders(&rs, &planner_token).await.0, 200);
    revoke(&app, ("cli", None), &alice).await;
    until_refused(&rs, &alice, None).await;
    assert_eq!(app.introspect(&planner_token).await["active"], false);
    until_refused(&rs, &planner_token, None).await;
    app.stop().await;
}
