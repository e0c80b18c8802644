//! Humans who sign in: declared in the config (`[[users]]`), passwords as argon2id hashes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::UserConfig;

#[derive(Clone)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    /// What this human may hold and delegate.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl User {
    pub fn from_config(u: &UserConfig) -> Result<Self, argon2::password_hash::Error> {
        let password_hash = match (&u.password, &u.password_hash) {
            (Some(plain), _) => super::client::hash_secret(plain)?,
            (None, Some(h)) => h.clone(),
            (None, None) => return Err(argon2::password_hash::Error::Password),
        };
        Ok(Self {
            username: u.username.clone(),
            password_hash,
            scopes: u.scopes.clone(),
        })
    }

    /// Constant-time argon2 check; run it on a blocking thread.
    pub fn check_password(&self, plain: &str) -> bool {
        super::client::verify_secret(plain, &self.password_hash)
    }
}

#[derive(Debug, Default)]
pub struct Users {
    by_name: HashMap<String, Arc<User>>,
}

impl Users {
    pub fn new(list: Vec<User>) -> Self {
        Self {
            by_name: list
                .into_iter()
                .map(|u| (u.username.clone(), Arc::new(u)))
                .collect(),
        }
    }

    pub fn get(&self, username: &str) -> Option<Arc<User>> {
        self.by_name.get(username).cloned()
    }
}
