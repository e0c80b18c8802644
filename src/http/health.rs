//! `GET /healthz` (the process is up) and `GET /readyz` (the database answers).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;

use crate::oauth::Ctx;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(ctx): State<Arc<Ctx>>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(Duration::from_secs(2), ctx.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}
