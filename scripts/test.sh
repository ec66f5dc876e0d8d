#!/usr/bin/env bash
# The README's second command: set up a virtualenv, install, lint, type-check and test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Browser tests drive Debian's Chromium through Playwright (Playwright cannot download its
# own browsers here). Install it when missing.
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

# The browser tests inject axe-core (package.json) into the pages they check.
if [ ! -f node_modules/axe-core/axe.min.js ]; then
  npm ci --no-audit --no-fund --silent
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

# The wheel, installed apart from the checkout, must run the demo: checked alongside the rest.
wheel_log=$(mktemp "${TMPDIR:-/tmp}/dealbridge-wheel-check.XXXXXX.log")
bash scripts/check-wheel.sh >"$wheel_log" 2>&1 &
wheel_pid=$!

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports  # the import contract in pyproject.toml: layers only point down
.venv/bin/python -m pytest -q -n auto --dist worksteal "$@"

if ! wait "$wheel_pid"; then
  echo "FAIL: the wheel check (scripts/check-wheel.sh):"; tail -n 30 "$wheel_log"; exit 1
fi
grep -h "^wheel check:" "$wheel_log"
