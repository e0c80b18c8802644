//! `mandate-agent`: the agent side on the command line, through this crate's SDK. It talks to a
//! running server over HTTP and needs no config file (the operator's side is `mandate agents`).
//! Built with `--features cli`; `--tpm` also needs `--features tpm` (tss-esapi, libtss2).

use clap::Parser;

use std::path::PathBuf;
use std::process::ExitCode;

use mandate_agent::{AgentSession, Attester, Client, SoftwareKey};
use serde_json::{Value, json};

/// The TPM and how to use it.
#[derive(clap::Args)]
struct TpmArgs {
    /// A TCTI: `swtpm:host=127.0.0.1,port=2321`, `device:/dev/tpmrm0`.
    #[arg(long)]
    tpm: Option<String>,
    /// Where the TPM attestation key is kept (`ak.json`).
    #[arg(long, default_value = ".mandate-agent")]
    state_dir: PathBuf,
    /// Which endorsement key: rsa2048, p256 or p384.
    #[arg(long, default_value = "rsa2048")]
    ek: String,
    /// SHA-256 PCRs to quote.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,7")]
    pcrs: Vec<u8>,
}

/// The server, the agent, and how it proves itself.
#[derive(clap::Args)]
struct AgentArgs {
    /// The server's issuer URL.
    #[arg(long)]
    server: String,
    /// The agent's name (`agent:<name>` in tokens).
    #[arg(long)]
    name: String,
    /// Prove with the TPM (--tpm) ...
    #[command(flatten)]
    tpm: TpmArgs,
    /// ... or with its registered P-256 private key (PEM).
    #[arg(long, conflicts_with = "tpm")]
    key: Option<PathBuf>,
    /// The OAuth client the agent uses at the token endpoint.
    #[arg(long, default_value = "agent-sdk")]
    client_id: String,
    /// Its secret (none for a public client).
    #[arg(long, env = "MANDATE_AGENT_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
}

#[derive(Parser)]
#[command(
    name = "mandate-agent",
    version,
    about = "The agent side of mandate: enroll a TPM, attest, and act for a human (RFC 8693)"
)]
struct Cli {
    #[command(subcommand)]
    command: AgentCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[derive(clap::Subcommand)]
enum AgentCommand {
    /// Zero-touch enrollment: EK certificate + AK, answered by TPM2_ActivateCredential.
    Enroll {
        #[command(flatten)]
        args: AgentArgs,
        /// PEM file of the CA certificates between the EK certificate and the server's EK root.
        #[arg(long)]
        ek_chain: Option<PathBuf>,
    },
    /// Write the TPM attestation key (TPM2B_PUBLIC), for the operator's `mandate agents enroll --ak-public`.
    AkPublic {
        #[command(flatten)]
        tpm: TpmArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Attest and print the agent token; with --subject-token, also exchange it (RFC 8693) for
    /// a token this agent acts with, and print that.
    Attest {
        #[command(flatten)]
        args: AgentArgs,
        /// A file holding the token to act for (a human's, or one delegated to this agent).
        #[arg(long)]
        subject_token: Option<PathBuf>,
        /// Space-separated scopes to narrow to.
        #[arg(long)]
        scope: Option<String>,
        /// Audiences to narrow to (repeatable).
        #[arg(long)]
        audience: Vec<String>,
    },
}

async fn run(command: AgentCommand) -> anyhow::Result<ExitCode> {
    match command {
        AgentCommand::Enroll { args, ek_chain } => {
            let chain = match &ek_chain {
                Some(p) => mandate_agent::pem_certificates(
                    &std::fs::read_to_string(p)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?,
                )?,
                None => Vec::new(),
            };
            let client = client(&args)?;
            let tpm = open_tpm(&args.tpm)?;
            let out = tpm::enroll(&tpm, &client, &args.name, &chain).await?;
            println!("{out}");
        }
        AgentCommand::AkPublic { tpm, out } => {
            let tpm = open_tpm(&tpm)?;
            let ak = tpm::ak_public(&tpm).await?;
            std::fs::write(&out, ak)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
            println!("wrote {}", out.display());
        }
        AgentCommand::Attest {
            args,
            subject_token,
            scope,
            audience,
        } => {
            let client = client(&args)?;
            let subject = match &subject_token {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?
                        .trim()
                        .to_string(),
                ),
                None => None,
            };
            let out = if let Some(key) = &args.key {
                let pem = std::fs::read_to_string(key)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key.display()))?;
                let session = AgentSession::new(
                    client,
                    &args.server,
                    &args.name,
                    SoftwareKey::from_pem(&pem)?,
                );
                attest_and_exchange(&session, subject.as_deref(), scope.as_deref(), &audience)
                    .await?
            } else {
                let tpm = open_tpm(&args.tpm)?;
                tpm::attest(
                    tpm,
                    client,
                    &args,
                    subject.as_deref(),
                    scope.as_deref(),
                    &audience,
                )
                .await?
            };
            println!("{out}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn client(args: &AgentArgs) -> anyhow::Result<Client> {
    Ok(Client::new(
        &args.server,
        &args.client_id,
        args.client_secret.as_deref(),
    )?)
}

async fn attest_and_exchange<A: Attester>(
    session: &AgentSession<A>,
    subject: Option<&str>,
    scope: Option<&str>,
    audience: &[String],
) -> anyhow::Result<Value> {
    let agent_token = session.token().await?;
    let delegated = match subject {
        Some(subject) => {
            let audience: Vec<&str> = audience.iter().map(String::as_str).collect();
            Some(serde_json::to_value(
                session.act_for(subject, scope, &audience).await?,
            )?)
        }
        None => None,
    };
    Ok(match delegated {
        Some(d) => json!({ "agent_token": agent_token, "delegated": d }),
        None => json!({ "agent_token": agent_token }),
    })
}

fn open_tpm(args: &TpmArgs) -> anyhow::Result<tpm::Handle> {
    let tcti = args
        .tpm
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("give --tpm TCTI (or --key for a software agent)"))?;
    tpm::open(tcti, args)
}

#[cfg(feature = "tpm")]
mod tpm {
    use mandate_agent::tpm::{EkKind, TpmAttester, TpmConfig};

    use super::*;

    pub type Handle = TpmAttester;

    pub fn open(tcti: &str, args: &TpmArgs) -> anyhow::Result<Handle> {
        Ok(TpmAttester::open(TpmConfig {
            tcti: tcti.to_string(),
            state_dir: args.state_dir.clone(),
            ek: args.ek.parse::<EkKind>()?,
            pcrs: args.pcrs.clone(),
        })?)
    }

    pub async fn enroll(
        tpm: &Handle,
        client: &Client,
        name: &str,
        chain: &[Vec<u8>],
    ) -> anyhow::Result<Value> {
        Ok(tpm.enroll(client, name, chain).await?)
    }

    pub async fn ak_public(tpm: &Handle) -> anyhow::Result<Vec<u8>> {
        Ok(tpm.ak_public().await?)
    }

    pub async fn attest(
        tpm: Handle,
        client: Client,
        args: &AgentArgs,
        subject: Option<&str>,
        scope: Option<&str>,
        audience: &[String],
    ) -> anyhow::Result<Value> {
        let session = AgentSession::new(client, &args.server, &args.name, tpm);
        attest_and_exchange(&session, subject, scope, audience).await
    }
}

#[cfg(not(feature = "tpm"))]
mod tpm {
    use super::*;

    pub enum Handle {}

    const NO_TPM: &str = "this mandate-agent was built without TPM support: rebuild with `cargo build --release -p mandate-agent --features cli,tpm` (needs libtss2-dev)";

    pub fn open(_tcti: &str, _args: &TpmArgs) -> anyhow::Result<Handle> {
        anyhow::bail!(NO_TPM)
    }

    pub async fn enroll(
        tpm: &Handle,
        _client: &Client,
        _name: &str,
        _chain: &[Vec<u8>],
    ) -> anyhow::Result<Value> {
        match *tpm {}
    }

    pub async fn ak_public(tpm: &Handle) -> anyhow::Result<Vec<u8>> {
        match *tpm {}
    }

    pub async fn attest(
        tpm: Handle,
        _client: Client,
        _args: &AgentArgs,
        _subject: Option<&str>,
        _scope: Option<&str>,
        _audience: &[String],
    ) -> anyhow::Result<Value> {
        match tpm {}
    }
}
