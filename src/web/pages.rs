//! Askama page types and the one place that turns a page into a response (status, HTML, no
//! caching, a Content-Security-Policy that allows the form's redirect to the client).

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `templates/login.html`: SPEC "one `<form method="post">` with inputs named `username` and
/// `password`, plus any hidden inputs (CSRF) that must be posted back".
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub action: &'a str,
    pub csrf: &'a str,
    /// The pending authorization request, as a query string.
    pub pending: Option<&'a str>,
    pub client: Option<&'a str>,
    pub error: Option<&'a str>,
    pub username: &'a str,
    /// Where to go after signing in (`/approvals`, `/sessions`).
    pub next: Option<&'a str>,
}

/// `templates/consent.html`: `Approve` / `Deny` buttons (SPEC).
#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub username: &'a str,
    pub client: &'a str,
    /// The client's own `client_name` (registered clients; escaped like everything else).
    pub client_name: Option<&'a str>,
    /// The client registered itself (RFC 7591): the operator does not know it.
    pub self_registered: bool,
    /// A client by metadata document: the host its document (its `client_id`) is on.
    pub document_host: Option<String>,
    /// The operator configured the client or allowed its document's host.
    pub known: bool,
    /// The host the human returns to (the redirect URI's, or its scheme for a private-use one).
    pub redirect_host: String,
    /// Every redirect URI of the client returns to this computer.
    pub local_only: bool,
    pub scopes: Vec<ScopeLine<'a>>,
    pub audiences: Vec<AudienceLine<'a>>,
    pub redirect_uri: &'a str,
    pub csrf: &'a str,
    pub pending: &'a str,
}

/// One scope asked for, with what it lets an agent do at the resources (`[[resources]]`).
pub struct ScopeLine<'a> {
    pub name: &'a str,
    pub uses: Vec<crate::oauth::resource::ScopeUse<'a>>,
}

/// One resource the tokens will be for: its configured name when it has one.
pub struct AudienceLine<'a> {
    pub uri: &'a str,
    pub name: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub heading: &'a str,
    pub message: &'a str,
    pub is_error: bool,
}

/// The stylesheet, compiled in.
pub const CSS: &str = include_str!("../../static/mandate.css");

/// The CSP of every page. `form-action` also names the client's origin when a form may end in
/// a redirect to it: browsers apply `form-action` to the redirects that follow a submission.
pub fn csp(redirect_to: Option<&str>) -> String {
    let target = redirect_to.and_then(csp_source).unwrap_or_default();
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'{target}; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// The origin of an `http(s)` URI (as [`crate::input::origin_of`] serializes it, which admits no
/// character that could end a CSP source), or ` scheme:` for a private-use scheme (RFC 8252
/// §7.1); nothing for anything else.
fn csp_source(uri: &str) -> Option<String> {
    let (scheme, _) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
        return crate::input::origin_of(uri).map(|o| format!(" {o}"));
    }
    let private_use = !scheme.is_empty()
        && (scheme.bytes()).all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    private_use.then(|| format!(" {scheme}:"))
}

/// Renders `page` with `status`; a template failure is logged and becomes a plain 500.
pub fn render(status: StatusCode, page: &impl Template, redirect_to: Option<&str>) -> Response {
    match page.render() {
        Ok(html) => html_response(status, html, redirect_to),
        Err(e) => {
            tracing::error!(error = %e, "page rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn html_response(status: StatusCode, html: String, redirect_to: Option<&str>) -> Response {
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&csp(redirect_to)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// A page with a heading and one message.
pub fn message(status: StatusCode, heading: &str, message: &str) -> Response {
    render(
        status,
        &MessagePage {
            heading,
            message,
            is_error: status.is_client_error() || status.is_server_error(),
        },
        None,
    )
}

/// `templates/refused.html`: an error meant for a client the operator does not vouch for,
/// shown to the human with a link they may follow instead of a redirect (RFC 9700 §4.11.2).
#[derive(Template)]
#[template(path = "refused.html")]
pub struct RefusedPage<'a> {
    pub message: &'a str,
    /// Where the link goes: the client's redirect URI with the error.
    pub location: &'a str,
    pub host: &'a str,
}

/// An error page for a request that cannot be answered by redirecting (RFC 6749 §4.1.2.1).
pub fn error(status: StatusCode, message: &str) -> Response {
    self::message(status, "This request cannot be completed", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_form_action_names_the_client_origin_only() {
        assert!(
            csp(Some("http://127.0.0.1:9999/callback?x=1"))
                .contains("form-action 'self' http://127.0.0.1:9999;")
        );
        assert!(csp(Some("com.example.app:/cb")).contains("form-action 'self' com.example.app:;"));
        assert!(csp(Some("https://a.example;script-src *")).contains("form-action 'self';"));
        assert!(csp(None).contains("form-action 'self'; frame-ancestors 'none'"));
        assert!(csp(None).starts_with("default-src 'none'; style-src 'self'"));
    }

    #[test]
    fn login_page_has_the_spec_form_and_escapes_values() {
        let html = LoginPage {
            action: "/login",
            csrf: "t\"<",
            pending: Some("a=1&b=2"),
            client: Some("cli"),
            error: None,
            username: "",
            next: None,
        }
        .render()
        .unwrap();
        assert_eq!(html.matches("<form method=\"post\"").count(), 1);
        assert!(html.contains("name=\"username\""));
        assert!(html.contains("name=\"password\""));
        assert!(html.contains("<label for=\"username\">"));
        assert!(html.contains("name=\"viewport\""));
        assert!(!html.contains("t\"<"), "attribute values are escaped");
        assert!(html.contains("a=1&#38;b=2") || html.contains("a=1&amp;b=2"));
    }
}
