//! `GET /.well-known/oauth-authorization-server` (RFC 8414 §3) and `GET /jwks.json` (RFC 7517 §5).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::oauth::Ctx;
use crate::oauth::request::SUPPORTED_GRANTS;

const AUTH_METHODS: [&str; 4] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];

/// Every scope a client may be granted: the configured clients', and registered clients'.
fn scopes_supported(ctx: &Ctx) -> Vec<String> {
    let mut v = ctx.clients.all_scopes();
    if let Some(r) = &ctx.registry {
        v.extend(r.policy.scopes.iter().cloned());
        v.sort();
        v.dedup();
    }
    v
}

/// RFC 8414 §2. Only what this server really supports is advertised.
pub fn metadata_document(ctx: &Ctx) -> Value {
    let signing = ["ES256", "ES384", "RS256", "PS256", "EdDSA"];
    let mut doc = json!({
        "issuer": ctx.issuer,
        "authorization_endpoint": ctx.endpoint("/authorize"),
        "token_endpoint": ctx.endpoint("/token"),
        "jwks_uri": ctx.endpoint("/jwks.json"),
        "introspection_endpoint": ctx.endpoint("/introspect"),
        "revocation_endpoint": ctx.endpoint("/revoke"),
        "scopes_supported": scopes_supported(ctx),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        // OpenID Connect Discovery §3: ID Tokens (for `openid` on the code flow) name the
        // human by username, the same for every client, signed as access tokens are.
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "at_hash"],
        // RFC 7636 §4.3: PKCE is required, and only with S256.
        "code_challenge_methods_supported": ["S256"],
        // RFC 9207: every redirect back to the client carries `iss`.
        "authorization_response_iss_parameter_supported": true,
        // OpenID CIBA Core §4: poll mode only, for delegations that need the human's approval.
        "backchannel_authentication_endpoint": ctx.endpoint("/bc-authorize"),
        "backchannel_token_delivery_modes_supported": ["poll"],
        "backchannel_user_code_parameter_supported": false,
        "grant_types_supported": SUPPORTED_GRANTS,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": signing,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": signing,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": signing,
        // RFC 9449 §5.1: proofs are accepted at /token, /bc-authorize and /attest.
        "dpop_signing_alg_values_supported": crate::oauth::dpop::ALGS,
    });
    // RFC 8414 §2 / RFC 7591 §3: only when registration is on.
    if let (Some(_), Some(o)) = (&ctx.registry, doc.as_object_mut()) {
        o.insert(
            "registration_endpoint".into(),
            ctx.endpoint("/register").into(),
        );
    }
    // draft-ietf-oauth-client-id-metadata-document §4: only when such clients are accepted.
    if let (true, Some(o)) = (ctx.config.cimd.enabled, doc.as_object_mut()) {
        o.insert("client_id_metadata_document_supported".into(), true.into());
    }
    doc
}

pub async fn metadata(State(ctx): State<Arc<Ctx>>) -> Response {
    let mut resp = axum::Json(metadata_document(&ctx)).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// `GET /.well-known/ssf-configuration` (SSF 1.0 §7.1), served when streams are configured or
/// receivers may create them: who transmits, where its SETs' keys are, how it delivers, and,
/// for receivers, the management endpoints (docs/ssf.md). Every stream covers every subject
/// (`default_subjects: ALL`).
pub async fn ssf_configuration(State(ctx): State<Arc<Ctx>>) -> Response {
    let receivers = ctx.config.clients.iter().any(|c| c.ssf_receiver);
    let mut methods = Vec::new();
    for (delivery, urn) in [("push", "urn:ietf:rfc:8935"), ("poll", "urn:ietf:rfc:8936")] {
        if receivers || (ctx.config.ssf.streams.iter()).any(|s| s.delivery == delivery) {
            methods.push(urn);
        }
    }
    let mut doc = serde_json::json!({
        "spec_version": "1_0",
        "issuer": ctx.issuer,
        "jwks_uri": format!("{}/jwks.json", ctx.issuer),
        "delivery_methods_supported": methods,
        "default_subjects": "ALL",
    });
    // §8.1: receivers the operator marked manage their own streams, with an access token of
    // theirs (§7.1.1: RFC 6749, client credentials). No subject endpoints: every stream
    // covers every subject (`default_subjects: ALL`), and none can be added or removed.
    if let (true, Some(o)) = (receivers, doc.as_object_mut()) {
        for (key, path) in [
            ("configuration_endpoint", "/ssf/stream"),
            ("status_endpoint", "/ssf/status"),
            ("verification_endpoint", "/ssf/verify"),
        ] {
            o.insert(key.into(), format!("{}{path}", ctx.issuer).into());
        }
        o.insert(
            "authorization_schemes".into(),
            serde_json::json!([{ "spec_urn": "urn:ietf:rfc:6749" }]),
        );
    }
    let mut resp = axum::Json(doc).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// The published keys: the signing key, the next one and recently retired ones.
pub async fn jwks(State(ctx): State<Arc<Ctx>>) -> Response {
    let ring = ctx.keys.ring();
    let max_age = ctx.config.server.jwks_max_age.as_secs();
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}"))
        .unwrap_or_else(|_| HeaderValue::from_static("public, max-age=300"));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, cache),
        ],
        ring.jwks().to_string(),
    )
        .into_response()
}
