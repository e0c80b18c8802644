//! RFC 9449 DPoP end to end, on every backend: tokens bound to the key of the proof that came
//! with the request, refusals of bad proofs, nonces, single use across two replicas, the
//! public client's bound refresh token, and a chain human → agent → sub-agent in which each hop
//! is bound to its own key and a token copied out of any hop gets nothing.

use mandate::config::Config;
use mandate_agent::DpopKey;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::agents::TestAgent;
use crate::flows::{Browser, Pkce, REDIRECT_URI, alice_token, authorize_query, code_from};
use crate::helpers::*;

const RUNTIME: (&str, &str) = ("agent-runtime", "s3cret");

/// A `POST` to `path` with form `form`, client `auth` and these `DPoP` header values.
async fn post(
    app: &TestApp,
    url: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    form: &[(&str, &str)],
    dpop: &[&str],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app.http.post(format!("{url}{path}")).form(form);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    for p in dpop {
        req = req.header("DPoP", *p);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) fn proof(key: &DpopKey, app: &TestApp, path: &str) -> String {
    key.proof("POST", &format!("{}{path}", app.url), None, None)
        .unwrap()
}

async fn client_credentials(
    app: &TestApp,
    dpop: &[&str],
) -> (u16, reqwest::header::HeaderMap, Value) {
    post(
        app,
        &app.url,
        "/token",
        Some(RUNTIME),
        &[("grant_type", "client_credentials")],
        dpop,
    )
    .await
}

#[tokio::test]
async fn rfc9449_s5_s6_a_proof_at_the_token_endpoint_binds_the_token_to_its_key() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let key = DpopKey::generate();
        let (status, _, v) = client_credentials(&app, &[&proof(&key, &app, "/token")]).await;
        assert_eq!(status, 200, "{backend:?}: {v}");
        assert_eq!(v["token_type"], "DPoP", "RFC 9449 §5");
        let token = v["access_token"].as_str().unwrap();
        assert_eq!(
            claims(token)["cnf"],
            json!({"jkt": key.jkt()}),
            "RFC 9449 §6.1"
        );
        let i = app.introspect(token).await;
        assert_eq!(i["active"], true);
        assert_eq!(i["token_type"], "DPoP", "RFC 9449 §6.2");
        assert_eq!(i["cnf"]["jkt"], key.jkt(), "RFC 9449 §6.2");
        // Without a proof: a bearer token, as before.
        let (_, _, v) = client_credentials(&app, &[]).await;
        assert_eq!(v["token_type"], "Bearer");
        let token = v["access_token"].as_str().unwrap();
        assert!(claims(token).get("cnf").is_none());
        assert!(app.introspect(token).await.get("cnf").is_none());
        // RFC 9449 §5.1: the metadata says which algorithms proofs may use.
        let (_, _, meta) = app
            .get_json("/.well-known/oauth-authorization-server")
            .await;
        assert_eq!(
            meta["dpop_signing_alg_values_supported"],
            json!(["ES256", "ES384", "RS256", "PS256", "EdDSA"])
        );
    }
}

#[tokio::test]
async fn rfc9449_s4_3_bad_proofs_are_invalid_dpop_proof_and_issue_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let key = DpopKey::generate();
        let url = |p: &str| format!("{}{p}", app.url);
        let replayed = proof(&key, &app, "/token");
        assert_eq!(client_credentials(&app, &[&replayed]).await.0, 200);
        let other_key = DpopKey::generate();
        let bearer = app.cc_token(&[]).await;
        let rows: Vec<(&str, Vec<String>)> = vec![
            (
                "§4.3 check 1: two DPoP headers",
                vec![proof(&key, &app, "/token"), proof(&key, &app, "/token")],
            ),
            ("§4.3 check 2: not a JWS", vec!["not-a-jwt".into()]),
            (
                "§4.3 check 8: another method",
                vec![key.proof("GET", &url("/token"), None, None).unwrap()],
            ),
            (
                "§4.3 check 9: another URI",
                vec![proof(&key, &app, "/introspect")],
            ),
            (
                "§4.3 check 9: another server",
                vec![
                    key.proof("POST", "https://as.example/token", None, None)
                        .unwrap(),
                ],
            ),
            ("§11.1: a proof used before", vec![replayed.clone()]),
            (
                "§4.3 check 6: signed by another key than its jwk",
                vec![swap_key(&proof(&key, &app, "/token"), &other_key)],
            ),
            (
                "§4.3 check 5: alg none",
                vec![alg_none(&other_key, &url("/token"))],
            ),
            (
                "§4.3 check 12: ath for a token at the token endpoint is not asked, a bearer token is not a proof",
                vec![bearer.clone()],
            ),
        ];
        let audit = app.audit_len().await;
        for (why, headers) in rows {
            let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            let (status, _, v) = client_credentials(&app, &refs).await;
            assert_eq!(status, 400, "{backend:?} {why}: {v}");
            assert_eq!(v["error"], "invalid_dpop_proof", "{backend:?} {why}: {v}");
            assert!(!v["error_description"].as_str().unwrap().is_empty());
        }
        assert_eq!(
            app.audit_len().await,
            audit,
            "{backend:?}: nothing was issued"
        );
    }
}

/// The proof's header key replaced by `other`'s: the signature no longer verifies.
fn swap_key(proof: &str, other: &DpopKey) -> String {
    let parts: Vec<&str> = proof.split('.').collect();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": other.public_jwk()});
    format!("{}.{}.{}", b64(&header), parts[1], parts[2])
}

fn b64(v: &Value) -> String {
    mandate::crypto::b64url(v.to_string().as_bytes())
}

fn alg_none(key: &DpopKey, htu: &str) -> String {
    let header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.public_jwk()});
    let c = json!({"jti": "none-1", "htm": "POST", "htu": htu, "iat": crate::agents::now()});
    format!("{}.{}.", b64(&header), b64(&c))
}

#[tokio::test]
async fn rfc9449_s8_a_required_nonce_comes_back_in_dpop_nonce_and_must_be_used() {
    for backend in backends() {
        let app = spawn_app_with(backend, "[dpop]\nrequire_nonce = true\n").await;
        let key = DpopKey::generate();
        let (status, headers, v) = client_credentials(&app, &[&proof(&key, &app, "/token")]).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("use_dpop_nonce")),
            "{v}"
        );
        let nonce = headers
            .get("dpop-nonce")
            .expect("RFC 9449 §8: DPoP-Nonce")
            .to_str()
            .unwrap()
            .to_string();
        let with_nonce = key
            .proof("POST", &format!("{}/token", app.url), None, Some(&nonce))
            .unwrap();
        let (status, headers, v) = client_credentials(&app, &[&with_nonce]).await;
        assert_eq!(status, 200, "{backend:?}: {v}");
        assert_eq!(v["token_type"], "DPoP");
        assert!(
            headers.contains_key("dpop-nonce"),
            "the next nonce comes with every answer"
        );
        let made_up = key
            .proof("POST", &format!("{}/token", app.url), None, Some("made-up"))
            .unwrap();
        let (_, _, v) = client_credentials(&app, &[&made_up]).await;
        assert_eq!(v["error"], "use_dpop_nonce");
    }
}

#[tokio::test]
async fn rfc9449_s5_2_a_client_that_requires_dpop_gets_nothing_without_a_proof() {
    for backend in backends() {
        let extra = "[[clients]]\nclient_id = \"strict\"\nclient_secret = \"strict-secret\"\n\
                     grant_types = [\"client_credentials\"]\ndpop = \"required\"\n\
                     [[clients]]\nclient_id = \"plain\"\nclient_secret = \"plain-secret\"\n\
                     grant_types = [\"client_credentials\"]\ndpop = \"off\"\n";
        let app = spawn_app_with(backend, extra).await;
        let form = [("grant_type", "client_credentials")];
        let (status, _, v) = post(
            &app,
            &app.url,
            "/token",
            Some(("strict", "strict-secret")),
            &form,
            &[],
        )
        .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{v}"
        );
        let key = DpopKey::generate();
        let p = proof(&key, &app, "/token");
        let (status, _, v) = post(
            &app,
            &app.url,
            "/token",
            Some(("strict", "strict-secret")),
            &form,
            &[&p],
        )
        .await;
        assert_eq!(
            (status, v["token_type"].as_str()),
            (200, Some("DPoP")),
            "{v}"
        );
        // `off`: the header is ignored and the token is a bearer token.
        let p = proof(&key, &app, "/token");
        let (status, _, v) = post(
            &app,
            &app.url,
            "/token",
            Some(("plain", "plain-secret")),
            &form,
            &[&p],
        )
        .await;
        assert_eq!(
            (status, v["token_type"].as_str()),
            (200, Some("Bearer")),
            "{v}"
        );
    }
}

/// A second server process-alike on the same database and config (another replica behind the
/// same issuer): its URL.
async fn second_replica(app: &TestApp) -> String {
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let config = Config::from_toml(&text, "test.toml", Vec::new()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let replica = mandate::App::build_with_clock(config, addr, app.db.clock.clone())
        .await
        .unwrap();
    tokio::spawn(replica.run(listener, std::future::pending()));
    format!("http://{addr}")
}

/// RFC 9449 §11.1 and §8 across replicas: a proof used at one replica is refused at the other,
/// and a nonce one replica sent is good at the other (both derive it from the shared KEK).
#[tokio::test]
async fn rfc9449_s11_1_a_proof_is_single_use_across_replicas_and_nonces_are_shared() {
    let Some(backend) = backends().into_iter().find(|b| *b == Backend::Postgres) else {
        return;
    };
    let issuer = "http://mandate.test";
    let db = test_db(backend).await;
    let a = spawn_on_top(
        db,
        &format!("issuer = \"{issuer}\""),
        "[dpop]\nrequire_nonce = true\n",
    )
    .await;
    let b_url = second_replica(&a).await;
    let key = DpopKey::generate();
    let form = [("grant_type", "client_credentials")];
    let htu = format!("{issuer}/token");
    let no_nonce = key.proof("POST", &htu, None, None).unwrap();
    let (_, headers, v) = post(&a, &a.url, "/token", Some(RUNTIME), &form, &[&no_nonce]).await;
    assert_eq!(v["error"], "use_dpop_nonce");
    let nonce = headers
        .get("dpop-nonce")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let p = key.proof("POST", &htu, None, Some(&nonce)).unwrap();
    // The nonce from replica A, used first at replica B.
    let (status, _, v) = post(&a, &b_url, "/token", Some(RUNTIME), &form, &[&p]).await;
    assert_eq!(status, 200, "a nonce from another replica: {v}");
    let (status, _, v) = post(&a, &a.url, "/token", Some(RUNTIME), &form, &[&p]).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "replayed at the other replica: {v}"
    );
    // Both at once: exactly one wins.
    let p = key.proof("POST", &htu, None, Some(&nonce)).unwrap();
    let both = [p.as_str()];
    let (r1, r2) = tokio::join!(
        post(&a, &a.url, "/token", Some(RUNTIME), &form, &both),
        post(&a, &b_url, "/token", Some(RUNTIME), &form, &both),
    );
    let mut statuses = [r1.0, r2.0];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{} / {}", r1.2, r2.2);
}

/// RFC 9449 §5: the public client `cli` redeems its code with a proof; its refresh token is
/// bound, so a copy of it without the key refreshes nothing (and does not burn the session).
#[tokio::test]
async fn rfc9449_s5_a_public_clients_refresh_token_is_bound_to_its_key() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let key = DpopKey::generate();
        let mut browser = Browser::new(&app);
        let pkce = Pkce::new();
        let query = authorize_query("cli", "orders:read", "st", &pkce.challenge, &[]);
        let location = browser
            .authorize_and_approve(&query, "alice", "alice-password")
            .await;
        let code = code_from(&location, "st");
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", "cli"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", pkce.verifier.as_str()),
        ];
        let (status, _, v) = post(
            &app,
            &app.url,
            "/token",
            None,
            &form,
            &[&proof(&key, &app, "/token")],
        )
        .await;
        assert_eq!(
            (status, v["token_type"].as_str()),
            (200, Some("DPoP")),
            "{backend:?}: {v}"
        );
        assert_eq!(
            claims(v["access_token"].as_str().unwrap())["cnf"]["jkt"],
            key.jkt()
        );
        let refresh = v["refresh_token"].as_str().unwrap().to_string();
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", "cli"),
            ("refresh_token", refresh.as_str()),
        ];
        let thief = DpopKey::generate();
        for dpop in [vec![], vec![proof(&thief, &app, "/token")]] {
            let refs: Vec<&str> = dpop.iter().map(String::as_str).collect();
            let (status, _, v) = post(&app, &app.url, "/token", None, &form, &refs).await;
            assert_eq!(
                (status, v["error"].as_str()),
                (400, Some("invalid_grant")),
                "{backend:?}: {v}"
            );
        }
        let (status, _, v) = post(
            &app,
            &app.url,
            "/token",
            None,
            &form,
            &[&proof(&key, &app, "/token")],
        )
        .await;
        assert_eq!(
            (status, v["token_type"].as_str()),
            (200, Some("DPoP")),
            "{backend:?}: the owner still refreshes: {v}"
        );
    }
}

/// The chain of the issue: alice → planner → sub-agent, each hop bound to its own key. A copied
/// agent token, a copied delegated token at another client, and a delegated token without its
/// key at a resource server that checks `cnf` all get nothing.
#[tokio::test]
async fn rfc9449_each_hop_of_a_delegation_chain_is_bound_to_its_own_key() {
    for backend in backends() {
        let (a, b) = (TestAgent::new("planner"), TestAgent::new("sub-bot"));
        let cfg = format!(
            "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
             grant_types = [\"{TE}\"]\n[[clients]]\nclient_id = \"other-host\"\n\
             client_secret = \"other-host-secret\"\ngrant_types = [\"{TE}\"]\n{}{}",
            a.toml(),
            b.toml()
        );
        let app = spawn_app_with(backend, &cfg).await;
        let (ka, kb) = (DpopKey::generate(), DpopKey::generate());
        let alice = alice_token(&app, "orders:read orders:write").await;

        let a_agent = attest_bound(&app, &a, &ka).await;
        assert_eq!(
            claims(&a_agent)["cnf"]["jkt"],
            ka.jkt(),
            "the agent token is bound"
        );
        let (status, v) = exchange(
            &app,
            AGENT_HOST,
            &alice,
            &a_agent,
            "orders:read orders:write",
            Some(&ka),
        )
        .await;
        assert_eq!(status, 200, "{backend:?}: {v}");
        assert_eq!(v["token_type"], "DPoP");
        let a_token = v["access_token"].as_str().unwrap().to_string();
        assert_eq!(claims(&a_token)["cnf"]["jkt"], ka.jkt());

        // A copy of the planner's agent token, with another key's proof or none, acts for nobody.
        for thief in [Some(&kb), None] {
            let (status, v) =
                exchange(&app, AGENT_HOST, &alice, &a_agent, "orders:read", thief).await;
            assert_eq!(
                (status, v["error"].as_str()),
                (400, Some("invalid_grant")),
                "{backend:?}: {v}"
            );
        }

        let b_agent = attest_bound(&app, &b, &kb).await;
        let (status, v) = exchange(
            &app,
            AGENT_HOST,
            &a_token,
            &b_agent,
            "orders:read",
            Some(&kb),
        )
        .await;
        assert_eq!(status, 200, "{backend:?}: {v}");
        let b_token = v["access_token"].as_str().unwrap().to_string();
        let bc = claims(&b_token);
        assert_eq!(
            bc["cnf"]["jkt"],
            kb.jkt(),
            "the sub-agent's token is bound to its own key"
        );
        assert_eq!(
            bc["act"],
            json!({"sub": "agent:sub-bot", "act": {"sub": "agent:planner"}})
        );
        let i = app.introspect(&b_token).await;
        assert_eq!(
            (i["token_type"].as_str(), i["cnf"]["jkt"].as_str()),
            (Some("DPoP"), Some(kb.jkt()))
        );
        // Introspection shows the binding of every hop, the current actor first.
        assert_eq!(
            i["dpop_chain"],
            json!([
                {"sub": "agent:sub-bot", "jkt": kb.jkt(), "dpop_key": "software"},
                {"sub": "agent:planner", "jkt": ka.jkt(), "dpop_key": "software"},
            ]),
            "{backend:?}: {i}"
        );

        // The planner's delegated token copied to another client: no new delegation from it.
        let (status, v) = exchange(
            &app,
            ("other-host", "other-host-secret"),
            &a_token,
            &b_agent,
            "orders:read",
            Some(&kb),
        )
        .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{backend:?}: {v}"
        );
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .contains("another client"),
            "{v}"
        );
    }
}

pub(crate) async fn attest_bound(app: &TestApp, agent: &TestAgent, key: &DpopKey) -> String {
    let nonce = agent.challenge(app, true).await;
    let body =
        json!({"agent": agent.name, "nonce": nonce, "proof": agent.proof(app, &nonce, None)});
    let resp = app
        .http
        .post(format!("{}/attest", app.url))
        .header("DPoP", proof(key, app, "/attest"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["agent_token"].as_str().unwrap().to_string()
}

async fn exchange(
    app: &TestApp,
    client: (&str, &str),
    subject: &str,
    actor: &str,
    scope: &str,
    key: Option<&DpopKey>,
) -> (u16, Value) {
    let form = [
        ("grant_type", TE),
        ("subject_token", subject),
        ("subject_token_type", AT),
        ("actor_token", actor),
        ("actor_token_type", JWT),
        ("scope", scope),
    ];
    let dpop: Vec<String> = key.map(|k| proof(k, app, "/token")).into_iter().collect();
    let refs: Vec<&str> = dpop.iter().map(String::as_str).collect();
    let (status, _, v) = post(app, &app.url, "/token", Some(client), &form, &refs).await;
    (status, v)
}

/// The Rust resource-server middleware on 127.0.0.1:0, `GET /whoami` behind it, checking
/// tokens by JWT (`jwt`) or by introspection as `orders-api`.
async fn resource_server(app: &TestApp, jwt: bool) -> String {
    use axum::Router;
    use axum::routing::get;
    use mandate_resource::{BearerAuthLayer, Principal, Verifier};
    let builder = Verifier::builder(&app.url, "orders-api");
    let builder = if jwt {
        builder.jwt()
    } else {
        builder.introspection("orders-api", "rs-secret")
    };
    let verifier = builder.build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route(
            "/whoami",
            get(|p: Principal| async move {
                axum::Json(json!({"who": p.to_string(), "jkt": p.dpop_jkt(), "key": p.dpop_key()}))
            }),
        )
        .layer(BearerAuthLayer::new(verifier));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// RFC 9449 §7 at a resource server (the `mandate-resource` middleware, both modes): the
/// sub-agent's bound token works only with a fresh proof by the sub-agent's key for this very
/// request; copied out and sent any other way, it is refused with a DPoP challenge.
#[tokio::test]
async fn rfc9449_s7_a_copied_bound_token_is_refused_at_the_resource_server() {
    let (a, b) = (TestAgent::new("planner"), TestAgent::new("sub-bot"));
    let cfg = format!(
        "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
         grant_types = [\"{TE}\"]\n{}{}",
        a.toml(),
        b.toml()
    );
    let app = spawn_app_with(Backend::Sqlite, &cfg).await;
    let (ka, kb) = (DpopKey::generate(), DpopKey::generate());
    let alice = alice_token(&app, "orders:read orders:write").await;
    let a_agent = attest_bound(&app, &a, &ka).await;
    let (_, v) = exchange(&app, AGENT_HOST, &alice, &a_agent, "orders:read", Some(&ka)).await;
    let a_token = v["access_token"].as_str().unwrap().to_string();
    let b_agent = attest_bound(&app, &b, &kb).await;
    let (_, v) = exchange(
        &app,
        AGENT_HOST,
        &a_token,
        &b_agent,
        "orders:read",
        Some(&kb),
    )
    .await;
    let token = v["access_token"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    for jwt in [true, false] {
        let rs = resource_server(&app, jwt).await;
        let whoami = format!("{rs}/whoami");
        let call = |auth: String, proofs: Vec<String>| {
            let (http, whoami) = (http.clone(), whoami.clone());
            async move {
                let mut req = http.get(&whoami).header("Authorization", auth);
                for p in proofs {
                    req = req.header("DPoP", p);
                }
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                (
                    status,
                    challenge,
                    resp.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
        let dpop = format!("DPoP {token}");
        let good = kb.proof("GET", &whoami, Some(&token), None).unwrap();
        let (status, _, v) = call(dpop.clone(), vec![good.clone()]).await;
        assert_eq!(status, 200, "jwt={jwt}: {v}");
        assert_eq!(v["who"], "alice → planner → sub-bot");
        assert_eq!(
            (v["jkt"].as_str(), v["key"].as_str()),
            (Some(kb.jkt()), Some("software"))
        );
        let rows: Vec<(&str, String, Vec<String>, &str)> = vec![
            (
                "sent as Bearer",
                format!("Bearer {token}"),
                vec![],
                "invalid_token",
            ),
            (
                "sent as Bearer with a proof",
                format!("Bearer {token}"),
                vec![kb.proof("GET", &whoami, Some(&token), None).unwrap()],
                "invalid_token",
            ),
            ("no proof", dpop.clone(), vec![], "invalid_dpop_proof"),
            (
                "the parent agent's key",
                dpop.clone(),
                vec![ka.proof("GET", &whoami, Some(&token), None).unwrap()],
                "invalid_token",
            ),
            (
                "another URL",
                dpop.clone(),
                vec![
                    kb.proof("GET", &format!("{rs}/other"), Some(&token), None)
                        .unwrap(),
                ],
                "invalid_dpop_proof",
            ),
            (
                "another method",
                dpop.clone(),
                vec![kb.proof("POST", &whoami, Some(&token), None).unwrap()],
                "invalid_dpop_proof",
            ),
            (
                "ath of another token",
                dpop.clone(),
                vec![kb.proof("GET", &whoami, Some(&a_token), None).unwrap()],
                "invalid_dpop_proof",
            ),
            (
                "replayed",
                dpop.clone(),
                vec![good.clone()],
                "invalid_dpop_proof",
            ),
        ];
        for (why, auth, proofs, error) in rows {
            let (status, challenge, v) = call(auth, proofs).await;
            assert_eq!(status, 401, "jwt={jwt} {why}: {v}");
            assert_eq!(v["error"], error, "jwt={jwt} {why}: {v}");
            assert!(
                challenge.starts_with("DPoP ") && challenge.contains("algs=\""),
                "RFC 9449 §7.1: {challenge}"
            );
        }
        // An unbound token still works as Bearer, and is refused as DPoP.
        let bearer = app.cc_token(&[("audience", "orders-api")]).await;
        assert_eq!(
            call(format!("Bearer {bearer}"), vec![]).await.0,
            200,
            "jwt={jwt}"
        );
        let p = kb.proof("GET", &whoami, Some(&bearer), None).unwrap();
        assert_eq!(
            call(format!("DPoP {bearer}"), vec![p]).await.0,
            401,
            "jwt={jwt}"
        );
    }
}

/// RFC 9449 §8 at `/attest`: the challenge already carries the DPoP nonce, and a proof without
/// it is answered `use_dpop_nonce` without spending the agent's challenge, so the plain retry
/// the RFC describes succeeds.
#[tokio::test]
async fn rfc9449_s8_a_use_dpop_nonce_at_attest_leaves_the_challenge_usable() {
    let agent = TestAgent::new("planner");
    let app = spawn_app_with(
        Backend::Sqlite,
        &format!("[dpop]\nrequire_nonce = true\n{}", agent.toml()),
    )
    .await;
    let resp = app
        .http
        .post(format!("{}/attest/challenge", app.url))
        .json(&json!({"agent": "planner"}))
        .send()
        .await
        .unwrap();
    let nonce = resp
        .headers()
        .get("dpop-nonce")
        .expect("DPoP-Nonce on the challenge")
        .to_str()
        .unwrap()
        .to_string();
    let challenge = resp.json::<Value>().await.unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"agent": "planner", "nonce": challenge, "proof": agent.proof(&app, &challenge, None)});
    let key = DpopKey::generate();
    let attest = |proof: String| {
        let (app, body) = (&app, body.clone());
        async move {
            let resp = app
                .http
                .post(format!("{}/attest", app.url))
                .header("DPoP", proof)
                .json(&body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let htu = format!("{}/attest", app.url);
    let (status, v) = attest(key.proof("POST", &htu, None, None).unwrap()).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("use_dpop_nonce")),
        "{v}"
    );
    let (status, v) = attest(key.proof("POST", &htu, None, Some(&nonce)).unwrap()).await;
    assert_eq!(status, 200, "the same challenge still works: {v}");
    assert_eq!(
        claims(v["agent_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
}

/// Per resource server: `dpop = "required"` on a resource server's client means every token
/// for its audience is DPoP-bound; a request without a proof gets nothing for it, and other
/// audiences keep bearer tokens.
#[tokio::test]
async fn rfc9449_a_resource_server_can_require_every_token_for_it_to_be_bound() {
    for backend in backends() {
        let extra = "[[clients]]\nclient_id = \"secure-api\"\nclient_secret = \"secure-secret\"\n\
                     introspect = true\ndpop = \"required\"\n";
        let app = spawn_app_with(backend, extra).await;
        let form = |aud: &'static str| [("grant_type", "client_credentials"), ("audience", aud)];
        let (status, _, v) = post(
            &app,
            &app.url,
            "/token",
            Some(RUNTIME),
            &form("secure-api"),
            &[],
        )
        .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{backend:?}: {v}"
        );
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .contains("secure-api"),
            "{v}"
        );
        let key = DpopKey::generate();
        let p = proof(&key, &app, "/token");
        let (status, _, v) = post(
            &app,
            &app.url,
            "/token",
            Some(RUNTIME),
            &form("secure-api"),
            &[&p],
        )
        .await;
        assert_eq!(
            (status, v["token_type"].as_str()),
            (200, Some("DPoP")),
            "{backend:?}: {v}"
        );
        let (status, _, v) = post(
            &app,
            &app.url,
            "/token",
            Some(RUNTIME),
            &form("orders-api"),
            &[],
        )
        .await;
        assert_eq!(
            (status, v["token_type"].as_str()),
            (200, Some("Bearer")),
            "{backend:?}: {v}"
        );
    }
}
