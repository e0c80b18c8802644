//! Black-box conformance checks for an OAuth 2.0 authorization server (mandate's contract).
//!
//! [`run`] talks HTTP to a running server and returns one [`Check`] per rule, each named after
//! the RFC section it comes from (or `SPEC:` for mandate's own contract). The optional parts of
//! the [`Target`] (a [`Human`] who signs in, an [`Agent`] that attests and exchanges tokens)
//! enable the authorization code, PKCE and token exchange checks; without them those checks are
//! reported as skipped. Nothing here panics on a bad response: every surprise becomes a
//! failed check whose `detail` says what was observed.

mod authcode;
pub mod browser;
mod crypto;
mod discovery;
mod dpop;
mod exchange;
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
    /// A human who signs in through the web pages; without it the authorization code and
    /// PKCE checks (RFC 6749 §4.1, RFC 7636) and the token exchange checks are skipped.
    pub human: Option<Human>,
    /// An agent with a registered key and a client allowed token exchange; without it (or
    /// without `human`) the token exchange checks (RFC 8693) are skipped.
    pub agent: Option<Agent>,
}

/// A human user and the public client they sign in through (authorization code with PKCE).
#[derive(Clone)]
pub struct Human {
    pub username: String,
    pub password: String,
    /// A public client (no secret) allowed the `authorization_code` grant.
    pub client_id: String,
    /// A redirect URI registered for `client_id`. Nothing needs to listen there: the suite
    /// reads the redirect's `Location` and never follows it.
    pub redirect_uri: String,
    /// Space-separated scopes the human may be granted through this client; at least two, so
    /// that narrowing can be tested. Keep high-risk scopes (ones needing approval) out of it.
    pub scope: String,
}

impl std::fmt::Debug for Human {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Human")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .finish()
    }
}

/// A software agent (SPEC "Agent attestation": a registered P-256 key) and the confidential
/// client its runtime exchanges tokens through.
#[derive(Clone)]
pub struct Agent {
    /// The agent's registered name; its tokens' subject is `agent:<name>`.
    pub name: String,
    /// The agent's P-256 private key as PKCS#8 DER (the bytes between the `-----BEGIN PRIVATE
    /// KEY-----` lines of a PEM file, base64-decoded); its public key is registered on the server.
    pub private_key_pkcs8_der: Vec<u8>,
    /// A confidential client allowed the `urn:ietf:params:oauth:grant-type:token-exchange`
    /// grant; it authenticates with `client_secret_basic`.
    pub exchange_client_id: String,
    pub exchange_client_secret: String,
}

impl Agent {
    /// Reads an agent's private key file: a PEM `-----BEGIN PRIVATE KEY-----` block (PKCS#8,
    /// as `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes it) or the
    /// same key as raw PKCS#8 DER. Returns the DER after checking that it is a P-256 key.
    pub fn key_from_pem_or_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let der = match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN") => {
                if text.contains("-----BEGIN EC PRIVATE KEY-----") {
                    return Err(
                        "this is a SEC1 `EC PRIVATE KEY`; convert it to PKCS#8 with \
                        `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`"
                            .to_owned(),
                    );
                }
                let body: String = text
                    .lines()
                    .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
                    .skip(1)
                    .take_while(|l| !l.starts_with("-----END"))
                    .map(str::trim)
                    .collect();
                if body.is_empty() {
                    return Err("no `-----BEGIN PRIVATE KEY-----` block (PKCS#8) found".to_owned());
                }
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .map_err(|e| format!("the PEM body is not base64: {e}"))?
            }
            _ => bytes.to_vec(),
        };
        crypto::check_p256_key(&der)?;
        Ok(der)
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.name)
            .field("private_key_pkcs8_der", &"<redacted>")
            .field("exchange_client_id", &self.exchange_client_id)
            .field("exchange_client_secret", &"<redacted>")
            .finish()
    }
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
            .field("human", &self.human)
            .field("agent", &self.agent)
            .finish()
    }
}

/// The outcome of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The rule, starting with its RFC section (or `SPEC:` for mandate's own contract).
    pub id: String,
    /// True only for a rule that was checked and held.
    pub passed: bool,
    /// The rule was not checked because an optional part of the [`Target`] is absent; a
    /// skipped check is not a failure (and `passed` is false).
    pub skipped: bool,
    /// What was observed (always set on failure), or why the check was skipped.
    pub detail: String,
}

impl Check {
    /// Checked and not held.
    pub fn failed(&self) -> bool {
        !self.passed && !self.skipped
    }

    pub(crate) fn skip(id: &str, why: &str) -> Check {
        Check {
            id: id.to_owned(),
            passed: false,
            skipped: true,
            detail: why.to_owned(),
        }
    }

    pub(crate) fn new(id: &str, result: Result<(), String>) -> Check {
        match result {
            Ok(()) => Check {
                id: id.to_owned(),
                passed: true,
                skipped: false,
                detail: String::new(),
            },
            Err(detail) => Check {
                id: id.to_owned(),
                passed: false,
                skipped: false,
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
    out.extend(authcode::run(&ctx).await);
    out.extend(exchange::run(&ctx).await);
    out.extend(dpop::run(&ctx).await);
    out
}

/// Shared state: the HTTP client, the target, and the responses several checks look at.
pub(crate) struct Ctx<'a> {
    pub http: reqwest::Client,
    pub target: &'a Target,
    /// `GET /.well-known/oauth-authorization-server`.
    pub metadata: Result<Captured, String>,
    pub token_endpoint: String,
    pub authorization_endpoint: String,
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
        let authorization_endpoint = endpoint("authorization_endpoint", "/authorize");
        let jwks_uri = endpoint("jwks_uri", "/jwks.json");
        let introspection_endpoint = endpoint("introspection_endpoint", "/introspect");
        let revocation_endpoint = endpoint("revocation_endpoint", "/revoke");
        let mut ctx = Ctx {
            jwks: send(http.get(&jwks_uri)).await,
            http,
            target,
            metadata,
            token_endpoint,
            authorization_endpoint,
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
