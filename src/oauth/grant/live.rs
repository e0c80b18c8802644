//! The production side of every grant's storage trait: [`Ctx`] over the store (reads and the
//! atomic single-use marks), the writer (every token, revocation and audit entry goes through
//! its durable group commit) and the config's registries of humans and agents.

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    AuditStorage, AuthorizationCodeStorage, CibaStorage, ClientCredentialsStorage,
    RefreshTokenStorage, SessionRevocation, TokenExchangeStorage, UserStorage,
};
use crate::audit::AuditEvent;
use crate::oauth::Ctx;
use crate::oauth::agent::Agent;
use crate::oauth::token::{IssueStorage, TokenLookup};
use crate::oauth::user::User;
use crate::store::ciba::{CibaRecord, Poll};
use crate::store::web::CodeRecord;
use crate::store::{Consumed, StoreError, TokenRecord, WriteOp, WriteOutcome};

#[async_trait]
impl IssueStorage for Ctx {
    async fn issue_tokens(
        &self,
        tokens: Vec<TokenRecord>,
        audit: Vec<AuditEvent>,
    ) -> Result<WriteOutcome, StoreError> {
        self.writer.write(WriteOp::IssueTokens(tokens), audit).await
    }
}

#[async_trait]
impl TokenLookup for Ctx {
    async fn find_token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        self.store.find_token(token_hash).await
    }

    async fn find_presented(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.store.find_presented(token).await
    }
}

impl UserStorage for Ctx {
    fn user(&self, username: &str) -> Option<Arc<User>> {
        self.users.get(username)
    }
}

#[async_trait]
impl SessionRevocation for Ctx {
    async fn revoke_session(&self, sid: &str, audit: Vec<AuditEvent>) -> Result<(), StoreError> {
        let op = WriteOp::RevokeSession {
            sid: sid.to_string(),
        };
        self.writer.write(op, audit).await.map(drop)
    }
}

#[async_trait]
impl AuditStorage for Ctx {
    async fn audit(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        self.writer.write(WriteOp::None, events).await.map(drop)
    }
}

impl ClientCredentialsStorage for Ctx {}

#[async_trait]
impl RefreshTokenStorage for Ctx {
    async fn consume_token(&self, token_hash: &[u8], now: i64) -> Result<Consumed, StoreError> {
        self.store.consume_token(token_hash, now).await
    }

    async fn revoke_token(
        &self,
        token_hash: &[u8],
        audit: Vec<AuditEvent>,
    ) -> Result<(), StoreError> {
        let op = WriteOp::Revoke {
            token_hash: token_hash.to_vec(),
        };
        self.writer.write(op, audit).await.map(drop)
    }
}

#[async_trait]
impl AuthorizationCodeStorage for Ctx {
    async fn create_code(&self, code: &CodeRecord, now: i64) -> Result<(), StoreError> {
        self.store.create_code(code, now).await
    }

    async fn find_code(&self, code_hash: &[u8]) -> Result<Option<CodeRecord>, StoreError> {
        self.store.find_code(code_hash).await
    }

    async fn use_code(&self, code_hash: &[u8], now: i64) -> Result<bool, StoreError> {
        self.store.use_code(code_hash, now).await
    }

    async fn mark_code_replayed(&self, code_hash: &[u8], now: i64) -> Result<(), StoreError> {
        self.store.mark_code_replayed(code_hash, now).await
    }
}

#[async_trait]
impl TokenExchangeStorage for Ctx {
    async fn agent_by_subject(&self, subject: &str) -> Result<Option<Arc<Agent>>, StoreError> {
        self.agents.by_subject(self.store.as_ref(), subject).await
    }
}

#[async_trait]
impl CibaStorage for Ctx {
    async fn create_ciba(&self, r: &CibaRecord, max_pending: i64) -> Result<bool, StoreError> {
        self.store.create_ciba(r, max_pending).await
    }

    async fn poll_ciba(
        &self,
        id_hash: &[u8],
        now: i64,
        slow_down_step: i64,
    ) -> Result<Poll, StoreError> {
        self.store.poll_ciba(id_hash, now, slow_down_step).await
    }

    async fn claim_ciba(&self, id_hash: &[u8]) -> Result<Option<CibaRecord>, StoreError> {
        self.store.claim_ciba(id_hash).await
    }

    async fn fresh_agent(&self, name: &str) -> Result<Option<Arc<Agent>>, StoreError> {
        self.agents.fresh(self.store.as_ref(), name).await
    }

    async fn audit_waiting(
        &self,
        ev: AuditEvent,
        waiting: &crate::notify::ApprovalNeeded,
    ) -> Result<(), StoreError> {
        let messages = self.notifier.approval_needed(waiting);
        let any = !messages.is_empty();
        self.writer
            .write(WriteOp::Notify(messages), vec![ev])
            .await?;
        if any {
            self.notifier.wake();
        }
        Ok(())
    }
}

#[async_trait]
impl crate::oauth::dpop::ProofReplay for Ctx {
    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        self.store.use_once(key, expires_at, now).await
    }
}
