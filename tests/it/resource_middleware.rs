//! The Rust resource-server middleware (`mandate-resource`, issue 17): a small axum app guarded
//! by `BearerAuthLayer` on port 0 in front of a real mandate on port 0, driven over HTTP with
//! tokens mandate issued (client credentials, a human → agent → sub-agent delegation), tokens
//! forged around it, and the refusals a client sees (RFC 6750 §3, RFC 9728 §5.1).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mandate_resource::{
    BearerAuthLayer, Principal, ProtectedResourceMetadata, RequireScopes, Verifier,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::agents::TestAgent;
use crate::flows::alice_token;
use crate::helpers::*;

/// The audience of the resource server under test (mandate's `orders-api` client).
const AUD: &str = "orders-api";

/// A resource server: the address of an axum app and its metadata document's URL.
struct Rs {
    url: String,
    metadata_url: String,
}

/// What the protected handler sends back: every part of the `Principal` it was handed.
async fn whoami(p: Principal) -> Json<Value> {
    Json(json!({
        "display": p.to_string(),
        "subject": p.subject(),
        "actors": p.actors().iter().map(|a| json!([a.subject(), a.name()])).collect::<Vec<_>>(),
        "agent": p.agent().map(|a| a.name().to_string()),
        "attestation": p.attestation(),
        "session_id": p.session_id(),
        "scopes": p.scopes(),
        "audience": p.audience(),
        "client_id": p.client_id(),
        "token_id": p.token_id(),
        "expires_at": p.expires_at().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        "claims_sub": p.claims()["sub"],
    }))
}

/// Starts the app on 127.0.0.1:0: `/whoami` (any good token), `GET /orders` (`orders:read`),
/// `POST /orders` (`orders:write`), and the RFC 9728 document, unauthenticated.
async fn start_rs(
    issuer: &str,
    configure: impl FnOnce(mandate_resource::VerifierBuilder) -> mandate_resource::VerifierBuilder,
) -> Rs {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let meta = ProtectedResourceMetadata::new(url.clone(), issuer)
        .unwrap()
        .scopes_supported(["orders:read", "orders:write"])
        .resource_name("Orders");
    let verifier = configure(Verifier::builder(issuer, AUD).resource_metadata_url(meta.url()))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route(
            "/orders",
            get(|| async { "the orders" }).layer(RequireScopes::new(["orders:read"])),
        )
        .route(
            "/orders",
            post(|| async { "ordered" }).layer(RequireScopes::new(["orders:write"])),
        )
        .layer(BearerAuthLayer::new(verifier))
        .merge(meta.router());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Rs {
        url,
        metadata_url: meta.url().to_string(),
    }
}

struct Answer {
    status: u16,
    challenge: String,
    body: Value,
    raw: String,
}

impl Answer {
    /// The `error` and `error_description` attributes of the challenge.
    fn error(&self) -> Option<String> {
        attr(&self.challenge, "error")
    }
    fn description(&self) -> String {
        attr(&self.challenge, "error_description").unwrap_or_default()
    }
}

/// An attribute of a `WWW-Authenticate: Bearer a="...", b="..."` challenge.
fn attr(challenge: &str, name: &str) -> Option<String> {
    let rest = challenge.strip_prefix("Bearer")?;
    for part in rest.split("\", ") {
        let part = part.trim_start_matches([' ', ',']);
        if let Some(v) = part.strip_prefix(&format!("{name}=\"")) {
            return Some(v.trim_end_matches('"').to_string());
        }
    }
    None
}

async fn call(rs: &Rs, method: &str, path: &str, auth: &[&str]) -> Answer {
    let http = reqwest::Client::new();
    let url = format!("{}{path}", rs.url);
    let mut req = if method == "POST" {
        http.post(url)
    } else {
        http.get(url)
    };
    for a in auth {
        req = req.header(reqwest::header::AUTHORIZATION, *a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let raw = resp.text().await.unwrap();
    Answer {
        status,
        challenge,
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
    }
}

async fn with_token(rs: &Rs, method: &str, path: &str, token: &str) -> Answer {
    call(rs, method, path, &[&format!("Bearer {token}")]).await
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// Signs `claims` with a fresh P-256 key that is not mandate's.
fn forge(claims: &Value, typ: &str, kid: &str) -> String {
    let key = TestAgent::new("forger").key;
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some(typ.into());
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// mandate with the two agents of the delegation and the client that exchanges for them.
async fn mandate_with_agents(planner: &TestAgent, bot: &TestAgent) -> TestApp {
    let cfg = format!(
        "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
         grant_types = [\"{TE}\"]\n{}{}",
        planner.toml(),
        bot.toml()
    );
    spawn_app_with(Backend::Sqlite, &cfg).await
}

/// RFC 8693 §2.1 token exchange by `agent-host`: `subject` acted on by the agent of `actor`.
async fn exchange(app: &TestApp, subject: &str, actor: &str, extra: &[(&str, &str)]) -> String {
    let (_, v) = token_exchange(app, AGENT_HOST, subject, Some(actor), extra).await;
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("exchange failed: {v}"))
        .to_string()
}

/// alice → planner → payments-bot, the last token for `orders-api` with `orders:read`.
async fn delegated_token(app: &TestApp, planner: &TestAgent, bot: &TestAgent) -> String {
    let alice = alice_token(app, "orders:read orders:write").await;
    let planner_token = exchange(app, &alice, &planner.attest(app).await, &[]).await;
    exchange(
        app,
        &planner_token,
        &bot.attest(app).await,
        &[("scope", "orders:read"), ("audience", AUD)],
    )
    .await
}

#[tokio::test]
async fn rfc9068_tokens_mandate_issued_reach_the_handler_with_the_human_and_the_agent_chain() {
    let planner = TestAgent::new("planner");
    let bot = TestAgent::new("payments-bot");
    let app = mandate_with_agents(&planner, &bot).await;
    let jwt_rs = start_rs(&app.url, |b| b.jwt()).await;
    let intro_rs = start_rs(&app.url, |b| b.introspection("orders-api", "rs-secret")).await;

    let token = delegated_token(&app, &planner, &bot).await;
    let c = claims(&token);
    for rs in [&jwt_rs, &intro_rs] {
        let a = with_token(rs, "GET", "/whoami", &token).await;
        assert_eq!(a.status, 200, "{}", a.raw);
        let p = &a.body;
        assert_eq!(p["display"], "alice → planner → payments-bot");
        assert_eq!(p["subject"], "alice");
        assert_eq!(p["claims_sub"], "alice");
        // RFC 8693 §4.1: the newest actor is outermost in `act`; the Principal lists the
        // actors in delegation order, the first agent first.
        assert_eq!(
            p["actors"],
            json!([
                ["agent:planner", "planner"],
                ["agent:payments-bot", "payments-bot"]
            ])
        );
        assert_eq!(p["agent"], "payments-bot");
        // How the presenting agent proved itself (mandate's `att`, software keys here).
        assert_eq!(p["attestation"], "software");
        assert_eq!(p["attestation"], c["att"]);
        assert_eq!(p["session_id"], c["sid"]);
        assert_eq!(p["token_id"], c["jti"]);
        assert_eq!(p["client_id"], "agent-host");
        assert_eq!(p["scopes"], json!(["orders:read"]));
        assert_eq!(p["audience"], json!([AUD]));
        assert_eq!(p["expires_at"], c["exp"]);
        // The scope it holds opens its route; the one it lacks does not (RFC 6750 §3.1).
        assert_eq!(with_token(rs, "GET", "/orders", &token).await.status, 200);
        let a = with_token(rs, "POST", "/orders", &token).await;
        assert_eq!(a.status, 403);
        assert_eq!(a.error().as_deref(), Some("insufficient_scope"));
    }

    // A client's own token (client credentials, RFC 6749 §4.4) is the client alone.
    let cc = app
        .cc_token(&[("audience", AUD), ("scope", "orders:read orders:write")])
        .await;
    for rs in [&jwt_rs, &intro_rs] {
        let a = with_token(rs, "GET", "/whoami", &cc).await;
        assert_eq!(a.status, 200, "{}", a.raw);
        assert_eq!(a.body["display"], "agent-runtime");
        assert_eq!(a.body["actors"], json!([]));
        assert_eq!(a.body["agent"], Value::Null);
        assert_eq!(with_token(rs, "POST", "/orders", &cc).await.status, 200);
    }
    app.stop().await;
}

#[tokio::test]
async fn rfc6750_s3_refusals_carry_the_error_and_rfc9728_s5_1_resource_metadata() {
    let planner = TestAgent::new("planner");
    let bot = TestAgent::new("payments-bot");
    let app = mandate_with_agents(&planner, &bot).await;
    let rs = start_rs(&app.url, |b| b).await;
    let rm = format!("resource_metadata=\"{}\"", rs.metadata_url);
    let good = app
        .cc_token(&[("audience", AUD), ("scope", "orders:read")])
        .await;
    assert_eq!(with_token(&rs, "GET", "/orders", &good).await.status, 200);

    // RFC 6750 §3.1: a request without a token gets a bare challenge, no error code.
    let a = call(&rs, "GET", "/orders", &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.challenge, format!("Bearer {rm}"));
    // Another scheme is not a bearer token either.
    let a = call(&rs, "GET", "/orders", &["Basic b3JkZXJzOnB3"]).await;
    assert_eq!(
        (a.status, a.challenge.as_str()),
        (401, format!("Bearer {rm}").as_str())
    );
    // Only the header carries tokens here (RFC 9728 `bearer_methods_supported: ["header"]`):
    // one in the query (RFC 6750 §2.3) is not looked at.
    let a = call(&rs, "GET", &format!("/orders?access_token={good}"), &[]).await;
    assert_eq!((a.status, a.error()), (401, None));
    // The scheme name is case-insensitive (RFC 7235 §2.1).
    let a = call(&rs, "GET", "/orders", &[&format!("bearer {good}")]).await;
    assert_eq!(a.status, 200, "{}", a.raw);

    // RFC 6750 §3.1 invalid_request: a malformed Authorization header is a 400.
    for (why, headers) in [
        ("no token after the scheme", vec!["Bearer "]),
        ("two tokens", vec!["Bearer abc def"]),
        ("not a b64token (RFC 6750 §2.1)", vec!["Bearer a\"b"]),
        (
            "two Authorization headers",
            vec!["Bearer abc", "Bearer def"],
        ),
    ] {
        let a = call(&rs, "GET", "/orders", &headers).await;
        assert_eq!(a.status, 400, "{why}: {}", a.raw);
        assert_eq!(a.error().as_deref(), Some("invalid_request"), "{why}");
        assert!(a.challenge.ends_with(&rm), "{why}: {}", a.challenge);
        assert_eq!(a.body["error"], "invalid_request", "{why}");
    }

    // RFC 6750 §3.1 invalid_token, each with a description saying what was wrong.
    let real = claims(&good);
    let kid = kid_of(&good);
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "at+jwt", "kid": kid})
            .to_string()
            .as_bytes()),
        b64(real.to_string().as_bytes())
    );
    let hs256 = {
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(&h, &real, &EncodingKey::from_secret(b"guessed")).unwrap()
    };
    // An agent token: signed by mandate's own key, but not an access token (typ JWT).
    let agent_token = planner.attest(&app).await;
    let billing = app
        .cc_token(&[("audience", "billing-api"), ("scope", "orders:read")])
        .await;
    let mut stretched = real.clone();
    stretched["exp"] = json!(real["exp"].as_i64().unwrap() + 86_400);
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            b64(stretched.to_string().as_bytes()),
            parts[2]
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("not a JWT", "abc.def".into(), "not a JWT"),
        (
            "signed by another P-256 key under mandate's kid",
            forge(&real, "at+jwt", &kid),
            "signature",
        ),
        ("claims changed after signing", tampered, "signature"),
        ("alg none (RFC 8725 §3.1)", alg_none, "alg `none`"),
        (
            "HS256 keyed with a guess (RFC 8725 §3.1)",
            hs256,
            "alg `HS256`",
        ),
        ("an agent token, typ JWT (RFC 9068 §4)", agent_token, "typ"),
        (
            "a forged token under a made-up kid",
            forge(&real, "at+jwt", "made-up"),
            "does not publish",
        ),
        (
            "a token for another audience (RFC 9068 §4, RFC 8707)",
            billing,
            "not meant for this resource",
        ),
    ];
    for (why, token, says) in &cases {
        let a = with_token(&rs, "GET", "/orders", token).await;
        assert_eq!(a.status, 401, "{why}: {}", a.raw);
        assert_eq!(a.error().as_deref(), Some("invalid_token"), "{why}");
        assert!(a.description().contains(says), "{why}: {}", a.challenge);
        assert!(a.challenge.ends_with(&rm), "{why}: {}", a.challenge);
        assert_eq!(a.body["error"], "invalid_token", "{why}");
        assert!(
            !a.raw.contains(token.as_str()) && !a.challenge.contains(token.as_str()),
            "{why}: the answer repeats the token"
        );
    }

    // RFC 6750 §3.1 insufficient_scope: 403 naming the scope the route needs.
    let a = with_token(&rs, "POST", "/orders", &good).await;
    assert_eq!(a.status, 403, "{}", a.raw);
    assert_eq!(a.error().as_deref(), Some("insufficient_scope"));
    assert_eq!(attr(&a.challenge, "scope").as_deref(), Some("orders:write"));
    assert!(a.challenge.ends_with(&rm), "{}", a.challenge);
    app.stop().await;
}

#[tokio::test]
async fn rfc7519_s4_1_4_expired_and_s4_1_5_not_yet_valid_tokens_are_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let jwt_rs = start_rs(&app.url, |b| b.jwt()).await;
    let intro_rs = start_rs(&app.url, |b| {
        b.introspection("orders-api", "rs-secret")
            .introspection_cache_ttl(Duration::ZERO)
    })
    .await;
    // mandate's clock an hour behind: its 10-minute tokens ended 50 minutes ago.
    app.advance(-3600);
    let old = app
        .cc_token(&[("audience", AUD), ("scope", "orders:read")])
        .await;
    for rs in [&jwt_rs, &intro_rs] {
        let a = with_token(rs, "GET", "/orders", &old).await;
        assert_eq!(a.status, 401, "{}", a.raw);
        assert_eq!(a.error().as_deref(), Some("invalid_token"));
        // The verifier's own `exp` check: mandate, living an hour behind, still calls it active.
        assert_eq!(a.description(), "token has expired", "{}", a.challenge);
    }
    // Two hours ahead: issued (iat) in the future, beyond the 30 s leeway.
    app.advance(7200);
    let early = app
        .cc_token(&[("audience", AUD), ("scope", "orders:read")])
        .await;
    let a = with_token(&jwt_rs, "GET", "/orders", &early).await;
    assert_eq!(a.status, 401, "{}", a.raw);
    assert!(a.description().contains("not valid yet"), "{}", a.challenge);
    app.stop().await;
}

#[tokio::test]
async fn rfc7662_revocation_is_seen_by_introspection_once_the_cache_lets_go() {
    const CACHE_TTL: Duration = Duration::from_secs(3);
    let app = spawn_app(Backend::Sqlite).await;
    let uncached = start_rs(&app.url, |b| {
        b.introspection("orders-api", "rs-secret")
            .introspection_cache_ttl(Duration::ZERO)
    })
    .await;
    let cached = start_rs(&app.url, |b| {
        b.introspection("orders-api", "rs-secret")
            .introspection_cache_ttl(CACHE_TTL)
    })
    .await;
    let jwt_rs = start_rs(&app.url, |b| b.jwt()).await;
    let token = app
        .cc_token(&[("audience", AUD), ("scope", "orders:read")])
        .await;
    let before_cached = std::time::Instant::now();
    for rs in [&uncached, &cached, &jwt_rs] {
        assert_eq!(with_token(rs, "GET", "/orders", &token).await.status, 200);
    }
    let cached_by = std::time::Instant::now();
    // RFC 7009: the client revokes its token.
    let resp = app
        .post_form(
            "/revoke",
            Some(("agent-runtime", "s3cret")),
            &[("token", &token)],
        )
        .await;
    assert_eq!(resp.status(), 200);

    let a = with_token(&uncached, "GET", "/orders", &token).await;
    assert_eq!(a.status, 401, "no cache: refused at once");
    assert_eq!(a.error().as_deref(), Some("invalid_token"));
    assert!(a.description().contains("not active"), "{}", a.challenge);
    // A cached answer lives at most its TTL, then the revocation shows. (The first check only
    // when this machine was quick enough to make it inside the TTL.)
    let cached_status = with_token(&cached, "GET", "/orders", &token).await.status;
    if before_cached.elapsed() < CACHE_TTL - Duration::from_millis(500) {
        assert_eq!(cached_status, 200, "still inside the cache lifetime");
    }
    tokio::time::sleep(
        (cached_by + CACHE_TTL + Duration::from_millis(100)) - std::time::Instant::now(),
    )
    .await;
    assert_eq!(
        with_token(&cached, "GET", "/orders", &token).await.status,
        401
    );
    // A JWT-only resource server cannot see revocation before `exp` (documented trade-off).
    assert_eq!(
        with_token(&jwt_rs, "GET", "/orders", &token).await.status,
        200
    );

    // mandate answers `{"active": false}` for a token meant for another resource server.
    let billing = app
        .cc_token(&[("audience", "billing-api"), ("scope", "orders:read")])
        .await;
    let a = with_token(&uncached, "GET", "/orders", &billing).await;
    assert_eq!(
        (a.status, a.error().as_deref()),
        (401, Some("invalid_token"))
    );

    // Wrong introspection credentials are the resource server's fault: 503, not the client's.
    let misconfigured = start_rs(&app.url, |b| b.introspection("orders-api", "wrong")).await;
    let fresh = app
        .cc_token(&[("audience", AUD), ("scope", "orders:read")])
        .await;
    let a = with_token(&misconfigured, "GET", "/orders", &fresh).await;
    assert_eq!(a.status, 503, "{}", a.raw);
    assert!(a.challenge.is_empty());
    app.stop().await;
}

/// A counting reverse proxy in front of mandate: the verifiers reach the issuer through it, so
/// the test sees how often each of them (told apart by `User-Agent`) fetched the JWKS.
#[derive(Default)]
struct Proxy {
    upstream: Mutex<String>,
    hits: Mutex<HashMap<(String, String), usize>>,
}

impl Proxy {
    fn hits(&self, agent: &str, path: &str) -> usize {
        let hits = self.hits.lock().unwrap();
        hits.get(&(agent.to_string(), path.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

async fn forward(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    let agent = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let path = req.uri().path().to_string();
    *proxy
        .hits
        .lock()
        .unwrap()
        .entry((agent, path.clone()))
        .or_default() += 1;
    let upstream = proxy.upstream.lock().unwrap().clone();
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let resp = reqwest::get(format!("{upstream}{path}{query}"))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    (
        axum::http::StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body,
    )
        .into_response()
}

async fn wait_for_signing_kid_change(app: &TestApp, from: &str) -> String {
    for _ in 0..100 {
        let t = app.cc_token(&[("audience", AUD)]).await;
        let kid = kid_of(&t);
        if kid != from {
            return kid;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the signing key did not change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7517_a_rotated_key_is_fetched_once_and_unknown_kids_cannot_force_refetches() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let proxy = Arc::new(Proxy::default());
    let router = Router::new().fallback(forward).with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    // mandate's issuer is the proxy's address, so its metadata's jwks_uri points through it.
    let db = test_db(Backend::Sqlite).await;
    let app = spawn_on_top(db, &format!("issuer = \"{issuer}\""), "").await;
    *proxy.upstream.lock().unwrap() = app.url.clone();
    let client = |ua: &str| reqwest::Client::builder().user_agent(ua).build().unwrap();
    // One verifier with the default 30 s between unknown-kid refetches, one with 2 s.
    let slow = start_rs(&issuer, |b| b.http_client(client("slow"))).await;
    let fast = start_rs(&issuer, |b| {
        b.http_client(client("fast"))
            .jwks_refetch_interval(Duration::from_secs(2))
    })
    .await;
    let jwks_path = "/jwks.json";
    let published_before: Vec<String> = app.get_json(jwks_path).await.2["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();

    let t1 = app
        .cc_token(&[("audience", AUD), ("scope", "orders:read")])
        .await;
    let first_fetch = std::time::Instant::now();
    for rs in [&slow, &fast] {
        let a = with_token(rs, "GET", "/orders", &t1).await;
        assert_eq!(a.status, 200, "{}", a.raw);
    }
    assert_eq!(proxy.hits("slow", jwks_path), 1);
    assert_eq!(proxy.hits("fast", jwks_path), 1);

    // Two rotations: the key signing now was not even published when the verifiers fetched.
    let k1 = kid_of(&t1);
    rotate_keys(&app);
    let k2 = wait_for_signing_kid_change(&app, &k1).await;
    rotate_keys(&app);
    let k3 = wait_for_signing_kid_change(&app, &k2).await;
    assert!(
        !published_before.contains(&k3),
        "{k3} in {published_before:?}"
    );
    let t3 = app
        .cc_token(&[("audience", AUD), ("scope", "orders:read")])
        .await;
    assert_eq!(kid_of(&t3), k3);

    // The default verifier fetched less than 30 s ago: neither the new key's token nor a
    // stream of made-up kids makes it fetch again (it refuses until the interval is over).
    // (Checked when this machine got here well inside those 30 s, as it does in a few.)
    let real = claims(&t3);
    for i in 0..5 {
        let forged = forge(&real, "at+jwt", &format!("made-up-{i}"));
        assert_eq!(
            with_token(&slow, "GET", "/orders", &forged).await.status,
            401
        );
    }
    let a = with_token(&slow, "GET", "/orders", &t3).await;
    if first_fetch.elapsed() < Duration::from_secs(25) {
        assert_eq!(a.status, 401, "{}", a.raw);
        assert!(
            a.description().contains("does not publish"),
            "{}",
            a.challenge
        );
        assert_eq!(proxy.hits("slow", jwks_path), 1, "no refetch inside 30 s");
    }

    // With 2 s between refetches, the new key's token makes one fetch and is accepted; the
    // key that signed t1 stays published, so t1 still works.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = with_token(&fast, "GET", "/orders", &t3).await;
    let refetched = std::time::Instant::now();
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(proxy.hits("fast", jwks_path), 2);
    assert_eq!(with_token(&fast, "GET", "/orders", &t1).await.status, 200);
    for i in 0..5 {
        let forged = forge(&real, "at+jwt", &format!("made-up-{i}"));
        assert_eq!(
            with_token(&fast, "GET", "/orders", &forged).await.status,
            401
        );
    }
    if refetched.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            proxy.hits("fast", jwks_path),
            2,
            "made-up kids right after: no fetch"
        );
    }
    // Metadata was fetched once per verifier (RFC 8414), whatever happened to the keys.
    assert_eq!(
        proxy.hits("slow", "/.well-known/oauth-authorization-server")
            + proxy.hits("fast", "/.well-known/oauth-authorization-server"),
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn rfc9728_s3_the_protected_resource_metadata_points_at_mandate() {
    let app = spawn_app(Backend::Sqlite).await;
    let rs = start_rs(&app.url, |b| b).await;
    // RFC 9728 §5.1: the challenge names the document; a client follows it without a token.
    let challenge = call(&rs, "GET", "/orders", &[]).await.challenge;
    let url = attr(&challenge, "resource_metadata").unwrap();
    assert_eq!(
        url,
        format!("{}/.well-known/oauth-protected-resource", rs.url)
    );
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = resp.json().await.unwrap();
    // RFC 9728 §3.3: `resource` is the URL the document was found under.
    assert_eq!(
        doc,
        json!({
            "resource": rs.url,
            "authorization_servers": [app.url],
            "scopes_supported": ["orders:read", "orders:write"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Orders",
        })
    );
    // RFC 8414 §3.3: the authorization server it names is mandate, under that very issuer.
    let (status, _, meta) = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(status, 200);
    assert_eq!(meta["issuer"], doc["authorization_servers"][0]);
    app.stop().await;
}
