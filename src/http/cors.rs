//! Cross-origin requests (the Fetch standard's CORS protocol) for the endpoints a browser-based
//! client calls itself: the two metadata documents, the JWKS, `/token` and `/revoke` (an MCP
//! client such as the MCP Inspector runs in a page on a loopback origin), and dynamic client
//! registration (`/register`, `/register/{client_id}`). The pages for humans,
//! introspection, attestation and the audit checkpoint are never readable across origins.
//!
//! Allowed origins: the loopback origins (`http(s)://localhost`, `127.0.0.1`, `[::1]`, any port,
//! RFC 8252 §7.3's native-app case), the origins of every configured client's redirect URIs
//! (where its browser code runs), the https origins of registered clients' redirect URIs (this
//! replica's at once, other replicas' within a minute: `oauth::registration::Registry`), and
//! `server.cors_origins`. The answer echoes the one origin that asked,
//! never `*`, and never allows credentials: clients authenticate with the `Authorization` header
//! or the body, not with cookies.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::input::is_origin;
use crate::oauth::registration::Registry;

/// The origins allowed across origins.
#[derive(Default)]
pub struct Origins {
    exact: HashSet<String>,
    registered: Option<Arc<Registry>>,
}

impl Origins {
    pub fn new(
        configured: &[String],
        redirect_origins: Vec<String>,
        registered: Option<Arc<Registry>>,
    ) -> Self {
        Self {
            exact: configured.iter().cloned().chain(redirect_origins).collect(),
            registered,
        }
    }

    /// Whether a request whose `Origin` header is `origin` may read the answer.
    pub fn allows(&self, origin: &str) -> bool {
        // Only an origin exactly as browsers serialize it (so `null`, paths and odd case fail).
        is_origin(origin)
            && (self.exact.contains(origin)
                || is_loopback(origin)
                || (self.registered.as_ref()).is_some_and(|r| r.allows_origin(origin)))
    }
}

fn is_loopback(origin: &str) -> bool {
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    let host = match authority.strip_prefix('[') {
        Some(v6) => return v6.split(']').next() == Some("::1"),
        None => authority.split(':').next().unwrap_or(""),
    };
    host == "localhost" || host == "127.0.0.1"
}

/// The layer for routes answering `methods`: preflights are answered here, and allowed
/// origins get `Access-Control-Allow-Origin` (with `Vary: Origin`) on every answer.
pub fn layer(origins: Arc<Origins>, methods: &[Method]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |o: &HeaderValue, _| {
            o.to_str().is_ok_and(|o| origins.allows(o))
        }))
        .allow_methods(methods.to_vec())
        // RFC 9449: a browser client sends its proof in `DPoP` and reads the next nonce. It may
        // also send its own `X-Request-Id` and read the one its answer was logged under.
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            super::dpop::DPOP,
            super::request_id::HEADER,
        ])
        .expose_headers([super::dpop::DPOP_NONCE, super::request_id::HEADER])
        .max_age(Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirect_and_configured_origins_are_allowed_and_nothing_else() {
        let o = Origins::new(
            &["https://inspector.example".into()],
            vec!["https://app.example".into()],
            None,
        );
        for ok in [
            "http://127.0.0.1:6274",
            "http://localhost:3000",
            "https://localhost",
            "http://[::1]:8080",
            "https://app.example",
            "https://inspector.example",
        ] {
            assert!(o.allows(ok), "{ok}");
        }
        for no in [
            "https://evil.example",
            "https://app.example.evil.example",
            "http://app.example",
            "null",
            "*",
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.example",
            "https://APP.example",
            "https://app.example/",
        ] {
            assert!(!o.allows(no), "{no}");
        }
    }
}
