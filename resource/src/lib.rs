#![doc = include_str!("../README.md")]

mod dpop;
mod error;
mod layer;
mod metadata;
mod principal;
mod ssf;
mod verifier;

pub use error::{AuthError, AuthRejection};
pub use layer::{BearerAuth, BearerAuthLayer, RequireScopes};
pub use metadata::ProtectedResourceMetadata;
pub use principal::{Actor, Principal};
pub use ssf::{
    Delivery, MAX_SET_BYTES, SESSION_REVOKED, SsfError, SsfReceiver, SsfReceiverConfig,
    VERIFICATION,
};
pub use verifier::{ConfigError, Verifier, VerifierBuilder};
