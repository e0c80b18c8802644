//! Prometheus metrics, served on their own listen address (`[metrics] listen`, off by default)
//! so that they never share a port, a connection limit or a CORS rule with the OAuth
//! endpoints. `docs/metrics.md` is the reference; `docs/grafana/mandate.json` a dashboard.
//!
//! Two kinds of value:
//! - counted as things happen: HTTP requests and their latency (the outermost layer, see
//!   `http::request_id`), token requests by grant and outcome (`http::token`), the writer's
//!   batches, commits, revocations and audit entries ([`WriterMetrics`], counted once the
//!   batch is durable), policy decisions (counted by `policy::Policies`);
//! - read at the scrape: live tokens and approval requests (one query, at most every
//!   [`STORE_EVERY`], on its own connection), database connections, the signing key's age,
//!   the writer's queue and the process's own figures ([`process`]).
//!
//! Every label takes its values from a set fixed by the code (a route template, an OAuth error
//! code, an audit event kind), never from a caller's input, so no request can grow the number
//! of series. No client, user or agent is ever a label.

mod process;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::oauth::Ctx;
use crate::store::{StoreGauges, WriteOp, WriteOutcome};

/// The media type of the OpenMetrics text format, which Prometheus asks for and reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How often a scrape may count live tokens and approval requests in the database: counting
/// scans the token table, so scrapes closer together than this get the last count.
pub const STORE_EVERY: Duration = Duration::from_secs(10);
/// A scrape does not wait longer than this for the database's counts.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    grant_type: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevocationLabels {
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    action: &'static str,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    backend: &'static str,
}

/// Seconds, from half a millisecond to ten seconds: a lookup answers in well under a
/// millisecond, a write waits for a commit, anything past the request timeout is a stall.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// What the group-commit writer counts once a batch is durable (`store::writer`).
#[derive(Clone)]
pub struct WriterMetrics {
    batch_items: Histogram,
    commit_seconds: Histogram,
    failed_batches: Counter,
    revocations: Family<RevocationLabels, Counter>,
    cascade: Histogram,
    audit: Family<EventLabels, Counter>,
}

impl WriterMetrics {
    fn new() -> Self {
        Self {
            // 1, 2, 4, ... 512 (the writer's largest batch).
            batch_items: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            commit_seconds: latency_histogram(),
            failed_batches: Counter::default(),
            revocations: Family::default(),
            // 1, 4, 16, ... 65,536 tokens revoked by one revocation.
            cascade: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            audit: Family::default(),
        }
    }

    /// A batch of `items` committed (or failed) in `took`.
    pub fn batch(&self, items: usize, took: Duration, ok: bool) {
        self.batch_items.observe(items as f64);
        self.commit_seconds.observe(took.as_secs_f64());
        if !ok {
            self.failed_batches.inc();
        }
    }

    /// What one committed item did: a revocation's reach, and the audit entries it wrote.
    pub fn committed<'a>(
        &self,
        op: &WriteOp,
        outcome: &WriteOutcome,
        events: impl Iterator<Item = &'a str>,
    ) {
        let scope = match op {
            WriteOp::Revoke { .. } => Some("token"),
            WriteOp::RevokeSession { .. } => Some("session"),
            WriteOp::RevokeParty(_) => Some("party"),
            _ => None,
        };
        if let (Some(scope), WriteOutcome::Revoked(n)) = (scope, outcome) {
            self.revocations
                .get_or_create(&RevocationLabels { scope })
                .inc();
            self.cascade.observe(*n as f64);
        }
        for event in events {
            self.audit
                .get_or_create(&EventLabels {
                    event: event.to_string(),
                })
                .inc();
        }
    }
}

/// The values counted as they happen, and the last counts read from the database.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    grants: Family<GrantLabels, Counter>,
    writer: WriterMetrics,
    /// The database's counts and when they were read.
    store: Mutex<Option<(Instant, StoreGauges)>>,
    backend: &'static str,
}

impl Metrics {
    pub fn new(backend: &'static str) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "mandate_http_requests",
            "HTTP requests answered, by route template (`unmatched` for no route) and status",
            http_requests.clone(),
        );
        let http_seconds =
            Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register_with_unit(
            "mandate_http_request_duration",
            "Time from the request's head to its response, by route template",
            Unit::Seconds,
            http_seconds.clone(),
        );
        let grants = Family::<GrantLabels, Counter>::default();
        registry.register(
            "mandate_token_requests",
            "Token endpoint requests by grant type and outcome: `issued` or the OAuth error code",
            grants.clone(),
        );
        let writer = WriterMetrics::new();
        for scope in ["token", "session", "party"] {
            writer
                .revocations
                .get_or_create(&RevocationLabels { scope })
                .inc_by(0);
        }
        registry.register(
            "mandate_writer_batch_items",
            "Writes committed together in one transaction by the group-commit writer",
            writer.batch_items.clone(),
        );
        registry.register_with_unit(
            "mandate_writer_commit",
            "Time the writer took to commit a batch (what every write request waits for)",
            Unit::Seconds,
            writer.commit_seconds.clone(),
        );
        registry.register(
            "mandate_writer_failed_batches",
            "Batches whose transaction failed (each item was then retried on its own)",
            writer.failed_batches.clone(),
        );
        registry.register(
            "mandate_revocations",
            "Revocations committed, by what was revoked: a token, a session, or a removed party",
            writer.revocations.clone(),
        );
        registry.register(
            "mandate_revocation_cascade_tokens",
            "Tokens newly revoked by one revocation, the derived ones included",
            writer.cascade.clone(),
        );
        registry.register(
            "mandate_audit_entries",
            "Audit entries written, by event (token.issued, ciba.approved, ...)",
            writer.audit.clone(),
        );
        Self {
            registry,
            http_requests,
            http_seconds,
            grants,
            writer,
            store: Mutex::new(None),
            backend,
        }
    }

    /// The writer's share, handed to `store::Writer::start`.
    pub fn writer(&self) -> WriterMetrics {
        self.writer.clone()
    }

    /// One answered HTTP request. `endpoint` is the route template the router matched.
    pub fn http(&self, endpoint: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                endpoint: endpoint.to_string(),
                status,
            })
            .inc();
        self.http_seconds
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// One token request: its [`grant_label`] and `outcome`, `issued` or an OAuth error code.
    pub fn token_request(&self, grant_type: &'static str, outcome: &'static str) {
        self.grants
            .get_or_create(&GrantLabels {
                grant_type,
                outcome,
            })
            .inc();
    }

    /// The OpenMetrics text of every metric, reading what is read at the scrape.
    pub async fn render(&self, ctx: &Ctx) -> String {
        let now = ctx.clock.now();
        let store = self.store_gauges(ctx, now).await;
        let scraped = scraped_registry(ctx, self.backend, now, store.as_ref());
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &scraped);
        let _ = encode_eof(&mut out);
        out
    }

    /// The database's counts, read at most every [`STORE_EVERY`]; `None` when the database
    /// did not answer in time (then `mandate_store_up` is 0 and the counts are left out).
    async fn store_gauges(&self, ctx: &Ctx, now: i64) -> Option<StoreGauges> {
        if let Some((at, g)) = self
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if at.elapsed() < STORE_EVERY {
                return Some(g.clone());
            }
        }
        match tokio::time::timeout(STORE_TIMEOUT, ctx.store.gauges(now)).await {
            Ok(Ok(g)) => {
                *self.store.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), g.clone()));
                Some(g)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "metrics: the database's counts could not be read");
                None
            }
            Err(_) => {
                tracing::warn!("metrics: the database's counts took longer than 5s");
                None
            }
        }
    }
}

/// The `grant_type` label: the grants this server knows by a short name, anything else
/// `other`, so a caller cannot add series.
pub fn grant_label(grant_type: Option<&str>) -> &'static str {
    match grant_type {
        None => "none",
        Some("authorization_code") => "authorization_code",
        Some("refresh_token") => "refresh_token",
        Some("client_credentials") => "client_credentials",
        Some("urn:ietf:params:oauth:grant-type:token-exchange") => "token_exchange",
        Some("urn:openid:params:grant-type:ciba") => "ciba",
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => "jwt_bearer",
        Some(_) => "other",
    }
}

/// The values read at this scrape, as a registry of their own.
fn scraped_registry(
    ctx: &Ctx,
    backend: &'static str,
    now: i64,
    store: Option<&StoreGauges>,
) -> Registry {
    let mut r = Registry::default();
    let build = Family::<BuildLabels, Gauge>::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            backend,
        })
        .set(1);
    r.register(
        "mandate_build_info",
        "1, labelled with this server's version and database backend",
        build,
    );
    let up = Gauge::<i64>::default();
    up.set(i64::from(store.is_some()));
    r.register(
        "mandate_store_up",
        "1 when the database answered this scrape's counts, else 0",
        up,
    );
    if let Some(s) = store {
        let live = Family::<KindLabels, Gauge>::default();
        // Every kind and state is shown, at 0 when there is none, so a panel reads 0, not
        // "no data".
        for kind in ["access", "refresh", "agent"] {
            live.get_or_create(&KindLabels { kind: kind.into() }).set(0);
        }
        for (kind, n) in &s.live_tokens {
            live.get_or_create(&KindLabels { kind: kind.clone() })
                .set(clamp(*n));
        }
        r.register(
            "mandate_live_tokens",
            "Unrevoked, unexpired tokens by kind (counted at most every 10 s)",
            live,
        );
        let approvals = Family::<StateLabels, Gauge>::default();
        for state in ["pending", "expired", "approved", "denied", "issued"] {
            approvals
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(0);
        }
        for (state, n) in &s.approval_requests {
            approvals
                .get_or_create(&StateLabels {
                    state: state.clone(),
                })
                .set(clamp(*n));
        }
        let outbox = Family::<StateLabels, Gauge>::default();
        for (state, n) in &s.outbox {
            outbox
                .get_or_create(&StateLabels {
                    state: state.clone(),
                })
                .set(clamp(*n));
        }
        r.register(
            "mandate_outbox_messages",
            "Notifications in the outbox by state: pending (not yet delivered), delivered, \
             failed (given up), expired (their request expired); settled ones until purged",
            outbox,
        );
        r.register(
            "mandate_approval_requests",
            "Stored CIBA requests by state: pending (waiting for the human), expired (never \
             decided), approved (not yet collected), denied, issued",
            approvals,
        );
    }
    let pools = Family::<PoolLabels, Gauge>::default();
    for p in ctx.store.pools() {
        for (state, n) in [("max", p.max), ("open", p.open), ("busy", p.busy)] {
            pools
                .get_or_create(&PoolLabels {
                    pool: p.name,
                    state,
                })
                .set(clamp(n as u64));
        }
    }
    r.register(
        "mandate_db_connections",
        "Database connections by pool: the most it opens (max), open now, in use now",
        pools,
    );
    let decisions = Family::<PolicyLabels, Counter>::default();
    for (action, decision, n) in ctx.policies.decisions() {
        decisions
            .get_or_create(&PolicyLabels { action, decision })
            .inc_by(n);
    }
    r.register(
        "mandate_policy_decisions",
        "Cedar policy decisions by action (delegate, attest) and decision (permit, approval, deny)",
        decisions,
    );
    let queued = Gauge::<i64>::default();
    queued.set(clamp(ctx.writer.queued() as u64));
    r.register(
        "mandate_writer_queue",
        "Writes waiting for the writer's next batch",
        queued,
    );
    let key_age = Gauge::<i64>::default();
    key_age.set(now.saturating_sub(ctx.keys.ring().signing_since()));
    r.register_with_unit(
        "mandate_signing_key_age",
        "Time since the key that signs tokens now started signing",
        Unit::Seconds,
        key_age,
    );
    process::register(&mut r, now);
    r
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The metrics listener's routes: `GET /metrics`, nothing else.
pub fn router(ctx: Arc<Ctx>) -> axum::Router {
    use axum::extract::State;
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    async fn metrics(State(ctx): State<Arc<Ctx>>) -> axum::response::Response {
        let body = ctx.metrics.render(&ctx).await;
        let mut resp = body.into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        resp
    }
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "metrics are at /metrics\n") })
        .with_state(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_grant_type_cannot_add_a_series() {
        assert_eq!(
            grant_label(Some("urn:ietf:params:oauth:grant-type:token-exchange")),
            "token_exchange"
        );
        assert_eq!(grant_label(Some("x".repeat(1000).as_str())), "other");
        assert_eq!(grant_label(Some("")), "other");
        assert_eq!(grant_label(None), "none");
    }

    #[test]
    fn the_writer_counts_revocations_their_reach_and_audit_entries() {
        let m = Metrics::new("sqlite");
        let w = m.writer();
        w.batch(3, Duration::from_millis(2), true);
        w.committed(
            &WriteOp::RevokeSession { sid: "s".into() },
            &WriteOutcome::Revoked(5),
            ["token.revoked"].into_iter(),
        );
        let mut out = String::new();
        encode_registry(&mut out, &m.registry).unwrap();
        assert!(
            out.contains("mandate_revocations_total{scope=\"session\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("mandate_revocation_cascade_tokens_sum 5.0"),
            "{out}"
        );
        assert!(
            out.contains("mandate_audit_entries_total{event=\"token.revoked\"} 1"),
            "{out}"
        );
        assert!(out.contains("mandate_writer_batch_items_count 1"), "{out}");
    }
}
