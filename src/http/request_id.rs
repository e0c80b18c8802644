//! A request id on every log line of a request, and on its response, so that an operator can
//! find all that one request logged, and a caller can quote the id of an answer it got.
//!
//! A caller's `X-Request-Id` (a proxy's or a load balancer's) is kept when it is a plain token
//! of at most [`MAX_LEN`] characters, so that one id follows the request across hops; anything
//! else is replaced by a fresh id rather than written into the log.
//!
//! The same layer counts each answer for the metrics (`mandate_http_requests_total` and
//! `mandate_http_request_duration_seconds`), by the route template the router matched.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics::Metrics;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The longest request id taken from a caller.
pub const MAX_LEN: usize = 64;
/// How much of a request's path its log lines carry: a path is the caller's to choose, up to
/// the request head's limit, and the log is not the place to keep it whole.
const PATH_LEN: usize = 128;

/// A fresh id: this process's random prefix (drawn once, so replicas' ids do not collide) and
/// a count. An id only has to tell requests apart, not to be unguessable; drawing 16 random
/// bytes from the operating system for each request cost more than the rest of this layer.
fn fresh_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| crate::crypto::b64url(&crate::crypto::random_bytes::<9>()));
    format!("{prefix}-{:x}", COUNT.fetch_add(1, Ordering::Relaxed))
}

/// Whether a caller's id is one to keep: 1..=[`MAX_LEN`] characters of letters, digits and
/// `-`, `_`, `.`, `:` (a UUID, a ULID, a trace id), so nothing in it can forge or split a log
/// line, in text or JSON.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn truncated(path: &str) -> &str {
    if path.len() <= PATH_LEN {
        return path;
    }
    let mut end = PATH_LEN;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// Runs the request (any but a health probe) inside a `request` span carrying its id, method
/// and path (never its query, which may hold a code or a state), logs its status and time at
/// `debug` (`MANDATE_LOG=info,mandate::http=debug`), and answers with the id in
/// `X-Request-Id`.
pub async fn request_id(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // The route template (`/register/{client_id}`), never the path a caller chose.
    let endpoint = match req.extensions().get::<MatchedPath>() {
        Some(m) => Endpoint::Route(m.clone()),
        None => Endpoint::Unmatched,
    };
    // Health probes come every few seconds from every load balancer and log nothing.
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        let response = next.run(req).await;
        metrics.http(
            endpoint.as_str(),
            response.status().as_u16(),
            started.elapsed(),
        );
        return response;
    }
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(fresh_id);
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = req.method().as_str(),
        path = truncated(req.uri().path()),
        // Recorded only when traces are exported (`telemetry`), so the log stays as it was.
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    if crate::telemetry::enabled() {
        span.record(
            "otel.name",
            format!("{} {}", req.method(), endpoint.as_str()).as_str(),
        );
        span.record("otel.kind", "server");
        span.record("http.route", endpoint.as_str());
        crate::telemetry::continue_trace(&span, req.headers());
    }
    // The access line is logged inside the span (no clone of it, no second entry).
    let mut response = async move {
        let response = next.run(req).await;
        if crate::telemetry::enabled() {
            tracing::Span::current()
                .record("http.response.status_code", response.status().as_u16());
        }
        tracing::debug!(
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "answered"
        );
        response
    }
    .instrument(span)
    .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, v);
    }
    metrics.http(
        endpoint.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

enum Endpoint {
    Route(MatchedPath),
    Unmatched,
}

impl Endpoint {
    fn as_str(&self) -> &str {
        match self {
            Endpoint::Route(m) => m.as_str(),
            Endpoint::Unmatched => "unmatched",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_short_ids_are_kept() {
        assert!(acceptable("5f0c6a1e-8a1b-4c2d-9e3f-0a1b2c3d4e5f"));
        assert!(acceptable("01J9ZK3Q8R:abc.def_1"));
        assert!(!acceptable(""));
        assert!(!acceptable(&"a".repeat(MAX_LEN + 1)));
        assert!(!acceptable("id with spaces"));
        assert!(!acceptable("x\"}{\"level\":\"ERROR\""));
        assert!(!acceptable("é"));
    }

    #[test]
    fn fresh_ids_differ_and_are_ids_a_caller_could_send_back() {
        let (a, b) = (fresh_id(), fresh_id());
        assert_ne!(a, b);
        assert!(acceptable(&a) && acceptable(&b), "{a} {b}");
    }

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        let path = format!("/{}", "é".repeat(100));
        let cut = truncated(&path);
        assert!(cut.len() <= PATH_LEN && path.starts_with(cut));
        assert_eq!(truncated("/token"), "/token");
    }
}
