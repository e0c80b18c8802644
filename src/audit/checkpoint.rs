//! Signed checkpoints of the chain head, in the manner of Certificate Transparency's signed tree
//! heads (RFC 9162 §4.10): `{iss, iat, seq, hash}` signed as a compact JWS (RFC 7515) with the
//! server's current ES256 signing key, `kid` set and `typ` [`TYP`].
//!
//! The keyed chain stops someone without the KEK from rewriting entries, but not from deleting
//! the newest ones and moving the head back: what remains is a valid, shorter chain. An auditor
//! who keeps checkpoints outside the database can show that the log once reached entry `seq`
//! with hash `hash`; `mandate audit verify --checkpoint` then requires that entry, with exactly
//! that hash (RFC 9162 §8.1.4: two heads for one size are a fork).

use std::collections::HashMap;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::{CHAIN_KEYED, ChainKey};
use crate::jose::keyring::SignError;
use crate::jose::{KeyRow, Keyring};
use crate::store::{Store, StoreError};

/// The JOSE `typ` of a checkpoint (RFC 7515 §4.1.9), distinct from every token's, so that a
/// checkpoint is never taken for a token nor a token for a checkpoint.
pub const TYP: &str = "audit-checkpoint+jwt";

/// A checkpoint file is one compact JWS of a few hundred bytes; anything much larger is not one.
pub const MAX_LEN: usize = 8 * 1024;

#[derive(Serialize, Deserialize)]
struct Claims {
    /// The server (its issuer identifier): RFC 9162's log identity.
    iss: String,
    /// When it was signed, seconds since the Unix epoch: RFC 9162's `timestamp`.
    iat: i64,
    /// The newest entry: RFC 9162's `tree_size`.
    seq: i64,
    /// That entry's chain hash, lowercase hex: RFC 9162's `root_hash`.
    hash: String,
}

/// A checkpoint whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub iss: String,
    pub iat: i64,
    pub seq: i64,
    pub hash: Vec<u8>,
    /// The key that signed it.
    pub kid: String,
}

impl Checkpoint {
    /// For messages: when, by whom and with which key it was signed.
    pub fn describe(&self) -> String {
        let at = u64::try_from(self.iat)
            .ok()
            .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_else(|| self.iat.to_string());
        format!("of {at} by {} (key {})", self.iss, self.kid)
    }
}

/// Why a checkpoint was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a compact JWS")]
    Malformed,
    #[error("not an audit checkpoint (JOSE typ is not {TYP})")]
    WrongType,
    #[error("signed by a key this server does not know (kid {0:?})")]
    UnknownKey(String),
    #[error("bad signature")]
    BadSignature,
    #[error("claims are not a checkpoint: {0}")]
    BadClaims(&'static str),
}

/// The public keys a checkpoint may be signed with: the server's stored keys (current, next
/// and recently retired) and any JWK Sets the auditor kept.
#[derive(Default)]
pub struct CheckpointKeys(HashMap<String, DecodingKey>);

impl CheckpointKeys {
    /// The public halves of stored key rows (no private key is opened).
    pub fn from_rows(rows: &[KeyRow]) -> Self {
        let mut keys = Self::default();
        for r in rows {
            if let Ok(jwk) = serde_json::from_str::<Jwk>(&r.public_jwk) {
                keys.add(&r.kid, &jwk);
            }
        }
        keys
    }

    /// Adds the keys of an RFC 7517 §5 JWK Set document; returns how many were usable.
    pub fn add_jwks(&mut self, document: &str) -> Result<usize, serde_json::Error> {
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(document)?;
        let mut n = 0;
        for jwk in &set.keys {
            if let Some(kid) = jwk.common.key_id.clone() {
                n += usize::from(self.add(&kid, jwk));
            }
        }
        Ok(n)
    }

    fn add(&mut self, kid: &str, jwk: &Jwk) -> bool {
        match DecodingKey::from_jwk(jwk) {
            Ok(k) => {
                self.0.insert(kid.to_string(), k);
                true
            }
            Err(_) => false,
        }
    }
}

/// Checks a checkpoint's signature (ES256 only, RFC 7518 §3.4) against `keys` and parses it.
/// Says nothing yet about the log: [`super::verify_log`] matches it against the entries.
pub fn verify(token: &str, keys: &CheckpointKeys) -> Result<Checkpoint, Refusal> {
    let token = token.trim();
    if token.len() > MAX_LEN {
        return Err(Refusal::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
    if header.typ.as_deref() != Some(TYP) {
        return Err(Refusal::WrongType);
    }
    let kid = header.kid.unwrap_or_default();
    let key = keys.0.get(&kid).ok_or(Refusal::UnknownKey(kid.clone()))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::Json(_) => Refusal::BadClaims("missing or mistyped"),
            _ => Refusal::BadSignature,
        })?
        .claims;
    let hash = hex::decode(&claims.hash)
        .ok()
        .filter(|h| h.len() == 32)
        .ok_or(Refusal::BadClaims("hash is not 32 bytes of hex"))?;
    if claims.seq < 1 {
        return Err(Refusal::BadClaims("seq must be at least 1"));
    }
    Ok(Checkpoint {
        iss: claims.iss,
        iat: claims.iat,
        seq: claims.seq,
        hash,
        kid,
    })
}

/// Why the server would not sign a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum SignRefusal {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit log is empty")]
    Empty,
    /// The server signs only a head it chained itself: never one a database writer made up.
    #[error("the audit log's head (entry {0}) does not verify; run `mandate audit verify`")]
    HeadUnverified(i64),
    #[error("signing: {0}")]
    Sign(#[from] SignError),
}

/// Signs a checkpoint of the current head, after checking that the head names a stored entry
/// whose keyed MAC verifies. Returns it parsed and as the compact JWS to hand out.
pub async fn sign_head(
    store: &dyn Store,
    key: &ChainKey,
    ring: &Keyring,
    issuer: &str,
    now: i64,
) -> Result<(Checkpoint, String), SignRefusal> {
    let (seq, hash) = store.audit_head().await?;
    if seq < 1 {
        return Err(SignRefusal::Empty);
    }
    let entry = store.audit_entries(seq - 1, 1).await?.into_iter().next();
    let genuine = entry.is_some_and(|e| {
        e.seq == seq
            && e.hash == hash
            && e.chain_version == CHAIN_KEYED
            && e.hash_matches(&e.prev_hash, key, &mut Vec::new())
    });
    if !genuine {
        return Err(SignRefusal::HeadUnverified(seq));
    }
    let claims = Claims {
        iss: issuer.to_string(),
        iat: now,
        seq,
        hash: hex::encode(&hash),
    };
    let jws = ring.sign(TYP, &claims)?;
    Ok((
        Checkpoint {
            iss: claims.iss,
            iat: now,
            seq,
            hash,
            kid: ring.signing_kid().to_string(),
        },
        jws,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{Kek, KeyMaterial, KeyState};

    fn new_ring() -> (Keyring, Vec<KeyRow>) {
        let kek = Kek::from_bytes(&[9; 32]);
        let mut row = KeyMaterial::generate(&kek, 0);
        row.state = KeyState::Current;
        let rows = vec![row];
        (Keyring::from_rows(&rows, &kek).unwrap(), rows)
    }

    fn signed(ring: &Keyring, claims: &serde_json::Value) -> String {
        ring.sign(TYP, claims).unwrap()
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({"iss": "https://as.example", "iat": 1_700_000_000, "seq": 4,
                           "hash": hex::encode([5u8; 32])})
    }

    /// RFC 9162 §4.10: a signed tree head is accepted only with a valid signature by a known
    /// key; here, for a checkpoint of the audit head.
    #[test]
    fn rfc9162_a_checkpoint_verifies_only_under_a_known_key_with_its_type() {
        let (ring, rows) = new_ring();
        let keys = CheckpointKeys::from_rows(&rows);
        let cp = verify(&signed(&ring, &claims()), &keys).unwrap();
        assert_eq!((cp.seq, cp.hash.as_slice()), (4, &[5u8; 32][..]));
        assert_eq!(cp.kid, ring.signing_kid());

        // Another server's key.
        let (other, _) = new_ring();
        assert!(matches!(
            verify(&signed(&other, &claims()), &keys),
            Err(Refusal::UnknownKey(_))
        ));
        // A flipped signature byte.
        let mut t = signed(&ring, &claims());
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(verify(&t, &keys), Err(Refusal::BadSignature));
        // A changed payload under the old signature.
        let t = signed(&ring, &claims());
        let parts: Vec<&str> = t.split('.').collect();
        let mut forged = claims();
        forged["seq"] = 3.into();
        let body = crate::crypto::b64url(forged.to_string().as_bytes());
        let t = format!("{}.{body}.{}", parts[0], parts[2]);
        assert_eq!(verify(&t, &keys), Err(Refusal::BadSignature));
        // An access token of the same server is not a checkpoint.
        let at = ring.sign("at+jwt", &claims()).unwrap();
        assert_eq!(verify(&at, &keys), Err(Refusal::WrongType));
        // Claims that are not a checkpoint's.
        let mut bad = claims();
        bad["hash"] = "abcd".into();
        assert!(matches!(
            verify(&signed(&ring, &bad), &keys),
            Err(Refusal::BadClaims(_))
        ));
        assert_eq!(verify("not a jws", &keys), Err(Refusal::Malformed));
    }

    #[test]
    fn keys_an_auditor_kept_as_a_jwk_set_verify_checkpoints() {
        let (ring, rows) = new_ring();
        let t = signed(&ring, &claims());
        let mut keys = CheckpointKeys::default();
        assert!(matches!(verify(&t, &keys), Err(Refusal::UnknownKey(_))));
        assert_eq!(keys.add_jwks(ring.jwks()).unwrap(), rows.len());
        assert!(verify(&t, &keys).is_ok());
    }
}
