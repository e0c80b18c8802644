//! `/attest/challenge` and `/attest`, software path (SPEC "Agent attestation").

use base64::Engine;
use serde_json::{Value, json};

use crate::agents::{TestAgent, now};
use crate::helpers::*;

#[tokio::test]
async fn software_attestation_yields_a_short_lived_agent_token_once_per_nonce() {
    let bot = TestAgent::new("build-bot");
    let other = TestAgent::new("other-bot");
    let extra = format!("{}{}", bot.toml(), other.toml());
    for b in backends() {
        let app = spawn_app_with(b, &extra).await;
        // SPEC: 32 random bytes, base64url without padding, expiring within 5 minutes.
        let resp = app
            .http
            .post(format!("{}/attest/challenge", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let c: Value = resp.json().await.unwrap();
        let nonce = c["nonce"].as_str().unwrap();
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(nonce)
                .unwrap()
                .len(),
            32
        );
        assert!(c["expires_in"].as_i64().unwrap() <= 300);

        let body =
            json!({"agent": "build-bot", "nonce": nonce, "proof": bot.proof(&app, nonce, None)});
        let (status, v) = bot.post_attest(&app, body.clone()).await;
        assert_eq!(status, 200, "{b:?}: {v}");
        assert_eq!(v["token_type"], "urn:ietf:params:oauth:token-type:jwt");
        assert_eq!(v["expires_in"], 300);
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(
                    v["agent_token"]
                        .as_str()
                        .unwrap()
                        .split('.')
                        .nth(1)
                        .unwrap(),
                )
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["sub"], "agent:build-bot");
        assert_eq!(claims["att"], "software");
        // An agent token is not an access token for resource servers.
        assert_eq!(
            app.introspect(v["agent_token"].as_str().unwrap()).await,
            json!({"active": false})
        );

        // The nonce is single use.
        let (status, v) = bot.post_attest(&app, body).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "replay"
        );
        // A fresh challenge gives a fresh, different agent token.
        assert_ne!(bot.attest(&app).await, bot.attest(&app).await);
        app.stop().await;
    }
}

#[tokio::test]
async fn attestation_refuses_bad_proofs_and_audits_the_refusal() {
    let bot = TestAgent::new("build-bot");
    let other = TestAgent::new("other-bot");
    let extra = format!("{}{}", bot.toml(), other.toml());
    let app = spawn_app_with(Backend::Sqlite, &extra).await;
    let n = bot.challenge(&app, true).await;
    let cases: Vec<(&str, Value)> = vec![
        (
            "signed by another agent's key",
            json!({"agent": "build-bot", "nonce": n, "proof": other.proof(&app, &n, Some(json!({"iss": "build-bot", "sub": "build-bot", "aud": app.url, "nonce": n, "iat": now(), "exp": now() + 60, "jti": "x"})))}),
        ),
        (
            "nonce bound to another agent",
            json!({"agent": "other-bot", "nonce": n, "proof": other.proof(&app, &n, None)}),
        ),
        (
            "wrong audience",
            json!({"agent": "build-bot", "nonce": n, "proof": bot.proof(&app, &n, Some(json!({"iss": "build-bot", "sub": "build-bot", "aud": "https://elsewhere", "nonce": n, "iat": now(), "exp": now() + 60, "jti": "x"})))}),
        ),
        (
            "proof over another nonce",
            json!({"agent": "build-bot", "nonce": n, "proof": bot.proof(&app, "abc", None)}),
        ),
        (
            "lifetime over 5 minutes",
            json!({"agent": "build-bot", "nonce": n, "proof": bot.proof(&app, &n, Some(json!({"iss": "build-bot", "sub": "build-bot", "aud": app.url, "nonce": n, "iat": now(), "exp": now() + 301, "jti": "x"})))}),
        ),
        (
            "unknown agent",
            json!({"agent": "ghost", "nonce": n, "proof": bot.proof(&app, &n, None)}),
        ),
        (
            "unknown nonce",
            json!({"agent": "build-bot", "nonce": "AAAA", "proof": bot.proof(&app, "AAAA", None)}),
        ),
    ];
    let before = app.audit_len().await;
    for (why, body) in &cases {
        let (status, v) = bot.post_attest(&app, body.clone()).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{why}: {v}"
        );
    }
    // Every refusal of an enrolled agent is audited; a name nobody enrolled writes nothing
    // (review item 9: nothing the unauthenticated caller chose is stored).
    assert_eq!(
        app.audit_len().await,
        before + cases.len() as i64 - 1,
        "every refusal of an enrolled agent is audited"
    );
    // After all those refusals the nonce is still good for the right proof.
    let (status, _) = bot
        .post_attest(
            &app,
            json!({"agent": "build-bot", "nonce": n, "proof": bot.proof(&app, &n, None)}),
        )
        .await;
    assert_eq!(status, 200);
    // Malformed requests are invalid_request.
    for body in [
        json!({"agent": "build-bot"}),
        json!({"agent": "build-bot", "nonce": n, "quote": "AAAA", "signature": "AAAA"}),
    ] {
        let (status, v) = bot.post_attest(&app, body).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_request")),
            "{v}"
        );
    }
    app.stop().await;
}

/// A flood of bad attestations under an enrolled agent's name (anyone may send one) is
/// audited, and signalled to security streams, five times per agent per 15 minutes; past that
/// each is still checked and refused, but not written: the audit log is never pruned. It is no
/// lockout: the agent's own good proof still passes, and a success starts the count again.
#[tokio::test]
async fn a_flood_of_refused_attestations_is_audited_five_times_and_locks_nobody_out() {
    let bot = TestAgent::new("build-bot");
    let other = TestAgent::new("other-bot");
    for backend in backends() {
        let app = spawn_app_with(backend, &format!("{}{}", bot.toml(), other.toml())).await;
        let before = app.audit_len().await;
        for _ in 0..8 {
            refused(&app, &bot, &other).await;
        }
        assert_eq!(
            app.audit_len().await,
            before + 5,
            "{backend:?}: five audited"
        );
        // Another agent's refusals are counted apart.
        let n = other.challenge(&app, true).await;
        let body = json!({"agent": "other-bot", "nonce": n, "proof": bot.proof(&app, &n, None)});
        assert_eq!(other.post_attest(&app, body).await.0, 400);
        assert_eq!(app.audit_len().await, before + 6, "{backend:?}");
        // No lockout: the agent's own proof passes, and its refusals are audited again after.
        bot.attest(&app).await;
        let after = app.audit_len().await;
        refused(&app, &bot, &other).await;
        assert_eq!(app.audit_len().await, after + 1, "{backend:?}");
        app.stop().await;
    }
}

/// One attestation of `bot` refused: its proof is signed by `other`'s key.
async fn refused(app: &TestApp, bot: &TestAgent, other: &TestAgent) {
    let n = bot.challenge(app, true).await;
    let claims = json!({"iss": "build-bot", "sub": "build-bot", "aud": app.url, "nonce": n,
        "iat": now(), "exp": now() + 60, "jti": "x"});
    let body =
        json!({"agent": "build-bot", "nonce": n, "proof": other.proof(app, &n, Some(claims))});
    let (status, v) = bot.post_attest(app, body).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
}
