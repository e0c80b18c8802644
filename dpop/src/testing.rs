//! Hand-built DPoP proofs for tests, here and in the server's: a fixed P-256 key per seed, and
//! a proof whose header and claims a test edits before it is signed, so each can be wrong in
//! exactly one way. Only with the `testing` feature (and in this crate's own tests).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};

use crate::{Target, b64url};

pub const NOW: i64 = 1_800_000_000;
pub const HTU: &str = "https://as.example/token";

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).unwrap()
}

pub fn jwk_of(k: &SigningKey) -> Value {
    let p = k.verifying_key().to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256", "x": b64url(p.x().unwrap()), "y": b64url(p.y().unwrap())})
}

pub fn sign(k: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig: Signature = k.sign(input.as_bytes());
    format!("{input}.{}", b64url(&sig.to_bytes()))
}

pub fn header(k: &SigningKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk_of(k)})
}

pub fn claims() -> Value {
    json!({"jti": "j-1", "htm": "POST", "htu": HTU, "iat": NOW})
}

/// A proof by `key(1)` for `POST HTU` at `NOW`, after `edit` changed its header and claims.
pub fn proof_with(edit: impl FnOnce(&mut Value, &mut Value)) -> String {
    let k = key(1);
    let (mut h, mut c) = (header(&k), claims());
    edit(&mut h, &mut c);
    sign(&k, &h, &c)
}

pub const TOKEN_REQUEST: Target<'static> = Target {
    htm: "POST",
    htu: HTU,
    access_token: None,
};
