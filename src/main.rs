//! The `mandate` command: a thin CLI over the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use mandate::clock::{Clock, SystemClock};
use mandate::config::{Config, LogFormat, TracingConfig};
use mandate::jose::KeyService;
use mandate::telemetry::Telemetry;
use mandate::{App, open_store, resolve_kek};

/// mimalloc instead of glibc's malloc: glibc's took a tenth of the server's CPU under load
/// (`malloc_consolidate`, `_int_free`), and its per-thread arenas let the resident set grow from
/// one run to the next (issue 19).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

use cli::{agents, audit, clients, policy, sessions};

#[derive(Parser)]
#[command(
    name = "mandate",
    version,
    about = "OAuth 2.0 authorization server for AI agents"
)]
struct Cli {
    /// Config file (TOML). Every key can be overridden by MANDATE_<KEY>.
    #[arg(long, global = true, default_value = "mandate.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Create the database if needed and apply migrations.
    Migrate,
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Enrolled agents: enroll a TPM agent by its attestation key, list them.
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Clients: list the configured and the registered ones, remove a registered one.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Tokens: revoke one by its `jti`.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Delegated sessions: every live token of a human, as a tree.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Cedar policies: validate them, or simulate a table of cases.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit log: verify it (or an export of it), sign a checkpoint of its head to keep
    /// elsewhere, or export it for a SIEM.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Rotate now: the published next key starts signing.
    Rotate,
    /// List stored keys and their state.
    List,
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// Enroll (or re-enroll) a TPM agent with its attestation key, as `tpm2_createak -u` writes it.
    Enroll {
        #[arg(long)]
        name: String,
        /// TPM2B_PUBLIC of the AK (binary, or base64 of it).
        #[arg(long)]
        ak_public: PathBuf,
        /// PCR policy, JSON `{"sha256": {"0": "hex" | ["hex", ...], ...}}`.
        #[arg(long)]
        pcr_policy: Option<PathBuf>,
    },
    /// List enrolled agents and how each attests.
    List,
    /// Disable an agent: it can no longer attest or act, and its agent tokens and every
    /// delegation it holds are revoked (audited). `enable` undoes the disabling, not the
    /// revocations.
    Disable { name: String },
    /// Enable a disabled agent again.
    Enable { name: String },
    /// Remove an agent: forget it and revoke its agent tokens and every delegation it holds.
    /// An agent declared in the config file comes back at the next start; remove it there.
    Remove { name: String },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// List every client: id, source (config or registered), name, created, last used.
    List,
    /// Remove a client that registered itself (RFC 7591) and revoke every token it holds and
    /// what derives from them (audited). Configured clients are removed from the config.
    Remove {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Revoke one token (an access, refresh or agent token) by the `jti` the audit log names,
    /// and every token derived from it.
    Revoke {
        #[arg(allow_hyphen_values = true)]
        jti: String,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// List the live sessions of a user: who acts for them, with which scopes, until when.
    List {
        #[arg(long)]
        user: String,
    },
    /// Revoke a session and every token derived from it.
    Revoke {
        /// The session id (`sid`); one made before ids were time-ordered may start with `-`.
        #[arg(allow_hyphen_values = true)]
        sid: String,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate the configured policy files against the schema.
    Check,
    /// Run a table of cases (TOML) against the configured policies.
    Test { cases: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The config is read before logging starts, since it says how to log; what reading it has
    // to say is logged once logging has started.
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config="));
    let missing = !explicit && !cli.config.exists();
    let config = load_config(&cli.config, missing);
    let format = match &config {
        Ok(c) => c.log_format,
        Err(_) => LogFormat::Text,
    };
    // Only the server exports spans; a CLI command's would be noise.
    let serving = matches!(cli.command, None | Some(Command::Serve));
    let tracing = match &config {
        Ok(c) if serving => Some(&c.tracing),
        _ => None,
    };
    let telemetry = start_logging(format, tracing);
    if missing {
        tracing::warn!(
            "{} not found; using built-in defaults",
            cli.config.display()
        );
    }
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    };
    if let Some(t) = telemetry {
        t.shutdown();
    }
    code
}

/// Log lines go to stderr, filtered by `MANDATE_LOG`: as text (coloured only for a person at a
/// terminal, so a log file or a collector gets no escapes) or as one JSON object per line, with
/// the fields of the span they were logged in (a request's id, see `http::request_id`). With
/// `[tracing] otlp_endpoint`, spans also go to the collector (`mandate::telemetry`), filtered
/// apart from the log.
fn start_logging(format: LogFormat, tracing: Option<&TracingConfig>) -> Option<Telemetry> {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MANDATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    };
    let (traces, telemetry) = match tracing.map(mandate::telemetry::start) {
        Some(Ok(Some((layer, telemetry)))) => (Some(layer), Some(telemetry)),
        Some(Err(e)) => {
            eprintln!("warning: traces are not exported: {e}");
            (None, None)
        }
        _ => (None, None),
    };
    tracing_subscriber::registry().with(log).with(traces).init();
    telemetry
}

/// The config at `path`, or the built-in defaults when no `--config` was given and `path` is
/// `missing`.
fn load_config(path: &Path, missing: bool) -> anyhow::Result<Config> {
    let env = std::env::vars();
    if missing {
        return Ok(Config::from_toml("", "(defaults)", env)?);
    }
    Ok(Config::load(path, env)?)
}

async fn run(command: Option<Command>, config: Config) -> anyhow::Result<ExitCode> {
    let command = command.unwrap_or(Command::Serve);
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            open_store(&config).await?.close().await;
            println!("database is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { command } => keys(config, command).await,
        Command::Agents { command } => agents::run(config, command).await,
        Command::Clients { command } => clients::run(config, command).await,
        Command::Tokens { command } => agents::tokens(config, command).await,
        Command::Sessions { command } => sessions::run(config, command).await,
        Command::Policy { command } => policy::run(&config, command),
        Command::Audit { command } => audit::run(config, command).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (key `listen`): {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let metrics =
        match &config.metrics.listen {
            Some(m) => Some(tokio::net::TcpListener::bind(m).await.map_err(|e| {
                anyhow::anyhow!("cannot listen on {m} (key `metrics.listen`): {e}")
            })?),
            None => None,
        };
    let mut app = App::build(config, addr).await?;
    tracing::info!(issuer = app.issuer(), "mandate started");
    if let Some(m) = metrics {
        // Before the `listening on` line, which tells a supervisor the server is up.
        println!("metrics on http://{}/metrics", m.local_addr()?);
        app = app.with_metrics(m);
    }
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;
    app.run(listener, shutdown_signal()).await?;
    tracing::info!("shut down cleanly");
    Ok(ExitCode::SUCCESS)
}

async fn keys(config: Config, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let kek = resolve_kek(&config)?;
    let ttl = config
        .tokens
        .access_token_ttl
        .max(config.tokens.agent_token_ttl)
        .as_secs() as i64
        + 300;
    let clock = Arc::new(SystemClock);
    let policies = Arc::new(mandate::load_policies(&config)?);
    let service = KeyService::start(
        store.clone(),
        kek,
        clock.clone(),
        config.keys.rotation_interval.as_secs() as i64,
        ttl,
        mandate::policy_version(&policies),
    )
    .await?;
    match command {
        KeysCommand::Rotate => {
            service.rotate_now().await?;
            println!("rotated; now signing with {}", service.ring().signing_kid());
        }
        KeysCommand::List => {
            let now = clock.now();
            for k in store.load_keys().await? {
                let until = k
                    .publish_until
                    .map(|t| format!(" published for {}s more", t - now))
                    .unwrap_or_default();
                println!("{}  {}{}", k.kid, k.state.as_str(), until);
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
