//! Web pages for humans: sign-in, consent (and later approvals and sessions). Askama templates
//! in `templates/`, CSS in `static/` (compiled in); every page works without JavaScript.
//!
//! - [`authorize`]: `GET`/`POST /authorize` and `POST /consent` (RFC 6749 §4.1, RFC 7636).
//! - [`login`]: `GET`/`POST /login`.
//! - [`session`]: cookies, browser sessions, CSRF tokens.
//! - [`pages`]: page types and the response headers every page carries.

pub mod approvals;
pub mod authorize;
pub mod login;
pub mod pages;
pub mod session;
pub mod sessions;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::http::extract::{BodyError, read_body};
use crate::input::{self, Field, InputError};
use crate::oauth::Ctx;
use crate::oauth::params::Params;

/// Routes of the web pages, merged into the main router.
pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/authorize", get(authorize::get).post(authorize::post))
        .route("/consent", post(authorize::consent))
        .route("/login", get(login::get).post(login::post))
        .route("/approvals", get(approvals::get).post(approvals::post))
        .route("/sessions", get(sessions::get))
        .route("/sessions/revoke", post(sessions::revoke))
        .route("/sessions/{sid}", get(sessions::detail))
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
) -> Result<Params, Response> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(pages::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The form must be sent as application/x-www-form-urlencoded.",
        ));
    }
    let bytes = read_body(body, ctx.config.server.max_body_bytes)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(_) => {
                pages::error(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.")
            }
            BodyError::Unreadable => {
                pages::error(StatusCode::BAD_REQUEST, "The form did not arrive in full.")
            }
        })?;
    Params::parse_untrusted(&bytes).map_err(bad_input)
}

/// The error page for a string that failed [`crate::input`]'s checks: it says which field is
/// wrong.
pub(crate) fn bad_input(e: InputError) -> Response {
    let mut m = e.to_string();
    if let Some(first) = m.get(..1).map(str::to_uppercase) {
        m.replace_range(..1, &first);
    }
    pages::error(StatusCode::BAD_REQUEST, &format!("{m}."))
}

/// A path parameter that names something (`/sessions/{sid}`): percent-decoded and checked as an
/// [`input::identifier`]; a malformed one is our error page, never axum's plain-text rejection.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                pages::error(
                    StatusCode::BAD_REQUEST,
                    "The address is malformed: its last part is not valid percent-encoded UTF-8.",
                )
            })?;
        input::identifier(|| Field::named("the id in the address"), &raw).map_err(bad_input)?;
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
        Err(_) => {
            tracing::error!("redirect location is not a valid header value");
            server_error()
        }
    }
}

/// Internal detail was logged where it happened; the human sees only this.
pub(crate) fn server_error() -> Response {
    pages::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side. Please try again.",
    )
}
