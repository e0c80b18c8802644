//! The HTTP edge: routing, extractors, the error mapping. Handlers only parse, call `oauth/`,
//! and render.

mod attest;
mod audit;
mod bc_authorize;
pub mod cors;
mod discovery;
mod dpop;
mod error;
pub mod extract;
mod health;
mod introspect;
mod register;
mod request_id;
mod revoke;
pub mod serve;
mod ssf_poll;
mod ssf_streams;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

pub use discovery::metadata_document;

use crate::oauth::{Ctx, ErrorCode, OAuthError};

pub fn router(ctx: Arc<Ctx>) -> Router {
    let timeout = ctx.config.server.request_timeout;
    let origins = Arc::new(cors::Origins::new(
        &ctx.config.server.cors_origins,
        ctx.clients.redirect_origins(),
        ctx.registry.clone(),
    ));
    // What a browser-based client calls itself (see `cors`).
    let documents = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::metadata),
        )
        .route(
            "/.well-known/openid-configuration",
            get(discovery::metadata),
        )
        .route("/jwks.json", get(discovery::jwks))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors::layer(Arc::clone(&origins), &[Method::GET]));
    let token_endpoints = Router::new()
        .route("/token", post(token::token))
        .route("/revoke", post(revoke::revoke))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors::layer(Arc::clone(&origins), &[Method::POST]));
    // RFC 7591 / RFC 7592, only when enabled: otherwise these paths are 404 like any other.
    let registration = match ctx.registry {
        Some(_) => Router::new()
            .route("/register", post(register::register))
            .route(
                "/register/{client_id}",
                get(register::read)
                    .delete(register::delete)
                    .put(register::update),
            )
            .method_not_allowed_fallback(method_not_allowed)
            .layer(cors::layer(
                origins,
                &[Method::GET, Method::POST, Method::PUT, Method::DELETE],
            )),
        None => Router::new(),
    };
    // SSF 1.0 §7.1 transmitter metadata, only when there is something to transmit: streams
    // the operator configured, or receivers that may make their own (§8.1).
    let receivers = ctx.config.clients.iter().any(|c| c.ssf_receiver);
    let ssf = match (ctx.config.ssf.streams.is_empty(), receivers) {
        (true, false) => Router::new(),
        _ => Router::new()
            .route(
                "/.well-known/ssf-configuration",
                get(discovery::ssf_configuration),
            )
            .route("/ssf/poll/{stream}", post(ssf_poll::poll))
            .method_not_allowed_fallback(method_not_allowed),
    };
    let ssf = match receivers {
        false => ssf,
        true => ssf
            .route(
                "/ssf/stream",
                post(ssf_streams::create)
                    .get(ssf_streams::read)
                    .patch(ssf_streams::update)
                    .put(ssf_streams::replace)
                    .delete(ssf_streams::delete),
            )
            .route(
                "/ssf/status",
                get(ssf_streams::status).post(ssf_streams::set_status),
            )
            .route("/ssf/verify", post(ssf_streams::verify)),
    };
    Router::new()
        .merge(documents)
        .merge(ssf)
        .merge(token_endpoints)
        .merge(registration)
        .route("/introspect", post(introspect::introspect))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/attest/challenge", post(attest::challenge))
        .route("/attest", post(attest::attest))
        .route("/attest/enroll", post(attest::enroll))
        .route("/attest/enroll/activate", post(attest::activate))
        .route("/bc-authorize", post(bc_authorize::bc_authorize))
        .route("/audit/checkpoint", audit::route())
        .merge(crate::web::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&ctx.metrics),
            request_id::request_id,
        ))
        .with_state(ctx)
}

async fn not_found() -> OAuthError {
    OAuthError::new(
        ErrorCode::NotFound,
        "no such endpoint; see /.well-known/oauth-authorization-server",
    )
}

/// Web pages a browser reaches: a wrong method there gets the product's HTML page, the API's
/// endpoints their JSON error.
const PAGES: [&str; 5] = [
    "/authorize",
    "/consent",
    "/login",
    "/approvals",
    "/sessions",
];

async fn method_not_allowed(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path();
    let page = PAGES
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')));
    if page {
        return crate::web::pages::error(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "This page does not accept that kind of request.",
        );
    }
    OAuthError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not accept that HTTP method",
    )
    .into_response()
}
