//! Seeding over HTTP only (the real path): software agents that attest, and pools of live
//! tokens minted with `client_credentials` over many concurrent connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use bytes::Bytes;
use hyper::header::HeaderValue;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::http::{Conn, FORM, JSON, basic, json_str};

/// A software agent with a registered P-256 key (SPEC: Agent attestation, software path).
pub struct Agent {
    pub name: String,
    key: EncodingKey,
    jwk: serde_json::Value,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Agent {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
        let key = EncodingKey::from_ec_der(doc.as_ref());
        let jwk = serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::ES256)?)?;
        Ok(Self {
            name: name.into(),
            key,
            jwk,
        })
    }

    /// The `[[agents]]` entry registering this agent's key.
    pub fn toml(&self) -> String {
        format!(
            "[[agents]]\nname = \"{}\"\npublic_jwk = {{ kty = \"EC\", crv = \"P-256\", x = {}, y = {} }}\n",
            self.name, self.jwk["x"], self.jwk["y"]
        )
    }

    /// The proof JWT over `nonce`: `iss` = `sub` = name, `aud` = issuer, a fresh `jti`.
    pub fn proof(&self, issuer: &str, nonce: &str) -> Result<String, String> {
        let t = now();
        let jti = mandate::crypto::b64url(&mandate::crypto::random_bytes::<12>());
        let claims = json!({"iss": self.name, "sub": self.name, "aud": issuer, "nonce": nonce,
                            "iat": t, "exp": t + 60, "jti": jti});
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key)
            .map_err(|e| format!("cannot sign the proof: {e}"))
    }

    /// `/attest/challenge` then `/attest` with a freshly signed proof; the agent token.
    pub async fn attest(&self, conn: &mut Conn, issuer: &str) -> Result<String, String> {
        let body = Bytes::from(json!({"agent": self.name}).to_string());
        let a = conn.post("/attest/challenge", JSON, None, body).await?;
        let nonce = match json_str(&a.body, "nonce") {
            Some(n) if a.status == 200 => n.to_string(),
            _ => return Err(format!("/attest/challenge: {}", a.excerpt())),
        };
        let proof = self.proof(issuer, &nonce)?;
        let body = json!({"agent": self.name, "nonce": nonce, "proof": proof}).to_string();
        let a = conn.post("/attest", JSON, None, Bytes::from(body)).await?;
        match json_str(&a.body, "agent_token") {
            Some(t) if a.status == 200 && t.starts_with("ey") => Ok(t.to_string()),
            _ => Err(format!("/attest: {}", a.excerpt())),
        }
    }
}

/// Credentials of the bench's clients.
pub struct Creds {
    pub host: HeaderValue,
    pub rs: HeaderValue,
}

impl Creds {
    pub fn new() -> Self {
        Self {
            host: basic("agent-host", "host-secret"),
            rs: basic("orders-api", "rs-secret"),
        }
    }
}

pub const CC_BODY: &str = "grant_type=client_credentials&scope=orders%3Aread&audience=orders-api";

/// One `client_credentials` token for orders-api, as `agent-host`.
pub async fn cc_token(conn: &mut Conn, auth: &HeaderValue) -> Result<String, String> {
    let a = conn
        .post(
            "/token",
            FORM,
            Some(auth),
            Bytes::from_static(CC_BODY.as_bytes()),
        )
        .await?;
    match json_str(&a.body, "access_token") {
        Some(t) if a.status == 200 && t.starts_with("ey") => Ok(t.to_string()),
        _ => Err(format!("/token client_credentials: {}", a.excerpt())),
    }
}

/// `count` live tokens minted over `conns` concurrent connections, each returned as the form
/// body `token=...` that introspection and revocation send (JWTs need no URL-encoding).
pub async fn mint_pool(
    addr: SocketAddr,
    auth: HeaderValue,
    count: usize,
    conns: usize,
) -> anyhow::Result<Vec<Bytes>> {
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let auth = Arc::new(auth);
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        let (next, failures, auth) = (next.clone(), failures.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut out = Vec::new();
            let mut last_err = None;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let mut tries = 0;
                loop {
                    match cc_token(&mut conn, &auth).await {
                        Ok(t) => {
                            out.push(Bytes::from(format!("token={t}")));
                            break;
                        }
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            last_err = Some(e);
                            tries += 1;
                            if tries >= 5 {
                                return (out, last_err);
                            }
                        }
                    }
                }
            }
            (out, last_err)
        }));
    }
    let mut pool = Vec::with_capacity(count);
    let mut last_err = None;
    for t in tasks {
        let (part, err) = t.await?;
        pool.extend(part);
        if err.is_some() {
            last_err = err;
        }
    }
    if pool.len() < count {
        anyhow::bail!(
            "minted only {} of {count} tokens ({} failures); last: {}",
            pool.len(),
            failures.load(Ordering::Relaxed),
            last_err.unwrap_or_default()
        );
    }
    Ok(pool)
}
