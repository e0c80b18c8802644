//! The HTTP side of RFC 9449 DPoP: the `DPoP` request header and the `DPoP-Nonce` response
//! header. The checks themselves are `oauth::dpop`'s.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;

use crate::oauth::dpop::{Mode, Target};
use crate::oauth::{Ctx, ErrorCode, OAuthError};

pub const DPOP: HeaderName = HeaderName::from_static("dpop");
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The request's DPoP proof: at most one `DPoP` header (RFC 9449 §4.3 check 1), text.
pub fn proof(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    let mut values = headers.get_all(DPOP).iter();
    let (Some(one), None) = (values.next(), values.next()) else {
        return match headers.contains_key(DPOP) {
            true => Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "send exactly one DPoP header (RFC 9449 §4.3)",
            )),
            false => Ok(None),
        };
    };
    one.to_str().map(Some).map_err(|_| {
        OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "the DPoP header is not a compact JWS",
        )
    })
}

/// The key the tokens of a `POST` to `path` are bound to, under `mode` (the client's).
pub async fn binding(
    ctx: &Ctx,
    headers: &HeaderMap,
    path: &str,
    mode: Mode,
) -> Result<Option<String>, OAuthError> {
    let htu = ctx.endpoint(path);
    let target = Target {
        htm: "POST",
        htu: &htu,
        access_token: None,
    };
    (ctx.dpop)
        .binding(ctx, mode, proof(headers)?, &target, ctx.clock.now())
        .await
}

/// RFC 9449 §8: every answer of an endpoint that takes proofs carries the nonce to use next,
/// when nonces are required (errors included: `use_dpop_nonce` needs it).
pub fn with_nonce(ctx: &Ctx, mut resp: Response) -> Response {
    if let Some(n) = ctx.dpop.nonce_to_send(ctx.clock.now())
        && let Ok(v) = HeaderValue::from_str(&n)
    {
        resp.headers_mut().insert(DPOP_NONCE, v);
    }
    resp
}
