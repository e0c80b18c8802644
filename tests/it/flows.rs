//! A browser, driven by hand: the authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636)
//! over HTTP exactly as the SPEC's "Web pages a browser (and a test) can rely on" promises —
//! parse the login form's hidden inputs, post the credentials, approve on the consent page,
//! catch the redirect to the client, redeem the code. The browser is the conformance crate's
//! (`mandate_conformance::browser`); this file adds the test server, PKCE and panics.

use std::collections::HashMap;

use mandate::crypto::{b64url, random_bytes, sha256};
use mandate_conformance::browser::{self, End, html};
pub use mandate_conformance::browser::{Form, Jar, Page};
use serde_json::Value;

use crate::helpers::TestApp;

/// The redirect URI every test client that signs humans in registers.
pub const REDIRECT_URI: &str = "http://127.0.0.1:9999/callback";

/// Signs `username` in through `client_id` (a public client registered with [`REDIRECT_URI`]),
/// approves the consent page if one is shown, redeems the code, and returns the `/token`
/// response JSON (`access_token`, `refresh_token`, `scope`, ...). Panics on any unexpected step.
pub async fn sign_in(
    app: &TestApp,
    username: &str,
    password: &str,
    client_id: &str,
    scope: &str,
) -> serde_json::Value {
    let mut browser = Browser::new(app);
    let pkce = Pkce::new();
    let state = b64url(&random_bytes::<12>());
    let query = authorize_query(client_id, scope, &state, &pkce.challenge, &[]);
    let location = browser
        .authorize_and_approve(&query, username, password)
        .await;
    let code = code_from(&location, &state);
    let resp = redeem(app, client_id, &code, &pkce.verifier).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "code redemption failed: {body}");
    body
}

/// alice's access token for `scope`, signed in through the public client `cli`.
pub async fn alice_token(app: &TestApp, scope: &str) -> String {
    let v = sign_in(app, "alice", "alice-password", "cli", scope).await;
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {v}"))
        .to_string()
}

/// A PKCE pair (RFC 7636 §4.1, §4.2): 43-character verifier, S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let verifier = b64url(&random_bytes::<32>());
        let challenge = b64url(&sha256(verifier.as_bytes()));
        Self {
            verifier,
            challenge,
        }
    }
}

/// The query string of an authorization request (RFC 6749 §4.1.1) for [`REDIRECT_URI`].
pub fn authorize_query(
    client_id: &str,
    scope: &str,
    state: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("state", state)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    if !scope.is_empty() {
        q.append_pair("scope", scope);
    }
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    q.finish()
}

/// `POST /token` with `grant_type=authorization_code` as a public client.
pub async fn redeem(
    app: &TestApp,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// The `code` of a redirect to [`REDIRECT_URI`], after checking that `state` came back.
pub fn code_from(location: &str, state: &str) -> String {
    let q = redirect_params(location);
    assert_eq!(
        q.get("state").map(String::as_str),
        Some(state),
        "{location}"
    );
    q.get("code")
        .unwrap_or_else(|| panic!("no code in the redirect: {location}"))
        .clone()
}

/// The query parameters of a redirect to [`REDIRECT_URI`].
pub fn redirect_params(location: &str) -> HashMap<String, String> {
    let rest = location
        .strip_prefix(REDIRECT_URI)
        .unwrap_or_else(|| panic!("not a redirect to the client: {location}"));
    let query = rest.strip_prefix('?').unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first `<form>` of `html`; panics when there is none.
pub fn parse_form(html: &str) -> Form {
    html::forms(html)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no <form> in the page: {}", html::text_of(html, 500)))
}

/// The conformance crate's browser (a cookie jar per origin, no automatic redirects), with
/// the test's server as its base and panics instead of errors.
pub struct Browser<'a> {
    app: &'a TestApp,
    inner: browser::Browser,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            inner: browser::Browser::new(&app.url).unwrap(),
        }
    }

    /// Unwraps `r`, naming the backend in the panic.
    fn ok<T>(&self, r: Result<T, String>) -> T {
        r.unwrap_or_else(|e| panic!("{}: {e}", self.app.label()))
    }

    pub fn cookies(&self) -> &Jar {
        &self.inner.cookies
    }

    pub async fn get(&mut self, path_or_url: &str) -> Page {
        let r = self.inner.get(path_or_url).await;
        self.ok(r)
    }

    pub async fn post(&mut self, path_or_url: &str, form: &[(String, String)]) -> Page {
        let r = self.inner.post(path_or_url, form).await;
        self.ok(r)
    }

    /// Submits the first form of `page` with its hidden inputs plus `fields`.
    pub async fn submit(&mut self, page_url: &str, page: &Page, fields: &[(&str, &str)]) -> Page {
        let form = parse_form(&page.body);
        let r = self.inner.submit(page_url, &form, fields).await;
        self.ok(r)
    }

    /// Clicks the `<button>` whose text is `text` in the first form of `page` that has one.
    pub async fn click(&mut self, page_url: &str, page: &Page, text: &str) -> Page {
        let r = self.inner.click(page_url, page, text).await;
        self.ok(r)
    }

    /// Runs `GET /authorize?query`, signs in if asked, approves consent if asked, and returns the
    /// redirect's `Location` (to the client).
    pub async fn authorize_and_approve(
        &mut self,
        query: &str,
        username: &str,
        password: &str,
    ) -> String {
        let url = format!("/authorize?{query}");
        match self
            .inner
            .drive(&url, username, password, &[REDIRECT_URI])
            .await
        {
            Ok(End::Left(location)) if location.starts_with(REDIRECT_URI) => location,
            Ok(End::Left(location)) => panic!("the flow left for {location}, not the client"),
            Ok(End::Page(page)) => panic!("the flow did not reach the client: {}", page.summary()),
            Err(e) => panic!("the flow did not reach the client: {e}"),
        }
    }
}
