//! Shared Signals streams that receivers manage themselves (SSF 1.0 §8.1), as a supertrait of
//! [`super::Store`], and how a SET reaches them.
//!
//! A SET for receiver streams is written as one [`Outgoing`] to [`FANOUT`]; the backend turns it,
//! inside the transaction of the revocation's audit entry, into one message per stream that is
//! not disabled and delivers its event type ([`fan_out`]). The stream list is read there, in
//! the commit, so a stream created on any replica gets the SETs of every revocation committed
//! after its creation was (no replica works from a stale list).

use async_trait::async_trait;
use serde_json::Value;

use super::StoreError;
use super::outbox::{Outgoing, POLLED};

/// The outbox stream of a SET meant for every receiver stream that wants it: never stored,
/// expanded by [`fan_out`] in the commit.
pub const FANOUT: &str = "ssf*";

/// Push streams are `ssf:<id>` in the outbox, like the configured ones.
const PUSHED: &str = "ssf:";

/// How a receiver stream's SETs leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// RFC 8935: POSTed to the receiver's `endpoint_url`.
    Push,
    /// RFC 8936: the receiver polls `{issuer}/ssf/poll/<id>`.
    Poll,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Push => "push",
            Method::Poll => "poll",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "push" => Some(Method::Push),
            "poll" => Some(Method::Poll),
            _ => None,
        }
    }
}

/// SSF 1.0 §8.1.2: whether a stream transmits, holds or drops its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Enabled,
    /// Events are kept and sent once the stream is enabled again.
    Paused,
    /// No event is kept.
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Enabled => "enabled",
            Status::Paused => "paused",
            Status::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enabled" => Some(Status::Enabled),
            "paused" => Some(Status::Paused),
            "disabled" => Some(Status::Disabled),
            _ => None,
        }
    }
}

/// A receiver's stream, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredStream {
    /// The `stream_id`: [`crate::config::RECEIVER_STREAM_MARK`] and a random id.
    pub id: String,
    /// The receiver that owns it; its SETs' `aud`.
    pub client_id: String,
    pub method: Method,
    pub endpoint_url: Option<String>,
    /// The receiver's `authorization_header`, sealed under the KEK (never in the clear here).
    pub authorization_header: Option<Vec<u8>>,
    pub events_requested: Vec<String>,
    pub events_delivered: Vec<String>,
    pub description: Option<String>,
    pub status: Status,
    pub status_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub verified_at: Option<i64>,
}

impl std::fmt::Debug for StoredStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredStream")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("method", &self.method)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl StoredStream {
    /// The outbox stream of its SETs.
    pub fn outbox(&self) -> String {
        outbox_stream(&self.id, self.method)
    }
}

/// The outbox stream of receiver stream `id` delivered by `method`.
pub fn outbox_stream(id: &str, method: Method) -> String {
    match method {
        Method::Push => format!("{PUSHED}{id}"),
        Method::Poll => format!("{POLLED}{id}"),
    }
}

/// What [`fan_out`] needs of a stream (read in the commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub client_id: String,
    pub method: Method,
    pub events_delivered: Vec<String>,
}

/// The messages a [`FANOUT`] SET becomes: one per target that delivers its event type, each
/// with its own `jti` (the message's id) and the stream's receiver as `aud`.
pub fn fan_out(template: &Outgoing, targets: &[Target]) -> Vec<Outgoing> {
    let Ok(Value::Object(claims)) = serde_json::from_str::<Value>(&template.payload) else {
        return Vec::new();
    };
    let types: Vec<&String> = match claims.get("events") {
        Some(Value::Object(events)) => events.keys().collect(),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for t in targets {
        if !types.iter().any(|e| t.events_delivered.contains(e)) {
            continue;
        }
        let jti = crate::crypto::random_id();
        let mut c = claims.clone();
        c.insert("jti".into(), Value::String(jti.clone()));
        c.insert("aud".into(), Value::String(t.client_id.clone()));
        out.push(Outgoing {
            event_id: jti,
            stream: outbox_stream(&t.id, t.method),
            kind: template.kind.clone(),
            payload: Value::Object(c).to_string(),
            expires_at: template.expires_at,
        });
    }
    out
}

/// A stored JSON list of strings, failing closed.
pub(super) fn list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text)
        .map_err(|_| StoreError::CorruptRecord("an SSF stream's event list".into()))
}

pub(super) fn list_text(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// A stored stream's row, read by both backends in the order of [`sql::COLUMNS`].
#[allow(clippy::type_complexity)]
pub(super) type Row = (
    String,
    String,
    String,
    Option<String>,
    Option<Vec<u8>>,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    i64,
    i64,
    Option<i64>,
);

pub(super) fn from_row(r: Row) -> Result<StoredStream, StoreError> {
    let (id, client_id, method, endpoint_url, auth, requested, delivered, description) =
        (r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7);
    let corrupt = |what: &str| StoreError::CorruptRecord(format!("SSF stream {id}: {what}"));
    Ok(StoredStream {
        method: Method::parse(&method).ok_or_else(|| corrupt("method"))?,
        status: Status::parse(&r.8).ok_or_else(|| corrupt("status"))?,
        events_requested: list(&requested)?,
        events_delivered: list(&delivered)?,
        client_id,
        endpoint_url,
        authorization_header: auth,
        description,
        status_reason: r.9,
        created_at: r.10,
        updated_at: r.11,
        verified_at: r.12,
        id,
    })
}

pub(super) fn target(
    (id, client_id, method, delivered): (String, String, String, String),
) -> Option<Target> {
    Some(Target {
        method: Method::parse(&method)?,
        events_delivered: list(&delivered).ok()?,
        id,
        client_id,
    })
}

#[async_trait]
pub trait SsfStreamStore: Send + Sync + 'static {
    /// Stores a new stream unless its client has `max_per_client` already (false then): the
    /// count and the insert are one transaction, serialised across replicas.
    async fn create_ssf_stream(
        &self,
        s: &StoredStream,
        max_per_client: u64,
    ) -> Result<bool, StoreError>;
    async fn ssf_stream(&self, id: &str) -> Result<Option<StoredStream>, StoreError>;
    /// The client's streams, oldest first.
    async fn ssf_streams_of(&self, client_id: &str) -> Result<Vec<StoredStream>, StoreError>;
    /// Every client that has a stream.
    async fn ssf_stream_owners(&self) -> Result<Vec<String>, StoreError>;
    /// Replaces what a receiver may change (`method`, `endpoint_url`, `authorization_header`,
    /// the event lists, `description`, `updated_at`) of the stream `s.id` of `s.client_id`;
    /// held SETs move with a change of method. False if there is no such stream.
    async fn replace_ssf_stream(&self, s: &StoredStream, was: Method) -> Result<bool, StoreError>;
    /// Deletes the client's stream and its undelivered SETs; false if there was none.
    async fn delete_ssf_stream(&self, id: &str, client_id: &str) -> Result<bool, StoreError>;
    /// Sets the status; disabling drops the undelivered SETs. False if there is no such stream.
    async fn set_ssf_stream_status(
        &self,
        id: &str,
        client_id: &str,
        status: Status,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Records a verification request at `now` unless the last one was less than `interval`
    /// seconds ago (false then, or if there is no such stream).
    async fn verify_ssf_stream(
        &self,
        id: &str,
        client_id: &str,
        now: i64,
        interval: i64,
    ) -> Result<bool, StoreError>;
}

/// The SQL both backends run as it is.
pub(super) mod sql {
    pub const COLUMNS: &str = "id, client_id, method, endpoint_url, authorization_header, \
         events_requested, events_delivered, description, status, status_reason, created_at, \
         updated_at, verified_at";

    pub const INSERT: &str = "INSERT INTO ssf_streams (id, client_id, method, endpoint_url, \
         authorization_header, events_requested, events_delivered, description, status, \
         status_reason, created_at, updated_at, verified_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

    pub const OWNERS: &str = "SELECT DISTINCT client_id FROM ssf_streams ORDER BY client_id";

    pub const COUNT_OF: &str = "SELECT COUNT(*) FROM ssf_streams WHERE client_id = $1";

    pub fn one() -> String {
        format!("SELECT {COLUMNS} FROM ssf_streams WHERE id = $1")
    }

    pub fn of_client() -> String {
        format!("SELECT {COLUMNS} FROM ssf_streams WHERE client_id = $1 ORDER BY created_at, id")
    }

    pub const REPLACE: &str = "UPDATE ssf_streams SET method = $1, endpoint_url = $2, \
         authorization_header = $3, events_requested = $4, events_delivered = $5, \
         description = $6, updated_at = $7 WHERE id = $8 AND client_id = $9";

    /// Held SETs follow a stream whose method changed.
    pub const MOVE_PENDING: &str =
        "UPDATE outbox SET stream = $1 WHERE stream = $2 AND settled_at IS NULL";

    pub const DELETE: &str = "DELETE FROM ssf_streams WHERE id = $1 AND client_id = $2";

    /// The undelivered SETs of a stream, whichever its method.
    pub const DROP_PENDING: &str =
        "DELETE FROM outbox WHERE (stream = $1 OR stream = $2) AND settled_at IS NULL";

    pub const STATUS: &str = "UPDATE ssf_streams SET status = $1, status_reason = $2, \
         updated_at = $3 WHERE id = $4 AND client_id = $5";

    pub const VERIFY: &str = "UPDATE ssf_streams SET verified_at = $1 \
         WHERE id = $2 AND client_id = $3 AND (verified_at IS NULL OR verified_at <= $4)";

    /// The streams a SET may go to (read in the commit that writes it).
    pub const TARGETS: &str = "SELECT id, client_id, method, events_delivered FROM ssf_streams \
         WHERE status <> 'disabled' ORDER BY id";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, method: Method, events: &[&str]) -> Target {
        Target {
            id: id.into(),
            client_id: format!("client-{id}"),
            method,
            events_delivered: events.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// SSF 1.0 §8.1.1 `events_delivered`: a SET goes to the streams that deliver its type, each
    /// under its own `jti` and with its receiver as `aud` (RFC 8417 §2.2); the rest of the
    /// claims are the template's.
    #[test]
    fn a_set_fans_out_to_the_streams_that_deliver_its_type() {
        let template = Outgoing {
            event_id: "base".into(),
            stream: FANOUT.into(),
            kind: "ssf.set".into(),
            payload: serde_json::json!({
                "iss": "i", "jti": "base", "iat": 5, "aud": "",
                "sub_id": { "format": "opaque", "id": "s" },
                "events": { "urn:e1": {} },
            })
            .to_string(),
            expires_at: None,
        };
        let out = fan_out(
            &template,
            &[
                target("~a", Method::Push, &["urn:e1"]),
                target("~b", Method::Poll, &["urn:e1", "urn:e2"]),
                target("~c", Method::Push, &["urn:e2"]),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].stream, "ssf:~a");
        assert_eq!(out[1].stream, "ssfpoll:~b");
        assert_ne!(out[0].event_id, out[1].event_id);
        for m in &out {
            let v: Value = serde_json::from_str(&m.payload).unwrap();
            assert_eq!(v["jti"], m.event_id.as_str());
            assert_eq!(v["iat"], 5);
            assert_eq!(v["sub_id"]["id"], "s");
        }
        let v: Value = serde_json::from_str(&out[1].payload).unwrap();
        assert_eq!(v["aud"], "client-~b");
        assert!(
            fan_out(
                &Outgoing {
                    payload: "nope".into(),
                    ..template
                },
                &[]
            )
            .is_empty()
        );
    }
}
