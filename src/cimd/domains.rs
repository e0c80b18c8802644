//! The operator's domain lists (draft-03 "Client ID Domain Trust"; MCP 2026-07-28 "Trust
//! Policies"): `cimd.allowed_domains` and `cimd.blocked_domains`. An entry is a host exactly
//! (`app.example.com`, `192.0.2.7`) or every subdomain of a name (`*.example.com`, which does not
//! match `example.com` itself). A blocked host is refused even when it is also allowed; with an
//! allow-list, a host on neither list is refused.

/// One entry of a domain list, as validated by [`Pattern::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    /// `*.example.com`, kept as `.example.com`.
    Subdomains(String),
}

impl Pattern {
    /// A lowercase host name or IP address, optionally behind `*.` (the syntax
    /// [`crate::config::domain_pattern`] checks at start); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let (wild, name) = crate::config::domain_pattern(s)?;
        Some(if wild {
            Self::Subdomains(format!(".{name}"))
        } else {
            Self::Exact(name.to_string())
        })
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => host == h,
            Self::Subdomains(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }
}

/// What the lists say about a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// On the allow-list (and not blocked): a client the operator knows.
    Listed,
    /// No allow-list, not blocked: any host that passes the address checks.
    Unlisted,
    Blocked,
    NotAllowed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainPolicy {
    allowed: Vec<Pattern>,
    blocked: Vec<Pattern>,
}

impl DomainPolicy {
    /// From the config's lists; the first entry that is not a pattern is returned as the error.
    pub fn new(allowed: &[String], blocked: &[String]) -> Result<Self, String> {
        let parse = |list: &[String]| -> Result<Vec<Pattern>, String> {
            list.iter()
                .map(|s| Pattern::parse(s).ok_or_else(|| s.clone()))
                .collect()
        };
        Ok(Self {
            allowed: parse(allowed)?,
            blocked: parse(blocked)?,
        })
    }

    /// `host` as [`super::ClientIdUrl::host_str`] gives it (lowercase, IPv6 without brackets).
    pub fn verdict(&self, host: &str) -> Verdict {
        if self.blocked.iter().any(|p| p.matches(host)) {
            Verdict::Blocked
        } else if self.allowed.iter().any(|p| p.matches(host)) {
            Verdict::Listed
        } else if self.allowed.is_empty() {
            Verdict::Unlisted
        } else {
            Verdict::NotAllowed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn entries_are_exact_hosts_or_subdomain_wildcards() {
        let p = Pattern::parse("*.example.com").unwrap();
        assert!(p.matches("app.example.com"));
        assert!(p.matches("a.b.example.com"));
        assert!(
            !p.matches("example.com"),
            "the wildcard is for subdomains only"
        );
        assert!(!p.matches("badexample.com"));
        assert!(!p.matches("example.com.evil.net"));
        let e = Pattern::parse("app.example.com").unwrap();
        assert!(e.matches("app.example.com"));
        assert!(!e.matches("x.app.example.com"));
        assert!(Pattern::parse("::1").unwrap().matches("::1"));
        for bad in [
            "",
            "*",
            "*.",
            "Example.com",
            "example.com.",
            "a.*.com",
            "*example.com",
            "example.com:443",
            "https://example.com",
            "a..b",
        ] {
            assert_eq!(Pattern::parse(bad), None, "{bad:?}");
        }
    }

    /// MCP 2026-07-28 "Trust Policies": the operator decides; a block wins over an allow.
    #[test]
    fn block_wins_and_an_allow_list_refuses_the_rest() {
        let open = DomainPolicy::new(&[], &list(&["evil.example"])).unwrap();
        assert_eq!(open.verdict("app.example.com"), Verdict::Unlisted);
        assert_eq!(open.verdict("evil.example"), Verdict::Blocked);
        let closed = DomainPolicy::new(
            &list(&["*.example.com", "tool.example.org"]),
            &list(&["bad.example.com"]),
        )
        .unwrap();
        assert_eq!(closed.verdict("app.example.com"), Verdict::Listed);
        assert_eq!(closed.verdict("tool.example.org"), Verdict::Listed);
        assert_eq!(closed.verdict("bad.example.com"), Verdict::Blocked);
        assert_eq!(closed.verdict("other.example.net"), Verdict::NotAllowed);
        assert_eq!(closed.verdict("example.com"), Verdict::NotAllowed);
        assert_eq!(
            DomainPolicy::new(&list(&["ok.example", "Bad.Example"]), &[]),
            Err("Bad.Example".to_string())
        );
    }
}
