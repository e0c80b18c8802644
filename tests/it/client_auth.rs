//! Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::*;

fn p256() -> (EncodingKey, Value) {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .unwrap();
    let key = EncodingKey::from_ec_der(doc.as_ref());
    let jwk =
        serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap()).unwrap();
    (key, jwk)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn assertion(key: &EncodingKey, claims: Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k1".into());
    jsonwebtoken::encode(&h, &claims, key).unwrap()
}

#[tokio::test]
async fn rfc7523_s3_private_key_jwt_checks_signature_audience_expiry_and_single_use_jti() {
    let (key, jwk) = p256();
    let (other_key, _) = p256();
    let extra = format!(
        "[[clients]]\nclient_id = \"jwt-client\"\ngrant_types = [\"client_credentials\"]\nscopes = [\"orders:read\"]\n\
         jwks = {{ keys = [ {{ kty = \"EC\", crv = \"P-256\", x = {x}, y = {y}, kid = \"k1\", alg = \"ES256\" }} ] }}\n",
        x = jwk["x"],
        y = jwk["y"]
    );
    for b in backends() {
        let app = spawn_app_with(b, &extra).await;
        let claims = |aud: &str, exp: i64, jti: &str| json!({"iss": "jwt-client", "sub": "jwt-client", "aud": aud, "exp": exp, "iat": now(), "jti": jti});
        let token_endpoint = format!("{}/token", app.url);
        let post = |a: String| {
            let app = &app;
            async move {
                let resp = app
                    .post_form(
                        "/token",
                        None,
                        &[
                            ("grant_type", "client_credentials"),
                            (
                                "client_assertion_type",
                                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                            ),
                            ("client_assertion", &a),
                        ],
                    )
                    .await;
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap())
            }
        };
        let good = assertion(&key, claims(&token_endpoint, now() + 60, "jti-1"));
        let (status, body) = post(good.clone()).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = post(good).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "replayed jti"
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("already used")
        );

        let refused = [
            (
                "wrong audience",
                assertion(&key, claims("https://elsewhere", now() + 60, "jti-2")),
            ),
            (
                "expired",
                assertion(&key, claims(&app.url, now() - 120, "jti-3")),
            ),
            (
                "too long-lived",
                assertion(&key, claims(&app.url, now() + 7200, "jti-4")),
            ),
            (
                "other key",
                assertion(&other_key, claims(&app.url, now() + 60, "jti-5")),
            ),
            (
                "sub differs",
                assertion(
                    &key,
                    json!({"iss": "jwt-client", "sub": "x", "aud": app.url, "exp": now() + 60, "jti": "j6"}),
                ),
            ),
            (
                "no jti",
                assertion(
                    &key,
                    json!({"iss": "jwt-client", "sub": "jwt-client", "aud": app.url, "exp": now() + 60}),
                ),
            ),
            (
                "HS256",
                jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &claims(&app.url, now() + 60, "jti-7"),
                    &EncodingKey::from_secret(b"k"),
                )
                .unwrap(),
            ),
        ];
        for (why, a) in refused {
            let (status, body) = post(a).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (401, Some("invalid_client")),
                "{why}: {body}"
            );
        }
        // The issuer itself is an accepted audience too.
        let (status, _) = post(assertion(&key, claims(&app.url, now() + 60, "jti-8"))).await;
        assert_eq!(status, 200);
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc6749_s2_3_1_secret_methods_and_failures() {
    let app = spawn_app(Backend::Sqlite).await;
    // client_secret_post
    let resp = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "agent-runtime"),
                ("client_secret", "s3cret"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    // A wrong secret, then the right one again (the verified-secret cache must not confuse them).
    for (secret, status) in [
        ("Xy9-not-it", 401),
        ("s3cret", 200),
        ("s3cret ", 401),
        ("s3cret", 200),
    ] {
        let resp = app
            .post_form(
                "/token",
                Some(("agent-runtime", secret)),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(resp.status(), status, "{secret:?}");
        if status == 401 {
            assert_eq!(
                resp.headers()["www-authenticate"],
                "Basic realm=\"mandate\""
            );
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"], "invalid_client");
            assert!(!v.to_string().contains(secret), "the secret is not echoed");
        }
    }
    // A public client id alone does not authenticate a confidential client.
    let resp = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "agent-runtime"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 401);
    app.stop().await;
}
