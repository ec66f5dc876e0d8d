"""Webhook intake latency of a deployment while its worker drains the events.

    .venv/bin/python -m bench.serve_intake                 # serve on SQLite: 50, 100, 200, 400/s
    .venv/bin/python -m bench.serve_intake 200 --seconds 20
    .venv/bin/python -m bench.serve_intake --procfile     # web + worker + clock on PostgreSQL
    .venv/bin/python -m bench.serve_intake --web-only     # the control: no worker at all

The deployments are ``bench/_deploy.py``'s.

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
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import requests
import stripe
from sqlalchemy import create_engine, text

from bench._deploy import (
    REPO,
    STORE_OF,
    deployment,
    deployment_env,
    free_port,
    fresh_store,
    host_sandboxes,
    link_customer,
    percentile,
)

RATES = (50, 100, 200, 400)
SECONDS = 10
INVOICES = 200
SENDERS = 64
#: ``BENCH_SENDER_PROCESSES``: processes the senders are spread over (threads split evenly).
SENDER_PROCESSES = int(os.environ.get("BENCH_SENDER_PROCESSES", "1"))
#: Longest the bench waits for the worker to process every event after the last request.
DRAIN_WAIT = 120
#: ``BENCH_SANDBOX_NICE=10`` runs the sandboxes at a lower CPU priority than dealbridge: in
#: production Stripe and the CRM answer from elsewhere and take none of this machine's CPU.
SANDBOX_NICENESS = int(os.environ.get("BENCH_SANDBOX_NICE", "0"))
WEBHOOK_SECRET = "whsec_bench_serve_intake"  # noqa: S105 - the bench signs its own events


def _scalar(url: str, sql: str) -> Any:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).one()
    finally:
        engine.dispose()


def _waiting(url: str) -> int:
    row = _scalar(
        url,
        "SELECT (SELECT COUNT(*) FROM inbox_events WHERE status IN ('pending', "
        "'processing')) + (SELECT COUNT(*) FROM outbox_messages WHERE status IN "
        "('pending', 'processing'))",
    )
    return int(row[0])


def _wait_idle(url: str, seconds: float = DRAIN_WAIT) -> None:
    deadline = time.monotonic() + seconds
    time.sleep(3)  # let the clock's start-up catch-up begin before judging "idle"
    while time.monotonic() < deadline and _waiting(url):
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
    from sandboxes.stripe import StripeSandbox

    stripe_sandbox = StripeSandbox()
    salesforce, _client, _customer = host_sandboxes(stripe_sandbox, INVOICES)
    sys.stdin.read()
    stripe_sandbox.stop()
    salesforce.stop()


def run(rate: int, seconds: int, kind: str = "serve") -> dict[str, Any]:
    web_only = kind == "web-only"
    hosts = subprocess.Popen(
        [sys.executable, "-m", "bench.serve_intake", "--sandboxes"],
        preexec_fn=lambda: os.nice(SANDBOX_NICENESS),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert hosts.stdout is not None
        where = json.loads(hosts.stdout.readline())
        customer, invoices = where["customer"], where["invoices"]
        with fresh_store(STORE_OF[kind]) as url:
            link_customer(url, where["account"], customer)
            port = free_port()
            env = deployment_env(url, where["stripe_url"], where["salesforce_url"], WEBHOOK_SECRET)
            return _load(rate, seconds, kind, url, port, env, customer, invoices, web_only)
    finally:
        if hosts.stdin is not None:
            hosts.stdin.close()
        hosts.wait(timeout=60)


def _send_slice(
    endpoint: str, started: float, rate: int, numbers: list[int], invoices: list[str],
    customer: str, threads: int,
) -> tuple[list[float], int, list[str]]:  # fmt: skip
    """Send requests ``numbers`` (request n is due at ``started + n / rate`` on the system's
    monotonic clock) from ``threads`` threads; (latencies, late starts, errors)."""
    latencies: list[float] = []
    errors: list[str] = []
    late = 0
    lock = threading.Lock()
    local = threading.local()

    def send(n: int) -> None:
        nonlocal late
        due = started + n / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # open-loop pacing of the load, not synchronisation
        payload = _event(n, invoices[n % len(invoices)], customer)
        header = stripe.WebhookSignature.generate_signature_header(
            payload, WEBHOOK_SECRET, int(time.time())
        )
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        sent = time.monotonic()
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
        took = time.monotonic() - sent
        with lock:
            latencies.append(took)
            if sent - due > 0.010:
                late += 1
            if outcome is not None:
                errors.append(outcome)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, numbers))
    return latencies, late, errors


def _load(
    rate: int, seconds: int, kind: str, url: str, port: int, env: dict[str, str],
    customer: str, invoices: list[str], web_only: bool,
) -> dict[str, Any]:  # fmt: skip
    total = rate * seconds
    latencies: list[float] = []
    errors: list[str] = []
    late = 0

    with deployment(kind, env, port):
        _wait_idle(url)  # start-up's catch-up (the seeded invoices' events) is done
        endpoint = f"http://127.0.0.1:{port}/webhooks/stripe"
        started = time.monotonic() + 1.0
        # SENDER_PROCESSES > 1 splits the load across processes, so the sender's own
        # interpreter (its GIL) is less of every figure.
        slices = [list(range(k, total, SENDER_PROCESSES)) for k in range(SENDER_PROCESSES)]
        threads = max(1, SENDERS // SENDER_PROCESSES)
        with ProcessPoolExecutor(SENDER_PROCESSES) as senders:
            results = list(
                senders.map(
                    _send_slice,
                    *zip(*[
                        (endpoint, started, rate, numbers, invoices, customer, threads)
                        for numbers in slices
                    ], strict=True),
                )
            )  # fmt: skip
        for part_latencies, part_late, part_errors in results:
            latencies += part_latencies
            late += part_late
            errors += part_errors
        finished = time.monotonic()
        drained = math.nan
        deadline = time.monotonic() + (0 if web_only else DRAIN_WAIT)
        while time.monotonic() < deadline:
            waiting = _scalar(
                url,
                "SELECT COUNT(*) FROM inbox_events WHERE status IN ('pending', 'processing')",
            )[0]
            if waiting == 0:
                drained = time.monotonic() - finished
                break
            time.sleep(0.5)  # a benchmark polling for the end of the work
        stored = _scalar(
            url,
            "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM inbox_events "
            "WHERE event_id LIKE 'evt_bench_%'",
        )
        done = _scalar(
            url,
            "SELECT COUNT(*) FROM inbox_events WHERE event_id LIKE 'evt_bench_%' "
            "AND status = 'done'",
        )[0]
    return {
        "rate": rate,
        "sent": total,
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "late_starts": late,
        "stored": stored[0],
        "distinct": stored[1],
        "done": done,
        "drained_s": drained,
    }


def main(argv: list[str]) -> None:
    if argv[:1] == ["--sandboxes"]:
        sandboxes()
        return
    seconds = SECONDS
    if "--seconds" in argv:
        at = argv.index("--seconds")
        seconds = int(argv[at + 1])
        del argv[at : at + 2]
    kind = "serve"
    for flag in ("--web-only", "--procfile"):
        if flag in argv:
            argv.remove(flag)
            kind = flag[2:]
    rates = [int(a) for a in argv] or list(RATES)
    print(
        f"{'rate/s':>6} {'sent':>6} {'errors':>6} {'p50':>8} {'p99':>8} {'max':>8} "
        f"{'late':>5} {'stored':>6} {'done':>6} {'drained':>8}"
    )
    for rate in rates:
        r = run(rate, seconds, kind)
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
