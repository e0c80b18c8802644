//! Web pages for humans: sign-in, consent, approvals and the sessions page. Askama templates in
//! `templates/`, CSS in `static/` (compiled in); every page works without JavaScript.
//!
//! - [`authorize`]: `GET`/`POST /authorize` and `POST /consent` (RFC 6749 §4.1, RFC 7636).
//! - [`login`]: `GET`/`POST /login`, and [`login::require`], the sign-in every other page needs.
//! - [`approvals`]: `GET`/`POST /approvals`, the human's decisions on CIBA requests.
//! - [`delegations`]: `GET /sessions` (the delegation tree of the human's live sessions),
//!   `POST /sessions/revoke`, `GET /sessions/{sid}` (one session's audit trail).
//! - [`session`]: the browser's sign-in session: cookies and CSRF tokens.
//! - [`error`]: [`PageError`], the one error type of the pages, rendered once.
//! - [`pages`]: page types and the response headers every page carries.
//!
//! Layering: pages call the protocol core (`crate::oauth`), the store and the audit writer; the
//! core never calls back into the pages (nothing under `crate::oauth` names `crate::web`).

pub mod approvals;
pub mod authorize;
pub mod delegations;
pub mod error;
pub mod login;
pub mod pages;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::http::extract::{BodyError, is_form, read_body};
use crate::input::{self, Field};
use crate::oauth::Ctx;
use crate::oauth::params::Params;
pub use error::{OrInternal, PageError};

/// Routes of the web pages, merged into the main router.
pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/authorize", get(authorize::get).post(authorize::post))
        .route("/consent", post(authorize::consent))
        .route("/login", get(login::get).post(login::post))
        .route("/approvals", get(approvals::get).post(approvals::post))
        .route("/sessions", get(delegations::get))
        .route("/sessions/revoke", post(delegations::revoke))
        .route("/sessions/{sid}", get(delegations::detail))
        .route("/static/mandate.css", get(css))
        .layer(axum::middleware::map_response(security_headers))
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        pages::CSS,
    )
        .into_response()
}

/// Headers every response of the web pages carries; pages set their own CSP (see
/// [`pages::csp`]), anything else gets the strictest one.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        if let Ok(v) = HeaderValue::from_str(&pages::csp(None)) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    resp
}

/// An `application/x-www-form-urlencoded` body, or an error page.
pub(crate) async fn read_form(
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
) -> Result<Params, PageError> {
    if !is_form(headers) {
        return Err(PageError::refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The form must be sent as application/x-www-form-urlencoded.",
        ));
    }
    let bytes = read_body(body, ctx.config.server.max_body_bytes)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(_) => {
                PageError::refused(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.")
            }
            BodyError::Unreadable => PageError::bad_request("The form did not arrive in full."),
        })?;
    Ok(Params::parse_untrusted(&bytes)?)
}

/// A path parameter that names something (`/sessions/{sid}`): percent-decoded and checked as an
/// [`input::identifier`]; a malformed one is our error page, never axum's plain-text rejection.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                PageError::bad_request(
                    "The address is malformed: its last part is not valid percent-encoded UTF-8.",
                )
            })?;
        input::identifier(|| Field::named("the id in the address"), &raw)?;
        Ok(PathId(raw))
    }
}

/// A redirect; `status` is 302 after a GET and 303 after a POST.
pub(crate) fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut resp = status.into_response();
            resp.headers_mut().insert(header::LOCATION, v);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => Err::<Response, _>(e).doing("redirecting").into_response(),
    }
}
