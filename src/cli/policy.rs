//! `mandate policy check|test`: validate policies, and simulate a change before rollout.

use std::process::ExitCode;

use mandate::clock::{Clock, SystemClock};
use mandate::config::Config;
use mandate::policy::cases::{self, CaseFile};

use crate::PolicyCommand;

pub fn run(config: &Config, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    let policies = mandate::load_policies(config)?;
    let loaded = policies.current();
    match command {
        PolicyCommand::Check => {
            if loaded.files.is_empty() {
                println!(
                    "no policy files configured: the default policy applies (version {})",
                    loaded.version
                );
            } else {
                println!(
                    "policies valid: {} (version {})",
                    loaded.files.join(", "),
                    loaded.version
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test { cases } => {
            let text = std::fs::read_to_string(&cases)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", cases.display()))?;
            let file: CaseFile = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("invalid cases file {}: {e}", cases.display()))?;
            let (lines, ok) = cases::run(&loaded, &file, SystemClock.now());
            for l in &lines {
                println!("{l}");
            }
            let failed = lines.iter().filter(|l| l.starts_with("FAIL")).count();
            println!(
                "{} cases, {} failed (policy version {})",
                lines.len(),
                failed,
                loaded.version
            );
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
