//! The protocol core: grants, introspection and revocation as plain async functions over typed
//! inputs and [`Ctx`]. No HTTP types here; `http/` parses requests into these calls.

pub mod act;
pub mod agent;
pub mod client;
pub mod client_auth;
pub mod delegation;
pub mod error;
pub mod grant;
pub mod introspect;
pub mod params;
pub mod pkce;
pub mod request;
pub mod revoke;
pub mod scope;
pub mod secret_check;
pub mod token;
pub mod user;

use std::sync::Arc;

pub use error::{ErrorCode, OAuthError};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::jose::KeyService;
use crate::store::{SharedStore, Writer};

/// Everything a request handler may use. One per process, shared behind an `Arc`.
pub struct Ctx {
    pub issuer: String,
    pub config: Arc<Config>,
    pub clock: SharedClock,
    pub store: SharedStore,
    pub writer: Writer,
    pub keys: Arc<KeyService>,
    pub clients: Arc<client::Clients>,
    pub users: Arc<user::Users>,
    pub agents: Arc<agent::Agents>,
    /// CAs whose EK certificates may enroll an agent (zero-touch TPM enrollment).
    pub ek_roots: Arc<crate::attest::tpm::ek::EkRoots>,
    pub policies: Arc<crate::policy::Policies>,
    pub auth: client_auth::ClientAuthenticator,
    pub throttle: crate::web::throttle::Throttles,
    /// The one bound on argon2 checks (client secrets and passwords).
    pub secret_checks: Arc<secret_check::SecretChecks>,
}

impl Ctx {
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }
}
