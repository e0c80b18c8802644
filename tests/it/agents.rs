//! Test agents with registered P-256 keys that attest over HTTP (the software path).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::TestApp;

pub struct TestAgent {
    pub name: String,
    pub key: EncodingKey,
    pub jwk: Value,
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl TestAgent {
    pub fn new(name: &str) -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let key = EncodingKey::from_ec_der(doc.as_ref());
        let jwk =
            serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap()).unwrap();
        Self {
            name: name.into(),
            key,
            jwk,
        }
    }

    /// The `[[agents]]` entry registering this agent's key.
    pub fn toml(&self) -> String {
        format!(
            "[[agents]]\nname = \"{}\"\npublic_jwk = {{ kty = \"EC\", crv = \"P-256\", x = {}, y = {} }}\n",
            self.name, self.jwk["x"], self.jwk["y"]
        )
    }

    pub fn proof(&self, app: &TestApp, nonce: &str, claims: Option<Value>) -> String {
        let claims = claims.unwrap_or_else(|| {
            json!({"iss": self.name, "sub": self.name, "aud": app.url, "nonce": nonce,
                   "iat": now(), "exp": now() + 60, "jti": format!("{}-{nonce}", self.name)})
        });
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key).unwrap()
    }

    pub async fn challenge(&self, app: &TestApp, bind: bool) -> String {
        let mut req = app.http.post(format!("{}/attest/challenge", app.url));
        if bind {
            req = req.json(&json!({"agent": self.name}));
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["nonce"].as_str().unwrap().to_string()
    }

    pub async fn post_attest(&self, app: &TestApp, body: Value) -> (u16, Value) {
        let resp = app
            .http
            .post(format!("{}/attest", app.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    /// Challenge, prove, and return the agent token.
    pub async fn attest(&self, app: &TestApp) -> String {
        let nonce = self.challenge(app, true).await;
        let proof = self.proof(app, &nonce, None);
        let (status, v) = self
            .post_attest(
                app,
                json!({"agent": self.name, "nonce": nonce, "proof": proof}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v["agent_token"].as_str().unwrap().to_string()
    }
}
