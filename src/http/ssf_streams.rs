//! SSF 1.0 §8.1, the stream management API, for receivers the operator marked
//! (`clients[].ssf_receiver`): `/ssf/stream` (configuration: POST create, GET read, PATCH
//! update, PUT replace, DELETE), `/ssf/status` (GET, POST) and `/ssf/verify` (POST).
//!
//! A receiver authenticates with an access token this server issued to it (RFC 6750 §2.1
//! `Authorization: Bearer`, its own `client_credentials` token: SSF 1.0 §7.1.1 `authorization_schemes`
//! names RFC 6749). No token or a dead one is `401 invalid_token`; a live token of a client
//! that is not a receiver `403 insufficient_scope` (RFC 6750 §3.1). A stream belongs to the
//! receiver that created it: another receiver's `stream_id` is `404`, as an unknown one.
//! Errors are `{"error", "error_description"}` JSON; nothing in them quotes a credential.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::audit::AuditEvent;
use crate::oauth::Ctx;
use crate::oauth::client::Client;
use crate::ssf::receiver::UrlRefusal;
use crate::ssf::streams::{self, Body, Delivery, Invalid, Mode};
use crate::store::outbox::Outgoing;
use crate::store::ssf::{Method, Status, StoredStream};
use crate::store::{TokenKind, WriteOp};

/// A refusal of the management API.
#[derive(Debug)]
pub struct StreamError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl StreamError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    fn bad(e: Invalid) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", e.0)
    }

    fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no stream with this stream_id for this receiver",
        )
    }

    fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "try again shortly",
        )
    }
}

impl From<crate::store::StoreError> for StreamError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "SSF stream management: the store failed");
        Self::unavailable()
    }
}

impl IntoResponse for StreamError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut r = (self.status, axum::Json(body)).into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // RFC 6750 §3: a 401 names the scheme (and the error, when a token was sent); a 403
        // for a token that does not allow this says so.
        let challenge = match (self.status, self.error) {
            (StatusCode::UNAUTHORIZED, "invalid_token") => {
                Some("Bearer realm=\"mandate\", error=\"invalid_token\"")
            }
            (StatusCode::UNAUTHORIZED, _) => Some("Bearer realm=\"mandate\""),
            (StatusCode::FORBIDDEN, _) => {
                Some("Bearer realm=\"mandate\", error=\"insufficient_scope\"")
            }
            _ => None,
        };
        if let Some(c) = challenge {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        r
    }
}

/// The bearer token of `Authorization: Bearer ...` (RFC 6750 §2.1), if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The receiver a request comes from: a live access token this server issued to a client
/// marked `ssf_receiver`, held by the client itself (its `client_credentials` token: the
/// subject is the client, no actor), not bound to a DPoP key (RFC 9449 §7.1: a bound token
/// is not a bearer token).
pub async fn receiver(ctx: &Ctx, headers: &HeaderMap) -> Result<Arc<Client>, StreamError> {
    let Some(token) = bearer(headers) else {
        return Err(StreamError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "an access token is required (Authorization: Bearer, RFC 6750 section 2.1)",
        ));
    };
    let now = ctx.clock.now();
    let live = crate::oauth::token::live_presented(ctx, token, TokenKind::Access, now)
        .await
        .map_err(|_| StreamError::unavailable())?;
    let invalid = || {
        StreamError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is not valid here",
        )
    };
    let r = live.ok_or_else(invalid)?;
    if r.sub != r.client_id || r.act.is_some() || r.jkt.is_some() {
        return Err(invalid());
    }
    let client = match ctx.clients.configured(&r.client_id) {
        Some(c) if c.ssf_receiver => c,
        _ => {
            return Err(StreamError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "this client may not manage Shared Signals streams",
            ));
        }
    };
    // For this server alone (RFC 8707 `resource` or `audience` = the issuer): a token the
    // receiver also sends to other resource servers could be replayed by any of them to take
    // over its streams.
    let issuer = ctx.issuer.as_str();
    if !matches!(r.aud.as_ref(), [a] if crate::input::same_resource(a, issuer)) {
        return Err(StreamError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token must be for this server alone: ask for it with resource (RFC 8707) = the issuer",
        ));
    }
    Ok(client)
}

/// `stream_id` of the query (`?stream_id=`): once at most.
fn query_stream_id(query: Option<&str>) -> Result<Option<String>, StreamError> {
    let pairs = crate::input::form(query.unwrap_or_default().as_bytes())
        .map_err(|_| StreamError::bad(Invalid("the query is malformed".into())))?;
    let mut ids = pairs.into_iter().filter(|(k, _)| k == "stream_id");
    let first = ids.next().map(|(_, v)| v);
    if ids.next().is_some() {
        return Err(StreamError::bad(Invalid("stream_id is repeated".into())));
    }
    first
        .map(|v| streams::stream_id(&Value::String(v)))
        .transpose()
        .map_err(StreamError::bad)
}

/// The caller's stream `id`, or 404 (another receiver's stream is not told apart).
async fn own(ctx: &Ctx, client: &Client, id: &str) -> Result<StoredStream, StreamError> {
    match ctx.store.ssf_stream(id).await? {
        Some(s) if s.client_id == client.client_id => Ok(s),
        _ => Err(StreamError::not_found()),
    }
}

fn json_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, StreamError> {
    if body.len() > streams::MAX_BODY {
        return Err(StreamError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!("the body is larger than {} bytes", streams::MAX_BODY),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(StreamError::bad(Invalid(
            "the body must be a JSON object".into(),
        ))),
    }
}

fn answer(status: StatusCode, v: Value) -> Response {
    let mut r = (status, axum::Json(v)).into_response();
    (r.headers_mut()).insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn audit(ctx: &Ctx, kind: &str, client: &Client, detail: Value) -> Result<(), StreamError> {
    let mut ev = AuditEvent::new(kind);
    ev.client_id = Some(client.client_id.clone());
    ev.detail = detail;
    ctx.writer.write(WriteOp::None, vec![ev]).await?;
    Ok(())
}

/// What the audit log says of a stream: its id and shape, never its URL or credential.
fn summary(s: &StoredStream) -> Value {
    json!({
        "stream_id": s.id,
        "delivery": s.method.as_str(),
        "events_delivered": s.events_delivered,
        "status": s.status.as_str(),
    })
}

/// The stream `body` makes of `current` (create: nothing yet), checked: a push URL against
/// SSRF, transmitter-supplied members against what the transmitter says.
async fn configure(
    ctx: &Ctx,
    body: Body,
    mode: Mode,
    client: &Client,
    current: Option<&StoredStream>,
) -> Result<StoredStream, StreamError> {
    let now = ctx.clock.now();
    let id = match current {
        Some(c) => c.id.clone(),
        None => format!(
            "{}{}",
            crate::config::RECEIVER_STREAM_MARK,
            crate::crypto::random_id()
        ),
    };
    let mut s = current.cloned().unwrap_or_else(|| StoredStream {
        id: id.clone(),
        client_id: client.client_id.clone(),
        method: Method::Poll,
        endpoint_url: None,
        authorization_header: None,
        events_requested: Vec::new(),
        events_delivered: Vec::new(),
        description: None,
        status: Status::Enabled,
        status_reason: None,
        created_at: now,
        updated_at: now,
        verified_at: None,
    });
    // Update: what is missing stays; create and replace: what is missing is the default.
    let keep = mode == Mode::Update;
    match (body.delivery.clone(), keep) {
        (
            Some(Delivery::Push {
                endpoint_url,
                authorization_header,
            }),
            _,
        ) => {
            if let Some(push) = &ctx.notifier.receivers {
                push.check(&endpoint_url).await.map_err(|e| {
                    tracing::info!(client = %client.client_id, stream = %id, reason = %e,
                        "an SSF receiver's push URL was refused");
                    // What the host resolves to stays in the log: told to the receiver, it
                    // would map this server's network (which names resolve, and to what).
                    let told = match e {
                        UrlRefusal::Unresolvable | UrlRefusal::Special(_) => {
                            "endpoint_url's host must resolve to public addresses only".to_string()
                        }
                        other => other.to_string(),
                    };
                    StreamError::bad(Invalid(told))
                })?;
            }
            s.method = Method::Push;
            s.endpoint_url = Some(endpoint_url);
            s.authorization_header = authorization_header.map(|a| {
                ctx.keys
                    .seal_secret(&streams::seal_context(&id), a.as_bytes())
            });
        }
        (Some(Delivery::Poll), _) | (None, false) => {
            s.method = Method::Poll;
            s.endpoint_url = None;
            s.authorization_header = None;
        }
        (None, true) => {}
    }
    match (body.events_requested.clone(), keep) {
        (Some(e), _) => s.events_requested = e,
        (None, false) => s.events_requested = Vec::new(),
        (None, true) => {}
    }
    s.events_delivered = streams::delivered(&s.events_requested);
    match (body.description.clone(), keep) {
        (Some(d), _) => s.description = Some(d),
        (None, false) => s.description = None,
        (None, true) => {}
    }
    s.updated_at = now;
    let after = streams::render(&s, &ctx.issuer);
    let before = current.map_or_else(|| after.clone(), |c| streams::render(c, &ctx.issuer));
    streams::check_transmitter(&body, &after, &before).map_err(StreamError::bad)?;
    Ok(s)
}

/// `POST /ssf/stream` (SSF 1.0 §8.1.1.1): 201 and the configuration.
pub async fn create(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, body: Bytes) -> Response {
    run(async {
        let client = receiver(&ctx, &headers).await?;
        json_body(&body)?;
        let parsed = streams::parse(&body, Mode::Create).map_err(StreamError::bad)?;
        let s = configure(&ctx, parsed, Mode::Create, &client, None).await?;
        if !ctx
            .store
            .create_ssf_stream(&s, streams::MAX_STREAMS_PER_CLIENT)
            .await?
        {
            return Err(StreamError::new(
                StatusCode::CONFLICT,
                "invalid_request",
                format!(
                    "this receiver has {} streams, the most it may have; delete one first",
                    streams::MAX_STREAMS_PER_CLIENT
                ),
            ));
        }
        audit(&ctx, "ssf.stream_created", &client, summary(&s)).await?;
        Ok(answer(
            StatusCode::CREATED,
            streams::render(&s, &ctx.issuer),
        ))
    })
    .await
}

/// `GET /ssf/stream[?stream_id=]` (SSF 1.0 §8.1.1.2): one stream, or all the receiver's.
pub async fn read(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    run(async {
        let client = receiver(&ctx, &headers).await?;
        match query_stream_id(query.as_deref())? {
            Some(id) => {
                let s = own(&ctx, &client, &id).await?;
                Ok(answer(StatusCode::OK, streams::render(&s, &ctx.issuer)))
            }
            None => {
                let all = ctx.store.ssf_streams_of(&client.client_id).await?;
                let list: Vec<Value> = (all.iter())
                    .map(|s| streams::render(s, &ctx.issuer))
                    .collect();
                Ok(answer(StatusCode::OK, Value::Array(list)))
            }
        }
    })
    .await
}

/// `PATCH /ssf/stream` (SSF 1.0 §8.1.1.3).
pub async fn update(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, body: Bytes) -> Response {
    change(ctx, headers, body, Mode::Update).await
}

/// `PUT /ssf/stream` (SSF 1.0 §8.1.1.4).
pub async fn replace(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, body: Bytes) -> Response {
    change(ctx, headers, body, Mode::Replace).await
}

async fn change(ctx: Arc<Ctx>, headers: HeaderMap, body: Bytes, mode: Mode) -> Response {
    run(async {
        let client = receiver(&ctx, &headers).await?;
        json_body(&body)?;
        let parsed = streams::parse(&body, mode).map_err(StreamError::bad)?;
        let id = parsed.stream_id.clone().unwrap_or_default();
        let current = own(&ctx, &client, &id).await?;
        let s = configure(&ctx, parsed, mode, &client, Some(&current)).await?;
        if !ctx.store.replace_ssf_stream(&s, current.method).await? {
            return Err(StreamError::not_found());
        }
        audit(&ctx, "ssf.stream_updated", &client, summary(&s)).await?;
        Ok(answer(StatusCode::OK, streams::render(&s, &ctx.issuer)))
    })
    .await
}

/// `DELETE /ssf/stream?stream_id=` (SSF 1.0 §8.1.1.5): 204; its undelivered SETs go with it.
pub async fn delete(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    run(async {
        let client = receiver(&ctx, &headers).await?;
        let id = query_stream_id(query.as_deref())?
            .ok_or_else(|| StreamError::bad(Invalid("stream_id is required".into())))?;
        let s = own(&ctx, &client, &id).await?;
        if !ctx.store.delete_ssf_stream(&id, &client.client_id).await? {
            return Err(StreamError::not_found());
        }
        audit(&ctx, "ssf.stream_deleted", &client, summary(&s)).await?;
        let mut r = StatusCode::NO_CONTENT.into_response();
        (r.headers_mut()).insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    })
    .await
}

fn status_of(s: &StoredStream) -> Value {
    let mut v = json!({ "stream_id": s.id, "status": s.status.as_str() });
    if let (Some(r), Some(o)) = (&s.status_reason, v.as_object_mut()) {
        o.insert("reason".into(), r.clone().into());
    }
    v
}

/// `GET /ssf/status?stream_id=` (SSF 1.0 §8.1.2.1).
pub async fn status(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    run(async {
        let client = receiver(&ctx, &headers).await?;
        let id = query_stream_id(query.as_deref())?
            .ok_or_else(|| StreamError::bad(Invalid("stream_id is required".into())))?;
        let s = own(&ctx, &client, &id).await?;
        Ok(answer(StatusCode::OK, status_of(&s)))
    })
    .await
}

/// `POST /ssf/status` (SSF 1.0 §8.1.2.2): `enabled`, `paused` (SETs are held and sent, in
/// order, once enabled) or `disabled` (held SETs are dropped and none are kept).
pub async fn set_status(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, body: Bytes) -> Response {
    run(async {
        let client = receiver(&ctx, &headers).await?;
        let o = json_body(&body)?;
        if let Some(k) = o
            .keys()
            .find(|k| !matches!(k.as_str(), "stream_id" | "status" | "reason" | "subject"))
        {
            return Err(StreamError::bad(Invalid(format!("unknown member {k:?}"))));
        }
        if o.contains_key("subject") {
            return Err(StreamError::bad(Invalid(
                "a status per subject is not supported: streams cover every subject".into(),
            )));
        }
        let id = streams::stream_id(o.get("stream_id").unwrap_or(&Value::Null))
            .map_err(StreamError::bad)?;
        let status = (o.get("status").and_then(Value::as_str))
            .and_then(Status::parse)
            .ok_or_else(|| {
                StreamError::bad(Invalid("status must be enabled, paused or disabled".into()))
            })?;
        let reason = streams::reason(o.get("reason")).map_err(StreamError::bad)?;
        let mut s = own(&ctx, &client, &id).await?;
        let now = ctx.clock.now();
        if !(ctx.store)
            .set_ssf_stream_status(&id, &client.client_id, status, reason.as_deref(), now)
            .await?
        {
            return Err(StreamError::not_found());
        }
        let was = s.status;
        s.status = status;
        s.status_reason = reason;
        let mut detail = summary(&s);
        if let Some(d) = detail.as_object_mut() {
            d.insert("was".into(), was.as_str().into());
        }
        audit(&ctx, "ssf.stream_status", &client, detail).await?;
        // A paused stream's held SETs are due at once.
        ctx.notifier.wake();
        Ok(answer(StatusCode::OK, status_of(&s)))
    })
    .await
}

/// `POST /ssf/verify` (SSF 1.0 §8.1.4.2): 204, and a verification SET with the receiver's
/// `state` is queued on the stream (held while it is paused, dropped while it is disabled);
/// more often than `min_verification_interval` is 429.
pub async fn verify(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, body: Bytes) -> Response {
    run(async {
        let client = receiver(&ctx, &headers).await?;
        let o = json_body(&body)?;
        if let Some(k) = o
            .keys()
            .find(|k| !matches!(k.as_str(), "stream_id" | "state"))
        {
            return Err(StreamError::bad(Invalid(format!("unknown member {k:?}"))));
        }
        let id = streams::stream_id(o.get("stream_id").unwrap_or(&Value::Null))
            .map_err(StreamError::bad)?;
        let state = streams::state(o.get("state")).map_err(StreamError::bad)?;
        let s = own(&ctx, &client, &id).await?;
        let now = ctx.clock.now();
        let interval = streams::MIN_VERIFICATION_INTERVAL;
        if !(ctx.store)
            .verify_ssf_stream(&id, &client.client_id, now, interval)
            .await?
        {
            let mut r = StreamError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                format!(
                    "at most one verification every {interval} seconds (min_verification_interval)"
                ),
            )
            .into_response();
            (r.headers_mut()).insert(header::RETRY_AFTER, HeaderValue::from(interval));
            return Ok(r);
        }
        let mut ev = AuditEvent::new("ssf.stream_verification");
        ev.client_id = Some(client.client_id.clone());
        ev.detail = json!({ "stream_id": s.id });
        let op = match s.status {
            Status::Disabled => WriteOp::None,
            Status::Enabled | Status::Paused => {
                let jti = crate::crypto::random_id();
                let claims = streams::verification(
                    &ctx.issuer,
                    &client.client_id,
                    &jti,
                    &s.id,
                    state.as_deref(),
                    now,
                );
                let payload =
                    serde_json::to_string(&claims).map_err(|_| StreamError::unavailable())?;
                WriteOp::Notify(vec![Outgoing {
                    event_id: jti,
                    stream: s.outbox(),
                    kind: crate::ssf::KIND.into(),
                    payload,
                    expires_at: None,
                }])
            }
        };
        ctx.writer.write(op, vec![ev]).await?;
        ctx.notifier.wake();
        let mut r = StatusCode::NO_CONTENT.into_response();
        (r.headers_mut()).insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    })
    .await
}

async fn run(f: impl std::future::Future<Output = Result<Response, StreamError>>) -> Response {
    match f.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}
