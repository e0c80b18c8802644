//! Shared Signals out, end to end: a revocation at `/revoke` becomes a Security Event Token
//! (RFC 8417) pushed (RFC 8935) to a local receiver that checks each one's signature against
//! the server's `/jwks.json`, as a resource server does. A receiver that refuses for a while,
//! across a restart of the server, gets every SET exactly once and in order.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::helpers::*;

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const AUTHORIZATION: &str = "Bearer receiver-credential-0123456789";

/// One push the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Push {
    headers: HeaderMap,
    set: String,
    answered: u16,
    at: Instant,
}

/// An RFC 8935 receiver: records every push, answers 503 while `refusing`, `answer` otherwise.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Push>>>,
    refusing: Arc<std::sync::atomic::AtomicBool>,
    answer: Arc<std::sync::atomic::AtomicU16>,
}

impl Receiver {
    async fn start() -> Self {
        let got: Arc<Mutex<Vec<Push>>> = Arc::default();
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answer = Arc::new(std::sync::atomic::AtomicU16::new(202));
        let (g, r, a) = (got.clone(), refusing.clone(), answer.clone());
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (g, r, a) = (g.clone(), r.clone(), a.clone());
                async move {
                    let status = if r.load(std::sync::atomic::Ordering::SeqCst) {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::from_u16(a.load(std::sync::atomic::Ordering::SeqCst)).unwrap()
                    };
                    g.lock().unwrap().push(Push {
                        headers,
                        set: body,
                        answered: status.as_u16(),
                        at: Instant::now(),
                    });
                    // RFC 8935 §2.3: a refused SET is answered with an `err` code.
                    let body = if status == StatusCode::BAD_REQUEST {
                        r#"{"err":"invalid_request","description":"no"}"#
                    } else {
                        ""
                    };
                    (status, body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            got,
            refusing,
            answer,
        }
    }

    fn refuse(&self, on: bool) {
        self.refusing.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn all(&self) -> Vec<Push> {
        self.got.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<Push> {
        (self.all().into_iter())
            .filter(|p| p.answered == 202)
            .collect()
    }

    /// Waits (advancing `app`'s clock so retries come due) until `done` holds.
    async fn wait_for(&self, app: Option<&TestApp>, done: impl Fn(&[Push]) -> bool) -> Vec<Push> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let all = self.all();
            if done(&all) {
                return all;
            }
            assert!(Instant::now() < deadline, "the receiver got only {all:?}");
            if let Some(app) = app {
                app.advance(1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What a resource server does with a push: the SET's signature checked against the issuer's
/// JWKS (RFC 8417 §5: `typ` `secevent+jwt`, ES256), its `aud` its own; its claims.
async fn verified(server_url: &str, set: &str) -> Value {
    let jwks: JwkSet = reqwest::get(format!("{server_url}/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(set).unwrap();
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"), "RFC 8417 §2.3");
    assert_eq!(header.alg, Algorithm::ES256);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("a published key");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&["orders-api"]);
    v.required_spec_claims = ["iss", "aud", "iat", "jti"].map(String::from).into();
    v.validate_exp = false;
    jsonwebtoken::decode::<Value>(set, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("the SET verifies against /jwks.json")
        .claims
}

/// The config of a server with one SSF stream to `receiver`, its credential in a file.
fn stream(db: &TestDb, receiver: &Receiver) -> String {
    let credential = db.dir.path().join("receiver.credential");
    std::fs::write(&credential, format!("{AUTHORIZATION}\n")).unwrap();
    format!(
        "[notifications]\ntimeout = \"1s\"\nretry_initial = \"1s\"\nretry_max = \"2s\"\n\
         [[ssf.streams]]\nname = \"orders\"\nendpoint_url = \"{}\"\naudience = \"orders-api\"\n\
         authorization_header_file = \"{}\"\n",
        receiver.url,
        credential.display()
    )
}

/// Revokes `token` (an `agent-runtime` token) at `/revoke`.
async fn revoke(app: &TestApp, token: &str) {
    let resp = app
        .post_form(
            "/revoke",
            Some(("agent-runtime", "s3cret")),
            &[("token", token)],
        )
        .await;
    assert_eq!(resp.status(), 200);
}

/// Revokes alice's `token` as her public client `cli` (RFC 7009 §2.1: its own token).
async fn revoke_as_cli(app: &TestApp, token: &str) {
    let resp = app
        .post_form("/revoke", None, &[("token", token), ("client_id", "cli")])
        .await;
    assert_eq!(resp.status(), 200);
}

/// The session a session-revoked SET names (a sessionless token's own `jti`).
fn session_of(claims: &Value) -> String {
    assert!(claims["events"][SESSION_REVOKED].is_object(), "{claims}");
    claims["sub_id"]["session"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// RFC 8935 §2 and SSF 1.0: a receiver refusing (503) for a while, with the server restarted in
/// between (the SETs are then only in the database), gets every SET exactly once, in the order
/// of the revocations, each verifying against the JWKS, with the configured credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8935_every_set_arrives_once_in_order_across_an_outage_and_a_restart() {
    for b in backends() {
        let receiver = Receiver::start().await;
        receiver.refuse(true);
        let db = test_db(b).await;
        let config = stream(&db, &receiver);
        let app = spawn_on(db, &config).await;
        let mut sessions = Vec::new();
        for _ in 0..3 {
            let t = app.cc_token(&[("audience", "orders-api")]).await;
            sessions.push(claims(&t)["jti"].as_str().unwrap().to_string());
            revoke(&app, &t).await;
            // A second revocation of the same token changes nothing and signals nothing.
            revoke(&app, &t).await;
        }
        // Refused and retried: only the head of the stream is ever tried.
        let got = receiver.wait_for(Some(&app), |p| p.len() >= 3).await;
        for p in &got {
            assert_eq!(p.answered, 503);
            assert_eq!(session_of(&verified(&app.url, &p.set).await), sessions[0]);
        }

        // A restart: the real binary on the same config and database.
        let db = app.stop().await;
        let config_path = db.dir.path().join("mandate.toml");
        receiver.refuse(false);
        let mut server = spawn_process(&config_path).await;
        receiver
            .wait_for(None, |_| receiver.accepted().len() >= 3)
            .await;
        // Long enough for a duplicate to show up, were one sent.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let accepted = receiver.accepted();
        let mut said = Vec::new();
        let mut jtis = std::collections::HashSet::new();
        for p in &accepted {
            // RFC 8935 §2.1: the push's media types and the receiver's credential.
            let h = |n: &str| p.headers.get(n).unwrap().to_str().unwrap().to_string();
            assert_eq!(h("content-type"), "application/secevent+jwt", "{b:?}");
            assert_eq!(h("accept"), "application/json", "{b:?}");
            assert_eq!(h("authorization"), AUTHORIZATION, "{b:?}");
            let c = verified(&server.url, &p.set).await;
            assert!(jtis.insert(c["jti"].as_str().unwrap().to_string()), "{b:?}");
            said.push(session_of(&c));
        }
        assert_eq!(said, sessions, "{b:?}: each once, in order");
        server.child.kill().await.unwrap();
        drop(db);
    }
}

/// The measure behind "a revocation reaches a subscribed resource server in under a second":
/// from `/revoke` answering to the receiver holding the SET, with no introspection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_the_receiver_well_under_a_second() {
    for b in backends() {
        let receiver = Receiver::start().await;
        let db = test_db(b).await;
        let config = stream(&db, &receiver);
        let app = spawn_on(db, &config).await;
        let mut took = Vec::new();
        for i in 0..5 {
            let t = app.cc_token(&[("audience", "orders-api")]).await;
            revoke(&app, &t).await;
            let revoked = Instant::now();
            let got = receiver.wait_for(None, |p| p.len() > i).await;
            let d = got[i].at.saturating_duration_since(revoked);
            let c = verified(&app.url, &got[i].set).await;
            assert_eq!(session_of(&c), claims(&t)["jti"].as_str().unwrap());
            took.push(d);
        }
        took.sort();
        println!(
            "{b:?}: revocation to receiver: median {:?}, max {:?} (5 revocations)",
            took[2], took[4]
        );
        assert!(took[4] < Duration::from_millis(500), "{b:?}: {took:?}");
        app.stop().await;
    }
}

/// RFC 8935 §2.3: a receiver that answers 400 refuses that SET for good: it is not retried,
/// it is audited (`ssf.undelivered`), and the stream moves on to the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8935_s2_3_a_set_the_receiver_refuses_is_given_up_and_the_stream_moves_on() {
    for b in backends() {
        let receiver = Receiver::start().await;
        receiver
            .answer
            .store(400, std::sync::atomic::Ordering::SeqCst);
        let db = test_db(b).await;
        let config = stream(&db, &receiver);
        let app = spawn_on(db, &config).await;
        let first = app.cc_token(&[("audience", "orders-api")]).await;
        revoke(&app, &first).await;
        receiver.wait_for(None, |p| !p.is_empty()).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let entry = loop {
            let found =
                (app.audit_entries().await.into_iter()).find(|e| e.kind == "ssf.undelivered");
            if let Some(e) = found {
                break e;
            }
            assert!(Instant::now() < deadline, "{b:?}: not audited");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let detail: Value = serde_json::from_str(&entry.detail).unwrap();
        assert_eq!(detail["stream"], "ssf:orders", "{b:?}");
        assert_eq!(detail["attempts"], 1, "{b:?}: not retried");
        assert!(!entry.detail.contains(AUTHORIZATION) && !entry.detail.contains(&receiver.url));

        receiver
            .answer
            .store(202, std::sync::atomic::Ordering::SeqCst);
        let second = app.cc_token(&[("audience", "orders-api")]).await;
        revoke(&app, &second).await;
        let got = receiver
            .wait_for(Some(&app), |_| !receiver.accepted().is_empty())
            .await;
        assert_eq!(got.len(), 2, "{b:?}: the refused SET was not sent again");
        let c = verified(&app.url, &receiver.accepted()[0].set).await;
        assert_eq!(session_of(&c), claims(&second)["jti"].as_str().unwrap());
        // A SET carries identifiers, never a token.
        assert!(
            !got.iter()
                .any(|p| p.set.contains(&first) || p.set.contains(&second))
        );
        app.stop().await;
    }
}

/// An operator's revocation from the CLI (another process, sharing the database) is signalled
/// too, in its own transaction; the running server's worker delivers it. A disabled agent is
/// named by its `sub` (RFC 9493 §3.2.4 `iss_sub`), the operator as the initiating entity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_disabled_from_the_cli_is_signalled_by_its_subject() {
    for b in backends() {
        let receiver = Receiver::start().await;
        let agent = crate::agents::TestAgent::new("build-bot");
        let db = test_db(b).await;
        let config = format!("{}{}", agent.toml(), stream(&db, &receiver));
        let app = spawn_on(db, &config).await;
        let path = app.config_path.to_str().unwrap().to_string();
        let out = mandate_cli(&["--config", &path, "agents", "disable", "build-bot"], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The CLI stamps the SET with the wall clock, ahead of this server's standing test
        // clock: advancing it makes the SET due.
        let got = receiver.wait_for(Some(&app), |p| !p.is_empty()).await;
        let c = verified(&app.url, &got[0].set).await;
        assert_eq!(c["sub_id"]["format"], "iss_sub", "{b:?}: {c}");
        assert_eq!(c["sub_id"]["sub"], "agent:build-bot");
        let event = &c["events"][SESSION_REVOKED];
        assert_eq!(event["initiating_entity"], "admin");
        assert_eq!(event["reason_admin"]["en"], "agent.disabled");
        app.stop().await;
    }
}

/// SSF 1.0 §7.1: a transmitter with streams publishes its metadata at
/// `/.well-known/ssf-configuration` (issuer, the JWKS its SETs verify against, push delivery);
/// a server with none has nothing to publish there.
#[tokio::test]
async fn ssf_1_0_s7_1_the_transmitter_metadata_names_the_issuer_jwks_and_push() {
    let receiver = Receiver::start().await;
    let db = test_db(Backend::Sqlite).await;
    let config = stream(&db, &receiver);
    let app = spawn_on(db, &config).await;
    let resp = reqwest::get(format!("{}/.well-known/ssf-configuration", app.url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["spec_version"], "1_0");
    assert_eq!(v["issuer"], app.url.as_str());
    assert_eq!(v["jwks_uri"], format!("{}/jwks.json", app.url));
    assert_eq!(
        v["delivery_methods_supported"],
        serde_json::json!(["urn:ietf:rfc:8935"])
    );
    assert!(
        v.get("configuration_endpoint").is_none(),
        "streams are the operator's"
    );
    app.stop().await;

    let app = spawn_app(Backend::Sqlite).await;
    let resp = reqwest::get(format!("{}/.well-known/ssf-configuration", app.url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    app.stop().await;
}

/// RFC 9700 §4.14.2: a rotated refresh token that comes back revokes its whole session; the
/// receiver hears of it by the session id its tokens carry (`sid`), initiated by policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9700_a_replayed_refresh_token_revokes_its_session_and_is_signalled() {
    for b in backends() {
        let receiver = Receiver::start().await;
        let db = test_db(b).await;
        let config = stream(&db, &receiver);
        let app = spawn_on(db, &config).await;
        let v = crate::flows::sign_in(&app, "alice", "alice-password", "cli", "orders:read").await;
        let sid = claims(v["access_token"].as_str().unwrap())["sid"]
            .as_str()
            .expect("a session id")
            .to_string();
        let refresh = v["refresh_token"].as_str().unwrap();
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", "cli"),
        ];
        assert_eq!(app.post_form("/token", None, &form).await.status(), 200);
        assert_eq!(app.post_form("/token", None, &form).await.status(), 400);
        let got = receiver.wait_for(None, |p| !p.is_empty()).await;
        let c = verified(&app.url, &got[0].set).await;
        assert_eq!(session_of(&c), sid, "{b:?}");
        assert_eq!(c["sub_id"]["user"]["sub"], "alice");
        assert_eq!(c["events"][SESSION_REVOKED]["initiating_entity"], "policy");
        app.stop().await;
    }
}

/// RFC 8936: a receiver that polls gets its SETs oldest first, at most `maxEvents` with
/// `moreAvailable` (§2.4.1); what it acknowledges is removed and the rest is answered again
/// under the same `jti` (§2.4.2); only the stream's credential may poll it, and an unknown
/// stream looks the same as a wrong credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8936_a_polling_receiver_gets_its_sets_in_order_and_acks_remove_them() {
    for b in backends() {
        let db = test_db(b).await;
        let credential = db.dir.path().join("poll.credential");
        std::fs::write(&credential, AUTHORIZATION).unwrap();
        let config = format!(
            "[[ssf.streams]]\nname = \"orders\"\ndelivery = \"poll\"\naudience = \"orders-api\"\n\
             authorization_header_file = \"{}\"\n",
            credential.display()
        );
        let app = spawn_on(db, &config).await;
        let mut sessions = Vec::new();
        for _ in 0..3 {
            let t = app.cc_token(&[("audience", "orders-api")]).await;
            sessions.push(claims(&t)["jti"].as_str().unwrap().to_string());
            revoke(&app, &t).await;
        }
        let poll = |auth: &'static str, stream: &'static str, body: Value| {
            let http = reqwest::Client::new();
            let url = format!("{}/ssf/poll/{stream}", app.url);
            async move {
                let resp = http
                    .post(url)
                    .header("authorization", auth)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        assert_eq!(
            poll("Bearer wrong", "orders", serde_json::json!({}))
                .await
                .0,
            401,
            "{b:?}"
        );
        assert_eq!(
            poll(AUTHORIZATION, "other", serde_json::json!({})).await.0,
            401,
            "{b:?}"
        );

        let (status, v) = poll(
            AUTHORIZATION,
            "orders",
            serde_json::json!({ "maxEvents": 2 }),
        )
        .await;
        assert_eq!(status, 200, "{b:?}: {v}");
        assert_eq!(v["moreAvailable"], true, "{b:?}");
        let sets = v["sets"].as_object().unwrap();
        assert_eq!(sets.len(), 2);
        let mut first = Vec::new();
        for (jti, set) in sets {
            let c = verified(&app.url, set.as_str().unwrap()).await;
            assert_eq!(c["jti"], jti.as_str());
            first.push((jti.clone(), session_of(&c)));
        }
        // Acknowledgements are bounded (1,000 per request) before any is read or logged: 1,001
        // are refused whole (400 with the `err` RFC 8936 answers with), and acknowledge nothing.
        let mut flood: Vec<String> = first.iter().map(|(j, _)| j.clone()).collect();
        flood.extend((flood.len()..1001).map(|i| format!("made-up-{i}")));
        let (status, v) = poll(
            AUTHORIZATION,
            "orders",
            serde_json::json!({ "ack": flood, "maxEvents": 0 }),
        )
        .await;
        assert_eq!(
            (status, v["err"].as_str()),
            (400, Some("invalid_request")),
            "{b:?}: {v}"
        );
        // Not acknowledged: answered again, the same SETs.
        let (_, again) = poll(
            AUTHORIZATION,
            "orders",
            serde_json::json!({ "maxEvents": 2 }),
        )
        .await;
        let again: Vec<&String> = again["sets"].as_object().unwrap().keys().collect();
        assert_eq!(
            again,
            first.iter().map(|(j, _)| j).collect::<Vec<_>>(),
            "{b:?}"
        );

        let acks: Vec<&str> = first.iter().map(|(j, _)| j.as_str()).collect();
        let (_, v) = poll(
            AUTHORIZATION,
            "orders",
            serde_json::json!({ "ack": acks, "maxEvents": 10 }),
        )
        .await;
        assert_eq!(v["moreAvailable"], false, "{b:?}");
        let rest = v["sets"].as_object().unwrap();
        assert_eq!(rest.len(), 1, "{b:?}: {v}");
        let (jti, set) = rest.iter().next().unwrap();
        let third = session_of(&verified(&app.url, set.as_str().unwrap()).await);
        let mut got: Vec<String> = first.into_iter().map(|(_, s)| s).collect();
        got.sort();
        got.push(third);
        // The first two arrive in one answer (a JSON object has no order); the third after.
        let mut want = sessions.clone();
        want[..2].sort();
        assert_eq!(got, want, "{b:?}");
        let (_, v) = poll(
            AUTHORIZATION,
            "orders",
            serde_json::json!({ "ack": [jti], "returnImmediately": true }),
        )
        .await;
        assert!(v["sets"].as_object().unwrap().is_empty(), "{b:?}: {v}");
        app.stop().await;
    }
}

/// RFC 8417 §2.2 (a transmitter's own event type) and SSF 1.0 §8.1.1 `events_requested`: a
/// stream that asks for mandate's `refused` event hears of a delegation the Cedar policy
/// denied, naming the human, the client and the deciding policy, never the scope asked, the
/// policy file or a token; a stream that asked for nothing (session-revoked only) hears nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8417_a_delegation_the_policy_refuses_reaches_only_streams_that_asked() {
    const REFUSED: &str = "urn:x-mandate:secevent:event-type:refused";
    let (bot, other) = (
        crate::agents::TestAgent::new("build-bot"),
        crate::agents::TestAgent::new("sub-bot"),
    );
    for b in backends() {
        let (security, resource) = (Receiver::start().await, Receiver::start().await);
        let db = test_db(b).await;
        let policy = db.dir.path().join("orders.cedar");
        std::fs::write(
            &policy,
            "@id(\"all\")\npermit (principal, action, resource);\n\
             @id(\"no-sub-bot\")\nforbid (principal == Mandate::Agent::\"sub-bot\", \
             action == Mandate::Action::\"delegate\", resource);\n",
        )
        .unwrap();
        let config = format!(
            "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
             grant_types = [\"{TE}\"]\n{}{}[policy]\nfiles = [\"{}\"]\n{}\
             [[ssf.streams]]\nname = \"security\"\nendpoint_url = \"{}\"\naudience = \"orders-api\"\n\
             events_requested = [\"{REFUSED}\", \"{SESSION_REVOKED}\"]\n",
            bot.toml(),
            other.toml(),
            policy.display(),
            stream(&db, &resource),
            security.url,
        );
        let app = spawn_on(db, &config).await;
        let alice = crate::flows::alice_token(&app, "orders:read").await;
        let actor = other.attest(&app).await;
        let (status, v) = token_exchange(
            &app,
            AGENT_HOST,
            &alice,
            Some(&actor),
            &[("scope", "orders:read")],
        )
        .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{v}"
        );
        // A permitted delegation is no event at all.
        let actor = bot.attest(&app).await;
        let (status, v) = token_exchange(
            &app,
            AGENT_HOST,
            &alice,
            Some(&actor),
            &[("scope", "orders:read")],
        )
        .await;
        assert_eq!(status, 200, "{b:?}: {v}");

        let got = security.wait_for(None, |p| !p.is_empty()).await;
        let c = verified(&app.url, &got[0].set).await;
        let event = &c["events"][REFUSED];
        assert_eq!(event["initiating_entity"], "policy", "{b:?}: {c}");
        assert_eq!(event["policies"], serde_json::json!(["no-sub-bot"]));
        assert_eq!(event["reason_admin"]["en"], "token.exchange_refused");
        assert_eq!(c["sub_id"]["format"], "complex");
        assert_eq!(c["sub_id"]["user"]["sub"], "alice");
        assert_eq!(c["sub_id"]["application"]["id"], "agent-host");
        let text = c.to_string();
        for secret in [
            alice.as_str(),
            actor.as_str(),
            "orders.cedar",
            "orders:read",
        ] {
            assert!(
                !text.contains(secret),
                "{b:?}: the SET names {secret}: {text}"
            );
        }
        // Revoking alice's token (RFC 7009 §2.1: her public client `cli` revokes it) cuts it
        // and build-bot's token exchanged from it: both streams hear of both; the resource
        // server's stream, which asked for nothing, of nothing else.
        revoke_as_cli(&app, &alice).await;
        let got = resource.wait_for(None, |p| p.len() >= 2).await;
        for p in &got {
            let c = verified(&app.url, &p.set).await;
            assert!(c["events"][SESSION_REVOKED].is_object(), "{c}");
        }
        let got = security.wait_for(None, |p| p.len() >= 3).await;
        for p in &got[1..] {
            let c = verified(&app.url, &p.set).await;
            assert!(c["events"][SESSION_REVOKED].is_object(), "{c}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(resource.all().len(), 2, "{b:?}: only the revocations");
        assert_eq!(security.all().len(), 3, "{b:?}");
        app.stop().await;
    }
}

/// RFC 7009 §2.1 and SSF 1.0 §3: a SET names exactly what the revocation cut. Revoking one
/// access token of alice's signed-in session cuts that token and the agent token exchanged
/// from it (RFC 8693: a session of its own), so the receiver hears of both tokens by their
/// `jti`, and not of alice's session, whose refreshed sibling mandate still calls active.
/// Revoking the refresh token then cuts the whole session (RFC 7009 §2.1: the grant), named
/// by its `sid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7009_a_set_names_the_revoked_token_and_every_token_exchanged_from_it_and_no_more() {
    let planner = crate::agents::TestAgent::new("planner");
    for b in backends() {
        let receiver = Receiver::start().await;
        let db = test_db(b).await;
        let config = format!(
            "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
             grant_types = [\"{TE}\"]\n{}{}",
            planner.toml(),
            stream(&db, &receiver)
        );
        let app = spawn_on(db, &config).await;
        let signed_in =
            crate::flows::sign_in(&app, "alice", "alice-password", "cli", "orders:read").await;
        let access = signed_in["access_token"].as_str().unwrap().to_string();
        let refresh = signed_in["refresh_token"].as_str().unwrap().to_string();
        let sid = claims(&access)["sid"].as_str().unwrap().to_string();
        let resp = app
            .post_form(
                "/token",
                None,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", "cli"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 200, "{b:?}");
        let refreshed: Value = resp.json().await.unwrap();
        let sibling = refreshed["access_token"].as_str().unwrap().to_string();
        // RFC 9700 §4.14.2: the refresh token rotates; the new one stands for the grant.
        let refresh = refreshed["refresh_token"]
            .as_str()
            .unwrap_or(&refresh)
            .to_string();
        assert_eq!(claims(&sibling)["sid"], sid.as_str());
        let actor = planner.attest(&app).await;
        let (status, v) = token_exchange(
            &app,
            AGENT_HOST,
            &access,
            Some(&actor),
            &[("scope", "orders:read")],
        )
        .await;
        assert_eq!(status, 200, "{b:?}: {v}");
        let delegated = v["access_token"].as_str().unwrap().to_string();
        assert_ne!(
            claims(&delegated)["sid"],
            sid.as_str(),
            "a session of its own"
        );

        revoke_as_cli(&app, &access).await;
        let got = receiver.wait_for(None, |p| p.len() >= 2).await;
        let mut named = Vec::new();
        for p in &got {
            let c = verified(&app.url, &p.set).await;
            assert_eq!(c["sub_id"]["user"]["sub"], "alice", "{b:?}: {c}");
            named.push(session_of(&c));
        }
        named.sort();
        let mut want = vec![
            claims(&access)["jti"].as_str().unwrap().to_string(),
            claims(&delegated)["jti"].as_str().unwrap().to_string(),
        ];
        want.sort();
        assert_eq!(
            named, want,
            "{b:?}: the token and what was exchanged from it"
        );
        assert_eq!(app.introspect(&sibling).await["active"], true, "{b:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            receiver.all().len(),
            2,
            "{b:?}: nothing about alice's session"
        );

        // The refresh token stands for the grant: the whole session, by its sid, once.
        revoke_as_cli(&app, &refresh).await;
        let got = receiver.wait_for(None, |p| p.len() >= 3).await;
        assert_eq!(
            session_of(&verified(&app.url, &got[2].set).await),
            sid,
            "{b:?}"
        );
        assert_eq!(app.introspect(&sibling).await["active"], false, "{b:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.all().len(), 3, "{b:?}: one SET for the session");
        app.stop().await;
    }
}

/// RFC 8936 §2.4: a poll that does not ask to `returnImmediately` (the default) and finds
/// nothing is held until a SET is committed, so a receiver without a public endpoint hears of
/// a revocation well within a second too; one that asks is answered at once; a held poll is
/// answered empty when the hold (half of `server.request_timeout`, at most 15 s) runs out, or
/// at once when the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8936_s2_4_a_long_poll_is_answered_as_soon_as_a_set_is_committed() {
    for b in backends() {
        let db = test_db(b).await;
        let credential = db.dir.path().join("poll.credential");
        std::fs::write(&credential, AUTHORIZATION).unwrap();
        let config = format!(
            "[server]\nrequest_timeout = \"4s\"\n\
             [[ssf.streams]]\nname = \"orders\"\ndelivery = \"poll\"\naudience = \"orders-api\"\n\
             authorization_header_file = \"{}\"\n",
            credential.display()
        );
        let app = spawn_on(db, &config).await;
        let url = format!("{}/ssf/poll/orders", app.url);
        let poll = |body: Value| {
            let (http, url) = (reqwest::Client::new(), url.clone());
            async move {
                let resp = (http.post(url).header("authorization", AUTHORIZATION))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                (Instant::now(), resp.json::<Value>().await.unwrap())
            }
        };
        let started = Instant::now();
        let (at, v) = poll(serde_json::json!({ "returnImmediately": true })).await;
        assert!(v["sets"].as_object().unwrap().is_empty(), "{b:?}: {v}");
        assert!(
            at - started < Duration::from_secs(1),
            "{b:?}: answered at once"
        );

        let mut took = Vec::new();
        for _ in 0..3 {
            let held = tokio::spawn(poll(serde_json::json!({})));
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!held.is_finished(), "{b:?}: held while nothing waits");
            let t = app.cc_token(&[("audience", "orders-api")]).await;
            revoke(&app, &t).await;
            let revoked = Instant::now();
            let (at, v) = held.await.unwrap();
            let sets = v["sets"].as_object().unwrap();
            assert_eq!(sets.len(), 1, "{b:?}: {v}");
            let (jti, set) = sets.iter().next().unwrap();
            let c = verified(&app.url, set.as_str().unwrap()).await;
            assert_eq!(session_of(&c), claims(&t)["jti"].as_str().unwrap());
            took.push(at.saturating_duration_since(revoked));
            poll(serde_json::json!({ "ack": [jti], "maxEvents": 0 })).await;
        }
        took.sort();
        println!("{b:?}: revocation to a long poll's answer: {took:?}");
        assert!(took[2] < Duration::from_secs(1), "{b:?}: {took:?}");

        // Nothing comes: answered empty when the hold (4 s / 2) runs out.
        let started = Instant::now();
        let (at, v) = poll(serde_json::json!({})).await;
        assert!(v["sets"].as_object().unwrap().is_empty(), "{b:?}: {v}");
        let waited = at - started;
        assert!(
            waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
            "{b:?}: {waited:?}"
        );

        // A stopping server answers a held poll at once rather than at the end of its drain.
        let held = tokio::spawn(poll(serde_json::json!({})));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stopping = Instant::now();
        app.stop().await;
        let (at, v) = held.await.unwrap();
        assert!(v["sets"].as_object().unwrap().is_empty(), "{b:?}: {v}");
        assert!(
            at - stopping < Duration::from_millis(1500),
            "{b:?}: {:?}",
            at - stopping
        );
    }
}
