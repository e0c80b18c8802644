//! `oauth::params::Params`, the form body of `/token`, `/introspect`, `/revoke` and
//! `/bc-authorize`, then `TokenRequest::parse` and PKCE over it. Any bytes parse; then, for
//! every name in the body and the names the server asks for:
//! - `one` is `Ok(Some(v))` exactly when the name appears once with a non-empty value `v`,
//!   `Ok(None)` when it never does, and `invalid_request` when it is repeated (RFC 6749 §3.2);
//! - `required` succeeds exactly when `one` gives `Some`;
//! - `all` lists every non-empty value in order, and empty values count as omitted (§3.1).
//!
//! The expected counts come from decoding the body independently with `form_urlencoded`.
#![no_main]
use mandate::oauth::ErrorCode;
use mandate::oauth::params::Params;
use mandate::oauth::pkce::{CodeChallenge, verifier_syntax_ok};
use mandate::oauth::request::TokenRequest;
use mandate::oauth::scope::ScopeSet;

/// Every name the server reads from a form body.
const NAMES: &[&str] = &[
    "grant_type",
    "scope",
    "audience",
    "resource",
    "code",
    "redirect_uri",
    "code_verifier",
    "code_challenge",
    "code_challenge_method",
    "refresh_token",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
    "auth_req_id",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "token",
    "token_type_hint",
    "login_hint",
    "binding_message",
];

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    // What the HTTP edge runs first: a body whose decoded names or values are not UTF-8 or hold
    // NUL or another control character (but tab, CR, LF) is refused; an accepted one holds none.
    // `Params::parse_untrusted` refuses exactly what `input::form` refuses.
    let strict = mandate::input::form(body);
    if let Ok(pairs) = &strict {
        for (k, v) in pairs {
            for c in k.chars().chain(v.chars()) {
                assert!(!c.is_control() || matches!(c, '\t' | '\r' | '\n'), "{k:?}={v:?}");
            }
        }
    }
    assert_eq!(strict.is_ok(), Params::parse_untrusted(body).is_ok());
    let params = Params::parse(body);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let names: std::collections::BTreeSet<&str> = pairs
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(NAMES.iter().copied())
        .collect();
    for name in names {
        let values: Vec<&str> = pairs
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(params.all(name), values, "all({name:?})");
        match (params.one(name), values.as_slice()) {
            (Ok(None), []) => assert!(params.required(name).is_err()),
            (Ok(Some(v)), [only]) => {
                assert_eq!(v, *only);
                assert_eq!(params.required(name).ok(), Some(v));
            }
            (Err(e), [_, _, ..]) => {
                assert_eq!(e.code, ErrorCode::InvalidRequest);
                assert!(params.required(name).is_err());
            }
            (got, want) => panic!("one({name:?}) = {got:?} for values {want:?}"),
        }
    }

    // What `/token` builds from the form: a scope it accepts prints as itself, sorted.
    if let Ok(request) = TokenRequest::parse(&params) {
        let _ = format!("{request:?}");
        let scope = match &request {
            TokenRequest::ClientCredentials { scope, .. }
            | TokenRequest::RefreshToken { scope, .. } => scope.as_ref(),
            TokenRequest::TokenExchange(x) => x.scope.as_ref(),
            _ => None,
        };
        if let Some(scope) = scope {
            assert!(!scope.is_empty());
            assert_eq!(
                ScopeSet::parse(&scope.to_string()).ok().as_ref(),
                Some(scope)
            );
        }
    }
    // The PKCE parameters of an authorization request and a code redemption.
    if let (Ok(challenge), Ok(method)) = (
        params.one("code_challenge"),
        params.one("code_challenge_method"),
    ) && let Ok(c) = CodeChallenge::parse(challenge, method)
    {
        assert_eq!(c.as_str().len(), 43);
        if let Ok(Some(verifier)) = params.one("code_verifier")
            && c.verify(verifier)
        {
            assert!(verifier_syntax_ok(verifier));
        }
    }
});
