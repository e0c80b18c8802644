//! Enrolled agents: declared in the config (`[[agents]]`) or enrolled by the CLI. An agent proves
//! what it is at `/attest` with its registered P-256 key (software) or its TPM attestation key.

use std::collections::HashMap;
use std::sync::Arc;

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
    by_name: HashMap<String, Arc<Agent>>,
}

impl Agents {
    pub fn new(list: Vec<Agent>) -> Self {
        Self {
            by_name: list
                .into_iter()
                .map(|a| (a.name.clone(), Arc::new(a)))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Agent>> {
        self.by_name.get(name).cloned()
    }

    /// The agent named by a token subject `agent:<name>`.
    pub fn by_subject(&self, sub: &str) -> Option<Arc<Agent>> {
        sub.strip_prefix("agent:").and_then(|n| self.get(n))
    }
}
