//! The audit log: append-only and hash-chained. Entry `n` stores `hash_n = SHA-256(hash_{n-1} ||
//! fields_n)`, and a head row stores the newest `(seq, hash)`, so altering, removing or
//! reordering any entry — including the newest — breaks verification at that entry.
//!
//! The chain is extended per committed batch (see `store::writer`), not per request.

use serde::Serialize;

use crate::crypto::sha256;

pub const GENESIS: [u8; 32] = [0u8; 32];

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

/// An entry as stored. Text fields are kept exactly as hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    #[serde(with = "hex_bytes")]
    pub prev_hash: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

impl AuditEntry {
    /// The hash this entry must carry given its predecessor's.
    pub fn digest(&self, prev: &[u8]) -> [u8; 32] {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(prev);
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
        // Added after the first entries were written: hashed only when present, so entries
        // written before it still verify.
        if let Some(v) = &self.policy_version {
            buf.push(2);
            buf.extend_from_slice(&(v.len() as u64).to_be_bytes());
            buf.extend_from_slice(v.as_bytes());
        }
        sha256(&buf)
    }
}

/// Gives `events` their places after `(head_seq, head_hash)`; returns the entries and the new head.
pub fn chain(
    head_seq: i64,
    head_hash: &[u8],
    ts: i64,
    policy_version: Option<&str>,
    events: &[impl std::borrow::Borrow<AuditEvent>],
) -> Vec<AuditEntry> {
    let mut prev = head_hash.to_vec();
    let mut out = Vec::with_capacity(events.len());
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
            prev_hash: prev.clone(),
            hash: Vec::new(),
        };
        e.hash = e.digest(&prev).to_vec();
        prev = e.hash.clone();
        out.push(e);
    }
    out
}

/// The first entry that does not verify, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {reason}")]
pub struct AuditBreak {
    pub seq: i64,
    pub reason: String,
}

/// Incremental verifier: feed entries in `seq` order, then call [`Verifier::finish`] with the head.
pub struct Verifier {
    expected_seq: i64,
    prev: Vec<u8>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev: GENESIS.to_vec(),
        }
    }
}

impl Verifier {
    pub fn push(&mut self, e: &AuditEntry) -> Result<(), AuditBreak> {
        let brk = |seq: i64, reason: &str| AuditBreak {
            seq,
            reason: reason.to_string(),
        };
        if e.seq != self.expected_seq {
            return Err(brk(
                self.expected_seq,
                &format!(
                    "missing (the next entry found is {}): removed or reordered",
                    e.seq
                ),
            ));
        }
        if e.prev_hash != self.prev {
            return Err(brk(
                e.seq,
                "does not link to the entry before it: reordered, or that entry was altered",
            ));
        }
        if e.digest(&self.prev).as_slice() != e.hash.as_slice() {
            return Err(brk(e.seq, "content does not match its hash: altered"));
        }
        self.prev = e.hash.clone();
        self.expected_seq += 1;
        Ok(())
    }

    /// Checks the stored head against the last entry seen; returns the number of entries.
    pub fn finish(self, head_seq: i64, head_hash: &[u8]) -> Result<i64, AuditBreak> {
        let last = self.expected_seq - 1;
        if head_seq > last {
            return Err(AuditBreak {
                seq: last + 1,
                reason: format!("missing: the log should end at entry {head_seq}"),
            });
        }
        if head_seq < last || head_hash != self.prev.as_slice() {
            return Err(AuditBreak {
                seq: last,
                reason: "does not match the chain head: altered or appended outside the server"
                    .into(),
            });
        }
        Ok(last)
    }
}

/// Reads the whole log from the store in pages and verifies it.
pub async fn verify_store(
    store: &dyn crate::store::Store,
) -> Result<Result<i64, AuditBreak>, crate::store::StoreError> {
    const PAGE: i64 = 5_000;
    let (head_seq, head_hash) = store.audit_head().await?;
    let mut v = Verifier::default();
    let mut after = 0;
    loop {
        let page = store.audit_entries(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if let Err(b) = v.push(e) {
                return Ok(Err(b));
            }
        }
    }
    Ok(v.finish(head_seq, &head_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<AuditEntry> {
        let events: Vec<AuditEvent> = (0..n)
            .map(|i| AuditEvent {
                kind: "token.issued".into(),
                subject: Some(format!("user{i}")),
                detail: serde_json::json!({"i": i}),
                ..Default::default()
            })
            .collect();
        chain(0, &GENESIS, 1000, Some("v1"), &events)
    }

    fn verify(entries: &[AuditEntry]) -> Result<i64, AuditBreak> {
        let head = entries
            .last()
            .map(|e| (e.seq, e.hash.clone()))
            .unwrap_or((0, GENESIS.to_vec()));
        verify_against(entries, head)
    }

    fn verify_against(entries: &[AuditEntry], head: (i64, Vec<u8>)) -> Result<i64, AuditBreak> {
        let mut v = Verifier::default();
        for e in entries {
            v.push(e)?;
        }
        v.finish(head.0, &head.1)
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&sample(5)), Ok(5));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn altering_any_field_is_caught_at_that_entry() {
        let mut e = sample(5);
        e[2].subject = Some("mallory".into());
        assert_eq!(verify(&e).unwrap_err().seq, 3);
        let mut e = sample(5);
        e[1].policy_version = Some("v2".into());
        assert_eq!(verify(&e).unwrap_err().seq, 2);
        let mut e = sample(5);
        e[3].detail = "{\"i\":99}".into();
        assert_eq!(verify(&e).unwrap_err().seq, 4);
    }

    #[test]
    fn removing_or_reordering_entries_is_caught() {
        let e = sample(5);
        let head = (e[4].seq, e[4].hash.clone());
        let mut removed = e.clone();
        removed.remove(1);
        assert_eq!(verify_against(&removed, head.clone()).unwrap_err().seq, 2);
        let mut truncated = e.clone();
        truncated.pop();
        assert_eq!(verify_against(&truncated, head.clone()).unwrap_err().seq, 5);
        let mut swapped = e.clone();
        swapped.swap(1, 2);
        let (a, b) = (swapped[1].seq, swapped[2].seq);
        swapped[1].seq = b;
        swapped[2].seq = a;
        assert_eq!(verify_against(&swapped, head).unwrap_err().seq, 2);
    }
}
