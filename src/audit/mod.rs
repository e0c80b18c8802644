//! The audit log: append-only and chained. Entry `n` stores `hash_n = HMAC(K, hash_{n-1} ||
//! version || fields_n)` under a key `K` derived from the KEK ([`ChainKey`]), and a head row
//! stores the newest `(seq, hash)`. Altering, removing or reordering an entry breaks
//! verification at that entry, and someone who can write the database but lacks the KEK cannot
//! recompute a chain that verifies. Removing the newest entries and moving the head back
//! leaves a shorter chain that verifies; a signed checkpoint of the head kept elsewhere
//! ([`checkpoint`], in the manner of RFC 9162 §4.10 signed tree heads) shows it.
//!
//! Entries written before the chain was keyed carry `chain_version` 0 and a plain
//! `SHA-256(hash_{n-1} || fields_n)`. They may only form a prefix of the log, and the first keyed
//! entry's MAC covers the last plain hash, so a keyed entry seals everything before it: see
//! [`verify`] and `docs/audit.md` for what that does and does not guarantee.
//!
//! The chain is extended per committed batch (see `store::writer`), not per request.

pub mod checkpoint;
pub mod export;
mod key;
pub mod verify;

use serde::{Deserialize, Serialize};

use crate::crypto::sha256;

pub use key::ChainKey;
pub use verify::{AuditBreak, Report, Verifier, verify_log, verify_store};

pub const GENESIS: [u8; 32] = [0u8; 32];

/// `chain_version` of entries written before the chain was keyed: a plain SHA-256 chain.
pub const CHAIN_PLAIN: i32 = 0;
/// `chain_version` of entries chained with HMAC-SHA-256 under the [`ChainKey`].
pub const CHAIN_KEYED: i32 = 1;

/// What happened, before it has a place in the chain.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditEvent {
    /// `token.issued`, `token.introspected`, `token.revoked`, `keys.rotated`, ...
    pub kind: String,
    /// The human (or client) on whose authority the action happened.
    pub subject: Option<String>,
    /// The chain of agents, outermost (newest) first.
    pub actors: Vec<String>,
    /// The client that asked (for introspection: the resource server).
    pub client_id: Option<String>,
    /// The delegated session.
    pub session: Option<String>,
    pub token_jti: Option<String>,
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_string(),
            detail: serde_json::json!({}),
            ..Default::default()
        }
    }
}

/// An entry as stored. Text fields are kept exactly as hashed. As JSON (an export line, see
/// [`export`]) the hashes are lowercase hex and `actors` and `detail` stay the JSON texts they
/// are, as strings; reading one back refuses fields it does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub seq: i64,
    pub ts: i64,
    pub kind: String,
    pub subject: Option<String>,
    /// JSON array text.
    pub actors: String,
    pub client_id: Option<String>,
    pub session: Option<String>,
    pub token_jti: Option<String>,
    /// JSON object text.
    pub detail: String,
    /// The policy set in force (its version hash).
    pub policy_version: Option<String>,
    /// How `hash` was computed: [`CHAIN_PLAIN`] or [`CHAIN_KEYED`].
    pub chain_version: i32,
    #[serde(with = "hex_bytes")]
    pub prev_hash: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

mod hex_bytes {
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(&text).map_err(|_| serde::de::Error::custom("not a hex string"))
    }
}

impl AuditEntry {
    /// The fields as chained, after the predecessor's hash (the encoding of chain version 0,
    /// which version 1 keeps): every text field length-prefixed, absent ones marked apart
    /// from empty ones, so two different entries never encode alike.
    fn encode_fields(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.seq.to_be_bytes());
        buf.extend_from_slice(&self.ts.to_be_bytes());
        for field in [
            Some(self.kind.as_str()),
            self.subject.as_deref(),
            Some(self.actors.as_str()),
            self.client_id.as_deref(),
            self.session.as_deref(),
            self.token_jti.as_deref(),
            Some(self.detail.as_str()),
        ] {
            match field {
                None => buf.push(0),
                Some(s) => {
                    buf.push(1);
                    buf.extend_from_slice(&(s.len() as u64).to_be_bytes());
                    buf.extend_from_slice(s.as_bytes());
                }
            }
        }
        // Added after the first entries were written: encoded only when present, so entries
        // written before it still verify.
        if let Some(v) = &self.policy_version {
            buf.push(2);
            buf.extend_from_slice(&(v.len() as u64).to_be_bytes());
            buf.extend_from_slice(v.as_bytes());
        }
    }

    /// Chain version 0, as written before the chain was keyed: `SHA-256(prev || fields)`.
    /// Anyone can compute it; it is kept to verify those old entries.
    pub fn plain_digest(&self, prev: &[u8]) -> [u8; 32] {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(prev);
        self.encode_fields(&mut buf);
        sha256(&buf)
    }

    /// What the chain MAC of version 1 covers: `prev || version || fields`. The version is
    /// inside the MAC so that an entry's version cannot be changed without the key.
    fn keyed_message(&self, prev: &[u8], buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(prev);
        buf.extend_from_slice(&(CHAIN_KEYED as u32).to_be_bytes());
        self.encode_fields(buf);
    }

    /// Chain version 1: `HMAC-SHA-256(K, prev || version || fields)`.
    pub fn keyed_mac(&self, prev: &[u8], key: &ChainKey) -> [u8; 32] {
        let mut buf = Vec::with_capacity(256);
        self.keyed_message(prev, &mut buf);
        key.mac(&buf)
    }

    /// Whether `hash` is what this entry's `chain_version` computes over `prev`; `buf` is
    /// scratch space reused across entries. An unknown version never verifies.
    pub fn hash_matches(&self, prev: &[u8], key: &ChainKey, buf: &mut Vec<u8>) -> bool {
        match self.chain_version {
            CHAIN_KEYED => {
                self.keyed_message(prev, buf);
                key.verify(buf, &self.hash)
            }
            CHAIN_PLAIN => self.plain_digest(prev).as_slice() == self.hash.as_slice(),
            _ => false,
        }
    }
}

/// Gives `events` their places after `(head_seq, head_hash)`, keyed under `key`; returns the
/// entries (the last one is the new head). One message buffer serves the whole batch and each
/// MAC starts from the key's precomputed HMAC state.
pub fn chain(
    head_seq: i64,
    head_hash: &[u8],
    ts: i64,
    policy_version: Option<&str>,
    events: &[impl std::borrow::Borrow<AuditEvent>],
    key: &ChainKey,
) -> Vec<AuditEntry> {
    let mut prev = head_hash.to_vec();
    let mut out = Vec::with_capacity(events.len());
    let mut buf = Vec::with_capacity(512);
    for (i, ev) in events.iter().map(std::borrow::Borrow::borrow).enumerate() {
        let mut e = AuditEntry {
            seq: head_seq + 1 + i as i64,
            ts,
            kind: ev.kind.clone(),
            subject: ev.subject.clone(),
            actors: serde_json::to_string(&ev.actors).unwrap_or_else(|_| "[]".into()),
            client_id: ev.client_id.clone(),
            session: ev.session.clone(),
            token_jti: ev.token_jti.clone(),
            detail: ev.detail.to_string(),
            policy_version: policy_version.map(str::to_string),
            chain_version: CHAIN_KEYED,
            prev_hash: prev.clone(),
            hash: Vec::new(),
        };
        e.keyed_message(&prev, &mut buf);
        e.hash = key.mac(&buf).to_vec();
        prev.clone_from(&e.hash);
        out.push(e);
    }
    out
}

/// If the newest entry was written before the chain was keyed, appends a keyed entry
/// (`audit.chain_keyed`) whose MAC covers it, so that the plain entries are sealed at once
/// rather than at the next audited event. Returns whether it did. Run at start; two replicas
/// starting together may both append one, which is harmless.
pub async fn seal_plain_tail(
    store: &dyn crate::store::Store,
    writer: &crate::store::Writer,
) -> Result<bool, crate::store::StoreError> {
    let (head_seq, _) = store.audit_head().await?;
    if head_seq == 0 {
        return Ok(false);
    }
    let newest = store.audit_entries(head_seq - 1, 1).await?;
    if newest
        .first()
        .is_none_or(|e| e.chain_version != CHAIN_PLAIN)
    {
        return Ok(false);
    }
    let mut ev = AuditEvent::new("audit.chain_keyed");
    ev.detail = serde_json::json!({ "plain_entries_sealed": head_seq });
    writer.write(crate::store::WriteOp::None, vec![ev]).await?;
    tracing::info!(
        entries = head_seq,
        "audit log: entries written before the chain was keyed are now sealed by a keyed entry"
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn key() -> ChainKey {
        ChainKey::derive(&[7; 32])
    }

    pub(crate) fn events(n: usize) -> Vec<AuditEvent> {
        (0..n)
            .map(|i| AuditEvent {
                kind: "token.issued".into(),
                subject: Some(format!("user{i}")),
                detail: serde_json::json!({"i": i}),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn spec_audit_invariant_the_chain_mac_depends_on_the_kek() {
        let a = chain(
            0,
            &GENESIS,
            1000,
            Some("v1"),
            &events(3),
            &ChainKey::derive(&[1; 32]),
        );
        let b = chain(
            0,
            &GENESIS,
            1000,
            Some("v1"),
            &events(3),
            &ChainKey::derive(&[2; 32]),
        );
        for (x, y) in a.iter().zip(&b) {
            let (mut x, mut y) = (x.clone(), y.clone());
            assert_ne!(x.hash, y.hash, "entry {}", x.seq);
            // Same content otherwise.
            (x.hash, x.prev_hash, y.hash, y.prev_hash) = (vec![], vec![], vec![], vec![]);
            assert_eq!(x, y);
        }
        // And it is not the plain digest that anyone can compute.
        let first = &a[0];
        assert_ne!(first.hash, first.plain_digest(&GENESIS).to_vec());
        assert_eq!(first.chain_version, CHAIN_KEYED);
    }

    #[test]
    fn an_entry_verifies_only_under_its_own_version_and_key() {
        let e = chain(0, &GENESIS, 1000, None, &events(1), &key()).remove(0);
        let mut buf = Vec::new();
        assert!(e.hash_matches(&GENESIS, &key(), &mut buf));
        assert!(!e.hash_matches(&GENESIS, &ChainKey::derive(&[8; 32]), &mut buf));
        let mut plain = e.clone();
        plain.chain_version = CHAIN_PLAIN;
        assert!(!plain.hash_matches(&GENESIS, &key(), &mut buf));
        plain.hash = plain.plain_digest(&GENESIS).to_vec();
        assert!(plain.hash_matches(&GENESIS, &key(), &mut buf));
        // The version is inside the MAC: relabelling a plain hash as keyed does not verify.
        let mut relabelled = plain.clone();
        relabelled.chain_version = CHAIN_KEYED;
        assert!(!relabelled.hash_matches(&GENESIS, &key(), &mut buf));
        let mut unknown = e.clone();
        unknown.chain_version = 2;
        assert!(!unknown.hash_matches(&GENESIS, &key(), &mut buf));
    }
}
