//! The one hand-driven browser of the project, used by the conformance checks, the integration
//! tests and the load benchmark: it speaks to the SPEC's web page contract ("Web pages a
//! browser (and a test) can rely on") the way a person's browser would.
//!
//! - [`Browser`] keeps a [`Jar`] of cookies per origin and never follows a redirect on its own,
//!   so the redirect back to a client (where no one listens) is caught, not fetched.
//! - [`html::forms`] reads a page's forms: method, action, hidden inputs (the CSRF token),
//!   input names and buttons; [`Browser::submit`] and [`Browser::click`] post them back.
//! - [`Browser::drive`] goes from `GET /authorize` to the redirect that leaves the server:
//!   follows redirects within the issuer's origin, signs in on the login page and clicks
//!   `Approve` on a consent page.
//!
//! Nothing here panics on a bad answer: every surprise is an `Err` saying what was seen.

mod cookies;
pub mod html;
#[cfg(test)]
mod tests;
mod url;

pub use cookies::Jar;
pub use html::{Button, Form};
pub use url::{origin_of, param, points_to, query_params, resolve};

use reqwest::header::HeaderMap;

use crate::http::{error_chain, form, truncate};

/// One answer, as the browser saw it.
pub struct Page {
    pub status: u16,
    /// The `Location` header as sent (possibly relative).
    pub location: Option<String>,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The first value of a header, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The page's forms, in document order.
    pub fn forms(&self) -> Vec<Form> {
        html::forms(&self.body)
    }

    /// A short description for failure messages: status, content type and the visible text.
    pub fn summary(&self) -> String {
        let ct = self.header("content-type").unwrap_or("<none>");
        let text = if ct.starts_with("text/html") {
            html::text_of(&self.body, 300)
        } else {
            truncate(&self.body, 300)
        };
        format!("HTTP {}, Content-Type {ct}, body {text}", self.status)
    }
}

/// Where [`Browser::drive`] ended.
pub enum End {
    /// A redirect that leaves the server (the client's redirect URI, anywhere off the
    /// issuer's origin, or one of the `stop_at` URLs), with its absolute `Location`.
    Left(String),
    /// A page that is neither a login nor a consent page (an error page, say).
    Page(Page),
}

/// A cookie jar and an HTTP client that never follows redirects.
pub struct Browser {
    http: reqwest::Client,
    /// The issuer, against which relative URLs are resolved.
    base: String,
    pub cookies: Jar,
}

/// The steps a [`Browser::drive`] may take before it is declared a loop.
const MAX_STEPS: usize = 12;

impl Browser {
    /// A browser for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("could not build the HTTP client: {}", error_chain(&e)))?;
        Ok(Self::with_client(http, base))
    }

    /// A browser over `http`, which must not follow redirects
    /// (`reqwest::redirect::Policy::none()`): the browser decides which ones to follow.
    pub fn with_client(http: reqwest::Client, base: &str) -> Self {
        Browser {
            http,
            base: base.trim_end_matches('/').to_owned(),
            cookies: Jar::new(),
        }
    }

    /// `reference` (a path such as `/login`, or an absolute URL) as an absolute URL.
    pub fn url(&self, reference: &str) -> String {
        resolve(&self.base, reference)
    }

    async fn request(&mut self, url: &str, req: reqwest::RequestBuilder) -> Result<Page, String> {
        let mut req = req.header("accept", "text/html");
        if let Some(cookie) = self.cookies.header(url) {
            req = req.header("cookie", cookie);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
        for sc in resp.headers().get_all("set-cookie") {
            if let Ok(sc) = sc.to_str() {
                self.cookies.store(url, sc);
            }
        }
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let body = resp.text().await.map_err(|e| {
            format!(
                "HTTP {status}, reading the body failed: {}",
                error_chain(&e)
            )
        })?;
        Ok(Page {
            status,
            location,
            headers,
            body,
        })
    }

    /// `GET url` (relative to the issuer, or absolute) with the jar's cookies.
    pub async fn get(&mut self, url: &str) -> Result<Page, String> {
        let url = self.url(url);
        let req = self.http.get(&url);
        self.request(&url, req)
            .await
            .map_err(|e| format!("GET {}: {e}", truncate(&url, 200)))
    }

    /// `POST url` with `fields` form-encoded, in order, with the jar's cookies.
    pub async fn post(&mut self, url: &str, fields: &[(String, String)]) -> Result<Page, String> {
        let url = self.url(url);
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let req = self
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&pairs));
        let names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
        self.request(&url, req)
            .await
            .map_err(|e| format!("POST {} ({}): {e}", truncate(&url, 200), names.join(", ")))
    }

    /// Submits `form`, found on the page at `page_url`, as a browser does: its hidden inputs,
    /// then `fields`, to its action (the page itself when it has none).
    pub async fn submit(
        &mut self,
        page_url: &str,
        form: &Form,
        fields: &[(&str, &str)],
    ) -> Result<Page, String> {
        if form.method != "post" {
            return Err(format!(
                "the form's method is {:?}, not post (action {:?})",
                form.method, form.action
            ));
        }
        let mut body = form.hidden.clone();
        body.extend(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let page_url = self.url(page_url);
        let target = resolve(&page_url, form.action.as_deref().unwrap_or_default());
        self.post(&target, &body).await
    }

    /// Clicks the `<button>` whose text is `text` in the first form of `page` that has one:
    /// the form's hidden inputs and the button's `name=value` are posted.
    pub async fn click(&mut self, page_url: &str, page: &Page, text: &str) -> Result<Page, String> {
        let forms = page.forms();
        let (form, button) = forms
            .iter()
            .find_map(|f| f.button(text).map(|b| (f, b)))
            .ok_or_else(|| format!("no `{text}` button on {}", page.summary()))?;
        self.press(page_url, form, button).await
    }

    /// Submits `form` of the page at `page_url` by pressing its `button`: a named button's
    /// `name=value` is posted after the form's hidden inputs.
    pub async fn press(
        &mut self,
        page_url: &str,
        form: &Form,
        button: &Button,
    ) -> Result<Page, String> {
        let pressed = [(button.name.as_str(), button.value.as_str())];
        let fields = if button.name.is_empty() {
            &[][..]
        } else {
            &pressed[..]
        };
        self.submit(page_url, form, fields).await
    }

    /// Starts at `url` and goes on like a person would: follows redirects within the issuer's
    /// origin, signs in as `username` on the login page, clicks `Approve` on a consent page,
    /// and stops at a redirect that leaves the server (or points into one of `stop_at`), or at
    /// any other page.
    pub async fn drive(
        &mut self,
        url: &str,
        username: &str,
        password: &str,
        stop_at: &[&str],
    ) -> Result<End, String> {
        let origin = origin_of(&self.base).unwrap_or_default().to_owned();
        let mut url = self.url(url);
        let mut resp = self.get(&url).await?;
        let (mut signed_in, mut approved) = (false, false);
        for _ in 0..MAX_STEPS {
            if (300..400).contains(&resp.status) {
                let loc = resp
                    .location
                    .as_deref()
                    .ok_or_else(|| format!("a redirect without Location: {}", resp.summary()))?;
                let next = resolve(&url, loc);
                let leaves = stop_at.iter().any(|s| points_to(&next, s))
                    || origin.is_empty()
                    || origin_of(&next) != Some(origin.as_str());
                if leaves {
                    return Ok(End::Left(next));
                }
                url = next;
                resp = self.get(&url).await?;
                continue;
            }
            let forms = resp.forms();
            let login = forms
                .iter()
                .find(|f| f.method == "post" && f.has_input("password"));
            if signed_in && login.is_some() {
                let why = if resp.status == 429 {
                    format!(
                        "sign-ins are rate-limited, Retry-After {}",
                        resp.header("retry-after").unwrap_or("none")
                    )
                } else {
                    "wrong credentials?".to_owned()
                };
                return Err(format!(
                    "signing in as {username:?} failed: the login page came back with HTTP {} ({why})",
                    resp.status
                ));
            }
            if resp.status != 200 {
                return Ok(End::Page(resp));
            }
            if let Some(login) = login {
                signed_in = true;
                let fields = [("username", username), ("password", password)];
                resp = self.submit(&url, login, &fields).await?;
                url = resolve(&url, login.action.as_deref().unwrap_or_default());
                continue;
            }
            let consent = forms
                .iter()
                .find_map(|f| f.button("Approve").map(|b| (f, b)));
            if let Some((consent, approve)) = consent {
                if approved {
                    return Err(format!(
                        "the consent page came back after Approve: {}",
                        resp.summary()
                    ));
                }
                approved = true;
                resp = self.press(&url, consent, approve).await?;
                url = resolve(&url, consent.action.as_deref().unwrap_or_default());
                continue;
            }
            return Ok(End::Page(resp));
        }
        Err(format!(
            "no end after {MAX_STEPS} steps (a redirect loop?); last: {}",
            resp.summary()
        ))
    }
}
