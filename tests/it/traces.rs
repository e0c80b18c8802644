//! OpenTelemetry traces over OTLP/HTTP: a collector in the test (decoding the protobuf the
//! exporter sends) sees one token exchange under the trace id its caller sent in `traceparent`
//! (W3C Trace Context §3.2), with the spans of client authentication, the policy decision, the
//! database and the durable write, the writer's commit linked to it, and the exchange's audit
//! entry naming the trace.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::Value;

use crate::agents::TestAgent;
use crate::flows::alice_token;
use crate::helpers::*;

/// A collector: every span of every export it was sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    /// Starts it on a free port; returns it and its base URL.
    async fn start() -> (Collector, String) {
        let c = Collector::default();
        let spans = c.spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let spans = spans.clone();
                async move {
                    let req = ExportTraceServiceRequest::decode(body).unwrap();
                    let mut all = spans.lock().unwrap();
                    for rs in req.resource_spans {
                        let service = rs
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .any(|a| a.key == "service.name");
                        assert!(service, "every export names its service");
                        for ss in rs.scope_spans {
                            all.extend(ss.spans);
                        }
                    }
                    // OTLP/HTTP §: a success is 200 with an (empty) ExportTraceServiceResponse.
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (c, url)
    }

    /// The spans received so far with `trace_id`, waiting up to 15 s for `until` to hold.
    async fn wait_for(&self, until: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        for _ in 0..150 {
            let spans = self.spans.lock().unwrap().clone();
            if until(&spans) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let names: Vec<String> = self
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        panic!("the collector did not get the spans expected; it has {names:?}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3c_trace_context_one_exchange_is_one_trace_and_its_audit_entry_names_it() {
    let (collector, endpoint) = Collector::start().await;
    let agent = TestAgent::new("build-bot");
    let db = test_db(Backend::Sqlite).await;
    let extra = format!(
        "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
         grant_types = [\"{TE}\"]\n{}\n[tracing]\notlp_endpoint = \"{endpoint}\"\n\
         service_name = \"mandate-test\"\n",
        agent.toml()
    );
    let config = write_config(&db, &extra);
    // The SDK's batch delay (OTEL_BSP_SCHEDULE_DELAY), shortened so the test need not wait 5 s.
    let server = spawn_process_with(
        &config,
        "warn",
        Stdio::inherit(),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await;
    let app = TestApp::of_process(db, config, &server);
    let alice = alice_token(&app, "orders:read").await;
    let actor = agent.attest(&app).await;

    let resp = app
        .http
        .post(format!("{}/token", app.url))
        .basic_auth(AGENT_HOST.0, Some(AGENT_HOST.1))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .form(&[
            ("grant_type", TE),
            ("subject_token", alice.as_str()),
            ("subject_token_type", AT),
            ("actor_token", actor.as_str()),
            ("actor_token_type", JWT),
            ("scope", "orders:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A malformed traceparent is ignored: the request is traced on a trace of its own.
    let resp = app
        .http
        .get(format!("{}/jwks.json", app.url))
        .header("traceparent", "00-not-a-trace-01")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let ours = |spans: &[Span]| -> Vec<Span> {
        spans
            .iter()
            .filter(|s| hex(&s.trace_id) == TRACE)
            .cloned()
            .collect()
    };
    let named = |spans: &[Span], name: &str| spans.iter().any(|s| s.name == name);
    let spans = collector
        .wait_for(|all| {
            let t = ours(all);
            ["POST /token", "client_auth", "policy", "store.write"]
                .iter()
                .all(|n| named(&t, n))
                && all.iter().any(|s| {
                    s.name == "writer.commit" && s.links.iter().any(|l| hex(&l.trace_id) == TRACE)
                })
                && named(all, "GET /jwks.json")
        })
        .await;
    let trace = ours(&spans);

    // The server span continues the caller's: its parent is the caller's span (§3.2.2.3).
    let request = trace.iter().find(|s| s.name == "POST /token").unwrap();
    assert_eq!(hex(&request.parent_span_id), PARENT);
    assert_eq!(request.kind, 2, "SPAN_KIND_SERVER");
    let attr = |s: &Span, key: &str| {
        s.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
            .map(|v| format!("{v:?}"))
    };
    assert!(
        attr(request, "http.route").is_some_and(|v| v.contains("/token")),
        "{request:?}"
    );
    assert!(attr(request, "http.response.status_code").is_some_and(|v| v.contains("200")));
    // Client authentication and the policy decision are the request's children; the policy
    // span says what it decided; the database was asked within the trace.
    for name in ["client_auth", "policy", "store.write"] {
        let s = trace.iter().find(|s| s.name == name).unwrap();
        let mut parent = s.parent_span_id.clone();
        // Walk up to the request span (a child may sit under another of the request's spans).
        let mut hops = 0;
        while parent != request.span_id {
            let up = trace
                .iter()
                .find(|p| p.span_id == parent)
                .unwrap_or_else(|| panic!("{name}: a parent outside the request"));
            parent = up.parent_span_id.clone();
            hops += 1;
            assert!(hops < 10);
        }
    }
    let policy = trace.iter().find(|s| s.name == "policy").unwrap();
    assert!(attr(policy, "decision").is_some_and(|v| v.contains("permit")));
    assert!(
        trace.iter().any(|s| s.name.starts_with("db.")),
        "no database span in {:?}",
        trace.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // The malformed header started a trace of its own, not one made of its bytes.
    let jwks = spans.iter().find(|s| s.name == "GET /jwks.json").unwrap();
    assert!(jwks.parent_span_id.is_empty());
    assert_ne!(hex(&jwks.trace_id), "0".repeat(32));

    // The exchange's audit entry names the trace.
    let entries = app.audit_entries().await;
    let issued: Vec<Value> = entries
        .iter()
        .filter(|e| e.kind == "token.issued")
        .map(|e| serde_json::from_str(&e.detail).unwrap())
        .collect();
    assert!(
        issued.iter().any(|d| d["trace_id"] == TRACE),
        "no token.issued entry names {TRACE}: {issued:?}"
    );
    // Every entry written while tracing is on names a trace (each request is sampled).
    for e in &entries {
        let d: Value = serde_json::from_str(&e.detail).unwrap();
        if e.kind.starts_with("token.") {
            assert!(
                d["trace_id"].as_str().is_some_and(|t| t.len() == 32),
                "{e:?}"
            );
        }
    }
    drop(server);
}
