//! `GET /audit/checkpoint`: a signed checkpoint of the audit log's head, in the manner of a
//! Certificate Transparency signed tree head (RFC 9162 §4.10), as an `application/jwt` compact
//! JWS (RFC 7519 §10.3.1). Auditors fetch it on a schedule and keep it outside the database;
//! `mandate audit verify --checkpoint` then detects a log cut back or forked since.
//!
//! It is public, like an STH: it reveals the number of audited events and a MAC, nothing else.
//! One checkpoint is signed at a time per replica and reused within the same second, so callers
//! cannot make the server sign (or read the head) faster than that.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use tokio::sync::Mutex;

use crate::audit::checkpoint::{SignRefusal, sign_head};
use crate::oauth::{Ctx, ErrorCode, OAuthError};

/// The route, with the checkpoint cache of this router.
pub fn route() -> MethodRouter<Arc<Ctx>> {
    get(checkpoint).layer(Extension(Arc::new(Recent::default())))
}

/// The last checkpoint signed: `(iat, kid, jws)`.
#[derive(Default)]
struct Recent(Mutex<Option<(i64, String, String)>>);

async fn checkpoint(
    State(ctx): State<Arc<Ctx>>,
    Extension(recent): Extension<Arc<Recent>>,
) -> Response {
    let ring = ctx.keys.ring();
    let mut last = recent.0.lock().await;
    let now = ctx.clock.now();
    if let Some((at, kid, jws)) = last.as_ref()
        && *at == now
        && kid == ring.signing_kid()
    {
        return jwt(jws.clone());
    }
    let signed = sign_head(
        ctx.store.as_ref(),
        ctx.keys.audit_chain_key(),
        &ring,
        &ctx.issuer,
        now,
    )
    .await;
    match signed {
        Ok((cp, jws)) => {
            *last = Some((now, cp.kid, jws.clone()));
            jwt(jws)
        }
        Err(SignRefusal::Empty) => OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the audit log is empty: there is no head to checkpoint yet",
        )
        .into_response(),
        Err(SignRefusal::HeadUnverified(seq)) => {
            tracing::error!(
                seq,
                "audit log head does not verify under the KEK; refusing to sign a checkpoint of it"
            );
            OAuthError::new(
                ErrorCode::ServerError,
                "the audit log's head does not verify; the operator should run `mandate audit verify`",
            )
            .into_response()
        }
        Err(e) => OAuthError::internal(e).into_response(),
    }
}

fn jwt(jws: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwt"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        jws,
    )
        .into_response()
}
