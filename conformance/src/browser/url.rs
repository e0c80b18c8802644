//! The few URL operations a browser needs: the origin of a URL (RFC 6454 §4, for absolute
//! `http(s)` URLs), resolving a reference against a base (RFC 3986 §5.2) and reading a query
//! (the `application/x-www-form-urlencoded` parser of the WHATWG URL standard §5.1).

/// `scheme://authority` of an absolute URL.
pub fn origin_of(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")?;
    let after = url.get(scheme_end + 3..)?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    url.get(..scheme_end + 3 + end)
}

/// The path of an absolute URL (`/` when it has none), without query or fragment.
pub fn path_of(url: &str) -> &str {
    let origin_len = origin_of(url).map_or(0, str::len);
    let rest = url.get(origin_len..).unwrap_or_default();
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    match rest.get(..end) {
        Some(p) if p.starts_with('/') => p,
        _ => "/",
    }
}

/// Resolves a (possibly relative) reference against an absolute base URL (RFC 3986 §5.2, the
/// common cases: absolute, network-path, absolute-path, query-only and relative-path).
pub fn resolve(base: &str, reference: &str) -> String {
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
pub fn points_to(url: &str, target: &str) -> bool {
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
pub fn query_params(url: &str) -> Vec<(String, String)> {
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

/// The first value of `name` among `params`.
pub fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
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
    fn origins_paths_and_targets() {
        assert_eq!(origin_of("http://h:1/a?b"), Some("http://h:1"));
        assert_eq!(origin_of("http://h:1"), Some("http://h:1"));
        assert_eq!(origin_of("/relative"), None);
        assert_eq!(path_of("http://h:1/a/b?c#d"), "/a/b");
        assert_eq!(path_of("http://h:1?c"), "/");
        assert!(points_to("http://c/cb?code=1", "http://c/cb"));
        assert!(!points_to("http://c/cb2?code=1", "http://c/cb"));
    }

    #[test]
    fn parses_query() {
        let q = query_params("http://c/cb?code=a%2Bb&state=x+y&e=&code=2#frag");
        assert_eq!(param(&q, "code"), Some("a+b"));
        assert_eq!(param(&q, "state"), Some("x y"));
        assert_eq!(param(&q, "e"), Some(""));
        assert_eq!(q.len(), 4);
    }
}
