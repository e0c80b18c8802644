//! The MCP end-to-end suite as a cargo test target (`required-features = ["mcp-clients"]`, so
//! plain `cargo test` needs no Node or Python): runs `tests/mcp/run.sh` against the `mandate`
//! binary cargo built for this test. The suite itself (a TypeScript MCP server on the official SDK
//! protected by mandate, the official MCP SDK clients signing in, the MCP conformance tool's
//! authorization-server scenarios, a CORS preflight) is described in docs/mcp.md; `scripts/test`
//! installs what it needs and turns the feature on. `MCP_MODES=preregistered,dcr,cimd` adds the
//! registration modes that are off by default.

use std::process::Command;

#[test]
fn official_mcp_sdk_clients_and_conformance_tool_sign_in_through_mandate() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/run.sh");
    let status = Command::new(script)
        .env("MCP_MANDATE_BIN", env!("CARGO_BIN_EXE_mandate"))
        .status();
    match status {
        Ok(s) => assert!(s.success(), "{script} failed ({s}); its output is above"),
        Err(e) => panic!("could not run {script}: {e}"),
    }
}
