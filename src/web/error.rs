//! The one error type of the web pages, rendered once: handlers return
//! `Result<Response, PageError>` and use `?`. A failure on our side keeps its precise reason for
//! the log (with what the page was doing); the human sees only a generic page (GUIDE convention
//! 2: internal text never reaches a client).

use std::borrow::Cow;
use std::fmt::Display;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::pages;
use crate::input::InputError;
use crate::oauth::OAuthError;
use crate::store::StoreError;

/// What the human sees when the server failed: nothing about why.
pub(crate) const SERVER_ERROR_TEXT: &str = "Something went wrong on our side. Please try again.";

#[derive(Debug)]
pub enum PageError {
    /// The request cannot be completed as sent; `message` says why, on the error page.
    Refused(StatusCode, Cow<'static, str>),
    /// A failure on our side: `doing` and `reason` are logged, never shown.
    Internal { doing: &'static str, reason: String },
    /// Another page answers instead (the sign-in page for a visitor who is not signed in, or a
    /// redirect back to the client with an RFC 6749 §4.1.2.1 error).
    Answer(Box<Response>),
}

impl PageError {
    pub fn refused(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self::Refused(status, message.into())
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::refused(StatusCode::BAD_REQUEST, message)
    }

    /// A form whose CSRF token is missing or wrong; `then` says what the human should do.
    pub fn forged_form(then: &'static str) -> Self {
        Self::Refused(
            StatusCode::FORBIDDEN,
            format!("This form expired or did not come from this site. {then}").into(),
        )
    }

    pub fn answer(resp: Response) -> Self {
        Self::Answer(Box::new(resp))
    }
}

/// Turns any failure into [`PageError::Internal`], naming what the page was doing.
pub trait OrInternal<T> {
    fn doing(self, doing: &'static str) -> Result<T, PageError>;
}

impl<T, E: Display> OrInternal<T> for Result<T, E> {
    fn doing(self, doing: &'static str) -> Result<T, PageError> {
        self.map_err(|e| PageError::Internal {
            doing,
            reason: e.to_string(),
        })
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        Self::Internal {
            doing: "using the database",
            reason: e.to_string(),
        }
    }
}

/// The OAuth core's errors reach a page only from internal failures (its client-facing refusals
/// are sent as redirects or JSON elsewhere); its description is already client-safe.
impl From<OAuthError> for PageError {
    fn from(e: OAuthError) -> Self {
        Self::Internal {
            doing: "serving a page",
            reason: e.to_string(),
        }
    }
}

/// A string that failed [`crate::input`]'s checks: the page says which field is wrong.
impl From<InputError> for PageError {
    fn from(e: InputError) -> Self {
        let mut m = e.to_string();
        if let Some(first) = m.get(..1).map(str::to_uppercase) {
            m.replace_range(..1, &first);
        }
        m.push('.');
        Self::bad_request(m)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::Refused(status, message) => pages::error(status, &message),
            Self::Internal { doing, reason } => {
                tracing::error!(doing, reason = %reason, "page failed");
                pages::error(StatusCode::INTERNAL_SERVER_ERROR, SERVER_ERROR_TEXT)
            }
            Self::Answer(resp) => *resp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (StatusCode, String) {
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// GUIDE convention 2: a database failure's text (which may name tables, paths or values)
    /// never reaches the page.
    #[tokio::test]
    async fn an_internal_failure_shows_a_generic_page_without_its_reason() {
        let e: PageError = StoreError::Corrupt("table tokens at /var/lib/secret.db".into()).into();
        let (status, html) = body(e.into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(html.contains("Something went wrong on our side"));
        assert!(!html.contains("secret.db") && !html.contains("tokens"));
    }

    #[tokio::test]
    async fn a_refusal_shows_its_message_with_its_status() {
        let (status, html) = body(PageError::forged_form("Reload.").into_response()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("did not come from this site. Reload."));
    }

    #[tokio::test]
    async fn bad_input_names_the_field_as_a_sentence() {
        let e = crate::input::identifier(|| crate::input::Field::named("username"), "a\u{0}b")
            .unwrap_err();
        let (status, html) = body(PageError::from(e).into_response()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            html.contains("Username contains a NUL character."),
            "{html}"
        );
    }
}
