//! Criterion benchmarks of the hot paths: minting an access token (ES256 sign), verifying one,
//! and one introspection through the router (hash lookup, audit entry through the group-commit
//! writer, JSON response) on SQLite.
//!
//! Run: `cargo bench --bench tokens`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use mandate::App;
use mandate::config::Config;
use mandate::oauth::token::AccessClaims;
use tower::ServiceExt;

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: "alice".into(),
        aud: vec!["orders-api".into()],
        exp: 2_000_000_000,
        iat: 1_700_000_000,
        jti: "bench-jti-0123456789".into(),
        client_id: "agent-runtime".into(),
        scope: "orders:read orders:write".into(),
        sid: Some("sid-1".into()),
        act: Some(mandate::oauth::act::Actor::nest("agent:build-bot", None)),
        att: Some("software".into()),
        cnf: None,
        dpop_key: None,
    }
}

fn app(rt: &tokio::runtime::Runtime, dir: &tempfile::TempDir) -> App {
    std::fs::write(
        dir.path().join("kek"),
        "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
    )
    .unwrap();
    let text = format!(
        "database_url = \"sqlite://{}\"\nkek_file = \"{}\"\n\
         [[clients]]\nclient_id = \"agent-runtime\"\nclient_secret = \"s3cret\"\n\
         grant_types = [\"client_credentials\"]\nscopes = [\"orders:read\"]\n\
         [[clients]]\nclient_id = \"orders-api\"\nclient_secret = \"rs-secret\"\nintrospect = true\n",
        dir.path().join("bench.db").display(),
        dir.path().join("kek").display()
    );
    let config = Config::from_toml(&text, "bench.toml", Vec::new()).unwrap();
    rt.block_on(App::build(config, SocketAddr::from(([127, 0, 0, 1], 8080))))
        .unwrap()
}

fn form(path: &str, basic: &str, body: String) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", basic)
        .body(Body::from(body))
        .unwrap()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = app(&rt, &dir);
    let ring = app.keyring();
    let claims = claims();

    c.bench_function("mint access token (ES256 sign)", |b| {
        b.iter(|| ring.sign("at+jwt", &claims).unwrap())
    });
    let token = ring.sign("at+jwt", &claims).unwrap();
    c.bench_function("verify access token (ES256)", |b| {
        b.iter(|| ring.verify::<AccessClaims>(&token, "at+jwt").unwrap())
    });

    let router = app.router();
    let issued = rt.block_on(async {
        let resp = router
            .clone()
            .oneshot(form(
                "/token",
                "Basic YWdlbnQtcnVudGltZTpzM2NyZXQ=",
                "grant_type=client_credentials".into(),
            ))
            .await
            .unwrap();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["access_token"].as_str().unwrap().to_string()
    });
    let body = format!("token={issued}");
    // orders-api:rs-secret
    let basic = "Basic b3JkZXJzLWFwaTpycy1zZWNyZXQ=";
    c.bench_function("introspect through the router (SQLite, audited)", |b| {
        b.to_async(&rt).iter(|| async {
            let resp = router
                .clone()
                .oneshot(form("/introspect", basic, body.clone()))
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap()
        })
    });
}

criterion_group!(tokens, benches);
criterion_main!(tokens);
