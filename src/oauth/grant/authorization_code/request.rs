//! The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3), parsed before anything is shown
//! to the human. Its errors come in two kinds (RFC 6749 §4.1.2.1): while the client or the
//! redirect URI cannot be trusted, the error is shown to the human and the browser is never
//! sent anywhere; after that, errors go back to the client's redirect URI.

use std::borrow::Cow;
use std::sync::Arc;

use crate::oauth::client::{Client, Clients, LookupError};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::params::Params;
use crate::oauth::pkce::{CodeChallenge, S256};
use crate::oauth::request::AUTHORIZATION_CODE;
use crate::oauth::scope::{OPENID, ScopeSet};
use crate::oauth::user::User;

/// Why an authorization request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The client or redirect URI is missing, unknown or unregistered: tell the human only.
    Fatal(Cow<'static, str>),
    /// The client could not be looked up (the database did not answer): a server error,
    /// whose reason is logged and never shown.
    Unavailable(String),
    /// Everything else: redirect back with `error`, `error_description` and `state`.
    Redirect(Box<RedirectTarget>, OAuthError),
}

/// Where responses to a validated request go (RFC 6749 §4.1.2), with `state` echoed and the
/// RFC 9207 `iss` parameter so the client can tell which server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectTarget {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub iss: String,
    /// The client's redirect URIs are its own word, not the operator's (it registered itself,
    /// or its metadata document's host is not on the allow-list): an error is not sent there
    /// without a human choosing to go (RFC 9700 §4.11.2, open redirectors).
    pub unvouched: bool,
}

impl RedirectTarget {
    fn with(&self, pairs: &[(&str, &str)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        if let Some(s) = &self.state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", &self.iss);
        // RFC 6749 §3.1.2: a query component of the registered URI is kept.
        let sep = if self.redirect_uri.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{}", self.redirect_uri, q.finish())
    }

    /// RFC 6749 §4.1.2: the successful response.
    pub fn with_code(&self, code: &str) -> String {
        self.with(&[("code", code)])
    }

    /// RFC 6749 §4.1.2.1: the error response (its `error_description` limited as in §5.2).
    pub fn with_error(&self, e: &OAuthError) -> String {
        self.with(&[
            ("error", e.code.as_str()),
            ("error_description", &e.wire_description()),
        ])
    }
}

/// The longest `nonce` kept (OpenID Connect sets no limit; a code row must have one).
const MAX_NONCE: usize = 512;

/// A validated authorization request. Before sign-in the user is unknown, so the scope is
/// checked against the client here and against the user in [`AuthorizeRequest::scope_for`].
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub client: Arc<Client>,
    pub redirect_uri: String,
    pub state: Option<String>,
    /// As asked; `None` means "the default" (RFC 6749 §3.3).
    pub scope: Option<ScopeSet>,
    pub challenge: CodeChallenge,
    /// `audience` / `resource` as asked (RFC 8707 §2).
    pub targets: Vec<String>,
    /// The resource servers the tokens will be for.
    pub aud: Vec<String>,
    /// OpenID Connect Core §3.1.2.1: echoed in the ID Token.
    pub nonce: Option<String>,
}

impl AuthorizeRequest {
    /// Parses and checks `p` against the registered `clients`; `issuer` answers in every
    /// redirect (RFC 9207).
    pub async fn parse(clients: &Clients, issuer: &str, p: &Params) -> Result<Self, Rejection> {
        let fatal = |m: &'static str| Rejection::Fatal(Cow::Borrowed(m));
        let client_id = p
            .one("client_id")
            .map_err(|_| fatal("The request names client_id more than once."))?
            .ok_or_else(|| {
                fatal(
                    "The request does not say which application is asking (client_id is missing).",
                )
            })?;
        let client = match clients.find(client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(fatal(
                    "The application that sent you here is not registered with this server.",
                ));
            }
            Err(LookupError::Refused(why)) => return Err(Rejection::Fatal(why)),
            Err(LookupError::Store(e)) => return Err(Rejection::Unavailable(e.to_string())),
        };
        let redirect_uri = p
            .one("redirect_uri")
            .map_err(|_| fatal("The request names redirect_uri more than once."))?
            .ok_or_else(|| {
                fatal("The request does not say where to return to (redirect_uri is missing).")
            })?;
        // RFC 6749 §3.1.2.3 and RFC 9700 §2.1: exact string comparison, no patterns (but a
        // native client's loopback port, RFC 8252 §7.3).
        if !client.redirect_uri_matches(redirect_uri) {
            return Err(fatal(
                "The address this application asked to return to is not registered for it, so you were not sent there.",
            ));
        }
        let mut target = RedirectTarget {
            redirect_uri: redirect_uri.to_string(),
            state: None,
            iss: issuer.to_string(),
            unvouched: !client.known_to_operator(),
        };
        let bad = |t: &RedirectTarget, code, d: Cow<'static, str>| {
            Rejection::Redirect(Box::new(t.clone()), OAuthError::new(code, d))
        };
        use ErrorCode as C;
        target.state = p
            .one("state")
            .map_err(|e| bad(&target, C::InvalidRequest, e.description))?
            .map(str::to_string);
        let one = |name: &str| {
            p.one(name)
                .map_err(|e| bad(&target, C::InvalidRequest, e.description))
        };
        match one("response_type")? {
            None => {
                return Err(bad(
                    &target,
                    C::InvalidRequest,
                    "response_type is missing; use response_type=code".into(),
                ));
            }
            Some("code") => {}
            Some(_) => {
                return Err(bad(
                    &target,
                    C::UnsupportedResponseType,
                    "only response_type=code is supported".into(),
                ));
            }
        }
        if !client.allows_grant(AUTHORIZATION_CODE) {
            return Err(bad(
                &target,
                C::UnauthorizedClient,
                format!(
                    "client `{}` is not allowed the authorization_code grant",
                    client.client_id
                )
                .into(),
            ));
        }
        let challenge = CodeChallenge::parse(one("code_challenge")?, one("code_challenge_method")?)
            .map_err(|e| bad(&target, C::InvalidRequest, e.to_string().into()))?;
        let scope = one("scope")?
            .map(ScopeSet::parse)
            .transpose()
            .map_err(|e| bad(&target, C::InvalidScope, e.description))?;
        if let Some(s) = &scope {
            let allowed = ScopeSet::from_list(client.scopes.iter().cloned());
            if !s.is_subset(&allowed) {
                return Err(bad(
                    &target,
                    C::InvalidScope,
                    format!(
                        "scope not allowed for this client: {}",
                        s.excess(&allowed).join(" ")
                    )
                    .into(),
                ));
            }
        }
        let nonce = one("nonce")?.map(str::to_string);
        if nonce
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.len() > MAX_NONCE || n.chars().any(char::is_control))
        {
            return Err(bad(
                &target,
                C::InvalidRequest,
                format!("nonce must be 1 to {MAX_NONCE} bytes without control characters").into(),
            ));
        }
        let mut targets: Vec<String> = p
            .all("audience")
            .into_iter()
            .chain(p.all("resource"))
            .map(str::to_string)
            .collect();
        targets.sort();
        targets.dedup();
        let aud = crate::oauth::grant::resolve_audiences(
            clients.resource_audiences(),
            issuer,
            &client,
            &targets,
        )
        .map_err(|e| bad(&target, C::InvalidTarget, e.description))?;
        Ok(Self {
            client,
            redirect_uri: target.redirect_uri,
            state: target.state,
            scope,
            challenge,
            targets,
            aud,
            nonce,
        })
    }

    /// Where to send the response.
    pub fn target(&self, issuer: &str) -> RedirectTarget {
        RedirectTarget {
            redirect_uri: self.redirect_uri.clone(),
            state: self.state.clone(),
            iss: issuer.to_string(),
            unvouched: !self.client.known_to_operator(),
        }
    }

    /// The request in a canonical query string, carried through the login and consent forms
    /// and parsed again (so validated again) when they come back.
    pub fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", &self.client.client_id)
            .append_pair("redirect_uri", &self.redirect_uri);
        if let Some(s) = &self.state {
            q.append_pair("state", s);
        }
        if let Some(s) = &self.scope {
            q.append_pair("scope", &s.to_string());
        }
        q.append_pair("code_challenge", self.challenge.as_str())
            .append_pair("code_challenge_method", S256);
        for t in &self.targets {
            q.append_pair("audience", t);
        }
        if let Some(n) = &self.nonce {
            q.append_pair("nonce", n);
        }
        q.finish()
    }

    /// The scope the tokens will carry: as asked, or by default everything both the client and
    /// the user may hold; either way within both (SPEC "Declarative bootstrap"), and within
    /// `ceiling`, the scopes the resources asked for mean something at (`[[resources]]`).
    pub fn scope_for(
        &self,
        user: &User,
        ceiling: Option<&ScopeSet>,
    ) -> Result<ScopeSet, OAuthError> {
        let identity = |s: &str| s == OPENID;
        let user_allowed =
            ScopeSet::from_list(user.scopes.iter().map(String::as_str).chain([OPENID]));
        let scope = match &self.scope {
            Some(s) => s.clone(),
            None => ScopeSet::from_list(
                (self.client.scopes.iter())
                    .filter(|s| identity(s) || user.scopes.contains(s))
                    .filter(|s| identity(s) || ceiling.is_none_or(|c| c.contains(s))),
            ),
        };
        let ceiling = ceiling.map(|c| ScopeSet::from_list(c.iter().chain([OPENID])));
        if let Some(c) = ceiling.filter(|c| !scope.is_subset(c)) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!(
                    "scope means nothing at the resource asked for: {}",
                    scope.excess(&c).join(" ")
                ),
            ));
        }
        if !scope.is_subset(&user_allowed) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!(
                    "scope not allowed for this user: {}",
                    scope.excess(&user_allowed).join(" ")
                ),
            ));
        }
        if scope.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "this user may hold none of the scopes this client may be granted",
            ));
        }
        Ok(scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str, state: Option<&str>) -> RedirectTarget {
        RedirectTarget {
            redirect_uri: uri.into(),
            state: state.map(Into::into),
            iss: "https://as.example".into(),
            unvouched: false,
        }
    }

    #[test]
    fn rfc6749_s4_1_2_state_and_iss_are_echoed_with_the_code() {
        let t = target("http://127.0.0.1:9999/cb", Some("x y&z"));
        assert_eq!(
            t.with_code("abc"),
            "http://127.0.0.1:9999/cb?code=abc&state=x+y%26z&iss=https%3A%2F%2Fas.example"
        );
    }

    #[test]
    fn rfc6749_s3_1_2_registered_query_is_kept() {
        let t = target("https://app.example/cb?tenant=1", None);
        assert!(
            t.with_code("c")
                .starts_with("https://app.example/cb?tenant=1&code=c&")
        );
    }

    #[test]
    fn rfc6749_s4_1_2_1_error_description_is_restricted_ascii() {
        let t = target("https://app.example/cb", Some("s"));
        let loc = t.with_error(&OAuthError::new(
            ErrorCode::InvalidRequest,
            "bad \"thing\" (RFC 7636 §4.3) é",
        ));
        let q: Vec<(String, String)> =
            form_urlencoded::parse(loc.split_once('?').unwrap().1.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        assert!(q.contains(&("error".into(), "invalid_request".into())));
        assert!(q.contains(&(
            "error_description".into(),
            "bad ?thing? (RFC 7636 section 4.3) ?".into()
        )));
        assert!(q.contains(&("state".into(), "s".into())));
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const ORDERS: &str = "https://orders.example";

    fn registered() -> Clients {
        let client = |id: &str, grants: &[&str]| Client {
            client_id: id.into(),
            secret_hash: None,
            jwks: None,
            public: true,
            grant_types: grants.iter().map(|g| g.to_string()).collect(),
            redirect_uris: vec!["https://app.example/cb".into()],
            scopes: vec!["read".into(), "write".into()],
            introspect: false,
            ssf_receiver: false,
            audience: None,
            audiences: None,
            provenance: crate::oauth::client::Provenance::Config,
            client_name: None,
            application_type: None,
            dpop: Default::default(),
        };
        let orders = Client {
            introspect: true,
            audience: Some(ORDERS.into()),
            ..client("orders", &[])
        };
        Clients::new(vec![
            client("app", &[AUTHORIZATION_CODE]),
            client("m2m", &["client_credentials"]),
            orders,
        ])
    }

    /// A valid request for `app` with `state=xyz`, less the parameters named in `drop`, plus
    /// `add`.
    fn query(drop: &[&str], add: &[(&str, &str)]) -> Params {
        let base = [
            ("response_type", "code"),
            ("client_id", "app"),
            ("redirect_uri", "https://app.example/cb"),
            ("state", "xyz"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in base.iter().filter(|(k, _)| !drop.contains(k)) {
            q.append_pair(k, v);
        }
        for (k, v) in add {
            q.append_pair(k, v);
        }
        Params::parse(q.finish().as_bytes())
    }

    /// What a refusal does: `"fatal"` (shown to the human, RFC 6749 §4.1.2.1 first paragraph)
    /// or the error code sent back to the client with its `state`.
    fn outcome(r: &Result<AuthorizeRequest, Rejection>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(Rejection::Fatal(_)) => "fatal",
            Err(Rejection::Unavailable(_)) => "unavailable",
            Err(Rejection::Redirect(t, e)) => {
                assert_eq!(t.state.as_deref(), Some("xyz"), "state comes back");
                e.code.as_str()
            }
        }
    }

    #[tokio::test]
    async fn rfc6749_s4_1_2_1_an_untrusted_redirect_is_never_followed() {
        type Row<'a> = (&'a str, &'a [&'a str], Vec<(&'a str, &'a str)>, &'a str);
        let rows: Vec<Row> = vec![
            (
                "RFC 6749 §4.1.1: client_id is required",
                &["client_id"],
                vec![],
                "fatal",
            ),
            (
                "RFC 6749 §4.1.2.1: an unknown client",
                &["client_id"],
                vec![("client_id", "nobody")],
                "fatal",
            ),
            (
                "RFC 6749 §3.2: client_id given twice",
                &[],
                vec![("client_id", "app")],
                "fatal",
            ),
            (
                "RFC 9700 §2.1: redirect_uri is required, to be compared exactly",
                &["redirect_uri"],
                vec![],
                "fatal",
            ),
            (
                "RFC 9700 §2.1: exact match, no prefix",
                &["redirect_uri"],
                vec![("redirect_uri", "https://app.example/cb/more")],
                "fatal",
            ),
            (
                "RFC 6749 §4.1.1: response_type is required",
                &["response_type"],
                vec![],
                "invalid_request",
            ),
            (
                "RFC 6749 §4.1.2.1: only the code flow",
                &["response_type"],
                vec![("response_type", "token")],
                "unsupported_response_type",
            ),
            (
                "RFC 6749 §4.1.2.1: a client not registered for the code flow",
                &["client_id"],
                vec![("client_id", "m2m")],
                "unauthorized_client",
            ),
            (
                "RFC 7636 §4.4.1: code_challenge is required",
                &["code_challenge"],
                vec![],
                "invalid_request",
            ),
            (
                "RFC 9700 §2.1.1: plain PKCE is refused",
                &["code_challenge_method"],
                vec![("code_challenge_method", "plain")],
                "invalid_request",
            ),
            (
                "RFC 6749 §3.3: a scope beyond the client's",
                &[],
                vec![("scope", "read admin")],
                "invalid_scope",
            ),
            (
                "RFC 8707 §2: an unknown resource server",
                &[],
                vec![("resource", "https://elsewhere.example")],
                "invalid_target",
            ),
            ("a valid request", &[], vec![("scope", "read")], "ok"),
        ];
        let clients = registered();
        for (why, drop, add, want) in rows {
            let r =
                AuthorizeRequest::parse(&clients, "https://as.example", &query(drop, &add)).await;
            assert_eq!(outcome(&r), want, "{why}");
        }
    }

    #[tokio::test]
    async fn rfc8707_s2_the_tokens_are_for_every_reachable_resource_server_unless_one_is_named() {
        let clients = registered();
        let parse = async |add: &[(&str, &str)]| {
            AuthorizeRequest::parse(&clients, "https://as.example", &query(&[], add))
                .await
                .unwrap()
        };
        assert_eq!(parse(&[]).await.aud, [ORDERS]);
        let named = parse(&[("audience", ORDERS)]).await;
        assert_eq!(
            (named.aud.as_slice(), named.targets.as_slice()),
            (&[ORDERS.to_string()][..], &[ORDERS.to_string()][..])
        );
        // Carried through sign-in and consent, the request parses back the same.
        let again = AuthorizeRequest::parse(
            &clients,
            "https://as.example",
            &Params::parse(named.to_query().as_bytes()),
        )
        .await
        .unwrap();
        assert_eq!((again.aud, again.state), (named.aud, named.state));
    }
}
