#!/usr/bin/env bash
# Installs what the MCP suite (tests/mcp) needs, idempotently, and fast when it is there: the npm
# packages of package-lock.json (`npm ci` into tests/mcp/node_modules) and the Python packages of
# requirements.txt (a venv at tests/mcp/.venv). Each install is redone only when its lock file
# changed (a stamp holds the lock's hash). Needs node >= 20 with npm, and python3 with venv.
set -euo pipefail
cd "$(dirname "$0")"

hash_of() { sha256sum "$1" | cut -d' ' -f1; }

want=$(hash_of package-lock.json)
if [ "$(cat node_modules/.mandate-lock 2>/dev/null || true)" != "$want" ]; then
  echo "tests/mcp: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > node_modules/.mandate-lock
fi

want=$(hash_of requirements.txt)
if [ "$(cat .venv/.mandate-lock 2>/dev/null || true)" != "$want" ]; then
  echo "tests/mcp: python venv with requirements.txt" >&2
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt >&2
  echo "$want" > .venv/.mandate-lock
fi
