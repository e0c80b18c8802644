//! Approval notifications: when a request waits for a human (a CIBA request, `ciba.requested`),
//! tell them through the configured channels, a signed webhook and mail, with only what they
//! need to decide: who asks, for what, the client's binding message, until when, and where to
//! decide (`{issuer}/approvals`). Never a token, an `auth_req_id` or a secret.
//!
//! # Layout
//! - `mod.rs`: [`ApprovalNeeded`] (the facts, as the protocol states them) and [`Notifier`],
//!   which fans an event out into one outbox message per channel that wants it.
//! - `worker.rs`: the delivery task: claims due messages from the outbox, sends them, settles
//!   them (delivered, retried with backoff, given up), purges old ones.
//! - `webhook.rs`: the JSON a chat tool can take, its Standard Webhooks signature, the POST.
//! - `email.rs`: the plain-text mail and its SMTP delivery (lettre).
//!
//! Messages are written to the outbox ([`crate::store::outbox`]) in the transaction of the
//! event's audit entry; nothing is sent from a request. A receiver that is down delays only its
//! own stream; its messages are retried until `notifications.give_up_after`, or until the
//! request they announce expires (then there is nothing left to decide), and each given-up one
//! is audited as `notification.undelivered`.

mod email;
mod webhook;
mod worker;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::config::{Config, NOTIFIED_EVENTS};
use crate::store::outbox::Outgoing;

pub(crate) use webhook::{exchange, exchange_on, tls_connector};
pub use webhook::{sign, signed_content};
pub use worker::Worker;

/// The event that notifies.
pub const CIBA_REQUESTED: &str = "ciba.requested";

/// A request waiting for a human's decision: what a notification says, and all it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalNeeded {
    /// The request's public id (the one the approvals page shows, not the `auth_req_id`).
    pub request: String,
    pub user: String,
    pub client: String,
    /// `agent:<name>`, the agent that would act.
    pub agent: String,
    /// Who acts for whom: the agent first, the human last.
    pub chain: Vec<String>,
    pub scopes: Vec<String>,
    /// The scopes that made the request need approval.
    pub high_risk: Vec<String>,
    pub audience: Vec<String>,
    /// The client's words (CIBA Core §7.1): printable, at most 200 characters, shown as theirs.
    pub binding_message: Option<String>,
    /// When the request stops waiting (seconds since the Unix epoch).
    pub expires_at: i64,
    /// Where the human decides; set by the [`Notifier`].
    #[serde(default)]
    pub approvals_url: String,
}

/// Why the notifier could not be set up from the config (at start).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("notifications.webhooks `{0}`: {1}")]
    Webhook(String, String),
    #[error("notifications.smtp: {0}")]
    Smtp(String),
    #[error("users `{0}`: email {1}")]
    Email(String, String),
    #[error("ssf.streams `{0}`: {1}")]
    SsfStream(String, String),
    #[error("{0}")]
    Receivers(String),
}

/// The configured channels, shared by the requests that enqueue and the worker that sends.
pub struct Notifier {
    /// The server's issuer: what its SETs name as `iss` (`ssf::sign`).
    pub(crate) issuer: String,
    /// RFC 8936 long polls held now.
    pub long_polls: crate::ssf::polls::Polls,
    /// The clients this replica's config marks `ssf_receiver`: only their streams are pushed
    /// to from here.
    pub(crate) receiver_clients: std::collections::BTreeSet<String>,
    approvals_url: String,
    webhooks: BTreeMap<String, webhook::Webhook>,
    mailer: Option<email::Mailer>,
    /// Usernames and their addresses (for those that have one, when mail is configured).
    mailboxes: BTreeMap<String, lettre::Address>,
    /// The Shared Signals streams' push endpoints, by stream name (docs/ssf.md).
    ssf: BTreeMap<String, crate::ssf::Push>,
    /// The credential each polled stream's receiver presents (RFC 8936), by stream name.
    polls: BTreeMap<String, String>,
    /// Pushes to the streams receivers manage (SSF 1.0 §8.1), when a client may: their URLs
    /// are the receivers' choice, checked as `ssf::receiver` says.
    pub receivers: Option<crate::ssf::receiver::ReceiverPush>,
    /// Wakes the worker when messages were enqueued.
    wake: Arc<Notify>,
}

impl Notifier {
    pub fn new(config: &Config, issuer: &str) -> Result<Arc<Self>, SetupError> {
        let n = &config.notifications;
        let base = config.base_dir();
        let mut webhooks = BTreeMap::new();
        for w in &n.webhooks {
            let hook = webhook::Webhook::new(w, &base, n.timeout)
                .map_err(|e| SetupError::Webhook(w.name.clone(), e))?;
            webhooks.insert(w.name.clone(), hook);
        }
        let mailer = email::Mailer::new(&n.smtp, &base, n.timeout).map_err(SetupError::Smtp)?;
        let mut mailboxes = BTreeMap::new();
        if mailer.is_some() {
            for u in &config.users {
                if let Some(e) = &u.email {
                    let a = e
                        .parse::<lettre::Address>()
                        .map_err(|err| SetupError::Email(u.username.clone(), err.to_string()))?;
                    mailboxes.insert(u.username.clone(), a);
                }
            }
        }
        let (mut ssf, mut polls) = (BTreeMap::new(), BTreeMap::new());
        for st in &config.ssf.streams {
            let err = |e| SetupError::SsfStream(st.name.clone(), e);
            if st.delivery == "poll" {
                let c = crate::ssf::credential(st, &base).map_err(err)?;
                let c = c.ok_or_else(|| err("a poll stream needs a credential".into()))?;
                polls.insert(st.name.clone(), c);
            } else {
                ssf.insert(
                    st.name.clone(),
                    crate::ssf::Push::new(st, &base, n.timeout).map_err(err)?,
                );
            }
        }
        let receivers = match config.clients.iter().any(|c| c.ssf_receiver) {
            true => Some(
                crate::ssf::receiver::ReceiverPush::new(&config.ssf, &base, n.timeout)
                    .map_err(SetupError::Receivers)?,
            ),
            false => None,
        };
        Ok(Arc::new(Self {
            issuer: issuer.to_string(),
            long_polls: Default::default(),
            receiver_clients: (config.clients.iter())
                .filter(|c| c.ssf_receiver)
                .map(|c| c.client_id.clone())
                .collect(),
            receivers,
            approvals_url: format!("{issuer}/approvals"),
            webhooks,
            mailer,
            mailboxes,
            ssf,
            polls,
            wake: Arc::new(Notify::new()),
        }))
    }

    /// Whether any channel is configured (else no worker runs).
    pub fn enabled(&self) -> bool {
        !self.webhooks.is_empty()
            || self.mailer.is_some()
            || !self.ssf.is_empty()
            || self.receivers.is_some()
    }

    /// Whether `authorization` (the request's header) is the credential of polled stream
    /// `name`, compared in constant time. False for a stream that is not polled.
    pub fn may_poll(&self, name: &str, authorization: &str) -> bool {
        use subtle::ConstantTimeEq;
        (self.polls.get(name))
            .is_some_and(|c| bool::from(c.as_bytes().ct_eq(authorization.as_bytes())))
    }

    /// What wakes the worker, for the writer's [`crate::store::outbox::Tap`].
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// One outbox message per channel that wants a `ciba.requested`: each webhook that
    /// subscribes to it, and the human's mailbox when mail is configured and they have one.
    pub fn approval_needed(&self, facts: &ApprovalNeeded) -> Vec<Outgoing> {
        let mut facts = facts.clone();
        facts.approvals_url = self.approvals_url.clone();
        let Ok(payload) = serde_json::to_string(&facts) else {
            return Vec::new();
        };
        let message = |stream: String| Outgoing {
            event_id: format!("evt_{}", crate::crypto::random_id()),
            stream,
            kind: CIBA_REQUESTED.into(),
            payload: payload.clone(),
            expires_at: Some(facts.expires_at),
        };
        let mut out: Vec<Outgoing> = (self.webhooks.iter())
            .filter(|(_, w)| w.wants(CIBA_REQUESTED))
            .map(|(name, _)| message(format!("{}{name}", webhook::STREAM)))
            .collect();
        if self.mailer.is_some() && self.mailboxes.contains_key(&facts.user) {
            out.push(message(format!("{}{}", email::STREAM, facts.user)));
        }
        out
    }

    /// Tells the worker that messages were enqueued (it also looks every second).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// A webhook's events: those it names, or every event that notifies.
fn subscribed(events: &[String]) -> Vec<String> {
    if events.is_empty() {
        NOTIFIED_EVENTS.iter().map(|e| e.to_string()).collect()
    } else {
        events.to_vec()
    }
}

/// A secret read from a file (relative to the config's directory), trimmed.
fn read_secret(base: &Path, file: &Path) -> Result<String, String> {
    let path = base.join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.trim().to_string())
}

/// The one-line summary of a request, for a chat message's `text` and a mail's subject line.
fn summary(f: &ApprovalNeeded) -> String {
    format!(
        "{} asks to act for {} with {} (client {})",
        f.agent,
        f.user,
        f.scopes.join(" "),
        f.client
    )
}

/// A time as RFC 3339 in UTC.
fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
