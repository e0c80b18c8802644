//! `mandate-conformance --issuer URL --client ID:SECRET --scope S --resource-server ID:SECRET
//! --audience AUD [--human USER:PASSWORD --public-client ID --redirect-uri URI --human-scope S]
//! [--agent NAME --agent-key FILE --exchange-client ID:SECRET]`: runs the conformance checks
//! and prints one line per check (PASS, FAIL or SKIP).

use std::io::Write;
use std::process::ExitCode;

use mandate_conformance::{Agent, Human, Target, run};

const USAGE: &str = "usage: mandate-conformance --issuer URL --client ID:SECRET --scope SCOPE \
--resource-server ID:SECRET --audience AUDIENCE \
[--human USER:PASSWORD --public-client ID --redirect-uri URI --human-scope \"SCOPE SCOPE\"] \
[--agent NAME --agent-key FILE --exchange-client ID:SECRET]";

fn split_credentials(flag: &str, value: &str) -> Result<(String, String), String> {
    match value.split_once(':') {
        Some((id, secret)) if !id.is_empty() => Ok((id.to_owned(), secret.to_owned())),
        _ => Err(format!("{flag} expects ID:SECRET, got {value:?}")),
    }
}

/// Flags that must come together: all present, or none.
fn group<const N: usize>(
    names: [&str; N],
    values: [Option<String>; N],
) -> Result<Option<[String; N]>, String> {
    let given = values.iter().filter(|v| v.is_some()).count();
    if given == 0 {
        return Ok(None);
    }
    if given < N {
        let missing: Vec<&str> = names
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        return Err(format!(
            "{} must be given together; missing {}\n{USAGE}",
            names.join(", "),
            missing.join(", ")
        ));
    }
    Ok(Some(values.map(Option::unwrap_or_default)))
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Target, String> {
    let mut issuer = None;
    let mut client = None;
    let mut scope = None;
    let mut rs = None;
    let mut audience = None;
    let (mut human, mut public_client, mut redirect_uri, mut human_scope) =
        (None, None, None, None);
    let (mut agent, mut agent_key, mut exchange_client) = (None, None, None);
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
            "--human" => {
                split_credentials("--human", &value)?;
                human = Some(value);
            }
            "--public-client" => public_client = Some(value),
            "--redirect-uri" => redirect_uri = Some(value),
            "--human-scope" => human_scope = Some(value),
            "--agent" => agent = Some(value),
            "--agent-key" => agent_key = Some(value),
            "--exchange-client" => {
                split_credentials("--exchange-client", &value)?;
                exchange_client = Some(value);
            }
            _ => return Err(format!("unknown argument {name:?}\n{USAGE}")),
        }
    }
    let missing = |what: &str| format!("missing {what}\n{USAGE}");
    let (client_id, client_secret) = client.ok_or_else(|| missing("--client"))?;
    let (resource_server_id, resource_server_secret) =
        rs.ok_or_else(|| missing("--resource-server"))?;
    let human = group(
        [
            "--human",
            "--public-client",
            "--redirect-uri",
            "--human-scope",
        ],
        [human, public_client, redirect_uri, human_scope],
    )?
    .map(|[user, client_id, redirect_uri, scope]| {
        let (username, password) = split_credentials("--human", &user)?;
        Ok::<_, String>(Human {
            username,
            password,
            client_id,
            redirect_uri,
            scope,
        })
    })
    .transpose()?;
    let agent = group(
        ["--agent", "--agent-key", "--exchange-client"],
        [agent, agent_key, exchange_client],
    )?
    .map(|[name, key_file, exchange]| {
        let bytes =
            std::fs::read(&key_file).map_err(|e| format!("--agent-key {key_file:?}: {e}"))?;
        let private_key_pkcs8_der = Agent::key_from_pem_or_der(&bytes)
            .map_err(|e| format!("--agent-key {key_file:?}: {e}"))?;
        let (exchange_client_id, exchange_client_secret) =
            split_credentials("--exchange-client", &exchange)?;
        Ok::<_, String>(Agent {
            name,
            private_key_pkcs8_der,
            exchange_client_id,
            exchange_client_secret,
        })
    })
    .transpose()?;
    Ok(Target {
        issuer: issuer.ok_or_else(|| missing("--issuer"))?,
        client_id,
        client_secret,
        scope: scope.ok_or_else(|| missing("--scope"))?,
        resource_server_id,
        resource_server_secret,
        audience: audience.ok_or_else(|| missing("--audience"))?,
        human,
        agent,
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
    let failed = checks.iter().filter(|c| c.failed()).count();
    let skipped = checks.iter().filter(|c| c.skipped).count();
    let passed = checks.iter().filter(|c| c.passed).count();
    // Write errors (e.g. a closed pipe) are ignored: the exit code still tells the result.
    let mut out = std::io::stdout().lock();
    for c in &checks {
        let _ = if c.passed {
            writeln!(out, "PASS {}", c.id)
        } else if c.skipped {
            writeln!(out, "SKIP {} — {}", c.id, c.detail)
        } else {
            writeln!(out, "FAIL {} — {}", c.id, c.detail)
        };
    }
    let _ = writeln!(
        out,
        "{} checks, {passed} passed, {failed} failed, {skipped} skipped",
        checks.len(),
    );
    let _ = out.flush();
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
