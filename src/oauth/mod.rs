//! The protocol core: grants, introspection and revocation as plain async functions over typed
//! inputs. No HTTP types here; `http/` parses requests into these calls.
//!
//! The grants ([`grant`]) never see [`Ctx`]: each declares beside its handler the narrow storage
//! trait it needs and reads the rest from a [`grant::Env`] (issuer, clock, signing key,
//! lifetimes and limits, policies). `Ctx` is the production side: it implements every grant's
//! storage trait over the store, the writer and the config's registries (`grant/live.rs`), and
//! [`Ctx::grant_env`] lends the environment. Introspection, revocation and attestation still
//! take `Ctx` whole.

pub mod act;
pub mod agent;
pub mod client;
pub mod client_auth;
pub mod delegation;
pub mod documents;
pub mod dpop;
pub mod error;
pub mod grant;
pub mod introspect;
pub mod params;
pub mod pkce;
pub mod registration;
pub mod request;
pub mod resource;
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
    /// Resource servers named by URL, with their scopes and tools.
    pub resources: Arc<resource::Resources>,
    pub users: Arc<user::Users>,
    pub agents: Arc<agent::Agents>,
    /// CAs whose EK certificates may enroll an agent (zero-touch TPM enrollment).
    pub ek_roots: Arc<crate::attest::tpm::ek::EkRoots>,
    pub policies: Arc<crate::policy::Policies>,
    pub auth: client_auth::ClientAuthenticator,
    /// Sign-in and enrollment attempts, counted per process ([`crate::throttle`]).
    pub throttle: crate::throttle::Throttles,
    /// The one bound on argon2 checks (client secrets and passwords).
    pub secret_checks: Arc<secret_check::SecretChecks>,
    /// RFC 9449 DPoP: nonces and the proof settings.
    pub dpop: Arc<dpop::Dpop>,
    /// Dynamic client registration (RFC 7591), when `registration.enabled`.
    pub registry: Option<Arc<registration::Registry>>,
    /// What `/metrics` shows on the metrics listener (`[metrics]`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Approval notifications: the channels a waiting request is announced on.
    pub notifier: Arc<crate::notify::Notifier>,
}

impl Ctx {
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// What signing a token needs, with the signing key current now.
    pub fn mint(&self) -> token::Mint<'_> {
        token::Mint {
            issuer: &self.issuer,
            clock: self.clock.as_ref(),
            keys: self.keys.ring(),
        }
    }

    /// The environment of the grants: this process's config, policies and signing key.
    pub fn grant_env(&self) -> grant::Env<'_> {
        grant::Env {
            mint: self.mint(),
            tokens: &self.config.tokens,
            ciba: &self.config.ciba,
            high_risk_scopes: &self.config.policy.high_risk_scopes,
            audiences: self.clients.resource_audiences(),
            policies: &self.policies,
            resources: &self.resources,
            jkt: None,
            dpop_audiences: self.clients.dpop_audiences(),
        }
    }
}
