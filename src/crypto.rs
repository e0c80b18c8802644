//! Small primitives over aws-lc-rs: random identifiers, SHA-256 and keyed hashes.
//! No protocol logic lives here.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::clock::Clock;

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // SystemRandom only fails when the OS has no entropy source; nothing can run safely then.
    if SystemRandom::new().fill(&mut out).is_err() {
        panic!("operating system random number generator failed");
    }
    out
}

/// A 128-bit random identifier, base64url without padding (CIBA request and enrollment ids;
/// tokens and sessions use [`time_ordered_id`]).
pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

/// base64url's 64 characters in ASCII order: strings of them compare like the numbers they
/// spell.
const ORDERED: &[u8; 64] = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

/// An identifier for records that are written once and looked up later (token `jti`, session
/// ids): 7 characters of milliseconds since the Unix epoch (42 bits, enough until 2109) then 15
/// random ones (90 bits), from base64url's characters in ASCII order. Ids made later sort
/// after ids made earlier, so an index on them grows at its right-hand edge: a batch of new
/// tokens dirties one or two index pages instead of one random page per token. The random
/// part keeps them unguessable and unique. None starts with `-` (only ids made before March
/// 1972 would), so they pass as command-line arguments. The time is the caller's injected
/// clock, so a test that moves the clock sees it in the ids too.
pub fn time_ordered_id(clock: &dyn Clock) -> String {
    let ms = u64::try_from(clock.now_ms()).unwrap_or(0);
    ordered_id(ms, random_bytes::<15>())
}

fn ordered_id(ms: u64, random: [u8; 15]) -> String {
    let digit = |v: u64| char::from(ORDERED.get((v & 63) as usize).copied().unwrap_or(b'-'));
    let time = (0..7).rev().map(|i| digit(ms >> (6 * i)));
    // 256 is a multiple of 64: each byte's low six bits are uniform.
    time.chain(random.iter().map(|b| digit(u64::from(*b))))
        .collect()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// HMAC-SHA256 under a process-local key; used to remember verified client secrets
/// without keeping the secret itself in memory.
#[derive(Clone)]
pub struct Keyed(hmac::Key);

impl Keyed {
    pub fn random() -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, &random_bytes::<32>()))
    }
    /// A key derived from `secret` under `label` (HKDF-SHA256, RFC 5869, empty salt: the
    /// secret is already uniformly random), the same in every process holding `secret`.
    pub fn derive(secret: &[u8], label: &[u8]) -> Self {
        let prk = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, &[]).extract(secret);
        let labels = [label];
        match prk.expand(&labels, hmac::HMAC_SHA256) {
            Ok(okm) => Self(hmac::Key::from(okm)),
            // Expanding to one hash length is always within HKDF's 255 * HashLen bound.
            Err(_) => unreachable!("HKDF-Expand of 32 bytes cannot fail"),
        }
    }
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.0);
        for p in parts {
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

/// Every certificate of a file: PEM (any number of `CERTIFICATE` blocks) or one DER
/// certificate. The error (an unreadable file, bad PEM, no certificate) names no path: callers
/// add the key and path they read it for.
pub fn read_certificates(
    path: &std::path::Path,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs: Vec<CertificateDer<'static>> = if bytes.windows(10).any(|w| w == b"-----BEGIN") {
        CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad PEM: {e}"))?
    } else {
        vec![CertificateDer::from(bytes)]
    };
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs)
}

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ordered_ids_sort_by_time_then_randomness_and_stay_url_safe() {
        let mut ms = 1_700_000_000_000u64;
        let mut prev = ordered_id(ms, [0xff; 15]);
        for step in [1u64, 1, 7, 63, 64, 4096, 65_536, 1 << 35] {
            ms += step;
            let next = ordered_id(ms, [0; 15]);
            assert!(next > prev, "{next} made after {prev} must sort after it");
            prev = next;
        }
        // Same millisecond: the random characters decide.
        let low6 = |r: [u8; 15]| r.map(|b| b & 63);
        for _ in 0..1000 {
            let (a, b) = (random_bytes::<15>(), random_bytes::<15>());
            assert_eq!(
                ordered_id(ms, a).cmp(&ordered_id(ms, b)),
                low6(a).cmp(&low6(b))
            );
        }
        let id = time_ordered_id(&crate::clock::SystemClock);
        assert_eq!(id.len(), 22);
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert!(
            !id.starts_with('-'),
            "{id} would read as a command-line flag"
        );
        let clock = crate::clock::SystemClock;
        assert_ne!(time_ordered_id(&clock), time_ordered_id(&clock));
    }

    /// The time in an id is the injected clock's, to the millisecond: a test clock set to a
    /// moment yields ids that begin with that moment, and ids made after it moves sort after.
    #[test]
    fn time_ordered_ids_carry_the_injected_clocks_time() {
        let clock = crate::clock::TestClock::new(1_700_000_000);
        let at = |ms: u64| ordered_id(ms, [0; 15])[..7].to_string();
        let before = time_ordered_id(&clock);
        assert_eq!(before[..7], at(1_700_000_000_000), "{before}");
        clock.advance(86_400);
        let after = time_ordered_id(&clock);
        assert_eq!(after[..7], at(1_700_086_400_000), "{after}");
        assert!(after > before);
    }
}
