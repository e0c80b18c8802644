//! Streams receivers manage themselves (SSF 1.0 §8.1), end to end: a client the operator marked
//! `ssf_receiver` authenticates with its own access token (RFC 6750), creates, reads, changes,
//! pauses and deletes its streams over HTTP, asks for verification SETs, and receives
//! revocations, pushed (RFC 8935) to an https receiver run here (a test CA, loopback allowed by
//! `ssf.allow_private_addresses`) or polled (RFC 8936). What an attacker tries is in
//! `attacks.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cimd::{Pki, pki};
use crate::helpers::*;

mod attacks;

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
const PUSH: &str = "urn:ietf:rfc:8935";
const POLL: &str = "urn:ietf:rfc:8936";
/// The receiver's own credential for its push endpoint: a secret mandate must keep.
const CREDENTIAL: &str = "Bearer receiver-secret-7f3a9c";

/// One push the receiver got: its request head (lowercase) and body.
#[derive(Debug, Clone)]
struct Push {
    head: String,
    set: String,
}

impl Push {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// An https RFC 8935 receiver on loopback, with a certificate of `pki`'s CA: answers 202.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Push>>>,
}

impl Receiver {
    async fn start(pki: &Pki) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://127.0.0.1:{}/events",
            listener.local_addr().unwrap().port()
        );
        let got: Arc<Mutex<Vec<Push>>> = Arc::default();
        let (g, tls) = (got.clone(), pki.server.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (g, tls) = (g.clone(), tls.clone());
                tokio::spawn(async move {
                    let Ok(mut s) = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head, body) = loop {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]);
                            break (head, body.to_string());
                        }
                    };
                    g.lock().unwrap().push(Push { head, set: body });
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Self { url, got }
    }

    fn all(&self) -> Vec<Push> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<Push> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all = self.all();
            if all.len() >= n {
                return all;
            }
            assert!(Instant::now() < deadline, "the receiver got only {all:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Nothing more than `n` arrives within a while (long enough for the worker's rounds).
    async fn stays_at(&self, n: usize) {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(self.all().len(), n, "{:?}", self.all());
    }
}

/// The SET checked as a receiver does (RFC 8417 §2.3 `typ`, ES256 under a key of `/jwks.json`,
/// its `aud` the receiver's client_id, SSF 1.0 §8.1.1.1); its claims.
async fn verified(server_url: &str, set: &str, aud: &str) -> Value {
    let jwks: JwkSet = reqwest::get(format!("{server_url}/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(set).unwrap();
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("a published key");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[aud]);
    v.set_issuer(&[server_url]);
    v.required_spec_claims = ["iss", "aud", "iat", "jti"].map(String::from).into();
    v.validate_exp = false;
    jsonwebtoken::decode::<Value>(set, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("the SET verifies against /jwks.json")
        .claims
}

/// Two receivers (`rx`, `rx2`), loopback allowed for pushes when `private`, the test CA
/// trusted, short retries.
fn receivers(db: &TestDb, pki: &Pki, private: bool) -> String {
    let ca = db.dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    format!(
        "[[clients]]\nclient_id = \"rx\"\nclient_secret = \"rx-secret\"\n\
         grant_types = [\"client_credentials\"]\nssf_receiver = true\n\
         [[clients]]\nclient_id = \"rx2\"\nclient_secret = \"rx2-secret\"\n\
         grant_types = [\"client_credentials\"]\nssf_receiver = true\n\
         [ssf]\nallow_private_addresses = {private}\nextra_ca_file = \"{}\"\n\
         [notifications]\ntimeout = \"2s\"\nretry_initial = \"1s\"\nretry_max = \"2s\"\n",
        ca.display()
    )
}

/// A `client_credentials` access token of `client`.
async fn token_of(app: &TestApp, client: (&str, &str)) -> String {
    let resp = app
        .post_form(
            "/token",
            Some(client),
            // RFC 8707: a token for this server alone, as stream management asks.
            &[
                ("grant_type", "client_credentials"),
                ("resource", app.url.as_str()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", app.label());
    let v: Value = resp.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// One management request; `(status, body as JSON or Null, headers)`.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = app.http.request(method, format!("{}{path}", app.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, resp.json().await.unwrap_or(Value::Null), headers)
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, v, _) = call(
        app,
        reqwest::Method::POST,
        "/ssf/stream",
        Some(token),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{}: {v}", app.label());
    v
}

fn push_body(url: &str) -> Value {
    json!({
        "delivery": { "method": PUSH, "endpoint_url": url, "authorization_header": CREDENTIAL },
        "events_requested": [SESSION_REVOKED, "urn:example:unknown"],
        "description": "orders cache",
    })
}

async fn set_status(app: &TestApp, token: &str, id: &str, status: &str) {
    let body = json!({ "stream_id": id, "status": status });
    let (code, v, _) = call(
        app,
        reqwest::Method::POST,
        "/ssf/status",
        Some(token),
        Some(body),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], status);
}

/// Revokes a fresh `agent-runtime` token; its `jti` (the session a SET names).
async fn revoke_one(app: &TestApp) -> String {
    let t = app.cc_token(&[]).await;
    let resp = app
        .post_form(
            "/revoke",
            Some(("agent-runtime", "s3cret")),
            &[("token", &t)],
        )
        .await;
    assert_eq!(resp.status(), 200);
    claims(&t)["jti"].as_str().unwrap().to_string()
}

/// SSF 1.0 §8.1.1.1 create, §8.1.1.2 read, §8.1.4.2 verification and §7.1 discovery: a
/// receiver makes a push stream to its own endpoint, gets the verification SET with its
/// `state` (signed, verifiable against `/jwks.json`, the stream as subject), then the SETs of
/// revocations, each with its credential and its client_id as `aud`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_8_1_a_receiver_creates_a_push_stream_verifies_it_and_hears_revocations() {
    let pki = pki();
    for b in backends() {
        let receiver = Receiver::start(&pki).await;
        let db = test_db(b).await;
        let config = receivers(&db, &pki, true);
        let app = spawn_on(db, &config).await;
        let (code, _, meta) = app.get_json("/.well-known/ssf-configuration").await;
        assert_eq!(code, 200);
        assert_eq!(
            meta["configuration_endpoint"],
            format!("{}/ssf/stream", app.url)
        );
        assert_eq!(meta["status_endpoint"], format!("{}/ssf/status", app.url));
        assert_eq!(
            meta["verification_endpoint"],
            format!("{}/ssf/verify", app.url)
        );
        assert_eq!(meta["delivery_methods_supported"], json!([PUSH, POLL]));
        assert_eq!(meta["default_subjects"], "ALL");
        assert!(meta.get("add_subject_endpoint").is_none());

        let rx = token_of(&app, ("rx", "rx-secret")).await;
        let s = create(&app, &rx, push_body(&receiver.url)).await;
        let id = s["stream_id"].as_str().unwrap().to_string();
        assert!(id.starts_with('~'), "{s}");
        assert_eq!(s["iss"], app.url.as_str());
        assert_eq!(s["aud"], "rx");
        assert_eq!(
            s["delivery"],
            json!({ "method": PUSH, "endpoint_url": receiver.url })
        );
        assert_eq!(
            s["events_delivered"],
            json!([SESSION_REVOKED]),
            "the intersection"
        );
        assert_eq!(s["events_requested"][1], "urn:example:unknown");
        assert_eq!(s["description"], "orders cache");
        assert!(
            !s.to_string().contains("receiver-secret"),
            "never returned: {s}"
        );
        let (code, one, _) = call(
            &app,
            reqwest::Method::GET,
            &format!("/ssf/stream?stream_id={id}"),
            Some(&rx),
            None,
        )
        .await;
        assert_eq!((code, &one), (200, &s));
        let (code, list, _) =
            call(&app, reqwest::Method::GET, "/ssf/stream", Some(&rx), None).await;
        assert_eq!((code, list), (200, json!([s])));

        let verify = json!({ "stream_id": id, "state": "st-1" });
        let (code, _, _) = call(
            &app,
            reqwest::Method::POST,
            "/ssf/verify",
            Some(&rx),
            Some(verify.clone()),
        )
        .await;
        assert_eq!(code, 204);
        let got = receiver.wait_for(1).await;
        assert_eq!(got[0].header("authorization").as_deref(), Some(CREDENTIAL));
        assert_eq!(
            got[0].header("content-type").as_deref(),
            Some("application/secevent+jwt")
        );
        let c = verified(&app.url, &got[0].set, "rx").await;
        assert_eq!(c["events"][VERIFICATION]["state"], "st-1", "{c}");
        assert_eq!(c["sub_id"], json!({ "format": "opaque", "id": id }));
        // §8.1.1 min_verification_interval: again at once is too soon.
        let (code, _, h) = call(
            &app,
            reqwest::Method::POST,
            "/ssf/verify",
            Some(&rx),
            Some(verify.clone()),
        )
        .await;
        assert_eq!(code, 429);
        assert!(h.get("retry-after").is_some());
        app.advance(10);
        let (code, _, _) = call(
            &app,
            reqwest::Method::POST,
            "/ssf/verify",
            Some(&rx),
            Some(verify),
        )
        .await;
        assert_eq!(code, 204);
        receiver.wait_for(2).await;

        let session = revoke_one(&app).await;
        let got = receiver.wait_for(3).await;
        let c = verified(&app.url, &got[2].set, "rx").await;
        assert_eq!(c["sub_id"]["session"]["id"], session.as_str(), "{c}");
        assert!(c["events"][SESSION_REVOKED].is_object());
        assert_eq!(got[2].header("authorization").as_deref(), Some(CREDENTIAL));

        // Audited, naming the client and the stream, never the credential or the URL.
        let entries = app.audit_entries().await;
        let created = entries
            .iter()
            .find(|e| e.kind == "ssf.stream_created")
            .unwrap();
        assert_eq!(created.client_id.as_deref(), Some("rx"));
        assert!(created.detail.contains(&id));
        for e in &entries {
            assert!(!e.detail.contains("receiver-secret"), "{e:?}");
            assert!(!e.detail.contains(&receiver.url), "{e:?}");
        }
        app.stop().await;
    }
}

/// SSF 1.0 §8.1.1.1: a stream created without `delivery` is polled (RFC 8936) at the URL the
/// transmitter gives, with the receiver's own access token (§7.1.1), and by no one else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_8_1_1_1_a_poll_stream_made_by_api_is_polled_with_the_receivers_token() {
    let pki = pki();
    for b in backends() {
        let db = test_db(b).await;
        let config = receivers(&db, &pki, false);
        let app = spawn_on(db, &config).await;
        let rx = token_of(&app, ("rx", "rx-secret")).await;
        let s = create(&app, &rx, json!({ "events_requested": [SESSION_REVOKED] })).await;
        let id = s["stream_id"].as_str().unwrap().to_string();
        let url = format!("{}/ssf/poll/{id}", app.url);
        assert_eq!(
            s["delivery"],
            json!({ "method": POLL, "endpoint_url": url })
        );
        let first = revoke_one(&app).await;
        let second = revoke_one(&app).await;
        let poll = |token: Option<String>, body: Value| {
            let (http, url) = (app.http.clone(), url.clone());
            async move {
                let mut req = http.post(url).json(&body);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let resp = req.send().await.unwrap();
                (
                    resp.status().as_u16(),
                    resp.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
        // RFC 6750 §3.1: no token, another receiver's token, a non-receiver's token.
        let rx2 = token_of(&app, ("rx2", "rx2-secret")).await;
        let other = app.cc_token(&[]).await;
        for t in [None, Some(rx2), Some(other), Some("garbage".to_string())] {
            assert_eq!(poll(t.clone(), json!({})).await.0, 401, "{t:?}");
        }
        let (code, v) = poll(Some(rx.clone()), json!({ "maxEvents": 1 })).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["moreAvailable"], true);
        let (jti, set) = v["sets"].as_object().unwrap().iter().next().unwrap();
        let c = verified(&app.url, set.as_str().unwrap(), "rx").await;
        assert_eq!(c["sub_id"]["session"]["id"], first.as_str());
        let (_, v) = poll(Some(rx.clone()), json!({ "ack": [jti] })).await;
        let rest = v["sets"].as_object().unwrap();
        assert_eq!(rest.len(), 1, "{v}");
        let c = verified(
            &app.url,
            rest.values().next().unwrap().as_str().unwrap(),
            "rx",
        )
        .await;
        assert_eq!(c["sub_id"]["session"]["id"], second.as_str());
        app.stop().await;
    }
}

/// SSF 1.0 §8.1.2.2: `paused` holds SETs and `enabled` releases them in order; `disabled`
/// drops what is held and keeps nothing (verification included) until enabled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_8_1_2_pause_holds_enable_releases_in_order_and_disable_drops() {
    let pki = pki();
    for b in backends() {
        let receiver = Receiver::start(&pki).await;
        let db = test_db(b).await;
        let config = receivers(&db, &pki, true);
        let app = spawn_on(db, &config).await;
        let rx = token_of(&app, ("rx", "rx-secret")).await;
        let s = create(&app, &rx, push_body(&receiver.url)).await;
        let id = s["stream_id"].as_str().unwrap().to_string();
        set_status(&app, &rx, &id, "paused").await;
        let (code, v, _) = call(
            &app,
            reqwest::Method::GET,
            &format!("/ssf/status?stream_id={id}"),
            Some(&rx),
            None,
        )
        .await;
        assert_eq!((code, &v["status"]), (200, &json!("paused")));
        let mut sessions = Vec::new();
        for _ in 0..3 {
            sessions.push(revoke_one(&app).await);
        }
        receiver.stays_at(0).await;
        set_status(&app, &rx, &id, "enabled").await;
        let got = receiver.wait_for(3).await;
        let mut said = Vec::new();
        for p in &got {
            let c = verified(&app.url, &p.set, "rx").await;
            said.push(c["sub_id"]["session"]["id"].as_str().unwrap().to_string());
        }
        assert_eq!(said, sessions, "{}: held SETs go out in order", app.label());

        // Held, then disabled: dropped, and nothing is kept while disabled.
        set_status(&app, &rx, &id, "paused").await;
        revoke_one(&app).await;
        set_status(&app, &rx, &id, "disabled").await;
        revoke_one(&app).await;
        let verify = json!({ "stream_id": id, "state": "x" });
        let (code, _, _) = call(
            &app,
            reqwest::Method::POST,
            "/ssf/verify",
            Some(&rx),
            Some(verify),
        )
        .await;
        assert_eq!(code, 204);
        set_status(&app, &rx, &id, "enabled").await;
        receiver.stays_at(3).await;
        let last = revoke_one(&app).await;
        let got = receiver.wait_for(4).await;
        let c = verified(&app.url, &got[3].set, "rx").await;
        assert_eq!(c["sub_id"]["session"]["id"], last.as_str());
        let kinds: Vec<String> = (app.audit_entries().await.into_iter())
            .filter(|e| e.kind == "ssf.stream_status")
            .map(|e| e.detail)
            .collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        app.stop().await;
    }
}

/// SSF 1.0 §8.1.1.5: a deleted stream is 404 everywhere, its held SETs are gone and nothing
/// more is sent to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_8_1_1_5_a_deleted_stream_is_404_and_hears_nothing_more() {
    let pki = pki();
    for b in backends() {
        let receiver = Receiver::start(&pki).await;
        let db = test_db(b).await;
        let config = receivers(&db, &pki, true);
        let app = spawn_on(db, &config).await;
        let rx = token_of(&app, ("rx", "rx-secret")).await;
        let s = create(&app, &rx, push_body(&receiver.url)).await;
        let id = s["stream_id"].as_str().unwrap().to_string();
        set_status(&app, &rx, &id, "paused").await;
        revoke_one(&app).await;
        let q = format!("/ssf/stream?stream_id={id}");
        let (code, _, _) = call(&app, reqwest::Method::DELETE, &q, Some(&rx), None).await;
        assert_eq!(code, 204);
        let (code, _, _) = call(&app, reqwest::Method::GET, &q, Some(&rx), None).await;
        assert_eq!(code, 404);
        let (code, _, _) = call(&app, reqwest::Method::DELETE, &q, Some(&rx), None).await;
        assert_eq!(code, 404);
        let (code, _, _) = call(
            &app,
            reqwest::Method::GET,
            &format!("/ssf/status?stream_id={id}"),
            Some(&rx),
            None,
        )
        .await;
        assert_eq!(code, 404);
        revoke_one(&app).await;
        receiver.stays_at(0).await;
        let deleted = (app.audit_entries().await.into_iter())
            .find(|e| e.kind == "ssf.stream_deleted")
            .unwrap();
        assert_eq!(deleted.client_id.as_deref(), Some("rx"));
        assert!(deleted.detail.contains(&id));
        app.stop().await;
    }
}

/// RFC 6750 §3.1 and SSF 1.0 §8.1 ("only authorized Receivers"): no token, a malformed or
/// revoked or expired token is 401 `invalid_token` with a Bearer challenge; a live token of a
/// SSF 1.0 §8.1 ("authorization MUST associate a Receiver with one or more stream IDs") and
/// §8.1.1.2 (404 "for this Event Receiver"): another receiver's stream_id is 404 for every
/// SSF 1.0 §6.1.1 `endpoint_url` is the receiver's choice, so a server-side request forgery
/// vector (the rules of draft-ietf-oauth-client-id-metadata-document-03 "SSRF" apply): https
/// only; loopback (127.0.0.1, a name resolving to it) and RFC 1918 (10.x) refused unless the
/// Bounds (SSF 1.0 §8.1.1.1 allows refusing what a transmitter will not hold): a body over
/// 16 KiB is 413, a receiver's fifth stream 409 (§8.1.1.1's answer when no more streams are
/// SSF 1.0 §6.1.1 `authorization_header` is the receiver's secret: mandate sends it with each
/// push and nowhere else: not in any answer (create, read, update), not in the audit log, not
/// Replicas (several processes on one PostgreSQL database): a stream created through one
/// replica gets the SET of a revocation committed on another right after the create answered,
/// because the stream list is read in the revocation's own transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_created_on_one_replica_hears_a_revocation_on_another_at_once() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let pki = pki();
    let receiver = Receiver::start(&pki).await;
    let db = test_db(Backend::Postgres).await;
    let config = receivers(&db, &pki, true);
    let path = write_config(&db, &config);
    let mut other = spawn_process(&path).await;
    let app = spawn_on(db, &config).await;
    let replica = TestApp::of_process(test_db(Backend::Postgres).await, path, &other);
    let rx = token_of(&replica, ("rx", "rx-secret")).await;
    for round in 0..3 {
        let s = create(&replica, &rx, push_body(&receiver.url)).await;
        // At once, on the other replica.
        let session = revoke_one(&app).await;
        let got = receiver.wait_for(round + 1).await;
        let c = verified(&app.url, &got[round].set, "rx").await;
        assert_eq!(
            c["sub_id"]["session"]["id"],
            session.as_str(),
            "round {round}"
        );
        let q = format!("/ssf/stream?stream_id={}", s["stream_id"].as_str().unwrap());
        assert_eq!(
            call(&replica, reqwest::Method::DELETE, &q, Some(&rx), None)
                .await
                .0,
            204
        );
    }
    other.child.kill().await.unwrap();
    app.stop().await;
}

/// A rolling config change that takes `rx`'s mark away: a replica still on the old config lets
/// `rx` make a stream after the new replica started (so its start-up cleanup missed it). Once
/// the old replica is gone, the new one pushes nothing to it: the config says who may hear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_a_client_this_replica_does_not_mark_gets_no_push_from_it() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let pki = pki();
    let receiver = Receiver::start(&pki).await;
    let db = test_db(Backend::Postgres).await;
    let old = receivers(&db, &pki, true);
    let new = old.replacen(
        "grant_types = [\"client_credentials\"]\nssf_receiver = true\n",
        "grant_types = [\"client_credentials\"]\n",
        1,
    );
    assert_ne!(new, old);
    let path = write_config(&db, &old);
    let mut other = spawn_process(&path).await;
    let app = spawn_on(db, &new).await;
    let replica = TestApp::of_process(test_db(Backend::Postgres).await, path, &other);
    let rx = token_of(&replica, ("rx", "rx-secret")).await;
    create(&replica, &rx, push_body(&receiver.url)).await;
    other.child.kill().await.unwrap();
    revoke_one(&app).await;
    receiver.stays_at(0).await;
    app.stop().await;
}

/// The config says who may hear of revocations: a client whose `ssf_receiver` mark is taken
/// away loses its streams at the next start (audited), and hears nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_unmarked_in_the_config_loses_its_streams_at_start() {
    let pki = pki();
    for b in backends() {
        let db = test_db(b).await;
        let config = receivers(&db, &pki, false);
        let app = spawn_on(db, &config).await;
        let rx = token_of(&app, ("rx", "rx-secret")).await;
        let rx2 = token_of(&app, ("rx2", "rx2-secret")).await;
        let mine = create(&app, &rx, json!({})).await;
        let kept = create(&app, &rx2, json!({})).await;
        let db = app.stop().await;
        let unmarked = config.replacen(
            "grant_types = [\"client_credentials\"]\nssf_receiver = true\n",
            "grant_types = [\"client_credentials\"]\n",
            1,
        );
        assert_ne!(unmarked, config);
        let app = spawn_on(db, &unmarked).await;
        let entry = (app.audit_entries().await.into_iter())
            .find(|e| e.kind == "ssf.stream_deleted")
            .expect("audited");
        assert_eq!(entry.client_id.as_deref(), Some("rx"));
        assert!(entry.detail.contains(mine["stream_id"].as_str().unwrap()));
        // rx is no receiver now; rx2's stream is as it was.
        let rx = token_of(&app, ("rx", "rx-secret")).await;
        let (code, _, _) = call(&app, reqwest::Method::GET, "/ssf/stream", Some(&rx), None).await;
        assert_eq!(code, 403);
        let rx2 = token_of(&app, ("rx2", "rx2-secret")).await;
        let (_, list, _) = call(&app, reqwest::Method::GET, "/ssf/stream", Some(&rx2), None).await;
        let ids: Vec<&Value> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["stream_id"])
            .collect();
        assert_eq!(ids, [&kept["stream_id"]], "{}", app.label());
        app.stop().await;
    }
}

/// SSF 1.0 §8.1.1.3: an update changes what it names and keeps the rest; a transmitter
/// member sent must match (`events_delivered` as it was). §8.1.1.4: a replace resets what it
/// leaves out. A change of delivery method takes the held SETs along (push to poll here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_8_1_1_3_update_keeps_8_1_1_4_replace_resets_and_held_sets_follow_the_stream() {
    let pki = pki();
    for b in backends() {
        let receiver = Receiver::start(&pki).await;
        let db = test_db(b).await;
        let config = receivers(&db, &pki, true);
        let app = spawn_on(db, &config).await;
        let rx = token_of(&app, ("rx", "rx-secret")).await;
        let s = create(&app, &rx, push_body(&receiver.url)).await;
        let id = s["stream_id"].as_str().unwrap().to_string();
        set_status(&app, &rx, &id, "paused").await;
        let held = revoke_one(&app).await;
        let patch = |body: Value| {
            call(
                &app,
                reqwest::Method::PATCH,
                "/ssf/stream",
                Some(&rx),
                Some(body),
            )
        };
        let (code, v, _) = patch(json!({ "stream_id": id, "description": "renamed" })).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["description"], "renamed");
        assert_eq!(v["delivery"], s["delivery"], "kept");
        assert_eq!(v["events_requested"], s["events_requested"], "kept");
        let (code, v, _) = patch(json!({ "stream_id": id, "events_delivered": [] })).await;
        assert_eq!(code, 400, "{v}");
        let (code, _, _) = patch(
            json!({ "stream_id": id, "events_delivered": [SESSION_REVOKED],
            "iss": app.url, "aud": "rx" }),
        )
        .await;
        assert_eq!(code, 200);
        // Push to poll: the held SET is polled, not lost.
        let (code, v, _) = patch(json!({ "stream_id": id, "delivery": { "method": POLL } })).await;
        assert_eq!(code, 200, "{v}");
        let url = format!("{}/ssf/poll/{id}", app.url);
        assert_eq!(
            v["delivery"],
            json!({ "method": POLL, "endpoint_url": url })
        );
        set_status(&app, &rx, &id, "enabled").await;
        let resp = app
            .http
            .post(&url)
            .bearer_auth(&rx)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let polled: Value = resp.json().await.unwrap();
        let sets = polled["sets"].as_object().unwrap();
        assert_eq!(sets.len(), 1, "{polled}");
        let c = verified(
            &app.url,
            sets.values().next().unwrap().as_str().unwrap(),
            "rx",
        )
        .await;
        assert_eq!(c["sub_id"]["session"]["id"], held.as_str());
        assert!(receiver.all().is_empty(), "nothing was pushed");
        // Replace: what is left out takes its default.
        let (code, v, _) = call(
            &app,
            reqwest::Method::PUT,
            "/ssf/stream",
            Some(&rx),
            Some(json!({ "stream_id": id, "events_requested": ["urn:example:unknown"] })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        assert!(v.get("description").is_none(), "{v}");
        assert_eq!(v["events_requested"], json!(["urn:example:unknown"]));
        assert_eq!(v["events_delivered"], json!([]));
        assert_eq!(v["delivery"]["method"], POLL);
        let updated = (app.audit_entries().await.into_iter())
            .filter(|e| e.kind == "ssf.stream_updated")
            .count();
        assert_eq!(updated, 4);
        app.stop().await;
    }
}
