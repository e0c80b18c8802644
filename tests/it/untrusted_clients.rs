//! Clients the operator does not vouch for (self-registered, RFC 7591; or by an unlisted metadata
//! document) get no more than configured clients, and what they do is checked again as policy
//! changes: each test here is an attack found in review, now refused.

use mandate::App;
use mandate::config::Config;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::flows::*;
use crate::helpers::*;
use crate::registration::register;

const ENABLED: &str = r#"
[registration]
enabled = true
confidential = true
grant_types = ["authorization_code", "refresh_token", "client_credentials"]
scopes = ["orders:read", "orders:write"]
per_address_limit = 20
max_clients = 50
expire_unused_after = "2h"
"#;

fn query(client_id: &str, redirect: &str, pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect);
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    format!("/authorize?{}", q.finish())
}

/// RFC 9700 §4.11.2 (open redirector): a stranger registers its phishing page as a redirect URI
/// and sends people to `/authorize` with a bad request. The error is a page with the way back as
/// a link, not a redirect from this server's name; a configured client still gets the redirect
/// RFC 6749 §4.1.2.1 asks for.
#[tokio::test]
async fn rfc9700_s4_11_2_no_error_redirect_to_a_self_registered_uri() {
    let app = spawn_app_with(Backend::Sqlite, ENABLED).await;
    let phish = "https://evil.example/phish";
    let (s, v) = register(
        &app.url,
        &json!({"redirect_uris": [phish], "token_endpoint_auth_method": "none",
                "application_type": "web"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["client_id"].as_str().unwrap();
    let mut br = Browser::new(&app);
    let page = br
        .get(&query(
            id,
            phish,
            &[("response_type", "nope"), ("state", "s")],
        ))
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.location.is_none(), "no redirect: {:?}", page.location);
    assert!(
        page.body.contains("unsupported_response_type"),
        "{}",
        page.body
    );
    assert!(page.body.contains("return to\nevil.example") || page.body.contains("evil.example"));
    // The configured client's error still goes back to it.
    let page = br
        .get(&query(
            "cli",
            REDIRECT_URI,
            &[("response_type", "nope"), ("state", "s")],
        ))
        .await;
    let loc = page.location.expect("a redirect for a configured client");
    assert!(loc.starts_with(REDIRECT_URI) && loc.contains("error=unsupported_response_type"));
    app.stop().await;
}

/// A remembered consent is for scopes, not audiences: a self-registered confidential client the
/// human approved once sees the consent page again (with its audience) instead of getting a code
/// silently for another resource server.
#[tokio::test]
async fn a_self_registered_client_never_skips_the_consent_page() {
    let extra = format!(
        "{ENABLED}\n[[resources]]\nuri = \"https://a.example/mcp\"\n\n[[resources]]\nuri = \"https://b.example/mcp\"\n"
    );
    let app = spawn_app_with(Backend::Sqlite, &extra).await;
    let (s, v) = register(
        &app.url,
        &json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "client_secret_basic",
                "scope": "orders:read"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["client_id"].as_str().unwrap();
    let pkce = Pkce::new();
    let ask = |resource: &str| {
        query(
            id,
            REDIRECT_URI,
            &[
                ("response_type", "code"),
                ("state", "st"),
                ("code_challenge", &pkce.challenge),
                ("code_challenge_method", "S256"),
                ("scope", "orders:read"),
                ("resource", resource),
            ],
        )
    };
    let mut br = Browser::new(&app);
    let first = ask("https://a.example/mcp");
    let loc = br
        .authorize_and_approve(
            first.trim_start_matches("/authorize?"),
            "alice",
            "alice-password",
        )
        .await;
    assert!(loc.contains("code="), "{loc}");
    let again = br.get(&ask("https://b.example/mcp")).await;
    assert_eq!(
        again.status, 200,
        "the consent page, not a code: {:?}",
        again.location
    );
    assert!(again.body.contains("https://b.example/mcp"));
    app.stop().await;
}

/// Registered clients get tokens only for resource servers named by URL (`[[resources]]`),
/// never for an internal API that configured clients reach (here `orders-api`).
#[tokio::test]
async fn a_self_registered_client_reaches_only_the_resources_named_by_url() {
    let extra = format!("{ENABLED}\n[[resources]]\nuri = \"https://a.example/mcp\"\n");
    let app = spawn_app_with(Backend::Sqlite, &extra).await;
    let (s, v) = register(
        &app.url,
        &json!({"grant_types": ["client_credentials"], "scope": "orders:read",
                "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (id, secret) = (
        v["client_id"].as_str().unwrap(),
        v["client_secret"].as_str().unwrap(),
    );
    let cc = |resource: Option<&'static str>| {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(r) = resource {
            form.push(("resource", r));
        }
        reqwest::Client::new()
            .post(format!("{}/token", app.url))
            .basic_auth(id, Some(secret))
            .form(&form)
            .send()
    };
    let t: Value = cc(None).await.unwrap().json().await.unwrap();
    let c = crate::helpers::claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], "https://a.example/mcp", "{c}");
    let r = cc(Some("orders-api")).await.unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_target");
    app.stop().await;
}

/// A narrower `[registration]` (fewer scopes and grants, no confidential clients) reaches clients
/// registered before it, on the next server started with it.
#[tokio::test]
async fn a_narrowed_registration_policy_reaches_existing_registrations() {
    let app = spawn_app_with(Backend::Sqlite, ENABLED).await;
    let (_, public) = register(
        &app.url,
        &json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none",
                "scope": "orders:read orders:write"}),
    )
    .await;
    let (s, v) = register(
        &app.url,
        &json!({"grant_types": ["client_credentials"], "scope": "orders:read orders:write",
                "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (id, secret) = (
        v["client_id"].as_str().unwrap(),
        v["client_secret"].as_str().unwrap(),
    );
    let text = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .replace(
            "scopes = [\"orders:read\", \"orders:write\"]\nper_address",
            "scopes = [\"orders:read\"]\nper_address",
        )
        .replace("confidential = true", "confidential = false")
        .replace(
            "grant_types = [\"authorization_code\", \"refresh_token\", \"client_credentials\"]",
            "grant_types = [\"authorization_code\", \"refresh_token\"]",
        );
    assert!(text.contains("scopes = [\"orders:read\"]\nper_address"));
    let config = Config::from_toml(&text, "narrowed.toml", Vec::new()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let built = App::build_with_clock(config, addr, app.db.clock.clone())
        .await
        .unwrap();
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(built.run(listener, async {
        let _ = rx.await;
    }));
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no confidential clients any more");
    // The public one may ask only for what the policy allows now (refused before sign-in).
    let pkce = Pkce::new();
    let q = authorize_query(
        public["client_id"].as_str().unwrap(),
        "orders:write",
        "s",
        &pkce.challenge,
        &[],
    );
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{addr}/authorize?{q}"))
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(body.contains("invalid_scope"), "{body}");
    let _ = shutdown.send(());
    task.await.unwrap().unwrap();
    app.stop().await;
}

/// `registration.expire_unused_after` frees registrations nobody uses: failed, unauthenticated
/// calls naming a client are no use, so a stranger cannot keep the total cap full with them.
#[tokio::test]
async fn failed_calls_naming_a_registration_do_not_keep_it_alive() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &ENABLED.replace("max_clients = 50", "max_clients = 3"),
    )
    .await;
    let body =
        json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (s, v) = register(&app.url, &body).await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["client_id"].as_str().unwrap().to_string());
    }
    assert_eq!(register(&app.url, &body).await.0, 503);
    for _ in 0..3 {
        app.advance(3600);
        for id in &ids {
            let r = app
                .post_form(
                    "/token",
                    None,
                    &[
                        ("grant_type", "authorization_code"),
                        ("client_id", id.as_str()),
                        ("code", "bogus"),
                        ("redirect_uri", "http://127.0.0.1/cb"),
                        ("code_verifier", "x"),
                    ],
                )
                .await;
            // Refused either way: a bad code while it lives, an unknown client once expired.
            assert!([400, 401].contains(&r.status().as_u16()), "{}", r.status());
        }
    }
    let (s, v) = register(&app.url, &body).await;
    assert_eq!(s, 201, "the unused ones expired: {v}");
    app.stop().await;
}

/// RFC 8707 §2.2 with `[[resources]]`: narrowing the audience at `/token` narrows the scope to
/// what the remaining resource lists, as `/authorize` would have for it alone.
#[tokio::test]
async fn rfc8707_s2_2_resource_at_token_narrows_the_scope_too() {
    let extra = r#"
[[resources]]
uri = "https://a.example/mcp"
scopes = ["orders:read"]

[[resources]]
uri = "https://b.example/mcp"
scopes = ["orders:write"]
"#;
    let app = spawn_app_with(Backend::Sqlite, extra).await;
    let pkce = Pkce::new();
    let q = authorize_query(
        "cli",
        "orders:read orders:write",
        "st",
        &pkce.challenge,
        &[
            ("resource", "https://a.example/mcp"),
            ("resource", "https://b.example/mcp"),
        ],
    );
    let mut br = Browser::new(&app);
    let loc = br
        .authorize_and_approve(&q, "alice", "alice-password")
        .await;
    let code = code_from(&loc, "st");
    let t: Value = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "cli"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &pkce.verifier),
                ("resource", "https://a.example/mcp"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let c = crate::helpers::claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], "https://a.example/mcp");
    assert_eq!(c["scope"], "orders:read", "{c}");
    assert_eq!(t["scope"], "orders:read");
    app.stop().await;
}
