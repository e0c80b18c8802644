//! The audiences a token, a code or a CIBA request is for (RFC 7519 §4.1.3 `aud`, RFC 8707
//! resource indicators), as one type: stored as one space-separated column, split once when a
//! row is read and joined once when it is written or shown.

use std::fmt;
use std::ops::Deref;

/// Audiences in the order they were granted. An audience never contains a space (the
/// configuration's resource identifiers are URIs or names), so the stored text round-trips.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(transparent)]
pub struct Audiences(Vec<String>);

impl Audiences {
    /// The stored column text: audiences separated by spaces (empty pieces ignored).
    pub fn from_stored(text: &str) -> Self {
        Self(
            text.split(' ')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }
}

impl From<Vec<String>> for Audiences {
    fn from(v: Vec<String>) -> Self {
        Self(v)
    }
}

impl From<Audiences> for Vec<String> {
    fn from(a: Audiences) -> Self {
        a.0
    }
}

impl Deref for Audiences {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl<S, const N: usize> PartialEq<[S; N]> for Audiences
where
    String: PartialEq<S>,
{
    fn eq(&self, other: &[S; N]) -> bool {
        self.0[..] == other[..]
    }
}

impl<S> PartialEq<Vec<S>> for Audiences
where
    String: PartialEq<S>,
{
    fn eq(&self, other: &Vec<S>) -> bool {
        self.0[..] == other[..]
    }
}

/// Space-separated: the stored text, and how the operator's pages and CLI list them.
impl fmt::Display for Audiences {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::Audiences;

    #[test]
    fn audiences_round_trip_through_their_stored_text() {
        let a = Audiences::from(vec!["orders-api".to_string(), "https://rs/x".to_string()]);
        assert_eq!(a.to_string(), "orders-api https://rs/x");
        assert_eq!(Audiences::from_stored(&a.to_string()), a);
        assert!(Audiences::from_stored("").is_empty());
        assert_eq!(*Audiences::from_stored(" a  b "), ["a", "b"]);
    }
}
