//! The login and consent pages: generic failures, CSRF, remembered consent, headers, cookies.

use super::*;
use crate::flows::*;
use crate::helpers::*;

#[tokio::test]
async fn wrong_password_is_generic_401_and_sets_no_session_cookie() {
    for b in backends() {
        let app = spawn_app(b).await;
        let pkce = Pkce::new();
        let url = format!(
            "/authorize?{}",
            authorize_query("cli", SCOPE, "s", &pkce.challenge, &[])
        );
        let mut bodies = Vec::new();
        for (user, pw) in [("alice", "wrong"), ("nobody", "alice-password")] {
            let mut br = Browser::new(&app);
            let login = br.get(&url).await;
            assert_eq!(login.status, 200);
            let page = br
                .submit(&url, &login, &[("username", user), ("password", pw)])
                .await;
            assert_eq!(page.status, 401, "{}", app.label());
            assert!(
                br.cookies().names().all(|k| !k.contains("session")),
                "{:?}",
                br.cookies()
            );
            assert!(page.body.contains("The username or password is incorrect."));
            assert!(!page.body.contains(pw), "the password is not echoed");
            let form = parse_form(&page.body);
            assert!(
                form.inputs.iter().any(|i| i == "password"),
                "the form is shown again"
            );
            let csrf = &form
                .hidden
                .iter()
                .find(|(k, _)| k == "csrf_token")
                .unwrap()
                .1;
            bodies.push(page.body.replace(user, "").replace(csrf.as_str(), ""));
            // Still not signed in.
            assert!(
                parse_form(&br.get(&url).await.body)
                    .inputs
                    .iter()
                    .any(|i| i == "password")
            );
        }
        assert_eq!(
            bodies[0], bodies[1],
            "nothing tells which of the two was wrong"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn csrf_token_missing_or_wrong_on_login_is_403_and_signs_nobody_in() {
    for b in backends() {
        let app = spawn_app(b).await;
        let pkce = Pkce::new();
        let url = format!(
            "/authorize?{}",
            authorize_query("cli", SCOPE, "s", &pkce.challenge, &[])
        );
        let mut br = Browser::new(&app);
        let login = br.get(&url).await;
        let form = parse_form(&login.body);
        let pending = form
            .hidden
            .iter()
            .find(|(k, _)| k == "pending")
            .unwrap()
            .1
            .clone();
        for csrf in [None, Some("forged")] {
            let mut body = vec![
                ("pending".to_string(), pending.clone()),
                ("username".into(), "alice".into()),
                ("password".into(), "alice-password".into()),
            ];
            if let Some(c) = csrf {
                body.push(("csrf_token".into(), c.into()));
            }
            let page = br.post("/login", &body).await;
            assert_eq!(page.status, 403, "{csrf:?} {}", app.label());
            assert!(br.cookies().names().all(|k| !k.contains("session")));
        }
        // A cross-site form carries the token but not the cookie it is derived from.
        let mut stranger = Browser::new(&app);
        let page = stranger
            .submit(
                &url,
                &login,
                &[("username", "alice"), ("password", "alice-password")],
            )
            .await;
        assert_eq!(page.status, 403);
        assert!(
            !audit_kinds(&app)
                .await
                .iter()
                .any(|k| k == "user.signed_in")
        );
        app.stop().await;
    }
}

/// A confidential client that signs humans in.
const WEB_APP: &str = "[[clients]]\nclient_id = \"web-app\"\nclient_secret = \"web-secret\"\n\
     redirect_uris = [\"http://127.0.0.1:9999/callback\"]\ngrant_types = [\"authorization_code\"]\n\
     scopes = [\"orders:read\"]\n";

#[tokio::test]
async fn consent_needs_its_csrf_token_deny_is_access_denied_and_approval_is_remembered() {
    for b in backends() {
        let app = spawn_app_with(b, WEB_APP).await;
        let pkce = Pkce::new();
        let url = format!(
            "/authorize?{}",
            authorize_query("cli", "orders:read", "s1", &pkce.challenge, &[])
        );
        let mut br = Browser::new(&app);
        let login = br.get(&url).await;
        let after = br
            .submit(
                &url,
                &login,
                &[("username", "alice"), ("password", "alice-password")],
            )
            .await;
        assert_eq!(after.status, 303);
        let consent_url = after.location.unwrap();
        let consent = br.get(&consent_url).await;
        assert_eq!(consent.status, 200, "{}", consent.body);
        assert!(consent.body.contains("cli") && consent.body.contains("orders:read"));
        let form = parse_form(&consent.body);
        let texts: Vec<&str> = form.buttons.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(texts, ["Approve", "Deny"]);
        // Without (or with a wrong) CSRF token: 403, no redirect, no consent stored.
        let pending = form
            .hidden
            .iter()
            .find(|(k, _)| k == "pending")
            .unwrap()
            .1
            .clone();
        for csrf in [None, Some("forged")] {
            let mut body = vec![
                ("pending".to_string(), pending.clone()),
                ("decision".into(), "approve".into()),
            ];
            if let Some(c) = csrf {
                body.push(("csrf_token".into(), c.into()));
            }
            let page = br.post("/consent", &body).await;
            assert_eq!(page.status, 403, "{}", app.label());
            assert!(page.location.is_none());
        }
        assert_eq!(
            br.get(&consent_url).await.status,
            200,
            "still asks for consent"
        );
        // Deny: access_denied with state.
        let denied = br.click(&consent_url, &consent, "Deny").await;
        assert_eq!(denied.status, 303);
        let p = redirect_params(denied.location.as_deref().unwrap());
        assert_eq!(
            (p["error"].as_str(), p["state"].as_str()),
            ("access_denied", "s1")
        );
        // Approve once. `cli` is a public client: it asks again every time (RFC 8252 §8.6).
        let approved = br.click(&consent_url, &consent, "Approve").await;
        code_from(approved.location.as_deref().unwrap(), "s1");
        let again = br.get(&url).await;
        assert_eq!(again.status, 200, "a public client: consent again");
        assert!(
            parse_form(&again.body)
                .buttons
                .iter()
                .any(|b| b.text == "Approve")
        );
        // A confidential client's approval is remembered: the next request gets a code at once.
        let web = format!(
            "/authorize?{}",
            authorize_query("web-app", "orders:read", "s3", &pkce.challenge, &[])
        );
        let first = br.get(&web).await;
        assert_eq!(first.status, 200, "{}", first.body);
        let approved = br.click(&web, &first, "Approve").await;
        code_from(approved.location.as_deref().unwrap(), "s3");
        let again = br.get(&web).await;
        assert_eq!(again.status, 302, "no login, no consent the second time");
        code_from(again.location.as_deref().unwrap(), "s3");
        // More scopes than approved: consent again.
        let wider = format!(
            "/authorize?{}",
            authorize_query("cli", SCOPE, "s2", &pkce.challenge, &[])
        );
        assert_eq!(br.get(&wider).await.status, 200);
        let kinds = audit_kinds(&app).await;
        assert!(kinds.iter().any(|k| k == "consent.granted"));
        assert!(kinds.iter().any(|k| k == "consent.denied"));
        app.stop().await;
    }
}

#[tokio::test]
async fn pages_send_security_headers_and_cookies_are_httponly_samesite() {
    let app = spawn_app(Backend::Sqlite).await;
    let pkce = Pkce::new();
    let url = format!(
        "/authorize?{}",
        authorize_query("cli", SCOPE, "s", &pkce.challenge, &[])
    );
    let resp = reqwest::Client::new()
        .get(format!("{}{url}", app.url))
        .send()
        .await
        .unwrap();
    let h = resp.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9999"),
        "{csp}"
    );
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    let cookie = h["set-cookie"].to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "http issuer");
    let mut br = Browser::new(&app);
    let login = br.get(&url).await;
    let after = br
        .submit(
            &url,
            &login,
            &[("username", "alice"), ("password", "alice-password")],
        )
        .await;
    let session = after.headers["set-cookie"].to_str().unwrap();
    assert!(session.starts_with("mandate_session="));
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attr), "{session}");
    }
    let css = br.get("/static/mandate.css").await;
    assert_eq!(css.status, 200);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    // RFC 6749 §3.1: the request may also come as a form body.
    let page = br
        .post(
            "/authorize",
            &form_urlencoded::parse(
                authorize_query("cli", SCOPE, "s", &pkce.challenge, &[]).as_bytes(),
            )
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(page.status, 200, "signed in: the consent page");
    assert!(page.body.contains("Approve"));
    app.stop().await;
}

/// A wrong method on a web page gets the product's HTML page, on an API endpoint the JSON error;
/// both are 405 with the `Allow` header RFC 9110 §15.5.6 asks for.
#[tokio::test]
async fn rfc9110_s15_5_6_a_wrong_method_gets_a_page_on_pages_and_json_on_the_api() {
    let app = spawn_app(Backend::Sqlite).await;
    for (method, path, html) in [
        (reqwest::Method::DELETE, "/login", true),
        (reqwest::Method::PUT, "/sessions/revoke", true),
        (reqwest::Method::GET, "/token", false),
    ] {
        let resp = app
            .http
            .request(method.clone(), format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        assert!(
            resp.headers().contains_key(reqwest::header::ALLOW),
            "{method} {path}: {:?}",
            resp.headers()
        );
        let ct = resp.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(ct.starts_with("text/html"), html, "{method} {path}: {ct}");
        if !html {
            let v: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(v["error"], "method_not_allowed");
        }
    }
    app.stop().await;
}
