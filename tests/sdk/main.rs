//! The SDK suites as a cargo test target (`required-features = ["sdk-suites"]`, so plain
//! `cargo test` needs no Node or Python): each SDK's own test suite — pytest for the Python SDK
//! (`sdk/python`), node's test runner for the TypeScript SDK (`sdk/typescript`) — runs against
//! the `mandate` binary cargo built for this test. Each suite starts its own mandate servers
//! (SQLite, port 0) and installs what it needs itself (`sdk/*/test.sh`: a venv, `npm ci`, each
//! redone only when its lock file changed). `scripts/test` turns the feature on. With the `tpm`
//! feature too (as `scripts/test` has it), the suites also get the `mandate-agent` command line
//! (`MANDATE_AGENT_BIN`, built if missing) for both SDKs' live TPM tests against swtpm.

use std::path::Path;
use std::process::Command;

#[cfg(feature = "tpm")]
#[path = "../common/agent_cli.rs"]
mod agent_cli;

fn run_suite(sdk: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk").join(sdk);
    let script = dir.join("test.sh");
    let mut cmd = Command::new(&script);
    cmd.current_dir(&dir)
        .env("MANDATE_BIN", env!("CARGO_BIN_EXE_mandate"));
    #[cfg(feature = "tpm")]
    cmd.env("MANDATE_AGENT_BIN", agent_cli::agent_cli());
    let status = cmd.status();
    match status {
        Ok(s) => assert!(
            s.success(),
            "{} failed ({s}); its output is above",
            script.display()
        ),
        Err(e) => panic!("could not run {}: {e}", script.display()),
    }
}

#[test]
fn python_sdk_suite_passes_against_a_real_mandate() {
    run_suite("python");
}

#[test]
fn typescript_sdk_suite_passes_against_a_real_mandate() {
    run_suite("typescript");
}
