//! How long a fetched document is kept (draft-03 "Metadata Caching": the server SHOULD respect
//! HTTP caching headers, RFC 9111, and MAY bound the lifetime), and the bounded store that keeps
//! documents and recent failures.
//!
//! The lifetime, roughly as RFC 9111 §4.2.1 computes freshness for a private cache: `no-store`,
//! `no-cache` or `max-age=0` mean "as short as allowed"; else `max-age`; else `Expires` minus
//! `Date` (or minus now); less `Age`; with none of them the default. The result is clamped to
//! `[min, max]`: the minimum holds even for `no-store`, so a document cannot make this server
//! fetch it on every request (a client that floods `/authorize` would turn the server into a
//! request amplifier).
//!
//! The store keeps at most `max_entries` documents and failures; when full, the entry stored
//! first goes. A failure is kept for `failure_ttl` only: the draft says a server MUST NOT cache
//! error responses or invalid documents, and none is ever *used* as a document; the entry only
//! answers the same refusal again for a few seconds instead of fetching again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::OnceCell;

use super::{ClientMetadata, Refusal};

/// The caching headers of a response, as received (several fields of one name joined by `,`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    pub date: Option<String>,
    pub age: Option<String>,
}

/// The operator's bounds, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
    pub default: u64,
}

/// The lifetime of a document received with `h` at `now` (seconds since the epoch).
pub fn lifetime(h: &Headers, now: i64, b: Bounds) -> u64 {
    let clamp = |s: u64| s.clamp(b.min, b.max.max(b.min));
    let mut max_age = None;
    if let Some(cc) = &h.cache_control {
        for directive in cc.split(',') {
            let (name, value) = match directive.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return clamp(0);
            }
            if name.eq_ignore_ascii_case("max-age") {
                // RFC 9111 §1.2.2: a delta-seconds too large for us is "very large"; one that is
                // not a number makes the response stale (§4.2.1).
                let secs = value.map(|v| {
                    if !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()) {
                        v.parse::<u64>().unwrap_or(u64::MAX)
                    } else {
                        0
                    }
                });
                max_age = max_age.or(secs);
            }
        }
    }
    let age = h
        .age
        .as_deref()
        .and_then(|a| a.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let fresh = match max_age {
        Some(s) => Some(s),
        None => h.expires.as_deref().map(|e| {
            let base = h.date.as_deref().and_then(epoch).unwrap_or(now);
            // RFC 9111 §5.3: an invalid Expires (such as "0") means already expired.
            epoch(e).map_or(0, |exp| {
                u64::try_from(exp.saturating_sub(base)).unwrap_or(0)
            })
        }),
    };
    match fresh {
        Some(s) => clamp(s.saturating_sub(age)),
        None => clamp(b.default),
    }
}

/// An HTTP-date (RFC 9110 §5.6.7) as seconds since the epoch.
fn epoch(s: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_secs()).ok()
}

/// What one fetch gave: the document and its lifetime in seconds, or why not.
pub(super) type Outcome = Result<(Arc<ClientMetadata>, u64), Refusal>;

/// The fetch of one URL that callers share: the first runs it, the others wait for its result.
pub(super) type Pending = Arc<OnceCell<Outcome>>;

enum Slot {
    Ready {
        doc: Arc<ClientMetadata>,
        until: i64,
        seq: u64,
    },
    Failed {
        refusal: Refusal,
        until: i64,
        seq: u64,
    },
    Fetching(Pending),
}

/// What [`Store::lookup`] found.
pub(super) enum Lookup {
    Hit(Arc<ClientMetadata>),
    RecentFailure(Refusal),
    /// Run or join this fetch, then [`Store::finish`] it.
    Fetch(Pending),
}

/// Documents, recent failures and fetches under way, by URL. Used under a mutex; nothing in it
/// awaits.
pub(super) struct Store {
    slots: HashMap<String, Slot>,
    /// Stored documents by insertion order, for eviction.
    order: BTreeMap<u64, String>,
    /// Stored failures by insertion order, apart: a flood of URLs that fail (anyone can name
    /// them) evicts only other failures, never a good client's document.
    failed: BTreeMap<u64, String>,
    next: u64,
    max_entries: usize,
    failure_ttl: u64,
}

impl Store {
    pub(super) fn new(max_entries: usize, failure_ttl: u64) -> Self {
        Self {
            slots: HashMap::new(),
            order: BTreeMap::new(),
            failed: BTreeMap::new(),
            next: 0,
            max_entries: max_entries.max(1),
            failure_ttl,
        }
    }

    pub(super) fn lookup(&mut self, url: &str, now: i64) -> Lookup {
        match self.slots.get(url) {
            Some(Slot::Ready { doc, until, .. }) if *until > now => {
                return Lookup::Hit(doc.clone());
            }
            Some(Slot::Failed { refusal, until, .. }) if *until > now => {
                return Lookup::RecentFailure(refusal.clone());
            }
            Some(Slot::Fetching(p)) => return Lookup::Fetch(p.clone()),
            _ => {}
        }
        let pending: Pending = Arc::new(OnceCell::new());
        self.remove(url);
        self.slots
            .insert(url.to_string(), Slot::Fetching(pending.clone()));
        Lookup::Fetch(pending)
    }

    /// Stores the outcome of `pending`, once: only if it is still the fetch under way for `url`
    /// (the first of the callers that shared it to get here does it).
    pub(super) fn finish(&mut self, url: &str, pending: &Pending, outcome: &Outcome, now: i64) {
        let current =
            matches!(self.slots.get(url), Some(Slot::Fetching(p)) if Arc::ptr_eq(p, pending));
        if !current {
            return;
        }
        self.slots.remove(url);
        let seq = self.next;
        self.next += 1;
        let slot = match outcome {
            Ok((doc, secs)) => Slot::Ready {
                doc: doc.clone(),
                until: now.saturating_add(i64::try_from(*secs).unwrap_or(i64::MAX)),
                seq,
            },
            // Our own load is not the document's fault: nothing to remember.
            Err(Refusal::Busy) => return,
            Err(_) if self.failure_ttl == 0 => return,
            Err(r) => Slot::Failed {
                refusal: r.clone(),
                until: now.saturating_add(i64::try_from(self.failure_ttl).unwrap_or(i64::MAX)),
                seq,
            },
        };
        // Documents up to `max_entries`; failures apart, up to a quarter of that (at least one).
        let (order, cap) = match slot {
            Slot::Failed { .. } => (&mut self.failed, self.max_entries / 4),
            _ => (&mut self.order, self.max_entries),
        };
        let cap = cap.max(1);
        while order.len() >= cap {
            let Some((_, oldest)) = order.pop_first() else {
                break;
            };
            self.slots.remove(&oldest);
        }
        order.insert(seq, url.to_string());
        self.slots.insert(url.to_string(), slot);
    }

    /// Forgets a fetch that every caller gave up on (all were cancelled), so the next one starts
    /// afresh.
    pub(super) fn abandon(&mut self, url: &str, pending: &Pending) {
        let current =
            matches!(self.slots.get(url), Some(Slot::Fetching(p)) if Arc::ptr_eq(p, pending));
        if current && pending.get().is_none() && Arc::strong_count(pending) <= 2 {
            self.slots.remove(url);
        }
    }

    fn remove(&mut self, url: &str) {
        match self.slots.remove(url) {
            Some(Slot::Ready { seq, .. }) => self.order.remove(&seq),
            Some(Slot::Failed { seq, .. }) => self.failed.remove(&seq),
            _ => None,
        };
    }

    /// Stored documents and failures (not fetches under way).
    pub(super) fn len(&self) -> usize {
        self.order.len() + self.failed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        min: 60,
        max: 86_400,
        default: 300,
    };
    const NOW: i64 = 1_790_000_000;

    fn cc(v: &str) -> Headers {
        Headers {
            cache_control: Some(v.into()),
            ..Headers::default()
        }
    }

    fn date(t: i64) -> String {
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64))
    }

    /// Draft-03 "Metadata Caching": RFC 9111's headers are respected, within the server's own
    /// lower and upper bounds.
    #[test]
    fn cache_lifetime_follows_the_headers_within_the_bounds() {
        let table = [
            (Headers::default(), 300),
            (cc("max-age=3600"), 3600),
            (cc("public, max-age=600"), 600),
            (cc("max-age=\"120\""), 120),
            (cc("MAX-AGE=7200"), 7200),
            (cc("max-age=10"), 60),
            (cc("max-age=0"), 60),
            (cc("no-store"), 60),
            (cc("no-cache"), 60),
            (cc("max-age=3600, no-store"), 60),
            (cc("max-age=31536000"), 86_400),
            (cc("max-age=99999999999999999999999"), 86_400),
            (cc("max-age=-1"), 60),
            (cc("max-age=abc"), 60),
            (cc("private"), 300),
            // The first max-age counts.
            (cc("max-age=600, max-age=60000"), 600),
        ];
        for (h, want) in table {
            assert_eq!(lifetime(&h, NOW, B), want, "{h:?}");
        }
    }

    /// RFC 9111 §5.3 and §4.2.1: Expires counts from Date when there is one; max-age wins over
    /// it; Age is subtracted; an invalid Expires is already expired.
    #[test]
    fn expires_date_and_age_are_honoured_roughly() {
        let h = |expires: &str, d: Option<String>| Headers {
            expires: Some(expires.into()),
            date: d,
            ..Headers::default()
        };
        assert_eq!(lifetime(&h(&date(NOW + 1800), None), NOW, B), 1800);
        // A server whose clock runs an hour ahead: Date says so, and the difference counts.
        assert_eq!(
            lifetime(&h(&date(NOW + 3600 + 900), Some(date(NOW + 3600))), NOW, B),
            900
        );
        assert_eq!(lifetime(&h(&date(NOW - 10), None), NOW, B), 60);
        assert_eq!(lifetime(&h("0", None), NOW, B), 60);
        assert_eq!(lifetime(&h(&date(NOW + 10 * 86_400), None), NOW, B), 86_400);
        let mut both = h(&date(NOW + 1800), None);
        both.cache_control = Some("max-age=600".into());
        assert_eq!(lifetime(&both, NOW, B), 600);
        let mut aged = cc("max-age=600");
        aged.age = Some("500".into());
        assert_eq!(lifetime(&aged, NOW, B), 100);
        aged.age = Some("5000".into());
        assert_eq!(lifetime(&aged, NOW, B), 60);
    }

    fn doc(n: u32) -> Arc<ClientMetadata> {
        Arc::new(ClientMetadata {
            client_id: format!("https://a.example/{n}"),
            host: "a.example".into(),
            listed: false,
            client_name: None,
            redirect_uris: vec!["https://a.example/cb".into()],
            grant_types: vec![],
            client_uri: None,
            logo_uri: None,
            scope: None,
        })
    }

    fn fetch(s: &mut Store, url: &str, outcome: Outcome, now: i64) {
        let Lookup::Fetch(p) = s.lookup(url, now) else {
            panic!("{url} should be fetched");
        };
        s.finish(url, &p, &outcome, now);
    }

    #[test]
    fn the_store_is_bounded_and_evicts_the_oldest() {
        let mut s = Store::new(3, 10);
        for n in 0..5 {
            fetch(&mut s, &format!("u{n}"), Ok((doc(n), 300)), NOW);
            assert!(s.len() <= 3);
        }
        assert_eq!(s.len(), 3);
        assert!(matches!(s.lookup("u4", NOW), Lookup::Hit(_)));
        assert!(matches!(s.lookup("u2", NOW), Lookup::Hit(_)));
        assert!(
            matches!(s.lookup("u0", NOW), Lookup::Fetch(_)),
            "u0 was evicted"
        );
    }

    /// Draft-03 "Server Side Request Forgery"/availability: anyone can name URLs that fail, so
    /// failures are kept apart (a quarter of the entries) and never evict a good document.
    #[test]
    fn a_flood_of_failures_never_evicts_a_document() {
        let mut s = Store::new(8, 10);
        fetch(&mut s, "good", Ok((doc(1), 300)), NOW);
        for n in 0..100 {
            fetch(&mut s, &format!("bad{n}"), Err(Refusal::Status(404)), NOW);
        }
        assert!(matches!(s.lookup("good", NOW), Lookup::Hit(_)));
        assert_eq!(s.len(), 1 + 2, "one document and two failures (8 / 4)");
        assert!(matches!(s.lookup("bad99", NOW), Lookup::RecentFailure(_)));
        assert!(
            matches!(s.lookup("bad0", NOW), Lookup::Fetch(_)),
            "the oldest failure went"
        );
    }

    #[test]
    fn documents_expire_and_failures_are_remembered_briefly() {
        let mut s = Store::new(10, 10);
        fetch(&mut s, "ok", Ok((doc(1), 60)), NOW);
        assert!(matches!(s.lookup("ok", NOW + 59), Lookup::Hit(_)));
        assert!(matches!(s.lookup("ok", NOW + 60), Lookup::Fetch(_)));
        fetch(&mut s, "bad", Err(Refusal::Status(404)), NOW);
        assert!(matches!(
            s.lookup("bad", NOW + 9),
            Lookup::RecentFailure(Refusal::Status(404))
        ));
        assert!(matches!(s.lookup("bad", NOW + 10), Lookup::Fetch(_)));
        // Our own load is never remembered as the document's failure.
        fetch(&mut s, "busy", Err(Refusal::Busy), NOW);
        assert!(matches!(s.lookup("busy", NOW), Lookup::Fetch(_)));
        // failure_ttl = 0: no negative cache at all.
        let mut none = Store::new(10, 0);
        fetch(&mut none, "bad", Err(Refusal::Status(500)), NOW);
        assert!(matches!(none.lookup("bad", NOW), Lookup::Fetch(_)));
    }

    /// A fetch whose every caller was cancelled (a client that hung up) is forgotten, so fetches
    /// under way cannot pile up; one that another caller still waits for stays.
    #[test]
    fn a_fetch_every_caller_gave_up_on_is_forgotten() {
        let mut s = Store::new(10, 10);
        let Lookup::Fetch(p) = s.lookup("u", NOW) else {
            panic!()
        };
        s.abandon("u", &p);
        let Lookup::Fetch(q) = s.lookup("u", NOW) else {
            panic!()
        };
        assert!(!Arc::ptr_eq(&p, &q), "a new fetch");
        let Lookup::Fetch(other) = s.lookup("u", NOW) else {
            panic!()
        };
        s.abandon("u", &q);
        let Lookup::Fetch(again) = s.lookup("u", NOW) else {
            panic!()
        };
        assert!(
            Arc::ptr_eq(&other, &again),
            "still shared with the waiting caller"
        );
        assert_eq!(s.len(), 0, "fetches under way are not stored entries");
    }

    #[test]
    fn callers_of_one_url_share_one_fetch() {
        let mut s = Store::new(10, 10);
        let Lookup::Fetch(a) = s.lookup("u", NOW) else {
            panic!()
        };
        let Lookup::Fetch(b) = s.lookup("u", NOW) else {
            panic!()
        };
        assert!(Arc::ptr_eq(&a, &b));
        let outcome: Outcome = Ok((doc(1), 300));
        s.finish("u", &a, &outcome, NOW);
        // The second caller's finish finds the fetch already stored and changes nothing.
        s.finish("u", &b, &Err(Refusal::Connect), NOW);
        assert!(matches!(s.lookup("u", NOW), Lookup::Hit(_)));
    }
}
