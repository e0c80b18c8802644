//! Form parameters of a request, with the RFC 6749 §3.1/§3.2 rules: a parameter sent without a
//! value is treated as omitted, and a parameter may not be repeated unless it is multi-valued.

use super::error::OAuthError;

#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body)
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A form body or query string a client sent: like [`Params::parse`], but a name or value
    /// that is not UTF-8 once decoded, or holds NUL or a control character, is refused
    /// ([`crate::input::form`]) instead of being passed on.
    pub fn parse_untrusted(body: &[u8]) -> Result<Self, crate::input::InputError> {
        Ok(Self(
            crate::input::form(body)?
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        ))
    }

    /// A single-valued parameter; repeating it is `invalid_request` (RFC 6749 §3.2).
    pub fn one(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{name}` is repeated; it may appear once (RFC 6749 §3.2)"
            )));
        }
        Ok(first)
    }

    /// A parameter that must be present.
    pub fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.one(name)?
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter `{name}` is missing")))
    }

    /// A multi-valued parameter (`audience` in RFC 8693 §2.1, `resource` in RFC 8707 §2).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6749_s3_1_empty_values_count_as_omitted() {
        let p = Params::parse(b"scope=&grant_type=x");
        assert_eq!(p.one("scope").unwrap(), None);
        assert_eq!(p.one("grant_type").unwrap(), Some("x"));
    }

    #[test]
    fn rfc6749_s3_2_repeated_parameters_are_refused() {
        let p = Params::parse(b"grant_type=a&grant_type=b&audience=x&audience=y");
        assert_eq!(
            p.one("grant_type").unwrap_err().code,
            super::super::error::ErrorCode::InvalidRequest
        );
        assert_eq!(p.all("audience"), vec!["x", "y"]);
    }
}
