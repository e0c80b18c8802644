//! Dynamic client registration (RFC 7591) and its read and delete (RFC 7592), end to end: what
//! an MCP client that nobody configured does, and what an unauthenticated caller flooding
//! `/register`, a client reading or deleting another's registration, or a registered client
//! reaching for more than configured clients get, all get.

use mandate::App;
use mandate::config::Config;
use mandate_conformance::browser::{self, End};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::flows::Pkce;
use crate::helpers::*;

const ENABLED: &str = r#"
[registration]
enabled = true
confidential = true
grant_types = ["authorization_code", "refresh_token", "client_credentials"]
scopes = ["orders:read", "orders:write"]
per_address_limit = 3
max_clients = 50
expire_unused_after = "2h"

# The one audience registered clients may get tokens for, and the resource server behind it.
[[resources]]
uri = "https://mcp.example/mcp"

[[clients]]
client_id = "mcp-rs"
client_secret = "mcp-rs-secret"
introspect = true
audience = "https://mcp.example/mcp"
"#;

const MCP_RS: (&str, &str) = ("mcp-rs", "mcp-rs-secret");

/// Registered with port 9999; the app then listens on another port (RFC 8252 §7.3).
const REGISTERED_REDIRECT: &str = "http://127.0.0.1:9999/callback";
const RUNTIME_REDIRECT: &str = "http://127.0.0.1:51234/callback";

fn native_client(name: &str) -> Value {
    json!({
        "client_name": name,
        "redirect_uris": [REGISTERED_REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "orders:read orders:write",
        "logo_uri": "https://tracker.example/pixel.png",
        "some_extension": {"ignored": true},
    })
}

/// `POST /register` with `body`: the status and the JSON answer.
pub async fn register(url: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/register"))
        .json(body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn registered(url: &str, body: &Value) -> Value {
    let (status, v) = register(url, body).await;
    assert_eq!(status, 201, "{v}");
    v
}

/// `GET`/`DELETE`/`PUT /register/{id}` with `token`: status, `WWW-Authenticate`, body.
async fn manage(
    method: reqwest::Method,
    url: &str,
    id: &str,
    token: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{url}/register/{id}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let www = (resp.headers().get("www-authenticate")).map(|v| v.to_str().unwrap().to_string());
    (
        resp.status().as_u16(),
        www,
        resp.json().await.unwrap_or(Value::Null),
    )
}

fn authorize_query(client_id: &str, redirect: &str, pkce: &Pkce, scope: &str) -> String {
    authorize_query_with(client_id, redirect, pkce, scope, &[])
}

fn authorize_query_with(
    client_id: &str,
    redirect: &str,
    pkce: &Pkce,
    scope: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.extend_pairs(extra);
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("state", "st")
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", scope);
    q.finish()
}

/// Signs alice in at `url` through the public client `client_id` returning to `redirect`, and
/// redeems the code: the `/token` response. The browser comes back signed in.
async fn sign_in(url: &str, client_id: &str, redirect: &str) -> (Value, browser::Browser) {
    sign_in_with(url, client_id, redirect, &[]).await
}

/// [`sign_in`] with more parameters on the authorization request and the code's redemption.
async fn sign_in_with(
    url: &str,
    client_id: &str,
    redirect: &str,
    extra: &[(&str, &str)],
) -> (Value, browser::Browser) {
    let mut b = browser::Browser::new(url).unwrap();
    let pkce = Pkce::new();
    let q = authorize_query_with(client_id, redirect, &pkce, "orders:read", extra);
    let end = b
        .drive(
            &format!("/authorize?{q}"),
            "alice",
            "alice-password",
            &[redirect],
        )
        .await
        .unwrap();
    let End::Left(loc) = end else {
        panic!("the flow did not reach the client")
    };
    let query = loc
        .strip_prefix(redirect)
        .and_then(|r| r.strip_prefix('?'))
        .unwrap_or_else(|| panic!("not back at {redirect}: {loc}"));
    let p: std::collections::HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(p["state"], "st");
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", &p["code"]),
        ("redirect_uri", redirect),
        ("code_verifier", &pkce.verifier),
    ];
    form.extend_from_slice(extra);
    let resp = reqwest::Client::new()
        .post(format!("{url}/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    (resp.json().await.unwrap(), b)
}

async fn refresh(url: &str, client_id: &str, token: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", token),
        ])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn stored(app: &TestApp) -> Vec<mandate::store::RegisteredClient> {
    let s = mandate::store::open(&app.db.url, 2).await.unwrap();
    let v = s.registered_clients().await.unwrap();
    s.close().await;
    v
}

/// The `detail` of every audit entry of `kind`, oldest first.
async fn audited(app: &TestApp, kind: &str) -> Vec<Value> {
    (app.audit_entries().await)
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| {
            let mut d: Value = serde_json::from_str(&e.detail).unwrap();
            d["client_id"] = e.client_id.into();
            d
        })
        .collect()
}

/// A second server on the same database and config: another replica.
struct Replica {
    url: String,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn replica(app: &TestApp) -> Replica {
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let config = Config::from_toml(&text, "replica.toml", Vec::new()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let built = App::build_with_clock(config, addr, app.db.clock.clone())
        .await
        .unwrap();
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(built.run(listener, async {
        let _ = rx.await;
    }));
    Replica {
        url: format!("http://{addr}"),
        shutdown,
        task,
    }
}

impl Replica {
    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn rfc7591_s3_rfc8252_s7_3_a_registered_native_client_signs_in_on_any_loopback_port() {
    for b in backends() {
        let app = spawn_app_with(b, ENABLED).await;
        let v = registered(&app.url, &native_client("Orders <b>App</b>")).await;
        // RFC 7591 §3.2.1: the client information response.
        let id = v["client_id"].as_str().unwrap().to_string();
        assert!(id.len() >= 22, "{v}");
        assert!(v["client_id_issued_at"].is_i64());
        assert!(v.get("client_secret").is_none(), "a public client: {v}");
        assert_eq!(v["token_endpoint_auth_method"], "none");
        assert_eq!(v["application_type"], "native");
        assert_eq!(v["client_name"], "Orders <b>App</b>");
        assert_eq!(v["scope"], "orders:read orders:write");
        assert_eq!(v["redirect_uris"], json!([REGISTERED_REDIRECT]));
        assert!(v.get("logo_uri").is_none(), "not stored, never shown: {v}");
        assert!(v["registration_access_token"].as_str().unwrap().len() >= 43);
        assert_eq!(
            v["registration_client_uri"],
            format!("{}/register/{id}", app.url)
        );
        // RFC 8252 §7.3: the loopback redirect matches on another port.
        let (t, mut browser) = sign_in(&app.url, &id, RUNTIME_REDIRECT).await;
        let c = claims(t["access_token"].as_str().unwrap());
        assert_eq!(
            (c["sub"].as_str(), c["client_id"].as_str()),
            (Some("alice"), Some(id.as_str()))
        );
        let (status, r) = refresh(&app.url, &id, t["refresh_token"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{r}");
        // The consent page names the client, escaped, and marks it as self-registered.
        let pkce = Pkce::new();
        let q = authorize_query(&id, RUNTIME_REDIRECT, &pkce, "orders:read");
        let page = browser.get(&format!("/authorize?{q}")).await.unwrap();
        assert_eq!(page.status, 200, "{}", page.summary());
        assert!(page.body.contains("registered itself"), "{}", page.body);
        assert!(page.body.contains("Orders &"), "{}", page.body);
        assert!(!page.body.contains("<b>App"), "{}", page.body);
        assert!(!page.body.contains("tracker.example"), "no remote images");
        // A loopback host or path that differs is still refused (shown to the human).
        for other in [
            "http://127.0.0.1:51234/elsewhere",
            "http://[::1]:51234/callback",
            "https://127.0.0.1:51234/callback",
        ] {
            let q = authorize_query(&id, other, &pkce, "orders:read");
            let page = browser.get(&format!("/authorize?{q}")).await.unwrap();
            assert_eq!(page.status, 400, "{other}");
        }
        let ev = audited(&app, "client.registered").await;
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0]["client_id"], id);
        assert_eq!(
            ev[0]["address"], "127.0.0.1",
            "the caller's address is counted and audited"
        );
        app.stop().await;
    }
}

/// The MCP flow (issue 16): an MCP client nobody configured reads the metadata, registers,
/// and signs the human in for the MCP server's URL (RFC 8707 `resource` at `/authorize` and
/// `/token`); the token is for that server alone.
#[tokio::test]
async fn rfc7591_rfc8707_an_mcp_client_registers_and_gets_a_token_for_the_mcp_server() {
    const MCP: &str = "https://tools.example/mcp";
    let resources = format!(
        "{ENABLED}\n[[resources]]\nuri = \"{MCP}\"\nname = \"Orders MCP\"\nscopes = [\"orders:read\"]\n"
    );
    for b in backends() {
        let app = spawn_app_with(b, &resources).await;
        let (_, _, m) = app
            .get_json("/.well-known/oauth-authorization-server")
            .await;
        let endpoint = m["registration_endpoint"].as_str().unwrap();
        let url = endpoint.strip_suffix("/register").unwrap();
        let v = registered(url, &native_client("MCP Inspector")).await;
        let id = v["client_id"].as_str().unwrap();
        let (t, _) = sign_in_with(&app.url, id, RUNTIME_REDIRECT, &[("resource", MCP)]).await;
        let c = claims(t["access_token"].as_str().unwrap());
        assert_eq!(c["aud"], MCP, "{c}");
        assert_eq!(c["scope"], "orders:read");
        assert_eq!(c["client_id"], id);
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc7591_s3_2_1_a_confidential_client_gets_a_secret_and_uses_client_credentials() {
    for b in backends() {
        let app = spawn_app_with(b, ENABLED).await;
        let v = registered(
            &app.url,
            &json!({"grant_types": ["client_credentials"], "scope": "orders:read",
                    "token_endpoint_auth_method": "client_secret_basic", "client_name": "batch"}),
        )
        .await;
        let id = v["client_id"].as_str().unwrap();
        let secret = v["client_secret"].as_str().unwrap();
        let reg_token = v["registration_access_token"].as_str().unwrap();
        assert_eq!(v["client_secret_expires_at"], 0);
        assert_eq!(v["response_types"], json!([]));
        let resp = app
            .post_form(
                "/token",
                Some((id, secret)),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(resp.status(), 200);
        let t: Value = resp.json().await.unwrap();
        assert_eq!(t["scope"], "orders:read");
        let wrong = app
            .post_form(
                "/token",
                Some((id, "nope")),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(wrong.status(), 401);
        // Only hashes are stored, and neither the secret nor the token is in the audit log.
        let rows = stored(&app).await;
        assert!(rows[0].data.contains("$argon2id$") && !rows[0].data.contains(secret));
        assert!(!rows[0].metadata.contains(secret) && !rows[0].metadata.contains(reg_token));
        let log = serde_json::to_string(&app.audit_entries().await).unwrap();
        assert!(!log.contains(secret) && !log.contains(reg_token));
        app.stop().await;
    }
}

/// Attacker view: a registered client gets no more than a configured one ever could.
#[tokio::test]
async fn a_registered_client_cannot_introspect_exchange_or_reach_beyond_its_scopes() {
    for b in backends() {
        let app = spawn_app_with(b, ENABLED).await;
        let v = registered(
            &app.url,
            &json!({"grant_types": ["client_credentials"], "scope": "orders:read",
                    "token_endpoint_auth_method": "client_secret_post"}),
        )
        .await;
        let (id, secret) = (
            v["client_id"].as_str().unwrap(),
            v["client_secret"].as_str().unwrap(),
        );
        let creds = Some((id, secret));
        let someone = app.cc_token(&[]).await;
        // RFC 7662 §2.1: never a resource server.
        let r = app
            .post_form("/introspect", creds, &[("token", &someone)])
            .await;
        assert_eq!(r.status(), 403, "{}", app.label());
        // RFC 8693: never token exchange.
        let r = app
            .post_form(
                "/token",
                creds,
                &[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("subject_token", &someone),
                    (
                        "subject_token_type",
                        "urn:ietf:params:oauth:token-type:access_token",
                    ),
                ],
            )
            .await;
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "unauthorized_client", "{e}");
        // RFC 6749 §3.3: not beyond its registered scopes.
        let r = app
            .post_form(
                "/token",
                creds,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "orders:write"),
                ],
            )
            .await;
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_scope", "{e}");
        // Nor can it register for more: a scope, a grant or an auth method outside the policy.
        for body in [
            json!({"redirect_uris": [REGISTERED_REDIRECT], "scope": "payments:write"}),
            json!({"grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"],
                   "token_endpoint_auth_method": "client_secret_basic"}),
            json!({"grant_types": ["urn:openid:params:grant-type:ciba"],
                   "token_endpoint_auth_method": "client_secret_basic"}),
            json!({"grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
                   "token_endpoint_auth_method": "private_key_jwt"}),
        ] {
            let (status, e) = register(&app.url, &body).await;
            assert_eq!(
                (status, e["error"].as_str()),
                (400, Some("invalid_client_metadata")),
                "{body}"
            );
        }
        // A public registered client asking /authorize for more than it registered.
        let p = registered(
            &app.url,
            &json!({"redirect_uris": [REGISTERED_REDIRECT], "scope": "orders:read",
                    "token_endpoint_auth_method": "none"}),
        )
        .await;
        let (_, mut browser) = sign_in(
            &app.url,
            p["client_id"].as_str().unwrap(),
            REGISTERED_REDIRECT,
        )
        .await;
        let q = authorize_query(
            p["client_id"].as_str().unwrap(),
            REGISTERED_REDIRECT,
            &Pkce::new(),
            "orders:write",
        );
        // RFC 9700 §4.11.2: for a self-registered client the error is a page, not a redirect.
        let page = browser.get(&format!("/authorize?{q}")).await.unwrap();
        assert!(page.location.is_none(), "{:?}", page.location);
        assert!(page.body.contains("invalid_scope"), "{}", page.body);
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc7591_s3_2_2_refused_metadata_is_a_400_and_stores_nothing() {
    for b in backends() {
        let app = spawn_app_with(b, ENABLED).await;
        let long = "x".repeat(300);
        let cases = [
            (
                json!({"redirect_uris": ["http://app.example/cb"], "application_type": "web"}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["http://127.0.0.1:9999/cb"], "application_type": "web"}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["javascript:alert(1)"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": [REGISTERED_REDIRECT], "grant_types": ["password"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": [REGISTERED_REDIRECT], "client_name": long}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": [REGISTERED_REDIRECT], "padding": "y".repeat(20_000)}),
                "invalid_client_metadata",
            ),
        ];
        for (body, want) in cases {
            let (status, e) = register(&app.url, &body).await;
            assert_eq!((status, e["error"].as_str()), (400, Some(want)), "{}", e);
            assert!(e["error_description"].as_str().unwrap().len() > 10);
        }
        for (ct, raw) in [("application/json", "{not json"), ("text/plain", "{}")] {
            let r = app
                .http
                .post(format!("{}/register", app.url))
                .header("content-type", ct)
                .body(raw)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400);
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["error"], "invalid_client_metadata");
        }
        assert!(stored(&app).await.is_empty(), "{}", app.label());
        assert!(audited(&app, "client.registered").await.is_empty());
        app.stop().await;
    }
}

/// Attacker view: an unauthenticated caller flooding `/register` is capped per address (and
/// deleting its registrations does not give it places back), and everyone together by the
/// total; of two registrations racing for the last place, one wins.
#[tokio::test]
async fn rfc7591_registrations_are_capped_per_address_and_in_total() {
    for b in backends() {
        let app = spawn_app_with(b, ENABLED).await;
        let body = native_client("flood");
        let first = registered(&app.url, &body).await;
        for _ in 0..2 {
            registered(&app.url, &body).await;
        }
        let (status, e) = register(&app.url, &body).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (429, Some("temporarily_unavailable"))
        );
        let (id, token) = (
            first["client_id"].as_str().unwrap(),
            first["registration_access_token"].as_str().unwrap(),
        );
        let (status, _, _) = manage(reqwest::Method::DELETE, &app.url, id, Some(token)).await;
        assert_eq!(status, 204);
        let (status, _) = register(&app.url, &body).await;
        assert_eq!(
            status,
            429,
            "{}: a deleted registration still counts",
            app.label()
        );
        app.advance(3601);
        registered(&app.url, &body).await;
        assert_eq!(stored(&app).await.len(), 3);
        app.stop().await;

        let app = spawn_app_with(
            b,
            &ENABLED
                .replace("per_address_limit = 3", "per_address_limit = 100")
                .replace("max_clients = 50", "max_clients = 2"),
        )
        .await;
        registered(&app.url, &body).await;
        let (one, two) = tokio::join!(register(&app.url, &body), register(&app.url, &body));
        let mut statuses = [one.0, two.0];
        statuses.sort();
        assert_eq!(statuses, [201, 503], "{}: {one:?} {two:?}", app.label());
        assert_eq!(stored(&app).await.len(), 2);
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc8414_registration_is_off_unless_enabled_and_advertised_only_when_on() {
    for b in backends() {
        let app = spawn_app(b).await;
        let (status, e) = register(&app.url, &native_client("x")).await;
        assert_eq!((status, e["error"].as_str()), (404, Some("not_found")));
        let (status, _, _) = manage(reqwest::Method::GET, &app.url, "x", Some("t")).await;
        assert_eq!(status, 404);
        for doc in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            let (_, _, m) = app.get_json(doc).await;
            assert!(m.get("registration_endpoint").is_none(), "{doc}: {m}");
        }
        app.stop().await;
        let app = spawn_app_with(b, ENABLED).await;
        for doc in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            let (_, _, m) = app.get_json(doc).await;
            assert_eq!(m["registration_endpoint"], format!("{}/register", app.url));
        }
        // A browser-based client (the MCP Inspector's loopback origin) may register.
        let pre = app
            .http
            .request(reqwest::Method::OPTIONS, format!("{}/register", app.url))
            .header("origin", "http://127.0.0.1:6274")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(pre.status().is_success(), "{}", pre.status());
        assert_eq!(
            pre.headers()["access-control-allow-origin"],
            "http://127.0.0.1:6274"
        );
        app.stop().await;
    }
}

/// A browser-based client registered with an https redirect URI may call `/token` from its
/// origin (where its code runs) while it is registered; other origins may not.
#[tokio::test]
async fn a_registered_web_clients_https_origin_may_call_token_across_origins() {
    for b in backends() {
        let app = spawn_app_with(b, ENABLED).await;
        let preflight = async |origin: &str| {
            let r = app
                .http
                .request(reqwest::Method::OPTIONS, format!("{}/token", app.url))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .send()
                .await
                .unwrap();
            r.headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(preflight("https://mcp-web.example").await, None);
        let v = registered(
            &app.url,
            &json!({"redirect_uris": ["https://mcp-web.example/cb"], "token_endpoint_auth_method": "none"}),
        )
        .await;
        assert_eq!(v["application_type"], "web");
        assert_eq!(
            preflight("https://mcp-web.example").await.as_deref(),
            Some("https://mcp-web.example")
        );
        assert_eq!(preflight("https://other.example").await, None);
        let (id, token) = (
            v["client_id"].as_str().unwrap(),
            v["registration_access_token"].as_str().unwrap(),
        );
        manage(reqwest::Method::DELETE, &app.url, id, Some(token)).await;
        assert_eq!(
            preflight("https://mcp-web.example").await,
            None,
            "{}",
            app.label()
        );
        app.stop().await;
    }
}

/// Attacker view: reading, updating or deleting another client's registration.
#[tokio::test]
async fn rfc7592_s2_1_a_registration_is_read_with_its_token_and_a_wrong_one_reveals_nothing() {
    for b in backends() {
        let app = spawn_app_with(b, ENABLED).await;
        let mine = registered(&app.url, &native_client("mine")).await;
        let theirs = registered(&app.url, &native_client("theirs")).await;
        let (id, token) = (
            mine["client_id"].as_str().unwrap(),
            mine["registration_access_token"].as_str().unwrap(),
        );
        let (status, _, v) = manage(reqwest::Method::GET, &app.url, id, Some(token)).await;
        assert_eq!(status, 200);
        for k in [
            "client_id",
            "client_name",
            "redirect_uris",
            "registration_client_uri",
        ] {
            assert_eq!(v[k], mine[k], "{k}");
        }
        assert_eq!(v["registration_access_token"], token);
        let other_token = theirs["registration_access_token"].as_str().unwrap();
        let denied = [
            manage(reqwest::Method::GET, &app.url, id, Some(other_token)).await,
            manage(reqwest::Method::GET, &app.url, id, None).await,
            manage(
                reqwest::Method::GET,
                &app.url,
                "no-such-client",
                Some(token),
            )
            .await,
            manage(reqwest::Method::DELETE, &app.url, id, Some(other_token)).await,
            manage(
                reqwest::Method::DELETE,
                &app.url,
                "no-such-client",
                Some(other_token),
            )
            .await,
            manage(reqwest::Method::PUT, &app.url, id, Some(other_token)).await,
        ];
        for (status, www, e) in &denied {
            assert_eq!(*status, 401, "{e}");
            assert_eq!(e["error"], "invalid_token");
            assert!(www.as_deref().unwrap().starts_with("Bearer"), "{www:?}");
            assert_eq!(
                e, &denied[0].2,
                "the same answer whether the client exists or not"
            );
        }
        // RFC 7592 §2.2: updates are not supported, said after the token was checked.
        let (status, _, e) = manage(reqwest::Method::PUT, &app.url, id, Some(token)).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (405, Some("method_not_allowed"))
        );
        assert!(stored(&app).await.len() == 2, "nothing was deleted");
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc7592_s2_3_a_deleted_client_is_cut_off_on_every_replica() {
    for b in backends() {
        let app = spawn_app_with(b, ENABLED).await;
        let other = replica(&app).await;
        let v = registered(&app.url, &native_client("gone soon")).await;
        let (id, token) = (
            v["client_id"].as_str().unwrap(),
            v["registration_access_token"].as_str().unwrap(),
        );
        // Registered on one replica, used on the other at once.
        let (t, mut browser) = sign_in(&other.url, id, RUNTIME_REDIRECT).await;
        let access = t["access_token"].as_str().unwrap();
        assert_eq!(app.introspect_as(MCP_RS, access).await["active"], true);
        let (status, _, _) = manage(reqwest::Method::DELETE, &other.url, id, Some(token)).await;
        assert_eq!(status, 204, "{}", app.label());
        // Its tokens are revoked, and it can neither authenticate nor start a sign-in.
        assert_eq!(app.introspect_as(MCP_RS, access).await["active"], false);
        for url in [&app.url, &other.url] {
            let (status, e) = refresh(url, id, t["refresh_token"].as_str().unwrap()).await;
            assert_eq!(
                (status, e["error"].as_str()),
                (401, Some("invalid_client")),
                "{url}"
            );
            let q = authorize_query(id, RUNTIME_REDIRECT, &Pkce::new(), "orders:read");
            let page = reqwest::get(format!("{url}/authorize?{q}")).await.unwrap();
            assert_eq!(page.status(), 400);
            assert!(page.text().await.unwrap().contains("not registered"));
        }
        let page = browser
            .get(&format!(
                "/authorize?{}",
                authorize_query(id, RUNTIME_REDIRECT, &Pkce::new(), "orders:read")
            ))
            .await
            .unwrap();
        assert_eq!(page.status, 400);
        let (status, _, _) = manage(reqwest::Method::GET, &app.url, id, Some(token)).await;
        assert_eq!(status, 401, "the token died with the registration");
        let ev = audited(&app, "client.deleted").await;
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0]["via"], "client");
        assert_eq!(ev[0]["revoked"], 2, "access and refresh token");
        other.stop().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn registrations_unused_for_expire_unused_after_are_removed_and_their_tokens_revoked() {
    for b in backends() {
        let app = spawn_app_with(b, ENABLED).await;
        let v = registered(&app.url, &native_client("idle")).await;
        let id = v["client_id"].as_str().unwrap().to_string();
        let (t, _) = sign_in(&app.url, &id, RUNTIME_REDIRECT).await;
        let refresh_token = t["refresh_token"].as_str().unwrap().to_string();
        // Used within the period: kept.
        app.advance(3600);
        let (status, t) = refresh(&app.url, &id, &refresh_token).await;
        assert_eq!(status, 200, "{t}");
        let refresh_token = t["refresh_token"].as_str().unwrap().to_string();
        // Unused for longer: gone at its next use (lazily), its tokens revoked.
        app.advance(2 * 3600 + 1);
        let (status, e) = refresh(&app.url, &id, &refresh_token).await;
        assert_eq!((status, e["error"].as_str()), (401, Some("invalid_client")));
        let s = mandate::store::open(&app.db.url, 2).await.unwrap();
        let rec = s.find_presented(&refresh_token).await.unwrap().unwrap();
        s.close().await;
        assert!(rec.revoked_at.is_some(), "{}", app.label());
        let ev = audited(&app, "client.expired").await;
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0]["via"], "expiry");
        // One never used again is removed by the sweep at the next start.
        registered(&app.url, &native_client("forgotten")).await;
        let db = app.stop().await;
        db.clock.advance(2 * 3600 + 1);
        let app = spawn_on(db, ENABLED).await;
        assert!(stored(&app).await.is_empty());
        assert_eq!(audited(&app, "client.expired").await.len(), 2);
        app.stop().await;
    }
}

#[tokio::test]
async fn clients_list_shows_both_sources_and_remove_cuts_a_registered_client_off() {
    for b in backends() {
        let app = spawn_app_with(b, ENABLED).await;
        let v = registered(&app.url, &native_client("CLI Tool")).await;
        let id = v["client_id"].as_str().unwrap().to_string();
        let (t, _) = sign_in(&app.url, &id, RUNTIME_REDIRECT).await;
        let config = app.config_path.to_str().unwrap().to_string();
        let out = mandate_cli(&["clients", "list", "--config", &config], None);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("cli\tconfig"), "{text}");
        assert!(
            text.contains(&format!("{id}\tregistered\tCLI Tool\t")),
            "{text}"
        );
        let out = mandate_cli(&["clients", "remove", "cli", "--config", &config], None);
        assert_eq!(
            out.status.code(),
            Some(1),
            "a configured client is removed in the config"
        );
        let out = mandate_cli(&["clients", "remove", &id, "--config", &config], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("revoked 2 tokens"));
        let (status, _) = refresh(&app.url, &id, t["refresh_token"].as_str().unwrap()).await;
        assert_eq!(
            status,
            401,
            "{}: the running server refuses it at once",
            app.label()
        );
        let ev = audited(&app, "client.deleted").await;
        assert_eq!(ev[0]["via"], "cli");
        let out = mandate_cli(&["clients", "remove", &id, "--config", &config], None);
        assert_eq!(out.status.code(), Some(1));
        let out = mandate_cli(&["clients", "list", "--config", &config], None);
        assert!(!String::from_utf8_lossy(&out.stdout).contains(&id));
        app.stop().await;
    }
}

/// RFC 7592 §2.3 across replicas: a `/token` that found the client on another replica just
/// before its deletion may record its tokens just after the deletion revoked the client's
/// tokens. The sweeps that follow a deletion revoke again, so such a late token does not live
/// out its lifetime (here the late write is made straight into the database, and the sweep is
/// the one every start runs).
#[tokio::test]
async fn rfc7592_s2_3_tokens_recorded_just_after_a_deletion_are_revoked_by_the_next_sweep() {
    use mandate::clock::Clock;
    use mandate::store::{BatchItem, TokenRecord, WriteOp};
    for b in backends() {
        let app = spawn_app_with(b, ENABLED).await;
        let v = registered(
            &app.url,
            &json!({"grant_types": ["client_credentials"], "scope": "orders:read",
                    "token_endpoint_auth_method": "client_secret_basic"}),
        )
        .await;
        let (id, secret) = (
            v["client_id"].as_str().unwrap(),
            v["client_secret"].as_str().unwrap(),
        );
        let reg_token = v["registration_access_token"].as_str().unwrap();
        let t: Value = app
            .post_form(
                "/token",
                Some((id, secret)),
                &[("grant_type", "client_credentials")],
            )
            .await
            .json()
            .await
            .unwrap();
        let issued = t["access_token"].as_str().unwrap();
        let (status, _, _) = manage(reqwest::Method::DELETE, &app.url, id, Some(reg_token)).await;
        assert_eq!(status, 204, "{}", app.label());
        // The slow replica's write lands now, after the deletion.
        let store = mandate::store::open(&app.db.url, 2).await.unwrap();
        let hash = mandate::crypto::sha256(issued.as_bytes());
        let first = store.find_token(&hash).await.unwrap().unwrap();
        assert!(
            first.revoked_at.is_some(),
            "the deletion revoked what it saw"
        );
        let late = TokenRecord {
            token_hash: vec![7; 32],
            jti: "late-write".into(),
            revoked_at: None,
            ..first
        };
        let now = app.db.clock.now();
        let item = BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::IssueTokens(vec![late.clone()]),
            audit: Vec::new(),
        };
        store
            .commit_batch(&[item], now, None, &crate::store::key())
            .await
            .unwrap();
        let live = store.find_token(&late.token_hash).await.unwrap().unwrap();
        assert!(live.revoked_at.is_none());
        let app = spawn_on(app.stop().await, ENABLED).await;
        let after = store.find_token(&late.token_hash).await.unwrap().unwrap();
        assert!(
            after.revoked_at.is_some(),
            "{}: the sweep revoked it",
            app.label()
        );
        store.close().await;
        app.stop().await;
    }
}
