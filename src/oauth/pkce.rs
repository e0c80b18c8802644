//! Proof Key for Code Exchange (RFC 7636), S256 only. `plain` is refused: it protects nothing
//! against an attacker who can read the authorization request (RFC 9700 §2.1.1).

use subtle::ConstantTimeEq;

use crate::crypto::{b64url, sha256};

/// The only `code_challenge_method` accepted (RFC 7636 §4.3).
pub const S256: &str = "S256";

/// An S256 `code_challenge`: BASE64URL(SHA256(verifier)) without padding, so exactly 43
/// characters of the base64url alphabet (RFC 7636 §4.2). Built only by parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

/// Why a challenge was refused; each maps to `invalid_request` with this text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error(
        "code_challenge is required: this server requires PKCE with S256 (RFC 7636 section 4.4.1)"
    )]
    Missing,
    #[error("code_challenge_method is required and must be S256 (RFC 7636 section 4.3)")]
    MethodMissing,
    #[error("code_challenge_method `plain` is not allowed; use S256 (RFC 7636 section 4.2)")]
    Plain,
    #[error("code_challenge_method must be S256 (RFC 7636 section 4.3)")]
    UnknownMethod,
    #[error(
        "code_challenge must be 43 base64url characters: BASE64URL(SHA256(code_verifier)) (RFC 7636 section 4.2)"
    )]
    Malformed,
}

impl CodeChallenge {
    /// Parses `code_challenge` and `code_challenge_method` of an authorization request.
    pub fn parse(challenge: Option<&str>, method: Option<&str>) -> Result<Self, ChallengeError> {
        let challenge = challenge.ok_or(ChallengeError::Missing)?;
        match method {
            None => return Err(ChallengeError::MethodMissing),
            Some("plain") => return Err(ChallengeError::Plain),
            Some(S256) => {}
            Some(_) => return Err(ChallengeError::UnknownMethod),
        }
        if challenge.len() != 43 || !challenge.bytes().all(is_b64url) {
            return Err(ChallengeError::Malformed);
        }
        Ok(Self(challenge.to_string()))
    }

    /// A challenge read back from storage, where only parsed challenges were written.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// RFC 7636 §4.6: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge, compared in
    /// constant time. A verifier outside the §4.1 syntax never matches.
    pub fn verify(&self, verifier: &str) -> bool {
        if !verifier_syntax_ok(verifier) {
            return false;
        }
        let computed = b64url(&sha256(verifier.as_bytes()));
        computed.as_bytes().ct_eq(self.0.as_bytes()).into()
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// RFC 7636 §4.1: `code-verifier = 43*128unreserved`, `unreserved = ALPHA / DIGIT / "-" / "." /
/// "_" / "~"`.
pub fn verifier_syntax_ok(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_s256_example() {
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).unwrap();
        assert!(c.verify(VERIFIER));
    }

    #[test]
    fn rfc7636_s4_6_wrong_verifier_does_not_match() {
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).unwrap();
        let mut wrong = VERIFIER.to_string();
        wrong.replace_range(0..1, "e");
        assert!(!c.verify(&wrong));
        assert!(
            !c.verify(CHALLENGE),
            "the challenge itself is not a verifier"
        );
    }

    #[test]
    fn rfc7636_s4_1_verifier_syntax() {
        assert!(verifier_syntax_ok(&"a".repeat(43)));
        assert!(verifier_syntax_ok(&"~._-".repeat(32)));
        assert!(!verifier_syntax_ok(&"a".repeat(42)), "too short");
        assert!(!verifier_syntax_ok(&"a".repeat(129)), "too long");
        assert!(
            !verifier_syntax_ok(&format!("{}+", "a".repeat(42))),
            "not unreserved"
        );
        assert!(!verifier_syntax_ok(&format!("{}é", "a".repeat(42))));
    }

    #[test]
    fn rfc7636_s4_3_only_s256_is_accepted() {
        assert_eq!(
            CodeChallenge::parse(Some(CHALLENGE), Some("plain")),
            Err(ChallengeError::Plain)
        );
        assert_eq!(
            CodeChallenge::parse(Some(CHALLENGE), None),
            Err(ChallengeError::MethodMissing)
        );
        assert_eq!(
            CodeChallenge::parse(Some(CHALLENGE), Some("s256")),
            Err(ChallengeError::UnknownMethod)
        );
        assert_eq!(
            CodeChallenge::parse(None, Some("S256")),
            Err(ChallengeError::Missing)
        );
    }

    #[test]
    fn rfc7636_s4_2_challenge_must_be_a_sha256_in_base64url() {
        for bad in [
            &CHALLENGE[..42],
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",
            "",
        ] {
            assert_eq!(
                CodeChallenge::parse(Some(bad), Some("S256")),
                Err(ChallengeError::Malformed),
                "{bad}"
            );
        }
    }
}
