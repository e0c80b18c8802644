#!/usr/bin/env bash
# The TypeScript SDK's suite: installs the locked packages (npm ci, redone only when
# package-lock.json changed: a stamp of its hash in node_modules), type-checks and builds to
# dist/, then runs node's test runner against a real mandate (MANDATE_BIN, default
# /work/bin/mandate). Exits with the tests' status.
set -euo pipefail
cd "$(dirname "$0")"

want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.mandate-lock 2>/dev/null || true)" != "$want" ]; then
  echo "sdk/typescript: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > node_modules/.mandate-lock
fi

export MANDATE_BIN="${MANDATE_BIN:-/work/bin/mandate}"
if [ ! -x "$MANDATE_BIN" ]; then
  echo "sdk/typescript: no mandate binary at $MANDATE_BIN (set MANDATE_BIN)" >&2
  exit 1
fi

rm -rf dist
npm run --silent build
npm run --silent check
# The API reference from the declarations and doc comments (api-docs/); a broken link fails.
npm run --silent docs
# The example (examples/typescript) depends on this folder (`file:`), so it is installed (its own
# lock, the same stamp rule) and type-checked against the dist/ just built; test/examples.test.ts
# runs it.
examples=../../examples/typescript
want=$(sha256sum "$examples/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$examples/node_modules/.mandate-lock" 2>/dev/null || true)" != "$want" ]; then
  echo "examples/typescript: npm ci" >&2
  (cd "$examples" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" > "$examples/node_modules/.mandate-lock"
fi
(cd "$examples" && npm run --silent check)
exec node --import tsx --test --test-concurrency=1 test/*.test.ts
