//! `mandate-conformance --issuer URL --client ID:SECRET --scope S --resource-server ID:SECRET
//! --audience AUD`: runs the conformance checks and prints one line per check.

use std::io::Write;
use std::process::ExitCode;

use mandate_conformance::{Target, run};

const USAGE: &str = "usage: mandate-conformance --issuer URL --client ID:SECRET --scope SCOPE \
--resource-server ID:SECRET --audience AUDIENCE";

fn split_credentials(flag: &str, value: &str) -> Result<(String, String), String> {
    match value.split_once(':') {
        Some((id, secret)) if !id.is_empty() => Ok((id.to_owned(), secret.to_owned())),
        _ => Err(format!("{flag} expects ID:SECRET, got {value:?}")),
    }
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Target, String> {
    let mut issuer = None;
    let mut client = None;
    let mut scope = None;
    let mut rs = None;
    let mut audience = None;
    let mut args = args;
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_owned());
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (flag.clone(), None),
        };
        let value = match inline {
            Some(v) => v,
            None => args
                .next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?,
        };
        match name.as_str() {
            "--issuer" => issuer = Some(value.trim_end_matches('/').to_owned()),
            "--client" => client = Some(split_credentials("--client", &value)?),
            "--scope" => scope = Some(value),
            "--resource-server" => rs = Some(split_credentials("--resource-server", &value)?),
            "--audience" => audience = Some(value),
            _ => return Err(format!("unknown argument {name:?}\n{USAGE}")),
        }
    }
    let missing = |what: &str| format!("missing {what}\n{USAGE}");
    let (client_id, client_secret) = client.ok_or_else(|| missing("--client"))?;
    let (resource_server_id, resource_server_secret) =
        rs.ok_or_else(|| missing("--resource-server"))?;
    Ok(Target {
        issuer: issuer.ok_or_else(|| missing("--issuer"))?,
        client_id,
        client_secret,
        scope: scope.ok_or_else(|| missing("--scope"))?,
        resource_server_id,
        resource_server_secret,
        audience: audience.ok_or_else(|| missing("--audience"))?,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let target = match parse_args(std::env::args().skip(1)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let checks = run(&target).await;
    let failed = checks.iter().filter(|c| !c.passed).count();
    // Write errors (e.g. a closed pipe) are ignored: the exit code still tells the result.
    let mut out = std::io::stdout().lock();
    for c in &checks {
        let _ = if c.passed {
            writeln!(out, "PASS {}", c.id)
        } else {
            writeln!(out, "FAIL {} — {}", c.id, c.detail)
        };
    }
    let _ = writeln!(
        out,
        "{} checks, {} passed, {failed} failed",
        checks.len(),
        checks.len() - failed
    );
    let _ = out.flush();
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
