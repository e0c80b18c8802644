//! The black-box conformance suite (`conformance/`) against a spawned server, with every
//! optional input given: a human who signs in (authorization code + PKCE) and a software agent
//! with a registered key that exchanges the human's token (RFC 8693).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};

use crate::flows::REDIRECT_URI;
use crate::helpers::*;

const AGENT: &str = "conformance-bot";

/// A fresh P-256 key: its PKCS#8 DER and the `[[agents]]` entry registering its public half.
fn agent_key() -> (Vec<u8>, String) {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .unwrap();
    let der = doc.as_ref().to_vec();
    let jwk = serde_json::to_value(
        Jwk::from_encoding_key(&EncodingKey::from_ec_der(&der), Algorithm::ES256).unwrap(),
    )
    .unwrap();
    let toml = format!(
        "[[agents]]\nname = \"{AGENT}\"\npublic_jwk = {{ kty = \"EC\", crv = \"P-256\", x = {}, y = {} }}\n",
        jwk["x"], jwk["y"]
    );
    (der, toml)
}

#[tokio::test]
async fn conformance_suite_passes() {
    for b in backends() {
        let (der, agent_toml) = agent_key();
        let extra = format!(
            "[[clients]]\nclient_id = \"conformance-exchanger\"\nclient_secret = \"exchange-secret\"\n\
             grant_types = [\"urn:ietf:params:oauth:grant-type:token-exchange\"]\n{agent_toml}"
        );
        let app = spawn_app_with(b, &extra).await;
        let target = mandate_conformance::Target {
            issuer: app.url.clone(),
            client_id: "agent-runtime".into(),
            client_secret: "s3cret".into(),
            scope: "orders:read".into(),
            resource_server_id: "orders-api".into(),
            resource_server_secret: "rs-secret".into(),
            audience: "orders-api".into(),
            human: Some(mandate_conformance::Human {
                username: "alice".into(),
                password: "alice-password".into(),
                client_id: "cli".into(),
                redirect_uri: REDIRECT_URI.into(),
                scope: "orders:read orders:write".into(),
            }),
            agent: Some(mandate_conformance::Agent {
                name: AGENT.into(),
                private_key_pkcs8_der: der,
                exchange_client_id: "conformance-exchanger".into(),
                exchange_client_secret: "exchange-secret".into(),
            }),
        };
        let checks = mandate_conformance::run(&target).await;
        assert!(checks.len() > 60, "the suite ran: {} checks", checks.len());
        for section in [
            "RFC 7636 §4.6",
            "RFC 6749 §4.1.3",
            "RFC 6749 §3.1.2",
            "RFC 8693 §4.1",
        ] {
            assert!(
                checks.iter().any(|c| c.id.starts_with(section)),
                "no {section} check ran"
            );
        }
        assert!(
            checks.iter().filter(|c| c.id.contains("RFC 8693")).count() >= 8,
            "the token exchange checks ran"
        );
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| {
                let kind = if c.skipped { "SKIPPED" } else { "FAILED" };
                format!("{kind} {}: {}", c.id, c.detail)
            })
            .collect();
        assert!(
            failed.is_empty(),
            "{b:?}: conformance failures:\n{}",
            failed.join("\n")
        );
        eprintln!("{b:?}: {} conformance checks passed", checks.len());
        app.stop().await;
    }
}
