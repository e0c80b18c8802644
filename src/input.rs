//! Untrusted text: the one check that every string a client sends passes before it goes
//! anywhere (SQL text columns, pages, logs, the audit log).
//!
//! - [`text`]: any value — valid UTF-8 without NUL (PostgreSQL refuses NUL in `text`, SQLite
//!   stores it, so the two backends would disagree) and without control characters other than
//!   tab and line breaks.
//! - [`identifier`]: a name or id (client id, agent name, session id, nonce): 1 to
//!   [`MAX_IDENTIFIER_BYTES`] bytes, no control characters at all, so a refused request cannot
//!   put a long or terminal-garbling string into a log line or an audit entry.
//! - [`form`]: an `application/x-www-form-urlencoded` body or a query string, every name and
//!   value decoded strictly (UTF-8 after percent-decoding) and checked with [`text`].
//!
//! Errors name the field (a name a client sent is quoted only if it is short and plain) and are
//! safe to show: they never echo the value.

use std::fmt;

/// The longest identifier accepted (client ids, agent names, session ids, nonces).
pub const MAX_IDENTIFIER_BYTES: usize = 256;

/// Which field a refusal is about, phrased for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field(String);

impl Field {
    /// A field with a fixed name of ours (`"the agent name"`).
    pub fn named(what: &str) -> Self {
        Self(what.to_string())
    }

    /// A request parameter whose name the client sent: quoted when it is short and plain,
    /// described otherwise (it may itself be the problem).
    pub fn param(name: &str) -> Self {
        let plain = !name.is_empty()
            && name.len() <= 40
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:[]".contains(&b));
        if plain {
            Self(format!("parameter `{name}`"))
        } else {
            Self("a parameter".to_string())
        }
    }

    /// A member of a JSON document, named as [`Field::param`] names a parameter.
    pub fn json(name: &str) -> Self {
        let Self(p) = Self::param(name);
        Self(p.replacen("parameter", "JSON member", 1))
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an untrusted string was refused; the text is safe to send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{0} is not valid UTF-8 once percent-decoded")]
    NotUtf8(Field),
    #[error("{0} contains a NUL character")]
    Nul(Field),
    #[error("{0} contains a control character")]
    Control(Field),
    #[error("{0} is empty")]
    Empty(Field),
    #[error("{0} is longer than {1} bytes")]
    TooLong(Field, usize),
}

/// Any untrusted value: no NUL, no control characters besides tab, CR and LF.
pub fn text(field: impl FnOnce() -> Field, s: &str) -> Result<&str, InputError> {
    if s.contains('\0') {
        return Err(InputError::Nul(field()));
    }
    if s.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(InputError::Control(field()));
    }
    Ok(s)
}

/// A name or id: 1 to [`MAX_IDENTIFIER_BYTES`] bytes, no control characters.
pub fn identifier(field: impl FnOnce() -> Field, s: &str) -> Result<&str, InputError> {
    if s.is_empty() {
        return Err(InputError::Empty(field()));
    }
    if s.len() > MAX_IDENTIFIER_BYTES {
        return Err(InputError::TooLong(field(), MAX_IDENTIFIER_BYTES));
    }
    if s.contains('\0') {
        return Err(InputError::Nul(field()));
    }
    if s.chars().any(char::is_control) {
        return Err(InputError::Control(field()));
    }
    Ok(s)
}

/// Decodes an `application/x-www-form-urlencoded` body or query string (WHATWG URL §5.1: `&`
/// separates pairs, the first `=` splits one, `+` is a space, a `%` not followed by two hex
/// digits stays as it is) and checks every name and value with [`text`]. Unlike a lenient
/// parser, bytes that are not UTF-8 once decoded are refused rather than replaced.
pub fn form(body: &[u8]) -> Result<Vec<(String, String)>, InputError> {
    let mut pairs = Vec::new();
    for piece in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match piece.iter().position(|b| *b == b'=') {
            Some(i) => (piece.get(..i).unwrap_or_default(), piece.get(i + 1..)),
            None => (piece, None),
        };
        let name =
            decode(name).ok_or_else(|| InputError::NotUtf8(Field::named("a parameter name")))?;
        text(|| Field::named("a parameter name"), &name)?;
        let value = decode(value.unwrap_or_default())
            .ok_or_else(|| InputError::NotUtf8(Field::param(&name)))?;
        text(|| Field::param(&name), &value)?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// `+` to space, then percent-decoding; `None` if the result is not UTF-8.
fn decode(raw: &[u8]) -> Option<String> {
    let plus: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus).collect();
    String::from_utf8(bytes).ok()
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Whether two resource URIs name the same resource (RFC 8707 §2): the same string, or the
/// same [`canonical_resource`] form. A URI without one matches only itself.
pub fn same_resource(a: &str, b: &str) -> bool {
    a == b || canonical_resource(a).is_some_and(|c| canonical_resource(b) == Some(c))
}

/// Zero-width and bidirectional formatting characters (Unicode format characters that change
/// how the text around them is shown: `Evil\u{202e}gnp.exe` reads as `Evilexe.png`). A name a
/// client chose for itself (registered, or in its metadata document) may hold none of them.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// The origin of an `http` or `https` URI as a browser serializes it in an `Origin` header (RFC
/// 6454 §6.2): `scheme://host[:port]`, scheme and host lowercased, the scheme's default port
/// left out. `None` for any other scheme, for userinfo, or for an empty or malformed authority.
pub fn origin_of(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']')?;
            let ok = !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
            (ok.then(|| format!("[{addr}]"))?, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        },
    };
    let host = host.to_ascii_lowercase();
    let host_ok = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok {
        return None;
    }
    match port {
        None => Some(format!("{scheme}://{host}")),
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5 => None,
        Some(p) if p == default_port => Some(format!("{scheme}://{host}")),
        Some(p) => Some(format!("{scheme}://{host}:{p}")),
    }
}

/// The form in which two resource URIs (RFC 8707 §2) are compared: the origin as
/// [`origin_of`] serializes it (scheme and host case-insensitive, default port left out, as the
/// MCP authorization spec's canonical server URI asks) followed by the path and query exactly
/// as written, a lone `/` path counting as none. `None` for a URI with a fragment (RFC 8707 §2
/// forbids it), for a scheme other than http(s), or for a malformed authority.
pub fn canonical_resource(uri: &str) -> Option<String> {
    if uri.contains('#') {
        return None;
    }
    let origin = origin_of(uri)?;
    let (_, rest) = uri.split_once("://")?;
    let tail = rest
        .find(['/', '?'])
        .map_or("", |i| rest.get(i..).unwrap_or(""));
    let tail = match tail.strip_prefix('/') {
        Some(after) if after.is_empty() || after.starts_with('?') => after,
        _ => tail,
    };
    Some(format!("{origin}{tail}"))
}

/// Whether `s` is exactly an origin as a browser sends it (RFC 6454 §7): no path, no trailing
/// slash, lowercase, no default port.
pub fn is_origin(s: &str) -> bool {
    origin_of(s).is_some_and(|o| o == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f() -> Field {
        Field::named("x")
    }

    #[test]
    fn text_refuses_nul_and_control_characters_but_keeps_line_breaks() {
        assert!(text(f, "héllo wörld\tand\r\nmore").is_ok());
        assert!(matches!(text(f, "a\0b"), Err(InputError::Nul(_))));
        assert!(matches!(text(f, "a\u{1b}[2J"), Err(InputError::Control(_))));
        assert!(matches!(text(f, "a\u{85}"), Err(InputError::Control(_))));
    }

    #[test]
    fn identifiers_are_bounded_and_have_no_control_characters() {
        assert!(identifier(f, "build-bot").is_ok());
        assert!(identifier(f, "my client").is_ok());
        assert!(identifier(f, &"a".repeat(MAX_IDENTIFIER_BYTES)).is_ok());
        assert!(matches!(identifier(f, ""), Err(InputError::Empty(_))));
        assert!(matches!(
            identifier(f, &"a".repeat(MAX_IDENTIFIER_BYTES + 1)),
            Err(InputError::TooLong(..))
        ));
        assert!(matches!(identifier(f, "a\0b"), Err(InputError::Nul(_))));
        assert!(matches!(identifier(f, "a\nb"), Err(InputError::Control(_))));
    }

    #[test]
    fn form_decodes_like_whatwg_and_refuses_nul_and_bad_utf8() {
        let p = form(b"a=1&b=x+y%21&&c&d=%ZZ&e=%C3%A9&=v").unwrap();
        assert_eq!(
            p,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y!".into()),
                ("c".into(), "".into()),
                ("d".into(), "%ZZ".into()),
                ("e".into(), "é".into()),
                ("".into(), "v".into()),
            ]
        );
        assert_eq!(
            form(b"client_id=a%00b").unwrap_err().to_string(),
            "parameter `client_id` contains a NUL character"
        );
        assert_eq!(
            form(b"scope=%C3%28").unwrap_err().to_string(),
            "parameter `scope` is not valid UTF-8 once percent-decoded"
        );
        assert_eq!(
            form(b"%00=1").unwrap_err().to_string(),
            "a parameter name contains a NUL character"
        );
        // A name that is itself odd is not echoed.
        assert_eq!(
            form(b"%3Cscript%3E=%01").unwrap_err().to_string(),
            "a parameter contains a control character"
        );
    }

    #[test]
    fn form_agrees_with_form_urlencoded_on_valid_input() {
        let body = b"grant_type=client_credentials&scope=orders%3Aread+orders%3Awrite&x=%E2%82%AC";
        let ours = form(body).unwrap();
        let theirs: Vec<(String, String)> = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(ours, theirs);
    }

    /// RFC 6454 §6.2: what a browser puts in `Origin` for a page at that URI.
    #[test]
    fn rfc6454_origin_of_a_uri_is_scheme_host_and_non_default_port() {
        for (uri, origin) in [
            ("https://App.Example/cb?x=1", Some("https://app.example")),
            ("https://app.example:443/cb", Some("https://app.example")),
            (
                "http://127.0.0.1:6274/oauth/callback",
                Some("http://127.0.0.1:6274"),
            ),
            ("http://[::1]:8080", Some("http://[::1]:8080")),
            ("HTTP://localhost:80/", Some("http://localhost")),
            ("com.example.app:/cb", None),
            ("ftp://host/x", None),
            ("https://user@host/", None),
            ("https://host:99999999/", None),
            ("https://:443/", None),
            ("https://ho st/", None),
        ] {
            assert_eq!(origin_of(uri).as_deref(), origin, "{uri}");
        }
        assert!(is_origin("https://app.example"));
        assert!(is_origin("http://127.0.0.1:6274"));
        for not in [
            "*",
            "null",
            "https://app.example/",
            "https://APP.example",
            "https://a.example:443",
        ] {
            assert!(!is_origin(not), "{not}");
        }
    }

    /// RFC 8707 §2 with the MCP authorization spec's canonical URI: scheme and host compare
    /// without case, the default port is the same as none, a lone `/` path the same as none;
    /// the path itself stays case-sensitive, and a fragment makes no resource at all.
    #[test]
    fn rfc8707_s2_resources_compare_by_canonical_form() {
        let same = [
            ("https://MCP.Example.com/mcp", "https://mcp.example.com/mcp"),
            (
                "HTTPS://mcp.example.com:443/mcp",
                "https://mcp.example.com/mcp",
            ),
            ("https://mcp.example.com/", "https://mcp.example.com"),
            (
                "http://127.0.0.1:8080/mcp?x=1",
                "http://127.0.0.1:8080/mcp?x=1",
            ),
            ("https://a.example/?q", "https://a.example?q"),
        ];
        for (a, b) in same {
            assert_eq!(canonical_resource(a), canonical_resource(b), "{a} vs {b}");
            assert!(canonical_resource(a).is_some(), "{a}");
        }
        let differ = [
            ("https://mcp.example.com/MCP", "https://mcp.example.com/mcp"),
            (
                "https://mcp.example.com/mcp/",
                "https://mcp.example.com/mcp",
            ),
            ("http://mcp.example.com/mcp", "https://mcp.example.com/mcp"),
            (
                "https://mcp.example.com:8443/mcp",
                "https://mcp.example.com/mcp",
            ),
        ];
        for (a, b) in differ {
            assert_ne!(canonical_resource(a), canonical_resource(b), "{a} vs {b}");
        }
        for none in [
            "https://a.example/mcp#x",
            "urn:x:y",
            "ftp://a.example/",
            "https://u@a/",
        ] {
            assert_eq!(canonical_resource(none), None, "{none}");
        }
    }
}
