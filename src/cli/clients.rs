//! `mandate clients list|remove`: the configured clients and the ones that registered
//! themselves (RFC 7591). Removing a registered client revokes every token it holds and
//! whatever derives from them (audited); running servers refuse it at its next request, on
//! every replica, since they read registered clients from the database. Configured clients are
//! removed from the config file instead.

use std::process::ExitCode;

use mandate::clock::{Clock, SystemClock};
use mandate::config::Config;
use mandate::oauth::client::Client;
use mandate::oauth::registration::Removal;
use mandate::open_store;

use crate::ClientsCommand;

pub async fn run(config: Config, command: ClientsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientsCommand::List => list(&config).await,
        ClientsCommand::Remove { client_id } => remove(&config, &client_id).await,
    }
}

fn when(t: i64) -> String {
    u64::try_from(t)
        .ok()
        .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
        .map_or_else(
            || t.to_string(),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        )
}

/// One line per client: id, source, name, created, last used (tab-separated).
async fn list(config: &Config) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let configured = store.load_clients().await?;
    let registered = store.registered_clients().await?;
    store.close().await;
    println!("client_id\tsource\tname\tcreated\tlast_used");
    for (id, _) in configured {
        println!("{id}\tconfig\t-\t-\t-");
    }
    for r in registered {
        let name = serde_json::from_str::<Client>(&r.data)
            .ok()
            .and_then(|c| c.client_name)
            .map_or_else(|| "-".to_string(), |n| n.escape_debug().to_string());
        println!(
            "{}\tregistered\t{name}\t{} by {}\t{}",
            r.client_id,
            when(r.created_at),
            r.created_by,
            when(r.last_used_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove(config: &Config, client_id: &str) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    if store
        .load_clients()
        .await?
        .iter()
        .any(|(id, _)| id == client_id)
    {
        store.close().await;
        println!(
            "{client_id} is declared in the config file: remove it there (its tokens are revoked at the next start)"
        );
        return Ok(ExitCode::from(1));
    }
    let now = SystemClock.now();
    if !store.remove_registered_client(client_id, now).await? {
        store.close().await;
        println!("no registered client {client_id}");
        return Ok(ExitCode::from(1));
    }
    let version = mandate::load_policies(config)?.version();
    // Audit entries are chained under the server's KEK (docs/audit.md).
    let kek = super::audit::existing_kek(config)?;
    let (kind, via) = Removal::ByOperator.audit();
    let n = mandate::cut_off(
        store.as_ref(),
        mandate::store::Party::Client(client_id.to_string()),
        (kind, via),
        now,
        Some(&version),
        kek.audit_chain_key(),
        mandate::App::offline_tap(config).as_deref(),
    )
    .await?;
    store.close().await;
    println!("removed registered client {client_id}; revoked {n} tokens");
    Ok(ExitCode::SUCCESS)
}
