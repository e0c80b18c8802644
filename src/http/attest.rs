//! `POST /attest/challenge`, `POST /attest` (SPEC: Agent attestation), and zero-touch TPM
//! enrollment: `POST /attest/enroll`, `POST /attest/enroll/activate`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::extract::{JsonBody, bad_input};
use crate::attest::enroll::{ActivateRequest, EnrollRequest};
use crate::attest::{self, AttestRequest, ChallengeRequest};
use crate::input::{self, Field};
use crate::oauth::request::TT_JWT;
use crate::oauth::{Ctx, OAuthError};

pub async fn challenge(
    State(ctx): State<Arc<Ctx>>,
    body: JsonBody<ChallengeRequest>,
) -> Result<Response, OAuthError> {
    let req = body.0.unwrap_or_default();
    if let Some(agent) = &req.agent {
        agent_name(agent)?;
    }
    let c = attest::challenge(&ctx, req).await?;
    // RFC 9449 §8: an agent that will attest with a DPoP proof gets the nonce for it here.
    Ok(super::dpop::with_nonce(
        &ctx,
        no_store(json!({ "nonce": c.nonce, "expires_in": c.expires_in })),
    ))
}

pub async fn attest(
    State(ctx): State<Arc<Ctx>>,
    headers: axum::http::HeaderMap,
    body: JsonBody<AttestRequest>,
) -> Response {
    let resp = match answer(&ctx, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    super::dpop::with_nonce(&ctx, resp)
}

async fn answer(
    ctx: &Arc<Ctx>,
    headers: &axum::http::HeaderMap,
    body: JsonBody<AttestRequest>,
) -> Result<Response, OAuthError> {
    let req = body.0.ok_or_else(|| {
        OAuthError::invalid_request("send a JSON body with agent, nonce and proof")
    })?;
    agent_name(&req.agent)?;
    input::identifier(|| Field::named("nonce"), &req.nonce).map_err(bad_input)?;
    let proof = super::dpop::proof(headers)?;
    let minted = attest::attest(ctx, req, proof).await?;
    Ok(no_store(json!({
        "agent_token": minted.token,
        "token_type": TT_JWT,
        "expires_in": minted.record.exp - minted.record.iat,
    })))
}

/// Zero-touch enrollment, step 1: EK (+ certificate) and AK in, credential-activation
/// challenge out.
pub async fn enroll(
    State(ctx): State<Arc<Ctx>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    body: JsonBody<EnrollRequest>,
) -> Result<Response, OAuthError> {
    let req = body.0.ok_or_else(|| {
        OAuthError::invalid_request(
            "send a JSON body with agent, ek_public, ek_certificate (and ek_chain) and ak_public",
        )
    })?;
    let addr = crate::web::login::peer_address(peer);
    let c = attest::enroll::begin(&ctx, req, addr.as_deref()).await?;
    Ok(no_store(json!({
        "enrollment_id": c.enrollment_id,
        "credential_blob": c.credential_blob,
        "encrypted_secret": c.encrypted_secret,
        "expires_in": c.expires_in,
    })))
}

/// Zero-touch enrollment, step 2: the secret TPM2_ActivateCredential recovered in, the AK
/// enrolled.
pub async fn activate(
    State(ctx): State<Arc<Ctx>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    body: JsonBody<ActivateRequest>,
) -> Result<Response, OAuthError> {
    let req = body.0.ok_or_else(|| {
        OAuthError::invalid_request("send a JSON body with enrollment_id and secret")
    })?;
    input::identifier(|| Field::named("enrollment_id"), &req.enrollment_id).map_err(bad_input)?;
    let addr = crate::web::login::peer_address(peer);
    let e = attest::enroll::activate(&ctx, req, addr.as_deref()).await?;
    Ok(no_store(json!({
        "agent": e.agent,
        "ak_thumbprint": e.ak_thumbprint,
        "enrolled": true,
    })))
}

/// An agent name as a client sent it must be an [`input::identifier`]. Refused before any
/// lookup, the same way whoever asks, so the refusal says nothing about which agents exist.
fn agent_name(name: &str) -> Result<(), OAuthError> {
    input::identifier(|| Field::named("agent"), name)
        .map(drop)
        .map_err(bad_input)
}

fn no_store(v: serde_json::Value) -> Response {
    let mut r = axum::Json(v).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
