"""Webhook intake latency of `dealbridge serve` on SQLite while its worker drains the events.

    .venv/bin/python -m bench.serve_intake                 # 50, 100, 200 and 400 events/s
    .venv/bin/python -m bench.serve_intake 200 --seconds 20
    .venv/bin/python -m bench.serve_intake --web-only     # the control: no worker at all

For each rate a child process hosts the Stripe and Salesforce sandboxes and seeds one
linked customer's invoices in Stripe (``stripe_seed``); this process migrates a fresh SQLite
store, links the customer, and starts ``dealbridge serve`` (web, worker and clock as
supervised processes) against the sandboxes. Once serve is idle after its start-up catch-up
(which stores and handles the seeded invoices' events), it POSTs signed ``invoice.paid``
webhooks of those invoices at the rate for ``--seconds`` (open loop: request i is due at
t0 + i/rate, whatever the answers), each a distinct event, from a pool of sender threads,
while serve's worker fetches each invoice from Stripe and writes it to Salesforce.

Printed per rate: requests sent, errors (non-200 or no answer within 10 s), acknowledgement
latency p50 / p99 / max (from the moment each request was sent), how many requests started
more than 10 ms late (the sender itself could not keep up), inbox rows stored against events
sent (each stored once), and the seconds after the last request until the worker had
processed every event.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import stripe

RATES = (50, 100, 200, 400)
SECONDS = 10
INVOICES = 200
SENDERS = 64
#: Longest the bench waits for the worker to process every event after the last request.
DRAIN_WAIT = 120
WEBHOOK_SECRET = "whsec_bench_serve_intake"  # noqa: S105 - the bench signs its own events
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


@contextmanager
def _serve(env: dict[str, str], port: int, web_only: bool) -> Iterator[subprocess.Popen[bytes]]:
    command = ["serve", "--port", str(port)]
    if web_only:
        command = ["web", "--workers", "1", "--threads", "8", "--port", str(port)]
    proc = subprocess.Popen(  # noqa: S603 - this interpreter, our own command
        [sys.executable, "-m", "connector", *command],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)  # a benchmark waiting for a server to boot, not a test
        else:
            raise RuntimeError("dealbridge serve did not become healthy in 60 s")
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def _waiting(db_path: Path) -> int:
    with sqlite3.connect(db_path, timeout=30) as conn:
        row = conn.execute(
            "SELECT (SELECT COUNT(*) FROM inbox_events WHERE status IN ('pending', "
            "'processing')) + (SELECT COUNT(*) FROM outbox_messages WHERE status IN "
            "('pending', 'processing'))"
        ).fetchone()
    return int(row[0])


def _wait_idle(db_path: Path, seconds: float = DRAIN_WAIT) -> None:
    deadline = time.monotonic() + seconds
    time.sleep(3)  # let the clock's start-up catch-up begin before judging "idle"
    while time.monotonic() < deadline and _waiting(db_path):
        time.sleep(0.5)  # a benchmark waiting for the start-up work to end


def _event(n: int, invoice_id: str, customer: str) -> str:
    return json.dumps(
        {
            "id": f"evt_bench_{n:07d}",
            "object": "event",
            "type": "invoice.paid",
            "created": int(time.time()),
            "api_version": "2026-10-28.endive",
            "data": {"object": {"id": invoice_id, "object": "invoice", "customer": customer}},
        }
    )


def sandboxes() -> None:
    """Child process: host both sandboxes, seed the invoices, print where they are, and serve
    until stdin closes. The sandboxes answer serve's worker from their own interpreter, so
    their work never starves the sender's threads (which would inflate the latencies)."""
    from bench.stripe_seed import seed_invoices
    from connector.demo import salesforce_sandbox
    from connector.demo.world import DEMO_STRIPE_KEY
    from sandboxes.stripe import StripeSandbox

    stripe_sandbox = StripeSandbox().start()
    salesforce = salesforce_sandbox(daily_api_limit=10_000_000).start()
    client = stripe.StripeClient(
        DEMO_STRIPE_KEY, base_addresses={"api": stripe_sandbox.url}, max_network_retries=0
    )
    customer = client.v1.customers.create(params={"email": "ap@bench.example"}).id
    invoices = seed_invoices(stripe_sandbox, customer, INVOICES)
    print(
        json.dumps(
            {
                "stripe_url": stripe_sandbox.url,
                "salesforce_url": salesforce.url,
                "customer": customer,
                "account": salesforce.ids_by_ref()["acme"],
                "invoices": invoices,
            }
        ),
        flush=True,
    )
    sys.stdin.read()
    stripe_sandbox.stop()
    salesforce.stop()


def run(rate: int, seconds: int, web_only: bool = False) -> dict[str, Any]:
    from connector.demo.world import DEMO_STRIPE_KEY
    from connector.store.migrate import upgrade
    from sandboxes.salesforce import DEMO_PASSWORD, DEMO_USERNAME

    hosts = subprocess.Popen(
        [sys.executable, "-m", "bench.serve_intake", "--sandboxes"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    tmp = tempfile.TemporaryDirectory()
    try:
        assert hosts.stdout is not None
        where = json.loads(hosts.stdout.readline())
        customer, invoices = where["customer"], where["invoices"]
        db_path = Path(tmp.name) / "serve.sqlite3"
        url = f"sqlite:///{db_path}"
        upgrade(url)
        with sqlite3.connect(db_path) as conn:
            conn.execute(
                "INSERT INTO customer_links (crm_account_id, stripe_customer_id, source, "
                "linked_at) VALUES (?, ?, 'found', CURRENT_TIMESTAMP)",
                (where["account"], customer),
            )
        port = _free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DEALBRIDGE")},
            "STRIPE_API_KEY": DEMO_STRIPE_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "DEALBRIDGE_SECRET_KEY": "b" * 40,
            "SALESFORCE_USERNAME": DEMO_USERNAME,
            "SALESFORCE_PASSWORD": DEMO_PASSWORD,
            "DATABASE_URL": url,
            "DEALBRIDGE__STRIPE__API_BASE": where["stripe_url"],
            "DEALBRIDGE__STRIPE__MAX_NETWORK_RETRIES": "0",
            "DEALBRIDGE__CRM__SALESFORCE__INSTANCE_URL": where["salesforce_url"],
            "DEALBRIDGE__WEB__HOST": "127.0.0.1",
            "DEALBRIDGE__APP__LOG_LEVEL": "WARNING",
        }
        total = rate * seconds
        latencies: list[float] = []
        errors: list[str] = []
        late = 0
        lock = threading.Lock()
        local = threading.local()

        with _serve(env, port, web_only):
            _wait_idle(db_path)  # start-up's catch-up (the seeded invoices' events) is done
            endpoint = f"http://127.0.0.1:{port}/webhooks/stripe"
            started = time.perf_counter() + 0.5

            def send(n: int) -> None:
                nonlocal late
                due = started + n / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)  # open-loop pacing of the load, not synchronisation
                payload = _event(n, invoices[n % len(invoices)], customer)
                header = stripe.WebhookSignature.generate_signature_header(
                    payload, WEBHOOK_SECRET, int(time.time())
                )
                session = getattr(local, "session", None)
                if session is None:
                    session = local.session = requests.Session()
                sent = time.perf_counter()
                try:
                    answer = session.post(
                        endpoint,
                        data=payload,
                        headers={"Content-Type": "application/json", "Stripe-Signature": header},
                        timeout=10,
                    )
                    outcome = None if answer.status_code == 200 else str(answer.status_code)
                except requests.RequestException as exc:
                    outcome = type(exc).__name__
                took = time.perf_counter() - sent
                with lock:
                    latencies.append(took)
                    if sent - due > 0.010:
                        late += 1
                    if outcome is not None:
                        errors.append(outcome)

            with ThreadPoolExecutor(SENDERS) as pool:
                list(pool.map(send, range(total)))
            finished = time.perf_counter()
            drained = math.nan
            deadline = time.monotonic() + (0 if web_only else DRAIN_WAIT)
            while time.monotonic() < deadline:
                with sqlite3.connect(db_path, timeout=30) as conn:
                    waiting = conn.execute(
                        "SELECT COUNT(*) FROM inbox_events WHERE status IN ('pending', "
                        "'processing')"
                    ).fetchone()[0]
                if waiting == 0:
                    drained = time.perf_counter() - finished
                    break
                time.sleep(0.5)  # a benchmark polling for the end of the work
            with sqlite3.connect(db_path, timeout=30) as conn:
                stored = conn.execute(
                    "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM inbox_events "
                    "WHERE event_id LIKE 'evt_bench_%'"
                ).fetchone()
                done = conn.execute(
                    "SELECT COUNT(*) FROM inbox_events WHERE event_id LIKE 'evt_bench_%' "
                    "AND status = 'done'"
                ).fetchone()[0]
        return {
            "rate": rate,
            "sent": total,
            "errors": len(errors),
            "error_kinds": sorted(set(errors)),
            "p50_ms": _percentile(latencies, 50) * 1000,
            "p99_ms": _percentile(latencies, 99) * 1000,
            "max_ms": max(latencies) * 1000,
            "late_starts": late,
            "stored": stored[0],
            "distinct": stored[1],
            "done": done,
            "drained_s": drained,
        }
    finally:
        if hosts.stdin is not None:
            hosts.stdin.close()
        hosts.wait(timeout=60)
        tmp.cleanup()


def main(argv: list[str]) -> None:
    if argv[:1] == ["--sandboxes"]:
        sandboxes()
        return
    seconds = SECONDS
    if "--seconds" in argv:
        at = argv.index("--seconds")
        seconds = int(argv[at + 1])
        del argv[at : at + 2]
    web_only = "--web-only" in argv
    if web_only:
        argv.remove("--web-only")
    rates = [int(a) for a in argv] or list(RATES)
    print(
        f"{'rate/s':>6} {'sent':>6} {'errors':>6} {'p50':>8} {'p99':>8} {'max':>8} "
        f"{'late':>5} {'stored':>6} {'done':>6} {'drained':>8}"
    )
    for rate in rates:
        r = run(rate, seconds, web_only)
        print(
            f"{r['rate']:>6} {r['sent']:>6} {r['errors']:>6} {r['p50_ms']:>6.1f}ms "
            f"{r['p99_ms']:>6.1f}ms {r['max_ms']:>6.0f}ms {r['late_starts']:>5} "
            f"{r['stored']:>6} {r['done']:>6} {r['drained_s']:>7.1f}s",
            flush=True,
        )
        if r["error_kinds"] or r["stored"] != r["distinct"]:
            print(f"        errors: {r['error_kinds']}; distinct stored: {r['distinct']}")


if __name__ == "__main__":
    main(sys.argv[1:])
