//! The live key set of this replica: built at start, rotated on schedule or on demand, and
//! reloaded from the database so that replicas sharing one database converge on the same keys.

use std::sync::{Arc, RwLock};

use super::kek::Kek;
use super::keyring::{KeyMaterial, Keyring, KeyringError};
use super::rotation::RotationMode;
use crate::audit::AuditEvent;
use crate::clock::SharedClock;
use crate::store::{BatchItem, PolicyVersion, SharedStore, StoreError, WriteOp};

#[derive(Debug, thiserror::Error)]
pub enum KeyServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

pub struct KeyService {
    store: SharedStore,
    kek: Arc<Kek>,
    clock: SharedClock,
    ring: RwLock<Arc<Keyring>>,
    /// Seconds a key signs before rotation.
    rotation_interval: i64,
    /// Seconds a retired key stays published: the longest token lifetime plus a margin.
    retired_ttl: i64,
    policy_version: PolicyVersion,
}

impl KeyService {
    /// Makes sure a current and a next key exist, then loads them.
    pub async fn start(
        store: SharedStore,
        kek: Kek,
        clock: SharedClock,
        rotation_interval: i64,
        retired_ttl: i64,
        policy_version: PolicyVersion,
    ) -> Result<Self, KeyServiceError> {
        let kek = Arc::new(kek);
        rotate_in_store(
            &store,
            &kek,
            &clock,
            RotationMode::Ensure,
            retired_ttl,
            &policy_version,
        )
        .await?;
        let ring = Keyring::from_rows(&store.load_keys().await?, &kek)?;
        Ok(Self {
            store,
            kek,
            clock,
            ring: RwLock::new(Arc::new(ring)),
            rotation_interval,
            retired_ttl,
            policy_version,
        })
    }

    /// The audit chain's key, derived from the KEK this service holds.
    pub fn audit_chain_key(&self) -> &crate::audit::ChainKey {
        self.kek.audit_chain_key()
    }

    /// Seals a secret the server must send on later (an SSF receiver's authorization header)
    /// under the KEK, bound to `context` (associated data, so it cannot move to another row).
    pub fn seal_secret(&self, context: &str, plain: &[u8]) -> Vec<u8> {
        self.kek.seal(context, plain)
    }

    /// Opens what [`KeyService::seal_secret`] sealed for `context`; None if it was not.
    pub fn open_secret(&self, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        self.kek.open(context, sealed).ok()
    }

    pub fn ring(&self) -> Arc<Keyring> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub async fn reload(&self) -> Result<(), KeyServiceError> {
        let ring = Keyring::from_rows(&self.store.load_keys().await?, &self.kek)?;
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
        Ok(())
    }

    /// Rotates now; the key published as `next` starts signing.
    pub async fn rotate_now(&self) -> Result<bool, KeyServiceError> {
        self.rotate(RotationMode::Force).await
    }

    /// The periodic check: rotate if due (only one replica will), then reload.
    pub async fn tick(&self) -> Result<bool, KeyServiceError> {
        self.rotate(RotationMode::IfOlderThan(self.rotation_interval))
            .await
    }

    async fn rotate(&self, mode: RotationMode) -> Result<bool, KeyServiceError> {
        let rotated = rotate_in_store(
            &self.store,
            &self.kek,
            &self.clock,
            mode,
            self.retired_ttl,
            &self.policy_version,
        )
        .await?;
        self.reload().await?;
        Ok(rotated)
    }
}

async fn rotate_in_store(
    store: &SharedStore,
    kek: &Arc<Kek>,
    clock: &SharedClock,
    mode: RotationMode,
    retired_ttl: i64,
    policy_version: &PolicyVersion,
) -> Result<bool, StoreError> {
    let now = clock.now();
    let k = kek.clone();
    let fresh = move || KeyMaterial::generate(&k, now);
    let rotated = store.rotate_keys(mode, now, retired_ttl, &fresh).await?;
    if rotated {
        let signing = store
            .load_keys()
            .await?
            .into_iter()
            .find(|k| k.state == super::KeyState::Current)
            .map(|k| k.kid);
        let mut ev = AuditEvent::new("keys.rotated");
        ev.detail = serde_json::json!({ "signing_kid": signing, "mode": format!("{mode:?}") });
        store
            .commit_batch(
                &[BatchItem {
                    signals: Vec::new(),
                    on_cut: None,
                    op: WriteOp::None,
                    audit: vec![ev],
                }],
                now,
                policy_version().as_deref(),
                kek.audit_chain_key(),
            )
            .await?;
        tracing::info!(kid = ?signing, "signing key rotated");
    }
    Ok(rotated)
}
