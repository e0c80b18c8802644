//! The key-encryption key: signing keys are stored AES-256-GCM encrypted under it, with the key's
//! `kid` as associated data so a ciphertext cannot be moved to another key's row. The audit
//! chain's MAC key is derived from it too ([`crate::audit::ChainKey`]).

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::audit::ChainKey;
use crate::crypto::random_bytes;

/// The file beside the config that holds a development KEK when none is configured.
pub const DEV_FILE: &str = "mandate.dev.kek";

pub struct Kek {
    aead: LessSafeKey,
    /// Derived once here, so that the raw KEK bytes are not kept around for it.
    chain: ChainKey,
    /// The key of DPoP nonces (`oauth::dpop::Nonces`): every replica derives the same one.
    dpop_nonce: crate::crypto::Keyed,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

/// Where the KEK came from; a development KEK is announced loudly at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    Env,
    File(PathBuf),
    GeneratedDevFile(PathBuf),
    ExistingDevFile(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("{0}: the key-encryption key must be 32 bytes, base64-encoded")]
    Malformed(String),
    #[error("cannot read key-encryption key file {0}: {1}")]
    Io(String, std::io::Error),
    #[error(
        "cannot decrypt signing key {0}: the key-encryption key is not the one it was stored under"
    )]
    Decrypt(String),
}

impl Kek {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        match UnboundKey::new(&AES_256_GCM, bytes) {
            Ok(k) => Self {
                aead: LessSafeKey::new(k),
                chain: ChainKey::derive(bytes),
                dpop_nonce: crate::crypto::Keyed::derive(bytes, b"mandate dpop nonce v1"),
            },
            // A 32-byte key is always valid for AES-256-GCM.
            Err(_) => unreachable!("AES-256-GCM accepts 32-byte keys"),
        }
    }

    /// The key of DPoP nonces, derived from this KEK under its own label.
    pub fn dpop_nonce_key(&self) -> crate::crypto::Keyed {
        self.dpop_nonce.clone()
    }

    /// The key that chains audit entries, derived from this KEK under its own label.
    pub fn audit_chain_key(&self) -> &ChainKey {
        &self.chain
    }

    pub fn parse(b64: &str, origin: &str) -> Result<Self, KekError> {
        let t = b64.trim();
        let bytes = STANDARD
            .decode(t)
            .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
            .map_err(|_| KekError::Malformed(origin.to_string()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KekError::Malformed(origin.to_string()))?;
        Ok(Self::from_bytes(&arr))
    }

    /// `MANDATE_KEK`, else the configured file, else a development file beside the config
    /// (created on first use).
    pub fn resolve(
        env_value: Option<String>,
        file: Option<&Path>,
        dev_dir: &Path,
    ) -> Result<(Self, KekSource), KekError> {
        if let Some(v) = env_value {
            return Ok((Self::parse(&v, "MANDATE_KEK")?, KekSource::Env));
        }
        if let Some(f) = file {
            let text =
                std::fs::read_to_string(f).map_err(|e| KekError::Io(f.display().to_string(), e))?;
            return Ok((
                Self::parse(&text, &f.display().to_string())?,
                KekSource::File(f.to_path_buf()),
            ));
        }
        let dev = dev_dir.join(DEV_FILE);
        match std::fs::read_to_string(&dev) {
            Ok(text) => Ok((
                Self::parse(&text, &dev.display().to_string())?,
                KekSource::ExistingDevFile(dev),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_bytes::<32>();
                write_private(&dev, STANDARD.encode(key).as_bytes())
                    .map_err(|e| KekError::Io(dev.display().to_string(), e))?;
                Ok((Self::from_bytes(&key), KekSource::GeneratedDevFile(dev)))
            }
            Err(e) => Err(KekError::Io(dev.display().to_string(), e)),
        }
    }

    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = random_bytes::<NONCE_LEN>();
        let mut buf = plaintext.to_vec();
        if self
            .aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .is_err()
        {
            unreachable!("AES-GCM sealing of a small buffer cannot fail");
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, KekError> {
        let err = || KekError::Decrypt(kid.to_string());
        if sealed.len() < NONCE_LEN {
            return Err(err());
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| err())?;
        let mut buf = ct.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| err())?;
        Ok(plain.to_vec())
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_under_the_same_kek_and_kid() {
        let a = Kek::from_bytes(&[1; 32]);
        let b = Kek::from_bytes(&[2; 32]);
        let sealed = a.seal("kid-1", b"private key");
        assert_eq!(a.open("kid-1", &sealed).unwrap(), b"private key");
        assert!(b.open("kid-1", &sealed).is_err());
        assert!(a.open("kid-2", &sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(a.open("kid-1", &tampered).is_err());
    }

    #[test]
    fn malformed_keks_are_refused() {
        assert!(Kek::parse("c2hvcnQ=", "MANDATE_KEK").is_err());
        assert!(Kek::parse(&STANDARD.encode([7u8; 32]), "MANDATE_KEK").is_ok());
    }

    #[test]
    fn a_development_kek_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, s1) = Kek::resolve(None, None, dir.path()).unwrap();
        assert!(matches!(s1, KekSource::GeneratedDevFile(_)));
        let (k2, s2) = Kek::resolve(None, None, dir.path()).unwrap();
        assert!(matches!(s2, KekSource::ExistingDevFile(_)));
        let sealed = k1.seal("k", b"x");
        assert_eq!(k2.open("k", &sealed).unwrap(), b"x");
    }
}
