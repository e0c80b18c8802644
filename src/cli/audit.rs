//! `mandate audit verify|checkpoint|export`: check the keyed chain (and signed checkpoints kept
//! outside the database) in the database or in an export, sign a checkpoint of the head, or
//! export the entries for a SIEM. Verifying and signing need the server's KEK (the chain is keyed
//! by it); exporting does not. See `docs/audit.md`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use mandate::audit::Report;
use mandate::audit::checkpoint::{self, Checkpoint, CheckpointKeys};
use mandate::audit::export::{self, Since};
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
        /// Verify an export (`mandate audit export`) instead of the database: FILE, or `-` for
        /// standard input. Reads no database; checkpoints are then checked against the keys of
        /// --jwks only.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print a signed checkpoint of the current head (a compact JWS) to keep elsewhere.
    Checkpoint,
    /// Write the entries to stdout with their chain hashes, one JSON object per line, oldest
    /// first, up to the head as it was when the export started. Needs no KEK.
    Export {
        /// Only the entries after this entry number, or from the first entry stamped at or
        /// after this RFC 3339 time (to the second) on.
        #[arg(long, value_name = "SEQ|TIME")]
        since: Option<Since>,
        /// The output format: JSON Lines.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
    },
}

/// What `mandate audit export` writes.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// One JSON object per line (JSON Lines).
    Jsonl,
}

pub async fn run(config: Config, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let (checkpoints, jwks) = match command {
        AuditCommand::Export { since, format } => {
            let store = open_store(&config).await?;
            let code = export_log(&store, since.unwrap_or(Since::AfterSeq(0)), format).await;
            store.close().await;
            return code;
        }
        AuditCommand::Verify {
            checkpoints,
            jwks,
            file: Some(file),
        } => return verify_file(&config, &file, &checkpoints, &jwks),
        AuditCommand::Verify {
            checkpoints,
            jwks,
            file: None,
        } => (Some(checkpoints), jwks),
        AuditCommand::Checkpoint => (None, Vec::new()),
    };
    let kek = existing_kek(&config)?;
    let store = open_store(&config).await?;
    let code = match checkpoints {
        Some(checkpoints) => verify(&store, &kek, &checkpoints, &jwks).await,
        None => sign(&config, &store, &kek).await,
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
    add_jwks(&mut keys, jwks_files)?;
    let Some(checkpoints) = read_checkpoints(checkpoint_files, &keys)? else {
        return Ok(ExitCode::from(1));
    };
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

/// Adds the keys of the JWK Sets in `files` to `keys`.
fn add_jwks(keys: &mut CheckpointKeys, files: &[PathBuf]) -> anyhow::Result<()> {
    for f in files {
        let text = read_small(f, 1024 * 1024)?;
        keys.add_jwks(&text)
            .with_context(|| format!("{} is not a JWK Set", f.display()))?;
    }
    Ok(())
}

/// The checkpoints in `files`, their signatures checked against `keys`; `None` once one is
/// refused, after saying which and why.
fn read_checkpoints(
    files: &[PathBuf],
    keys: &CheckpointKeys,
) -> anyhow::Result<Option<Vec<Checkpoint>>> {
    let mut checkpoints = Vec::new();
    for f in files {
        let text = read_small(f, checkpoint::MAX_LEN as u64)?;
        match checkpoint::verify(&text, keys) {
            Ok(cp) => checkpoints.push(cp),
            Err(r) => {
                println!("checkpoint {} refused: {r}", f.display());
                return Ok(None);
            }
        }
    }
    Ok(Some(checkpoints))
}

/// `mandate audit verify --file`: an export, without the database.
fn verify_file(
    config: &Config,
    file: &Path,
    checkpoint_files: &[PathBuf],
    jwks_files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let kek = existing_kek(config)?;
    if !checkpoint_files.is_empty() && jwks_files.is_empty() {
        anyhow::bail!(
            "--checkpoint with --file needs --jwks FILE, the JWK Set kept with the checkpoints: \
             verifying a file reads no database, so it has no other keys to check their \
             signatures with"
        );
    }
    let mut keys = CheckpointKeys::default();
    add_jwks(&mut keys, jwks_files)?;
    let Some(checkpoints) = read_checkpoints(checkpoint_files, &keys)? else {
        return Ok(ExitCode::from(1));
    };
    let input: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f =
            std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let name = if file == Path::new("-") {
        "standard input".to_string()
    } else {
        file.display().to_string()
    };
    let result = export::verify_jsonl(input, kek.audit_chain_key(), &checkpoints)
        .with_context(|| format!("cannot read {name}"))?;
    match result {
        Ok(report) => {
            print_export_report(&report, &checkpoints);
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            println!("audit export BROKEN: {b}");
            Ok(ExitCode::from(1))
        }
    }
}

fn print_export_report(report: &Report, checkpoints: &[Checkpoint]) {
    let (first, last) = (report.first, report.first + report.entries - 1);
    println!(
        "audit export intact: entries {first}-{last} ({} entries)",
        report.entries
    );
    if first > 1 {
        println!(
            "  entries before {first} are not in the export and were not verified: entry \
             {first}'s link to entry {} (its prev_hash) is taken on trust",
            first - 1
        );
    }
    if report.plain > 0 {
        println!(
            "  entries {first}-{} were written before the chain was keyed: they are sealed by \
             entry {}, not keyed themselves (see docs/audit.md)",
            first + report.plain - 1,
            first + report.plain
        );
    }
    for cp in checkpoints {
        if cp.seq < first - 1 {
            println!(
                "  the checkpoint {} at entry {} is before the export: not checked",
                cp.describe(),
                cp.seq
            );
        } else if cp.seq == first - 1 {
            println!(
                "  entry {first} links to the checkpoint {} at entry {}",
                cp.describe(),
                cp.seq
            );
        } else {
            println!(
                "  matches the checkpoint {} at entry {}",
                cp.describe(),
                cp.seq
            );
        }
    }
    if !checkpoints.iter().any(|cp| cp.seq == last) {
        println!(
            "  the export ends at entry {last}: entries removed from its end would show only \
             against a checkpoint of a later entry (--checkpoint)"
        );
    }
}

/// `mandate audit export`: no key is read, none is written; the entries hold none.
async fn export_log(
    store: &mandate::store::SharedStore,
    since: Since,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let Format::Jsonl = format;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let done = export::export_jsonl(store.as_ref(), since, &mut out).await?;
    match done.range {
        Some((first, last)) => {
            eprintln!("exported entries {first}-{last} ({} entries)", done.entries)
        }
        None => eprintln!("no entries to export"),
    }
    Ok(ExitCode::SUCCESS)
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
