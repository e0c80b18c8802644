//! The tower layers (bearer authentication, per-route scopes) and the axum extractor.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::Request;
use http::request::Parts;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{AuthError, AuthRejection, Challenge};
use crate::principal::Principal;
use crate::verifier::Verifier;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A tower [`Layer`] that verifies the bearer token of every request with a [`Verifier`] and
/// puts the [`Principal`] in the request extensions; requests without a good token are answered
/// by the layer with an RFC 6750 §3 challenge and never reach the service.
///
/// ```no_run
/// # fn f(verifier: mandate_resource::Verifier) {
/// use axum::{Router, routing::get};
/// use mandate_resource::{BearerAuthLayer, Principal};
/// let app: Router = Router::new()
///     .route("/me", get(|p: Principal| async move { p.to_string() }))
///     .layer(BearerAuthLayer::new(verifier));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BearerAuthLayer {
    verifier: Verifier,
}

impl BearerAuthLayer {
    /// A layer checking tokens with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service made by [`BearerAuthLayer`].
#[derive(Debug, Clone)]
pub struct BearerAuth<S> {
    inner: S,
    verifier: Verifier,
}

impl<S, B> Service<Request<B>> for BearerAuth<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone is not ready; the instance that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let checked = verifier
                .authenticate_request(req.method(), req.uri(), req.headers())
                .await;
            match checked {
                Ok(principal) => {
                    req.extensions_mut().insert(principal);
                    inner.call(req).await.map(IntoResponse::into_response)
                }
                Err(rejection) => {
                    let error = rejection.error();
                    if matches!(error, AuthError::Unavailable(_)) {
                        tracing::warn!(%error, "token not checked");
                    } else {
                        tracing::debug!(%error, "request refused");
                    }
                    Ok(rejection.into_response())
                }
            }
        })
    }
}

/// A per-route scope requirement: a tower [`Layer`] (and its service) that lets a request
/// through only when the [`Principal`] put there by [`BearerAuthLayer`] holds every listed
/// scope; otherwise 403 `insufficient_scope` with `scope="..."` (RFC 6750 §3.1).
///
/// ```no_run
/// # fn f(verifier: mandate_resource::Verifier) {
/// use axum::{Router, routing::{get, post}};
/// use mandate_resource::{BearerAuthLayer, RequireScopes};
/// let app: Router = Router::new()
///     .route("/orders", get(|| async { "[]" }).layer(RequireScopes::new(["orders:read"])))
///     .route("/orders", post(|| async { "ok" }).layer(RequireScopes::new(["orders:write"])))
///     .layer(BearerAuthLayer::new(verifier));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RequireScopes<S = ()> {
    required: Arc<[String]>,
    inner: S,
}

impl RequireScopes<()> {
    /// Requires every scope in `scopes`.
    pub fn new<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self {
            required: scopes.into_iter().map(Into::into).collect(),
            inner: (),
        }
    }
}

impl<S> Layer<S> for RequireScopes<()> {
    type Service = RequireScopes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopes {
            required: self.required.clone(),
            inner,
        }
    }
}

impl<S, B> Service<Request<B>> for RequireScopes<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let verdict = match req.extensions().get::<Principal>() {
            Some(p) => p.require_scopes(self.required.iter()),
            None => Err(not_authenticated()),
        };
        match verdict {
            Ok(()) => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(req).await.map(IntoResponse::into_response) })
            }
            Err(rejection) => Box::pin(async move { Ok(rejection.into_response()) }),
        }
    }
}

fn not_authenticated() -> AuthRejection {
    tracing::error!("no Principal in the request: is BearerAuthLayer in front of this route?");
    AuthRejection::new(
        AuthError::Misconfigured("the request was not authenticated".into()),
        Arc::new(Challenge::default()),
    )
}

/// Takes the [`Principal`] that [`BearerAuthLayer`] verified. Without the layer in front the
/// request is answered 500 (a wiring mistake must not look like an anonymous request).
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(not_authenticated)
    }
}

/// `Option<Principal>`: the principal when a layer verified one, else `None`.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::{StatusCode, header};
    use tower::ServiceExt;

    async fn status_of(app: Router, auth: Option<&str>) -> (StatusCode, http::HeaderMap) {
        let mut req = Request::builder().uri("/");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        (resp.status(), resp.headers().clone())
    }

    #[tokio::test]
    async fn a_principal_without_the_layer_is_a_wiring_error_not_an_anonymous_request() {
        let app = Router::new().route("/", get(|p: Principal| async move { p.to_string() }));
        assert_eq!(
            status_of(app, None).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let app = Router::new().route(
            "/",
            get(|| async { "open" }).layer(RequireScopes::new(["a"])),
        );
        assert_eq!(
            status_of(app, None).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let app = Router::new().route(
            "/",
            get(|p: Option<Principal>| async move { format!("{}", p.is_none()) }),
        );
        assert_eq!(status_of(app, None).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn an_unreachable_issuer_is_503_with_retry_after_and_no_challenge() {
        // Port 1 on the loopback: connection refused, nothing listens there.
        let verifier = Verifier::builder("http://127.0.0.1:1", "api")
            .resource_metadata_url("http://rs/.well-known/oauth-protected-resource")
            .build()
            .unwrap();
        let app = Router::new()
            .route("/", get(|| async { "secret" }))
            .layer(BearerAuthLayer::new(verifier.clone()));
        let (status, headers) = status_of(app.clone(), Some("Bearer a.b.c")).await;
        // The token is not even a JWT: refused before the issuer is asked.
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let h = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsifQ";
        let (status, headers2) = status_of(app, Some(&format!("Bearer {h}.e30.c2ln"))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(headers2.get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(headers2[header::RETRY_AFTER], "5");
        assert!(
            headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("resource_metadata=\"http://rs/.well-known/oauth-protected-resource\"")
        );
        assert!(matches!(
            verifier.warm_up().await,
            Err(AuthError::Unavailable(_))
        ));
    }
}
