#!/usr/bin/env bash
# The README's first command: set up a virtualenv and run the main job on embedded defaults
# (SQLite, local Stripe and CRM sandboxes). Arguments go to `dealbridge demo`
# (`--crm dynamics` for Dynamics 365, `--once` to print a summary and exit).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/dealbridge ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e .
fi
exec .venv/bin/dealbridge demo "$@"
