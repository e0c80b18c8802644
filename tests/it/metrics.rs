//! Prometheus metrics on their own listener: a scripted flow moves the counters it should, the
//! database's counts match what the flow left, no caller's input or party's name becomes a
//! label, and docs/metrics.md and the Grafana dashboard name exactly the metrics served.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::agents::TestAgent;
use crate::flows::alice_token;
use crate::helpers::*;

const CIBA: &str = "urn:openid:params:grant-type:ciba";
const DOC: &str = include_str!("../../docs/metrics.md");
const DASHBOARD: &str = include_str!("../../docs/grafana/mandate.json");

/// One scrape: every sample as `(name, labels) → value`.
struct Scrape {
    text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    async fn of(url: &str) -> Scrape {
        let resp = reqwest::get(url).await.unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        let text = resp.text().await.unwrap();
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                let labels = labels
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").unwrap();
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels, value.parse::<f64>().unwrap())
            })
            .collect();
        Scrape { text, samples }
    }

    /// The value of the one sample `name` whose labels include `labels`; 0 if there is none.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
        found.first().copied().unwrap_or(0.0)
    }

    /// The metric families served (`# TYPE name kind`).
    fn families(&self) -> BTreeSet<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    }
}

/// The metric names docs/metrics.md documents: the first cell of each table row that is a
/// name in backticks.
fn documented() -> BTreeSet<String> {
    DOC.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("mandate_") || n.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// A family's name as documented: counters are documented with their `_total` sample name.
fn family_of(sample: &str) -> &str {
    for suffix in ["_total", "_bucket", "_count", "_sum"] {
        if let Some(f) = sample.strip_suffix(suffix) {
            return f;
        }
    }
    sample
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_scripted_flow_and_never_label_a_caller_or_a_party() {
    for backend in backends() {
        let agent = TestAgent::new("build-bot");
        let extra = format!(
            "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
             grant_types = [\"{TE}\", \"{CIBA}\"]\n{}\n[policy]\nhigh_risk_scopes = \
             [\"payments:write\"]\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            agent.toml()
        );
        let app = spawn_app_with(backend, &extra).await;
        let url = app.metrics_url.clone().expect("a metrics listener");
        let label = app.label();

        // The flow: alice signs in (authorization_code), her agent attests and acts for her
        // (token exchange: a policy permit), then asks for a high-risk scope (CIBA: a
        // policy approval, one request pending), a client gets two tokens and revokes one.
        let alice = alice_token(&app, "orders:read payments:write").await;
        let actor = agent.attest(&app).await;
        let (status, v) = token_exchange(
            &app,
            AGENT_HOST,
            &alice,
            Some(&actor),
            &[("scope", "orders:read")],
        )
        .await;
        assert_eq!(status, 200, "{label}: {v}");
        let resp = app
            .post_form(
                "/bc-authorize",
                Some(AGENT_HOST),
                &[
                    ("subject_token", &alice),
                    ("subject_token_type", AT),
                    ("actor_token", &actor),
                    ("actor_token_type", JWT),
                    ("scope", "payments:write"),
                    ("binding_message", "Pay invoice 4711"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 200, "{label}");
        let kept = app.cc_token(&[]).await;
        let revoked = app.cc_token(&[]).await;
        let resp = app
            .post_form(
                "/revoke",
                Some(("agent-runtime", "s3cret")),
                &[("token", &revoked)],
            )
            .await;
        assert_eq!(resp.status(), 200, "{label}");
        assert_eq!(app.introspect(&kept).await["active"], true);
        // Refusals: a wrong secret, and a grant type made up to add a series.
        let resp = app
            .post_form(
                "/token",
                Some(("agent-runtime", "wrong-secret")),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(resp.status(), 401, "{label}");
        let made_up = format!("urn:x:{}", "q".repeat(40));
        let resp = app
            .post_form(
                "/token",
                Some(("agent-runtime", "s3cret")),
                &[("grant_type", &made_up)],
            )
            .await;
        assert_eq!(resp.status(), 400, "{label}");
        // A path made up to add a series, and the metrics asked of the OAuth listener.
        let (status, _, _) = app.get_json("/made-up-path-zzqqzz").await;
        assert_eq!(status, 404);
        let (status, _, _) = app.get_json("/metrics").await;
        assert_eq!(
            status, 404,
            "{label}: metrics are not on the OAuth listener"
        );

        let s = Scrape::of(&url).await;
        let tr = "mandate_token_requests_total";
        for (grant, outcome, n) in [
            ("authorization_code", "issued", 1.0),
            ("token_exchange", "issued", 1.0),
            ("client_credentials", "issued", 2.0),
            ("client_credentials", "invalid_client", 1.0),
            ("other", "unsupported_grant_type", 1.0),
        ] {
            assert_eq!(
                s.get(tr, &[("grant_type", grant), ("outcome", outcome)]),
                n,
                "{label}: {grant} {outcome}\n{}",
                s.text
            );
        }
        // Every /token request is counted by status and timed.
        let token_requests = 6.0;
        let by_status: f64 = ["200", "400", "401"]
            .iter()
            .map(|st| {
                s.get(
                    "mandate_http_requests_total",
                    &[("endpoint", "/token"), ("status", st)],
                )
            })
            .sum();
        assert_eq!(by_status, token_requests, "{label}");
        assert_eq!(
            s.get(
                "mandate_http_request_duration_seconds_count",
                &[("endpoint", "/token")]
            ),
            token_requests,
            "{label}"
        );
        assert_eq!(
            s.get(
                "mandate_http_requests_total",
                &[("endpoint", "unmatched"), ("status", "404")]
            ),
            2.0,
            "{label}: the made-up path and /metrics"
        );
        // What the writer committed.
        let revocations = s.get("mandate_revocations_total", &[("scope", "token")]);
        assert_eq!(revocations, 1.0, "{label}");
        assert_eq!(
            s.get("mandate_revocation_cascade_tokens_sum", &[]),
            1.0,
            "{label}"
        );
        for (event, n) in [
            ("token.revoked", 1.0),
            ("ciba.requested", 1.0),
            ("token.introspected", 1.0),
            ("consent.granted", 1.0),
        ] {
            assert_eq!(
                s.get("mandate_audit_entries_total", &[("event", event)]),
                n,
                "{label}: {event}"
            );
        }
        assert!(s.get("mandate_writer_batch_items_count", &[]) >= 1.0);
        assert!(s.get("mandate_writer_commit_seconds_count", &[]) >= 1.0);
        // Policy: the exchange was permitted, the high-risk request needs the human.
        let pd = "mandate_policy_decisions_total";
        assert!(
            s.get(pd, &[("action", "delegate"), ("decision", "permit")]) >= 1.0,
            "{label}"
        );
        assert_eq!(
            s.get(pd, &[("action", "delegate"), ("decision", "approval")]),
            1.0,
            "{label}"
        );
        // The database's counts: what the flow left live.
        assert_eq!(s.get("mandate_store_up", &[]), 1.0);
        assert_eq!(
            s.get("mandate_approval_requests", &[("state", "pending")]),
            1.0,
            "{label}"
        );
        let live_access = s.get("mandate_live_tokens", &[("kind", "access")]);
        // alice's, the delegated one, the client's kept one (the revoked one is not live).
        assert_eq!(live_access, 3.0, "{label}\n{}", s.text);
        assert_eq!(
            s.get("mandate_live_tokens", &[("kind", "refresh")]),
            1.0,
            "{label}"
        );
        let pool = if backend == Backend::Sqlite {
            "readers"
        } else {
            "general"
        };
        assert!(
            s.get(
                "mandate_db_connections",
                &[("pool", pool), ("state", "max")]
            ) >= 1.0
        );
        assert!(s.get("mandate_signing_key_age_seconds", &[]) >= 0.0);
        assert!(s.get("process_resident_memory_bytes", &[]) > 0.0);
        let backend_name = if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        };
        assert_eq!(
            s.get("mandate_build_info", &[("backend", backend_name)]),
            1.0
        );

        // No caller's input, party, secret or token is in the scrape.
        for leak in [
            "made-up-path",
            made_up.as_str(),
            "alice",
            "agent-runtime",
            "agent-host",
            "build-bot",
            "s3cret",
            "wrong-secret",
            "Pay invoice",
            kept.as_str(),
            alice.as_str(),
        ] {
            assert!(!s.text.contains(leak), "{label}: the scrape holds {leak}");
        }

        // docs/metrics.md documents every family served, and names nothing that is not.
        let served: BTreeSet<String> = s.families();
        let documented: BTreeSet<String> = documented()
            .iter()
            .map(|n| family_of(n).to_string())
            .collect();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "served but not in docs/metrics.md: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "in docs/metrics.md but not served: {unserved:?}"
        );
        // The dashboard queries only metrics that are served.
        let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
        let mut exprs = Vec::new();
        collect_exprs(&dashboard, &mut exprs);
        assert!(exprs.len() >= 10, "the dashboard has its panels");
        let names = s
            .samples
            .iter()
            .map(|(n, _, _)| n.as_str())
            .collect::<BTreeSet<_>>();
        for e in &exprs {
            let used: Vec<&str> = e
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("mandate_") || w.starts_with("process_"))
                .collect();
            assert!(!used.is_empty(), "a panel without a metric: {e}");
            for u in used {
                assert!(names.contains(u), "the dashboard queries {u}, not served");
            }
        }
        app.stop().await;
    }
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_binary_serves_metrics_on_their_own_address_only_when_asked() {
    let plain_db = test_db(Backend::Sqlite).await;
    let mut plain = spawn_process(&write_config(&plain_db, "")).await;
    assert_eq!(plain.metrics, None, "off by default");
    plain.child.kill().await.unwrap();
    let db = test_db(Backend::Sqlite).await;
    let config = write_config(&db, "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let server = spawn_process(&config).await;
    let url = server.metrics.clone().expect("the `metrics on` line");
    let s = Scrape::of(&url).await;
    assert!(s.get("process_cpu_seconds_total", &[]) > 0.0, "{}", s.text);
    assert!(s.get("process_open_fds", &[]) > 0.0);
    assert_eq!(s.get("mandate_build_info", &[("backend", "sqlite")]), 1.0);
    let other = url.replace("/metrics", "/token");
    assert_eq!(reqwest::get(&other).await.unwrap().status(), 404);
    // The OAuth listener is where it was, and does not serve the metrics.
    let resp = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
