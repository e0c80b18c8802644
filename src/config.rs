//! Typed configuration: a TOML file (SPEC "Declarative bootstrap") with `MANDATE_*` environment
//! overrides. Every key, its default and its meaning is listed in docs/configuration.md, which
//! tests/it/config_docs.rs checks against this file.
//!
//! Loading is two-phase so that errors name what the operator must fix: the file alone is parsed
//! first (a TOML error then carries the file's line and key), then the environment overrides are
//! applied and the result is validated (an error then names the `MANDATE_*` variable).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

mod notifications;
mod ssf;
pub use notifications::{
    NOTIFIED_EVENTS, NotificationsConfig, SmtpConfig, WebhookConfig, is_mail_address,
};
pub use ssf::{
    RECEIVER_STREAM_MARK, REFUSED, SESSION_REVOKED, SSF_DEFAULT_EVENTS, SSF_EVENTS, SsfConfig,
    SsfStreamConfig, VERIFICATION,
};

/// Environment variables that are not config keys.
const RESERVED_ENV: &[&str] = &["MANDATE_KEK", "MANDATE_LOG", "MANDATE_AGENT_CLIENT_SECRET"];
/// The values of `clients[].dpop` (`oauth::dpop::Mode`).
const DPOP_MODES: [&str; 3] = ["off", "allowed", "required"];
/// The smallest `server.max_header_bytes`: a request line with a modest query and a few headers.
pub const MIN_HEADER_BYTES: usize = 1024;
/// Tables whose keys can be overridden as `MANDATE_<TABLE>_<KEY>`.
const TABLES: &[&str] = &[
    "tokens",
    "keys",
    "server",
    "policy",
    "ciba",
    "attestation",
    "registration",
    "cimd",
    "dpop",
    "metrics",
    "tracing",
    "ssf",
    // A nested table: `MANDATE_NOTIFICATIONS_SMTP_HOST` is `notifications.smtp.host`.
    "notifications.smtp",
    "notifications",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `iss` of every token; defaults to `http://ADDR:PORT` of the bound listener.
    pub issuer: Option<String>,
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// File holding the base64 key-encryption key; `MANDATE_KEK` takes precedence.
    pub kek_file: Option<PathBuf>,
    /// How log lines are written to stderr.
    #[serde(default, deserialize_with = "de_log_format")]
    pub log_format: LogFormat,
    #[serde(default)]
    pub tokens: TokensConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// Resource servers named by URL (RFC 8707 `resource`; an MCP server's canonical URI).
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub ciba: CibaConfig,
    #[serde(default)]
    pub attestation: AttestationConfig,
    #[serde(default)]
    pub registration: RegistrationConfig,
    #[serde(default)]
    pub cimd: CimdConfig,
    #[serde(default)]
    pub dpop: DpopConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub tracing: TracingConfig,
    /// Approval notifications: webhooks and mail (`config/notifications.rs`).
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// Security events out to configured receivers (`config/ssf.rs`, docs/ssf.md).
    #[serde(default)]
    pub ssf: SsfConfig,
    /// Where the file was read from (for error messages and relative paths); not a key.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    #[serde(deserialize_with = "de_duration")]
    pub access_token_ttl: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub agent_token_ttl: Duration,
    /// Lifetime of a refresh token; each use rotates it (RFC 9700 §4.14).
    #[serde(deserialize_with = "de_duration")]
    pub refresh_token_ttl: Duration,
    /// Lifetime of an authorization code (RFC 6749 §4.1.2: short).
    #[serde(deserialize_with = "de_duration")]
    pub authorization_code_ttl: Duration,
    pub max_delegation_depth: u32,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(600),
            agent_token_ttl: Duration::from_secs(300),
            refresh_token_ttl: Duration::from_secs(8 * 3600),
            authorization_code_ttl: Duration::from_secs(60),
            max_delegation_depth: 4,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// How long a key signs before the next one takes over.
    #[serde(deserialize_with = "de_duration")]
    pub rotation_interval: Duration,
    /// How often each replica checks whether rotation is due and reloads the key set.
    #[serde(deserialize_with = "de_duration")]
    pub check_interval: Duration,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            rotation_interval: Duration::from_secs(30 * 24 * 3600),
            check_interval: Duration::from_secs(60),
        }
    }
}

/// How log lines are written: plain text for a person, or one JSON object per line for a
/// collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    #[serde(deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// `max-age` of the `/jwks.json` response.
    #[serde(deserialize_with = "de_duration")]
    pub jwks_max_age: Duration,
    /// Connections in the database pool.
    pub db_max_connections: u32,
    /// How long a client has to send a whole request head (request line and headers) once the
    /// server waits for one, also between two requests on a kept-alive connection; past it the
    /// connection is closed (SPEC: "connections that do not finish their request head in bounded
    /// time are closed"; RFC 9112 §9.8 lets a server close idle connections).
    #[serde(deserialize_with = "de_duration")]
    pub header_read_timeout: Duration,
    /// Client connections served at once; one more is answered 503 and closed at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes; larger is 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more is 431.
    pub max_headers: usize,
    /// Browser origins (`scheme://host[:port]`) allowed to call the metadata, JWKS, `/token` and
    /// `/revoke` across origins, besides the loopback origins and the origins of the clients'
    /// redirect URIs, which always are (the CORS layer of the HTTP edge).
    pub cors_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(300),
            db_max_connections: 8,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            cors_origins: Vec::new(),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    /// Development only: a plain password, hashed at start.
    pub password: Option<String>,
    /// argon2id PHC string.
    pub password_hash: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Where approval notifications for this human are mailed (with `notifications.smtp`).
    pub email: Option<String>,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("username", &self.username)
            .field("scopes", &self.scopes)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    /// Development only: a plain secret, hashed at start.
    pub client_secret: Option<String>,
    /// argon2id PHC string.
    pub client_secret_hash: Option<String>,
    /// Public keys for `private_key_jwt` (RFC 7523), a JWK Set.
    pub jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Ceiling for the scopes of tokens issued to this client.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// May call `/introspect` (a resource server).
    #[serde(default)]
    pub introspect: bool,
    /// An SSF receiver: may manage its own Shared Signals streams (SSF 1.0 §8.1) with an
    /// access token of its own (docs/ssf.md).
    #[serde(default)]
    pub ssf_receiver: bool,
    /// The `aud` value of tokens meant for this resource server (default: `client_id`).
    pub audience: Option<String>,
    /// Resource servers this client may get tokens for (default: all).
    pub audiences: Option<Vec<String>>,
    /// RFC 9449 DPoP for this client's tokens: `off`, `allowed` (bound when the request
    /// carries a proof) or `required`.
    pub dpop: Option<String>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_id", &self.client_id)
            .field("public", &self.public)
            .field("grant_types", &self.grant_types)
            .finish_non_exhaustive()
    }
}

/// A resource server named by its URL: the `aud` of tokens for it and the `resource` value
/// (RFC 8707) clients ask for, with the scopes that mean something there and, per tool, what
/// each scope lets an agent do (shown on the consent page).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// Absolute http(s) URL without a fragment; compared with `resource` values by
    /// `input::canonical_resource` (scheme and host without case).
    pub uri: String,
    /// What a human sees on the consent page (default: the URI).
    pub name: Option<String>,
    /// When not empty, a sign-in for this resource alone can grant only these scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub tools: Vec<ToolConfig>,
}

/// One tool (an MCP tool, an API operation) of a resource and the scope it needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    pub name: String,
    pub scope: String,
    /// One line a human reads on the consent page: what the tool does on their behalf.
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub name: String,
    pub ak_public: Option<String>,
    pub public_jwk: Option<serde_json::Value>,
    pub pcr_policy: Option<BTreeMap<String, toml::Value>>,
}

/// OpenID CIBA (poll mode) for grants that need the human's approval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CibaConfig {
    /// The least time between two polls of `/token` (CIBA Core §7.3 `interval`).
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// How long a request waits for the human (`expires_in`); `requested_expiry` may shorten it.
    #[serde(deserialize_with = "de_duration")]
    pub expiry: Duration,
}

impl Default for CibaConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            expiry: Duration::from_secs(300),
        }
    }
}

/// RFC 9449 DPoP proofs: how old one may be, and whether it must carry a server nonce.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// How old a proof's `iat` may be (RFC 9449 §4.3 check 11); its `jti` is kept this long.
    #[serde(deserialize_with = "de_duration")]
    pub max_proof_age: Duration,
    /// Every proof must carry a `nonce` this server sent in a `DPoP-Nonce` header (RFC 9449
    /// §8), so a proof cannot be made ahead of time.
    pub require_nonce: bool,
    /// How long a nonce is current; one stays accepted for one more period after.
    #[serde(deserialize_with = "de_duration")]
    pub nonce_period: Duration,
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            max_proof_age: Duration::from_secs(60),
            require_nonce: false,
            nonce_period: Duration::from_secs(300),
        }
    }
}

/// Prometheus metrics (`docs/metrics.md`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `ADDR:PORT` of a listener of its own serving `GET /metrics`; unset, there is none.
    /// Anyone who reaches it reads the counts, so keep it on a private interface.
    pub listen: Option<String>,
}

/// OpenTelemetry traces (`docs/tracing.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Base URL of an OTLP/HTTP collector (`http://HOST:4318`); spans go to `/v1/traces`.
    /// Unset: no spans are exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// The share of requests without a caller's `traceparent` that are traced (0 to 1); a
    /// caller's sampling decision is always followed.
    pub sample_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "mandate".into(),
            sample_ratio: 1.0,
        }
    }
}

/// Zero-touch TPM enrollment: which EKs may enroll an agent by credential activation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttestationConfig {
    /// PEM or DER files of the CAs that issue EK certificates (TPM manufacturers), relative to
    /// the config file. Empty (and no allowlist): zero-touch enrollment is off.
    pub ek_roots: Vec<PathBuf>,
    /// EKs an operator approved, for TPMs with no EK certificate: SHA-256 (hex) of the EK's
    /// SubjectPublicKeyInfo (`tpm2_readpublic -c EK -f pem -o ek.pem && openssl pkey -pubin
    /// -in ek.pem -outform DER | sha256sum`).
    pub ek_allowlist: Vec<String>,
    /// How long a credential-activation challenge waits for the agent's answer.
    #[serde(deserialize_with = "de_duration")]
    pub enrollment_ttl: Duration,
}

impl Default for AttestationConfig {
    fn default() -> Self {
        Self {
            ek_roots: Vec::new(),
            ek_allowlist: Vec::new(),
            enrollment_ttl: Duration::from_secs(300),
        }
    }
}

/// RFC 7591 dynamic client registration at `POST /register`: off unless enabled, and what a
/// client that registers itself may be. A registered client is never more trusted than a
/// configured one: it never introspects, never exchanges tokens, never uses CIBA and is never a
/// resource server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Serve `/register` (and advertise it as `registration_endpoint`), and resolve the
    /// clients it registered.
    pub enabled: bool,
    /// The grants a registered client may ask for: of `authorization_code`, `refresh_token`,
    /// `client_credentials` (the last only with `confidential`).
    pub grant_types: Vec<String>,
    /// Whether a client may register as confidential (and be issued a `client_secret`).
    pub confidential: bool,
    /// The `application_type`s a client may register as: `native`, `web`.
    pub application_types: Vec<String>,
    /// Whether a native client may use `http://localhost` redirect URIs besides the loopback
    /// IP literals (RFC 8252 §8.3 calls it NOT RECOMMENDED; MCP clients use it).
    pub allow_localhost: bool,
    /// The scopes a registered client may be granted (its `scope` metadata is within these).
    pub scopes: Vec<String>,
    /// Registrations one source address may make within `per_address_window`.
    pub per_address_limit: u32,
    #[serde(deserialize_with = "de_duration")]
    pub per_address_window: Duration,
    /// Registered clients that may exist at once.
    pub max_clients: u32,
    /// A registered client not used for this long is removed and its tokens revoked.
    #[serde(deserialize_with = "de_duration")]
    pub expire_unused_after: Duration,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            confidential: false,
            application_types: vec!["native".into(), "web".into()],
            allow_localhost: true,
            scopes: Vec::new(),
            per_address_limit: 20,
            per_address_window: Duration::from_secs(3600),
            max_clients: 1000,
            expire_unused_after: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Client ID Metadata Documents (`[cimd]`, src/cimd/): `client_id`s that are https URLs of the
/// client's own metadata, fetched and validated by the server. Off unless enabled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CimdConfig {
    /// Accept URL `client_id`s and advertise `client_id_metadata_document_supported`.
    pub enabled: bool,
    /// The most a client by metadata document may be granted (within its document's `scope`,
    /// when it has one).
    pub scopes: Vec<String>,
    /// Also fetch from loopback, RFC 1918, unique-local and CGNAT addresses (development and
    /// tests only; link-local, multicast and the like stay refused).
    pub allow_private_addresses: bool,
    /// Hosts (`app.example.com`) or subdomain wildcards (`*.example.com`) whose documents are
    /// accepted; empty: any host that passes the address checks. Listed clients are marked as
    /// known on the consent page.
    pub allowed_domains: Vec<String>,
    /// Hosts or wildcards never fetched; a block wins over an allow.
    pub blocked_domains: Vec<String>,
    /// The TCP connect, per address tried.
    #[serde(deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// The whole fetch: resolution, connect, TLS, request and body.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// The largest document read (draft: 5 KB recommended); at most [`CIMD_MAX_BYTES_CAP`].
    pub max_bytes: usize,
    /// A PEM file of extra CA certificates trusted for the fetch, besides the webpki roots;
    /// relative to the config file.
    pub extra_ca_file: Option<PathBuf>,
    /// Bounds of a document's cache lifetime, whatever its `Cache-Control`/`Expires` say.
    #[serde(deserialize_with = "de_duration")]
    pub cache_min_ttl: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub cache_max_ttl: Duration,
    /// The lifetime of a document sent without caching headers.
    #[serde(deserialize_with = "de_duration")]
    pub cache_default_ttl: Duration,
    /// Documents and failures kept at most; the oldest goes first.
    pub cache_max_entries: usize,
    /// How long a failed fetch is answered from memory instead of fetched again ("0s": never).
    #[serde(deserialize_with = "de_duration")]
    pub failure_ttl: Duration,
    /// Fetches under way at once, over all URLs; more wait up to `timeout`.
    pub max_concurrent_fetches: usize,
}

/// The hard cap on `cimd.max_bytes`.
pub const CIMD_MAX_BYTES_CAP: usize = 64 * 1024;

impl Default for CimdConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            allow_private_addresses: false,
            allowed_domains: Vec::new(),
            blocked_domains: Vec::new(),
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            max_bytes: 5 * 1024,
            extra_ca_file: None,
            cache_min_ttl: Duration::from_secs(60),
            cache_max_ttl: Duration::from_secs(24 * 3600),
            cache_default_ttl: Duration::from_secs(300),
            cache_max_entries: 1000,
            failure_ttl: Duration::from_secs(10),
            max_concurrent_fetches: 8,
            scopes: Vec::new(),
        }
    }
}

/// The grants a registered client may be allowed (a subset of the configured clients' grants).
pub const REGISTRABLE_GRANTS: [&str; 3] =
    ["authorization_code", "refresh_token", "client_credentials"];
impl CimdConfig {
    fn validate(&self) -> Result<(), String> {
        let secs = |d: Duration| d.as_secs_f64();
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return Err("key `cimd.timeout`: must be more than zero and at most 60s".into());
        }
        if self.connect_timeout.is_zero() || self.connect_timeout > self.timeout {
            return Err(
                "key `cimd.connect_timeout`: must be more than zero and at most `cimd.timeout`"
                    .into(),
            );
        }
        if self.max_bytes == 0 || self.max_bytes > CIMD_MAX_BYTES_CAP {
            return Err(format!(
                "key `cimd.max_bytes`: must be from 1 to {CIMD_MAX_BYTES_CAP}"
            ));
        }
        if self.cache_min_ttl.is_zero()
            || secs(self.cache_min_ttl) > secs(self.cache_default_ttl)
            || secs(self.cache_default_ttl) > secs(self.cache_max_ttl)
        {
            return Err("keys `cimd.cache_*_ttl`: need 0 < cache_min_ttl <= cache_default_ttl <= cache_max_ttl".into());
        }
        if self.cache_max_entries == 0 {
            return Err("key `cimd.cache_max_entries`: must be at least 1".into());
        }
        if self.failure_ttl > self.cache_min_ttl {
            return Err("key `cimd.failure_ttl`: must be at most `cimd.cache_min_ttl` (a failure is remembered briefly, never longer than a document)".into());
        }
        if self.max_concurrent_fetches == 0 {
            return Err("key `cimd.max_concurrent_fetches`: must be at least 1".into());
        }
        for (key, list) in [
            ("allowed_domains", &self.allowed_domains),
            ("blocked_domains", &self.blocked_domains),
        ] {
            if let Some(bad) = list.iter().find(|d| domain_pattern(d).is_none()) {
                return Err(format!(
                    "key `cimd.{key}`: {bad:?} is not a lowercase host or `*.` followed by one (no scheme, port or trailing dot)"
                ));
            }
        }
        Ok(())
    }
}

/// An entry of `cimd.allowed_domains`/`blocked_domains`: `Some((true, "example.com"))` for
/// `*.example.com`, `Some((false, host))` for a lowercase host name or IP address, `None` for
/// anything else (so a typo cannot silently match nothing).
pub fn domain_pattern(s: &str) -> Option<(bool, &str)> {
    let (wild, name) = match s.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(['.', '-'])
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b));
    // A colon only in an IPv6 address (no port, no wildcard).
    let v6_ok = !name.contains(':') || (!wild && name.parse::<std::net::Ipv6Addr>().is_ok());
    (ok && v6_ok).then_some((wild, name))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub files: Vec<String>,
    pub high_risk_scopes: Vec<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_database_url() -> String {
    "sqlite://mandate.db".into()
}

/// Parses `"10m"`, `"90s"`, `"30d"` (humantime syntax).
fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{s}` is not a duration ({e}); write it like \"10m\", \"90s\" or \"30d\""
        ))
    })
}

fn de_log_format<'de, D: Deserializer<'de>>(d: D) -> Result<LogFormat, D::Error> {
    match String::deserialize(d)?.as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(serde::de::Error::custom(format!(
            "`{other}` is not a log format; write \"text\" or \"json\""
        ))),
    }
}

/// A configuration problem, phrased for the operator: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("invalid config {file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

impl Config {
    /// Defaults only, no file (used when `mandate.toml` does not exist).
    pub fn defaults() -> Self {
        let mut c: Config = toml::from_str("").unwrap_or_else(|_| unreachable!());
        c.source = None;
        c
    }

    /// Reads `path`, applies `MANDATE_*` overrides from `env`, validates.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let err = |message: String| ConfigError {
            file: file.clone(),
            message,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        Self::from_toml(&text, &file, env).map(|mut c| {
            c.source = Some(path.to_path_buf());
            c
        })
    }

    pub fn from_toml(
        text: &str,
        file: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            file: file.to_string(),
            message,
        };
        // Phase 1: the file alone, so errors point at its lines.
        let mut table: toml::Table = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let _: Config = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        // Phase 2: environment overrides.
        let mut applied = Vec::new();
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix("MANDATE_") else {
                continue;
            };
            if RESERVED_ENV.contains(&name.as_str()) || rest.is_empty() {
                continue;
            }
            apply_override(&mut table, &rest.to_ascii_lowercase(), &raw);
            applied.push(name);
        }
        let config: Config = if applied.is_empty() {
            toml::from_str(text).map_err(|e| err(e.to_string()))?
        } else {
            Config::deserialize(toml::Value::Table(table)).map_err(|e| {
                err(format!(
                    "after environment overrides ({}): {}",
                    applied.join(", "),
                    e.message()
                ))
            })?
        };
        config.validate().map_err(err)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        self.listen
            .parse::<SocketAddr>()
            .map_err(|e| format!("key `listen`: `{}` is not ADDR:PORT ({e})", self.listen))?;
        if let Some(m) = &self.metrics.listen {
            let addr = m
                .parse::<SocketAddr>()
                .map_err(|e| format!("key `metrics.listen`: `{m}` is not ADDR:PORT ({e})"))?;
            // Port 0 picks a free port for each.
            if *m == self.listen && addr.port() != 0 {
                return Err(format!(
                    "key `metrics.listen`: `{m}` is `listen` too; metrics need an address of \
                     their own"
                ));
            }
        }
        if let Some(e) = &self.tracing.otlp_endpoint {
            let rest = e.strip_prefix("http://").ok_or_else(|| {
                format!(
                    "key `tracing.otlp_endpoint`: `{e}` must be an http:// URL (a collector on a \
                     local or private address; https is not supported)"
                )
            })?;
            if rest.is_empty() || rest.contains(['?', '#']) {
                return Err(format!(
                    "key `tracing.otlp_endpoint`: `{e}` must be http://HOST:PORT, with no query"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.tracing.sample_ratio) {
            return Err(format!(
                "key `tracing.sample_ratio`: {} must be between 0 and 1",
                self.tracing.sample_ratio
            ));
        }
        if self.tracing.service_name.trim().is_empty() {
            return Err("key `tracing.service_name`: must not be empty".into());
        }
        if let Some(iss) = &self.issuer {
            if !(iss.starts_with("https://") || iss.starts_with("http://")) || iss.ends_with('/') {
                return Err(format!(
                    "key `issuer`: `{iss}` must be an http(s) URL without a trailing slash (RFC 8414 §2)"
                ));
            }
        }
        if !(self.database_url.starts_with("sqlite:") || self.database_url.starts_with("postgres"))
        {
            return Err(format!(
                "key `database_url`: `{}` must start with sqlite:// or postgres://",
                redact_url(&self.database_url)
            ));
        }
        if self.tokens.access_token_ttl.as_secs() == 0 || self.tokens.agent_token_ttl.as_secs() == 0
        {
            return Err("key `tokens.*_ttl`: lifetimes must be at least one second".into());
        }
        if self.keys.rotation_interval < Duration::from_secs(60) {
            return Err("key `keys.rotation_interval`: must be at least 1m".into());
        }
        if self.server.db_max_connections == 0 {
            return Err("key `server.db_max_connections`: must be at least 1".into());
        }
        for c in &self.clients {
            if let Some(m) = c.dpop.as_deref().filter(|m| !DPOP_MODES.contains(m)) {
                return Err(format!(
                    "client `{}`, key `dpop`: `{m}` is none of `off`, `allowed`, `required`",
                    c.client_id
                ));
            }
        }
        if self.dpop.max_proof_age.as_secs() == 0 || self.dpop.nonce_period.as_secs() == 0 {
            return Err(
                "keys `dpop.max_proof_age`, `dpop.nonce_period`: must be at least one second"
                    .into(),
            );
        }
        if self.server.header_read_timeout.is_zero() {
            return Err("key `server.header_read_timeout`: must be more than zero".into());
        }
        if self.server.request_timeout.is_zero() {
            return Err("key `server.request_timeout`: must be more than zero".into());
        }
        if self.server.max_connections == 0 {
            return Err("key `server.max_connections`: must be at least 1".into());
        }
        if self.server.max_header_bytes < MIN_HEADER_BYTES {
            return Err(format!(
                "key `server.max_header_bytes`: must be at least {MIN_HEADER_BYTES}"
            ));
        }
        for o in &self.server.cors_origins {
            if !crate::input::is_origin(o) {
                return Err(format!(
                    "key `server.cors_origins`: {o:?} is not an origin (scheme://host[:port], no path; `*` is never allowed)"
                ));
            }
        }
        if self.server.max_headers == 0 {
            return Err("key `server.max_headers`: must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            let key = format!("clients[{i}] (client_id `{}`)", c.client_id);
            if c.client_id.is_empty() || !seen.insert(c.client_id.as_str()) {
                return Err(format!("{key}: client_id must be present and unique"));
            }
            identifier(&key, "client_id", &c.client_id)?;
            let secrets = [
                c.client_secret.is_some(),
                c.client_secret_hash.is_some(),
                c.jwks.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if c.public && secrets > 0 {
                return Err(format!("{key}: a public client has no secret or jwks"));
            }
            if !c.public && secrets != 1 {
                return Err(format!(
                    "{key}: set exactly one of client_secret, client_secret_hash or jwks (or public = true)"
                ));
            }
            if let Some(h) = &c.client_secret_hash {
                argon2::PasswordHash::new(h).map_err(|_| {
                    format!("{key}: client_secret_hash is not an argon2 PHC string")
                })?;
            }
            if c.ssf_receiver && !c.grant_types.iter().any(|g| g == "client_credentials") {
                return Err(format!(
                    "{key}: an SSF receiver authenticates to the stream endpoints with an access \
                     token of its own: add `client_credentials` to its grant_types"
                ));
            }
            if c.public {
                // Anyone can claim a public client's id: it may not act as a resource server
                // (RFC 7662 §2.1: the caller is authenticated) nor hold grants whose client is
                // the one thing standing between a token and its use (RFC 6749 §4.4, RFC 8693
                // §2.1, CIBA Core §7.1: confidential clients only).
                if c.introspect {
                    return Err(format!(
                        "{key}: a public client cannot introspect (introspect = true needs a \
                         client that authenticates, RFC 7662 §2.1)"
                    ));
                }
                if c.ssf_receiver {
                    return Err(format!(
                        "{key}: a public client cannot be an SSF receiver (ssf_receiver = true \
                         needs a client that authenticates, SSF 1.0 §8.1)"
                    ));
                }
                for g in &c.grant_types {
                    if PUBLIC_FORBIDDEN_GRANTS.contains(&g.as_str()) {
                        return Err(format!(
                            "{key}: a public client cannot use the `{g}` grant; only confidential \
                             clients may (remove it or give the client a secret or jwks)"
                        ));
                    }
                }
            }
        }
        self.validate_resources()?;
        for (i, h) in self.attestation.ek_allowlist.iter().enumerate() {
            if h.len() != 64
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(format!(
                    "key `attestation.ek_allowlist[{i}]`: must be a SHA-256 in lowercase hex (64 characters)"
                ));
            }
        }
        if self.attestation.enrollment_ttl < Duration::from_secs(10)
            || self.attestation.enrollment_ttl > Duration::from_secs(3600)
        {
            return Err("key `attestation.enrollment_ttl`: must be between 10s and 1h".into());
        }
        self.registration.validate()?;
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("users[{i}] (username `{}`)", u.username);
            if u.username.is_empty() || !seen.insert(u.username.as_str()) {
                return Err(format!("{key}: username must be present and unique"));
            }
            // A client_credentials token's `sub` is its client_id: equal to a username, a
            // client's own token would read as that human's (RFC 9068 §5).
            if self.clients.iter().any(|c| c.client_id == u.username) {
                return Err(format!(
                    "{key}: a client has the same id; a token of that client would name this \
                     human as its subject (rename one of them)"
                ));
            }
            identifier(&key, "username", &u.username)?;
            if u.password.is_some() == u.password_hash.is_some() {
                return Err(format!(
                    "{key}: set exactly one of password or password_hash"
                ));
            }
            if let Some(e) = u.email.as_deref().filter(|e| !is_mail_address(e)) {
                return Err(format!("{key}: email {e:?} is not a mail address"));
            }
        }
        for (i, a) in self.agents.iter().enumerate() {
            identifier(&format!("agents[{i}]"), "name", &a.name)?;
        }
        self.cimd.validate()?;
        self.notifications.validate()?;
        self.ssf.validate()?;
        Ok(())
    }

    /// Where this config's relative paths (dev KEK file) are resolved from.
    pub fn base_dir(&self) -> PathBuf {
        self.source
            .as_ref()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

impl RegistrationConfig {
    fn validate(&self) -> Result<(), String> {
        for g in &self.grant_types {
            if !REGISTRABLE_GRANTS.contains(&g.as_str()) {
                return Err(format!(
                    "key `registration.grant_types`: `{g}` cannot be given to a client that \
                     registers itself (only authorization_code, refresh_token, client_credentials)"
                ));
            }
            if g == "client_credentials" && !self.confidential {
                return Err("key `registration.grant_types`: client_credentials needs \
                     `registration.confidential = true` (a public client cannot use it)"
                    .into());
            }
        }
        for t in &self.application_types {
            if !matches!(t.as_str(), "native" | "web") {
                return Err(format!(
                    "key `registration.application_types`: `{t}` is neither native nor web"
                ));
            }
        }
        if self.enabled && self.application_types.is_empty() {
            return Err("key `registration.application_types`: name native, web or both".into());
        }
        for s in &self.scopes {
            if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "key `registration.scopes`: {s:?} is not a scope (no spaces, RFC 6749 §3.3)"
                ));
            }
        }
        if self.per_address_limit == 0 || self.max_clients == 0 {
            return Err(
                "keys `registration.per_address_limit` and `registration.max_clients`: must be \
                 at least 1 (set `registration.enabled = false` to refuse every registration)"
                    .into(),
            );
        }
        if self.per_address_window < Duration::from_secs(60) {
            return Err("key `registration.per_address_window`: must be at least 1m".into());
        }
        if self.expire_unused_after < Duration::from_secs(3600) {
            return Err("key `registration.expire_unused_after`: must be at least 1h".into());
        }
        Ok(())
    }
}

/// Grants only a confidential client may be configured with.
const PUBLIC_FORBIDDEN_GRANTS: [&str; 3] = [
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:openid:params:grant-type:ciba",
];

/// A name clients will send back (client_id, username, agent name) must pass the same check
/// as what they send ([`crate::input::identifier`]), or it could never be used.
impl Config {
    /// `[[resources]]`: URLs a `resource` parameter can name, unique once canonical, with tools
    /// whose scopes the resource declares and words short enough for a consent page.
    fn validate_resources(&self) -> Result<(), String> {
        const MAX_TEXT: usize = 200;
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.resources.iter().enumerate() {
            let key = format!("resources[{i}] (uri `{}`)", r.uri);
            let canonical = crate::input::canonical_resource(&r.uri).ok_or_else(|| {
                format!(
                    "{key}: uri must be an absolute http(s) URL without a fragment (RFC 8707 §2)"
                )
            })?;
            if !seen.insert(canonical) {
                return Err(format!("{key}: another resource has the same URL"));
            }
            let text = |field: &str, v: &str| {
                if v.trim().is_empty()
                    || v.chars().count() > MAX_TEXT
                    || v.chars().any(char::is_control)
                {
                    Err(format!(
                        "{key}: {field} must be 1 to {MAX_TEXT} characters without control characters"
                    ))
                } else {
                    Ok(())
                }
            };
            if let Some(n) = &r.name {
                text("name", n)?;
            }
            for s in &r.scopes {
                if !crate::input::is_scope_token(s) {
                    return Err(format!(
                        "{key}: `{s}` is not one scope token (RFC 6749 §3.3)"
                    ));
                }
            }
            for t in &r.tools {
                text("a tool's name", &t.name)?;
                text("a tool's description", &t.description)?;
                if !r.scopes.is_empty() && !r.scopes.contains(&t.scope) {
                    return Err(format!(
                        "{key}: tool `{}` needs scope `{}`, which the resource does not list in `scopes`",
                        t.name, t.scope
                    ));
                }
            }
        }
        Ok(())
    }
}

fn identifier(key: &str, field: &str, value: &str) -> Result<(), String> {
    crate::input::identifier(|| crate::input::Field::named(field), value)
        .map(drop)
        .map_err(|e| format!("{key}: {e}"))
}

/// `MANDATE_TOKENS_ACCESS_TOKEN_TTL` → `tokens.access_token_ttl`; `MANDATE_LISTEN` → `listen`.
fn apply_override(table: &mut toml::Table, key: &str, raw: &str) {
    let value = parse_env_value(raw);
    for t in TABLES {
        let prefix = t.replace('.', "_");
        if let Some(sub) = key.strip_prefix(&prefix).and_then(|r| r.strip_prefix('_')) {
            let mut at = &mut *table;
            for part in t.split('.') {
                let entry = at
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let toml::Value::Table(inner) = entry else {
                    return;
                };
                at = inner;
            }
            at.insert(sub.to_string(), value);
            return;
        }
    }
    table.insert(key.to_string(), value);
}

/// Numbers, booleans and arrays are TOML literals; anything else is a string.
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_str())
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// A database URL with its password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_nested_and_top_level_keys() {
        let c = Config::from_toml(
            "listen = \"127.0.0.1:1\"\n",
            "t.toml",
            env(&[
                ("MANDATE_LISTEN", "127.0.0.1:0"),
                ("MANDATE_TOKENS_ACCESS_TOKEN_TTL", "2m"),
                ("MANDATE_TOKENS_MAX_DELEGATION_DEPTH", "7"),
                ("MANDATE_KEK", "ignored"),
                ("MANDATE_LOG_FORMAT", "json"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.tokens.access_token_ttl, Duration::from_secs(120));
        assert_eq!(c.tokens.max_delegation_depth, 7);
    }

    #[test]
    fn log_format_is_text_unless_asked_and_refuses_what_it_cannot_write() {
        let c = Config::from_toml("", "t.toml", env(&[])).unwrap();
        assert_eq!(c.log_format, LogFormat::Text);
        let e = Config::from_toml("log_format = \"xml\"\n", "t.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("xml") && e.contains("json"), "{e}");
    }

    #[test]
    fn metrics_are_off_unless_given_an_address_of_their_own() {
        let c = Config::from_toml("", "t.toml", env(&[])).unwrap();
        assert_eq!(c.metrics.listen, None);
        let c = Config::from_toml(
            "",
            "t.toml",
            env(&[("MANDATE_METRICS_LISTEN", "127.0.0.1:9464")]),
        )
        .unwrap();
        assert_eq!(c.metrics.listen.as_deref(), Some("127.0.0.1:9464"));
        for bad in ["nine", "127.0.0.1:8080"] {
            let text = format!("listen = \"127.0.0.1:8080\"\n[metrics]\nlisten = \"{bad}\"\n");
            let e = Config::from_toml(&text, "t.toml", env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("metrics.listen") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn tracing_is_off_unless_given_a_collector_it_can_reach() {
        let c = Config::from_toml("", "t.toml", env(&[])).unwrap();
        assert_eq!(c.tracing.otlp_endpoint, None);
        assert_eq!(c.tracing.sample_ratio, 1.0);
        let c = Config::from_toml(
            "",
            "t.toml",
            env(&[
                ("MANDATE_TRACING_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("MANDATE_TRACING_SAMPLE_RATIO", "0.25"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.tracing.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318")
        );
        assert_eq!(c.tracing.sample_ratio, 0.25);
        for (bad, named) in [
            ("otlp_endpoint = \"https://c:4318\"", "otlp_endpoint"),
            ("otlp_endpoint = \"c:4318\"", "otlp_endpoint"),
            ("otlp_endpoint = \"http://c:4318/?x=1\"", "otlp_endpoint"),
            ("sample_ratio = 1.5", "sample_ratio"),
            ("service_name = \" \"", "service_name"),
        ] {
            let e = Config::from_toml(&format!("[tracing]\n{bad}\n"), "t.toml", env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(named), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = Config::from_toml(
            "[tokens]\naccess_token_ttl = \"ten\"\n",
            "demo.toml",
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("demo.toml") && e.contains("access_token_ttl") && e.contains("line 2"),
            "{e}"
        );
        let e = Config::from_toml("listen = \"nope\"\n", "demo.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`listen`"), "{e}");
        let e = Config::from_toml("colour = 1\n", "demo.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
        let e = Config::from_toml("", "demo.toml", env(&[("MANDATE_LISTEN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`listen`"), "{e}");
        let e = Config::from_toml("", "demo.toml", env(&[("MANDATE_COLOUR", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("MANDATE_COLOUR") && e.contains("colour"), "{e}");
    }

    #[test]
    fn connection_limits_have_defaults_and_env_overrides() {
        let c = Config::from_toml("", "t.toml", env(&[])).unwrap();
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.max_connections, 1024);
        assert_eq!(c.server.max_header_bytes, 16 * 1024);
        assert_eq!(c.server.max_headers, 100);
        let c = Config::from_toml(
            "[server]\nmax_headers = 50\n",
            "t.toml",
            env(&[
                ("MANDATE_SERVER_HEADER_READ_TIMEOUT", "2s"),
                ("MANDATE_SERVER_MAX_CONNECTIONS", "7"),
                ("MANDATE_SERVER_MAX_HEADER_BYTES", "4096"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.server.max_connections, 7);
        assert_eq!(c.server.max_header_bytes, 4096);
        assert_eq!(c.server.max_headers, 50);
        for bad in [
            "[server]\nmax_connections = 0\n",
            "[server]\nheader_read_timeout = \"0s\"\n",
            "[server]\nmax_header_bytes = 100\n",
            "[server]\nmax_headers = 0\n",
        ] {
            let e = Config::from_toml(bad, "t.toml", env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("server."), "{bad}: {e}");
        }
    }

    #[test]
    fn names_clients_send_back_must_be_identifiers() {
        for bad in [
            format!(
                "[[clients]]\nclient_id = \"{}\"\npublic = true\n",
                "c".repeat(300)
            ),
            "[[users]]\nusername = \"al\\nice\"\npassword = \"x\"\n".to_string(),
            "[[agents]]\nname = \"bot\\u0000\"\n".to_string(),
        ] {
            let e = Config::from_toml(&bad, "c.toml", env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("[0]"), "{bad}: {e}");
        }
    }

    #[test]
    fn confidential_clients_need_exactly_one_credential() {
        let e = Config::from_toml("[[clients]]\nclient_id = \"a\"\n", "c.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("clients[0]"), "{e}");
    }

    /// Review item 13: a config that can only be wrong is refused at start, naming the entry.
    /// SSF 1.0 §8.1: a receiver authenticates with its own access token, so it must be a
    /// confidential client with `client_credentials`; `~` names are the receivers' streams.
    #[test]
    fn ssf_8_1_receiver_configs_that_can_only_be_wrong_are_refused() {
        for (text, says) in [
            (
                "[[clients]]\nclient_id = \"p\"\npublic = true\nssf_receiver = true\n",
                "client_credentials",
            ),
            (
                "[[clients]]\nclient_id = \"r\"\nclient_secret = \"s\"\nssf_receiver = true\n",
                "client_credentials",
            ),
            (
                "[[ssf.streams]]\nname = \"~x\"\ndelivery = \"push\"\n\
                 endpoint_url = \"https://rs.example/e\"\naudience = \"rs\"\n",
                "reserved",
            ),
        ] {
            let e = Config::from_toml(text, "c.toml", env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        let ok = "[[clients]]\nclient_id = \"r\"\nclient_secret = \"s\"\n\
                  grant_types = [\"client_credentials\"]\nssf_receiver = true\n\
                  [ssf]\nallow_private_addresses = true\n";
        let c = Config::from_toml(ok, "c.toml", env(&[])).unwrap();
        assert!(c.clients[0].ssf_receiver && c.ssf.allow_private_addresses);
    }

    #[test]
    fn rfc7662_s2_1_configs_that_can_only_be_wrong_are_refused() {
        let user = "[[users]]\nusername = \"alice\"\npassword = \"pw\"\n";
        for (text, says) in [
            (
                "[[clients]]\nclient_id = \"p\"\npublic = true\nintrospect = true\n",
                "cannot introspect",
            ),
            (
                "[[clients]]\nclient_id = \"p\"\npublic = true\n\
                 grant_types = [\"urn:ietf:params:oauth:grant-type:token-exchange\"]\n",
                "token-exchange",
            ),
            (
                "[[clients]]\nclient_id = \"p\"\npublic = true\ngrant_types = [\"client_credentials\"]\n",
                "client_credentials",
            ),
            (
                "[[clients]]\nclient_id = \"p\"\npublic = true\n\
                 grant_types = [\"urn:openid:params:grant-type:ciba\"]\n",
                "ciba",
            ),
            (
                &format!("[[clients]]\nclient_id = \"alice\"\nclient_secret = \"s\"\n{user}"),
                "same id",
            ),
        ] {
            let e = Config::from_toml(text, "c.toml", env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says) && e.contains("c.toml"), "{text}: {e}");
        }
        let fine = format!(
            "[[clients]]\nclient_id = \"cli\"\npublic = true\n\
             grant_types = [\"authorization_code\", \"refresh_token\"]\n{user}"
        );
        assert!(Config::from_toml(&fine, "c.toml", env(&[])).is_ok());
    }

    /// A registration policy that could only be wrong stops the server at start.
    /// RFC 9449: a mistyped DPoP mode stops the server naming the client, never reads as
    /// some default.
    #[test]
    fn rfc9449_dpop_settings_that_can_only_be_wrong_are_refused() {
        for (text, says) in [
            (
                "[[clients]]\nclient_id = \"c\"\ndpop = \"requird\"\n",
                "client `c`, key `dpop`: `requird`",
            ),
            ("[dpop]\nmax_proof_age = \"0s\"\n", "dpop.max_proof_age"),
            ("[dpop]\nnonce_period = \"0s\"\n", "dpop.nonce_period"),
        ] {
            let e = Config::from_toml(text, "c.toml", env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        let ok = "[[clients]]\nclient_id = \"c\"\npublic = true\ndpop = \"required\"\n[dpop]\nrequire_nonce = true\n";
        assert!(
            Config::from_toml(ok, "c.toml", env(&[]))
                .unwrap()
                .dpop
                .require_nonce
        );
    }

    #[test]
    fn rfc7591_registration_policies_that_can_only_be_wrong_are_refused() {
        for (text, says) in [
            (
                "[registration]\ngrant_types = [\"urn:ietf:params:oauth:grant-type:token-exchange\"]\n",
                "token-exchange",
            ),
            (
                "[registration]\ngrant_types = [\"client_credentials\"]\n",
                "confidential",
            ),
            (
                "[registration]\napplication_types = [\"desktop\"]\n",
                "desktop",
            ),
            (
                "[registration]\nenabled = true\napplication_types = []\n",
                "application_types",
            ),
            ("[registration]\nscopes = [\"a b\"]\n", "scopes"),
            ("[registration]\nmax_clients = 0\n", "max_clients"),
            (
                "[registration]\nper_address_window = \"1s\"\n",
                "per_address_window",
            ),
            (
                "[registration]\nexpire_unused_after = \"1m\"\n",
                "expire_unused_after",
            ),
        ] {
            let e = Config::from_toml(text, "c.toml", env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        let c = Config::from_toml(
            "[registration]\nconfidential = true\n\
             grant_types = [\"authorization_code\", \"client_credentials\"]\n",
            "c.toml",
            env(&[("MANDATE_REGISTRATION_ENABLED", "true")]),
        )
        .unwrap();
        assert!(c.registration.enabled && !Config::defaults().registration.enabled);
    }

    /// RFC 8707 §2: a resource is an absolute URI without a fragment; two entries that are the
    /// same URL once canonical, a tool whose scope the resource does not list, and words that
    /// cannot go on a consent page are refused at start, naming the entry.
    #[test]
    fn rfc8707_s2_resources_that_can_only_be_wrong_are_refused() {
        let r = |body: &str| format!("[[resources]]\n{body}\n");
        for (text, says) in [
            (
                r("uri = \"https://mcp.example/mcp#x\""),
                "without a fragment",
            ),
            (r("uri = \"mcp.example/mcp\""), "absolute http(s) URL"),
            (
                format!(
                    "{}{}",
                    r("uri = \"https://mcp.example/mcp\""),
                    r("uri = \"HTTPS://MCP.example:443/mcp\"")
                ),
                "same URL",
            ),
            (
                r("uri = \"https://m.example\"\nscopes = [\"files:read\"]\n\
                   tools = [{ name = \"rm\", scope = \"files:write\", description = \"Deletes a file\" }]"),
                "does not list",
            ),
            (
                r("uri = \"https://m.example\"\nscopes = [\"a b\"]"),
                "one scope token",
            ),
            (
                r("uri = \"https://m.example\"\nname = \"x\\u0007\""),
                "control characters",
            ),
        ] {
            let e = Config::from_toml(&text, "c.toml", env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says) && e.contains("resources["), "{text}: {e}");
        }
        let fine = r(
            "uri = \"https://mcp.example/mcp\"\nname = \"Files\"\nscopes = [\"files:read\"]\n\
                      tools = [{ name = \"read_file\", scope = \"files:read\", description = \"Reads a file\" }]",
        );
        assert!(Config::from_toml(&fine, "c.toml", env(&[])).is_ok());
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
