"""Freshness: seconds from an action in Stripe until the CRM's invoice record shows it.

    .venv/bin/python -m bench.freshness                 # both deployments
    .venv/bin/python -m bench.freshness serve           # dealbridge serve on SQLite
    .venv/bin/python -m bench.freshness procfile        # web + worker + clock on PostgreSQL

The Stripe and Salesforce sandboxes run in a child process (``--sandboxes``), so their work
does not share an interpreter with the measurement. dealbridge runs as an admin deploys it
(``bench/_deploy.py``), with the default jobs settings, and receives Stripe's webhooks from a
webhook endpoint registered in the Stripe sandbox as ``dealbridge stripe webhook-setup``
would (every event, signed with the endpoint's own secret), through the sandbox's delivery.

The child then acts on one linked customer's invoices as a finance person would, through
stripe-python over HTTP, one action at a time: ``CYCLES`` invoices, each finalized (the CRM
record must say ``open``) and then paid out of band, voided or marked uncollectible in turn
(the record must say so). After each action it polls its own Salesforce sandbox every
``POLL_SECONDS`` until the record shows the new status; the time from the action's answer to
that moment is the action's freshness. Printed: every action's seconds, p50, p90 and max.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import stripe

from bench._deploy import (
    DEPLOYMENTS,
    REPO,
    STORE_OF,
    deployment,
    deployment_env,
    free_port,
    fresh_store,
    host_sandboxes,
    link_customer,
    percentile,
    waiting_work,
)

CYCLES = int(os.environ.get("BENCH_CYCLES", "9"))  # 9 finalizations + 9 endings: 6 of each ending
POLL_SECONDS = 0.02
#: Longest one action may take to reach the CRM before the bench reports a failure.
PATIENCE_SECONDS = 60
#: Longest the bench waits for start-up's catch-up to end.
IDLE_WAIT_SECONDS = 120
ENDINGS = ("paid", "void", "uncollectible")


def _status_of(salesforce: Any, invoice_id: str) -> str | None:
    for record in salesforce.records("Stripe_Invoice__c"):
        if record.get("Stripe_Invoice_Id__c") == invoice_id:
            return str(record.get("Status__c"))
    return None


def _until(salesforce: Any, invoice_id: str, status: str) -> float:
    """Seconds until the CRM record of ``invoice_id`` says ``status``."""
    started = time.monotonic()
    while _status_of(salesforce, invoice_id) != status:
        if time.monotonic() - started > PATIENCE_SECONDS:
            raise RuntimeError(f"{invoice_id} did not reach {status!r} in the CRM")
        time.sleep(POLL_SECONDS)  # a benchmark polling for its outcome, not a test
    return time.monotonic() - started


def sandboxes() -> None:
    """Child process: host both sandboxes, create the customer, print where they are; on
    ``go``, run the actions and print their freshness; serve until stdin closes."""
    from sandboxes.stripe import StripeSandbox

    # Stripe's own delivery: each event is POSTed as soon as it is queued.
    stripe_sandbox = StripeSandbox().start(auto_deliver=True)
    salesforce, client, customer = host_sandboxes(stripe_sandbox)
    if sys.stdin.readline().strip() == "go":
        actions: list[dict[str, Any]] = []
        for n in range(CYCLES):
            client.v1.invoice_items.create(
                params={"customer": customer, "amount": 10_000 + n, "currency": "usd"}
            )
            draft = client.v1.invoices.create(
                params={
                    "customer": customer,
                    "collection_method": "send_invoice",
                    "days_until_due": 30,
                    "pending_invoice_items_behavior": "include",
                }
            )
            assert draft.id is not None
            _until(salesforce, draft.id, "draft")  # the draft's record exists first
            client.v1.invoices.finalize_invoice(draft.id)
            actions.append({"action": "finalize", "seconds": _until(salesforce, draft.id, "open")})
            ending = ENDINGS[n % len(ENDINGS)]
            if ending == "paid":
                client.v1.invoices.pay(draft.id, params={"paid_out_of_band": True})
            elif ending == "void":
                client.v1.invoices.void_invoice(draft.id)
            else:
                client.v1.invoices.mark_uncollectible(draft.id)
            actions.append({"action": ending, "seconds": _until(salesforce, draft.id, ending)})
        print(json.dumps(actions), flush=True)
    sys.stdin.read()
    stripe_sandbox.stop()
    salesforce.stop()


def run(kind: str) -> dict[str, Any]:
    from connector.demo.world import DEMO_STRIPE_KEY

    hosts = subprocess.Popen(
        [sys.executable, "-m", "bench.freshness", "--sandboxes"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert hosts.stdin is not None and hosts.stdout is not None
    try:
        where = json.loads(hosts.stdout.readline())
        with fresh_store(STORE_OF[kind]) as url:
            link_customer(url, where["account"], where["customer"])
            port = free_port()
            client = stripe.StripeClient(
                DEMO_STRIPE_KEY, base_addresses={"api": where["stripe_url"]}
            )
            endpoint = client.v1.webhook_endpoints.create(
                params={
                    "url": f"http://127.0.0.1:{port}/webhooks/stripe",
                    "enabled_events": ["*"],
                }
            )
            assert endpoint.secret is not None
            env = deployment_env(url, where["stripe_url"], where["salesforce_url"], endpoint.secret)
            # Stripe retries a failed delivery; the bench's runs have no failures to retry.
            env.pop("DEALBRIDGE__STRIPE__MAX_NETWORK_RETRIES")
            with deployment(kind, env, port):
                deadline = time.monotonic() + IDLE_WAIT_SECONDS
                time.sleep(3)  # let start-up's catch-up begin before judging "idle"
                while time.monotonic() < deadline and waiting_work(url):
                    time.sleep(0.5)  # a benchmark waiting for start-up's work to end
                hosts.stdin.write("go\n")
                hosts.stdin.flush()
                actions = json.loads(hosts.stdout.readline())
        seconds = [a["seconds"] for a in actions]
        return {
            "deployment": kind,
            "store": STORE_OF[kind],
            "actions": len(actions),
            "p50_s": round(percentile(seconds, 50), 2),
            "p90_s": round(percentile(seconds, 90), 2),
            "max_s": round(max(seconds), 2),
            "by_action": {
                name: round(
                    percentile([a["seconds"] for a in actions if a["action"] == name], 50), 2
                )
                for name in ("finalize", *ENDINGS)
            },
        }
    finally:
        hosts.stdin.close()
        hosts.wait(timeout=60)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--sandboxes"]:
        sandboxes()
        return
    kinds = argv or ["serve", "procfile"]
    for kind in kinds:
        if kind not in DEPLOYMENTS[:2]:
            raise SystemExit(f"unknown deployment {kind!r}: serve or procfile")
        print(json.dumps(run(kind)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
