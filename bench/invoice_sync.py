"""Invoice backfill benchmark: CRM API calls and peak memory against N invoices.

    .venv/bin/python -m bench.invoice_sync                 # N = 1,000, 5,000, 10,000
    .venv/bin/python -m bench.invoice_sync 1000 20000      # other sizes

For each N the parent process starts the Stripe and Salesforce sandboxes, seeds N finalized
invoices for one linked customer (straight into the Stripe sandbox's state: see
``stripe_seed``), then runs ``backfill_invoices`` in a fresh child process on a fresh SQLite
store. The backfill reads the invoices through stripe-python over HTTP and writes them to
the Salesforce sandbox through simple-salesforce, as in production. The sandboxes live in
the parent, so the child's peak RSS (``VmHWM``: see ``bench/_memory.py``) is dealbridge's alone.

Prints, per N: Salesforce requests (all of them, logins included) against the target
ceil(N/200) + 2, the records in the CRM afterwards, the child's peak RSS and its run time.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._memory import peak_rss_mib

SIZES = (1_000, 5_000, 10_000)


def child(stripe_url: str, salesforce_url: str, customer: str, account: str, db: str) -> None:
    from connector.config import config_for_tests
    from connector.demo.world import DEMO_STRIPE_KEY
    from connector.runtime import Runtime
    from connector.secrets import Secret
    from connector.services.backfill import backfill_invoices
    from connector.store.db import Database
    from connector.store.migrate import upgrade
    from connector.store.models import CustomerLink
    from sandboxes.salesforce import DEMO_PASSWORD, DEMO_USERNAME

    url = f"sqlite:///{db}"
    upgrade(url)
    config = config_for_tests(
        {
            "database": {"url": url},
            "crm": {"kind": "salesforce", "salesforce": {"instance_url": salesforce_url}},
            "stripe": {
                "api_base": stripe_url,
                "dashboard_url": f"{stripe_url}/dashboard",
                "max_network_retries": 0,
            },
        },
        stripe_api_key=Secret(DEMO_STRIPE_KEY),
        secret_key=Secret("bench-secret-key-0123456789abcdef0123"),
        salesforce_username=DEMO_USERNAME,
        salesforce_password=Secret(DEMO_PASSWORD),
    )
    runtime = Runtime(config, db=Database(url))
    with runtime.db.session() as session:
        session.add(CustomerLink(crm_account_id=account, stripe_customer_id=customer, source="x"))
    started = time.perf_counter()
    written = backfill_invoices(runtime, customer_ids=[customer])
    seconds = time.perf_counter() - started
    print(json.dumps({"written": written, "peak_rss_mib": peak_rss_mib(), "seconds": seconds}))


def run(n: int) -> dict[str, Any]:
    import stripe

    from bench.stripe_seed import seed_invoices
    from connector.demo import salesforce_sandbox
    from connector.demo.world import DEMO_STRIPE_KEY
    from sandboxes.stripe import StripeSandbox

    stripe_sandbox = StripeSandbox().start()
    salesforce = salesforce_sandbox(daily_api_limit=1_000_000).start()
    try:
        client = stripe.StripeClient(
            DEMO_STRIPE_KEY, base_addresses={"api": stripe_sandbox.url}, max_network_retries=0
        )
        customer = client.v1.customers.create(params={"email": "ap@bench.example"}).id
        seed_invoices(stripe_sandbox, customer, n)
        salesforce.reset_request_counts()
        with tempfile.TemporaryDirectory() as tmp:
            args = [stripe_sandbox.url, salesforce.url, customer, salesforce.ids_by_ref()["acme"]]
            out = subprocess.run(  # noqa: S603 - this interpreter, our own module
                [sys.executable, "-m", "bench.invoice_sync", "--child", *args, f"{tmp}/b.db"],
                check=True,
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parents[1],
            ).stdout
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        counts = salesforce.request_counts()
        result.update(
            n=n,
            crm_calls=sum(counts.values()),
            target=math.ceil(n / 200) + 2,
            crm_records=len(salesforce.records("Stripe_Invoice__c")),
            calls_by_endpoint={f"{m} {p}": c for (m, p), c in sorted(counts.items())},
        )
        return result
    finally:
        stripe_sandbox.stop()
        salesforce.stop()


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        child(*argv[1:6])
        return
    sizes = [int(a) for a in argv] or list(SIZES)
    print(f"{'N':>7} {'CRM calls':>9} {'target':>6} {'records':>7} {'peak RSS':>9} {'time':>7}")
    for n in sizes:
        r = run(n)
        print(
            f"{r['n']:>7} {r['crm_calls']:>9} {r['target']:>6} {r['crm_records']:>7} "
            f"{r['peak_rss_mib']:>7.1f}Mi {r['seconds']:>6.1f}s",
            flush=True,
        )
        print("        " + json.dumps(r["calls_by_endpoint"]), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
