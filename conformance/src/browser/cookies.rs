//! A cookie jar after RFC 6265 §5, reduced to what a test browser needs. Each cookie belongs
//! to the origin that set it (scheme, host and port): stricter than §8.5, under which cookies
//! ignore the port, so that two servers a test starts on one host never share a session. The
//! `Domain` attribute is therefore ignored (every cookie is host-only, §5.3 step 6) and so is
//! `Expires` (no date parsing; `Max-Age`, which takes precedence over it, §5.3 step 3, is what
//! deletes a cookie). `Path` (§5.1.4) and `Secure` (§5.4 step 1) are honoured.

use super::url::{origin_of, path_of};

#[derive(Clone, PartialEq, Eq)]
struct Cookie {
    origin: String,
    name: String,
    value: String,
    path: String,
    secure: bool,
}

/// The cookies a browser holds, in the order they were first set.
#[derive(Clone, Default)]
pub struct Jar {
    cookies: Vec<Cookie>,
}

/// Values are session secrets: the debug form names the cookies but never shows them.
impl std::fmt::Debug for Jar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.cookies
                    .iter()
                    .map(|c| format!("{} {}{}", c.name, c.origin, c.path)),
            )
            .finish()
    }
}

/// The default path of a cookie set by a response to `url` (RFC 6265 §5.1.4): the request
/// path up to, not including, its last `/`; `/` when that leaves nothing.
fn default_path(url: &str) -> String {
    let path = path_of(url);
    match path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => path.get(..i).unwrap_or("/").to_owned(),
    }
}

/// RFC 6265 §5.1.4 path-match.
fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    match request_path.strip_prefix(cookie_path) {
        Some(rest) => rest.is_empty() || cookie_path.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

impl Jar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in one `Set-Cookie` value received in answer to `url` (RFC 6265 §5.2, §5.3).
    /// A value without `name=` is ignored, as are responses from a URL without an origin.
    pub fn store(&mut self, url: &str, set_cookie: &str) {
        let Some(origin) = origin_of(url) else { return };
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let name = name.trim();
        if name.is_empty() {
            return;
        }
        let (mut path, mut secure, mut expired) = (None, false, false);
        for attr in parts {
            let (key, val) = attr.split_once('=').unwrap_or((attr, ""));
            let (key, val) = (key.trim(), val.trim());
            if key.eq_ignore_ascii_case("max-age") {
                // §5.2.2: a number that is zero or negative expires the cookie at once.
                if let Ok(seconds) = val.parse::<i64>() {
                    expired = seconds <= 0;
                }
            } else if key.eq_ignore_ascii_case("path") && val.starts_with('/') {
                path = Some(val.to_owned());
            } else if key.eq_ignore_ascii_case("secure") {
                secure = true;
            }
        }
        let cookie = Cookie {
            origin: origin.to_owned(),
            name: name.to_owned(),
            value: value.trim().to_owned(),
            path: path.unwrap_or_else(|| default_path(url)),
            secure,
        };
        // §5.3 step 11: the same name, origin and path replace (or, expired, delete) the old one.
        let same = |c: &Cookie| {
            c.origin == cookie.origin && c.name == cookie.name && c.path == cookie.path
        };
        match self.cookies.iter().position(same) {
            Some(i) if expired => {
                self.cookies.remove(i);
            }
            Some(i) => {
                if let Some(old) = self.cookies.get_mut(i) {
                    *old = cookie;
                }
            }
            None if expired => {}
            None => self.cookies.push(cookie),
        }
    }

    /// The `Cookie` header for a request to `url` (RFC 6265 §5.4): longer paths first, then
    /// in the order set; `None` when no cookie applies.
    pub fn header(&self, url: &str) -> Option<String> {
        let mut matching = self.matching(url);
        // A stable sort keeps the creation order among equal path lengths.
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let pairs: Vec<String> = matching
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// The value of the cookie `name` that a request to `url` would carry.
    pub fn get(&self, url: &str, name: &str) -> Option<&str> {
        let mut matching = self.matching(url);
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        matching
            .into_iter()
            .find(|c| c.name == name)
            .map(|c| c.value.as_str())
    }

    /// The names of every cookie held, for any origin.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.cookies.iter().map(|c| c.name.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }

    fn matching(&self, url: &str) -> Vec<&Cookie> {
        let origin = origin_of(url);
        let path = path_of(url);
        let https = url.starts_with("https://");
        self.cookies
            .iter()
            .filter(|c| Some(c.origin.as_str()) == origin)
            .filter(|c| path_matches(path, &c.path))
            .filter(|c| https || !c.secure)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "http://127.0.0.1:8080";

    #[test]
    fn a_cookie_goes_back_only_to_its_origin() {
        let mut jar = Jar::new();
        jar.store(
            &format!("{A}/login"),
            "sid=1; Path=/; HttpOnly; SameSite=Lax",
        );
        assert_eq!(
            jar.header(&format!("{A}/consent?x=1")).as_deref(),
            Some("sid=1")
        );
        // Another port, scheme or host of the same machine is another origin.
        for other in [
            "http://127.0.0.1:8081/consent",
            "https://127.0.0.1:8080/consent",
            "http://localhost:8080/consent",
        ] {
            assert_eq!(jar.header(other), None, "{other}");
        }
        assert_eq!(jar.get(&format!("{A}/"), "sid"), Some("1"));
        assert_eq!(jar.names().collect::<Vec<_>>(), ["sid"]);
    }

    #[test]
    fn same_name_replaces_and_max_age_zero_deletes() {
        let mut jar = Jar::new();
        jar.store(&format!("{A}/"), "sid=1; Path=/");
        jar.store(&format!("{A}/"), "csrf=a; Path=/");
        jar.store(&format!("{A}/"), "sid=2; Path=/");
        assert_eq!(
            jar.header(&format!("{A}/")).as_deref(),
            Some("sid=2; csrf=a")
        );
        jar.store(&format!("{A}/"), "sid=; Path=/; Max-Age=0");
        assert_eq!(jar.header(&format!("{A}/")).as_deref(), Some("csrf=a"));
        // The same name on another origin is another cookie.
        jar.store("http://127.0.0.1:9/", "csrf=b; Path=/");
        assert_eq!(jar.get(&format!("{A}/"), "csrf"), Some("a"));
        assert_eq!(jar.get("http://127.0.0.1:9/x", "csrf"), Some("b"));
    }

    #[test]
    fn paths_scope_cookies_rfc6265_5_1_4() {
        let mut jar = Jar::new();
        jar.store(&format!("{A}/"), "root=r; Path=/");
        jar.store(&format!("{A}/"), "app=a; Path=/app");
        // No Path: the directory of the request path.
        jar.store(&format!("{A}/docs/page?q=1"), "doc=d");
        assert_eq!(
            jar.header(&format!("{A}/app/x")).as_deref(),
            Some("app=a; root=r")
        );
        assert_eq!(jar.header(&format!("{A}/apple")).as_deref(), Some("root=r"));
        assert_eq!(
            jar.header(&format!("{A}/docs/other")).as_deref(),
            Some("doc=d; root=r")
        );
        assert_eq!(jar.header(&format!("{A}/doc")).as_deref(), Some("root=r"));
    }

    #[test]
    fn secure_cookies_stay_off_plain_http_and_junk_is_ignored() {
        let mut jar = Jar::new();
        jar.store("https://h/", "__Host-sid=1; Path=/; Secure");
        assert_eq!(jar.header("https://h/x").as_deref(), Some("__Host-sid=1"));
        assert_eq!(jar.header("http://h/x"), None);
        for junk in ["", "novalue", "=v; Path=/", "; Path=/"] {
            jar.store(&format!("{A}/"), junk);
        }
        jar.store("not a url", "a=1");
        assert_eq!(jar.header(&format!("{A}/")), None);
        assert!(format!("{jar:?}").contains("__Host-sid") && !format!("{jar:?}").contains("=1"));
    }
}
