//! Clients that name themselves by a Client ID Metadata Document (`crate::cimd`): a
//! [`ClientSource`] for `client_id`s that are https URLs. The resolver fetches and validates the
//! document; this turns it into a [`Client`] no more trusted than a registered one: public
//! (`none`, PKCE), only the authorization-code and refresh grants its document lists, never a
//! resource server, and scopes within `cimd.scopes` (and its document's `scope`, when it has one).

use std::sync::Arc;

use async_trait::async_trait;

use super::client::{ApplicationType, Client, ClientSource, LookupError, Provenance};
use super::scope::ScopeSet;
use crate::cimd::{ClientMetadata, Resolver};

pub struct DocumentClients {
    resolver: Resolver,
    /// `cimd.scopes`: the most any such client may be granted.
    scopes: ScopeSet,
    /// The resource servers named by URL (`[[resources]]`): the only audiences such a client
    /// may get tokens for.
    resources: Vec<String>,
}

impl DocumentClients {
    pub fn new(resolver: Resolver, scopes: &[String], resources: Vec<String>) -> Self {
        Self {
            resolver,
            scopes: ScopeSet::from_list(scopes.iter().cloned()),
            resources,
        }
    }
}

/// The client a validated document describes, allowed `allowed` scopes at most and tokens for
/// `resources` only.
pub fn client_of(doc: &ClientMetadata, allowed: &ScopeSet, resources: &[String]) -> Client {
    let scopes = match doc.scope.as_deref().map(ScopeSet::parse) {
        Some(Ok(asked)) => allowed
            .iter()
            .filter(|s| asked.contains(s))
            .map(str::to_string)
            .collect(),
        // The resolver validated `scope`; one that does not parse grants nothing.
        Some(Err(_)) => Vec::new(),
        None => allowed.iter().map(str::to_string).collect(),
    };
    Client {
        client_id: doc.client_id.clone(),
        secret_hash: None,
        jwks: None,
        public: true,
        grant_types: (doc.grant_types.iter())
            .map(|g| g.as_str().to_string())
            .collect(),
        redirect_uris: doc.redirect_uris.clone(),
        scopes,
        introspect: false,
        ssf_receiver: false,
        audience: None,
        audiences: Some(resources.to_vec()),
        provenance: Provenance::Document { listed: doc.listed },
        client_name: doc.client_name.clone(),
        // Loopback redirect URIs match with any port (RFC 8252 §7.3), as the document's
        // native-app redirects are meant; the rest compare exactly.
        application_type: Some(ApplicationType::Native),
        dpop: Default::default(),
    }
}

#[async_trait]
impl ClientSource for DocumentClients {
    async fn find(&self, client_id: &str) -> Result<Option<Arc<Client>>, LookupError> {
        if !self.resolver.enabled() {
            return Ok(None);
        }
        match self.resolver.resolve(client_id).await {
            Ok(doc) => Ok(Some(Arc::new(client_of(
                &doc,
                &self.scopes,
                &self.resources,
            )))),
            Err(refusal) => Err(LookupError::Refused(refusal.to_string().into())),
        }
    }
}
