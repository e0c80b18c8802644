//! The MCP end-to-end suite as a cargo test target (`required-features = ["mcp-clients"]`, so
//! plain `cargo test` needs no Node or Python): runs `tests/mcp/run.sh` against the `mandate`
//! binary cargo built for this test, with mandate on SQLite and, when `TEST_DATABASE_URL` is set,
//! again on PostgreSQL (a fresh schema). The suite itself (a TypeScript MCP server on the official
//! SDK protected by mandate, the official MCP SDK clients signing in, the MCP conformance tool's
//! authorization-server scenarios, a CORS preflight) is described in docs/mcp.md; `scripts/test`
//! installs what it needs and turns the feature on. `MCP_MODES=preregistered,dcr,cimd` adds the
//! `cimd` registration mode, which is off by default (the default is `preregistered,dcr`).

use std::process::Command;

#[test]
fn official_mcp_sdk_clients_and_conformance_tool_sign_in_through_mandate() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/run.sh");
    let mut runs = vec![("SQLite", None)];
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        runs.push(("PostgreSQL", Some(url)));
    }
    for (i, (label, database)) in runs.into_iter().enumerate() {
        let mut cmd = Command::new(script);
        cmd.env("MCP_MANDATE_BIN", env!("CARGO_BIN_EXE_mandate"));
        if i > 0 {
            // The TypeScript was type-checked by the first run.
            cmd.env("MCP_TYPECHECK", "0");
        }
        if let Some(url) = &database {
            cmd.args(["--database", url]);
        }
        match cmd.status() {
            Ok(s) => assert!(
                s.success(),
                "{script} on {label} failed ({s}); its output is above"
            ),
            Err(e) => panic!("could not run {script}: {e}"),
        }
    }
}
