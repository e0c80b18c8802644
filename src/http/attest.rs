//! `POST /attest/challenge` and `POST /attest` (SPEC: Agent attestation).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use crate::oauth::{Ctx, ErrorCode, OAuthError};

pub async fn challenge(State(_ctx): State<Arc<Ctx>>) -> Result<Response, OAuthError> {
    Err(OAuthError::new(
        ErrorCode::NotFound,
        "attestation is not available yet",
    ))
}

pub async fn attest(State(_ctx): State<Arc<Ctx>>) -> Result<Response, OAuthError> {
    Err(OAuthError::new(
        ErrorCode::NotFound,
        "attestation is not available yet",
    ))
}
