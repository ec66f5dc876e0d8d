"""`python -m bench.import_stripe [CUSTOMERS PRICES INVOICES]`: cost of `dealbridge import stripe`.

Defaults 5,000 customers, 200 prices (100 products, one USD and one EUR price each) and
50,000 invoices (10 per customer). This process hosts both sandboxes; the Stripe account and
the Salesforce org are seeded straight into the sandboxes' Python state (the same
constructors their API handlers use), because seeding 50,000 invoices over HTTP would take
many minutes. The import runs in a fresh child process (``--child``), phase by phase,
through stripe-python and simple-salesforce over HTTP, exactly as in production; the
child's peak RSS (``VmHWM``, see ``bench/_memory.py``) is therefore dealbridge's own.
Half the customers name their account in metadata (``crm_account_id``), the other half match
a contact's email (in another case).

Printed: Stripe list calls against ceil(n/100) per listing, Salesforce calls by endpoint
against a minimum (Bulk API 2.0 jobs above the 2,000-record threshold), wall time per
phase, and the child's peak RSS. Where the time went: the child's CPU seconds (dealbridge's
own work), the seconds its main thread waited for the next page of invoices (Stripe's
answers, read ahead in a thread, not keeping up), and each sandbox's seconds answering
(wall, and the CPU of its request threads), measured in this process.
"""

from __future__ import annotations

import cProfile
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._memory import peak_rss_mib
from connector.config import config_for_tests
from connector.demo import salesforce_sandbox
from connector.runtime import Runtime
from connector.secrets import Secret
from connector.services import backfill, importer
from connector.services.import_run import PHASES, ImportOptions
from connector.store.db import Database
from connector.store.migrate import upgrade
from sandboxes.salesforce import (
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
    SalesforceSandbox,
)
from sandboxes.salesforce.app import SandboxApp
from sandboxes.stripe import StripeSandbox
from sandboxes.stripe import invoices as sandbox_invoices
from sandboxes.stripe.app import StripeApp


class _AnswerTimes:
    """Seconds each sandbox's WSGI app spent answering requests: wall, and the CPU of the
    thread answering (wall minus waiting for the GIL and the network)."""

    def __init__(self) -> None:
        self.wall: defaultdict[str, float] = defaultdict(float)
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def wrap(self, app_class: Any, name: str) -> None:
        answer = app_class.__call__

        def timed(app: Any, environ: Any, start_response: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return answer(app, environ, start_response)
            finally:
                with self._lock:
                    self.wall[name] += time.perf_counter() - wall
                    self.cpu[name] += time.thread_time() - cpu

        app_class.__call__ = timed

    def reset(self) -> None:
        with self._lock:
            self.wall.clear()
            self.cpu.clear()


def _time_page_waits(waited: list[float]) -> None:
    """Count how long the import's main thread waits for the next page of invoices (the
    read-ahead thread's Stripe calls not keeping up): the Stripe side of the critical path."""
    prefetched = backfill.prefetched

    def timed(items: Any, ahead: int) -> Any:
        pages = prefetched(items, ahead)
        while True:
            start = time.perf_counter()
            try:
                item = next(pages)
            except StopIteration:
                return
            finally:
                waited[0] += time.perf_counter() - start
            yield item

    backfill.prefetched = timed


def _seed_stripe(
    sandbox: StripeSandbox, accounts: list[str], products: int, per_customer: int
) -> None:
    state = sandbox.state
    store = state.store
    at = int(state.now())
    with state.lock:
        for index, account in enumerate(accounts):
            customer = {
                "id": store.new_id("cus_", 14), "object": "customer", "created": at,
                "name": f"Customer {index}", "email": f"Billing{index}@Customer{index}.example",
                "metadata": {"crm_account_id": account} if index % 2 == 0 else {},
                "address": None, "description": None, "phone": None, "livemode": False,
                "invoice_prefix": f"B{index:06d}", "currency": None, "deleted": False,
                "test_clock": None, "invoice_settings": {}, "preferred_locales": [],
                "shipping": None, "tax_exempt": "none", "balance": 0, "delinquent": False,
                "default_source": None, "discount": None, "next_invoice_sequence": 1,
            }  # fmt: skip
            store.add(customer)
            for n in range(per_customer):
                invoice = sandbox_invoices.new_invoice(
                    state, customer, at=at, collection_method="send_invoice",
                    days_until_due=30, auto_advance=False, billing_reason="manual",
                    currency="usd",
                )  # fmt: skip
                sandbox_invoices.add_line(
                    invoice, state, amount=12_500 + n, quantity=1, description="Bench",
                    period=(at, at), price=None,
                    parent={"type": "invoice_item_details", "invoice_item_details": None},
                    subscription_id=None,
                )  # fmt: skip
                sandbox_invoices.finalize(state, invoice, at)
        for index in range(products):
            product = {
                "id": store.new_id("prod_", 14), "object": "product", "created": at,
                "name": f"Product {index}", "active": True, "description": None,
                "metadata": {}, "livemode": False, "images": [], "default_price": None,
                "updated": at, "url": None,
            }  # fmt: skip
            store.add(product)
            for currency in ("usd", "eur"):
                store.add(
                    {
                        "id": store.new_id("price_", 14), "object": "price", "created": at,
                        "product": product["id"], "currency": currency, "active": True,
                        "unit_amount": 1000 + index, "unit_amount_decimal": str(1000 + index),
                        "type": "recurring", "billing_scheme": "per_unit",
                        "recurring": {"interval": "month", "interval_count": 1,
                                      "usage_type": "licensed", "meter": None},
                        "nickname": None, "lookup_key": None, "metadata": {},
                        "livemode": False, "tax_behavior": "unspecified",
                        "tiers_mode": None, "transform_quantity": None,
                    }
                )  # fmt: skip


def _seed_salesforce(sandbox: SalesforceSandbox, count: int) -> list[str]:
    ids = []
    for index in range(count):
        account = sandbox.store.create("Account", {"Name": f"Account {index}"})
        ids.append(account)
        if index % 2 == 1:
            sandbox.store.create(
                "Contact",
                {"LastName": "Billing", "Email": f"billing{index}@customer{index}.example",
                 "AccountId": account},
            )  # fmt: skip
    return ids


def child(stripe_url: str, salesforce_url: str, db: str) -> None:
    """The import alone, in its own process: prints one JSON line of timings and memory."""
    from connector.demo.world import DEMO_STRIPE_KEY

    url = f"sqlite:///{db}"
    upgrade(url)
    config = config_for_tests(
        {
            "database": {"url": url},
            "crm": {"kind": "salesforce", "salesforce": {"instance_url": salesforce_url}},
            "stripe": {"api_base": stripe_url, "max_network_retries": 0},
        },
        stripe_api_key=Secret(DEMO_STRIPE_KEY),
        salesforce_username=DEMO_USERNAME,
        salesforce_password=Secret(DEMO_PASSWORD),
        salesforce_security_token=Secret(DEMO_SECURITY_TOKEN) if DEMO_SECURITY_TOKEN else None,
    )
    runtime = Runtime(config, db=Database(url))
    page_waits = [0.0]
    _time_page_waits(page_waits)
    rss_before = peak_rss_mib()
    cpu_before = time.process_time()
    timings: dict[str, float] = {}
    counts: dict[str, int] = {}
    profile_to = os.environ.get("BENCH_PROFILE")  # a path: cProfile stats of the import
    profiler = cProfile.Profile() if profile_to else None
    for phase in PHASES:
        start = time.monotonic()
        if profiler is not None:
            profiler.enable()
        report = importer.import_stripe(runtime, ImportOptions(phases=(phase,)))
        if profiler is not None:
            profiler.disable()
        timings[phase] = time.monotonic() - start
        print(f"  {phase}: {timings[phase]:.1f}s", file=sys.stderr, flush=True)
        counts[phase] = {
            "customers": report.linked_total,
            "products": report.products,
            "invoices": report.invoices,
        }[phase]
        if phase == "products":
            counts["prices"] = report.prices
    peak = peak_rss_mib()
    cpu = time.process_time() - cpu_before
    if profiler is not None and profile_to:
        profiler.dump_stats(profile_to)
    print(
        json.dumps(
            {
                "timings": timings,
                "counts": counts,
                "rss_before_mib": rss_before,
                "peak_rss_mib": peak,
                "cpu_s": cpu,
                "page_wait_s": page_waits[0],
            }
        )
    )


def main(customers: int = 5000, prices: int = 200, invoices: int = 50_000) -> None:
    now = datetime.now(UTC)
    answers = _AnswerTimes()
    answers.wrap(StripeApp, "stripe")
    answers.wrap(SandboxApp, "salesforce")
    stripe_sb = StripeSandbox(now=lambda: int(now.timestamp())).start()
    sf_sb = salesforce_sandbox(seed=None, daily_api_limit=10_000_000, now=lambda: now).start()
    try:
        t0 = time.monotonic()
        accounts = _seed_salesforce(sf_sb, customers)
        _seed_stripe(stripe_sb, accounts, prices // 2, invoices // customers)
        print(f"seeded in {time.monotonic() - t0:.1f}s", flush=True)
        stripe_sb.reset_request_counts()
        sf_sb.reset_request_counts()
        answers.reset()
        sandboxes_cpu = time.process_time()
        with tempfile.TemporaryDirectory(prefix="dealbridge-bench-") as tmp:
            out = subprocess.run(  # noqa: S603 - this interpreter, our own module
                [sys.executable, "-m", "bench.import_stripe", "--child", stripe_sb.url,
                 sf_sb.url, str(Path(tmp) / "bench.sqlite3")],
                check=True, stdout=subprocess.PIPE, text=True,
                cwd=Path(__file__).resolve().parents[1],
            ).stdout  # fmt: skip
        sandboxes_cpu = time.process_time() - sandboxes_cpu
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        stripe_counts = Counter({k: v for k, v in stripe_sb.request_counts().items()})
        sf_counts = Counter({k: v for k, v in sf_sb.request_counts().items()})
        print()
        print(f"customers {customers}, prices {prices}, invoices {invoices}")
        print(f"imported: {json.dumps(result['counts'])}")
        print("Stripe calls (minimum = ceil(n/100) per listing):")
        minimum = {
            "/v1/customers": math.ceil(customers / 100),
            "/v1/products": math.ceil(prices / 2 / 100),
            "/v1/prices": math.ceil(prices / 100),
            "/v1/invoices": math.ceil(invoices / 100),
        }
        for (method, path), count in sorted(stripe_counts.items()):
            print(f"  {method} {path}: {count}  (minimum {minimum.get(path, '-')})")
        print(f"Salesforce calls: {sum(sf_counts.values())}  (minimum {salesforce_minimum()})")
        for (method, path), count in sorted(sf_counts.items()):
            print(f"  {method} {path}: {count}")
        records = Counter(
            r.get("Stripe_Invoice_Id__c") is not None for r in sf_sb.records("Stripe_Invoice__c")
        )
        print(f"Salesforce invoice records: {records[True]}")
        timings = result["timings"]
        print(
            f"wall: {sum(timings.values()):.1f}s; "
            + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        )
        print(
            f"peak RSS of the import process: {result['peak_rss_mib']:.0f} MiB "
            f"(after start-up: {result['rss_before_mib']:.0f} MiB)"
        )
        print(
            f"dealbridge (import process) CPU: {result['cpu_s']:.1f}s; its main thread waited "
            f"{result['page_wait_s']:.1f}s for pages of invoices"
        )
        print(
            "sandboxes answering (wall / CPU of the answering thread): "
            + ", ".join(
                f"{name} {answers.wall[name]:.1f}s / {answers.cpu[name]:.1f}s"
                for name in ("stripe", "salesforce")
            )
            + f"; sandbox process CPU {sandboxes_cpu:.1f}s"
        )
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        stripe_sb.stop()
        sf_sb.stop()


def salesforce_minimum() -> str:
    """What the import cannot do with less, at the default sizes (all above the bulk
    threshold but the catalog): one login; two directory queries (accounts, contacts);
    one Bulk API 2.0 job for the accounts' write-back; products and prices in collections
    (100 and 200 rows: 1 each) plus the standard price book and its entries (2 queries);
    the invoices in Bulk API 2.0 jobs; the open balances in one job. A Bulk API 2.0 job is
    6 requests (create, upload, close, poll, successes, failures)."""
    return "login 1 + directory 2 + accounts 1 job + catalog 4 + invoices ≥1 job + balances 1 job"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
    else:
        main(*[int(a) for a in sys.argv[1:4]])
