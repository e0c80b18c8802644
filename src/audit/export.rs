//! Exporting the log for a SIEM, and verifying an export without the database.
//!
//! An export is JSON Lines: one [`AuditEntry`] per line, in `seq` order, with every field the
//! chain covers, its `chain_version` and the chain hashes (`prev_hash`, `hash`, lowercase hex).
//! `actors` and `detail` stay the exact JSON texts that were hashed, as strings, so that any JSON
//! tool that rewrites the line keeps them byte for byte. [`export_jsonl`] pages through the store
//! (one page in memory at a time) and flushes after each page, so a pipe gets entries as they
//! are read.
//!
//! [`verify_jsonl`] checks an export with the chain key alone: each line is an entry, the
//! entries are consecutive, each links to the hash of the one before it and carries the MAC of
//! its content (the rules of [`Verifier`]). An export that starts after entry 1 is verified from
//! its first entry's `prev_hash` on, which it takes on trust: what came before is not verified.
//! An export holds no head, so entries removed from its end show only against a checkpoint of a
//! later entry.

use std::io::{BufRead, Read, Write};

use super::checkpoint::Checkpoint;
use super::{AuditBreak, AuditEntry, ChainKey, GENESIS, Report, Verifier};
use crate::store::{Store, StoreError};

/// Entries read from the store at a time, and written before each flush.
pub const PAGE: i64 = 1_000;

/// The longest line [`verify_jsonl`] reads: far more than any entry the server writes, and a
/// bound on what a file that is not an export can make it hold in memory.
pub const MAX_LINE: usize = 8 * 1024 * 1024;

/// Where an export starts (`mandate audit export --since`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// The entries after entry `n` (`seq > n`); 0 for all of them.
    AfterSeq(i64),
    /// From the first entry stamped at or after this time (seconds since the Unix epoch) to
    /// the newest: the export stays contiguous so that it verifies, even if a later entry
    /// carries an earlier time (replicas whose clocks differ).
    At(i64),
}

impl std::str::FromStr for Since {
    type Err = String;

    /// An entry number (digits only), or an RFC 3339 time (RFC 3339 §5.6), to the second.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Since::AfterSeq)
                .map_err(|_| format!("entry number {s} is too large"));
        }
        parse_rfc3339(s).map(Since::At).ok_or_else(|| {
            format!(
                "{s:?} is neither an entry number nor an RFC 3339 time such as \
                 2026-12-06T22:00:00Z or 2026-12-06T23:00:00+01:00"
            )
        })
    }
}

/// An RFC 3339 `date-time` (§5.6: `T` and `Z` in either case, fractional seconds, `Z` or a
/// numeric offset) as whole seconds since the Unix epoch, rounded down. `None` for anything
/// else, and for times before 1970.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.to_ascii_uppercase();
    let (utc, offset) = if s.ends_with('Z') {
        (s, 0)
    } else {
        let cut = s.len().checked_sub(6)?;
        let (local, zone) = (s.get(..cut)?, s.get(cut..)?);
        let [sign, h1, h2, b':', m1, m2] = *zone.as_bytes() else {
            return None;
        };
        let sign = match sign {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let digit = |b: u8| b.is_ascii_digit().then(|| i64::from(b - b'0'));
        let (hours, minutes) = (digit(h1)? * 10 + digit(h2)?, digit(m1)? * 10 + digit(m2)?);
        if hours > 23 || minutes > 59 {
            return None;
        }
        (format!("{local}Z"), sign * (hours * 3600 + minutes * 60))
    };
    let t = humantime::parse_rfc3339(&utc).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()?.checked_sub(offset)
}

/// What an export wrote: `entries` entries from `first` to `last` (fewer than the range holds if
/// entries are missing from the database), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exported {
    pub range: Option<(i64, i64)>,
    pub entries: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export after {written} entries: {source}")]
    Write {
        written: i64,
        source: std::io::Error,
    },
}

/// Writes the entries `since` selects, up to the head as it was when the export started, to
/// `out` as JSON Lines, flushing after each page. Needs no key: it reads and copies, and the
/// entries hold no key material.
pub async fn export_jsonl<W: Write>(
    store: &dyn Store,
    since: Since,
    out: &mut W,
) -> Result<Exported, ExportError> {
    let (head, _) = store.audit_head().await?;
    let mut after = match since {
        Since::AfterSeq(n) => n,
        Since::At(ts) => match store.audit_first_at(ts).await? {
            Some(seq) => seq - 1,
            None => head,
        },
    };
    let mut done = Exported::default();
    let mut line = Vec::with_capacity(1024);
    while after < head {
        let page = store.audit_entries(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in page.iter().take_while(|e| e.seq <= head) {
            line.clear();
            let written = done.entries;
            let fail = |source: std::io::Error| ExportError::Write { written, source };
            serde_json::to_writer(&mut line, e).map_err(|e| fail(e.into()))?;
            line.push(b'\n');
            out.write_all(&line).map_err(fail)?;
            done.range = Some((done.range.map_or(e.seq, |(a, _)| a), e.seq));
            done.entries += 1;
        }
        let written = done.entries;
        out.flush()
            .map_err(|source| ExportError::Write { written, source })?;
    }
    Ok(done)
}

/// Where an export stops verifying: the line at fault, when one is, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportBreak {
    /// Counted from 1.
    pub line: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for ExportBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

fn at_line(line: u64, b: AuditBreak) -> ExportBreak {
    ExportBreak {
        line: Some(line),
        reason: b.to_string(),
    }
}

/// The lines of an export, read one at a time, each at most [`MAX_LINE`] bytes.
struct Lines<R> {
    input: R,
    buf: Vec<u8>,
    /// The number of the line read last.
    n: u64,
}

impl<R: BufRead> Lines<R> {
    /// The next entry, a break if the next line is not one, `None` at the end. `before` is the
    /// entry on the line before, for the message.
    fn next_entry(
        &mut self,
        before: Option<i64>,
    ) -> std::io::Result<Option<Result<AuditEntry, ExportBreak>>> {
        self.buf.clear();
        let limit = MAX_LINE as u64 + 1;
        if (&mut self.input)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?
            == 0
        {
            return Ok(None);
        }
        self.n += 1;
        let after = before
            .map(|seq| format!(" (the line after entry {seq})"))
            .unwrap_or_default();
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            return Ok(Some(Err(ExportBreak {
                line: Some(self.n),
                reason: format!("longer than {MAX_LINE} bytes: not an audit entry{after}"),
            })));
        }
        Ok(Some(serde_json::from_slice(&self.buf).map_err(|e| {
            // serde_json says "at line 1 column N" of the one line it was given.
            let mut why = e.to_string();
            if let Some(i) = why.rfind(" at line ") {
                why.truncate(i);
            }
            ExportBreak {
                line: Some(self.n),
                reason: format!("not an audit entry{after}: {why} at column {}", e.column()),
            }
        })))
    }
}

/// Verifies an export (see the module documentation) under `key`, with `checkpoints` (whose
/// signatures were verified) matched against the entries it holds. An export with no entries
/// is a break: nothing was verified. `Err` only if `input` could not be read.
pub fn verify_jsonl<R: BufRead>(
    input: R,
    key: &ChainKey,
    checkpoints: &[Checkpoint],
) -> std::io::Result<Result<Report, ExportBreak>> {
    let mut lines = Lines {
        input,
        buf: Vec::with_capacity(1024),
        n: 0,
    };
    let mut entry = match lines.next_entry(None)? {
        None => {
            return Ok(Err(ExportBreak {
                line: None,
                reason: "the export holds no entries: nothing was verified".into(),
            }));
        }
        Some(Err(b)) => return Ok(Err(b)),
        Some(Ok(e)) => e,
    };
    // Numbered from 1, and far enough from the end of i64 that counting on cannot overflow.
    if !(1..=i64::MAX / 2).contains(&entry.seq) {
        return Ok(Err(ExportBreak {
            line: Some(1),
            reason: format!(
                "audit entry {}: out of range (entries are numbered from 1): altered",
                entry.seq
            ),
        }));
    }
    // Entry 1 links to the genesis hash, not to whatever its prev_hash says.
    let start = match entry.seq {
        1 => GENESIS.to_vec(),
        _ => entry.prev_hash.clone(),
    };
    let mut v = match Verifier::starting_after(key, entry.seq - 1, &start, checkpoints) {
        Ok(v) => v,
        Err(b) => return Ok(Err(at_line(1, b))),
    };
    loop {
        if let Err(b) = v.push(&entry) {
            return Ok(Err(at_line(lines.n, b)));
        }
        entry = match lines.next_entry(Some(entry.seq))? {
            None => break,
            Some(Err(b)) => return Ok(Err(b)),
            Some(Ok(e)) => e,
        };
    }
    Ok(v.finish_without_head().map_err(|b| ExportBreak {
        line: None,
        reason: b.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{events, key};
    use super::super::{CHAIN_PLAIN, chain};
    use super::*;

    fn sample(n: usize) -> Vec<AuditEntry> {
        chain(0, &GENESIS, 1000, Some("v1"), &events(n), &key())
    }

    fn jsonl(entries: &[AuditEntry]) -> String {
        entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect()
    }

    fn verify(text: &str) -> Result<Report, ExportBreak> {
        verify_text(text, &[])
    }

    fn verify_text(text: &str, checkpoints: &[Checkpoint]) -> Result<Report, ExportBreak> {
        verify_jsonl(text.as_bytes(), &key(), checkpoints).unwrap()
    }

    fn checkpoint(seq: i64, hash: &[u8]) -> Checkpoint {
        Checkpoint {
            iss: "https://as.example".into(),
            iat: 1_700_000_000,
            seq,
            hash: hash.to_vec(),
            kid: "k1".into(),
        }
    }

    #[test]
    fn since_takes_an_entry_number_or_an_rfc3339_time() {
        assert_eq!("0".parse(), Ok(Since::AfterSeq(0)));
        assert_eq!("42".parse(), Ok(Since::AfterSeq(42)));
        assert_eq!("2023-11-14T22:13:20Z".parse(), Ok(Since::At(1_700_000_000)));
        // RFC 3339 §5.6: lowercase t and z, fractional seconds (rounded down), offsets.
        assert_eq!(
            "2023-11-14t22:13:20.999z".parse(),
            Ok(Since::At(1_700_000_000))
        );
        assert_eq!(
            "2023-11-14T23:43:20+01:30".parse(),
            Ok(Since::At(1_700_000_000))
        );
        assert_eq!(
            "2023-11-14T17:13:20-05:00".parse(),
            Ok(Since::At(1_700_000_000))
        );
        for bad in [
            "",
            "-1",
            "yesterday",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20+1:00",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13:20+01:60",
            "2023-11-14T22:13:20€",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Since>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_export_round_trips_and_verifies() {
        let e = sample(5);
        let text = jsonl(&e);
        let back: Vec<AuditEntry> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, e);
        assert_eq!(
            verify(&text),
            Ok(Report {
                first: 1,
                entries: 5,
                plain: 0,
                checkpoints: 0
            })
        );
        // Without the final newline, too.
        assert_eq!(verify(text.trim_end()).map(|r| r.entries), Ok(5));
    }

    #[test]
    fn an_export_from_a_later_entry_verifies_from_there() {
        let e = sample(6);
        let r = verify(&jsonl(&e[2..])).unwrap();
        assert_eq!((r.first, r.entries), (3, 4));
        // A checkpoint of the entry before it anchors the start; one of an earlier entry
        // cannot be checked and does not count.
        let cps = [checkpoint(2, &e[1].hash), checkpoint(1, &e[0].hash)];
        assert_eq!(verify_text(&jsonl(&e[2..]), &cps).unwrap().checkpoints, 1);
        let wrong = [checkpoint(2, &e[0].hash)];
        let b = verify_text(&jsonl(&e[2..]), &wrong).unwrap_err();
        assert_eq!(b.line, Some(1));
        assert!(b.reason.contains("audit entry 3") && b.reason.contains("checkpoint"));
    }

    #[test]
    fn a_changed_removed_or_swapped_line_names_its_line_and_entry() {
        let e = sample(5);
        let mut altered = e.clone();
        altered[2].subject = Some("mallory".into());
        let b = verify(&jsonl(&altered)).unwrap_err();
        assert_eq!(b.line, Some(3));
        assert!(b.to_string().starts_with("line 3: audit entry 3:"), "{b}");

        let mut removed = e.clone();
        removed.remove(3);
        let b = verify(&jsonl(&removed)).unwrap_err();
        assert_eq!(b.line, Some(4));
        assert!(b.reason.contains("audit entry 4: missing"), "{b}");

        let mut swapped = e.clone();
        swapped.swap(1, 2);
        let b = verify(&jsonl(&swapped)).unwrap_err();
        assert_eq!(b.line, Some(2));
        assert!(b.reason.contains("audit entry 2: missing"), "{b}");

        // Entry 1 must start from the genesis hash.
        let mut first = e.clone();
        first[0].prev_hash = vec![1; 32];
        let b = verify(&jsonl(&first)).unwrap_err();
        assert!(b.reason.contains("audit entry 1: does not link"), "{b}");
    }

    #[test]
    fn a_line_that_is_not_an_entry_is_a_break() {
        let e = sample(3);
        let text = jsonl(&e);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, "not json");
        let b = verify(&lines.join("\n")).unwrap_err();
        assert_eq!(b.line, Some(3));
        assert!(
            b.reason
                .contains("not an audit entry (the line after entry 2)"),
            "{b}"
        );
        assert!(!b.reason.contains("line 1 column"), "{b}");

        let extra = text.replacen("{\"seq\":2,", "{\"seq\":2,\"note\":\"x\",", 1);
        let b = verify(&extra).unwrap_err();
        assert_eq!(b.line, Some(2));
        assert!(b.reason.contains("unknown field"), "{b}");

        for seq in [0, -5, i64::MAX] {
            let mut odd = e.clone();
            odd[0].seq = seq;
            let b = verify(&jsonl(&odd)).unwrap_err();
            assert_eq!(b.line, Some(1));
            assert!(b.reason.contains("out of range"), "{b}");
        }

        let b = verify("").unwrap_err();
        assert_eq!(b.line, None);
        assert!(b.reason.contains("no entries"), "{b}");

        let long = format!("{}{}", text, "x".repeat(MAX_LINE + 10));
        let b = verify(&long).unwrap_err();
        assert_eq!(b.line, Some(4));
        assert!(b.reason.contains("longer than"), "{b}");
    }

    #[test]
    fn a_checkpoint_past_the_end_of_the_export_shows_entries_removed_from_it() {
        let e = sample(5);
        let cp = [checkpoint(5, &e[4].hash)];
        assert_eq!(verify_text(&jsonl(&e), &cp).unwrap().checkpoints, 1);
        let b = verify_text(&jsonl(&e[..3]), &cp).unwrap_err();
        assert_eq!(b.line, None);
        assert!(
            b.reason.contains("audit entry 4") && b.reason.contains("removed from the end"),
            "{b}"
        );
        // Without it the shorter export verifies: an export holds no head.
        assert!(verify(&jsonl(&e[..3])).is_ok());
    }

    #[test]
    fn an_export_ending_in_plain_entries_does_not_verify() {
        let mut e = sample(3);
        let mut prev = GENESIS.to_vec();
        for x in &mut e {
            x.chain_version = CHAIN_PLAIN;
            x.prev_hash = prev.clone();
            x.hash = x.plain_digest(&prev).to_vec();
            prev = x.hash.clone();
        }
        let b = verify(&jsonl(&e)).unwrap_err();
        assert!(b.reason.contains("not keyed"), "{b}");
    }
}
