//! mandate: an OAuth 2.0 authorization server for AI agents.
//!
//! # Layout
//! Each layer uses only the layers below it (docs/architecture.md draws a request's path).
//!
//! Edge — parses, calls the core, renders:
//! - [`http`]: router, connection limits (`serve`), extractors, the one `OAuthError` → RFC 6749
//!   §5.2 mapping; one file per endpoint.
//! - [`web`]: the pages for humans (sign-in, consent, approvals, sessions) and their `PageError`.
//! - `main.rs` and `src/cli/`: the operator's command line.
//!
//! Protocol — no HTTP or SQL types, never names [`http`] or [`web`]:
//! - [`oauth`]: grants (each with the narrow storage trait it needs), delegation rules, client
//!   authentication, DPoP binding (RFC 9449; the proof checks are the `mandate-dpop` crate's),
//!   introspection, revocation, `OAuthError`.
//! - [`attest`]: agent attestation (software proofs, TPM quotes, TPM-held DPoP keys) and
//!   zero-touch enrollment.
//! - [`policy`]: Cedar policies: loading, validation, decisions, reload.
//!
//! Services — used by the protocol and the edge:
//! - [`jose`]: ES256 keys (generation, KEK envelope, rotation, JWKS) and JWT signing.
//! - [`audit`]: the hash-chained audit log, its checkpoints and its verifier.
//! - [`throttle`]: per-process counters of failed sign-ins and enrollments.
//! - [`cimd`]: Client ID Metadata Documents: URL `client_id`s fetched (SSRF-safe), validated and
//!   cached.
//! - [`notify`]: approval notifications (signed webhooks, mail) from the outbox, by a delivery
//!   task; with [`cimd`], the only module that makes outgoing requests.
//! - [`ssf`]: Shared Signals out: revocations as Security Event Tokens, written to the outbox
//!   with their audit entry (the writer's tap) and pushed (RFC 8935) by notify's worker.
//!
//! Storage — depends only on the types it stores:
//! - [`store`]: the storage traits, the batch planner, the group-commit writer, and one module
//!   per backend (SQLite on rusqlite, PostgreSQL on sqlx).
//!
//! Base — depends on nothing of ours:
//! - [`config`]: typed config from TOML and `MANDATE_*` environment overrides.
//! - [`clock`]: injected time; nothing else reads the system clock.
//! - [`crypto`]: random and time-ordered ids, SHA-256, HMAC.
//! - [`input`]: the one check every untrusted string passes (UTF-8, no NUL or control
//!   characters, bounded identifiers).
//!
//! [`App::build`] wires these from a [`config::Config`]; [`App::run`] serves on a bound listener
//! until the shutdown future resolves.

#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod attest;
pub mod audit;
pub mod cimd;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod http;
pub mod input;
pub mod jose;
#[cfg(test)]
mod layering;
pub mod metrics;
pub mod notify;
pub mod oauth;
pub mod policy;
pub mod ssf;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::jose::kek::{Kek, KekSource};
use crate::jose::{KeyService, Keyring};
use crate::oauth::Ctx;
use crate::oauth::agent::{Agent, Agents};
use crate::oauth::client::{Client, Clients};
use crate::oauth::client_auth::ClientAuthenticator;
use crate::oauth::user::{User, Users};
use crate::store::{SharedStore, Writer};

/// Why the server could not start; each names what the operator must fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open database {url}: {source}")]
    Database {
        url: String,
        source: store::StoreError,
    },
    #[error("cannot migrate database {url}: {source}")]
    Migrate {
        url: String,
        source: store::StoreError,
    },
    #[error(transparent)]
    Kek(#[from] jose::kek::KekError),
    #[error("signing keys: {0}")]
    Keys(#[from] jose::service::KeyServiceError),
    #[error("client `{0}`: cannot hash its secret")]
    ClientSecret(String),
    #[error("user `{0}`: cannot hash the password, or password_hash is not an argon2 PHC string")]
    UserPassword(String),
    #[error("storage: {0}")]
    Store(#[from] store::StoreError),
    #[error("agent `{0}`: {1}")]
    Agent(String, String),
    #[error("attestation.ek_roots: {0}")]
    EkRoots(String),
    #[error("invalid {0}")]
    Policy(#[from] policy::LoadError),
    #[error(transparent)]
    Documents(#[from] cimd::SetupError),
    #[error(transparent)]
    Notifications(#[from] notify::SetupError),
}

/// Opens the database named in the config and brings its schema up to date.
pub async fn open_store(config: &Config) -> Result<SharedStore, StartError> {
    let url = config::redact_url(&config.database_url);
    let store = store::open(&config.database_url, config.server.db_max_connections)
        .await
        .map_err(|source| StartError::Database {
            url: url.clone(),
            source,
        })?;
    store
        .migrate()
        .await
        .map_err(|source| StartError::Migrate { url, source })?;
    Ok(store)
}

/// The key-encryption key from `MANDATE_KEK`, the configured file, or a development file.
pub fn resolve_kek(config: &Config) -> Result<Kek, StartError> {
    let (kek, source) = Kek::resolve(
        std::env::var("MANDATE_KEK").ok(),
        config.kek_file.as_deref(),
        &config.base_dir(),
    )?;
    match source {
        KekSource::GeneratedDevFile(p) | KekSource::ExistingDevFile(p) => tracing::warn!(
            "DEVELOPMENT KEY-ENCRYPTION KEY in use ({}): signing keys are only as safe as that file. \
             Set MANDATE_KEK or kek_file in production.",
            p.display()
        ),
        KekSource::Env | KekSource::File(_) => {}
    }
    Ok(kek)
}

/// The configured Cedar policies (or the default policy), validated against the schema.
pub fn load_policies(config: &Config) -> Result<policy::Policies, StartError> {
    Ok(policy::Policies::load(&config.policy, config.base_dir())?)
}

/// What the writer stamps on audit entries: the version of the policy set in force.
pub fn policy_version(policies: &Arc<policy::Policies>) -> store::PolicyVersion {
    let p = policies.clone();
    Arc::new(move || Some(p.version()))
}

/// The longest lifetime of any token we sign: how long a retired key stays published.
fn retired_key_ttl(config: &Config) -> i64 {
    let longest = config
        .tokens
        .access_token_ttl
        .max(config.tokens.agent_token_ttl);
    longest.as_secs() as i64 + 300
}

/// Connections the metrics listener serves at once.
const METRICS_CONNECTIONS: usize = 16;

pub struct App {
    ctx: Arc<Ctx>,
    writer_task: JoinHandle<()>,
    key_task: JoinHandle<()>,
    policy_task: JoinHandle<()>,
    /// Expires unused registrations and refreshes their CORS origins, when registration is on.
    registration_task: Option<JoinHandle<()>>,
    /// Where `GET /metrics` is served, when `[metrics] listen` is set (see [`App::with_metrics`]).
    metrics_listener: Option<TcpListener>,
    /// Delivers approval notifications, when a channel is configured; told to stop by the
    /// sender.
    notify_task: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
}

impl App {
    /// Connects, migrates, upserts the configured clients, loads keys and starts the writer.
    /// `addr` is the bound listener's address, the issuer when the config names none.
    pub async fn build(config: Config, addr: SocketAddr) -> Result<Self, StartError> {
        Self::build_with_clock(config, addr, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        config: Config,
        addr: SocketAddr,
        clock: SharedClock,
    ) -> Result<Self, StartError> {
        let issuer = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let store = open_store(&config).await?;
        let policies = Arc::new(load_policies(&config)?);
        let version = policy_version(&policies);
        let kek = resolve_kek(&config)?;
        let chain_key = kek.audit_chain_key().clone();
        let dpop = Arc::new(oauth::dpop::Dpop {
            nonces: oauth::dpop::Nonces::new(
                kek.dpop_nonce_key(),
                config.dpop.nonce_period.as_secs() as i64,
            ),
            require_nonce: config.dpop.require_nonce,
            max_age: config.dpop.max_proof_age.as_secs() as i64,
        });
        // The channels first: a revocation at start is signalled like any other.
        let notifier = notify::Notifier::new(&config, &issuer)?;
        let transmitter = ssf::Transmitter::new(&config, &issuer, Some(notifier.waker()));
        let tap: Option<Arc<dyn store::outbox::Tap>> =
            transmitter.enabled().then(|| Arc::new(transmitter) as _);
        remove_gone(
            &config,
            store.as_ref(),
            clock.now(),
            version().as_deref(),
            &chain_key,
            tap.as_deref(),
        )
        .await?;
        let resources = Arc::new(oauth::resource::Resources::new(&config.resources));
        let clients = bootstrap_clients(&config, &store, &clock)
            .await?
            .with_audiences(resources.uris().map(str::to_string));
        let users = Arc::new(bootstrap_users(&config).await?);
        let agents = Arc::new(bootstrap_agents(&config, &store, &clock).await?);
        let ek_roots = Arc::new(load_ek_roots(&config)?);
        let keys = Arc::new(
            KeyService::start(
                store.clone(),
                kek,
                clock.clone(),
                config.keys.rotation_interval.as_secs() as i64,
                retired_key_ttl(&config),
                version.clone(),
            )
            .await?,
        );
        let metrics = Arc::new(metrics::Metrics::new(store.backend()));
        let (writer, writer_task) = Writer::start(
            store.clone(),
            clock.clone(),
            version,
            chain_key,
            metrics.writer(),
        );
        let writer = writer.with_tap(tap);
        audit::seal_plain_tail(store.as_ref(), &writer).await?;
        let key_task = tokio::spawn(key_schedule(keys.clone(), config.keys.check_interval));
        let policy_task = tokio::spawn(policy::watch(policies.clone(), writer.clone()));
        let secret_checks = Arc::new(oauth::secret_check::SecretChecks::default());
        // Registered clients resolve at run time from the database, after the config's.
        let registry = config.registration.enabled.then(|| {
            Arc::new(oauth::registration::Registry::new(
                store.clone(),
                writer.clone(),
                clock.clone(),
                secret_checks.clone(),
                &config.registration,
                resources.uris().map(str::to_string).collect(),
                // Two request timeouts (a request, and a write it queued) and a sweep interval.
                config.server.request_timeout * 2 + REGISTRATION_SWEEP,
            ))
        });
        let clients = match &registry {
            Some(r) => clients.with_registered(r.clone()),
            None => clients,
        };
        // Clients whose id is the https URL of their metadata document, when enabled.
        let documents = cimd::Resolver::new(&config.cimd, &config.base_dir(), clock.clone())?;
        let clients = Arc::new(match documents.enabled() {
            true => clients.with_documents(Arc::new(oauth::documents::DocumentClients::new(
                documents,
                &config.cimd.scopes,
                resources.uris().map(str::to_string).collect(),
            ))),
            false => clients,
        });
        let registration_task = match &registry {
            Some(r) => {
                r.sweep().await?;
                Some(tokio::spawn(registration_schedule(r.clone())))
            }
            None => None,
        };

        let notify_task = notifier.enabled().then(|| {
            let worker = Arc::new(notify::Worker::new(
                store.clone(),
                clock.clone(),
                writer.clone(),
                notifier.clone(),
                keys.clone(),
                &config.notifications,
            ));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(worker.run(async move {
                let _ = stopped.await;
            }));
            (stop, task)
        });

        let auth = ClientAuthenticator::new(
            clients.clone(),
            store.clone(),
            clock.clone(),
            &issuer,
            secret_checks.clone(),
        );
        let ctx = Arc::new(Ctx {
            issuer,
            config: Arc::new(config),
            clock,
            store,
            writer,
            keys,
            clients,
            resources,
            users,
            agents,
            ek_roots,
            policies,
            auth,
            throttle: Default::default(),
            secret_checks,
            dpop,
            registry,
            metrics,
            notifier,
        });
        Ok(Self {
            ctx,
            writer_task,
            key_task,
            policy_task,
            registration_task,
            metrics_listener: None,
            notify_task,
        })
    }

    /// Serves the metrics (`GET /metrics`) on `listener` while [`App::run`] serves, through
    /// the drain too, so a last scrape sees the shutdown.
    pub fn with_metrics(mut self, listener: TcpListener) -> Self {
        self.metrics_listener = Some(listener);
        self
    }

    /// The Shared Signals transmitter of a process that is not the server (the CLI): its
    /// revocations are signalled too, delivered by a running server's worker.
    pub fn offline_tap(config: &Config) -> Option<Arc<dyn store::outbox::Tap>> {
        let issuer = (config.issuer.clone()).unwrap_or_else(|| format!("http://{}", config.listen));
        let t = ssf::Transmitter::new(config, &issuer, None);
        t.enabled().then(|| Arc::new(t) as _)
    }

    pub fn issuer(&self) -> &str {
        &self.ctx.issuer
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.ctx.clone())
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.ctx.keys.ring()
    }

    /// Serves until `shutdown` resolves (under the connection limits of [`http::serve`]), lets
    /// in-flight requests finish, drains the writer (so everything answered is committed) and
    /// closes the database.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        let Self {
            ctx,
            writer_task,
            key_task,
            policy_task,
            registration_task,
            metrics_listener,
            notify_task,
        } = self;
        let store = ctx.store.clone();
        let limits = http::serve::Limits::from_config(&ctx.config.server);
        let (metrics_stop, metrics_task) = match metrics_listener {
            Some(l) => {
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let limits = http::serve::Limits {
                    // A scraper or two, and an operator's curl.
                    max_connections: METRICS_CONNECTIONS,
                    ..limits.clone()
                };
                let task = tokio::spawn(http::serve::serve(
                    l,
                    metrics::router(ctx.clone()),
                    limits,
                    async move {
                        let _ = stopped.await;
                    },
                ));
                (Some(stop), Some(task))
            }
            None => (None, None),
        };
        let notify_stop_within = ctx.config.notifications.timeout * 3;
        let notifier = ctx.notifier.clone();
        drop(ctx);
        // Held long polls (RFC 8936) are answered as the drain starts, not at its end.
        let shutdown = async move {
            shutdown.await;
            notifier.long_polls.stop();
        };
        let served = http::serve::serve(listener, router, limits, shutdown).await;
        if let (Some(stop), Some(task)) = (metrics_stop, metrics_task) {
            let _ = stop.send(());
            if let Ok(Err(e)) = task.await {
                tracing::warn!(error = %e, "the metrics listener failed");
            }
        }
        key_task.abort();
        policy_task.abort();
        if let Some(t) = registration_task {
            t.abort();
        }
        if let Some((stop, mut task)) = notify_task {
            // Sends under way finish (each bounded by `notifications.timeout`), then the
            // worker gives its leases back.
            let _ = stop.send(());
            let within = notify_stop_within + Duration::from_secs(5);
            if tokio::time::timeout(within, &mut task).await.is_err() {
                tracing::warn!("the notification worker did not stop in time");
                task.abort();
            }
        }
        // The writer ends when the last request holding it is gone and its queue is empty.
        if tokio::time::timeout(Duration::from_secs(30), writer_task)
            .await
            .is_err()
        {
            tracing::error!("the writer did not drain within 30s");
        }
        store.close().await;
        served
    }
}

/// SPEC "Invariants": the config (plus what an operator enrolled at run time) is who exists.
/// A client, agent or human that an earlier config declared and this one does not is forgotten
/// at start, and its live tokens and delegations are revoked (audited as `client.removed`,
/// `agent.removed`, `user.removed`). Revocation comes first, so a crash in between only
/// repeats it at the next start. Streams of a client no longer marked `ssf_receiver` are
/// deleted (`ssf.stream_deleted` via `config`).
async fn remove_gone(
    config: &Config,
    store: &dyn store::Store,
    now: i64,
    version: Option<&str>,
    key: &audit::ChainKey,
    tap: Option<&dyn store::outbox::Tap>,
) -> Result<(), StartError> {
    use store::{Named, Party};
    let clients: Vec<String> = config.clients.iter().map(|c| c.client_id.clone()).collect();
    let agents: Vec<String> = config.agents.iter().map(|a| a.name.clone()).collect();
    let users: Vec<String> = config.users.iter().map(|u| u.username.clone()).collect();
    type Kind<'a> = (Named, &'a [String], fn(String) -> Party, &'a str);
    let kinds: [Kind; 3] = [
        (Named::Clients, &clients, Party::Client, "client.removed"),
        (Named::Agents, &agents, Party::Agent, "agent.removed"),
        (Named::Users, &users, Party::User, "user.removed"),
    ];
    for (kind, declared, party, event) in kinds {
        for gone in store.config_names(kind).await? {
            if declared.contains(&gone) {
                continue;
            }
            let n = cut_off(
                store,
                party(gone.clone()),
                (event, "config"),
                now,
                version,
                key,
                tap,
            )
            .await?;
            store.forget_name(kind, &gone).await?;
            tracing::warn!(name = %gone, revoked = n, "{event}: no longer in the config");
        }
    }
    // A stream goes with its receiver's mark (or the client itself): the config says who may
    // hear of revocations (docs/ssf.md).
    let receivers: Vec<&str> = (config.clients.iter())
        .filter(|c| c.ssf_receiver)
        .map(|c| c.client_id.as_str())
        .collect();
    for owner in store.ssf_stream_owners().await? {
        if receivers.contains(&owner.as_str()) {
            continue;
        }
        for s in store.ssf_streams_of(&owner).await? {
            if !store.delete_ssf_stream(&s.id, &owner).await? {
                continue;
            }
            let mut ev = audit::AuditEvent::new("ssf.stream_deleted");
            ev.client_id = Some(owner.clone());
            ev.detail = serde_json::json!({ "stream_id": s.id, "via": "config" });
            let item = store::BatchItem::new(store::WriteOp::None, vec![ev]);
            store.commit_batch(&[item], now, version, key).await?;
            tracing::warn!(client = %owner, stream = %s.id,
                "ssf.stream_deleted: its client is no longer an SSF receiver in the config");
        }
    }
    store.remember_users(&users, now).await?;
    Ok(())
}

/// Revokes every live token of `party` and everything derived from them, with one audit entry
/// `(kind, via)` (`via` says who asked: the config, the CLI), and what `tap` signals of it (Shared
/// Signals) in the same transaction. Returns how many tokens it revoked.
pub async fn cut_off(
    store: &dyn store::Store,
    party: store::Party,
    (kind, via): (&str, &str),
    now: i64,
    version: Option<&str>,
    key: &audit::ChainKey,
    tap: Option<&dyn store::outbox::Tap>,
) -> Result<u64, store::StoreError> {
    let mut ev = audit::AuditEvent::new(kind);
    match &party {
        store::Party::Client(c) => ev.client_id = Some(c.clone()),
        store::Party::User(_) | store::Party::Agent(_) => ev.subject = Some(party.key()),
    }
    ev.detail = serde_json::json!({ "via": via });
    let mut item = store::BatchItem::new(store::WriteOp::RevokeParty(party), vec![ev]);
    if let Some(tap) = tap {
        item = item.tapped(tap, now);
    }
    Ok(
        match store
            .commit_batch(&[item], now, version, key)
            .await?
            .first()
        {
            Some(store::WriteOutcome::Revoked(n)) => *n,
            _ => 0,
        },
    )
}

/// Upserts the configured clients (hashing development secrets) and loads every client.
async fn bootstrap_clients(
    config: &Config,
    store: &SharedStore,
    clock: &SharedClock,
) -> Result<Clients, StartError> {
    let now = clock.now();
    for c in &config.clients {
        let conf = c.clone();
        let client = tokio::task::spawn_blocking(move || Client::from_config(&conf))
            .await
            .map_err(|_| StartError::ClientSecret(c.client_id.clone()))?
            .map_err(|_| StartError::ClientSecret(c.client_id.clone()))?;
        let data = serde_json::to_string(&client)
            .map_err(|_| StartError::ClientSecret(c.client_id.clone()))?;
        store
            .upsert_client(&client.client_id, &data, "config", now)
            .await?;
    }
    let mut list = Vec::new();
    for (id, data) in store.load_clients().await? {
        match serde_json::from_str::<Client>(&data) {
            Ok(c) => list.push(c),
            Err(e) => {
                tracing::error!(client_id = %id, error = %e, "stored client is unreadable; skipped")
            }
        }
    }
    Ok(Clients::new(list))
}

/// Hashes development passwords (argon2id, on blocking threads) and builds the user registry.
async fn bootstrap_users(config: &Config) -> Result<Users, StartError> {
    let mut list = Vec::new();
    for u in &config.users {
        let conf = u.clone();
        let user = tokio::task::spawn_blocking(move || User::from_config(&conf))
            .await
            .map_err(|_| StartError::UserPassword(u.username.clone()))?
            .map_err(|_| StartError::UserPassword(u.username.clone()))?;
        list.push(user);
    }
    Ok(Users::new(list))
}

/// The EK root CAs of `attestation.ek_roots`, paths relative to the config file.
fn load_ek_roots(config: &Config) -> Result<attest::tpm::ek::EkRoots, StartError> {
    let base = config.base_dir();
    let paths: Vec<_> = config
        .attestation
        .ek_roots
        .iter()
        .map(|p| base.join(p))
        .collect();
    attest::tpm::ek::EkRoots::from_pem_or_der_files(&paths)
        .map_err(|e| StartError::EkRoots(e.to_string()))
}

/// Upserts the configured agents and loads every enrolled agent.
async fn bootstrap_agents(
    config: &Config,
    store: &SharedStore,
    clock: &SharedClock,
) -> Result<Agents, StartError> {
    let now = clock.now();
    for a in &config.agents {
        let agent = Agent::from_config(a);
        // Refuse a bad attestation key or PCR policy now, not at the agent's first /attest.
        if let Some(ak) = &agent.ak_public {
            attest::tpm::decode_b64(ak)
                .ok_or_else(|| "ak_public is not base64".to_string())
                .and_then(|b| {
                    attest::tpm::verify::attestation_key(&b)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
                .map_err(|m| StartError::Agent(agent.name.clone(), m))?;
        }
        if let Some(p) = &agent.pcr_policy {
            attest::tpm::pcr::PcrPolicy::from_json(p)
                .map_err(|e| StartError::Agent(agent.name.clone(), format!("pcr_policy: {e}")))?;
        }
        let data = serde_json::to_string(&agent)
            .map_err(|e| StartError::Store(store::StoreError::Corrupt(e.to_string())))?;
        store
            .upsert_agent(&agent.name, &data, "config", now)
            .await?;
    }
    let mut list = Vec::new();
    for (name, data) in store.load_agents().await? {
        match serde_json::from_str::<Agent>(&data) {
            Ok(a) => list.push(a),
            Err(e) => {
                tracing::error!(agent = %name, error = %e, "stored agent is unreadable; skipped")
            }
        }
    }
    Ok(Agents::new(list))
}

/// How often each replica sweeps the registrations (expiry, CORS origins of other replicas'
/// registrations and deletions).
const REGISTRATION_SWEEP: Duration = Duration::from_secs(60);

/// Sweeps the registered clients on a schedule ([`oauth::registration::Registry::sweep`]).
async fn registration_schedule(registry: Arc<oauth::registration::Registry>) {
    let mut tick = tokio::time::interval(REGISTRATION_SWEEP);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = registry.sweep().await {
            tracing::error!(error = %e, "sweeping registered clients failed");
        }
    }
}

/// Checks on a schedule whether rotation is due (one replica rotates) and picks up keys that
/// other replicas or the CLI rotated.
async fn key_schedule(keys: Arc<KeyService>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = keys.tick().await {
            tracing::error!(error = %e, "key rotation check failed");
        }
    }
}
