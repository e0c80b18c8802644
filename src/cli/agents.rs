//! `mandate agents enroll|list`: pre-registered TPM agents (issue 4). The AK file is parsed and
//! checked to be an attestation key before anything is stored, so a typo never becomes an agent
//! that can never attest. Running servers read the agent from the database at its next
//! `/attest`, so no restart is needed. An agent also declared in the config file is overwritten
//! from the config at the next start.

use std::path::Path;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mandate::attest::tpm::{decode_b64, pcr::PcrPolicy, verify};
use mandate::clock::{Clock, SystemClock};
use mandate::config::Config;
use mandate::crypto::b64url;
use mandate::oauth::agent::Agent;
use mandate::open_store;

use crate::AgentsCommand;

pub async fn run(config: Config, command: AgentsCommand) -> anyhow::Result<ExitCode> {
    match command {
        AgentsCommand::Enroll {
            name,
            ak_public,
            pcr_policy,
        } => enroll(&config, &name, &ak_public, pcr_policy.as_deref()).await,
        AgentsCommand::List => list(&config).await,
        AgentsCommand::Disable { name } => cut(&config, &name, Cut::Disable).await,
        AgentsCommand::Enable { name } => cut(&config, &name, Cut::Enable).await,
        AgentsCommand::Remove { name } => cut(&config, &name, Cut::Remove).await,
    }
}

enum Cut {
    Disable,
    Enable,
    Remove,
}

/// SPEC "Invariants": an operator can disable an agent. Disabling and removing revoke the
/// agent's tokens and every delegation it is the current actor of (and what was derived from
/// them), as one audited write; running servers refuse the agent at its next `/attest` or
/// exchange, with no restart.
async fn cut(config: &Config, name: &str, how: Cut) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let now = SystemClock.now();
    let version = mandate::load_policies(config)?.version();
    // Audit entries are chained under the server's KEK (docs/audit.md).
    let kek = super::audit::existing_kek(config)?;
    let found = match how {
        Cut::Disable => store.set_agent_disabled(name, Some(now)).await?,
        Cut::Enable => store.set_agent_disabled(name, None).await?,
        Cut::Remove => store.delete_agent(name).await?,
    };
    if !found {
        store.close().await;
        println!("no agent named {name}");
        return Ok(ExitCode::from(1));
    }
    let (event, done) = match how {
        Cut::Disable => ("agent.disabled", "disabled"),
        Cut::Enable => ("agent.enabled", "enabled"),
        Cut::Remove => ("agent.removed", "removed"),
    };
    if let Cut::Enable = how {
        let mut ev = mandate::audit::AuditEvent::new(event);
        ev.subject = Some(format!("agent:{name}"));
        ev.detail = serde_json::json!({ "via": "cli" });
        let item = mandate::store::BatchItem {
            signals: Vec::new(),
            on_cut: None,
            op: mandate::store::WriteOp::None,
            audit: vec![ev],
        };
        store
            .commit_batch(&[item], now, Some(&version), kek.audit_chain_key())
            .await?;
        println!("{done} agent {name}");
    } else {
        let party = mandate::store::Party::Agent(name.to_string());
        let n = mandate::cut_off(
            store.as_ref(),
            party,
            (event, "cli"),
            now,
            Some(&version),
            kek.audit_chain_key(),
            mandate::App::offline_tap(config).as_deref(),
        )
        .await?;
        println!("{done} agent {name}; revoked {n} tokens");
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `mandate tokens revoke JTI`: the one way to revoke an agent token, which no client may
/// revoke at `/revoke` (it was issued to no client).
pub async fn tokens(config: Config, command: crate::TokensCommand) -> anyhow::Result<ExitCode> {
    let crate::TokensCommand::Revoke { jti } = command;
    let store = open_store(&config).await?;
    let now = SystemClock.now();
    let code = match store.find_token_by_jti(&jti).await? {
        None => {
            println!("no token with jti {jti}");
            ExitCode::from(1)
        }
        Some(t) => {
            let mut ev = mandate::audit::AuditEvent::new("token.revoked");
            ev.subject = Some(t.sub.clone());
            ev.actors = mandate::oauth::token::actor_chain(t.act.as_ref());
            ev.client_id = Some(t.client_id.clone());
            ev.session = t.sid.clone();
            ev.token_jti = Some(t.jti.clone());
            ev.detail = serde_json::json!({ "via": "cli", "kind": t.kind.as_str() });
            let mut item = mandate::store::BatchItem::new(
                mandate::store::WriteOp::Revoke {
                    token_hash: t.token_hash.clone(),
                },
                vec![ev],
            );
            if let Some(tap) = mandate::App::offline_tap(&config) {
                item = item.tapped(tap.as_ref(), now);
            }
            let version = mandate::load_policies(&config)?.version();
            let kek = super::audit::existing_kek(&config)?;
            let n = match store
                .commit_batch(&[item], now, Some(&version), kek.audit_chain_key())
                .await?
                .first()
            {
                Some(mandate::store::WriteOutcome::Revoked(n)) => *n,
                _ => 0,
            };
            println!(
                "revoked {} token {jti} and what derives from it: {n} tokens",
                t.kind.as_str()
            );
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

/// The AK file as `tpm2_createak -u` writes it (binary); base64 text of it is accepted too.
fn read_ak(path: &Path) -> anyhow::Result<Vec<u8>> {
    let raw =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if verify::attestation_key(&raw).is_ok() {
        return Ok(raw);
    }
    if let Some(decoded) = std::str::from_utf8(&raw).ok().and_then(decode_b64)
        && verify::attestation_key(&decoded).is_ok()
    {
        return Ok(decoded);
    }
    let why = verify::attestation_key(&raw)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    anyhow::bail!("{} is not an attestation key: {why}", path.display())
}

async fn enroll(
    config: &Config,
    name: &str,
    ak_path: &Path,
    policy_path: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!(
            "agent name `{name}` must be non-empty, without spaces or control characters"
        );
    }
    let ak = read_ak(ak_path)?;
    let parsed = verify::attestation_key(&ak).map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy = match policy_path {
        None => None,
        Some(p) => {
            let text = std::fs::read(p)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
            let json: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", p.display()))?;
            let policy = PcrPolicy::from_json(&json)
                .map_err(|e| anyhow::anyhow!("{} is not a PCR policy: {e}", p.display()))?;
            Some(policy.to_json())
        }
    };
    let store = open_store(config).await?;
    // Keep a registered software key, if the agent had one: enrolling a TPM adds a way to attest.
    let existing = store
        .load_agents()
        .await?
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, d)| serde_json::from_str::<Agent>(&d).ok());
    let agent = Agent {
        name: name.to_string(),
        public_jwk: existing.and_then(|a| a.public_jwk),
        ak_public: Some(STANDARD.encode(&ak)),
        pcr_policy: policy,
    };
    store
        .upsert_agent(
            name,
            &serde_json::to_string(&agent)?,
            "cli",
            SystemClock.now(),
        )
        .await?;
    store.close().await;
    println!(
        "enrolled agent:{name} with a {} AK, thumbprint {}{}; running servers use it at its next /attest",
        parsed.describe(),
        b64url(&parsed.thumbprint),
        if agent.pcr_policy.is_some() {
            ", with a PCR policy"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(config: &Config) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let agents = store.load_agents().await?;
    store.close().await;
    if agents.is_empty() {
        println!("no agents enrolled");
    }
    for (name, data) in agents {
        let Ok(a) = serde_json::from_str::<Agent>(&data) else {
            println!("{name}  (unreadable record)");
            continue;
        };
        let mut how = Vec::new();
        if a.public_jwk.is_some() {
            how.push("software key".to_string());
        }
        if let Some(ak) = &a.ak_public {
            match decode_b64(ak).map(|b| verify::attestation_key(&b)) {
                Some(Ok(k)) => {
                    how.push(format!("tpm {} ak {}", k.describe(), b64url(&k.thumbprint)))
                }
                _ => how.push("tpm (ak_public INVALID)".into()),
            }
        }
        if a.pcr_policy.is_some() {
            how.push("pcr policy".into());
        }
        println!("{name}  {}", how.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
