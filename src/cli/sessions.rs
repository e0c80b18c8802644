//! `mandate sessions list|revoke`: the delegated-session tree of a human, for operators.

use std::collections::HashMap;
use std::process::ExitCode;

use mandate::audit::AuditEvent;
use mandate::clock::{Clock, SystemClock};
use mandate::config::Config;
use mandate::oauth::token::actor_chain;
use mandate::open_store;
use mandate::store::{BatchItem, TokenRecord, WriteOp, WriteOutcome};

use crate::SessionsCommand;

pub async fn run(config: Config, command: SessionsCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let now = SystemClock.now();
    let code = match command {
        SessionsCommand::List { user } => {
            let tokens = store.live_tokens_of(&user, now).await?;
            if tokens.is_empty() {
                println!("no live sessions for {user}");
            }
            print_tree(&tokens, now);
            ExitCode::SUCCESS
        }
        SessionsCommand::Revoke { sid } => {
            let mut ev = AuditEvent::new("token.revoked");
            ev.session = Some(sid.clone());
            ev.detail = serde_json::json!({ "via": "cli" });
            let mut item = BatchItem::new(WriteOp::RevokeSession { sid: sid.clone() }, vec![ev]);
            if let Some(tap) = mandate::App::offline_tap(&config) {
                item = item.tapped(tap.as_ref(), now);
            }
            let version = mandate::load_policies(&config)?.version();
            // The revocation is audited, chained under the server's KEK like its entries.
            let kek = super::audit::existing_kek(&config)?;
            match store
                .commit_batch(&[item], now, Some(&version), kek.audit_chain_key())
                .await?
                .first()
            {
                Some(WriteOutcome::Revoked(n)) if *n > 0 => {
                    println!("revoked session {sid}: {n} tokens");
                    ExitCode::SUCCESS
                }
                _ => {
                    println!("session {sid} has no live tokens; nothing revoked");
                    ExitCode::from(1)
                }
            }
        }
    };
    store.close().await;
    Ok(code)
}

/// Prints each token under its parent: the human's tokens first, then agents below them.
fn print_tree(tokens: &[TokenRecord], now: i64) {
    let by_hash: HashMap<&[u8], &TokenRecord> = tokens
        .iter()
        .map(|t| (t.token_hash.as_slice(), t))
        .collect();
    let mut children: HashMap<&[u8], Vec<&TokenRecord>> = HashMap::new();
    let mut roots = Vec::new();
    for t in tokens {
        match t.parent_hash.as_deref().filter(|p| by_hash.contains_key(p)) {
            Some(p) => children.entry(p).or_default().push(t),
            None => roots.push(t),
        }
    }
    let mut stack: Vec<(&TokenRecord, usize)> = roots.into_iter().rev().map(|t| (t, 0)).collect();
    while let Some((t, depth)) = stack.pop() {
        let actors = actor_chain(t.act.as_ref());
        let who = if actors.is_empty() {
            t.sub.clone()
        } else {
            format!("{} for {}", actors.join(" for "), t.sub)
        };
        println!(
            "{:indent$}sid={} {} {} client={} scope=[{}] aud=[{}] expires_in={}s last_used={}",
            "",
            t.sid.as_deref().unwrap_or("-"),
            t.kind.as_str(),
            who,
            t.client_id,
            t.scope,
            t.aud,
            t.exp - now,
            t.last_used_at
                .map(|u| format!("{}s ago", now - u))
                .unwrap_or_else(|| "never".into()),
            indent = depth * 2
        );
        if let Some(kids) = children.get(t.token_hash.as_slice()) {
            for k in kids.iter().rev() {
                stack.push((k, depth + 1));
            }
        }
    }
}
