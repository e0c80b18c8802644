//! A browser driven by hand through the SPEC's web page contract: `GET /authorize`, the login
//! page's single `<form method="post">` (username, password and its hidden inputs posted back),
//! the consent page's `Approve` button, and the redirect back to the client — caught, never
//! followed. Cookies are kept in a small jar; redirects within the issuer's origin are followed
//! one by one.

use crate::http::{Captured, form, send, truncate};
use crate::{Ctx, Human, html};

/// Where a browser flow ended.
pub(crate) enum End {
    /// A redirect that leaves the server (the client's redirect URI, or anywhere off the
    /// issuer's origin), with its absolute `Location`.
    Left(String),
    /// A page that is neither a login nor a consent page (an error page, say).
    Page(Captured),
}

pub(crate) struct Browser<'c> {
    ctx: &'c Ctx<'c>,
    cookies: Vec<(String, String)>,
}

/// The steps a flow may take before it is declared a loop.
const MAX_STEPS: usize = 12;

impl<'c> Browser<'c> {
    pub fn new(ctx: &'c Ctx<'c>) -> Self {
        Browser {
            ctx,
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, resp: &Captured) {
        for sc in resp.headers.get_all("set-cookie") {
            let Ok(sc) = sc.to_str() else { continue };
            let pair = sc.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            self.cookies.retain(|(k, _)| k != name);
            let expired = sc
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if !value.is_empty() && !expired {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    async fn request(&mut self, req: reqwest::RequestBuilder) -> Result<Captured, String> {
        let mut req = req.header("accept", "text/html");
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        let resp = send(req).await?;
        self.keep_cookies(&resp);
        Ok(resp)
    }

    pub async fn get(&mut self, url: &str) -> Result<Captured, String> {
        let req = self.ctx.http.get(url);
        self.request(req)
            .await
            .map_err(|e| format!("GET {}: {e}", truncate(url, 200)))
    }

    pub async fn post(
        &mut self,
        url: &str,
        fields: &[(String, String)],
    ) -> Result<Captured, String> {
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let req = self
            .ctx
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&pairs));
        self.request(req)
            .await
            .map_err(|e| format!("POST {}: {e}", truncate(url, 200)))
    }

    /// Starts at `url` and goes on like a person would: follows redirects within the issuer's
    /// origin, signs in as `human` on the login page, clicks `Approve` on a consent page, and
    /// stops at a redirect that leaves the server (or points into one of `stop_at`), or at any
    /// other page.
    pub async fn drive(
        &mut self,
        url: &str,
        human: &Human,
        stop_at: &[&str],
    ) -> Result<End, String> {
        let origin = origin_of(&self.ctx.target.issuer)
            .unwrap_or_default()
            .to_owned();
        let mut url = url.to_owned();
        let mut resp = self.get(&url).await?;
        let mut signed_in = false;
        let mut approved = false;
        for _ in 0..MAX_STEPS {
            if (300..400).contains(&resp.status) {
                let loc = resp
                    .header("location")
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
            let forms = html::forms(&resp.body);
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
                    "signing in as {:?} failed: the login page came back with HTTP {} ({why})",
                    human.username, resp.status
                ));
            }
            if resp.status != 200 {
                return Ok(End::Page(resp));
            }
            if let Some(login) = login {
                signed_in = true;
                let mut fields = login.hidden.clone();
                fields.push(("username".to_owned(), human.username.clone()));
                fields.push(("password".to_owned(), human.password.clone()));
                let target = resolve(&url, login.action.as_deref().unwrap_or_default());
                resp = self.post(&target, &fields).await?;
                url = target;
                continue;
            }
            let consent = forms
                .iter()
                .find_map(|f| f.button("Approve").map(|b| (f, b)));
            if let Some((f, button)) = consent {
                if approved {
                    return Err(format!(
                        "the consent page came back after Approve: {}",
                        resp.summary()
                    ));
                }
                approved = true;
                let mut fields = f.hidden.clone();
                if !button.name.is_empty() {
                    fields.push((button.name.clone(), button.value.clone()));
                }
                let target = resolve(&url, f.action.as_deref().unwrap_or_default());
                resp = if f.method == "post" {
                    self.post(&target, &fields).await?
                } else {
                    return Err(format!(
                        "the consent form's method is {:?}, not post",
                        f.method
                    ));
                };
                url = target;
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

/// `scheme://authority` of an absolute URL.
pub(crate) fn origin_of(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")?;
    let after = url.get(scheme_end + 3..)?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    url.get(..scheme_end + 3 + end)
}

/// Resolves a (possibly relative) reference against an absolute base URL (RFC 3986 §5.2, the
/// common cases: absolute, network-path, absolute-path, query-only and relative-path).
pub(crate) fn resolve(base: &str, reference: &str) -> String {
    let has_scheme = reference.find(':').is_some_and(|i| {
        reference
            .get(..i)
            .is_some_and(|s| !s.is_empty() && !s.contains(['/', '?', '#']))
    });
    if has_scheme {
        return reference.to_owned();
    }
    let base_no_frag = base.split('#').next().unwrap_or(base);
    let base_path = base_no_frag.split('?').next().unwrap_or(base_no_frag);
    if reference.is_empty() {
        return base_no_frag.to_owned();
    }
    if let Some(rest) = reference.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("http");
        return format!("{scheme}://{rest}");
    }
    let origin = origin_of(base).unwrap_or_default();
    if reference.starts_with('/') {
        return format!("{origin}{reference}");
    }
    if reference.starts_with('?') {
        return format!("{base_path}{reference}");
    }
    let dir = match base_path.rfind('/') {
        Some(i) if i >= origin.len() => base_path.get(..=i).unwrap_or(base_path),
        _ => return format!("{origin}/{reference}"),
    };
    format!("{dir}{reference}")
}

/// Whether `url` is `target` itself or `target` followed by a query or fragment.
pub(crate) fn points_to(url: &str, target: &str) -> bool {
    match url.strip_prefix(target) {
        Some(rest) => rest.is_empty() || rest.starts_with('?') || rest.starts_with('#'),
        None => false,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded query parameters of a URL, in order (the fragment is ignored).
pub(crate) fn query_params(url: &str) -> Vec<(String, String)> {
    let without_frag = url.split('#').next().unwrap_or(url);
    let Some((_, query)) = without_frag.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The single value of `name` among `params`.
pub(crate) fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_references() {
        let base = "http://h:1/a/b?x=1#f";
        assert_eq!(resolve(base, "https://o/p"), "https://o/p");
        assert_eq!(resolve(base, "//o/p"), "http://o/p");
        assert_eq!(resolve(base, "/login"), "http://h:1/login");
        assert_eq!(resolve(base, "?y=2"), "http://h:1/a/b?y=2");
        assert_eq!(resolve(base, "c"), "http://h:1/a/c");
        assert_eq!(resolve("http://h:1", "c"), "http://h:1/c");
        assert_eq!(resolve(base, ""), "http://h:1/a/b?x=1");
        assert_eq!(resolve(base, "c:d/e"), "c:d/e");
        assert_eq!(resolve(base, "c/d:e"), "http://h:1/a/c/d:e");
    }

    #[test]
    fn origins_and_targets() {
        assert_eq!(origin_of("http://h:1/a?b"), Some("http://h:1"));
        assert_eq!(origin_of("http://h:1"), Some("http://h:1"));
        assert!(points_to("http://c/cb?code=1", "http://c/cb"));
        assert!(!points_to("http://c/cb2?code=1", "http://c/cb"));
    }

    #[test]
    fn parses_query() {
        let q = query_params("http://c/cb?code=a%2Bb&state=x+y&e=#frag");
        assert_eq!(param(&q, "code"), Some("a+b"));
        assert_eq!(param(&q, "state"), Some("x y"));
        assert_eq!(param(&q, "e"), Some(""));
    }
}
