"""What the deployment benchmarks share: a fresh store, dealbridge started as an admin
deploys it, and percentiles.

Two deployments, as docs/deployment.md describes them:

* ``serve``: ``dealbridge serve`` (web, worker and clock supervised by one command), the
  single-machine deployment, on SQLite;
* ``procfile``: the Procfile's three processes, ``dealbridge web`` (gunicorn, 2 workers of 4
  threads, the Procfile's defaults), ``dealbridge worker`` and ``dealbridge clock``, the
  deployment for several instances, on PostgreSQL.

``web-only`` starts serve's web process alone (SQLite), ``procfile-web-only`` the
Procfile's (PostgreSQL): the controls that show what the machine gives whatever the worker
does.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEPLOYMENTS = ("serve", "procfile", "web-only", "procfile-web-only")
#: The store each deployment runs on.
STORE_OF = {
    "serve": "sqlite",
    "procfile": "postgresql",
    "web-only": "sqlite",
    "procfile-web-only": "postgresql",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile (no interpolation: a figure that was measured)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


@contextmanager
def fresh_store(kind: str) -> Iterator[str]:
    """A database URL: a SQLite file in a temporary folder, or a fresh schema of the
    PostgreSQL test database (``DEALBRIDGE_BENCH_PG``), dropped afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.sqlite3"
        return
    from sqlalchemy import create_engine, text

    base = os.environ.get("DEALBRIDGE_BENCH_PG", DEFAULT_PG)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


#: ``BENCH_PROCFILE_NICE``: the CPU niceness of the Procfile's worker and clock. A Procfile
#: deployment runs them on machines (dynos) of their own; on the bench's one machine, which
#: they share with the web process, a niceness gives the web process the CPU first, as its
#: own machine would. 0 (the default) shares the CPU evenly.
PROCFILE_NICENESS = int(os.environ.get("BENCH_PROCFILE_NICE", "0"))


def _start(command: list[str], env: dict[str, str], niceness: int = 0) -> subprocess.Popen[bytes]:
    # BENCH_LOG_DIR: keep each process's output there (``<command>.log``) to see what it did.
    log_dir = os.environ.get("BENCH_LOG_DIR")
    output: Any = subprocess.DEVNULL
    if log_dir:
        output = open(Path(log_dir) / f"{command[0]}.log", "ab")  # noqa: SIM115 - the child's
    return subprocess.Popen(  # noqa: S603 - this interpreter, our own command
        [sys.executable, "-m", "connector", *command],
        env=env,
        cwd=REPO,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=(lambda: os.nice(niceness)) if niceness else None,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


@contextmanager
def deployment(kind: str, env: dict[str, str], port: int) -> Iterator[None]:
    """dealbridge running as ``kind`` deploys it, healthy on ``port``."""
    if kind == "serve":
        commands = [["serve", "--port", str(port)]]
    elif kind == "procfile":
        commands = [["web", "--port", str(port)], ["worker"], ["clock"]]
    elif kind == "web-only":
        commands = [["web", "--workers", "1", "--threads", "8", "--port", str(port)]]
    elif kind == "procfile-web-only":
        commands = [["web", "--port", str(port)]]
    else:
        raise ValueError(f"unknown deployment {kind!r}; one of {DEPLOYMENTS}")
    with ExitStack() as stack:
        for command in commands:
            background = kind == "procfile" and command[0] in ("worker", "clock")
            proc = _start(command, env, PROCFILE_NICENESS if background else 0)
            stack.callback(_stop, proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)  # a benchmark waiting for a server to boot, not a test
        else:
            raise RuntimeError(f"dealbridge ({kind}) did not become healthy in 60 s")
        yield


def waiting_work(url: str, *, outbox: bool = True) -> int:
    """Inbound events not handled yet -- in the inbox, or spooled by the web process and not
    yet moved into it (SQLite) -- and, with ``outbox``, outbound writes not sent yet."""
    from sqlalchemy import func, select

    from connector.store.db import Database
    from connector.store.models import InboxEvent, OutboxMessage

    busy = ("pending", "processing")
    db = Database(url)
    try:
        with db.reading() as session:
            count = session.execute(
                select(func.count()).select_from(InboxEvent).where(InboxEvent.status.in_(busy))
            ).scalar_one()
            if outbox:
                count += session.execute(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.status.in_(busy))
                ).scalar_one()
            spool = db.intake_spool
            if spool is not None:
                count += spool.waiting(session)
            return int(count)
    finally:
        db.dispose()


def link_customer(url: str, crm_account_id: str, stripe_customer_id: str) -> None:
    """Migrate the store and link the customer to the account, as activation would have."""
    from sqlalchemy import create_engine, text

    from connector.store.migrate import upgrade

    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO customer_links (crm_account_id, stripe_customer_id, source, "
                    "linked_at) VALUES (:account, :customer, 'found', CURRENT_TIMESTAMP)"
                ),
                {"account": crm_account_id, "customer": stripe_customer_id},
            )
    finally:
        engine.dispose()


def deployment_env(
    url: str, stripe_url: str, salesforce_url: str, webhook_secret: str
) -> dict[str, str]:
    """The environment an admin gives dealbridge, pointed at the sandboxes."""
    from connector.demo.world import DEMO_STRIPE_KEY
    from sandboxes.salesforce import DEMO_PASSWORD, DEMO_USERNAME

    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DEALBRIDGE")},
        "STRIPE_API_KEY": DEMO_STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": webhook_secret,
        "DEALBRIDGE_SECRET_KEY": "b" * 40,
        "SALESFORCE_USERNAME": DEMO_USERNAME,
        "SALESFORCE_PASSWORD": DEMO_PASSWORD,
        "DATABASE_URL": url,
        "DEALBRIDGE__STRIPE__API_BASE": stripe_url,
        "DEALBRIDGE__STRIPE__MAX_NETWORK_RETRIES": "0",
        "DEALBRIDGE__CRM__SALESFORCE__INSTANCE_URL": salesforce_url,
        "DEALBRIDGE__WEB__HOST": "127.0.0.1",
        "DEALBRIDGE__APP__LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    }


def host_sandboxes(stripe_sandbox: Any, invoices: int = 0) -> tuple[Any, Any, str]:
    """In a ``--sandboxes`` child: start ``stripe_sandbox`` (started already, or not) and a
    Salesforce sandbox, create one customer with ``invoices`` seeded finalized invoices, and
    print where everything is as one JSON line for the parent. Returns (the Salesforce
    sandbox, a stripe-python client of the Stripe sandbox, the customer id)."""
    import json

    import stripe

    from bench.stripe_seed import seed_invoices
    from connector.demo import salesforce_sandbox
    from connector.demo.world import DEMO_STRIPE_KEY

    if stripe_sandbox._server is None:
        stripe_sandbox.start()
    salesforce = salesforce_sandbox(daily_api_limit=10_000_000).start()
    client = stripe.StripeClient(
        DEMO_STRIPE_KEY, base_addresses={"api": stripe_sandbox.url}, max_network_retries=0
    )
    customer = str(client.v1.customers.create(params={"email": "ap@bench.example"}).id)
    seeded = seed_invoices(stripe_sandbox, customer, invoices) if invoices else []
    where = {
        "stripe_url": stripe_sandbox.url,
        "salesforce_url": salesforce.url,
        "customer": customer,
        "account": salesforce.ids_by_ref()["acme"],
        "invoices": seeded,
    }
    print(json.dumps(where), flush=True)
    return salesforce, client, customer
