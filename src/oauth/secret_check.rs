//! The one bound on argon2id in the process. Every password or client-secret check (and every
//! decoy check that hides whether a name exists) goes through [`SecretChecks::verify`], and
//! every secret hashed for a client that registers itself through [`SecretChecks::hash`].
//!
//! argon2id costs 19 MiB and ~14 ms of CPU per check. Unbounded, 160 concurrent wrong-password
//! posts took the server from 100 MB to 3 GB; bounded only by a queue, 400 wrong secrets for one
//! client made a legitimate client's first authentication wait 5 s behind them. So:
//! - at most `parallelism` checks run at once (memory and CPU are bounded);
//! - each *key* (a client id, a username, or one shared key for names that do not exist) may
//!   have at most [`PER_KEY`] checks running or waiting; more are refused at once, without
//!   argon2, as [`Busy`] — a flood aimed at one name waits in front of nobody else;
//! - at most [`MAX_OUTSTANDING`] checks run or wait in all, so no queue grows without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// Checks one key may have running or waiting.
pub const PER_KEY: usize = 2;
/// Checks the whole process may have running or waiting.
pub const MAX_OUTSTANDING: usize = 64;

/// Too many checks are already running or waiting for this key (or in all); nothing was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

pub struct SecretChecks {
    running: Arc<Semaphore>,
    outstanding: Mutex<Outstanding>,
    /// argon2's working memory, one per running check, allocated once and reused: freed 19 MiB
    /// blocks stayed in the allocator's per-thread arenas, so a flood grew the heap by 100+ MB
    /// even with few checks running at once.
    memory: Arc<Mutex<Vec<Vec<argon2::Block>>>>,
}

/// The largest argon2 memory cost (KiB) run on reused memory; a stored hash asking for more
/// (an operator's choice) is verified with its own allocation.
const MAX_POOLED_KIB: usize = 256 * 1024;

/// [`crate::oauth::client::verify_secret`], on `memory` instead of a fresh allocation.
pub fn verify_with_memory(plain: &str, phc: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::PasswordHash;
    use argon2::{Algorithm, Argon2, Params, Version};
    use subtle::ConstantTimeEq;
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(h.algorithm),
        Params::try_from(&h),
        h.salt,
        h.hash,
    ) else {
        return false;
    };
    let version = match h.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let blocks = params.block_count();
    if blocks > MAX_POOLED_KIB {
        return super::client::verify_secret(plain, phc);
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    memory.resize(blocks, argon2::Block::default());
    let mut out = vec![0u8; expected.len()];
    let Some(work) = memory.get_mut(..blocks) else {
        return false;
    };
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(plain.as_bytes(), salt, &mut out, work)
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

#[derive(Default)]
struct Outstanding {
    total: usize,
    by_key: HashMap<String, usize>,
}

/// One check's place in the bound; given back when dropped (also when the caller goes away).
struct Place<'a> {
    checks: &'a SecretChecks,
    key: String,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut o = self.checks.lock();
        o.total = o.total.saturating_sub(1);
        if let Some(n) = o.by_key.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                o.by_key.remove(&self.key);
            }
        }
    }
}

impl Default for SecretChecks {
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl SecretChecks {
    /// At most `parallel` checks run at once.
    pub fn new(parallel: usize) -> Self {
        Self {
            running: Arc::new(Semaphore::new(parallel.max(1))),
            outstanding: Mutex::new(Outstanding::default()),
            memory: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outstanding> {
        self.outstanding.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, key: &str) -> Result<Place<'_>, Busy> {
        let mut o = self.lock();
        let mine = o.by_key.get(key).copied().unwrap_or(0);
        if mine >= PER_KEY || o.total >= MAX_OUTSTANDING {
            return Err(Busy);
        }
        o.total += 1;
        o.by_key.insert(key.to_string(), mine + 1);
        Ok(Place {
            checks: self,
            key: key.to_string(),
        })
    }

    /// Verifies `plain` against the argon2 PHC string `phc` on a blocking thread, under the
    /// bound. `key` names whose check this is (see the module doc).
    pub async fn verify(&self, key: &str, plain: &str, phc: &str) -> Result<bool, Busy> {
        let _place = self.enter(key)?;
        let permit = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        let (plain, phc) = (plain.to_string(), phc.to_string());
        let pool = Arc::clone(&self.memory);
        // The permit moves into the blocking task: a caller that goes away while argon2 runs
        // does not free a slot before the memory is. At most one memory per permit exists.
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let take = || pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut memory = take().unwrap_or_default();
            let ok = verify_with_memory(&plain, &phc, &mut memory);
            pool.lock().unwrap_or_else(|p| p.into_inner()).push(memory);
            ok
        })
        .await;
        // A panicked check verified nothing.
        Ok(ok.unwrap_or(false))
    }

    /// Hashes `plain` (argon2id, [`crate::oauth::client::hash_secret`]) on a blocking thread,
    /// under the same bound as the checks: a new client's secret costs what a check costs.
    pub async fn hash(&self, key: &str, plain: &str) -> Result<Option<String>, Busy> {
        let _place = self.enter(key)?;
        let permit = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        let plain = plain.to_string();
        let hashed = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            crate::oauth::client::hash_secret(&plain).ok()
        })
        .await;
        Ok(hashed.ok().flatten())
    }

    /// Checks running or waiting now (for tests and metrics).
    pub fn outstanding(&self) -> usize {
        self.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::client::{DECOY_PHC, hash_secret};

    #[tokio::test]
    async fn a_flood_on_one_key_is_refused_at_once_and_never_queues_in_front_of_another() {
        let checks = Arc::new(SecretChecks::new(1));
        let phc = hash_secret("right").unwrap();
        let mut flood = Vec::new();
        for _ in 0..40 {
            let c = Arc::clone(&checks);
            flood.push(tokio::spawn(async move {
                c.verify("client:victim", "wrong", DECOY_PHC).await
            }));
        }
        tokio::task::yield_now().await;
        // While the flood is in, another key gets its place (and the right answer).
        assert_eq!(checks.verify("client:other", "right", &phc).await, Ok(true));
        let mut busy = 0;
        for f in flood {
            match f.await.unwrap() {
                Err(Busy) => busy += 1,
                Ok(ok) => assert!(!ok),
            }
        }
        assert!(
            busy >= 40 - PER_KEY,
            "only {PER_KEY} of the flood were checked, not {}",
            40 - busy
        );
        assert_eq!(checks.outstanding(), 0, "every place was given back");
    }

    #[test]
    fn verifying_on_reused_memory_agrees_with_the_library() {
        let mut memory = Vec::new();
        let phc = hash_secret("right").unwrap();
        for (plain, hash) in [
            ("right", phc.as_str()),
            ("wrong", phc.as_str()),
            ("x", DECOY_PHC),
        ] {
            assert_eq!(
                verify_with_memory(plain, hash, &mut memory),
                crate::oauth::client::verify_secret(plain, hash),
                "{plain}"
            );
        }
        assert!(verify_with_memory("right", &phc, &mut memory));
        assert!(!verify_with_memory(
            "right",
            "not a phc string",
            &mut memory
        ));
        // argon2i and a custom cost verify too (an operator's password_hash).
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        let other = argon2::Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x10,
            argon2::Params::new(1024, 1, 1, Some(16)).unwrap(),
        )
        .hash_password(b"pw", &salt)
        .unwrap()
        .to_string();
        assert!(verify_with_memory("pw", &other, &mut memory));
        assert!(!verify_with_memory("pw2", &other, &mut memory));
    }

    #[tokio::test]
    async fn the_total_is_bounded_across_keys() {
        let checks = SecretChecks::new(1);
        let mut places = Vec::new();
        for i in 0..MAX_OUTSTANDING {
            places.push(checks.enter(&format!("k{i}")).unwrap());
        }
        assert!(checks.enter("one-more").is_err());
        drop(places);
        assert!(checks.enter("one-more").is_ok());
    }
}
