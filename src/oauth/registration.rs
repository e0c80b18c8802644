//! Dynamic client registration (RFC 7591) and its management protocol's read and delete
//! (RFC 7592), under the operator's `[registration]` policy.
//!
//! - [`Policy::accept`] turns the client metadata a caller sent (RFC 7591 §2) into the client
//!   this server will register, or the RFC 7591 §3.2.2 error: a pure function over the JSON.
//! - [`Registry`] stores, reads and removes registrations, and is the [`ClientSource`] that
//!   resolves registered clients at run time: every lookup reads the database (a primary-key
//!   read), so a registration or a deletion on any replica holds everywhere at once.
//!
//! A registered client is never more trusted than a configured one: it never introspects, is
//! never a resource server (`audience`), and may only hold the grants the policy allows, of
//! `authorization_code`, `refresh_token` and `client_credentials` — never token exchange, CIBA
//! or jwt-bearer. Its scopes are within `registration.scopes`. The record read back from the
//! database is clamped to that again, so a tampered row cannot widen it.

pub mod metadata;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

pub use metadata::{Accepted, Policy};

use super::client::{Client, ClientSource, LookupError, Provenance};
use super::error::{ErrorCode, OAuthError};
use super::secret_check::SecretChecks;
use crate::audit::AuditEvent;
use crate::clock::SharedClock;
use crate::config::{REGISTRABLE_GRANTS, RegistrationConfig};
use crate::crypto::{b64url, random_bytes, sha256};
use crate::store::{
    Party, RegisterOutcome, RegisteredClient, RegistrationCaps, SharedStore, StoreError, WriteOp,
    Writer,
};

/// A registration's last use is recorded at most this often (seconds): expiry is that coarse.
const TOUCH_EVERY: i64 = 300;

/// The registrations of this server, shared by every request of the process.
pub struct Registry {
    store: SharedStore,
    writer: Writer,
    clock: SharedClock,
    /// The process's bound on argon2, which hashing a new client's secret shares.
    checks: Arc<SecretChecks>,
    pub policy: Policy,
    /// The resource servers named by URL (`[[resources]]`): the only audiences a registered
    /// client may get tokens for, never an internal API that only configured clients reach.
    resources: Vec<String>,
    /// Seconds after a removal during which each sweep revokes the client's tokens again: long
    /// enough for every request that found the client before its removal to have ended.
    revoke_again_within: i64,
    /// The https origins of live registered clients' redirect URIs, for CORS: added to at
    /// once on this replica, refreshed from the database by [`Registry::sweep`].
    origins: RwLock<HashSet<String>>,
}

/// Why a registration was removed, for its audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// RFC 7592 §2.3: the client deleted itself with its registration access token.
    ByClient,
    /// The operator (`mandate clients remove`).
    ByOperator,
    /// Unused for `registration.expire_unused_after`.
    Expired,
}

impl Removal {
    /// The audit entry's kind and its `via`.
    pub fn audit(self) -> (&'static str, &'static str) {
        match self {
            Removal::ByClient => ("client.deleted", "client"),
            Removal::ByOperator => ("client.deleted", "cli"),
            Removal::Expired => ("client.expired", "expiry"),
        }
    }
}

/// The key an address's registrations are counted under: an IPv4 address as it is, an IPv6
/// address by its /64 (one host usually holds a whole /64, so counting single addresses would
/// not bound it). An IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn invalid_token() -> OAuthError {
    // RFC 7592 §2.1, §2.3 and RFC 6750 §3.1: the same answer whether the client exists or not.
    OAuthError::new(
        ErrorCode::InvalidToken,
        "the registration access token is missing, wrong, or not for this client",
    )
}

impl Registry {
    pub fn new(
        store: SharedStore,
        writer: Writer,
        clock: SharedClock,
        checks: Arc<SecretChecks>,
        config: &RegistrationConfig,
        resources: Vec<String>,
        revoke_again_within: Duration,
    ) -> Self {
        Self {
            store,
            writer,
            clock,
            checks,
            resources,
            revoke_again_within: i64::try_from(revoke_again_within.as_secs()).unwrap_or(i64::MAX),
            policy: Policy::from_config(config),
            origins: RwLock::new(HashSet::new()),
        }
    }

    /// RFC 7591 §3.1, §3.2.1: registers `accepted` for the caller at `address` (its
    /// [`address_key`]), within the caps, and answers the client information response.
    pub async fn register(
        &self,
        accepted: Accepted,
        address: &str,
        issuer: &str,
    ) -> Result<Value, OAuthError> {
        let now = self.clock.now();
        let caps = RegistrationCaps {
            address_since: now - self.policy.per_address_window,
            per_address: self.policy.per_address_limit,
            total: self.policy.max_clients,
        };
        // A cheap refusal first, before a secret is hashed; the transaction below decides.
        let (by, live) = (self.store)
            .registration_counts(address, caps.address_since)
            .await?;
        if let Some(e) = cap_refusal(by, live, &caps) {
            return Err(e);
        }
        let Accepted {
            mut client,
            metadata,
        } = accepted;
        client.client_id = b64url(&random_bytes::<16>());
        let secret = (!client.public).then(|| b64url(&random_bytes::<32>()));
        if let Some(plain) = &secret {
            // argon2id under the process's one bound (SPEC: every expensive check is bounded).
            let key = format!("register:{address}");
            let hash = (self.checks.hash(&key, plain).await)
                .map_err(super::client_auth::busy)?
                .ok_or_else(|| {
                    OAuthError::internal("hashing a registered client's secret failed")
                })?;
            client.secret_hash = Some(hash);
        }
        let token = b64url(&random_bytes::<32>());
        let row = RegisteredClient {
            client_id: client.client_id.clone(),
            data: serde_json::to_string(&client).map_err(OAuthError::internal)?,
            metadata: Value::Object(metadata.clone()).to_string(),
            token_hash: sha256(token.as_bytes()).to_vec(),
            created_at: now,
            created_by: address.to_string(),
            last_used_at: now,
        };
        let refused = match self.store.register_client(&row, &caps).await? {
            RegisterOutcome::Registered => None,
            RegisterOutcome::AddressCap => cap_refusal(caps.per_address, 0, &caps),
            RegisterOutcome::TotalCap => cap_refusal(0, caps.total, &caps),
        };
        if let Some(e) = refused {
            return Err(e);
        }
        let mut ev = AuditEvent::new("client.registered");
        ev.client_id = Some(client.client_id.clone());
        ev.detail = json!({
            "via": "register",
            "address": address,
            "client_name": client.client_name,
            "application_type": client.application_type.map(|t| t.as_str()),
            "public": client.public,
            "grant_types": client.grant_types,
            "redirect_uris": client.redirect_uris,
            "scope": client.scopes.join(" "),
        });
        self.writer.write(WriteOp::None, vec![ev]).await?;
        self.add_origins(&client);
        tracing::info!(client_id = %client.client_id, %address, "client registered");
        let mut answer = self.information(&row, &metadata, &token, issuer);
        if let (Some(secret), Some(o)) = (secret, answer.as_object_mut()) {
            o.insert("client_secret".into(), secret.into());
        }
        Ok(answer)
    }

    /// RFC 7591 §3.2.1 / RFC 7592 §3: the client information response (without the secret,
    /// which only the registration response carries: the server keeps only its hash).
    fn information(
        &self,
        row: &RegisteredClient,
        metadata: &Map<String, Value>,
        token: &str,
        issuer: &str,
    ) -> Value {
        let mut o = metadata.clone();
        o.insert("client_id".into(), row.client_id.clone().into());
        o.insert("client_id_issued_at".into(), row.created_at.into());
        if o.get("token_endpoint_auth_method").and_then(Value::as_str) != Some("none") {
            // RFC 7591 §3.2.1: 0, the secret does not expire.
            o.insert("client_secret_expires_at".into(), 0.into());
        }
        o.insert("registration_access_token".into(), token.into());
        o.insert(
            "registration_client_uri".into(),
            format!("{issuer}/register/{}", row.client_id).into(),
        );
        Value::Object(o)
    }

    /// The live registration `client_id` if `token` is its registration access token
    /// (compared as SHA-256 digests, in constant time).
    async fn authorized(
        &self,
        client_id: &str,
        token: Option<&str>,
    ) -> Result<RegisteredClient, OAuthError> {
        let row = self.live(client_id).await?;
        let presented = sha256(token.unwrap_or("").as_bytes());
        let stored = row.as_ref().map_or(&[0u8; 32][..], |r| &r.token_hash[..]);
        let matches: bool = presented.ct_eq(stored).into();
        match row {
            Some(row) if matches && token.is_some() => Ok(row),
            _ => Err(invalid_token()),
        }
    }

    /// RFC 7592 §2.1: the registration as it stands.
    pub async fn read(
        &self,
        client_id: &str,
        token: Option<&str>,
        issuer: &str,
    ) -> Result<Value, OAuthError> {
        let row = self.authorized(client_id, token).await?;
        let metadata = match serde_json::from_str::<Value>(&row.metadata) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(OAuthError::from(StoreError::CorruptRecord(format!(
                    "registered client {client_id}: metadata"
                ))));
            }
        };
        Ok(self.information(&row, &metadata, token.unwrap_or(""), issuer))
    }

    /// RFC 7592 §2.3: the client deletes its registration; its tokens are revoked.
    pub async fn delete(&self, client_id: &str, token: Option<&str>) -> Result<(), OAuthError> {
        self.authorized(client_id, token).await?;
        self.remove(client_id, Removal::ByClient).await?;
        Ok(())
    }

    /// Removes the registration (one removal wins across replicas) and revokes every live
    /// token issued to the client and everything derived from them, with one audit entry.
    /// `None` if there was no live registration to remove, else how many tokens were revoked.
    pub async fn remove(&self, client_id: &str, why: Removal) -> Result<Option<u64>, StoreError> {
        let now = self.clock.now();
        if !self.store.remove_registered_client(client_id, now).await? {
            return Ok(None);
        }
        let (kind, via) = why.audit();
        let mut ev = AuditEvent::new(kind);
        ev.client_id = Some(client_id.to_string());
        ev.detail = json!({ "via": via });
        let party = WriteOp::RevokeParty(Party::Client(client_id.to_string()));
        let n = match self.writer.write(party, vec![ev]).await? {
            crate::store::WriteOutcome::Revoked(n) => n,
            _ => 0,
        };
        tracing::info!(client_id, revoked = n, "{kind}");
        self.refresh_origins().await?;
        Ok(Some(n))
    }

    /// The live registration `client_id`; one unused for `expire_unused_after` is removed
    /// here (lazily, besides the sweep) and reads as gone.
    async fn live(&self, client_id: &str) -> Result<Option<RegisteredClient>, StoreError> {
        let Some(row) = self.store.registered_client(client_id).await? else {
            return Ok(None);
        };
        if row.last_used_at + self.policy.expire_unused_after <= self.clock.now() {
            self.remove(client_id, Removal::Expired).await?;
            return Ok(None);
        }
        Ok(Some(row))
    }

    /// Removes registrations unused for `expire_unused_after` (revoking their tokens,
    /// audited), deletes the rows of removed ones that no longer count against a cap (after
    /// revoking again, silently, whatever a crash between a removal and its revocation left
    /// live), and refreshes the CORS origins. Runs at start and periodically on each replica;
    /// concurrent sweeps remove each registration once.
    pub async fn sweep(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let unused = (self.store)
            .unused_registered_clients(now - self.policy.expire_unused_after)
            .await?;
        for id in unused {
            self.remove(&id, Removal::Expired).await?;
        }
        // A `/token` on another replica that found the client just before its removal may
        // write its tokens just after the removal's revocation; every such request has ended
        // within `revoke_again_within`, so revoking again (silently) until then catches them.
        let recent = (self.store)
            .removed_registered_clients(now - self.revoke_again_within)
            .await?;
        for id in recent {
            let party = WriteOp::RevokeParty(Party::Client(id));
            self.writer.write(party, Vec::new()).await?;
        }
        let purged = (self.store)
            .purge_registered_clients(now - self.policy.per_address_window)
            .await?;
        for id in purged {
            let party = WriteOp::RevokeParty(Party::Client(id));
            self.writer.write(party, Vec::new()).await?;
        }
        self.refresh_origins().await
    }

    fn add_origins(&self, client: &Client) {
        let mut set = self.origins.write().unwrap_or_else(|p| p.into_inner());
        set.extend(https_origins(client));
    }

    /// Reloads the https origins of every live registered client.
    pub async fn refresh_origins(&self) -> Result<(), StoreError> {
        let mut fresh = HashSet::new();
        for row in self.store.registered_clients().await? {
            if let Ok(c) = serde_json::from_str::<Client>(&row.data) {
                fresh.extend(https_origins(&c));
            }
        }
        *self.origins.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Whether `origin` is the origin of a live registered client's https redirect URI.
    pub fn allows_origin(&self, origin: &str) -> bool {
        let set = self.origins.read().unwrap_or_else(|p| p.into_inner());
        set.contains(origin)
    }
}

fn https_origins(client: &Client) -> impl Iterator<Item = String> + '_ {
    (client.redirect_uris.iter())
        .filter(|u| u.starts_with("https://"))
        .filter_map(|u| crate::input::origin_of(u))
}

/// The refusal when `by` registrations of the address or `live` ones in all reach `caps`.
fn cap_refusal(by: u64, live: u64, caps: &RegistrationCaps) -> Option<OAuthError> {
    if by >= caps.per_address {
        return Some(
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "too many registrations from this address; try again later",
            )
            .with_status(429),
        );
    }
    (live >= caps.total).then(|| {
        OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "this server accepts no more registrations for now",
        )
        .with_status(503)
    })
}

/// The stored record, parsed, and clamped to what a registered client may be whatever the row
/// says, under today's policy (a narrower `[registration]` reaches clients registered before
/// it): grants and scopes within the policy's, tokens only for the resource servers named by
/// URL (`resources`), and no confidential client once the policy allows none (`None`).
fn clamp(mut c: Client, policy: &Policy, resources: &[String]) -> Option<Client> {
    if !c.public && !policy.confidential {
        return None;
    }
    c.provenance = Provenance::Registered;
    c.introspect = false;
    c.ssf_receiver = false;
    c.audience = None;
    c.audiences = Some(resources.to_vec());
    c.jwks = None;
    c.grant_types
        .retain(|g| REGISTRABLE_GRANTS.contains(&g.as_str()) && policy.grant_types.contains(g));
    c.scopes.retain(|s| policy.scopes.contains(s));
    if c.public {
        c.grant_types.retain(|g| g != "client_credentials");
        c.secret_hash = None;
    }
    Some(c)
}

#[async_trait]
impl ClientSource for Registry {
    async fn find(&self, client_id: &str) -> Result<Option<Arc<Client>>, LookupError> {
        let Some(row) = self.live(client_id).await? else {
            return Ok(None);
        };
        let client = serde_json::from_str::<Client>(&row.data).map_err(|e| {
            StoreError::CorruptRecord(format!("registered client {client_id}: {e}"))
        })?;
        if client.client_id != client_id {
            return Err(StoreError::CorruptRecord(format!(
                "registered client {client_id}: the record names another client"
            ))
            .into());
        }
        Ok(clamp(client, &self.policy, &self.resources).map(Arc::new))
    }
}

impl Registry {
    /// Records that `client_id` was just used for real (a token issued to it), which keeps it
    /// from expiring; a lookup alone (a failed `/token`, any `/authorize`) is no use, so a
    /// stranger cannot keep registrations alive by naming them.
    pub async fn used(&self, client_id: &str) -> Result<(), StoreError> {
        let Some(row) = self.live(client_id).await? else {
            return Ok(());
        };
        let now = self.clock.now();
        if now - row.last_used_at >= TOUCH_EVERY {
            self.store.touch_registered_client(client_id, now).await?;
        }
        Ok(())
    }
}
