//! `POST /ssf/poll/{stream}` (RFC 8936): a receiver that cannot take pushes fetches its SETs.
//! It presents the stream's configured credential (`Authorization`, compared in constant
//! time); its request acknowledges what it processed (`ack`, `setErrs`: §2.4.2, §2.4.3),
//! which removes those SETs, and asks for up to `maxEvents` more, oldest first (§2.4.1). SETs
//! are signed as they are answered, with the key `/jwks.json` publishes then; one not
//! acknowledged is answered again (same `jti`) at the next poll.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::oauth::Ctx;
use crate::ssf;
use crate::store::ssf::{Method, Status, StoredStream};

/// The most SETs one answer carries, whatever `maxEvents` asks.
const MAX_EVENTS: i64 = 100;
/// The most acknowledgements one request may carry.
const MAX_ACKS: usize = 1000;

/// RFC 8936 §2.4: the poll request's members; others are ignored.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PollRequest {
    max_events: Option<i64>,
    /// §2.4: false (the default) asks for a long poll ([`ssf::polls`]).
    #[serde(default)]
    return_immediately: bool,
    #[serde(default)]
    ack: Vec<String>,
    #[serde(default)]
    set_errs: BTreeMap<String, serde_json::Value>,
}

fn refuse(status: StatusCode, err: &str, description: &str) -> Response {
    let body = json!({ "err": err, "description": description });
    (status, axum::Json(body)).into_response()
}

pub async fn poll(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A stream a receiver manages (SSF 1.0 §8.1) is polled with the receiver's own access
    // token, and only by it; one that is not enabled answers nothing (paused: held).
    let (allowed, paused) = if name.starts_with(crate::config::RECEIVER_STREAM_MARK) {
        match receiver_stream(&ctx, &headers, &name).await {
            Some(s) => (true, s.status != Status::Enabled),
            None => (false, false),
        }
    } else {
        let presented = (headers.get(header::AUTHORIZATION)).and_then(|v| v.to_str().ok());
        (
            presented.is_some_and(|a| ctx.notifier.may_poll(&name, a)),
            false,
        )
    };
    if !allowed {
        // One answer for an unknown stream and a wrong credential: nothing to probe.
        let mut r = refuse(
            StatusCode::UNAUTHORIZED,
            "authentication_failed",
            "not authorized for this stream",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let req: PollRequest = if body.is_empty() {
        PollRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(_) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the body is not a poll request (RFC 8936 §2.4)",
                );
            }
        }
    };
    // Bounded before anything is logged or stored: one request cannot flood the log.
    if req.ack.len() + req.set_errs.len() > MAX_ACKS {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "too many acknowledgements in one request",
        );
    }
    let mut acks = req.ack;
    for (jti, err) in &req.set_errs {
        // Debug-quoted: the receiver's words cannot break a log line.
        tracing::info!(stream = %name, jti = ?jti, error = %err, "a poll receiver reported a SET error");
        acks.push(jti.clone());
    }
    let stream = format!("{}{name}", ssf::POLLED);
    let now = ctx.clock.now();
    if !acks.is_empty() {
        if let Err(e) = ctx.store.ack_outbox(&stream, &acks, now).await {
            tracing::error!(error = %e, "cannot record a poll's acknowledgements");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    // §2.4.1: no maxEvents, the transmitter chooses; 0 is an acknowledgement only.
    let max = match paused {
        true => 0,
        false => req.max_events.unwrap_or(MAX_EVENTS).clamp(0, MAX_EVENTS),
    };
    // §2.4: a long poll that finds nothing waits for a SET (bounded: `ssf::polls`).
    let mut held = (max > 0 && !req.return_immediately)
        .then(|| ctx.notifier.long_polls.hold())
        .flatten();
    let hold = ssf::polls::HOLD.min(ctx.config.server.request_timeout / 2);
    let until = tokio::time::Instant::now() + hold;
    let pending = loop {
        let pending = match ctx.store.polled_outbox(&stream, max + 1).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a polled stream");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        };
        match &mut held {
            Some(h) if pending.is_empty() && tokio::time::Instant::now() < until => {
                if !h.pause().await {
                    break pending;
                }
            }
            _ => break pending,
        }
    };
    drop(held);
    let more = !paused && pending.len() as i64 > max;
    let ring = ctx.keys.ring();
    let mut sets = serde_json::Map::new();
    for (jti, payload) in pending.into_iter().take(max as usize) {
        let signed = serde_json::from_str::<ssf::SetClaims>(&payload)
            .ok()
            .and_then(|c| ssf::sign(&ring, &ctx.issuer, &c).ok());
        match signed {
            Some(set) => {
                sets.insert(jti, set.into());
            }
            None => tracing::error!(stream = %name, jti = %jti, "a stored SET cannot be signed"),
        }
    }
    axum::Json(json!({ "sets": sets, "moreAvailable": more })).into_response()
}

/// The receiver-managed poll stream `id`, if the request's bearer token is its receiver's.
async fn receiver_stream(ctx: &Ctx, headers: &HeaderMap, id: &str) -> Option<StoredStream> {
    let client = super::ssf_streams::receiver(ctx, headers).await.ok()?;
    match ctx.store.ssf_stream(id).await {
        Ok(Some(s)) if s.client_id == client.client_id && s.method == Method::Poll => Some(s),
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, "cannot read a receiver's stream");
            None
        }
    }
}
