//! The black-box conformance suite (`conformance/`) against a spawned server.

use crate::helpers::*;

#[tokio::test]
async fn conformance_suite_passes() {
    for b in backends() {
        let app = spawn_app(b).await;
        let target = mandate_conformance::Target {
            issuer: app.url.clone(),
            client_id: "agent-runtime".into(),
            client_secret: "s3cret".into(),
            scope: "orders:read".into(),
            resource_server_id: "orders-api".into(),
            resource_server_secret: "rs-secret".into(),
            audience: "orders-api".into(),
        };
        let checks = mandate_conformance::run(&target).await;
        assert!(checks.len() > 40, "the suite ran");
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.id, c.detail))
            .collect();
        assert!(
            failed.is_empty(),
            "{b:?}: conformance failures:\n{}",
            failed.join("\n")
        );
        app.stop().await;
    }
}
