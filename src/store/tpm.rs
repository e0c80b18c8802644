//! Storage for attestation: nonces, zero-touch enrollments, agents pinned to their EK, and the
//! last TPM clock each agent's accepted quote showed, as a supertrait of [`super::Store`] so
//! `dyn Store` carries it.

use async_trait::async_trait;

use super::StoreError;

/// TPMS_CLOCK_INFO counters of a quote (TPM 2.0 Part 2 §10.11.1) and the TPM's firmware version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteCounters {
    pub reset_count: i64,
    pub restart_count: i64,
    /// Milliseconds the TPM has been powered since it was cleared.
    pub clock: i64,
    /// firmwareVersion, hex.
    pub firmware: String,
}

/// What [`TpmStore::advance_tpm_counters`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterOutcome {
    /// The quote is newer than every quote accepted before; its counters are now the last seen.
    /// `previous_firmware` is the firmware of the previous accepted quote, if there was one.
    Advanced { previous_firmware: Option<String> },
    /// The quote is not newer than the last accepted one: a replay or an older quote.
    Stale,
}

/// A credential-activation challenge waiting for the agent's answer (zero-touch enrollment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEnrollment {
    pub id: String,
    pub agent: String,
    /// SHA-256 of the EK's SubjectPublicKeyInfo, hex (see `attest::enroll::ek_key_hash`).
    pub ek_hash: String,
    /// Who vouched for the EK: the EK certificate's issuer, or `allowlist`.
    pub ek_issuer: String,
    /// TPM2B_PUBLIC of the attestation key to enroll, base64.
    pub ak_public: String,
    /// SHA-256 of the secret sealed to the EK and the AK's name.
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What the store holds about one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub data: String,
    /// `config`, `cli` or `ek`.
    pub source: String,
    pub ek_hash: Option<String>,
    /// Set when an operator disabled the agent: it gets nothing until enabled again.
    pub disabled_at: Option<i64>,
}

#[async_trait]
pub trait TpmStore: Send + Sync + 'static {
    /// Stores an attestation nonce, optionally bound to one agent, and deletes expired ones (so
    /// a flood of challenges never outgrows the nonces live at once).
    async fn create_nonce(
        &self,
        nonce: &str,
        agent: Option<&str>,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Uses a nonce once: true only if it exists, is unexpired, unused, and bound to `agent` or
    /// to no agent.
    async fn consume_nonce(&self, nonce: &str, agent: &str, now: i64) -> Result<bool, StoreError>;
    /// The stored agent `name`, read now (another replica or the CLI may have enrolled it).
    async fn agent_record(&self, name: &str) -> Result<Option<AgentRecord>, StoreError>;
    /// The agent enrolled with the EK whose hash is `ek_hash`, if any.
    async fn agent_by_ek(&self, ek_hash: &str) -> Result<Option<String>, StoreError>;
    async fn create_enrollment(&self, e: &PendingEnrollment) -> Result<(), StoreError>;
    /// Takes the enrollment `id` if it is unexpired: at most once, whatever the answer (and
    /// forgets long-expired ones).
    async fn take_enrollment(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<PendingEnrollment>, StoreError>;
    /// Enrolls (or re-enrolls) agent `name` pinned to `ek_hash`, in one statement: false, and
    /// nothing written, if `name` exists and is not pinned to that EK, or the EK is pinned to
    /// another agent.
    async fn enroll_agent_by_ek(
        &self,
        name: &str,
        data: &str,
        ek_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Records `c` as the agent's last seen counters if (resetCount, restartCount, clock) is
    /// strictly greater than the stored ones, in one statement: of two racing quotes with the same
    /// counters at most one advances.
    async fn advance_tpm_counters(
        &self,
        agent: &str,
        c: &QuoteCounters,
        now: i64,
    ) -> Result<CounterOutcome, StoreError>;
    async fn tpm_counters(&self, agent: &str) -> Result<Option<QuoteCounters>, StoreError>;
}

/// A row of `tpm_enrollments`, in the order `sql::TAKE_ENROLLMENT` returns it.
impl From<(String, String, String, String, String, Vec<u8>, i64, i64)> for PendingEnrollment {
    fn from(r: (String, String, String, String, String, Vec<u8>, i64, i64)) -> Self {
        let (id, agent, ek_hash, ek_issuer, ak_public, secret_hash, created_at, expires_at) = r;
        PendingEnrollment {
            id,
            agent,
            ek_hash,
            ek_issuer,
            ak_public,
            secret_hash,
            created_at,
            expires_at,
        }
    }
}

/// A row of `sql::TPM_COUNTERS`.
impl From<(i64, i64, i64, String)> for QuoteCounters {
    fn from((reset_count, restart_count, clock, firmware): (i64, i64, i64, String)) -> Self {
        QuoteCounters {
            reset_count,
            restart_count,
            clock,
            firmware,
        }
    }
}
