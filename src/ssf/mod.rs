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
//!
//! What a stream covers: every subject of this server. A stream is the operator's own trust
//! decision (a resource server of theirs); a SET carries identifiers (a session id, a token's
//! `jti`, a username, an agent or client id), never a token or a secret.

mod push;
pub mod set;

use std::sync::Arc;

use crate::audit::AuditEvent;
use crate::config::{Config, SSF_DEFAULT_EVENTS, SsfStreamConfig};
pub use crate::store::outbox::POLLED;
use crate::store::outbox::{Outgoing, Tap};

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
            wake,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.streams.is_empty()
    }
}

impl Tap for Transmitter {
    fn signals(&self, ev: &AuditEvent, now: i64) -> Vec<Outgoing> {
        let Some(event) = set::Signal::of(ev) else {
            return Vec::new();
        };
        (self.streams.iter())
            .filter(|s| s.events.iter().any(|e| e == event.event_type()))
            .filter_map(|s| {
                let jti = crate::crypto::random_id();
                let claims = event.claims(&self.issuer, &s.audience, &jti, now);
                Some(Outgoing {
                    event_id: jti,
                    stream: s.outbox.clone(),
                    kind: KIND.into(),
                    payload: serde_json::to_string(&claims).ok()?,
                    expires_at: None,
                })
            })
            .collect()
    }

    fn enqueued(&self) {
        if let Some(w) = &self.wake {
            w.notify_one();
        }
    }
}
