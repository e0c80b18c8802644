//! The receiving end of mandate's Shared Signals (SSF 1.0, CAEP 1.0): Security Event Tokens
//! (RFC 8417) pushed over HTTP (RFC 8935) tell the [`Verifier`] which sessions, subjects and
//! clients the issuer revoked, so it refuses their tokens at once (JWT mode) and drops their
//! cached introspection answers (introspection mode).

mod revocations;
mod set;
mod subject;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub(crate) use revocations::{Revocation, RevocationList};
pub use subject::{SESSION_REVOKED, VERIFICATION};

use crate::verifier::{ConfigError, Verifier, now_secs};

/// The largest SET body read (RFC 8935 §2: one SET per push; mandate's are under 1 KiB).
pub const MAX_SET_BYTES: usize = 64 * 1024;

/// How a [`SsfReceiver`] accepts pushes: the `aud` its SETs carry (the `audience` of the
/// stream in mandate's `[[ssf.streams]]`) and the exact `Authorization` header value mandate
/// sends with them (the stream's `authorization_header_file`, e.g. `Bearer 9f1c...`).
#[derive(Clone)]
pub struct SsfReceiverConfig {
    audience: String,
    authorization: String,
}

impl SsfReceiverConfig {
    /// SETs for `audience`, pushed with `Authorization: <authorization>` (the whole header
    /// value, scheme included; surrounding whitespace is ignored, as mandate trims the file).
    pub fn new(audience: impl Into<String>, authorization: impl Into<String>) -> Self {
        Self {
            audience: audience.into(),
            authorization: authorization.into().trim().to_string(),
        }
    }
}

impl fmt::Debug for SsfReceiverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsfReceiverConfig")
            .field("audience", &self.audience)
            .field("authorization", &"<redacted>")
            .finish()
    }
}

/// Why a push was refused, answered the RFC 8935 §2.3 way: `400` with
/// `{"err": ..., "description": ...}` for a SET that will never be accepted (mandate gives it
/// up and audits it), `401` for a missing or wrong credential and `503` when the issuer's keys
/// cannot be fetched (mandate retries both). Never holds the SET or the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SsfError {
    /// The `Authorization` header is missing or not the configured one (`401`,
    /// `authentication_failed`).
    #[error("the push does not carry the stream's credential")]
    Unauthorized,
    /// Not a SET, a wrong `Content-Type`, too large, or an event this receiver cannot read
    /// (`invalid_request`).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Not signed ES256 by a key the issuer publishes (`invalid_key`).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// `iss` is not the verifier's issuer (`invalid_issuer`).
    #[error("the SET was issued by another issuer")]
    InvalidIssuer,
    /// `aud` does not contain the configured audience (`invalid_audience`).
    #[error("the SET is for another audience")]
    InvalidAudience,
    /// The issuer's keys could not be fetched (`503`, try again).
    #[error("the issuer's keys are unavailable: {0}")]
    Unavailable(String),
}

impl SsfError {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            SsfError::Unauthorized => StatusCode::UNAUTHORIZED,
            SsfError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The RFC 8935 §2.4 error code.
    pub fn err(&self) -> &'static str {
        match self {
            SsfError::Unauthorized => "authentication_failed",
            SsfError::InvalidRequest(_) => "invalid_request",
            SsfError::InvalidKey(_) => "invalid_key",
            SsfError::InvalidIssuer => "invalid_issuer",
            SsfError::InvalidAudience => "invalid_audience",
            SsfError::Unavailable(_) => "temporarily_unavailable",
        }
    }
}

impl IntoResponse for SsfError {
    fn into_response(self) -> Response {
        let status = self.status();
        let description = match &self {
            // Which endpoint failed and why is for this server's log.
            SsfError::Unavailable(_) => "the issuer's keys cannot be fetched now; try again".into(),
            e => e.to_string(),
        };
        let mut resp = (
            status,
            axum::Json(serde_json::json!({ "err": self.err(), "description": description })),
        )
            .into_response();
        match self {
            SsfError::Unauthorized => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            SsfError::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

/// What an accepted push did. Answered `202 Accepted` (RFC 8935 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// The SET was new; this many revocations were applied (zero for a verification event or
    /// event types this receiver does not act on).
    Applied {
        /// Revocations (sessions, subjects, clients) now refused.
        revocations: usize,
    },
    /// A SET with this `jti` was already handled (mandate may send one twice after a crash).
    Duplicate,
}

impl IntoResponse for Delivery {
    fn into_response(self) -> Response {
        StatusCode::ACCEPTED.into_response()
    }
}

/// Receives mandate's Security Event Tokens for one [`Verifier`]: made by
/// [`Verifier::ssf_receiver`], served by [`router`](Self::router) (or
/// [`receive`](Self::receive) in a handler of your own). Cheap to clone.
///
/// Each push (RFC 8935 §2) is checked in this order: the `Authorization` header is exactly the
/// configured one (compared in constant time; else `401`); `Content-Type` is
/// `application/secevent+jwt`; the body is at most [`MAX_SET_BYTES`]; the SET is `typ`
/// `secevent+jwt`, signed ES256 under a `kid` of the issuer's JWKS (the verifier's key set,
/// refetched for an unknown `kid` at most once a second), `iss` the issuer, `aud` the
/// configured audience, with `iat`, `jti` and `events`. Then its CAEP session-revoked events
/// are applied (see the crate docs for what each `sub_id` revokes), a `jti` seen before is
/// answered `202` and changes nothing, and other event types are accepted and ignored.
#[derive(Clone)]
pub struct SsfReceiver {
    verifier: Verifier,
    inner: Arc<ReceiverInner>,
}

struct ReceiverInner {
    audience: String,
    /// SHA-256 of the expected `Authorization` value: compared in constant time, and the
    /// credential itself is not kept.
    authorization: [u8; 32],
    seen: Mutex<SeenSets>,
}

impl fmt::Debug for SsfReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsfReceiver")
            .field("issuer", &self.verifier.issuer())
            .field("audience", &self.inner.audience)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A receiver of the issuer's Shared Signals pushes for this verifier: each revocation it
    /// accepts makes this verifier (and its clones) refuse the tokens it names.
    ///
    /// ```no_run
    /// # fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{Router, routing::get};
    /// use mandate_resource::{BearerAuthLayer, SsfReceiverConfig, Verifier};
    /// let verifier = Verifier::builder("https://auth.example.com", "orders-api").build()?;
    /// let receiver = verifier.ssf_receiver(SsfReceiverConfig::new(
    ///     "orders-api",
    ///     std::env::var("SSF_AUTHORIZATION")?, // "Bearer 9f1c...", as in mandate's stream
    /// ))?;
    /// let app: Router = Router::new()
    ///     .route("/orders", get(|| async { "the orders" }))
    ///     .layer(BearerAuthLayer::new(verifier))
    ///     .merge(receiver.router("/ssf/events")); // outside the bearer layer
    /// # Ok(()) }
    /// ```
    pub fn ssf_receiver(&self, config: SsfReceiverConfig) -> Result<SsfReceiver, ConfigError> {
        if config.audience.is_empty() {
            return Err(ConfigError("the SET audience must not be empty".into()));
        }
        if config.authorization.is_empty() {
            return Err(ConfigError(
                "the receiver's Authorization value must not be empty (RFC 8935 §2: the \
                 transmitter authenticates to the receiver)"
                    .into(),
            ));
        }
        let (capacity, retention) = self.revocation_bounds();
        Ok(SsfReceiver {
            verifier: self.clone(),
            inner: Arc::new(ReceiverInner {
                audience: config.audience,
                authorization: Sha256::digest(config.authorization.as_bytes()).into(),
                seen: Mutex::new(SeenSets::new(capacity, retention)),
            }),
        })
    }
}

impl SsfReceiver {
    /// A router answering `POST path` with [`receive`](Self::receive). Merge it outside the
    /// bearer-authenticated routes: mandate authenticates with the stream's credential, not a
    /// token.
    pub fn router<S>(&self, path: &str) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let receiver = self.clone();
        Router::new().route(
            path,
            post(move |headers: HeaderMap, body: Body| {
                let receiver = receiver.clone();
                async move { receiver.receive(&headers, body).await }
            }),
        )
    }

    /// Handles one push (RFC 8935 §2): the request's headers and body. `Ok` answers `202`,
    /// `Err` the RFC 8935 §2.3 refusal. Refusals are logged (`warn`), never the body or the
    /// credential.
    pub async fn receive(&self, headers: &HeaderMap, body: Body) -> Result<Delivery, SsfError> {
        let result = self.receive_inner(headers, body).await;
        match &result {
            Ok(d) => tracing::debug!(?d, "security event accepted"),
            Err(SsfError::Unauthorized) => {
                tracing::warn!("security event push without the stream's credential refused")
            }
            Err(e) => tracing::warn!(err = e.err(), error = %e, "security event refused"),
        }
        result
    }

    async fn receive_inner(&self, headers: &HeaderMap, body: Body) -> Result<Delivery, SsfError> {
        self.authenticate(headers)?;
        // RFC 8935 §2.1: the body is one SET, `application/secevent+jwt`.
        let media_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if !media_type.eq_ignore_ascii_case("application/secevent+jwt") {
            return Err(SsfError::InvalidRequest(
                "Content-Type must be application/secevent+jwt (RFC 8935 §2.1)".into(),
            ));
        }
        let bytes = axum::body::to_bytes(body, MAX_SET_BYTES)
            .await
            .map_err(|_| {
                SsfError::InvalidRequest(format!(
                    "the body is unreadable or larger than {MAX_SET_BYTES} bytes"
                ))
            })?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| SsfError::InvalidRequest("the body is not a compact JWS".into()))?
            .trim();
        let claims = set::verify(&self.verifier, &self.inner.audience, text).await?;
        let events = subject::events_of(&claims, self.verifier.issuer())?;
        let jti = claims
            .get("jti")
            .and_then(|j| j.as_str())
            .unwrap_or_default();
        if !self.seen().first_time(jti, now_secs()) {
            tracing::debug!(jti, "security event already handled");
            return Ok(Delivery::Duplicate);
        }
        self.verifier.apply_revocations(&events.revocations);
        if !events.revocations.is_empty() {
            tracing::info!(
                jti,
                revocations = events.revocations.len(),
                "security event applied: revoked tokens are refused"
            );
        }
        Ok(Delivery::Applied {
            revocations: events.revocations.len(),
        })
    }

    /// RFC 8935 §2: the transmitter authenticates with the configured `Authorization` value.
    fn authenticate(&self, headers: &HeaderMap) -> Result<(), SsfError> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(SsfError::Unauthorized);
        };
        let given: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        if bool::from(given.ct_eq(&self.inner.authorization)) {
            Ok(())
        } else {
            Err(SsfError::Unauthorized)
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, SeenSets> {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `jti`s of SETs already handled, bounded like the revocations. Forgetting one is
/// harmless: applying a SET again changes nothing.
struct SeenSets {
    capacity: usize,
    retention: u64,
    heard: HashMap<String, u64>,
    order: VecDeque<(String, u64)>,
}

impl SeenSets {
    fn new(capacity: usize, retention: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            retention,
            heard: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `jti` heard at `now`; false if it was heard before and not yet forgotten.
    fn first_time(&mut self, jti: &str, now: u64) -> bool {
        while let Some((k, t)) = self.order.front() {
            if t.saturating_add(self.retention) > now {
                break;
            }
            self.heard.remove(k);
            self.order.pop_front();
        }
        if self.heard.contains_key(jti) {
            return false;
        }
        while self.heard.len() >= self.capacity {
            let Some((k, _)) = self.order.pop_front() else {
                break;
            };
            self.heard.remove(&k);
        }
        self.heard.insert(jti.to_string(), now);
        self.order.push_back((jti.to_string(), now));
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests;
