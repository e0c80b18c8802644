//! A human signs in the way a browser does (authorization code + PKCE, RFC 6749 §4.1 / RFC
//! 7636): `GET /authorize`, post the login form with its hidden inputs, click `Approve` on the
//! consent page, catch the redirect to the client, redeem the code. Adapted from
//! tests/it/flows.rs, with errors instead of panics.

use std::collections::HashMap;

use anyhow::{Context, anyhow, bail};
use mandate::crypto::{b64url, random_bytes, sha256};

pub const REDIRECT_URI: &str = "http://127.0.0.1:9999/callback";

/// The `/token` answer's `access_token` for `username` signed in through the public `client_id`.
pub async fn sign_in(
    base: &str,
    username: &str,
    password: &str,
    client_id: &str,
    scope: &str,
) -> anyhow::Result<String> {
    let mut b = Browser::new(base)?;
    let verifier = b64url(&random_bytes::<32>());
    let challenge = b64url(&sha256(verifier.as_bytes()));
    let state = b64url(&random_bytes::<12>());
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", scope);
    let location = b
        .authorize_and_approve(&q.finish(), username, password)
        .await?;
    let rest = location
        .strip_prefix(REDIRECT_URI)
        .ok_or_else(|| anyhow!("not a redirect to the client: {location}"))?;
    let params: HashMap<String, String> =
        form_urlencoded::parse(rest.trim_start_matches('?').as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    if params.get("state") != Some(&state) {
        bail!("state did not come back: {location}");
    }
    let code = params
        .get("code")
        .ok_or_else(|| anyhow!("no code in the redirect: {location}"))?;
    let resp = b
        .http
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
        ])
        .send()
        .await?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.context("code redemption: not JSON")?;
    match v["access_token"].as_str() {
        Some(t) if status == 200 => Ok(t.to_string()),
        _ => bail!("code redemption answered {status}: {v}"),
    }
}

struct Form {
    action: Option<String>,
    method: String,
    hidden: Vec<(String, String)>,
    /// `(name, value, text)` of each `<button>`.
    buttons: Vec<(String, String, String)>,
    inputs: Vec<String>,
}

/// The visible text of an HTML page (tags dropped, whitespace collapsed), shortened.
fn text_of(html: &str) -> String {
    let body = html
        .find("<body")
        .and_then(|i| html.get(i..))
        .unwrap_or(html);
    let (mut out, mut in_tag) = (String::new(), false);
    for ch in body.chars() {
        match ch {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    unescape(&words.join(" ")).chars().take(300).collect()
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let pat = format!(" {name}=\"");
    let i = tag.find(&pat)? + pat.len();
    let j = tag.get(i..)?.find('"')?;
    Some(unescape(tag.get(i..i + j)?))
}

/// Decodes the character references template engines write (`&amp;`, `&#38;`, `&#x2F;`, ...).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(rest.get(..i).unwrap_or(""));
        rest = rest.get(i..).unwrap_or("");
        let decoded = rest.find(';').filter(|j| *j <= 10).and_then(|j| {
            let name = rest.get(1..j)?;
            let c = match name {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let n = name.strip_prefix('#')?;
                    let code = match n.strip_prefix(['x', 'X']) {
                        Some(h) => u32::from_str_radix(h, 16).ok()?,
                        None => n.parse().ok()?,
                    };
                    char::from_u32(code)?
                }
            };
            Some((c, j + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = rest.get(len..).unwrap_or("");
            }
            None => {
                out.push('&');
                rest = rest.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

/// The first `<form>` of `html` (attributes in double quotes, as our templates write them).
fn parse_form(html: &str) -> Option<Form> {
    let start = html.find("<form")?;
    let form = html.get(start..start + html.get(start..)?.find("</form>")?)?;
    let tag_end = form.find('>')?;
    let tag = form.get(..tag_end)?;
    let mut f = Form {
        action: attr(tag, "action"),
        method: attr(tag, "method").unwrap_or_default().to_ascii_lowercase(),
        hidden: Vec::new(),
        buttons: Vec::new(),
        inputs: Vec::new(),
    };
    let body = form.get(tag_end..)?;
    let mut rest = body;
    while let Some(i) = rest.find("<input") {
        let tag = rest.get(i..i + rest.get(i..)?.find('>')?)?;
        let name = attr(tag, "name").unwrap_or_default();
        if attr(tag, "type").as_deref() == Some("hidden") {
            f.hidden
                .push((name.clone(), attr(tag, "value").unwrap_or_default()));
        }
        f.inputs.push(name);
        rest = rest.get(i + 6..)?;
    }
    let mut rest = body;
    while let Some(i) = rest.find("<button") {
        let open_end = i + rest.get(i..)?.find('>')?;
        let tag = rest.get(i..open_end)?;
        let close = open_end + rest.get(open_end..)?.find("</button>")?;
        let text = rest.get(open_end + 1..close)?.trim().to_string();
        f.buttons.push((
            attr(tag, "name").unwrap_or_default(),
            attr(tag, "value").unwrap_or_default(),
            text,
        ));
        rest = rest.get(close..)?;
    }
    Some(f)
}

struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

/// A cookie jar and a client that never follows redirects.
struct Browser {
    base: String,
    /// The last request, for error messages.
    last: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.to_string(),
            last: String::new(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            cookies: HashMap::new(),
        })
    }

    fn url(&self, p: &str) -> String {
        if p.starts_with("http://") || p.starts_with("https://") {
            p.to_string()
        } else {
            format!("{}{p}", self.base)
        }
    }

    fn cookie_header(&self) -> String {
        let v: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        v.join("; ")
    }

    async fn finish(&mut self, resp: reqwest::Response) -> anyhow::Result<Page> {
        for sc in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let sc = sc.to_str()?;
            let pair = sc.split(';').next().unwrap_or("");
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if v.is_empty() || sc.to_ascii_lowercase().contains("max-age=0") {
                self.cookies.remove(k.trim());
            } else {
                self.cookies
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        Ok(Page {
            status: resp.status().as_u16(),
            location,
            body: resp.text().await?,
        })
    }

    async fn get(&mut self, p: &str) -> anyhow::Result<Page> {
        self.last = format!("GET {}", p.split('?').next().unwrap_or(p));
        let resp = self
            .http
            .get(self.url(p))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await?;
        self.finish(resp).await
    }

    async fn submit(
        &mut self,
        page_url: &str,
        page: &Page,
        fields: &[(&str, &str)],
    ) -> anyhow::Result<Page> {
        let form = parse_form(&page.body).ok_or_else(|| anyhow!("no form in the page"))?;
        if form.method != "post" {
            bail!("the form does not POST: {}", page.body);
        }
        let mut body = form.hidden.clone();
        body.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let target = self.url(form.action.as_deref().unwrap_or(page_url));
        let names: Vec<&str> = body.iter().map(|(k, _)| k.as_str()).collect();
        self.last = format!("POST {target} ({})", names.join(", "));
        let resp = self
            .http
            .post(target)
            .header(reqwest::header::COOKIE, self.cookie_header())
            .form(&body)
            .send()
            .await?;
        self.finish(resp).await
    }

    async fn authorize_and_approve(
        &mut self,
        query: &str,
        username: &str,
        password: &str,
    ) -> anyhow::Result<String> {
        let mut url = format!("/authorize?{query}");
        let mut page = self.get(&url).await?;
        for _ in 0..6 {
            if let Some(loc) = page.location.clone() {
                if loc.starts_with(REDIRECT_URI) {
                    return Ok(loc);
                }
                url = loc;
                page = self.get(&url).await?;
                continue;
            }
            if page.status != 200 {
                bail!(
                    "{} answered {}: {}",
                    self.last,
                    page.status,
                    text_of(&page.body)
                );
            }
            let form =
                parse_form(&page.body).ok_or_else(|| anyhow!("no <form> in the page at {url}"))?;
            page = if form.inputs.iter().any(|n| n == "password") {
                self.submit(
                    &url,
                    &page,
                    &[("username", username), ("password", password)],
                )
                .await?
            } else {
                let (name, value, _) = form
                    .buttons
                    .iter()
                    .find(|(_, _, t)| t == "Approve")
                    .cloned()
                    .ok_or_else(|| anyhow!("no `Approve` button at {url}"))?;
                let fields: Vec<(&str, &str)> = if name.is_empty() {
                    Vec::new()
                } else {
                    vec![(name.as_str(), value.as_str())]
                };
                self.submit(&url, &page, &fields).await?
            };
        }
        bail!("the flow did not reach the client after 6 steps")
    }
}
