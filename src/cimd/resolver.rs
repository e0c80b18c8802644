//! [`Resolver`]: a `client_id` URL in, a cached [`ClientMetadata`] or a [`Refusal`] out.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use super::cache::{self, Bounds, Lookup, Outcome, Pending, Store};
use super::domains::{DomainPolicy, Verdict};
use super::fetch::{self, Limits};
use super::{ClientIdUrl, ClientMetadata, Refusal, document, url};
use crate::clock::SharedClock;
use crate::config::CimdConfig;

/// Why the resolver could not be built from the config; names what the operator must fix.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cimd.extra_ca_file {path}: {why}")]
    ExtraCa { path: String, why: String },
    #[error("cimd: {0}")]
    Config(String),
}

/// Resolves Client ID Metadata Documents (module doc of [`super`]). Cheap to clone; clones share
/// the cache and the fetch bound.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: bool,
    allow_private: bool,
    domains: DomainPolicy,
    timeout: Duration,
    limits: Limits,
    bounds: Bounds,
    tls: TlsConnector,
    clock: SharedClock,
    store: Mutex<Store>,
    fetches: Semaphore,
    /// Fetches under way per host: one slow host cannot hold every slot of `fetches`.
    hosts: Mutex<std::collections::HashMap<String, usize>>,
}

/// At most this many fetches from one host at once; more are `Busy` at once.
const PER_HOST_FETCHES: usize = 2;

/// A fetch slot of one host, given back when dropped.
struct HostSlot<'a> {
    inner: &'a Inner,
    host: String,
}

impl Drop for HostSlot<'_> {
    fn drop(&mut self) {
        let mut hosts = (self.inner.hosts.lock()).unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = hosts.get_mut(&self.host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                hosts.remove(&self.host);
            }
        }
    }
}

impl Inner {
    fn host_slot(&self, host: &str) -> Option<HostSlot<'_>> {
        let mut hosts = (self.hosts.lock()).unwrap_or_else(PoisonError::into_inner);
        let n = hosts.entry(host.to_string()).or_insert(0);
        if *n >= PER_HOST_FETCHES {
            return None;
        }
        *n += 1;
        Some(HostSlot {
            inner: self,
            host: host.to_string(),
        })
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("enabled", &self.inner.enabled)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Builds the resolver of `[cimd]`; `base_dir` resolves a relative `extra_ca_file` (the
    /// config file's folder, [`crate::config::Config::base_dir`]). A disabled one refuses every
    /// id with [`Refusal::Disabled`].
    pub fn new(
        config: &CimdConfig,
        base_dir: &Path,
        clock: SharedClock,
    ) -> Result<Self, SetupError> {
        let extra = match &config.extra_ca_file {
            Some(p) => read_cas(&base_dir.join(p))?,
            None => Vec::new(),
        };
        let tls = fetch::tls_connector(extra).map_err(|why| SetupError::ExtraCa {
            path: config
                .extra_ca_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            why,
        })?;
        let domains = DomainPolicy::new(&config.allowed_domains, &config.blocked_domains)
            .map_err(|bad| SetupError::Config(format!("{bad:?} is not a domain pattern")))?;
        let secs = |d: Duration| d.as_secs().max(1);
        Ok(Self {
            inner: Arc::new(Inner {
                enabled: config.enabled,
                allow_private: config.allow_private_addresses,
                domains,
                timeout: config.timeout,
                limits: Limits {
                    connect_timeout: config.connect_timeout,
                    max_bytes: config.max_bytes.min(crate::config::CIMD_MAX_BYTES_CAP),
                },
                bounds: Bounds {
                    min: secs(config.cache_min_ttl),
                    max: secs(config.cache_max_ttl),
                    default: secs(config.cache_default_ttl),
                },
                tls,
                clock,
                store: Mutex::new(Store::new(
                    config.cache_max_entries,
                    config.failure_ttl.as_secs(),
                )),
                fetches: Semaphore::new(config.max_concurrent_fetches.max(1)),
                hosts: Mutex::new(std::collections::HashMap::new()),
            }),
        })
    }

    /// Whether URL `client_id`s are accepted (and `client_id_metadata_document_supported` may
    /// be advertised).
    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// The client that `client_id` names: from the cache while it is fresh, else fetched (one
    /// fetch per URL at a time; concurrent callers share its result). A failure is answered
    /// from memory for `failure_ttl`.
    pub async fn resolve(&self, client_id: &str) -> Result<Arc<ClientMetadata>, Refusal> {
        let inner = &self.inner;
        if !inner.enabled {
            return Err(Refusal::Disabled);
        }
        let url = url::parse(client_id).map_err(Refusal::Url)?;
        let listed = match inner.domains.verdict(&url.host_str()) {
            Verdict::Blocked => return Err(Refusal::Blocked),
            Verdict::NotAllowed => return Err(Refusal::NotAllowed),
            Verdict::Listed => true,
            Verdict::Unlisted => false,
        };
        let pending = match self.store().lookup(url.as_str(), inner.clock.now()) {
            Lookup::Hit(doc) => return Ok(doc),
            Lookup::RecentFailure(r) => return Err(r),
            Lookup::Fetch(p) => p,
        };
        let guard = Abandon {
            resolver: self,
            url: url.as_str(),
            pending: &pending,
        };
        let outcome = pending
            .get_or_init(|| self.fetch(&url, listed))
            .await
            .clone();
        self.store()
            .finish(url.as_str(), &pending, &outcome, inner.clock.now());
        drop(guard);
        outcome.map(|(doc, _)| doc)
    }

    /// Documents and failures in the cache (for tests and metrics).
    pub fn cached(&self) -> usize {
        self.store().len()
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // The store is consistent after every call (nothing in it panics halfway on purpose).
        self.inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn fetch(&self, url: &ClientIdUrl, listed: bool) -> Outcome {
        let inner = &self.inner;
        let timeout_ms = u64::try_from(inner.timeout.as_millis()).unwrap_or(u64::MAX);
        let _host = inner.host_slot(&url.host_str()).ok_or(Refusal::Busy)?;
        let _permit = tokio::time::timeout(inner.timeout, inner.fetches.acquire())
            .await
            .map_err(|_| Refusal::Busy)?
            .map_err(|_| Refusal::Busy)?;
        let work = async {
            let addrs = fetch::vetted_addresses(url, inner.allow_private).await?;
            fetch::get(url, &addrs, &inner.tls, &inner.limits).await
        };
        let fetched = tokio::time::timeout(inner.timeout, work)
            .await
            .map_err(|_| {
                tracing::info!(target: "mandate::cimd", url = url.as_str(), "client metadata fetch timed out");
                Refusal::Timeout(timeout_ms)
            })??;
        let doc = document::validate(url, &fetched.body, listed).inspect_err(|r| {
            tracing::info!(target: "mandate::cimd", url = url.as_str(), refusal = %r, "client metadata document refused");
        })?;
        let secs = cache::lifetime(&fetched.headers, inner.clock.now(), inner.bounds);
        Ok((Arc::new(doc), secs))
    }
}

/// Forgets a fetch under way when its last waiting caller is cancelled before it finished.
struct Abandon<'a> {
    resolver: &'a Resolver,
    url: &'a str,
    pending: &'a Pending,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        self.resolver.store().abandon(self.url, self.pending);
    }
}

/// Every certificate of `cimd.extra_ca_file` (PEM, or one DER certificate).
fn read_cas(path: &Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    crate::crypto::read_certificates(path).map_err(|why| SetupError::ExtraCa {
        path: path.display().to_string(),
        why,
    })
}
