#!/usr/bin/env bash
# The MCP end-to-end suite (docs/mcp.md): installs its packages if needed (install.sh), then runs
# harness.ts against the mandate binary at $MCP_MANDATE_BIN (built here when unset).
#
#   tests/mcp/run.sh                                  # preregistered and dcr clients + conformance tool
#   tests/mcp/run.sh --modes preregistered,dcr,cimd   # once CIMD has landed
#   tests/mcp/run.sh --clients python --no-conformance
#
# MCP_MODES=preregistered,dcr,cimd does what --modes does (for scripts/test and cargo test).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/install.sh"
if [ -z "${MCP_MANDATE_BIN:-}" ]; then
  (cd "$here/../.." && cargo build --quiet --locked --bin mandate)
  MCP_MANDATE_BIN="${CARGO_TARGET_DIR:-$here/../../target}/debug/mandate"
fi
# tsx runs the TypeScript without checking its types; tsc checks them first (MCP_TYPECHECK=0 skips).
if [ "${MCP_TYPECHECK:-1}" != 0 ]; then
  (cd "$here" && node_modules/.bin/tsc -p .) || { echo "tests/mcp: type errors (above)" >&2; exit 1; }
fi
exec "$here/node_modules/.bin/tsx" "$here/harness.ts" --mandate "$MCP_MANDATE_BIN" "$@"
