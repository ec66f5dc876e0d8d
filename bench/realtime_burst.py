"""Real-time burst benchmark: N ``invoice.paid`` webhooks for one linked customer, handled by
the worker as it runs in production; CRM calls, batch fill and seconds until the CRM has all.

    .venv/bin/python -m bench.realtime_burst                       # N = 1,000, all four setups
    .venv/bin/python -m bench.realtime_burst 1000 salesforce sqlite
    .venv/bin/python -m bench.realtime_burst 450 dynamics sqlite --once

Each run builds a local world (the Stripe sandbox, the CRM sandbox and dealbridge's web app on
loopback; ``connector.demo``) on a fresh store: SQLite in a temporary directory, or a fresh
schema of the PostgreSQL test database (``DEALBRIDGE_BENCH_PG``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). It links one Stripe customer to the
sample org's ``acme`` account, seeds N finalized invoices straight into the Stripe sandbox's
state (``bench/stripe_seed.py``), mirrors them with the backfill and forgets the webhooks the
seeding queued. Then:

1. the worker starts, as ``dealbridge worker`` runs it (``jobs/worker_loop.py``, woken by
   the store's doorbell, the configured ``jobs.batch_wait_seconds``; ``--once``:
   ``dealbridge sync --once`` after the deliveries instead; ``--arrived``: the worker
   starts once every webhook is stored, i.e. the whole burst arrived together, however
   slowly this machine delivers it);
2. the N invoices are paid out of band in the sandbox (one ``invoice.paid`` each) and the
   sandbox delivers the N signed webhooks to ``/webhooks/stripe`` over HTTP, one by one;
3. the bench polls the CRM sandbox's own state until every invoice record says ``paid`` and
   prints the CRM requests made since the deliveries began (logins included, and listed),
   the target (ceil(N/200)+2 for Salesforce, ceil(N/1000)+2 for Dataverse, plus logins), the
   invoice write batches by size, and the seconds from the last delivered webhook until the
   CRM had all N records paid.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._deploy import fresh_store

SETUPS = (
    ("salesforce", "sqlite"),
    ("salesforce", "postgresql"),
    ("dynamics", "sqlite"),
    ("dynamics", "postgresql"),
)
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: The worker's settings: the defaults, but every second as the demo runs it.
WORKER_JOBS = {"worker_seconds": 1}
#: A Dataverse read a worker process makes once in its life (the currencies it writes in).
ONCE_PER_PROCESS = ("GET", "transactioncurrencies")
#: Longest the bench waits for the CRM before it reports a failure.
PATIENCE_SECONDS = 300


def _unsent(runtime: Any) -> int:
    """Inbox events and outbox messages still waiting or in hand."""
    from sqlalchemy import func, select

    from connector.store.models import InboxEvent, OutboxMessage

    with runtime.db.session() as session:
        waiting = ("pending", "processing")
        return int(
            session.scalar(select(func.count()).where(InboxEvent.status.in_(waiting))) or 0
        ) + int(session.scalar(select(func.count()).where(OutboxMessage.status.in_(waiting))) or 0)


def _world(crm: str, url: str, sections: dict[str, Any]) -> Any:
    from connector.demo.dynamics_world import DynamicsLocalWorld
    from connector.demo.world import LocalWorld

    cls = DynamicsLocalWorld if crm == "dynamics" else LocalWorld
    return cls(url, sections=sections)


def _crm_counts(world: Any, crm: str) -> dict[tuple[str, str], int]:
    if crm == "dynamics":
        return dict(world.dataverse.request_counts())
    return dict(world.salesforce_sandbox.request_counts())


def _reset_crm_counts(world: Any, crm: str) -> None:
    if crm == "dynamics":
        world.dataverse.reset_request_log()
    else:
        world.salesforce_sandbox.reset_request_counts()


def _paid_records(world: Any, crm: str) -> int:
    from connector.mappings import load_mapping

    assert world.config is not None
    mapping = load_mapping(world.config.mapping_path, crm)
    table = str(mapping.invoice["object"])
    status = str(mapping.invoice_fields["status"])
    rows = (
        world.dataverse.rows(table)
        if crm == "dynamics"
        else world.salesforce_sandbox.records(table)
    )
    return sum(1 for r in rows if r.get(status) == "paid")


def _is_login(crm: str, method: str, path: str) -> bool:
    if crm == "dynamics":
        return "oauth2" in path or "openid" in path or "token" in path
    return "login" in path or "oauth2" in path or "/services/Soap/u/" in path


def run(
    n: int, crm: str, store: str, *, once: bool = False, arrived: bool = False
) -> dict[str, Any]:
    from bench.stripe_seed import pay_invoices, seed_invoices
    from connector.services.backfill import backfill_invoices
    from connector.store.models import CustomerLink

    sections = {"jobs": WORKER_JOBS}
    with fresh_store(store) as url:
        world = _world(crm, url, sections).start()
        worker: subprocess.Popen[str] | None = None
        try:
            runtime = world.runtime
            assert runtime is not None
            client = world.stripe_client()
            customer = client.v1.customers.create(params={"email": "ap@burst.example"}).id
            account = world.dataverse if crm == "dynamics" else world.salesforce_sandbox
            account_id = account.ids_by_ref()["acme"]
            with runtime.db.session() as session:
                session.add(
                    CustomerLink(crm_account_id=str(account_id), stripe_customer_id=customer,
                                 source="created")
                )  # fmt: skip
            ids = seed_invoices(world.stripe_sandbox, customer, n)
            backfill_invoices(runtime, customer_ids=[customer])
            _run_worker_until_idle(world.jobs, runtime)  # the setup's own writes are not the burst
            with world.stripe_sandbox.state.lock:  # the seeding's webhooks are not the burst
                for delivery in world.stripe_sandbox.state.deliveries:
                    delivery.done = True
            pay_invoices(world.stripe_sandbox, ids)
            calls: list[int] = []
            if once:
                calls = _record_invoice_writes(runtime.crm)
            elif not arrived:
                worker = _start_worker(world, crm, url)
            _reset_crm_counts(world, crm)
            started = time.monotonic()
            delivered = world.stripe_sandbox.deliver_webhooks()
            last_event = time.monotonic()
            if arrived:
                worker = _start_worker(world, crm, url)
            if os.environ.get("BENCH_TRACE"):
                print(f"{time.time():.2f} last event delivered", file=sys.stderr)
            if once:
                _run_worker_until_idle(world.jobs, runtime)
            while _paid_records(world, crm) < n:
                if time.monotonic() - last_event > PATIENCE_SECONDS:
                    break
                time.sleep(0.05)
            complete = time.monotonic()
            paid = _paid_records(world, crm)
            # Count every call the burst caused: wait for the writes that follow the invoice
            # records (the account's figures and balance) before stopping the worker.
            while _unsent(runtime) and time.monotonic() - last_event < PATIENCE_SECONDS:
                time.sleep(0.05)
            if worker is not None:
                calls = _stop_worker(worker)
                worker = None
            counts = _crm_counts(world, crm)
            sizes = _histogram(calls, runtime.crm)
        finally:
            if worker is not None:
                worker.kill()
            world.stop()
    logins = sum(c for (m, p), c in counts.items() if _is_login(crm, m, p))
    # The organisation's currencies: read once by a process that starts (cached after), as
    # a login is; a worker that was already running would not read them for this burst.
    per_process = sum(c for (m, p), c in counts.items() if (m, p) == ONCE_PER_PROCESS)
    unit = 1000 if crm == "dynamics" else 200
    return {
        "n": n,
        "crm": crm,
        "store": store,
        "mode": "sync --once" if once else ("worker after" if arrived else "worker"),
        "delivered": delivered,
        "paid_records": paid,
        "crm_calls": sum(counts.values()) - logins - per_process,
        "logins": logins,
        "once_per_process": per_process,
        "target": math.ceil(n / unit) + 2,
        "delivery_seconds": round(last_event - started, 2),
        "seconds_after_last_event": round(complete - last_event, 2),
        "invoice_batches": sizes,
        "calls_by_endpoint": {f"{m} {p}": c for (m, p), c in sorted(counts.items())},
    }


def _start_worker(world: Any, crm: str, url: str) -> subprocess.Popen[str]:
    """``dealbridge worker`` in its own process, configured as the world's app is."""
    crm_secrets = {
        name: {"value": str(value.reveal() if hasattr(value, "reveal") else value),
               "secret": hasattr(value, "reveal")}
        for name, value in world._crm_secrets().items()
        if value is not None
    }  # fmt: skip
    spec = {
        "sections": {
            "database": {"url": url},
            "crm": world._crm_section(),
            "stripe": {"api_base": world.stripe_url, "max_network_retries": 0},
            "jobs": WORKER_JOBS,
        },
        "crm_secrets": crm_secrets,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.realtime_burst", "--worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(json.dumps(spec) + "\n")
    worker.stdin.flush()
    assert worker.stdout.readline().strip() == "ready"
    return worker


def _stop_worker(worker: subprocess.Popen[str]) -> list[int]:
    out, _ = worker.communicate("stop\n", timeout=120)
    return list(json.loads(out.strip().splitlines()[-1]))


def worker_main() -> None:
    """The child: the worker's jobs on the scheduler until the parent says stop; prints the
    sizes of the adapter's invoice writes."""
    from connector.config import config_for_tests
    from connector.demo.world import DEMO_STRIPE_KEY
    from connector.jobs import default_registry
    from connector.jobs.worker_loop import WorkerLoops
    from connector.runtime import Runtime
    from connector.secrets import Secret
    from connector.store.db import Database

    spec = json.loads(sys.stdin.readline())
    secrets = {
        name: Secret(item["value"]) if item["secret"] else item["value"]
        for name, item in spec["crm_secrets"].items()
    }
    config = config_for_tests(
        spec["sections"],
        stripe_api_key=Secret(DEMO_STRIPE_KEY),
        secret_key=Secret("bench-secret-key-0123456789abcdef0123"),
        **secrets,
    )
    runtime = Runtime(config, db=Database(spec["sections"]["database"]["url"]))
    calls = _record_invoice_writes(runtime.crm)
    if os.environ.get("BENCH_TRACE"):
        _trace_jobs()
    loops = WorkerLoops.for_worker(default_registry(), runtime)  # as `dealbridge worker` runs
    loops.start()
    print("ready", flush=True)
    sys.stdin.readline()
    loops.stop()
    print(json.dumps(calls), flush=True)


def _trace_jobs() -> None:
    """Print each worker job's run (start, seconds, items handled) to stderr."""
    from connector.jobs import registry

    original = registry.JobRegistry.run_job

    def run_job(self: Any, job: Any, runtime: Any, *, once: bool = False) -> int:
        began = time.time()
        handled = original(self, job, runtime, once=once)
        if handled:
            print(
                f"{began:.2f} {job.name} {handled} in {time.time() - began:.2f}s", file=sys.stderr
            )
        return int(handled)

    registry.JobRegistry.run_job = run_job  # type: ignore[method-assign]


def _run_worker_until_idle(jobs: Any, runtime: Any) -> None:
    """``dealbridge sync --once`` for the worker's jobs only (no CRM poll, no reconciliation:
    the sample org's own changes are not part of the burst)."""
    workers = jobs.jobs(("worker",))
    while sum(jobs.run_job(job, runtime, once=True) for job in workers):
        pass


def _record_invoice_writes(adapter: Any) -> list[int]:
    """Wrap the adapter's ``upsert_invoices`` to record how many records each call carried."""
    sizes: list[int] = []
    original = adapter.upsert_invoices

    def upsert_invoices(records: Any) -> Any:
        sizes.append(len(records))
        if os.environ.get("BENCH_TRACE"):
            print(f"{time.time():.2f} upsert_invoices {len(records)}", file=sys.stderr)
        return original(records)

    adapter.upsert_invoices = upsert_invoices
    return sizes


def _histogram(calls: list[int], adapter: Any) -> dict[str, int]:
    """Invoice records per CRM write request, as ``size: requests``: an adapter call above
    the Salesforce bulk threshold is one Bulk API 2.0 job (``bulk N``), else the adapter
    splits it into requests of its batch size (200 a Collection, 1,000 a ``$batch``)."""
    histogram: Counter[str] = Counter()
    threshold = getattr(adapter, "bulk_threshold", None)
    for size in calls:
        if isinstance(threshold, int) and size > threshold:
            histogram[f"bulk {size}"] += 1
            continue
        for start in range(0, size, adapter.batch_size):
            histogram[str(min(adapter.batch_size, size - start))] += 1
    return dict(
        sorted(histogram.items(), key=lambda kv: (kv[0].startswith("bulk"), int(kv[0].split()[-1])))
    )


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        worker_main()
        return
    once = "--once" in argv
    arrived = "--arrived" in argv
    args = [a for a in argv if a not in ("--once", "--arrived")]
    n = int(args[0]) if args else 1000
    setups = [(args[1], args[2])] if len(args) >= 3 else list(SETUPS)
    print(datetime.now(UTC).isoformat(timespec="seconds"), f"N={n}", flush=True)
    for crm, store in setups:
        result = run(n, crm, store, once=once, arrived=arrived)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
