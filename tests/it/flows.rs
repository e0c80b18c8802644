//! A browser, driven by hand: the authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636)
//! over HTTP exactly as the SPEC's "Web pages a browser (and a test) can rely on" promises —
//! parse the login form's hidden inputs, post the credentials, approve on the consent page,
//! catch the redirect to the client, redeem the code. Redirects are never followed
//! automatically, so the redirect back to the client (which no one listens on) is caught.

use std::collections::HashMap;

use mandate::crypto::{b64url, random_bytes, sha256};
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

/// A form found in a page: where it posts and its hidden inputs and submit buttons.
#[derive(Debug, Clone)]
pub struct FormData {
    pub action: Option<String>,
    pub method: String,
    pub hidden: Vec<(String, String)>,
    /// `(name, value, text)` of each `<button>`.
    pub buttons: Vec<(String, String, String)>,
    pub inputs: Vec<String>,
}

/// The first `<form>` of `html`. A deliberately small scanner: it reads what our templates (and
/// any reasonable page) write, attributes in double quotes.
pub fn parse_form(html: &str) -> FormData {
    let start = html.find("<form").expect("a <form> in the page");
    let end = html[start..]
        .find("</form>")
        .map(|e| start + e)
        .expect("a closed form");
    let form = &html[start..end];
    let tag_end = form.find('>').unwrap();
    let tag = &form[..tag_end];
    let mut data = FormData {
        action: attr(tag, "action").map(|a| unescape(&a)),
        method: attr(tag, "method").unwrap_or_default().to_ascii_lowercase(),
        hidden: Vec::new(),
        buttons: Vec::new(),
        inputs: Vec::new(),
    };
    let mut rest = &form[tag_end..];
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..i + rest[i..].find('>').unwrap()];
        let name = attr(tag, "name").map(|n| unescape(&n)).unwrap_or_default();
        if attr(tag, "type").as_deref() == Some("hidden") {
            let value = attr(tag, "value").map(|v| unescape(&v)).unwrap_or_default();
            data.hidden.push((name.clone(), value));
        }
        data.inputs.push(name);
        rest = &rest[i + 6..];
    }
    let mut rest = &form[tag_end..];
    while let Some(i) = rest.find("<button") {
        let open_end = i + rest[i..].find('>').unwrap();
        let tag = &rest[i..open_end];
        let close = open_end + rest[open_end..].find("</button>").unwrap();
        let text = rest[open_end + 1..close].trim().to_string();
        data.buttons.push((
            attr(tag, "name").map(|n| unescape(&n)).unwrap_or_default(),
            attr(tag, "value").map(|v| unescape(&v)).unwrap_or_default(),
            text,
        ));
        rest = &rest[close..];
    }
    data
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let pat = format!(" {name}=\"");
    let i = tag.find(&pat)? + pat.len();
    let j = tag[i..].find('"')?;
    Some(tag[i..i + j].to_string())
}

/// HTML character references that template engines write in attribute values: the named
/// ones for `&<>"'` and any numeric one.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let num = entity.strip_prefix('#')?;
                    let n = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(n)
                }
            }?;
            Some((c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A cookie jar and a client that never follows redirects.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    pub http: reqwest::Client,
    pub cookies: HashMap<String, String>,
}

/// What a page request answered.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.app.url)
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Page {
        for sc in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let sc = sc.to_str().unwrap();
            let pair = sc.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || sc.to_ascii_lowercase().contains("max-age=0") {
                self.cookies.remove(k.trim());
            } else {
                self.cookies
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        Page {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| l.to_str().unwrap().to_string()),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path_or_url: &str) -> Page {
        let resp = self
            .http
            .get(self.url(path_or_url))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    pub async fn post(&mut self, path_or_url: &str, form: &[(String, String)]) -> Page {
        let resp = self
            .http
            .post(self.url(path_or_url))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    /// Submits the first form of `page` with its hidden inputs plus `fields`.
    pub async fn submit(&mut self, page_url: &str, page: &Page, fields: &[(&str, &str)]) -> Page {
        let form = parse_form(&page.body);
        assert_eq!(form.method, "post", "{}", page.body);
        let mut body = form.hidden.clone();
        body.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let target = form.action.unwrap_or_else(|| page_url.to_string());
        self.post(&target, &body).await
    }

    /// Clicks the `<button>` whose text is `text` in the first form of `page`.
    pub async fn click(&mut self, page_url: &str, page: &Page, text: &str) -> Page {
        let form = parse_form(&page.body);
        let (name, value, _) = form
            .buttons
            .iter()
            .find(|(_, _, t)| t == text)
            .unwrap_or_else(|| panic!("no `{text}` button in {}", page.body))
            .clone();
        let fields: Vec<(&str, &str)> = if name.is_empty() {
            Vec::new()
        } else {
            vec![(name.as_str(), value.as_str())]
        };
        self.submit(page_url, page, &fields).await
    }

    /// Runs `GET /authorize?query`, signs in if asked, approves consent if asked, and returns the
    /// redirect's `Location` (to the client).
    pub async fn authorize_and_approve(
        &mut self,
        query: &str,
        username: &str,
        password: &str,
    ) -> String {
        let mut url = format!("/authorize?{query}");
        let mut page = self.get(&url).await;
        for _ in 0..6 {
            if let Some(loc) = page.location.clone() {
                if loc.starts_with(REDIRECT_URI) {
                    return loc;
                }
                url = loc;
                page = self.get(&url).await;
                continue;
            }
            assert_eq!(page.status, 200, "{}", page.body);
            let form = parse_form(&page.body);
            page = if form.inputs.iter().any(|n| n == "password") {
                self.submit(
                    &url,
                    &page,
                    &[("username", username), ("password", password)],
                )
                .await
            } else {
                self.click(&url, &page, "Approve").await
            };
        }
        panic!("the flow did not reach the client: {}", page.body);
    }
}
