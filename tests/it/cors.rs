//! CORS (the Fetch standard) for what a browser-based client calls itself: an MCP client in a page
//! on a loopback origin (the MCP Inspector's `http://127.0.0.1:6274`), or a web client from the
//! origin of its redirect URI, reads the metadata and the JWKS and calls `/token` and `/revoke`;
//! any other origin, and every page for humans, stays unreadable across origins.

use reqwest::Method;
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, VARY,
};

use crate::helpers::*;

const EXTRA: &str = r#"
[server]
cors_origins = ["https://inspector.example"]

[[clients]]
client_id = "web-app"
public = true
redirect_uris = ["https://app.example/callback"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["orders:read"]
"#;

const INSPECTOR: &str = "http://127.0.0.1:6274";

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::Response {
    app.http
        .request(Method::OPTIONS, format!("{}{path}", app.url))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

fn allow_origin(r: &reqwest::Response) -> Option<&str> {
    r.headers()
        .get(ACCESS_CONTROL_ALLOW_ORIGIN)
        .and_then(|v| v.to_str().ok())
}

/// A preflight to `/token` from a loopback origin succeeds and names the method and headers a
/// token request needs; the real request's answer is then readable by that origin only.
#[tokio::test]
async fn a_browser_client_on_a_loopback_origin_may_call_token_after_a_preflight() {
    for b in backends() {
        let app = spawn_app_with(b, EXTRA).await;
        let r = preflight(&app, "/token", INSPECTOR, "POST").await;
        assert!(r.status().is_success(), "{}", r.status());
        assert_eq!(allow_origin(&r), Some(INSPECTOR));
        let methods = r.headers()[ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
        assert!(methods.contains("POST"), "{methods}");
        let headers = r.headers()[ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            headers.contains("authorization") && headers.contains("content-type"),
            "{headers}"
        );
        // Clients authenticate with the Authorization header or the body, never cookies.
        assert!(r.headers().get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());

        let r = app
            .http
            .post(format!("{}/token", app.url))
            .header("Origin", INSPECTOR)
            .basic_auth("agent-runtime", Some("s3cret"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "orders:read"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(allow_origin(&r), Some(INSPECTOR));
        let vary = r.headers()[VARY].to_str().unwrap().to_ascii_lowercase();
        assert!(vary.contains("origin"), "{vary}");
        // The script may read the id its request was logged under, to quote it in a report.
        let exposed = r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(exposed.contains("x-request-id"), "{exposed}");
        assert!(r.headers().contains_key("x-request-id"));
    }
}

/// The metadata (both documents) and the JWKS are readable from the origin of a client's
/// redirect URI and from a configured origin, each answered with its own origin, never `*`.
#[tokio::test]
async fn metadata_and_jwks_are_readable_from_redirect_and_configured_origins() {
    let app = spawn_app_with(Backend::Sqlite, EXTRA).await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/jwks.json",
    ] {
        for origin in [
            "https://app.example",
            "https://inspector.example",
            INSPECTOR,
        ] {
            let r = app
                .http
                .get(format!("{}{path}", app.url))
                .header("Origin", origin)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(allow_origin(&r), Some(origin), "{path} from {origin}");
        }
        let r = preflight(&app, path, "https://app.example", "GET").await;
        assert_eq!(allow_origin(&r), Some("https://app.example"), "{path}");
    }
}

/// Any other origin gets no `Access-Control-Allow-Origin` (the browser then hides the answer),
/// and neither do the pages for humans, introspection or attestation, from any origin.
#[tokio::test]
async fn other_origins_and_endpoints_a_browser_client_never_calls_stay_closed() {
    let app = spawn_app_with(Backend::Sqlite, EXTRA).await;
    for origin in [
        "https://evil.example",
        "https://app.example.evil.example",
        "http://app.example",
        "null",
        "http://localhost.evil.example",
    ] {
        let r = preflight(&app, "/token", origin, "POST").await;
        assert_eq!(allow_origin(&r), None, "{origin}");
        let r = app
            .http
            .get(format!("{}/jwks.json", app.url))
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(allow_origin(&r), None, "{origin}");
    }
    for (method, path) in [
        ("GET", "/authorize"),
        ("GET", "/login"),
        ("GET", "/sessions"),
        ("POST", "/introspect"),
        ("POST", "/attest/challenge"),
        ("POST", "/bc-authorize"),
    ] {
        let r = preflight(&app, path, INSPECTOR, method).await;
        assert_eq!(allow_origin(&r), None, "{method} {path}");
        let r = app
            .http
            .request(method.parse().unwrap(), format!("{}{path}", app.url))
            .header("Origin", INSPECTOR)
            .send()
            .await
            .unwrap();
        assert_eq!(allow_origin(&r), None, "{method} {path}");
    }
}

/// An entry of `server.cors_origins` that is not an origin (`*`, a path, odd case) stops the
/// server at start with a message naming the key.
#[tokio::test]
async fn a_cors_origin_that_is_not_an_origin_is_refused_at_start() {
    for bad in [
        "*",
        "https://app.example/",
        "https://APP.example",
        "app.example",
    ] {
        let text = format!("[server]\ncors_origins = [{bad:?}]\n");
        let e = mandate::config::Config::from_toml(&text, "t.toml", std::iter::empty())
            .err()
            .unwrap_or_else(|| panic!("{bad} was accepted"))
            .to_string();
        assert!(e.contains("server.cors_origins"), "{e}");
    }
}
