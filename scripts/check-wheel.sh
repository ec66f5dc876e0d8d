#!/usr/bin/env bash
# Build the wheel, install it in a fresh virtualenv and run `dealbridge demo --once` from an
# empty temporary folder: what an admin gets from `pip install`, checked apart from the
# checkout (no mappings/ or sandboxes/ beside it). Usage: bash scripts/check-wheel.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-.venv/bin/python}"
work=$(mktemp -d "${TMPDIR:-/tmp}/dealbridge-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$python" -m pip wheel -q --no-deps --wheel-dir "$work/dist" . >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --no-compile "$work"/dist/dealbridge-*.whl
mkdir "$work/empty"
cd "$work/empty"
summary=$(env -u PYTHONPATH timeout 300 "$work/venv/bin/dealbridge" demo --once)
"$work/venv/bin/python" - "$summary" <<'PY'
import json, sys
summary = json.loads(sys.argv[1])
deals = summary["deals"]
assert any(d["subscription"] for d in deals), "the demo activated no subscription"
print(f"wheel check: dealbridge demo --once from an empty folder reported {len(deals)} deals")
PY
