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
t0 + i/rate, whatever the answers), each a distinct event, from one asyncio sender
(``bench._sender``), while serve's worker fetches each invoice from Stripe and writes it
to Salesforce. One second at the rate is sent first and not measured (warm-up).

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
import sqlite3
import subprocess
import sys
import time
from typing import Any

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
    waiting_work,
)
from bench._sender import request_bytes, send_open_loop
from connector.store.intake_spool import spool_path

RATES = (50, 100, 200, 400)
SECONDS = 10
INVOICES = 200
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


def _spooled_bench_events(url: str) -> int:
    path = spool_path(url)
    if path is None or not path.exists():
        return 0
    with sqlite3.connect(path) as spool:
        return int(
            spool.execute(
                "SELECT COUNT(*) FROM spooled_events WHERE event_id LIKE 'evt_bench_%'"
            ).fetchone()[0]
        )


def _wait_idle(url: str, seconds: float = DRAIN_WAIT) -> None:
    deadline = time.monotonic() + seconds
    time.sleep(3)  # let the clock's start-up catch-up begin before judging "idle"
    while time.monotonic() < deadline and waiting_work(url):
        time.sleep(0.5)  # a benchmark waiting for the start-up work to end


def _event(n: int, invoice_id: str, customer: str, prefix: str = "evt_bench") -> str:
    return json.dumps(
        {
            "id": f"{prefix}_{n:07d}",
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
    web_only = kind in ("web-only", "procfile-web-only")
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


def _requests(
    host: str, port: int, total: int, invoices: list[str], customer: str, prefix: str = "evt_bench"
) -> list[bytes]:
    """``total`` signed ``invoice.paid`` deliveries, each a distinct event, signed now (well
    within the signature's five-minute tolerance for a run of seconds)."""
    signed_at = int(time.time())
    built = []
    for n in range(total):
        payload = _event(n, invoices[n % len(invoices)], customer, prefix)
        header = stripe.WebhookSignature.generate_signature_header(
            payload, WEBHOOK_SECRET, signed_at
        )
        built.append(
            request_bytes(
                host,
                port,
                "/webhooks/stripe",
                payload.encode(),
                {"Content-Type": "application/json", "Stripe-Signature": header},
            )
        )
    return built


def _load(
    rate: int, seconds: int, kind: str, url: str, port: int, env: dict[str, str],
    customer: str, invoices: list[str], web_only: bool,
) -> dict[str, Any]:  # fmt: skip
    total = rate * seconds
    with deployment(kind, env, port):
        _wait_idle(url)  # start-up's catch-up (the seeded invoices' events) is done
        # Warm-up, not measured: one second at the rate, as a server that has been up a
        # while has had (each web thread opens its store connections, SQLAlchemy compiles
        # its statements); then the worker drains it.
        warm_up = _requests("127.0.0.1", port, rate, invoices, customer, "evt_warm")
        send_open_loop("127.0.0.1", port, warm_up, rate)
        if not web_only:
            _wait_idle(url)
        sent = send_open_loop(
            "127.0.0.1", port, _requests("127.0.0.1", port, total, invoices, customer), rate
        )
        latencies, errors, late = sent.latencies, sent.errors, sent.late
        if os.environ.get("BENCH_TIMELINE"):
            with open(os.environ["BENCH_TIMELINE"], "w") as out:
                out.writelines(f"{at:.4f} {took * 1000:.2f}\n" for at, took in sent.timeline)
        finished = time.monotonic()
        drained = math.nan
        deadline = time.monotonic() + (0 if web_only else DRAIN_WAIT)
        while time.monotonic() < deadline:
            if waiting_work(url, outbox=False) == 0:
                drained = time.monotonic() - finished
                break
            time.sleep(0.5)  # a benchmark polling for the end of the work
        stored = _scalar(
            url,
            "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM inbox_events "
            "WHERE event_id LIKE 'evt_bench_%'",
        )
        if web_only:  # no worker moves the spooled events into the inbox: count them there
            spooled = _spooled_bench_events(url)
            stored = (stored[0] + spooled, stored[1] + spooled)
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
    for flag in ("--web-only", "--procfile-web-only", "--procfile"):
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
