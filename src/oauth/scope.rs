//! Scopes (RFC 6749 §3.3): built only by parsing, kept sorted and deduplicated.

use std::collections::BTreeSet;

use super::error::OAuthError;

/// OpenID Connect Core §3.1.2.1: asks for an ID Token beside the access token. It names who the
/// human is, not something they may do, so every human may grant it to a client that lists it.
pub const OPENID: &str = "openid";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeSet(BTreeSet<String>);

impl ScopeSet {
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        let mut set = BTreeSet::new();
        for t in s.split(' ') {
            if !crate::input::is_scope_token(t) {
                return Err(OAuthError::invalid_scope(
                    "scope must be scope tokens separated by single spaces (RFC 6749 §3.3)",
                ));
            }
            set.insert(t.to_string());
        }
        Ok(Self(set))
    }

    pub fn from_list<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Self {
        Self(items.into_iter().map(Into::into).collect())
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The members of `self` not in `other`.
    pub fn excess<'a>(&'a self, other: &'a ScopeSet) -> Vec<&'a str> {
        self.0.difference(&other.0).map(String::as_str).collect()
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl std::fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v: Vec<&str> = self.iter().collect();
        f.write_str(&v.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6749_s3_3_scope_syntax() {
        assert_eq!(ScopeSet::parse("b a a").unwrap().to_string(), "a b");
        for bad in ["a  b", " a", "a\"b", "a\\b", "ä"] {
            assert!(ScopeSet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn excess_names_what_is_not_allowed() {
        let asked = ScopeSet::parse("a b c").unwrap();
        let allowed = ScopeSet::parse("a").unwrap();
        assert_eq!(asked.excess(&allowed), vec!["b", "c"]);
        assert!(!asked.is_subset(&allowed));
    }
}
