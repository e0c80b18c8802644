//! JOSE: ES256 signing keys (generation, encryption at rest, rotation) and JWT signing and
//! verification. Signatures go through `jsonwebtoken` with its aws-lc-rs backend; nothing here
//! hand-rolls a JOSE primitive.

pub mod kek;
pub mod keyring;
pub mod rotation;

pub use kek::Kek;
pub use keyring::{KeyMaterial, Keyring, VerifyError};
pub use rotation::{KeyChange, KeyRow, KeyState, RotationMode, plan_rotation};
pub mod service;
pub use service::KeyService;
