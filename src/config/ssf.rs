//! `[ssf]`: Security Event Tokens out (OpenID Shared Signals Framework 1.0, CAEP 1.0), pushed
//! to the receivers the operator names (RFC 8935). docs/ssf.md says what is sent; every key is
//! in docs/configuration.md.

use std::path::PathBuf;

use serde::Deserialize;

/// CAEP 1.0 §3.1: the session-revoked event, the one type this transmitter sends for now.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// SSF 1.0 §8.1.4.2: the verification event.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
/// mandate's own event type (RFC 8417 §2.2 lets a transmitter define one): a request that
/// policy or attestation refused — a delegation Cedar denied, an approved CIBA grant refused
/// when issued, an enrolled agent's attestation refused. No CAEP or RISC event says "refused";
/// a security team's receiver asks for it by name, and it is never sent by default.
pub const REFUSED: &str = "urn:x-mandate:secevent:event-type:refused";
/// The event types a stream may ask for.
pub const SSF_EVENTS: [&str; 2] = [SESSION_REVOKED, REFUSED];
/// What a stream that asks for nothing gets: what a resource server acts on.
pub const SSF_DEFAULT_EVENTS: [&str; 1] = [SESSION_REVOKED];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SsfConfig {
    pub streams: Vec<SsfStreamConfig>,
    /// Receiver-managed streams (SSF 1.0 §8.1, `clients[].ssf_receiver`): also push to
    /// loopback, RFC 1918, unique-local and CGNAT addresses, as `cimd.allow_private_addresses`
    /// (development and tests only; link-local and the like stay refused).
    pub allow_private_addresses: bool,
    /// Receiver-managed push streams: a PEM file of extra CA certificates trusted besides the
    /// webpki roots (as `cimd.extra_ca_file`); relative to the config file.
    pub extra_ca_file: Option<PathBuf>,
}

/// The first character of a receiver-managed stream's id: no configured stream's name starts
/// with it, so the two never share an outbox stream or a poll URL.
pub const RECEIVER_STREAM_MARK: char = '~';

/// A receiver the operator configured: a resource server that wants to hear of revocations.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsfStreamConfig {
    /// Names the stream in logs and the audit log (never its URL or its credential).
    pub name: String,
    /// `push` (RFC 8935: mandate POSTs each SET) or `poll` (RFC 8936: the receiver fetches
    /// them at `/ssf/poll/<name>`).
    #[serde(default = "push")]
    pub delivery: String,
    /// Push only: where SETs are POSTed, `http(s)://...`, the operator's own receiver.
    pub endpoint_url: Option<String>,
    /// The SET's `aud`: the receiver's client_id or URL.
    pub audience: String,
    /// A file holding the whole `Authorization` header value sent with each push (RFC 8935
    /// §2: the receiver may require one), or that a poll must present (required for poll);
    /// relative to the config file.
    pub authorization_header_file: Option<PathBuf>,
    /// An environment variable holding it (not a `MANDATE_*` one).
    pub authorization_header_env: Option<String>,
    /// Event-type URIs sent to it, among [`SSF_EVENTS`]; empty: [`SSF_DEFAULT_EVENTS`].
    #[serde(default)]
    pub events_requested: Vec<String>,
}

fn push() -> String {
    "push".into()
}

impl std::fmt::Debug for SsfStreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsfStreamConfig")
            .field("name", &self.name)
            .field("audience", &self.audience)
            .field("events_requested", &self.events_requested)
            .finish_non_exhaustive()
    }
}

impl SsfConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.streams.iter().enumerate() {
            let key = format!("ssf.streams[{i}] (name `{}`)", s.name);
            super::identifier(&key, "name", &s.name)?;
            if s.name.starts_with(RECEIVER_STREAM_MARK) {
                return Err(format!(
                    "{key}: a name starting with `{RECEIVER_STREAM_MARK}` is reserved for streams \
                     receivers create"
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(format!("{key}: another stream has the same name"));
            }
            match (s.delivery.as_str(), &s.endpoint_url) {
                ("push", Some(url)) => {
                    let lower = url.to_ascii_lowercase();
                    if !(lower.starts_with("https://") || lower.starts_with("http://"))
                        || url.parse::<http::Uri>().is_err()
                    {
                        return Err(format!(
                            "{key}: endpoint_url must be an absolute http(s) URL"
                        ));
                    }
                }
                ("push", None) => return Err(format!("{key}: a push stream needs endpoint_url")),
                ("poll", None) => {
                    if s.authorization_header_file.is_none() && s.authorization_header_env.is_none()
                    {
                        return Err(format!(
                            "{key}: a poll stream needs the credential its receiver presents \
                             (authorization_header_file or authorization_header_env)"
                        ));
                    }
                }
                ("poll", Some(_)) => {
                    return Err(format!("{key}: a poll stream has no endpoint_url"));
                }
                _ => return Err(format!("{key}: delivery must be `push` or `poll`")),
            }
            if s.audience.is_empty() || s.audience.chars().any(char::is_control) {
                return Err(format!(
                    "{key}: audience must be a non-empty printable string"
                ));
            }
            if s.authorization_header_file.is_some() && s.authorization_header_env.is_some() {
                return Err(format!(
                    "{key}: set at most one of authorization_header_file or authorization_header_env"
                ));
            }
            if let Some(env) = &s.authorization_header_env {
                if env.is_empty() || env.starts_with("MANDATE_") {
                    return Err(format!(
                        "{key}: authorization_header_env names a variable, not one starting \
                         with MANDATE_ (those are config overrides)"
                    ));
                }
            }
            if let Some(e) = (s.events_requested.iter()).find(|e| !SSF_EVENTS.contains(&e.as_str()))
            {
                return Err(format!(
                    "{key}: events_requested: `{e}` is not an event type this server sends"
                ));
            }
        }
        Ok(())
    }
}
