//! For the grants' unit tests: every narrow storage trait implemented in memory ([`Memory`]),
//! and an environment ([`Fixture`]) with a clock that only moves when told to, a real ES256
//! key and real Cedar policies. The same rules run against the real databases in `tests/it`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    AuditStorage, AuthorizationCodeStorage, CibaStorage, ClientCredentialsStorage, Env,
    RefreshTokenStorage, SessionRevocation, TokenExchangeStorage, UserStorage,
};
use crate::audit::AuditEvent;
use crate::clock::TestClock;
use crate::config::{CibaConfig, PolicyConfig, TokensConfig};
use crate::crypto::sha256;
use crate::jose::{Kek, KeyMaterial, KeyState, Keyring};
use crate::oauth::agent::Agent;
use crate::oauth::client::Client;
use crate::oauth::error::OAuthError;
use crate::oauth::token::{IssueStorage, Mint, TokenLookup};
use crate::oauth::user::User;
use crate::policy::Policies;
use crate::store::ciba::{CibaRecord, CibaStatus, Poll};
use crate::store::web::CodeRecord;
use crate::store::{Consumed, StoreError, TokenKind, TokenRecord, WriteOutcome};

pub const NOW: i64 = 1_800_000_000;
pub const ISSUER: &str = "https://as.example";
/// The resource servers every fixture knows.
pub const RS: [&str; 2] = ["https://orders.example", "https://billing.example"];

/// The environment of a test: fixed time, a fresh signing key, default lifetimes.
pub struct Fixture {
    pub clock: TestClock,
    keys: Arc<Keyring>,
    pub tokens: TokensConfig,
    pub ciba: CibaConfig,
    pub high_risk: Vec<String>,
    audiences: Vec<String>,
    policies: Policies,
    pub resources: crate::oauth::resource::Resources,
    /// Audiences whose tokens must be DPoP-bound.
    pub dpop_audiences: Vec<String>,
}

impl Fixture {
    /// The default policy (an enrolled agent may act for a human who hands it a token), with
    /// `admin` a high-risk scope.
    pub fn new() -> Self {
        Self::with_policy(None)
    }

    /// `cedar` instead of the default policy.
    pub fn with_policy(cedar: Option<&str>) -> Self {
        let high_risk = vec!["admin".to_string()];
        let dir = tempfile::tempdir().unwrap();
        let files = match cedar {
            Some(text) => {
                std::fs::write(dir.path().join("p.cedar"), text).unwrap();
                vec!["p.cedar".to_string()]
            }
            None => vec![],
        };
        let config = PolicyConfig {
            files,
            high_risk_scopes: high_risk.clone(),
        };
        let policies = Policies::load(&config, dir.path().to_path_buf()).unwrap();
        // Sorted, as `Clients` keeps them.
        let mut audiences: Vec<String> = RS.iter().map(|s| s.to_string()).collect();
        audiences.sort();
        let kek = Kek::from_bytes(&[7; 32]);
        let mut row = KeyMaterial::generate(&kek, NOW);
        row.state = KeyState::Current;
        Self {
            clock: TestClock::new(NOW),
            keys: Arc::new(Keyring::from_rows(&[row], &kek).unwrap()),
            tokens: TokensConfig::default(),
            ciba: CibaConfig::default(),
            high_risk,
            audiences,
            policies,
            resources: Default::default(),
            dpop_audiences: Vec::new(),
        }
    }

    pub fn env(&self) -> Env<'_> {
        Env {
            mint: Mint {
                issuer: ISSUER,
                clock: &self.clock,
                keys: self.keys.clone(),
            },
            tokens: &self.tokens,
            ciba: &self.ciba,
            high_risk_scopes: &self.high_risk,
            audiences: &self.audiences,
            policies: &self.policies,
            resources: &self.resources,
            jkt: None,
            dpop_audiences: &self.dpop_audiences,
        }
    }

    /// [`Self::env`] for a request whose DPoP proof was signed by the key `jkt` (RFC 9449).
    pub fn env_bound<'a>(&'a self, jkt: &'a str) -> Env<'a> {
        Env {
            jkt: Some(jkt),
            ..self.env()
        }
    }
}

/// A confidential client allowed `grants` and `scopes`.
pub fn client(id: &str, grants: &[&str], scopes: &[&str]) -> Client {
    Client {
        client_id: id.into(),
        secret_hash: None,
        jwks: None,
        public: false,
        grant_types: grants.iter().map(|s| s.to_string()).collect(),
        redirect_uris: vec!["https://app.example/cb".into()],
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        introspect: false,
        ssf_receiver: false,
        audience: None,
        audiences: None,
        provenance: crate::oauth::client::Provenance::Config,
        client_name: None,
        application_type: None,
        dpop: Default::default(),
    }
}

/// The wire error code of a refusal (RFC 6749 §5.2), or "ok".
pub fn code_of<T>(r: &Result<T, OAuthError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    }
}

/// A live token record of `kind` for `sub`, as if issued at [`NOW`] for ten minutes.
pub fn record(
    token: &str,
    kind: TokenKind,
    sub: &str,
    client_id: &str,
    scope: &str,
) -> TokenRecord {
    TokenRecord {
        token_hash: sha256(token.as_bytes()).to_vec(),
        jti: format!("jti-{token}"),
        kind,
        sub: sub.into(),
        client_id: client_id.into(),
        scope: scope.into(),
        aud: vec![RS[0].to_string()].into(),
        iat: NOW,
        exp: NOW + 600,
        sid: None,
        parent_hash: None,
        act: None,
        may_act: None,
        att: None,
        jkt: None,
        dpop_key: None,
        revoked_at: None,
        consumed_at: None,
        last_used_at: None,
    }
}

#[derive(Default)]
pub struct State {
    pub tokens: HashMap<Vec<u8>, TokenRecord>,
    pub codes: HashMap<Vec<u8>, CodeRecord>,
    pub cibas: HashMap<Vec<u8>, CibaRecord>,
    pub users: HashMap<String, Arc<User>>,
    pub agents: HashMap<String, Arc<Agent>>,
    pub audit: Vec<AuditEvent>,
    /// The requests announced to their human (their `ciba.requested` events are in `audit`).
    pub waiting: Vec<crate::notify::ApprovalNeeded>,
}

impl State {
    /// Revokes the tokens `hit` selects and, transitively, every token derived from one.
    fn revoke(&mut self, hit: impl Fn(&TokenRecord) -> bool) {
        let mut revoked: Vec<Vec<u8>> = Vec::new();
        for t in self.tokens.values_mut() {
            if hit(t) {
                t.revoked_at.get_or_insert(NOW);
                revoked.push(t.token_hash.clone());
            }
        }
        while let Some(parent) = revoked.pop() {
            for t in self.tokens.values_mut() {
                if t.parent_hash.as_ref() == Some(&parent) && t.revoked_at.is_none() {
                    t.revoked_at = Some(NOW);
                    revoked.push(t.token_hash.clone());
                }
            }
        }
    }
}

/// Every grant's storage in a few maps: atomic because one lock guards them all.
#[derive(Default)]
pub struct Memory(Mutex<State>);

impl Memory {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    pub fn with_user(self, name: &str, scopes: &[&str]) -> Self {
        let user = User {
            username: name.into(),
            password_hash: String::new(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        self.state().users.insert(name.into(), Arc::new(user));
        self
    }

    pub fn with_agent(self, name: &str) -> Self {
        let agent = Agent {
            name: name.into(),
            public_jwk: None,
            ak_public: None,
            pcr_policy: None,
        };
        self.state().agents.insert(name.into(), Arc::new(agent));
        self
    }

    pub fn put(&self, r: TokenRecord) {
        self.state().tokens.insert(r.token_hash.clone(), r);
    }

    /// The record of a token this server issued (its bytes as the client got them).
    pub fn issued(&self, token: &str) -> TokenRecord {
        self.state().tokens[sha256(token.as_bytes()).as_slice()].clone()
    }

    pub fn audited(&self) -> Vec<String> {
        self.state().audit.iter().map(|e| e.kind.clone()).collect()
    }
}

#[async_trait]
impl IssueStorage for Memory {
    async fn issue_tokens(
        &self,
        tokens: Vec<TokenRecord>,
        audit: Vec<AuditEvent>,
    ) -> Result<WriteOutcome, StoreError> {
        let mut s = self.state();
        let parent_revoked = tokens.iter().any(|t| {
            t.parent_hash
                .as_ref()
                .and_then(|p| s.tokens.get(p))
                .is_some_and(|p| p.revoked_at.is_some())
        });
        if parent_revoked {
            return Ok(WriteOutcome::ParentRevoked);
        }
        for t in tokens {
            s.tokens.insert(t.token_hash.clone(), t);
        }
        s.audit.extend(audit);
        Ok(WriteOutcome::Done)
    }
}

#[async_trait]
impl TokenLookup for Memory {
    async fn find_token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.state().tokens.get(token_hash).cloned())
    }

    async fn find_presented(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self
            .state()
            .tokens
            .get(&sha256(token.as_bytes())[..])
            .cloned())
    }
}

impl UserStorage for Memory {
    fn user(&self, username: &str) -> Option<Arc<User>> {
        self.state().users.get(username).cloned()
    }
}

#[async_trait]
impl SessionRevocation for Memory {
    async fn revoke_session(&self, sid: &str, audit: Vec<AuditEvent>) -> Result<(), StoreError> {
        let mut s = self.state();
        s.revoke(|t| t.sid.as_deref() == Some(sid));
        s.audit.extend(audit);
        Ok(())
    }
}

#[async_trait]
impl AuditStorage for Memory {
    async fn audit(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        self.state().audit.extend(events);
        Ok(())
    }
}

impl ClientCredentialsStorage for Memory {}

#[async_trait]
impl RefreshTokenStorage for Memory {
    async fn consume_token(&self, token_hash: &[u8], now: i64) -> Result<Consumed, StoreError> {
        let mut s = self.state();
        let Some(t) = s.tokens.get_mut(token_hash) else {
            return Ok(Consumed::NotFound);
        };
        if t.consumed_at.is_some() {
            return Ok(Consumed::Before(Box::new(t.clone())));
        }
        t.consumed_at = Some(now);
        Ok(Consumed::Now(Box::new(t.clone())))
    }

    async fn revoke_token(
        &self,
        token_hash: &[u8],
        audit: Vec<AuditEvent>,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.revoke(|t| t.token_hash == token_hash);
        s.audit.extend(audit);
        Ok(())
    }
}

#[async_trait]
impl AuthorizationCodeStorage for Memory {
    async fn create_code(&self, code: &CodeRecord, _now: i64) -> Result<(), StoreError> {
        self.state()
            .codes
            .insert(code.code_hash.clone(), code.clone());
        Ok(())
    }

    async fn find_code(&self, code_hash: &[u8]) -> Result<Option<CodeRecord>, StoreError> {
        Ok(self.state().codes.get(code_hash).cloned())
    }

    async fn use_code(&self, code_hash: &[u8], now: i64) -> Result<bool, StoreError> {
        let mut s = self.state();
        match s.codes.get_mut(code_hash) {
            Some(c) if c.used_at.is_none() => {
                c.used_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn mark_code_replayed(&self, code_hash: &[u8], now: i64) -> Result<(), StoreError> {
        if let Some(c) = self.state().codes.get_mut(code_hash) {
            c.replayed_at.get_or_insert(now);
        }
        Ok(())
    }
}

#[async_trait]
impl TokenExchangeStorage for Memory {
    async fn agent_by_subject(&self, subject: &str) -> Result<Option<Arc<Agent>>, StoreError> {
        let name = subject.strip_prefix("agent:").unwrap_or("");
        Ok(self.state().agents.get(name).cloned())
    }
}

#[async_trait]
impl CibaStorage for Memory {
    async fn create_ciba(&self, r: &CibaRecord, max_pending: i64) -> Result<bool, StoreError> {
        let mut s = self.state();
        let pending = s
            .cibas
            .values()
            .filter(|c| c.username == r.username && c.status == CibaStatus::Pending)
            .filter(|c| c.expires_at > r.created_at)
            .count();
        if pending as i64 >= max_pending {
            return Ok(false);
        }
        s.cibas.insert(r.id_hash.clone(), r.clone());
        Ok(true)
    }

    async fn poll_ciba(
        &self,
        id_hash: &[u8],
        now: i64,
        slow_down_step: i64,
    ) -> Result<Poll, StoreError> {
        let mut s = self.state();
        let Some(r) = s.cibas.get_mut(id_hash) else {
            return Ok(Poll::NotFound);
        };
        let too_fast = r.last_polled_at.is_some_and(|t| now - t < r.interval_secs);
        if too_fast {
            r.interval_secs += slow_down_step;
        }
        r.last_polled_at = Some(now);
        Ok(if too_fast {
            Poll::TooFast(r.clone())
        } else {
            Poll::Seen(r.clone())
        })
    }

    async fn claim_ciba(&self, id_hash: &[u8]) -> Result<Option<CibaRecord>, StoreError> {
        let mut s = self.state();
        match s.cibas.get_mut(id_hash) {
            Some(r) if r.status == CibaStatus::Approved => {
                r.status = CibaStatus::Issued;
                Ok(Some(r.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn fresh_agent(&self, name: &str) -> Result<Option<Arc<Agent>>, StoreError> {
        Ok(self.state().agents.get(name).cloned())
    }

    async fn audit_waiting(
        &self,
        ev: AuditEvent,
        waiting: &crate::notify::ApprovalNeeded,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.audit.push(ev);
        s.waiting.push(waiting.clone());
        Ok(())
    }
}
