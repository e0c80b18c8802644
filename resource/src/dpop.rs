//! RFC 9449 at the resource server: a token bound to a key (`cnf.jkt`) is good only with a
//! proof by that key, made for this very request. The proof checks themselves are
//! `mandate_dpop`'s, the same the authorization server runs; this adds the request's method and
//! URL, the token's binding, and single use of each proof's `jti` in this process.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, Uri};

use crate::error::AuthError;
use crate::principal::Principal;
use crate::verifier::ConfigError;

/// How old a proof may be, in seconds (RFC 9449 §4.3 check 11), as mandate accepts them.
const MAX_AGE: i64 = 60;
/// Proofs remembered at once; past that the oldest is forgotten first.
const SEEN_CAPACITY: usize = 100_000;

/// The `Authorization` scheme a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    Dpop,
}

/// The DPoP side of a [`crate::Verifier`].
pub(crate) struct DpopCheck {
    public_url: Option<url::Url>,
    leeway: u64,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    until: HashMap<String, i64>,
    order: VecDeque<(String, i64)>,
}

impl Seen {
    /// Records `key` until `exp`; false if it is already recorded and unexpired.
    fn first_use(&mut self, key: String, exp: i64, now: i64) -> bool {
        while let Some((k, e)) = self.order.front() {
            if *e >= now && self.order.len() < SEEN_CAPACITY {
                break;
            }
            if self.until.get(k) == Some(e) {
                self.until.remove(k);
            }
            self.order.pop_front();
        }
        if self.until.get(&key).is_some_and(|e| *e >= now) {
            return false;
        }
        self.until.insert(key.clone(), exp);
        self.order.push_back((key, exp));
        true
    }
}

fn invalid_proof(why: impl Into<String>) -> AuthError {
    AuthError::InvalidDpopProof(why.into())
}

impl DpopCheck {
    pub(crate) fn new(
        public_url: Option<&str>,
        leeway: std::time::Duration,
    ) -> Result<Self, ConfigError> {
        let public_url = public_url
            .map(|u| {
                url::Url::parse(u)
                    .ok()
                    .filter(|p| matches!(p.scheme(), "http" | "https") && p.query().is_none())
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "public_url `{u}` is not an http(s) URL without a query"
                        ))
                    })
            })
            .transpose()?;
        Ok(Self {
            public_url,
            leeway: leeway.as_secs(),
            seen: Mutex::new(Seen::default()),
        })
    }

    /// The URL a proof for this request must name in `htu`.
    fn htu(&self, uri: &Uri, headers: &HeaderMap) -> Result<String, AuthError> {
        let path = uri.path();
        match &self.public_url {
            Some(base) => Ok(format!("{}{path}", base.as_str().trim_end_matches('/'))),
            None => {
                let host = headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| uri.authority().map(|a| a.as_str()))
                    .ok_or_else(|| {
                        AuthError::Misconfigured(
                            "no Host header and no public_url to check DPoP proofs against".into(),
                        )
                    })?;
                Ok(format!("http://{host}{path}"))
            }
        }
    }

    /// RFC 9449 §7: a bound token needs the `DPoP` scheme and a proof for this request by its
    /// key; an unbound token must not come as `DPoP`.
    pub(crate) fn check(
        &self,
        principal: &Principal,
        scheme: Scheme,
        token: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<(), AuthError> {
        let Some(jkt) = principal.dpop_jkt() else {
            return match scheme {
                Scheme::Bearer => Ok(()),
                Scheme::Dpop => Err(AuthError::InvalidToken(
                    "the token is not DPoP-bound: send it as Bearer".into(),
                )),
            };
        };
        if scheme == Scheme::Bearer {
            return Err(AuthError::InvalidToken(
                "the token is DPoP-bound: send it as `Authorization: DPoP` with a DPoP proof (RFC 9449 §7.1)".into(),
            ));
        }
        let mut proofs = headers.get_all("dpop").iter();
        let proof = match (proofs.next(), proofs.next()) {
            (Some(p), None) => p
                .to_str()
                .map_err(|_| invalid_proof("the DPoP header is not a JWS"))?,
            (None, _) => {
                return Err(invalid_proof(
                    "a DPoP-bound token needs a DPoP proof (RFC 9449 §7.1)",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(invalid_proof(
                    "send exactly one DPoP header (RFC 9449 §4.3)",
                ));
            }
        };
        let htu = self.htu(uri, headers)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let target = mandate_dpop::Target {
            htm: method.as_str(),
            htu: &htu,
            access_token: Some(token),
        };
        let max_age = MAX_AGE + self.leeway.min(60) as i64;
        let p = mandate_dpop::check_proof(proof, &target, now, max_age)
            .map_err(|r| invalid_proof(r.to_string()))?;
        if p.jkt != jkt {
            return Err(AuthError::InvalidToken(
                "the DPoP proof is signed by another key than the token is bound to (RFC 9449 §7.1)".into(),
            ));
        }
        let fresh = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_use(
                format!("{}\n{}", p.jkt, p.jti),
                p.iat.max(now) + max_age + mandate_dpop::IAT_LEEWAY,
                now,
            );
        if !fresh {
            return Err(invalid_proof(
                "the DPoP proof was already used (RFC 9449 §11.1)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9449_s11_1_the_replay_cache_is_bounded_and_forgets_expired_proofs() {
        let mut s = Seen::default();
        assert!(s.first_use("a".into(), 100, 0));
        assert!(
            !s.first_use("a".into(), 100, 50),
            "replayed within its window"
        );
        assert!(s.first_use("a".into(), 300, 101), "expired, so forgotten");
        for i in 0..SEEN_CAPACITY + 10 {
            s.first_use(format!("k{i}"), 1_000, 200);
        }
        assert!(s.order.len() <= SEEN_CAPACITY && s.until.len() <= SEEN_CAPACITY);
    }
}
