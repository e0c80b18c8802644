//! Enrolled agents: declared in the config (`[[agents]]`), enrolled by the CLI, or enrolled by
//! their TPM's EK certificate (zero-touch). An agent proves what it is at `/attest` with its
//! registered P-256 key (software) or its TPM attestation key.
//!
//! The store is the truth: the CLI, another replica or a zero-touch enrollment may add or change
//! an agent while this process runs. [`Agents`] caches what it read; `/attest` always reads the
//! store ([`Agents::fresh`]), other paths read the cache and fall back to the store on a miss.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::store::{Store, StoreError};

use serde::{Deserialize, Serialize};

use crate::config::AgentConfig;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Agent {
    pub name: String,
    /// A registered P-256 public JWK: the software attestation path.
    pub public_jwk: Option<serde_json::Value>,
    /// TPM2B_PUBLIC of the attestation key, base64: the TPM path.
    pub ak_public: Option<String>,
    pub pcr_policy: Option<serde_json::Value>,
}

impl Agent {
    pub fn from_config(a: &AgentConfig) -> Self {
        Self {
            name: a.name.clone(),
            public_jwk: a.public_jwk.clone(),
            ak_public: a.ak_public.clone(),
            pcr_policy: a
                .pcr_policy
                .as_ref()
                .and_then(|p| serde_json::to_value(p).ok()),
        }
    }

    /// The token subject of this agent (SPEC: `agent:<name>`).
    pub fn subject(&self) -> String {
        format!("agent:{}", self.name)
    }
}

#[derive(Debug, Default)]
pub struct Agents {
    by_name: RwLock<HashMap<String, Arc<Agent>>>,
}

impl Agents {
    pub fn new(list: Vec<Agent>) -> Self {
        Self {
            by_name: RwLock::new(
                list.into_iter()
                    .map(|a| (a.name.clone(), Arc::new(a)))
                    .collect(),
            ),
        }
    }

    /// The cached agent `name` (what this process last read).
    pub fn get(&self, name: &str) -> Option<Arc<Agent>> {
        self.by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The agent `name` as the store holds it now; the cache follows.
    pub async fn fresh(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> Result<Option<Arc<Agent>>, StoreError> {
        let agent = match store.agent_record(name).await? {
            // A disabled agent is as good as unknown to every path that asks.
            Some(r) if r.disabled_at.is_some() => None,
            Some(r) => match serde_json::from_str::<Agent>(&r.data) {
                Ok(a) => Some(Arc::new(a)),
                Err(e) => {
                    tracing::error!(agent = %name, error = %e, "stored agent is unreadable");
                    None
                }
            },
            None => None,
        };
        let mut map = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        match &agent {
            Some(a) => map.insert(name.to_string(), a.clone()),
            None => map.remove(name),
        };
        Ok(agent)
    }

    /// The agent named by a token subject `agent:<name>`: from the cache, else from the store.
    pub async fn by_subject(
        &self,
        store: &dyn Store,
        sub: &str,
    ) -> Result<Option<Arc<Agent>>, StoreError> {
        let Some(name) = sub.strip_prefix("agent:") else {
            return Ok(None);
        };
        match self.get(name) {
            Some(a) => Ok(Some(a)),
            None => self.fresh(store, name).await,
        }
    }
}
