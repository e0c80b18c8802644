//! RFC 9728 OAuth 2.0 Protected Resource Metadata.

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{HeaderValue, header};
use serde::Serialize;

use crate::verifier::{ConfigError, well_known};

/// This resource server's RFC 9728 metadata document: which resource it is, which
/// authorization server (mandate) issues its tokens, and its scopes. Serve it with
/// [`router`](Self::router) and name its [`url`](Self::url) in challenges with
/// [`crate::VerifierBuilder::resource_metadata_url`].
///
/// ```
/// use mandate_resource::ProtectedResourceMetadata;
/// let meta = ProtectedResourceMetadata::new("https://api.example.com", "https://auth.example.com")
///     .unwrap()
///     .scopes_supported(["orders:read", "orders:write"])
///     .resource_name("Orders");
/// assert_eq!(meta.url(), "https://api.example.com/.well-known/oauth-protected-resource");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedResourceMetadata {
    resource: String,
    authorization_servers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes_supported: Vec<String>,
    bearer_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_documentation: Option<String>,
    #[serde(skip)]
    url: String,
    #[serde(skip)]
    path: String,
}

impl ProtectedResourceMetadata {
    /// The metadata of `resource` (this server's resource identifier: an https URL without a
    /// fragment, RFC 9728 §2; http is accepted for development) whose tokens `issuer` issues.
    pub fn new(
        resource: impl Into<String>,
        issuer: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let resource = resource.into();
        let parsed = url::Url::parse(&resource)
            .map_err(|e| ConfigError(format!("resource `{resource}` is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http")
            || parsed.fragment().is_some()
            || parsed.query().is_some()
        {
            return Err(ConfigError(format!(
                "resource `{resource}` must be an http(s) URL without query or fragment (RFC 9728 §1.2)"
            )));
        }
        let url = well_known(&parsed, "oauth-protected-resource");
        let path = format!(
            "/.well-known/oauth-protected-resource{}",
            parsed.path().trim_end_matches('/')
        );
        Ok(Self {
            resource,
            authorization_servers: vec![issuer.into()],
            scopes_supported: Vec::new(),
            bearer_methods_supported: vec!["header".into()],
            resource_name: None,
            resource_documentation: None,
            url,
            path,
        })
    }

    /// The scopes clients may ask for this resource (`scopes_supported`).
    pub fn scopes_supported<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// A human-readable name (`resource_name`).
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// A URL of human-readable documentation (`resource_documentation`).
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// The resource identifier (`resource`).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Where the document is served (RFC 9728 §3.1: `/.well-known/oauth-protected-resource`
    /// between the host and the resource's path), as an absolute URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The path part of [`url`](Self::url), the route [`router`](Self::router) serves.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The document as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// A router answering `GET` at [`path`](Self::path) with the document (RFC 9728 §3.2,
    /// `application/json`). Merge it outside the authenticated routes:
    /// `Router::new().route(...).layer(auth).merge(meta.router())`.
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let body = self.to_json();
        Router::new().route(
            &self.path,
            get(move || {
                let body = body.clone();
                async move {
                    let mut resp = axum::Json(body).into_response();
                    resp.headers_mut().insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("public, max-age=300"),
                    );
                    resp
                }
            }),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn rfc9728_s3_1_path_suffixed_location_for_a_resource_with_a_path() {
        let m =
            ProtectedResourceMetadata::new("https://tools.example.com/mcp", "https://as").unwrap();
        assert_eq!(
            m.url(),
            "https://tools.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(m.path(), "/.well-known/oauth-protected-resource/mcp");
        assert_eq!(
            m.to_json(),
            serde_json::json!({
                "resource": "https://tools.example.com/mcp",
                "authorization_servers": ["https://as"],
                "bearer_methods_supported": ["header"],
            })
        );
        assert!(ProtectedResourceMetadata::new("https://a#frag", "x").is_err());
        assert!(ProtectedResourceMetadata::new("orders-api", "x").is_err());
    }

    #[tokio::test]
    async fn rfc9728_s3_2_the_router_serves_json_at_the_path_suffixed_location() {
        use tower::ServiceExt;
        let m = ProtectedResourceMetadata::new("https://tools.example.com/mcp", "https://as")
            .unwrap()
            .resource_name("Tools");
        let resp = m
            .router::<()>()
            .oneshot(
                http::Request::get("/.well-known/oauth-protected-resource/mcp")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["resource"], "https://tools.example.com/mcp");
        assert_eq!(v["resource_name"], "Tools");
    }
}
