//! Black-box conformance checks for an OAuth 2.0 authorization server (mandate's contract).
//!
//! [`run`] talks HTTP to a running server and returns one [`Check`] per rule, each named after
//! the RFC section it comes from. Nothing here panics on a bad response: every surprise becomes a
//! failed check whose `detail` says what was observed.

mod discovery;
mod http;
mod introspect;
mod jwt;
mod token;

use std::time::Duration;

use http::{Captured, basic_auth, form, send};

/// The server under test and the registered clients the checks use.
#[derive(Clone)]
pub struct Target {
    /// e.g. `http://127.0.0.1:41234` (no trailing slash)
    pub issuer: String,
    /// A confidential client allowed the `client_credentials` grant.
    pub client_id: String,
    pub client_secret: String,
    /// One scope this client may be granted, e.g. `orders:read`.
    pub scope: String,
    /// A client with `introspect = true`.
    pub resource_server_id: String,
    pub resource_server_secret: String,
    /// The resource server's audience value, e.g. `orders-api`.
    pub audience: String,
}

/// Secrets are redacted so that a `{:?}` in a test log never shows them.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .field("resource_server_id", &self.resource_server_id)
            .field("resource_server_secret", &"<redacted>")
            .field("audience", &self.audience)
            .finish()
    }
}

/// The outcome of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The rule, starting with its RFC section.
    pub id: String,
    pub passed: bool,
    /// What was observed (always set on failure).
    pub detail: String,
}

impl Check {
    pub(crate) fn new(id: &str, result: Result<(), String>) -> Check {
        match result {
            Ok(()) => Check {
                id: id.to_owned(),
                passed: true,
                detail: String::new(),
            },
            Err(detail) => Check {
                id: id.to_owned(),
                passed: false,
                detail,
            },
        }
    }
}

/// Runs every check against `target`, in a fixed order.
pub async fn run(target: &Target) -> Vec<Check> {
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::new(
                "setup: HTTP client",
                Err(format!("could not build the HTTP client: {e}")),
            )];
        }
    };
    let ctx = Ctx::prepare(http, target).await;
    let mut out = Vec::new();
    out.extend(discovery::run(&ctx).await);
    out.extend(token::run(&ctx).await);
    out.extend(introspect::run(&ctx).await);
    out
}

/// Shared state: the HTTP client, the target, and the responses several checks look at.
pub(crate) struct Ctx<'a> {
    pub http: reqwest::Client,
    pub target: &'a Target,
    /// `GET /.well-known/oauth-authorization-server`.
    pub metadata: Result<Captured, String>,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    /// `GET jwks_uri`.
    pub jwks: Result<Captured, String>,
    /// client_credentials with client_secret_basic and `scope`.
    pub basic_token: Result<Captured, String>,
    /// An access token issued with `scope` and `audience` = the resource server's audience.
    pub audience_token: Result<String, String>,
}

impl<'a> Ctx<'a> {
    async fn prepare(http: reqwest::Client, target: &'a Target) -> Ctx<'a> {
        let issuer = target.issuer.trim_end_matches('/');
        let metadata = send(
            http.get(format!("{issuer}/.well-known/oauth-authorization-server"))
                .header("accept", "application/json"),
        )
        .await;
        // Endpoints come from the metadata; the contract's fixed paths are the fallback so that
        // one broken document does not hide every other result.
        let endpoint = |name: &str, path: &str| -> String {
            metadata
                .as_ref()
                .ok()
                .and_then(|m| m.str_member(name))
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{issuer}{path}"))
        };
        let token_endpoint = endpoint("token_endpoint", "/token");
        let jwks_uri = endpoint("jwks_uri", "/jwks.json");
        let introspection_endpoint = endpoint("introspection_endpoint", "/introspect");
        let revocation_endpoint = endpoint("revocation_endpoint", "/revoke");
        let mut ctx = Ctx {
            jwks: send(http.get(&jwks_uri)).await,
            http,
            target,
            metadata,
            token_endpoint,
            jwks_uri,
            introspection_endpoint,
            revocation_endpoint,
            basic_token: Err(String::new()),
            audience_token: Err(String::new()),
        };
        ctx.basic_token = ctx
            .post_basic_client(
                &ctx.token_endpoint,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", &target.scope),
                ],
            )
            .await;
        ctx.audience_token = ctx.issue_audience_token().await;
        ctx
    }

    /// POSTs a form to `url` with an optional `Authorization` header value.
    pub async fn post_form(
        &self,
        url: &str,
        params: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> Result<Captured, String> {
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form(params));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        send(req).await
    }

    /// POSTs a form authenticated as the client (client_secret_basic).
    pub async fn post_basic_client(
        &self,
        url: &str,
        params: &[(&str, &str)],
    ) -> Result<Captured, String> {
        let auth = basic_auth(&self.target.client_id, &self.target.client_secret);
        self.post_form(url, params, Some(&auth)).await
    }

    /// POSTs a form authenticated as the resource server (client_secret_basic).
    pub async fn post_basic_rs(
        &self,
        url: &str,
        params: &[(&str, &str)],
    ) -> Result<Captured, String> {
        let auth = basic_auth(
            &self.target.resource_server_id,
            &self.target.resource_server_secret,
        );
        self.post_form(url, params, Some(&auth)).await
    }

    /// A fresh access token for the resource server's audience.
    pub async fn issue_audience_token(&self) -> Result<String, String> {
        let resp = self
            .post_basic_client(
                &self.token_endpoint,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", &self.target.scope),
                    ("audience", &self.target.audience),
                ],
            )
            .await
            .map_err(|e| format!("token request with audience failed: {e}"))?;
        access_token_of(&resp)
            .map(str::to_owned)
            .map_err(|e| format!("token request with audience: {e}"))
    }

    /// Introspects `token` as the resource server.
    pub async fn introspect(&self, token: &str) -> Result<Captured, String> {
        self.post_basic_rs(&self.introspection_endpoint, &[("token", token)])
            .await
    }

    /// The access token of the shared client_secret_basic token response.
    pub fn basic_access_token(&self) -> Result<&str, String> {
        match &self.basic_token {
            Ok(resp) => access_token_of(resp),
            Err(e) => Err(format!("no token response: {e}")),
        }
    }
}

/// The `access_token` of a successful token response, or why there is none.
pub(crate) fn access_token_of(resp: &Captured) -> Result<&str, String> {
    if resp.status != 200 {
        return Err(format!("expected HTTP 200, got {}", resp.summary()));
    }
    match resp.str_member("access_token") {
        Some(t) if !t.is_empty() => Ok(t),
        _ => Err(format!("no access_token string: {}", resp.summary())),
    }
}

/// A value no server has issued: random enough that two runs never collide.
pub(crate) fn garbage_token() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut parts = Vec::new();
    for i in 0..2u8 {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u8(i);
        parts.push(format!("{:016x}", h.finish()));
    }
    format!("conformance-not-a-token-{}", parts.concat())
}
