#!/usr/bin/env bash
# Build the wheel, install it in a fresh virtualenv and, from an empty temporary folder, run
# `dealbridge demo --once` for both CRMs and ask `dealbridge sandbox dynamics` for accounts
# with an msal token: what an admin gets from `pip install`, checked apart from the checkout
# (no mappings/ or sandboxes/ beside it). Usage: bash scripts/check-wheel.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-.venv/bin/python}"
work=$(mktemp -d "${TMPDIR:-/tmp}/dealbridge-wheel.XXXXXX")
sandbox_pid=""
cleanup() {
  if [ -n "$sandbox_pid" ]; then kill "$sandbox_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
"$python" -m pip wheel -q --no-deps --wheel-dir "$work/dist" . >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --no-compile "$work"/dist/dealbridge-*.whl
mkdir "$work/empty"
cd "$work/empty"

for crm in salesforce dynamics; do
  summary=$(env -u PYTHONPATH timeout 300 "$work/venv/bin/dealbridge" demo --crm "$crm" --once \
    --database "$work/demo-$crm.sqlite3")
  "$work/venv/bin/python" - "$crm" "$summary" <<'PY'
import json, sys
crm, summary = sys.argv[1], json.loads(sys.argv[2])
deals = summary["deals"]
customers = {d["stripe_customer"] for d in deals if d["stripe_customer"]}
assert len(customers) >= 2, f"{crm}: fewer than two Stripe customers"
assert any(d["subscription"] for d in deals), f"{crm}: the demo activated no subscription"
assert any(d["invoices"] for d in deals), f"{crm}: the demo sent no invoice"
print(f"wheel check: dealbridge demo --crm {crm} --once from an empty folder reported "
      f"{len(deals)} deals, {len(customers)} Stripe customers")
PY
done

port=$("$work/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env -u PYTHONPATH "$work/venv/bin/dealbridge" sandbox dynamics --port "$port" >"$work/sandbox.log" 2>&1 &
sandbox_pid=$!
for _ in $(seq 1 120); do
  grep -q "Press Ctrl-C" "$work/sandbox.log" 2>/dev/null && break
  sleep 0.5
done
env -u PYTHONPATH "$work/venv/bin/python" - "$port" <<'PY'
import sys
import msal
from connector.crm.salesforce.session import HttpsRewriteSession
from sandboxes.dataverse import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_ENVIRONMENT_URL, DEMO_TENANT_ID
session = HttpsRewriteSession(f"http://127.0.0.1:{sys.argv[1]}")
app = msal.ConfidentialClientApplication(
    DEMO_CLIENT_ID, client_credential=DEMO_CLIENT_SECRET, http_client=session,
    authority=f"https://login.microsoftonline.com/{DEMO_TENANT_ID}", instance_discovery=False)
token = app.acquire_token_for_client([f"{DEMO_ENVIRONMENT_URL}/.default"])["access_token"]
response = session.get(
    f"{DEMO_ENVIRONMENT_URL}/api/data/v9.2/accounts?$select=name,creditonhold",
    headers={"Authorization": f"Bearer {token}"}, timeout=30)
assert response.status_code == 200, response.text
assert response.headers["Content-Type"].startswith("application/json; odata.metadata=minimal")
accounts = response.json()["value"]
assert any(a["creditonhold"] for a in accounts), accounts
print(f"wheel check: dealbridge sandbox dynamics answered GET accounts with {len(accounts)} accounts")
PY
