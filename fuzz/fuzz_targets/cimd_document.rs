//! Client ID Metadata Documents (`cimd`): the first line is a `client_id`, checked by
//! `cimd::url::parse` (the draft's URL rules, hand-written) and by the domain-list syntax; the
//! rest is a fetched document, checked by `cimd::document::validate` against that URL, and also
//! read as caching headers by `cimd::cache::lifetime`.
//! Invariants: an accepted URL is `https://`, without fragment, query or userinfo, at most 256
//! bytes, with a path other than `/`, and parses again to the same parts; an accepted document
//! names exactly that URL, has 1 to 20 redirect URIs without fragments (each of which it then
//! allows), the authorization code grant, and a bounded name; a lifetime is within its bounds.
#![no_main]
use mandate::cimd::cache::{Bounds, Headers, lifetime};
use mandate::cimd::{GrantType, document, domains, url};

const BOUNDS: Bounds = Bounds {
    min: 60,
    max: 86_400,
    default: 300,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (id, rest) = text.split_once('\n').unwrap_or((text, ""));
    let _ = domains::Pattern::parse(id);
    let mut lines = rest.lines();
    let headers = Headers {
        cache_control: lines.next().map(str::to_string),
        expires: lines.next().map(str::to_string),
        date: lines.next().map(str::to_string),
        age: lines.next().map(str::to_string),
    };
    let secs = lifetime(&headers, 1_790_000_000, BOUNDS);
    assert!((BOUNDS.min..=BOUNDS.max).contains(&secs), "lifetime {secs}");
    let Ok(u) = url::parse(id) else {
        return;
    };
    assert_eq!(u.as_str(), id);
    assert!(id.starts_with("https://") && id.len() <= 256);
    assert!(!id.contains(['#', '?']));
    assert!(!u.authority().contains('@'));
    assert!(u.path().starts_with('/') && u.path().len() > 1);
    assert_eq!(url::parse(u.as_str()).as_ref(), Ok(&u));
    let Ok(m) = document::validate(&u, rest.as_bytes(), false) else {
        return;
    };
    assert_eq!(m.client_id, id);
    assert!((1..=document::MAX_REDIRECT_URIS).contains(&m.redirect_uris.len()));
    for r in &m.redirect_uris {
        assert!(!r.contains('#'), "a redirect URI with a fragment");
        assert!(m.allows_redirect_uri(r));
    }
    assert!(m.grant_types.contains(&GrantType::AuthorizationCode));
    if let Some(n) = &m.client_name {
        assert!(n.chars().count() <= document::MAX_NAME_CHARS);
        assert!(!n.chars().any(char::is_control));
    }
});
