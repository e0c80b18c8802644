//! `POST /register` (RFC 7591 §3) and `GET`/`DELETE /register/{client_id}` (RFC 7592 §2.1,
//! §2.3), routed only when `registration.enabled`. The rules live in `oauth::registration`;
//! this file reads the body, the caller's address and the bearer token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::extract::{BodyError, read_body};
use crate::oauth::registration::{self, Registry};
use crate::oauth::{Ctx, ErrorCode, OAuthError};

fn registry(ctx: &Ctx) -> Result<&Registry, OAuthError> {
    ctx.registry
        .as_deref()
        .ok_or_else(|| OAuthError::new(ErrorCode::NotFound, "dynamic client registration is off"))
}

fn metadata_error(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, d)
}

/// A client information response: JSON, never cached (RFC 7591 §3.2.1).
fn answer(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// `POST /register`: an `application/json` body of at most 16 KiB (and `server.max_body_bytes`).
pub async fn register(
    State(ctx): State<Arc<Ctx>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OAuthError> {
    let registry = registry(&ctx)?;
    let is_json = (headers.get(header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(metadata_error(
            "the body must be application/json client metadata (RFC 7591 §3.1)",
        ));
    }
    let limit = registration::metadata::MAX_BODY_BYTES.min(ctx.config.server.max_body_bytes);
    // RFC 7591 §3.2.2: a refused registration is a 400, a too large one too.
    let bytes = read_body(body, limit).await.map_err(|e| match e {
        BodyError::TooLarge(n) => metadata_error(format!("the body is larger than {n} bytes")),
        BodyError::Unreadable => OAuthError::invalid_request("the body could not be read in full"),
    })?;
    let request: Value = serde_json::from_slice(&bytes)
        .map_err(|_| metadata_error("the body is not well-formed JSON (RFC 7591 §3.1)"))?;
    let accepted = registry.policy.accept(&request)?;
    let address = peer.map_or_else(
        || "unknown".to_string(),
        |Extension(ConnectInfo(a))| registration::address_key(a.ip()),
    );
    let info = registry.register(accepted, &address, &ctx.issuer).await?;
    Ok(answer(StatusCode::CREATED, info))
}

/// The registration access token of `Authorization: Bearer ...` (RFC 6750 §2.1), if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The client id of the path; a malformed one names no registration, so it is answered like a
/// wrong token.
fn client_id(path: Result<Path<String>, axum::extract::rejection::PathRejection>) -> String {
    path.map(|Path(id)| id).unwrap_or_default()
}

/// `GET /register/{client_id}` (RFC 7592 §2.1).
pub async fn read(
    State(ctx): State<Arc<Ctx>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    let registry = registry(&ctx)?;
    let info = registry
        .read(&client_id(path), bearer(&headers), &ctx.issuer)
        .await?;
    Ok(answer(StatusCode::OK, info))
}

/// `DELETE /register/{client_id}` (RFC 7592 §2.3): 204, and the client's tokens are revoked.
pub async fn delete(
    State(ctx): State<Arc<Ctx>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    let registry = registry(&ctx)?;
    registry.delete(&client_id(path), bearer(&headers)).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `PUT /register/{client_id}` (RFC 7592 §2.2) is not supported: after the token is checked
/// (so the answer says nothing about clients the caller does not hold), a 405 that says to
/// delete and register again.
pub async fn update(
    State(ctx): State<Arc<Ctx>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    let registry = registry(&ctx)?;
    let id = client_id(path);
    registry.read(&id, bearer(&headers), &ctx.issuer).await?;
    let mut resp = OAuthError::new(
        ErrorCode::MethodNotAllowed,
        "updating a registration is not supported (RFC 7592 section 2.2): DELETE it and register again",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, DELETE"));
    Ok(resp)
}
