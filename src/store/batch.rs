//! What one [`crate::store::Store::commit_batch`] does, decided here once for both backends;
//! each backend only reads and writes what this plan asks for.
//!
//! Items apply in order. A token whose parent is revoked (before the batch, or by a revocation
//! earlier in the same batch) or unknown is not issued: its item's outcome is
//! [`WriteOutcome::ParentRevoked`] and nothing of the item is recorded, neither its tokens nor its
//! audit events (which would claim an issuance that did not happen). A revocation later in the
//! batch than an issuance revokes what was issued before it, like any other token.
//!
//! The batch is cut into [`Run`]s, each ending at a revocation or at the batch's end. A backend
//! reads which of a run's parents are live once, as the run starts (after the previous run's
//! revocation was applied), lets [`Run::decide`] settle the run's issuances, writes the tokens
//! it issues, then applies the revocation. A run of any length costs one read, one insert per
//! chunk of tokens ([`crate::store::sql::chunks`]) and its revocation.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use super::{BatchItem, Cut, Party, TokenRecord, WriteOp, WriteOutcome};
use crate::audit::AuditEvent;

/// A stretch of a batch with at most one revocation, its last item.
pub struct Run<'a> {
    items: &'a [BatchItem],
}

/// What a revocation seeds its subtree with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation<'a> {
    Token(&'a [u8]),
    Session(&'a str),
    Party(&'a Party),
}

/// A run's issuances, settled.
#[derive(Debug, PartialEq, Eq)]
pub struct Decided<'a> {
    /// One per item of the run before its revocation.
    pub outcomes: Vec<WriteOutcome>,
    /// The tokens to record, in the order of their items.
    pub tokens: Vec<&'a TokenRecord>,
}

fn revocation(op: &WriteOp) -> Option<Revocation<'_>> {
    match op {
        WriteOp::Revoke { token_hash } => Some(Revocation::Token(token_hash)),
        WriteOp::RevokeSession { sid } => Some(Revocation::Session(sid)),
        WriteOp::RevokeParty(p) => Some(Revocation::Party(p)),
        WriteOp::None | WriteOp::IssueTokens(_) | WriteOp::Touch { .. } | WriteOp::Notify(_) => {
            None
        }
    }
}

/// `items` cut after each revocation.
pub fn runs(items: &[BatchItem]) -> impl Iterator<Item = Run<'_>> {
    items
        .split_inclusive(|i| revocation(&i.op).is_some())
        .map(|items| Run { items })
}

impl<'a> Run<'a> {
    /// The distinct parents of the run's tokens, sorted: whose liveness the backend reads.
    pub fn parents(&self) -> Vec<&'a [u8]> {
        let mut out: Vec<&[u8]> = (self.items.iter())
            .filter_map(|i| match &i.op {
                WriteOp::IssueTokens(tokens) => Some(tokens),
                _ => None,
            })
            .flatten()
            .filter_map(|t| t.parent_hash.as_deref())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The revocation that ends the run, if one does.
    pub fn revocation(&self) -> Option<Revocation<'a>> {
        self.items.last().and_then(|i| revocation(&i.op))
    }

    /// Settles the run's issuances: `live` says whether a parent was a live (recorded and
    /// unrevoked) token when the run started; a token issued earlier in the run is live too.
    pub fn decide(&self, live: impl Fn(&[u8]) -> bool) -> Decided<'a> {
        let before = match self.revocation() {
            Some(_) => self.items.len().saturating_sub(1),
            None => self.items.len(),
        };
        let mut issued: HashSet<&[u8]> = HashSet::new();
        let mut d = Decided {
            outcomes: Vec::with_capacity(before),
            tokens: Vec::new(),
        };
        for item in self.items.iter().take(before) {
            let WriteOp::IssueTokens(tokens) = &item.op else {
                d.outcomes.push(WriteOutcome::Done);
                continue;
            };
            let refused = (tokens.iter().filter_map(|t| t.parent_hash.as_deref()))
                .any(|p| !issued.contains(p) && !live(p));
            if refused {
                d.outcomes.push(WriteOutcome::ParentRevoked);
                continue;
            }
            issued.extend(tokens.iter().map(|t| t.token_hash.as_slice()));
            d.tokens.extend(tokens.iter());
            d.outcomes.push(WriteOutcome::Done);
        }
        d
    }
}

/// The audit events of a batch whose items ended with `outcomes`, in order: a refused
/// issuance's are left out, and a revocation's say how many tokens it revoked.
pub fn events<'a>(items: &'a [BatchItem], outcomes: &[WriteOutcome]) -> Vec<Cow<'a, AuditEvent>> {
    let mut out = Vec::new();
    for (item, outcome) in items.iter().zip(outcomes) {
        for ev in &item.audit {
            match outcome {
                WriteOutcome::ParentRevoked => {}
                WriteOutcome::Done => out.push(Cow::Borrowed(ev)),
                WriteOutcome::Revoked(n) => {
                    let mut ev = ev.clone();
                    if let Some(o) = ev.detail.as_object_mut() {
                        o.insert("revoked".into(), (*n).into());
                    }
                    out.push(Cow::Owned(ev));
                }
            }
        }
    }
    out
}

/// The messages the batch enqueues, in order: those of items that were applied, then those
/// about what each revocation cut. `cuts` holds, for each item, the tokens its revocation cut.
pub fn outgoing<'a>(
    items: &'a [BatchItem],
    outcomes: &[WriteOutcome],
    cuts: &[Vec<Cut>],
) -> Vec<Cow<'a, super::outbox::Outgoing>> {
    let mut out = Vec::new();
    for (i, (item, outcome)) in items.iter().zip(outcomes).enumerate() {
        if let (WriteOp::Notify(messages), WriteOutcome::Done) = (&item.op, outcome) {
            out.extend(messages.iter().map(Cow::Borrowed));
        }
        let applied = match (outcome, &item.op) {
            (WriteOutcome::ParentRevoked, _) => false,
            // A party is cut off (disabled, removed) even when it held no token.
            (WriteOutcome::Revoked(_), WriteOp::RevokeParty(_)) => true,
            // Nothing left to revoke: an earlier revocation did it, and signalled it.
            (WriteOutcome::Revoked(n), _) => *n > 0,
            (WriteOutcome::Done, _) => true,
        };
        if applied {
            out.extend(item.signals.iter().map(Cow::Borrowed));
        }
        let cut = cuts.get(i).map(Vec::as_slice).unwrap_or_default();
        if let (Some(on_cut), Some(r), false) = (&item.on_cut, revocation(&item.op), cut.is_empty())
        {
            out.extend((on_cut.0)(&r, cut).into_iter().map(Cow::Owned));
        }
    }
    out
}

/// The batch's uses of tokens (introspection), by user: each `jti` once, sorted. They are
/// written after the batch's other items (a use changes no outcome).
pub fn touches(items: &[BatchItem]) -> BTreeMap<&str, Vec<&str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for item in items {
        if let WriteOp::Touch { jti, by } = &item.op {
            out.entry(by.as_str()).or_default().push(jti.as_str());
        }
    }
    for jtis in out.values_mut() {
        jtis.sort_unstable();
        jtis.dedup();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TokenKind;

    fn h(name: &str) -> Vec<u8> {
        name.as_bytes().to_vec()
    }

    fn token(name: &str, parent: Option<&str>) -> TokenRecord {
        TokenRecord {
            token_hash: h(name),
            jti: name.into(),
            kind: TokenKind::Access,
            sub: "alice".into(),
            client_id: "c".into(),
            scope: "s".into(),
            aud: Default::default(),
            iat: 0,
            exp: 1,
            sid: None,
            parent_hash: parent.map(h),
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

    fn issue(name: &str, parent: Option<&str>) -> BatchItem {
        BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::IssueTokens(vec![token(name, parent)]),
            audit: vec![AuditEvent::new("token.issued")],
        }
    }

    fn revoke(name: &str) -> BatchItem {
        BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: WriteOp::Revoke {
                token_hash: h(name),
            },
            audit: vec![AuditEvent::new("token.revoked")],
        }
    }

    /// Runs the plan against a set of live tokens the way a backend does, revoking by name.
    fn apply(items: &[BatchItem], live: &mut HashSet<Vec<u8>>) -> Vec<WriteOutcome> {
        let mut out = Vec::new();
        for run in runs(items) {
            let d = run.decide(|p| live.contains(p));
            live.extend(d.tokens.iter().map(|t| t.token_hash.clone()));
            out.extend(d.outcomes);
            if let Some(Revocation::Token(t)) = run.revocation() {
                out.push(WriteOutcome::Revoked(live.remove(t) as u64));
            }
        }
        out
    }

    #[test]
    fn a_token_whose_parent_was_revoked_earlier_in_the_batch_is_refused() {
        let mut live: HashSet<Vec<u8>> = [h("p"), h("q")].into();
        let items = [
            revoke("p"),
            issue("c", Some("p")),
            issue("d", Some("q")),
            issue("e", None),
        ];
        assert_eq!(
            apply(&items, &mut live),
            [
                WriteOutcome::Revoked(1),
                WriteOutcome::ParentRevoked,
                WriteOutcome::Done,
                WriteOutcome::Done
            ]
        );
        assert!(!live.contains(&h("c")));
        assert!(live.contains(&h("d")) && live.contains(&h("e")));
    }

    #[test]
    fn a_parent_issued_earlier_in_the_run_is_live_and_a_refused_one_is_not() {
        let mut live: HashSet<Vec<u8>> = HashSet::new();
        let items = [
            issue("a", None),
            issue("b", Some("a")),
            issue("x", Some("gone")),
            issue("y", Some("x")),
        ];
        assert_eq!(
            apply(&items, &mut live),
            [
                WriteOutcome::Done,
                WriteOutcome::Done,
                WriteOutcome::ParentRevoked,
                WriteOutcome::ParentRevoked
            ]
        );
    }

    #[test]
    fn one_refused_token_refuses_its_whole_item_and_its_audit_events() {
        let items = [
            BatchItem {
                signals: Vec::new(),
                on_cut: None,
                op: WriteOp::IssueTokens(vec![token("a", None), token("b", Some("gone"))]),
                audit: vec![AuditEvent::new("token.issued")],
            },
            revoke("z"),
        ];
        let d = runs(&items).next().unwrap().decide(|_| false);
        assert_eq!(d.outcomes, [WriteOutcome::ParentRevoked]);
        assert!(d.tokens.is_empty());
        let events = events(
            &items,
            &[WriteOutcome::ParentRevoked, WriteOutcome::Revoked(3)],
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "token.revoked");
        assert_eq!(events[0].detail["revoked"], 3);
    }

    fn signal(id: &str) -> crate::store::outbox::Outgoing {
        crate::store::outbox::Outgoing {
            event_id: id.into(),
            stream: "ssf:rs".into(),
            kind: "ssf.set".into(),
            payload: "{}".into(),
            expires_at: None,
        }
    }

    /// A tapped item's signals are written only if the item applied: not for a refused
    /// issuance, not for a revocation that found nothing left to revoke (another one did, and
    /// signalled it), but always for a party cut off, who may have held no token.
    #[test]
    fn signals_go_out_only_with_what_was_applied() {
        let mut items = [
            revoke("a"),
            revoke("b"),
            issue("c", Some("gone")),
            BatchItem::new(WriteOp::RevokeParty(Party::Agent("x".into())), vec![]),
        ];
        for (i, item) in items.iter_mut().enumerate() {
            item.signals.push(signal(&i.to_string()));
        }
        let outcomes = [
            WriteOutcome::Revoked(2),
            WriteOutcome::Revoked(0),
            WriteOutcome::ParentRevoked,
            WriteOutcome::Revoked(0),
        ];
        let ids: Vec<String> = (outgoing(&items, &outcomes, &[]).into_iter())
            .map(|m| m.event_id.clone())
            .collect();
        assert_eq!(ids, ["0", "3"]);

        // What a revocation cut is told after the item's own signals, once per cut token,
        // with the revocation that cut it; a revocation that cut nothing tells nothing.
        let hook =
            crate::store::outbox::OnCut(std::sync::Arc::new(|r: &Revocation<'_>, cut: &[Cut]| {
                assert_eq!(*r, Revocation::Token(b"a"));
                cut.iter()
                    .map(|c| signal(&format!("cut-{}", c.jti)))
                    .collect()
            }));
        items[0].on_cut = Some(hook.clone());
        items[1].on_cut = Some(hook);
        let cut = |jti: &str| Cut {
            jti: jti.into(),
            sid: None,
            sub: "alice".into(),
            client_id: "c".into(),
        };
        let cuts = [vec![cut("a"), cut("a-child")], vec![], vec![], vec![]];
        let ids: Vec<String> = (outgoing(&items, &outcomes, &cuts).into_iter())
            .map(|m| m.event_id.clone())
            .collect();
        assert_eq!(ids, ["0", "cut-a", "cut-a-child", "3"]);
    }

    #[test]
    fn runs_end_at_each_revocation_and_read_each_parent_once() {
        let items = [
            issue("a", Some("p")),
            issue("b", Some("p")),
            revoke("a"),
            issue("c", Some("q")),
        ];
        let runs: Vec<Run> = runs(&items).collect();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].parents(), [&b"p"[..]]);
        assert_eq!(runs[0].revocation(), Some(Revocation::Token(b"a")));
        assert_eq!(runs[1].parents(), [&b"q"[..]]);
        assert_eq!(runs[1].revocation(), None);
    }
}
