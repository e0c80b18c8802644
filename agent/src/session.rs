//! An agent's session with the server: its current agent token, attested again before expiry,
//! and the exchanges it makes with it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::Error;
use crate::client::{Client, Exchange, ExchangeResponse};
use crate::software::SoftwareKey;

/// How an agent proves what it is at `/attest`: evidence over the server's nonce.
pub trait Attester: Send + Sync {
    /// The evidence fields of the `/attest` body for `nonce` (base64url, as the server sent it).
    fn evidence(
        &self,
        agent: &str,
        issuer: &str,
        nonce: &str,
    ) -> impl std::future::Future<Output = Result<Value, Error>> + Send;
}

impl Attester for SoftwareKey {
    async fn evidence(&self, agent: &str, issuer: &str, nonce: &str) -> Result<Value, Error> {
        Ok(json!({ "proof": self.proof(agent, issuer, nonce)? }))
    }
}

struct Current {
    token: String,
    expires_at: Instant,
    lifetime: Duration,
}

/// An agent's agent token, refreshed by attesting again when less than a fifth of its lifetime
/// (and at least 30 s) is left, so a token handed out is never about to expire.
pub struct AgentSession<A: Attester> {
    client: Client,
    issuer: String,
    agent: String,
    attester: A,
    current: Mutex<Option<Current>>,
}

impl<A: Attester> AgentSession<A> {
    pub fn new(client: Client, issuer: &str, agent: &str, attester: A) -> Self {
        Self {
            client,
            issuer: issuer.trim_end_matches('/').to_string(),
            agent: agent.to_string(),
            attester,
            current: Mutex::new(None),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn attester(&self) -> &A {
        &self.attester
    }

    /// Challenge, evidence, `/attest`: a fresh agent token.
    pub async fn attest(&self) -> Result<String, Error> {
        let mut current = self.current.lock().await;
        self.attest_locked(&mut current).await
    }

    async fn attest_locked(&self, current: &mut Option<Current>) -> Result<String, Error> {
        let nonce = self.client.challenge(&self.agent).await?;
        let evidence = self
            .attester
            .evidence(&self.agent, &self.issuer, &nonce)
            .await?;
        let t = self.client.attest(&self.agent, &nonce, evidence).await?;
        let lifetime = Duration::from_secs(t.expires_in);
        *current = Some(Current {
            token: t.agent_token.clone(),
            expires_at: Instant::now() + lifetime,
            lifetime,
        });
        Ok(t.agent_token)
    }

    /// The agent token, attesting again first if it is missing or close to expiry.
    pub async fn token(&self) -> Result<String, Error> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref() {
            let margin = (c.lifetime / 5).max(Duration::from_secs(30));
            if c.expires_at.saturating_duration_since(Instant::now()) > margin {
                return Ok(c.token.clone());
            }
        }
        self.attest_locked(&mut current).await
    }

    /// RFC 8693 delegation to this agent: `subject_token` (a human's token, or one delegated to
    /// this agent) in, a token this agent acts with out — `scope` and `audience` only narrow.
    pub async fn act_for(
        &self,
        subject_token: &str,
        scope: Option<&str>,
        audience: &[&str],
    ) -> Result<ExchangeResponse, Error> {
        let actor = self.token().await?;
        self.client
            .exchange(&Exchange {
                subject_token,
                actor_token: &actor,
                scope,
                audience,
                dpop: None,
            })
            .await
    }

    /// A narrower token for a sub-agent: `my_token` (delegated to this agent) as the subject,
    /// the sub-agent's own agent token as the actor.
    pub async fn delegate(
        &self,
        my_token: &str,
        sub_agent_token: &str,
        scope: Option<&str>,
        audience: &[&str],
    ) -> Result<ExchangeResponse, Error> {
        self.client
            .exchange(&Exchange {
                subject_token: my_token,
                actor_token: sub_agent_token,
                scope,
                audience,
                dpop: None,
            })
            .await
    }
}
