//! Policy evaluation per exchange (the `delegate` decision), with the example policy set and with
//! 1,000 generated policies. Run: `cargo bench --bench policy`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use mandate::config::PolicyConfig;
use mandate::policy::{DelegateRequest, Loaded};

fn request(agent: &str, scopes: &[&str]) -> DelegateRequest {
    DelegateRequest {
        agent: agent.into(),
        attestation: "tpm".into(),
        dpop: "none".into(),
        user: "alice".into(),
        user_scopes: vec![
            "orders:read".into(),
            "deploy:staging".into(),
            "deploy:production".into(),
        ],
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        audiences: vec!["orders-api".into()],
        depth: 1,
        client: "agent-runtime".into(),
        actors: vec![],
        ttl: 600,
        time: 1_700_000_000,
    }
}

/// 1,000 policies of the shapes operators write: per-agent permits over scope sets, and forbids.
fn thousand(dir: &std::path::Path) {
    let mut text = String::new();
    for i in 0..1000 {
        if i % 10 == 9 {
            text.push_str(&format!(
                "@id(\"forbid-{i}\")\nforbid (principal == Mandate::Agent::\"agent-{i}\", action == Mandate::Action::\"delegate\", resource)\n\
                 when {{ context.scopes.contains(\"scope-{i}:write\") && context.depth > 1 }};\n"
            ));
        } else {
            text.push_str(&format!(
                "@id(\"permit-{i}\")\n@max_ttl(\"15m\")\npermit (principal == Mandate::Agent::\"agent-{i}\", action == Mandate::Action::\"delegate\", resource)\n\
                 when {{ [\"scope-{i}:read\", \"orders:read\"].containsAll(context.scopes) && principal.attestation == \"tpm\" }};\n"
            ));
        }
    }
    std::fs::write(dir.join("many.cedar"), text).unwrap();
}

fn benches(c: &mut Criterion) {
    let examples = Loaded::load(
        &PolicyConfig {
            files: vec!["policies/*.cedar".into()],
            high_risk_scopes: vec![],
        },
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
    )
    .unwrap();
    let r = request("build-bot", &["deploy:staging"]);
    c.bench_function("policy: delegate decision, example set", |b| {
        b.iter(|| examples.delegate(&r))
    });

    let dir = tempfile::tempdir().unwrap();
    thousand(dir.path());
    let many = Loaded::load(
        &PolicyConfig {
            files: vec!["*.cedar".into()],
            high_risk_scopes: vec![],
        },
        dir.path(),
    )
    .unwrap();
    let r = request("agent-500", &["orders:read"]);
    assert_eq!(many.delegate(&r).outcome, mandate::policy::Outcome::Permit);
    c.bench_function("policy: delegate decision, 1,000 policies", |b| {
        b.iter(|| many.delegate(&r))
    });
}

criterion_group!(policy, benches);
criterion_main!(policy);
