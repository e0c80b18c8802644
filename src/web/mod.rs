//! Web pages for humans: sign-in, consent (and later approvals and sessions). Askama templates
//! in `templates/`, CSS in `static/`; every page works without JavaScript.

use std::sync::Arc;

use axum::Router;

use crate::oauth::Ctx;

/// Routes of the web pages, merged into the main router.
pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
}
