//! Token verification: local JWT checks against the issuer's JWKS, or RFC 7662 introspection.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::error::{AuthError, AuthRejection, Challenge};
use crate::principal::{Principal, audience_of, numeric_date};
use crate::ssf::{Revocation, RevocationList};

/// Longest token looked at; anything longer is refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// After a failed first JWKS fetch, the next try waits at least this long.
const FIRST_FETCH_RETRY: Duration = Duration::from_secs(1);

/// An invalid verifier or metadata configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub(crate) String);

/// How tokens are checked.
#[derive(Clone)]
enum Mode {
    Jwt,
    Introspection {
        client_id: String,
        client_secret: String,
    },
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Jwt => f.write_str("Jwt"),
            Mode::Introspection { client_id, .. } => f
                .debug_struct("Introspection")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
        }
    }
}

/// Configures a [`Verifier`]; made by [`Verifier::builder`].
#[derive(Debug, Clone)]
pub struct VerifierBuilder {
    issuer: String,
    audience: String,
    mode: Mode,
    leeway: Duration,
    jwks_refetch_interval: Duration,
    jwks_max_age: Duration,
    cache_ttl: Duration,
    cache_capacity: usize,
    revocation_retention: Duration,
    revocation_capacity: usize,
    realm: Option<String>,
    resource_metadata_url: Option<String>,
    http: Option<reqwest::Client>,
    public_url: Option<String>,
}

impl VerifierBuilder {
    /// JWT mode (the default): verify each token locally, ES256 only, against the keys at the
    /// `jwks_uri` of the issuer's RFC 8414 metadata. Revocation is seen only when the token
    /// expires; use [`introspection`](Self::introspection) to see it at once.
    pub fn jwt(mut self) -> Self {
        self.mode = Mode::Jwt;
        self
    }

    /// RFC 7662 introspection mode: ask the issuer about each token (answers cached, see
    /// [`introspection_cache_ttl`](Self::introspection_cache_ttl)), authenticated as
    /// `client_id` (a mandate client with `introspect = true` whose `audience` is this
    /// verifier's audience). Sees revocation within the cache lifetime.
    pub fn introspection(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        self.mode = Mode::Introspection {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        };
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// JWT mode: the least time between two JWKS fetches caused by a token whose `kid` is not
    /// in the cached key set (default 30 s), so that tokens with made-up key ids cannot make
    /// this server hammer the issuer. A token signed by a freshly rotated key is accepted
    /// once this much time has passed since the last fetch.
    pub fn jwks_refetch_interval(mut self, interval: Duration) -> Self {
        self.jwks_refetch_interval = interval;
        self
    }

    /// JWT mode: how long a fetched key set is used before it is fetched again (default
    /// 10 minutes); a failed refresh keeps the old keys.
    pub fn jwks_max_age(mut self, max_age: Duration) -> Self {
        self.jwks_max_age = max_age;
        self
    }

    /// Introspection mode: how long an active answer is reused (default 30 s, never past the
    /// token's `exp`). A revoked token keeps working at most this long. `Duration::ZERO`
    /// turns the cache off. Inactive answers are never cached.
    pub fn introspection_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Introspection mode: the most answers kept (default 10 000); the oldest go first.
    pub fn introspection_cache_capacity(mut self, entries: usize) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// Shared Signals ([`crate::SsfReceiver`]): how long a revocation the issuer pushed is
    /// remembered (default 1 hour). It must be at least the longest lifetime of the tokens
    /// this server accepts (mandate's `tokens.access_token_ttl`, 10 minutes by default) plus
    /// the [`leeway`](Self::leeway): a token a forgotten revocation named would otherwise work
    /// again until it expires.
    pub fn revocation_retention(mut self, retention: Duration) -> Self {
        self.revocation_retention = retention;
        self
    }

    /// Shared Signals: the most revocations remembered at once (default 100 000; at least 1).
    /// When the list is full the oldest is dropped and every token issued at or before that
    /// revocation's time is refused from then on (fail closed: nothing revoked comes back).
    pub fn revocation_capacity(mut self, entries: usize) -> Self {
        self.revocation_capacity = entries;
        self
    }

    /// The `realm` attribute of the `WWW-Authenticate` challenges (RFC 6750 §3); none by
    /// default.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// The URL of this resource server's RFC 9728 metadata, named by `resource_metadata` in
    /// every challenge (RFC 9728 §5.1); usually
    /// [`crate::ProtectedResourceMetadata::url`].
    pub fn resource_metadata_url(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata_url = Some(url.into());
        self
    }

    /// The URL this resource server is reached at from outside (`https://api.example.com`, or
    /// with a path prefix), when a proxy in front changes scheme, host or port: a DPoP proof's
    /// `htu` must name it (RFC 9449 §4.3). Default: `http://` and the request's `Host`.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// The HTTP client used to reach the issuer (default: a new one with a 10 s timeout).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Checks the configuration. Nothing is fetched yet: the issuer's metadata is fetched on
    /// the first request (or by [`Verifier::warm_up`]).
    pub fn build(self) -> Result<Verifier, ConfigError> {
        let issuer_url = url::Url::parse(&self.issuer)
            .map_err(|e| ConfigError(format!("issuer `{}` is not a URL: {e}", self.issuer)))?;
        if !matches!(issuer_url.scheme(), "https" | "http")
            || issuer_url.query().is_some()
            || issuer_url.fragment().is_some()
        {
            return Err(ConfigError(format!(
                "issuer `{}` must be an http(s) URL without query or fragment (RFC 8414 §2)",
                self.issuer
            )));
        }
        if self.audience.is_empty() {
            return Err(ConfigError("audience must not be empty".into()));
        }
        if let Mode::Introspection { client_id, .. } = &self.mode
            && client_id.is_empty()
        {
            return Err(ConfigError(
                "introspection client_id must not be empty".into(),
            ));
        }
        let http = match self.http {
            Some(c) => c,
            None => reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| ConfigError(format!("cannot build the HTTP client: {e}")))?,
        };
        let metadata_url = well_known(&issuer_url, "oauth-authorization-server");
        let dpop = crate::dpop::DpopCheck::new(self.public_url.as_deref(), self.leeway)?;
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                audience: self.audience,
                metadata_url,
                mode: self.mode,
                leeway: self.leeway.as_secs(),
                challenge: Arc::new(Challenge {
                    realm: self.realm,
                    resource_metadata: self.resource_metadata_url,
                }),
                http,
                metadata: OnceCell::new(),
                jwks: Jwks {
                    state: Mutex::new(KeySet::default()),
                    fetch: tokio::sync::Mutex::new(()),
                    refetch_interval: self.jwks_refetch_interval,
                    max_age: self.jwks_max_age,
                },
                cache: Mutex::new(IntrospectionCache::new(self.cache_capacity, self.cache_ttl)),
                revocations: Mutex::new(RevocationList::new(
                    self.revocation_retention,
                    self.revocation_capacity,
                )),
                dpop,
            }),
        })
    }
}

/// RFC 8414 §3.1 / RFC 9728 §3.1: the well-known path goes between the host and the path.
pub(crate) fn well_known(url: &url::Url, name: &str) -> String {
    let mut base = url.clone();
    let path = url.path().trim_end_matches('/').to_string();
    base.set_path("");
    base.set_query(None);
    base.set_fragment(None);
    let origin = base.as_str().trim_end_matches('/');
    format!("{origin}/.well-known/{name}{path}")
}

/// Checks bearer tokens for one audience at one issuer. Cheap to clone (shared state: the
/// metadata, the key set, the introspection cache).
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use mandate_resource::Verifier;
/// let verifier = Verifier::builder("https://auth.example.com", "orders-api").build()?;
/// let principal = verifier.verify("eyJ...").await?;
/// println!("{principal}"); // alice → planner → payments-bot
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("mode", &self.inner.mode)
            .finish_non_exhaustive()
    }
}

struct Inner {
    issuer: String,
    audience: String,
    metadata_url: String,
    mode: Mode,
    leeway: u64,
    challenge: Arc<Challenge>,
    http: reqwest::Client,
    metadata: OnceCell<ServerMetadata>,
    jwks: Jwks,
    cache: Mutex<IntrospectionCache>,
    /// What the issuer's security events revoked (`crate::ssf`).
    revocations: Mutex<RevocationList>,
    dpop: crate::dpop::DpopCheck,
}

/// The parts of the issuer's RFC 8414 metadata used here.
#[derive(Debug, Clone, Deserialize)]
struct ServerMetadata {
    issuer: String,
    jwks_uri: Option<String>,
    introspection_endpoint: Option<String>,
}

impl Verifier {
    /// Starts configuring a verifier for tokens issued by `issuer` (exactly the `iss` of its
    /// tokens and the `issuer` of its RFC 8414 metadata) for `audience` (this resource
    /// server's audience string or resource URI, which each token's `aud` must contain).
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            mode: Mode::Jwt,
            leeway: Duration::from_secs(30),
            jwks_refetch_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(600),
            cache_ttl: Duration::from_secs(30),
            cache_capacity: 10_000,
            revocation_retention: Duration::from_secs(3600),
            revocation_capacity: 100_000,
            realm: None,
            resource_metadata_url: None,
            http: None,
            public_url: None,
        }
    }

    /// The issuer tokens must come from.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audience tokens must be for.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// Fetches the issuer's metadata (and, in JWT mode, its keys) now rather than on the
    /// first request, so a misconfiguration shows at start-up.
    pub async fn warm_up(&self) -> Result<(), AuthError> {
        let meta = self.metadata().await?;
        if let Mode::Jwt = self.inner.mode {
            let jwks_uri = jwks_uri(meta)?;
            let _fetching = self.inner.jwks.fetch.lock().await;
            self.inner.jwks.refresh(&self.inner.http, jwks_uri).await?;
        }
        Ok(())
    }

    /// Verifies the bearer token in `headers` (RFC 6750 §2.1 `Authorization: Bearer`).
    /// A request without one is [`AuthError::MissingToken`]; a malformed header (more than one
    /// `Authorization` header, an empty token, characters outside `b64token`) is
    /// [`AuthError::InvalidRequest`]. An `Authorization` header with another scheme counts as
    /// no bearer token.
    /// A DPoP-bound token (one with `cnf.jkt`) is refused here: checking its proof needs the
    /// request's method and URL ([`Self::authenticate_request`]).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let token = bearer_token(headers)?;
        let principal = self.verify(token).await?;
        if principal.dpop_jkt().is_some() {
            return Err(AuthError::InvalidToken(
                "the token is DPoP-bound: send it as `Authorization: DPoP` with a DPoP proof (RFC 9449 §7.1)"
                    .into(),
            ));
        }
        Ok(principal)
    }

    /// Verifies the token of a request as [`Self::authenticate`] does, and for a DPoP-bound
    /// token (RFC 9449) its proof too: `Authorization: DPoP <token>` with one `DPoP` header
    /// whose proof is for this `method` and URL (the request's path under
    /// [`VerifierBuilder::public_url`], else under its `Host`), hashes the token (`ath`), is
    /// signed by the key the token is bound to, and is new. A bound token sent as `Bearer` is
    /// refused, as is an unbound one sent as `DPoP`. The refusal carries the challenge the
    /// request gets (`DPoP` or `Bearer`).
    pub async fn authenticate_request(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &HeaderMap,
    ) -> Result<Principal, AuthRejection> {
        let reject = |e: AuthError, dpop: bool| {
            AuthRejection::new(e, self.inner.challenge.clone()).dpop(dpop)
        };
        let (scheme, token) = credentials(headers).map_err(|e| reject(e, false))?;
        let is_dpop = scheme == crate::dpop::Scheme::Dpop;
        let principal = self.verify(token).await.map_err(|e| reject(e, is_dpop))?;
        (self.inner.dpop)
            .check(&principal, scheme, token, method, uri, headers)
            .map_err(|e| reject(e, true))?;
        Ok(principal)
    }

    /// Verifies one access token and reads its claims. A token that a security event from
    /// the issuer revoked ([`crate::SsfReceiver`]) is refused like any revoked token.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::InvalidToken("token is too long".into()));
        }
        let principal = match &self.inner.mode {
            Mode::Jwt => {
                let claims = self.verify_jwt(token).await?;
                Principal::from_claims(claims, self.inner.challenge.clone())?
            }
            Mode::Introspection {
                client_id,
                client_secret,
            } => self.introspect(token, client_id, client_secret).await?,
        };
        if let Some(why) = self.revocations().refuses(&principal, now_secs()) {
            return Err(AuthError::InvalidToken(why.to_string()));
        }
        Ok(principal)
    }

    /// Remembers what a security event revoked, and drops the cached introspection answers
    /// of the tokens it names.
    pub(crate) fn apply_revocations(&self, revocations: &[Revocation]) {
        let now = now_secs();
        let mut list = self.revocations();
        for r in revocations {
            list.add(r, now);
        }
        self.cache()
            .entries
            .retain(|_, e| list.refuses(&e.principal, now).is_none());
    }

    /// The issuer's key `kid` for a Security Event Token: as for tokens, but an unknown `kid`
    /// may refetch the key set once a second (the pusher is authenticated first), and the
    /// caller learns whether the issuer was asked.
    pub(crate) async fn set_key(&self, kid: &str) -> Result<Arc<DecodingKey>, KeyMiss> {
        let meta = self.metadata().await.map_err(KeyMiss::Unavailable)?;
        let jwks_uri = jwks_uri(meta).map_err(KeyMiss::Unavailable)?;
        let interval = FIRST_FETCH_RETRY.min(self.inner.jwks.refetch_interval);
        (self.inner.jwks)
            .lookup(&self.inner.http, jwks_uri, kid, interval)
            .await
    }

    /// The revocation list's capacity and retention (seconds).
    pub(crate) fn revocation_bounds(&self) -> (usize, u64) {
        self.revocations().bounds()
    }

    #[cfg(test)]
    pub(crate) fn introspection_cache_len(&self) -> usize {
        self.cache().len()
    }

    #[cfg(test)]
    pub(crate) fn revocation_count(&self) -> usize {
        self.revocations().len()
    }

    fn revocations(&self) -> std::sync::MutexGuard<'_, RevocationList> {
        self.inner
            .revocations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn metadata(&self) -> Result<&ServerMetadata, AuthError> {
        self.inner
            .metadata
            .get_or_try_init(|| async {
                let url = &self.inner.metadata_url;
                let meta: ServerMetadata = get_json(&self.inner.http, url).await?;
                // RFC 8414 §3.3: the metadata must name the issuer it was fetched for.
                if meta.issuer != self.inner.issuer {
                    tracing::error!(
                        expected = %self.inner.issuer, got = %meta.issuer,
                        "authorization server metadata names another issuer"
                    );
                    return Err(AuthError::Unavailable(format!(
                        "the metadata at {url} names issuer `{}`, not `{}` (RFC 8414 §3.3)",
                        meta.issuer, self.inner.issuer
                    )));
                }
                Ok(meta)
            })
            .await
    }

    async fn verify_jwt(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let header = jose_header(token)?;
        // Only ES256 (what mandate signs with); `none`, HMAC and anything else are refused
        // before a key is looked at.
        match header.get("alg").and_then(Value::as_str) {
            Some("ES256") => {}
            Some(other) => {
                return Err(AuthError::InvalidToken(format!(
                    "token alg `{}` is not accepted (only ES256)",
                    printable(other)
                )));
            }
            None => return Err(AuthError::InvalidToken("token header has no alg".into())),
        }
        // RFC 9068 §4: an access token says so in `typ`, so no other JWT of the issuer
        // (an ID token, an agent token) passes for one.
        let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
        if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
            return Err(AuthError::InvalidToken(format!(
                "token typ `{}` is not an access token's (RFC 9068 §4: at+jwt)",
                printable(typ)
            )));
        }
        let Some(kid) = header.get("kid").and_then(Value::as_str) else {
            return Err(AuthError::InvalidToken("token header has no kid".into()));
        };
        let meta = self.metadata().await?;
        let key = self
            .inner
            .jwks
            .key(&self.inner.http, jwks_uri(meta)?, kid)
            .await?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        AuthError::InvalidToken("token signature does not verify".into())
                    }
                    _ => AuthError::InvalidToken("token does not verify".into()),
                }
            })?;
        let claims = data.claims;
        self.check_issuer(&claims, true)?;
        self.check_audience(&claims)?;
        self.check_times(&claims)?;
        Ok(claims)
    }

    /// RFC 9068 §4 / RFC 7519 §4.1.1: `iss` exactly the configured issuer.
    fn check_issuer(&self, claims: &Map<String, Value>, required: bool) -> Result<(), AuthError> {
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.inner.issuer => Ok(()),
            None if !required => Ok(()),
            _ => Err(AuthError::InvalidToken(
                "token was issued by another issuer".into(),
            )),
        }
    }

    /// RFC 9068 §4 / RFC 8707: `aud` must contain this resource server's audience.
    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        let aud = audience_of(claims).unwrap_or_default();
        if aud.iter().any(|a| *a == self.inner.audience) {
            Ok(())
        } else {
            Err(AuthError::InvalidToken(format!(
                "token is not meant for this resource (its aud does not contain `{}`)",
                self.inner.audience
            )))
        }
    }

    /// RFC 7519 §4.1.4, §4.1.5, §4.1.6 with the configured leeway.
    fn check_times(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        let now = now_secs();
        let leeway = self.inner.leeway;
        let exp = numeric_date(claims.get("exp"))
            .ok_or_else(|| AuthError::InvalidToken("token has no valid exp".into()))?;
        if exp.saturating_add(leeway) <= now {
            return Err(AuthError::InvalidToken("token has expired".into()));
        }
        for claim in ["nbf", "iat"] {
            if let Some(v) = claims.get(claim) {
                let t = numeric_date(Some(v)).ok_or_else(|| {
                    AuthError::InvalidToken(format!("token claim `{claim}` is not a date"))
                })?;
                if t > now.saturating_add(leeway) {
                    return Err(AuthError::InvalidToken(format!(
                        "token is not valid yet (`{claim}` is in the future)"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn introspect(
        &self,
        token: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Principal, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_secs();
        if let Some(p) = self.cache().get(&key, Instant::now(), now) {
            return Ok(p);
        }
        let meta = self.metadata().await?;
        let endpoint = meta.introspection_endpoint.as_deref().ok_or_else(|| {
            AuthError::Unavailable("the issuer's metadata has no introspection_endpoint".into())
        })?;
        // RFC 6749 §2.3.1: the client id and secret are form-encoded before Basic.
        let resp = self
            .inner
            .http
            .post(endpoint)
            .basic_auth(form_encode(client_id), Some(form_encode(client_secret)))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| unavailable("introspection", e))?;
        let status = resp.status();
        if !status.is_success() {
            tracing::error!(%status, client_id, "introspection refused");
            return Err(AuthError::Unavailable(format!(
                "introspection answered HTTP {status} (is `{client_id}` a client with introspect = true?)"
            )));
        }
        let answer: Map<String, Value> = resp
            .json()
            .await
            .map_err(|e| unavailable("introspection", e))?;
        // RFC 7662 §2.2: only `"active": true` means anything.
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err(AuthError::InvalidToken(
                "token is not active (revoked, expired, or not for this audience)".into(),
            ));
        }
        self.check_issuer(&answer, false)?;
        self.check_audience(&answer)?;
        self.check_times(&answer)?;
        let principal = Principal::from_claims(answer, self.inner.challenge.clone())?;
        self.cache()
            .insert(key, principal.clone(), Instant::now(), now);
        Ok(principal)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, IntrospectionCache> {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn jwks_uri(meta: &ServerMetadata) -> Result<&str, AuthError> {
    meta.jwks_uri
        .as_deref()
        .ok_or_else(|| AuthError::Unavailable("the issuer's metadata has no jwks_uri".into()))
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Cuts a value from a token header to something safe to show.
fn printable(s: &str) -> String {
    s.chars()
        .take(40)
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect()
}

fn unavailable(what: &str, e: reqwest::Error) -> AuthError {
    // reqwest errors name the URL, never the form body: no token here.
    tracing::warn!(error = %e, "{what} failed");
    AuthError::Unavailable(format!("{what} failed: {}", e.without_url()))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, AuthError> {
    let resp = http
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| unavailable("fetching issuer metadata or keys", e))?;
    if !resp.status().is_success() {
        return Err(AuthError::Unavailable(format!(
            "{url} answered HTTP {}",
            resp.status()
        )));
    }
    resp.json()
        .await
        .map_err(|e| unavailable("reading issuer metadata or keys", e))
}

/// The JOSE header of a compact JWS, read without trusting it.
fn jose_header(token: &str) -> Result<Map<String, Value>, AuthError> {
    let malformed = || AuthError::InvalidToken("token is not a JWT".into());
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| malformed())?;
    serde_json::from_slice(&bytes).map_err(|_| malformed())
}

/// RFC 6750 §2.1: `Authorization: Bearer b64token`.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    match credentials(headers)? {
        (crate::dpop::Scheme::Bearer, token) => Ok(token),
        (crate::dpop::Scheme::Dpop, _) => Err(AuthError::MissingToken),
    }
}

/// RFC 6750 §2.1 `Authorization: Bearer b64token`, or RFC 9449 §7.1 `Authorization: DPoP
/// b64token`; any other scheme counts as no token.
pub(crate) fn credentials(headers: &HeaderMap) -> Result<(crate::dpop::Scheme, &str), AuthError> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::MissingToken);
    };
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest(
            "more than one Authorization header".into(),
        ));
    }
    let value = value.to_str().map_err(|_| {
        AuthError::InvalidRequest("the Authorization header is not visible ASCII".into())
    })?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        crate::dpop::Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        crate::dpop::Scheme::Dpop
    } else {
        return Err(AuthError::MissingToken);
    };
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::InvalidRequest(
            "the Authorization credentials hold no token".into(),
        ));
    }
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
    {
        return Err(AuthError::InvalidRequest(
            "the bearer token is not a b64token (RFC 6750 §2.1)".into(),
        ));
    }
    Ok((scheme, token))
}

/// The issuer's signing keys, cached.
struct Jwks {
    state: Mutex<KeySet>,
    /// Held while fetching, so concurrent requests share one fetch.
    fetch: tokio::sync::Mutex<()>,
    refetch_interval: Duration,
    max_age: Duration,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

impl KeySet {
    fn fresh(&self, max_age: Duration) -> bool {
        self.fetched_at.is_some_and(|t| t.elapsed() < max_age)
    }
}

#[derive(Deserialize)]
struct JwkSetDoc {
    keys: Vec<Value>,
}

#[derive(Deserialize)]
struct EcJwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
}

impl Jwks {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeySet> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key `kid`, fetching the key set when it is stale, or when `kid` is unknown and the
    /// last fetch is at least `refetch_interval` old.
    async fn key(
        &self,
        http: &reqwest::Client,
        jwks_uri: &str,
        kid: &str,
    ) -> Result<Arc<DecodingKey>, AuthError> {
        self.lookup(http, jwks_uri, kid, self.refetch_interval)
            .await
            .map_err(|miss| match miss {
                KeyMiss::Unavailable(e) => e,
                KeyMiss::TooSoon => {
                    tracing::debug!(kid, "unknown kid; JWKS refetch is rate-limited");
                    unknown_kid()
                }
                KeyMiss::Unknown | KeyMiss::FetchFailed(_) => unknown_kid(),
            })
    }

    /// [`Self::key`] with the least time between refetches for an unknown `kid` given, and
    /// why a key was not found.
    async fn lookup(
        &self,
        http: &reqwest::Client,
        jwks_uri: &str,
        kid: &str,
        interval: Duration,
    ) -> Result<Arc<DecodingKey>, KeyMiss> {
        {
            let set = self.lock();
            if let Some(k) = set.keys.get(kid)
                && set.fresh(self.max_age)
            {
                return Ok(k.clone());
            }
        }
        let _fetching = self.fetch.lock().await;
        {
            let set = self.lock();
            let known = set.keys.get(kid).cloned();
            if let Some(k) = &known
                && set.fresh(self.max_age)
            {
                // Another request refreshed the set while this one waited.
                return Ok(k.clone());
            }
            let wait = if set.fetched_at.is_none() {
                FIRST_FETCH_RETRY.min(interval)
            } else {
                interval
            };
            if set.last_attempt.is_some_and(|t| t.elapsed() < wait) {
                // Too soon to ask again: a stale key still serves, an unknown kid is refused.
                return match known {
                    Some(k) => Ok(k),
                    None if set.fetched_at.is_none() => {
                        Err(KeyMiss::Unavailable(keys_unavailable()))
                    }
                    None => Err(KeyMiss::TooSoon),
                };
            }
        }
        let fetched = self.refresh(http, jwks_uri).await;
        let set = self.lock();
        match (set.keys.get(kid), fetched) {
            (Some(k), _) => Ok(k.clone()),
            (None, _) if set.fetched_at.is_none() => Err(KeyMiss::Unavailable(keys_unavailable())),
            (None, Ok(())) => Err(KeyMiss::Unknown),
            (None, Err(e)) => Err(KeyMiss::FetchFailed(e)),
        }
    }

    /// Fetches the key set; on failure the old keys stay.
    async fn refresh(&self, http: &reqwest::Client, jwks_uri: &str) -> Result<(), AuthError> {
        self.lock().last_attempt = Some(Instant::now());
        let doc: JwkSetDoc = match get_json(http, jwks_uri).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "JWKS fetch failed; keeping the cached keys");
                return Err(e);
            }
        };
        let mut keys = HashMap::new();
        for value in doc.keys {
            let Ok(jwk) = serde_json::from_value::<EcJwk>(value) else {
                continue;
            };
            let usable = jwk.kty == "EC"
                && jwk.crv.as_deref() == Some("P-256")
                && jwk.use_.as_deref().is_none_or(|u| u == "sig")
                && jwk.alg.as_deref().is_none_or(|a| a == "ES256");
            let (true, Some(kid), Some(x), Some(y)) = (usable, jwk.kid, jwk.x, jwk.y) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_ec_components(&x, &y) {
                keys.insert(kid, Arc::new(key));
            }
        }
        let mut set = self.lock();
        set.keys = keys;
        set.fetched_at = Some(Instant::now());
        Ok(())
    }
}

/// Why [`Jwks::lookup`] found no key.
pub(crate) enum KeyMiss {
    /// The issuer's metadata or keys could not be fetched at all.
    Unavailable(AuthError),
    /// The freshly fetched key set has no such `kid`.
    Unknown,
    /// The `kid` is unknown and the key set was fetched too recently to ask again.
    TooSoon,
    /// The `kid` is unknown and refetching the key set failed (the old keys stay).
    FetchFailed(AuthError),
}

fn keys_unavailable() -> AuthError {
    AuthError::Unavailable("the issuer's keys could not be fetched".into())
}

fn unknown_kid() -> AuthError {
    AuthError::InvalidToken("token is signed by a key the issuer does not publish".into())
}

/// Active introspection answers by token hash, bounded in entries and time.
struct IntrospectionCache {
    capacity: usize,
    ttl: Duration,
    entries: HashMap<[u8; 32], CacheEntry>,
    /// Insertion order, for evicting the oldest; stale pairs (re-inserted keys) are skipped.
    order: VecDeque<([u8; 32], u64)>,
    seq: u64,
}

struct CacheEntry {
    principal: Principal,
    until: Instant,
    seq: u64,
}

impl IntrospectionCache {
    fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity,
            ttl,
            entries: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
        }
    }

    fn enabled(&self) -> bool {
        self.capacity > 0 && !self.ttl.is_zero()
    }

    /// A live entry: younger than the TTL and its token not expired.
    fn get(&mut self, key: &[u8; 32], now: Instant, now_secs: u64) -> Option<Principal> {
        let entry = self.entries.get(key)?;
        if entry.until > now && entry.principal.expires_at_secs() > now_secs {
            return Some(entry.principal.clone());
        }
        self.entries.remove(key);
        None
    }

    fn insert(&mut self, key: [u8; 32], principal: Principal, now: Instant, now_secs: u64) {
        if !self.enabled() {
            return;
        }
        // Never past the token's own `exp`.
        let left = principal.expires_at_secs().saturating_sub(now_secs);
        let ttl = self.ttl.min(Duration::from_secs(left));
        if ttl.is_zero() {
            return;
        }
        // Drop what has expired at the front, then the oldest until there is room.
        while let Some((k, seq)) = self.order.front().copied() {
            let live = self.entries.get(&k).filter(|e| e.seq == seq);
            match live {
                None => {
                    self.order.pop_front();
                }
                Some(e) if e.until <= now || self.entries.len() >= self.capacity => {
                    self.entries.remove(&k);
                    self.order.pop_front();
                }
                Some(_) => break,
            }
        }
        self.seq += 1;
        self.entries.insert(
            key,
            CacheEntry {
                principal,
                until: now + ttl,
                seq: self.seq,
            },
        );
        self.order.push_back((key, self.seq));
        if self.order.len() > self.capacity.saturating_mul(2).max(16) {
            let entries = &self.entries;
            self.order
                .retain(|(k, s)| entries.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::header::AUTHORIZATION,
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn rfc6750_s2_1_bearer_header_parsing() {
        assert_eq!(
            bearer_token(&headers(&[b"Bearer abc.def-_~+/=="])),
            Ok("abc.def-_~+/==")
        );
        assert_eq!(bearer_token(&headers(&[b"bearer  abc "])), Ok("abc"));
        assert_eq!(bearer_token(&headers(&[])), Err(AuthError::MissingToken));
        assert_eq!(
            bearer_token(&headers(&[b"Basic dXNlcjpwdw=="])),
            Err(AuthError::MissingToken)
        );
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer a b",
            b"Bearer a\"b",
            b"Bearer ==",
            b"Bearer a=b",
            b"Bearer \xff",
        ] {
            assert!(
                matches!(
                    bearer_token(&headers(&[bad])),
                    Err(AuthError::InvalidRequest(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            bearer_token(&headers(&[b"Bearer a", b"Bearer b"])),
            Err(AuthError::InvalidRequest(_))
        ));
    }

    #[test]
    fn rfc8414_s3_1_well_known_goes_between_host_and_path() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            well_known(&u("https://auth.example.com"), "oauth-authorization-server"),
            "https://auth.example.com/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            well_known(
                &u("https://auth.example.com/tenant/1/"),
                "oauth-authorization-server"
            ),
            "https://auth.example.com/.well-known/oauth-authorization-server/tenant/1"
        );
        assert_eq!(
            well_known(&u("http://127.0.0.1:8080"), "oauth-protected-resource"),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn builder_refuses_bad_configuration_and_debug_hides_the_secret() {
        assert!(Verifier::builder("not a url", "a").build().is_err());
        assert!(
            Verifier::builder("https://a.example?x=1", "a")
                .build()
                .is_err()
        );
        assert!(Verifier::builder("https://a.example", "").build().is_err());
        let v = Verifier::builder("https://a.example", "api")
            .introspection("rs", "very-secret")
            .build()
            .unwrap();
        let shown = format!("{v:?}");
        assert!(
            shown.contains("rs") && !shown.contains("very-secret"),
            "{shown}"
        );
    }

    fn principal(exp: u64) -> Principal {
        let Value::Object(m) = serde_json::json!({"sub": "alice", "exp": exp}) else {
            unreachable!()
        };
        Principal::from_claims(m, Arc::default()).unwrap()
    }

    #[test]
    fn introspection_cache_is_bounded_in_entries_and_time_and_never_outlives_exp() {
        let now = Instant::now();
        let secs = 1_000_000;
        let mut c = IntrospectionCache::new(3, Duration::from_secs(30));
        for i in 0..10u8 {
            c.insert([i; 32], principal(secs + 3600), now, secs);
            assert!(c.len() <= 3);
        }
        assert!(c.get(&[9; 32], now, secs).is_some());
        assert!(
            c.get(&[0; 32], now, secs).is_none(),
            "the oldest went first"
        );
        assert!(
            c.get(&[9; 32], now + Duration::from_secs(31), secs)
                .is_none(),
            "gone after the TTL"
        );
        // A token with 5 s left is kept 5 s, not 30.
        c.insert([42; 32], principal(secs + 5), now, secs);
        assert!(
            c.get(&[42; 32], now + Duration::from_secs(4), secs + 4)
                .is_some()
        );
        assert!(
            c.get(&[42; 32], now + Duration::from_secs(6), secs + 6)
                .is_none()
        );
        // Re-inserting one key many times keeps the order queue bounded.
        for _ in 0..1000 {
            c.insert([7; 32], principal(secs + 3600), now, secs);
        }
        assert!(c.order.len() <= 16, "{}", c.order.len());
        let mut off = IntrospectionCache::new(10, Duration::ZERO);
        off.insert([1; 32], principal(secs + 3600), now, secs);
        assert!(off.get(&[1; 32], now, secs).is_none(), "TTL 0: no cache");
    }

    #[test]
    fn rfc9068_s4_claims_iss_exact_aud_contains_and_times_with_leeway() {
        let v = Verifier::builder("https://as.example", "orders-api")
            .leeway(Duration::from_secs(30))
            .build()
            .unwrap();
        let now = now_secs();
        let map = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        assert!(
            v.check_issuer(&map(serde_json::json!({"iss": "https://as.example"})), true)
                .is_ok()
        );
        for iss in [
            serde_json::json!({"iss": "https://as.example/"}),
            serde_json::json!({"iss": "https://AS.example"}),
            serde_json::json!({"iss": ["https://as.example"]}),
            serde_json::json!({}),
        ] {
            assert!(v.check_issuer(&map(iss.clone()), true).is_err(), "{iss}");
        }
        assert!(
            v.check_issuer(&map(serde_json::json!({})), false).is_ok(),
            "introspection may omit iss"
        );
        for ok in [
            serde_json::json!({"aud": "orders-api"}),
            serde_json::json!({"aud": ["billing-api", "orders-api"]}),
        ] {
            assert!(v.check_audience(&map(ok.clone())).is_ok(), "{ok}");
        }
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"aud": "orders-api-2"}),
            serde_json::json!({"aud": ["billing-api"]}),
            serde_json::json!({"aud": 1}),
        ] {
            assert!(v.check_audience(&map(bad.clone())).is_err(), "{bad}");
        }
        let t = |c: Value| v.check_times(&map(c));
        assert!(t(serde_json::json!({"exp": now + 60})).is_ok());
        assert!(
            t(serde_json::json!({"exp": now - 10})).is_ok(),
            "inside the leeway"
        );
        assert!(t(serde_json::json!({"exp": now - 31})).is_err());
        assert!(t(serde_json::json!({})).is_err(), "exp is required");
        assert!(t(serde_json::json!({"exp": now + 60, "nbf": now + 10})).is_ok());
        assert!(t(serde_json::json!({"exp": now + 600, "nbf": now + 60})).is_err());
        assert!(t(serde_json::json!({"exp": now + 600, "iat": now + 60})).is_err());
        assert!(t(serde_json::json!({"exp": now + 600, "iat": "soon"})).is_err());
    }

    #[test]
    fn jose_header_is_read_only_from_a_three_part_token() {
        assert!(jose_header("a.b").is_err());
        assert!(jose_header("a.b.c.d").is_err());
        assert!(jose_header("!!.b.c").is_err());
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert_eq!(
            jose_header(&format!("{h}.e30.")).unwrap()["alg"],
            Value::String("none".into())
        );
    }
}
