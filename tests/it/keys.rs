//! Signing-key lifecycle: published before it signs, kept after it stops, one rotation when
//! replicas race, and a wrong KEK refused at start.

use std::sync::Arc;
use std::time::Duration;

use mandate::clock::TestClock;
use mandate::config::Config;
use mandate::jose::{Kek, KeyService};
use serde_json::Value;

use crate::helpers::*;

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_rotation_promotes_the_published_key_and_keeps_the_retired_one() {
    for b in backends() {
        let app = spawn_app(b).await;
        let t1 = app.cc_token(&[("audience", "orders-api")]).await;
        let old = kid_of(&t1);
        let before = kids(&app.get_json("/jwks.json").await.2);
        let next = before.iter().find(|k| **k != old).unwrap().clone();

        rotate_keys(&app);
        // The running server picks the rotation up on its next check (1s in tests).
        let mut after = before.clone();
        for _ in 0..50 {
            after = kids(&app.get_json("/jwks.json").await.2);
            if after.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            after.len(),
            3,
            "{b:?}: retired, current and a new next key: {after:?}"
        );
        assert!(
            after.contains(&old),
            "the retired key stays published while its tokens live"
        );
        let t2 = app.cc_token(&[("audience", "orders-api")]).await;
        assert_eq!(kid_of(&t2), next, "the key published in advance signs now");
        assert_eq!(app.introspect(&t1).await["active"], true);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_a_due_rotation_rotate_exactly_once() {
    for b in backends() {
        let db = test_db(b).await;
        let config = Config::from_toml(&config_text(&db, ""), "t.toml", Vec::new()).unwrap();
        let clock = Arc::new(TestClock::new(1_000_000));
        let s1 = mandate::open_store(&config).await.unwrap();
        let s2 = mandate::open_store(&config).await.unwrap();
        let k1 = KeyService::start(
            s1,
            Kek::from_bytes(&[7; 32]),
            clock.clone(),
            100,
            700,
            std::sync::Arc::new(|| None),
        )
        .await
        .unwrap();
        let k2 = KeyService::start(
            s2,
            Kek::from_bytes(&[7; 32]),
            clock.clone(),
            100,
            700,
            std::sync::Arc::new(|| None),
        )
        .await
        .unwrap();
        for round in 0..4 {
            clock.advance(150);
            let (a, b2) = tokio::join!(k1.tick(), k2.tick());
            let rotations = [a.unwrap(), b2.unwrap()].iter().filter(|r| **r).count();
            assert_eq!(rotations, 1, "{b:?} round {round}");
            k1.reload().await.unwrap();
            assert_eq!(k1.ring().signing_kid(), k2.ring().signing_kid());
        }
    }
}

#[tokio::test]
async fn a_wrong_kek_stops_the_server_with_a_clear_error() {
    let app = spawn_app(Backend::Sqlite).await;
    let db = app.stop().await;
    std::fs::write(db.dir.path().join("kek"), base64_32(9)).unwrap();
    let out = mandate_cli(
        &[
            "migrate",
            "--config",
            db.dir.path().join("mandate.toml").to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "migrate does not need the KEK");
    let out = mandate_cli(
        &[
            "keys",
            "list",
            "--config",
            db.dir.path().join("mandate.toml").to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot decrypt signing key"), "{err}");
}

fn base64_32(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}
