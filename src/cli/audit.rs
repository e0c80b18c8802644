//! `mandate audit verify|checkpoint`: check the keyed chain (and signed checkpoints kept outside
//! the database) or sign a checkpoint of the head. Both need the server's KEK: the chain is keyed
//! by it. See `docs/audit.md`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use mandate::audit::checkpoint::{self, Checkpoint, CheckpointKeys};
use mandate::clock::{Clock, SystemClock};
use mandate::config::Config;
use mandate::jose::Keyring;
use mandate::jose::kek::{DEV_FILE, Kek};
use mandate::{open_store, resolve_kek};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the chain; exits 1 and names the first bad entry if any. Needs the server's KEK.
    Verify {
        /// A signed checkpoint kept from before (`mandate audit checkpoint`, or
        /// `GET /audit/checkpoint`): the log must still reach its entry, with its hash.
        /// Repeatable.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// A JWK Set (the server's /jwks.json, saved beside the checkpoints) whose keys may
        /// have signed them, besides the keys the database still holds. Repeatable.
        #[arg(long = "jwks", value_name = "FILE")]
        jwks: Vec<PathBuf>,
    },
    /// Print a signed checkpoint of the current head (a compact JWS) to keep elsewhere.
    Checkpoint,
}

pub async fn run(config: Config, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let kek = existing_kek(&config)?;
    let store = open_store(&config).await?;
    let code = match command {
        AuditCommand::Verify { checkpoints, jwks } => {
            verify(&store, &kek, &checkpoints, &jwks).await
        }
        AuditCommand::Checkpoint => sign(&config, &store, &kek).await,
    };
    store.close().await;
    code
}

/// The KEK as the server resolves it, but never a freshly generated development one: a new key
/// would make every keyed entry look forged, and entries chained under it would not verify.
pub fn existing_kek(config: &Config) -> anyhow::Result<Kek> {
    if std::env::var_os("MANDATE_KEK").is_none()
        && config.kek_file.is_none()
        && !config.base_dir().join(DEV_FILE).exists()
    {
        anyhow::bail!(
            "no key-encryption key: set MANDATE_KEK or kek_file to the server's (the audit chain \
             is keyed by it)"
        );
    }
    Ok(resolve_kek(config)?)
}

async fn verify(
    store: &mandate::store::SharedStore,
    kek: &Kek,
    checkpoint_files: &[PathBuf],
    jwks_files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let mut keys = CheckpointKeys::from_rows(&store.load_keys().await?);
    for f in jwks_files {
        let text = read_small(f, 1024 * 1024)?;
        keys.add_jwks(&text)
            .with_context(|| format!("{} is not a JWK Set", f.display()))?;
    }
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    for f in checkpoint_files {
        let text = read_small(f, checkpoint::MAX_LEN as u64)?;
        match checkpoint::verify(&text, &keys) {
            Ok(cp) => checkpoints.push(cp),
            Err(r) => {
                println!("checkpoint {} refused: {r}", f.display());
                return Ok(ExitCode::from(1));
            }
        }
    }
    match mandate::audit::verify_log(store.as_ref(), kek.audit_chain_key(), &checkpoints).await? {
        Ok(report) => {
            println!("audit log intact: {} entries", report.entries);
            if report.plain > 0 {
                println!(
                    "  entries 1-{} were written before the chain was keyed: they are sealed by \
                     entry {}, not keyed themselves (see docs/audit.md)",
                    report.plain,
                    report.plain + 1
                );
            }
            for cp in &checkpoints {
                println!(
                    "  matches the checkpoint {} at entry {}",
                    cp.describe(),
                    cp.seq
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            println!("audit log BROKEN: {b}");
            Ok(ExitCode::from(1))
        }
    }
}

async fn sign(
    config: &Config,
    store: &mandate::store::SharedStore,
    kek: &Kek,
) -> anyhow::Result<ExitCode> {
    let ring = Keyring::from_rows(&store.load_keys().await?, kek)
        .context("no usable signing key (start the server once to create one)")?;
    let issuer = config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    let (cp, jws) = checkpoint::sign_head(
        store.as_ref(),
        kek.audit_chain_key(),
        &ring,
        &issuer,
        SystemClock.now(),
    )
    .await?;
    println!("{jws}");
    eprintln!("checkpoint of entry {} {}", cp.seq, cp.describe());
    Ok(ExitCode::SUCCESS)
}

fn read_small(path: &Path, max: u64) -> anyhow::Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > max {
        anyhow::bail!("{} is larger than {max} bytes", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
