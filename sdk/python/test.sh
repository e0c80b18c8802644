#!/usr/bin/env bash
# Runs the Python SDK's suite against a real mandate: MANDATE_BIN=/path/to/mandate sdk/python/test.sh [pytest args]
#
# Makes sdk/python/.venv idempotently: it is rebuilt only when requirements-test.txt or
# pyproject.toml changed (a stamp holds their hash); the package itself (with its extras
# fastapi and mcp, whose pinned versions are in requirements-test.txt) is reinstalled on every
# run, from this folder, as `pip install ./sdk/python` would. Exits with pytest's status.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
want=$(cat requirements-test.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.mandate-lock 2>/dev/null || true)" != "$want" ]; then
  echo "sdk/python: python venv with requirements-test.txt" >&2
  rm -rf .venv
  "$PYTHON" -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt >&2
  echo "$want" > .venv/.mandate-lock
fi
# The package with its extras. Every dependency is already there at its pinned version, so pip
# changes nothing else; the build backend is the pinned one in the venv (no build isolation).
.venv/bin/pip uninstall --quiet --yes mandate-sdk >/dev/null 2>&1 || true
.venv/bin/pip install --quiet --disable-pip-version-check --no-build-isolation '.[fastapi,mcp]' >&2
.venv/bin/pip check >&2
# The API reference, from the docstrings (pdoc): sdk/python/api-docs/index.html. Built on every
# run so a docstring that breaks it fails here.
rm -rf api-docs
.venv/bin/python -m pdoc --docformat restructuredtext --no-show-source -o api-docs \
  mandate mandate.resource mandate.ssf mandate.fastapi mandate.starlette mandate.mcp >&2
test -s api-docs/mandate.html
export MANDATE_BIN=${MANDATE_BIN:-/work/bin/mandate}
exec .venv/bin/python -m pytest -q "$@"
