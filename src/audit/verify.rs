//! Verifying the log: every entry in `seq` order, each linked to and chained over its
//! predecessor, the stored head equal to the newest entry, and any signed checkpoints kept
//! elsewhere matched (RFC 9162 §8.1.4: a log must not present two different heads for one size,
//! nor shrink).
//!
//! Entries of chain version 0 (plain SHA-256, written before the chain was keyed) are accepted
//! only as a prefix: once a keyed entry is seen, a plain one is a rewrite. The log must end in a
//! keyed entry, whose MAC then covers every plain entry before it; a log made only of plain
//! entries is indistinguishable from one recomputed by someone without the KEK, so it fails.

use super::checkpoint::Checkpoint;
use super::{AuditEntry, CHAIN_KEYED, CHAIN_PLAIN, ChainKey, GENESIS};

/// The first entry that does not verify, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {reason}")]
pub struct AuditBreak {
    pub seq: i64,
    pub reason: String,
}

/// What a verification that passed covered: entries `first` to `first + entries - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The first entry verified: 1 for the whole log, later for an export that starts after
    /// the first entry ([`Verifier::starting_after`]).
    pub first: i64,
    pub entries: i64,
    /// Entries at the start of the log written before the chain was keyed (plain SHA-256),
    /// sealed by the keyed entry after them.
    pub plain: i64,
    /// Signed checkpoints whose entry was found with exactly their hash (for an export that
    /// starts later, the one of the entry just before it counts when the first entry links to
    /// it; those of earlier entries are not counted: they could not be checked).
    pub checkpoints: usize,
}

/// Incremental verifier: feed entries in `seq` order, then call [`Verifier::finish`] with the
/// head.
pub struct Verifier<'a> {
    key: &'a ChainKey,
    /// The first entry expected.
    first: i64,
    expected_seq: i64,
    prev: Vec<u8>,
    keyed_seen: bool,
    last_version: Option<i32>,
    plain: i64,
    /// Sorted by `seq`; `next_checkpoint` indexes the first not yet reached.
    checkpoints: Vec<&'a Checkpoint>,
    next_checkpoint: usize,
    /// Checkpoints of entries before the one the verification starts after: not checkable.
    skipped: usize,
    buf: Vec<u8>,
}

fn brk(seq: i64, reason: impl Into<String>) -> AuditBreak {
    AuditBreak {
        seq,
        reason: reason.into(),
    }
}

impl<'a> Verifier<'a> {
    pub fn new(key: &'a ChainKey) -> Self {
        Self::with_checkpoints(key, &[])
    }

    /// `checkpoints` must have had their signatures verified ([`super::checkpoint::verify`]).
    pub fn with_checkpoints(key: &'a ChainKey, checkpoints: &'a [Checkpoint]) -> Self {
        let mut sorted: Vec<&Checkpoint> = checkpoints.iter().collect();
        sorted.sort_by_key(|c| c.seq);
        Self {
            key,
            first: 1,
            expected_seq: 1,
            prev: GENESIS.to_vec(),
            keyed_seen: false,
            last_version: None,
            plain: 0,
            checkpoints: sorted,
            next_checkpoint: 0,
            skipped: 0,
            buf: Vec::with_capacity(512),
        }
    }

    /// Verifies from entry `seq + 1` on, taking `hash` on trust as the hash of entry `seq` (0
    /// and [`GENESIS`] start at the beginning): for an export that starts after the first
    /// entry, with `seq` and `hash` from its first entry. What came before is not verified.
    /// Checkpoints of entries before `seq` cannot be checked and are passed over; one of entry
    /// `seq` itself must name `hash`, or entry `seq + 1` is the break.
    pub fn starting_after(
        key: &'a ChainKey,
        seq: i64,
        hash: &[u8],
        checkpoints: &'a [Checkpoint],
    ) -> Result<Self, AuditBreak> {
        let mut v = Self::with_checkpoints(key, checkpoints);
        v.first = seq + 1;
        v.expected_seq = seq + 1;
        v.prev = hash.to_vec();
        v.skipped = v.checkpoints.partition_point(|c| c.seq < seq);
        v.next_checkpoint = v.skipped;
        while let Some(cp) = v
            .checkpoints
            .get(v.next_checkpoint)
            .filter(|c| c.seq == seq)
        {
            if cp.hash != hash {
                return Err(brk(
                    seq + 1,
                    format!(
                        "does not link to the signed checkpoint {} of entry {seq}: the log was \
                         rewritten or forked after that checkpoint, or this entry was altered",
                        cp.describe()
                    ),
                ));
            }
            v.next_checkpoint += 1;
        }
        Ok(v)
    }

    pub fn push(&mut self, e: &AuditEntry) -> Result<(), AuditBreak> {
        if e.seq != self.expected_seq {
            return Err(brk(
                self.expected_seq,
                format!(
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
        if e.chain_version == CHAIN_PLAIN && self.keyed_seen {
            return Err(brk(
                e.seq,
                "is not keyed but follows keyed entries: rewritten by someone without the KEK",
            ));
        }
        if !e.hash_matches(&self.prev, self.key, &mut self.buf) {
            return Err(brk(
                e.seq,
                match e.chain_version {
                    CHAIN_KEYED => "content does not match its keyed hash: altered, or \
                                    recomputed by someone without the KEK (or this is not the \
                                    server's KEK)"
                        .to_string(),
                    CHAIN_PLAIN => "content does not match its hash: altered".to_string(),
                    v => format!("unknown chain version {v}: altered"),
                },
            ));
        }
        while let Some(cp) = self.checkpoints.get(self.next_checkpoint) {
            if cp.seq > e.seq {
                break;
            }
            if cp.hash != e.hash {
                return Err(brk(
                    e.seq,
                    format!(
                        "differs from the signed checkpoint {}: the log was rewritten, or \
                         rolled back and extended again (a fork), after that checkpoint",
                        cp.describe()
                    ),
                ));
            }
            self.next_checkpoint += 1;
        }
        self.keyed_seen |= e.chain_version == CHAIN_KEYED;
        if e.chain_version == CHAIN_PLAIN {
            self.plain += 1;
        }
        self.last_version = Some(e.chain_version);
        self.prev.clone_from(&e.hash);
        self.expected_seq += 1;
        Ok(())
    }

    /// Checks the checkpoints not reached, the stored head and the newest entry's version;
    /// returns what was verified.
    pub fn finish(self, head_seq: i64, head_hash: &[u8]) -> Result<Report, AuditBreak> {
        let last = self.expected_seq - 1;
        self.check_checkpoints_reached(last, "the log")?;
        if head_seq > last {
            return Err(brk(
                last + 1,
                format!("missing: the log should end at entry {head_seq}"),
            ));
        }
        if head_seq < last || head_hash != self.prev.as_slice() {
            return Err(brk(
                last,
                "does not match the chain head: altered or appended outside the server",
            ));
        }
        self.report(last)
    }

    /// [`Verifier::finish`] for an export, which holds no head: the last entry pushed stands
    /// for it. Entries removed from the end of an export are therefore found only by a
    /// checkpoint of an entry after the new end.
    pub fn finish_without_head(self) -> Result<Report, AuditBreak> {
        let last = self.expected_seq - 1;
        self.check_checkpoints_reached(last, "the export")?;
        self.report(last)
    }

    fn check_checkpoints_reached(&self, last: i64, what: &str) -> Result<(), AuditBreak> {
        match self.checkpoints.last().filter(|c| c.seq > last) {
            Some(cp) => Err(brk(
                last + 1,
                format!(
                    "missing: the signed checkpoint {} shows the log reached entry {}, but \
                     {what} now ends at entry {last}: entries were removed from the end",
                    cp.describe(),
                    cp.seq
                ),
            )),
            None => Ok(()),
        }
    }

    fn report(self, last: i64) -> Result<Report, AuditBreak> {
        if self.last_version == Some(CHAIN_PLAIN) {
            return Err(brk(
                last,
                "the log ends in entries that are not keyed: written before the upgrade by a \
                 server that has not run since (start it once to seal them), or recomputed by \
                 someone without the KEK",
            ));
        }
        Ok(Report {
            first: self.first,
            entries: last - self.first + 1,
            plain: self.plain,
            checkpoints: self.next_checkpoint - self.skipped,
        })
    }
}

/// Reads the whole log from the store in pages and verifies it, with `checkpoints` (already
/// verified signatures) matched against it.
pub async fn verify_log(
    store: &dyn crate::store::Store,
    key: &ChainKey,
    checkpoints: &[Checkpoint],
) -> Result<Result<Report, AuditBreak>, crate::store::StoreError> {
    const PAGE: i64 = 5_000;
    let (head_seq, head_hash) = store.audit_head().await?;
    let mut v = Verifier::with_checkpoints(key, checkpoints);
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

/// [`verify_log`] without checkpoints; the number of entries.
pub async fn verify_store(
    store: &dyn crate::store::Store,
    key: &ChainKey,
) -> Result<Result<i64, AuditBreak>, crate::store::StoreError> {
    Ok(verify_log(store, key, &[]).await?.map(|r| r.entries))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{events, key};
    use super::super::{AuditEntry, chain};
    use super::*;

    fn sample(n: usize) -> Vec<AuditEntry> {
        chain(0, &GENESIS, 1000, Some("v1"), &events(n), &key())
    }

    fn verify(entries: &[AuditEntry]) -> Result<i64, AuditBreak> {
        let head = entries
            .last()
            .map(|e| (e.seq, e.hash.clone()))
            .unwrap_or((0, GENESIS.to_vec()));
        verify_against(entries, head, &[]).map(|r| r.entries)
    }

    fn verify_against(
        entries: &[AuditEntry],
        head: (i64, Vec<u8>),
        checkpoints: &[Checkpoint],
    ) -> Result<Report, AuditBreak> {
        let k = key();
        let mut v = Verifier::with_checkpoints(&k, checkpoints);
        for e in entries {
            v.push(e)?;
        }
        v.finish(head.0, &head.1)
    }

    /// The chain as written before it was keyed: plain SHA-256, version 0.
    fn plain(entries: &mut [AuditEntry], from: usize) {
        let mut prev = match from.checked_sub(1) {
            Some(i) => entries[i].hash.clone(),
            None => GENESIS.to_vec(),
        };
        for e in entries.iter_mut().skip(from) {
            e.chain_version = CHAIN_PLAIN;
            e.prev_hash = prev.clone();
            e.hash = e.plain_digest(&prev).to_vec();
            prev = e.hash.clone();
        }
    }

    fn checkpoint(e: &AuditEntry) -> Checkpoint {
        Checkpoint {
            iss: "https://as.example".into(),
            iat: 1_700_000_000,
            seq: e.seq,
            hash: e.hash.clone(),
            kid: "k1".into(),
        }
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
        assert_eq!(
            verify_against(&removed, head.clone(), &[]).unwrap_err().seq,
            2
        );
        let mut truncated = e.clone();
        truncated.pop();
        assert_eq!(
            verify_against(&truncated, head.clone(), &[])
                .unwrap_err()
                .seq,
            5
        );
        let mut swapped = e.clone();
        swapped.swap(1, 2);
        let (a, b) = (swapped[1].seq, swapped[2].seq);
        swapped[1].seq = b;
        swapped[2].seq = a;
        assert_eq!(verify_against(&swapped, head, &[]).unwrap_err().seq, 2);
    }

    /// SPEC "Invariants": recomputed entries are detected. Rewriting an entry and recomputing
    /// the plain SHA-256 chain and head, as the unkeyed code did, no longer verifies.
    #[test]
    fn spec_audit_invariant_a_recomputed_plain_chain_is_caught() {
        let mut e = sample(5);
        e[2].detail = "{\"i\":\"forged\"}".into();
        let mut recomputed = e.clone();
        let mut prev = recomputed[1].hash.clone();
        for x in recomputed.iter_mut().skip(2) {
            x.prev_hash = prev.clone();
            x.hash = x.plain_digest(&prev).to_vec();
            prev = x.hash.clone();
        }
        let err = verify(&recomputed).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(err.reason.contains("KEK"), "{err}");
        // Downgrading those entries to plain ones is caught where they follow keyed ones ...
        plain(&mut e, 2);
        let err = verify(&e).unwrap_err();
        assert_eq!(err.seq, 3, "{err}");
        // ... and a log rewritten as plain entries from the start fails at its end.
        let mut all = sample(5);
        all[2].detail = "{\"i\":\"forged\"}".into();
        plain(&mut all, 0);
        let err = verify(&all).unwrap_err();
        assert_eq!(err.seq, 5, "{err}");
        assert!(err.reason.contains("not keyed"), "{err}");
    }

    #[test]
    fn plain_entries_from_before_the_upgrade_verify_once_a_keyed_entry_seals_them() {
        let mut old = sample(3);
        plain(&mut old, 0);
        let tail = old.last().map(|e| (e.seq, e.hash.clone())).unwrap();
        let mut log = old.clone();
        log.extend(chain(tail.0, &tail.1, 2000, None, &events(2), &key()));
        let head = (5, log[4].hash.clone());
        assert_eq!(
            verify_against(&log, head.clone(), &[]),
            Ok(Report {
                first: 1,
                entries: 5,
                plain: 3,
                checkpoints: 0
            })
        );
        // Rewriting a sealed plain entry, with its plain chain recomputed, breaks the seal.
        let mut forged = log.clone();
        forged[1].subject = Some("mallory".into());
        plain(&mut forged[..3], 1);
        assert_eq!(verify_against(&forged, head, &[]).unwrap_err().seq, 4);
    }

    /// RFC 9162 §4.10 / §8.1.4: a signed head kept elsewhere shows a log that was cut back
    /// (truncation) or that holds another entry at the checkpointed size (a fork).
    #[test]
    fn rfc9162_checkpoints_catch_truncation_and_forks() {
        let e = sample(6);
        let cp = checkpoint(&e[3]);
        // Untouched: the checkpoint matches.
        let head = (6, e[5].hash.clone());
        let ok = verify_against(&e, head, std::slice::from_ref(&cp)).unwrap();
        assert_eq!(ok.checkpoints, 1);
        // Truncated to 3 entries with the head moved back: the chain alone verifies ...
        let cut = &e[..3];
        let head = (3, e[2].hash.clone());
        assert!(verify_against(cut, head.clone(), &[]).is_ok());
        // ... the checkpoint does not.
        let err = verify_against(cut, head, std::slice::from_ref(&cp)).unwrap_err();
        assert_eq!(err.seq, 4);
        assert!(err.reason.contains("removed from the end"), "{err}");
        // A fork: the same prefix extended with other entries.
        let mut fork = e[..3].to_vec();
        let mut other = events(3);
        other[0].kind = "token.revoked".into();
        fork.extend(chain(3, &e[2].hash, 5000, None, &other, &key()));
        let head = (6, fork[5].hash.clone());
        let err = verify_against(&fork, head, std::slice::from_ref(&cp)).unwrap_err();
        assert_eq!(err.seq, 4);
        assert!(err.reason.contains("fork"), "{err}");
    }
}
