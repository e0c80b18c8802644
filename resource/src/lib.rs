#![doc = include_str!("../README.md")]

mod dpop;
mod error;
mod layer;
mod metadata;
mod principal;
mod verifier;

pub use error::{AuthError, AuthRejection};
pub use layer::{BearerAuth, BearerAuthLayer, RequireScopes};
pub use metadata::ProtectedResourceMetadata;
pub use principal::{Actor, Principal};
pub use verifier::{ConfigError, Verifier, VerifierBuilder};
