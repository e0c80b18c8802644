//! Security events out: mandate as a transmitter of the OpenID Shared Signals Framework 1.0.
//! A revocation (a token, a session, every token of a disabled agent or a deleted client)
//! becomes a Security Event Token (RFC 8417) carrying the CAEP 1.0 `session-revoked` event,
//! one per configured stream that asked for it, written to the outbox in the transaction of
//! the revocation's audit entry and pushed to the receiver (RFC 8935) by the delivery worker.
//!
//! # Layout
//! - `mod.rs`: [`Transmitter`], the writer's [`Tap`]: which audit events become which SETs,
//!   for which streams.
//! - `set.rs`: the SET's claims (`sub_id` per RFC 9493 and SSF 1.0 §3) and its signature.
//! - `push.rs`: one RFC 8935 push, bounded like a webhook. RFC 8936 poll streams
//!   (`delivery = "poll"`) are answered by `http::ssf_poll` from the outbox.
//! - `streams.rs`: streams receivers manage themselves (SSF 1.0 §8.1, clients marked
//!   `ssf_receiver`): their configuration parsed and rendered; `receiver.rs`: pushes to the
//!   URLs they chose, checked against server-side request forgery at every push.
//!
//! What a stream covers: every subject of this server. A stream is the operator's own trust
//! decision (a resource server of theirs); a SET carries identifiers (a session id, a token's
//! `jti`, a username, an agent or client id), never a token or a secret.

pub mod polls;
mod push;
pub mod receiver;
pub mod set;
pub mod streams;

use std::sync::Arc;

use crate::audit::AuditEvent;
use crate::config::{Config, SESSION_REVOKED, SSF_DEFAULT_EVENTS, SsfStreamConfig};
use crate::store::Cut;
use crate::store::Revocation;
pub use crate::store::outbox::POLLED;
use crate::store::outbox::{OnCut, Outgoing, Tap};
use crate::store::ssf::FANOUT;

pub use push::{Push, PushError, credential};
pub use set::{SetClaims, sign};

/// Streams of SETs are `ssf:<name>` in the outbox.
pub const STREAM: &str = "ssf:";
/// The outbox `kind` of a SET.
pub const KIND: &str = "ssf.set";

struct Stream {
    /// The outbox stream: `ssf:<name>` (pushed) or `ssfpoll:<name>` (polled).
    outbox: String,
    audience: String,
    events: Vec<String>,
}

/// Turns committed events into SETs for the configured streams. Holds no secret: the CLI
/// builds one too, so that its revocations are signalled like the server's.
pub struct Transmitter {
    issuer: String,
    streams: Vec<Stream>,
    /// Whether receivers may create streams (a client is marked `ssf_receiver`): then every
    /// SET is also written once to [`FANOUT`], which the commit turns into one per receiver
    /// stream that exists then and wants it.
    receivers: bool,
    /// Wakes the delivery worker once SETs were committed.
    wake: Option<Arc<tokio::sync::Notify>>,
}

impl Transmitter {
    pub fn new(config: &Config, issuer: &str, wake: Option<Arc<tokio::sync::Notify>>) -> Self {
        let streams = (config.ssf.streams.iter())
            .map(|s: &SsfStreamConfig| Stream {
                outbox: match s.delivery.as_str() {
                    "poll" => format!("{POLLED}{}", s.name),
                    _ => format!("{STREAM}{}", s.name),
                },
                audience: s.audience.clone(),
                events: if s.events_requested.is_empty() {
                    SSF_DEFAULT_EVENTS.iter().map(|e| e.to_string()).collect()
                } else {
                    s.events_requested.clone()
                },
            })
            .collect();
        Self {
            issuer: issuer.trim_end_matches('/').to_string(),
            streams,
            receivers: config.clients.iter().any(|c| c.ssf_receiver),
            wake,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.streams.is_empty() || self.receivers
    }
}

impl Transmitter {
    /// The streams that asked for `event_type`, as (outbox stream, audience).
    /// With receiver streams, one more for [`FANOUT`], which the commit turns into one per
    /// receiver stream that exists then and wants it.
    fn wanting(&self, event_type: &str) -> Vec<(String, String)> {
        let receivers = self.receivers.then(|| (FANOUT.to_string(), String::new()));
        (self.streams.iter())
            .filter(|s| s.events.iter().any(|e| e == event_type))
            .map(|s| (s.outbox.clone(), s.audience.clone()))
            .chain(receivers)
            .collect()
    }
}

/// One SET of `signal` for each of `streams`, under a fresh `jti` each.
fn messages(
    issuer: &str,
    streams: &[(String, String)],
    signal: &set::Signal,
    now: i64,
) -> Vec<Outgoing> {
    (streams.iter())
        .filter_map(|(outbox, audience)| {
            let jti = crate::crypto::random_id();
            let claims = signal.claims(issuer, audience, &jti, now);
            Some(Outgoing {
                event_id: jti,
                stream: outbox.clone(),
                kind: KIND.into(),
                payload: serde_json::to_string(&claims).ok()?,
                expires_at: None,
            })
        })
        .collect()
}

impl Tap for Transmitter {
    fn signals(&self, ev: &AuditEvent, now: i64) -> Vec<Outgoing> {
        match set::Signal::of(ev) {
            // A revoked token or session is named by the tokens the revocation cut (on_cut).
            Some(signal) if !signal.names_tokens() => messages(
                &self.issuer,
                &self.wanting(signal.event_type()),
                &signal,
                now,
            ),
            _ => Vec::new(),
        }
    }

    /// Every token a revocation cut that its own signal does not name gets a SET naming its
    /// session: a refresh token's whole session when that session was revoked, else the token
    /// alone (by its `jti`), so a resource server drops what mandate revoked, the tokens
    /// exchanged from it (sessions of their own) included, and nothing more.
    fn on_cut(&self, ev: &AuditEvent, now: i64) -> Option<OnCut> {
        let signal = set::Signal::of(ev)?;
        let streams = self.wanting(SESSION_REVOKED);
        if streams.is_empty() || signal.event_type() != SESSION_REVOKED {
            return None;
        }
        let issuer = self.issuer.clone();
        Some(OnCut(Arc::new(
            move |revocation: &Revocation<'_>, cut: &[Cut]| {
                let mut named = std::collections::HashSet::new();
                let mut out = Vec::new();
                for c in cut.iter().filter(|c| !signal.covers(c)) {
                    let id = match (revocation, c.sid.as_deref()) {
                        (Revocation::Session(s), Some(sid)) if *s == sid => sid,
                        _ => c.jti.as_str(),
                    };
                    if named.insert(id.to_string()) {
                        out.extend(messages(
                            &issuer,
                            &streams,
                            &signal.session(id, &c.sub),
                            now,
                        ));
                    }
                }
                out
            },
        )))
    }

    fn enqueued(&self) {
        if let Some(w) = &self.wake {
            w.notify_one();
        }
    }
}
