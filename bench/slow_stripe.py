"""Webhook intake and ``/healthz`` of `dealbridge serve` on SQLite while Stripe answers in 40 s.

    .venv/bin/python -m bench.slow_stripe                   # Stripe answers in 40 s
    .venv/bin/python -m bench.slow_stripe --delay 60 --probes 4

Issue 16's Done-when: "With Stripe answering in 40 s, webhook intake still acknowledges in
under a second and /healthz stays 200, on SQLite". A child process hosts the Stripe and
Salesforce sandboxes (one linked customer with a few finalized invoices); this process
migrates a fresh SQLite store, links the customer and starts ``dealbridge serve`` (web,
worker and clock as supervised processes). Once serve is idle after its start-up catch-up,
the Stripe sandbox starts answering every ``GET /v1/invoices/in_...`` after ``--delay``
seconds (a WSGI wrapper that sleeps in the sandbox's own request thread), and signed
``invoice.paid`` webhooks of those invoices are POSTed so the worker fetches them. From the
moment the first slow fetch reaches Stripe until ``--delay`` seconds later, this process
POSTs another signed webhook and GETs ``/healthz`` every 1/``--probes`` seconds, and times
each answer. Then Stripe answers at once again and the run waits for the worker to finish.

Printed (one JSON line): the delay, the slow Stripe calls (how many, and the longest), the
webhooks and health checks made while a slow call was in flight with their statuses and
latency p50 / p99 / max, whether every webhook was stored once, and the seconds after
Stripe recovered until every event was processed. A benchmark, not a test: it takes about
a minute and a half.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
import stripe

from bench._deploy import REPO, deployment, free_port, host_sandboxes, percentile, waiting_work
from bench.serve_intake import WEBHOOK_SECRET, _event, _wait_idle

DELAY_SECONDS = 40.0
PROBES_PER_SECOND = 2.0
INVOICES = 4
#: Longest the run waits for the worker once Stripe answers at once again.
DRAIN_WAIT = 180


class SlowInvoices:
    """The Stripe sandbox's WSGI app, answering invoice retrievals after ``delay`` seconds
    while ``slow`` is set; every other request (and every sandbox method) passes through."""

    def __init__(self, app: Any, delay: float) -> None:
        self.app = app
        self.delay = delay
        self.slow = threading.Event()
        self.calls: list[tuple[float, float]] = []  # (started, took) on the monotonic clock
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        held = (
            self.slow.is_set()
            and environ.get("REQUEST_METHOD") == "GET"
            and path.startswith("/v1/invoices/in_")
        )
        if not held:
            return self.app(environ, start_response)
        started = time.monotonic()
        print(json.dumps({"slow_call": started}), flush=True)
        time.sleep(self.delay)  # the slow Stripe being measured, in the sandbox's thread
        answer = self.app(environ, start_response)
        with self._lock:
            self.calls.append((started, time.monotonic() - started))
        return answer


def sandboxes(delay: float) -> None:
    """Child process: host both sandboxes, seed the invoices, print where they are, then
    obey stdin: ``slow`` (invoice retrievals take ``delay`` s), ``fast``, ``calls`` (print
    the slow calls made) until stdin closes."""
    from sandboxes.stripe import StripeSandbox

    stripe_sandbox = StripeSandbox()
    slow = SlowInvoices(stripe_sandbox.app, delay)
    stripe_sandbox.app = slow  # type: ignore[assignment]
    salesforce, _client, _customer = host_sandboxes(stripe_sandbox, INVOICES)
    for line in sys.stdin:
        command = line.strip()
        if command == "slow":
            slow.slow.set()
        elif command == "fast":
            slow.slow.clear()
        elif command == "calls":
            print(json.dumps({"calls": slow.calls}), flush=True)
    stripe_sandbox.stop()
    salesforce.stop()


def _signed(payload: str) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        payload, WEBHOOK_SECRET, int(time.time())
    )
    return {"Content-Type": "application/json", "Stripe-Signature": header}


def _summary(samples: list[tuple[int, float]]) -> dict[str, Any]:
    seconds = [s for _, s in samples]
    return {
        "count": len(samples),
        "statuses": sorted({status for status, _ in samples}),
        "p50_ms": round(percentile(seconds, 50) * 1000, 1),
        "p99_ms": round(percentile(seconds, 99) * 1000, 1),
        "max_ms": round(max(seconds, default=float("nan")) * 1000, 1),
        "under_1s": sum(1 for s in seconds if s < 1.0),
    }


def run(delay: float, probes_per_second: float) -> dict[str, Any]:
    from connector.demo.world import DEMO_STRIPE_KEY
    from connector.store.migrate import upgrade
    from sandboxes.salesforce import DEMO_PASSWORD, DEMO_USERNAME

    hosts = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
        [sys.executable, "-m", "bench.slow_stripe", "--sandboxes", "--delay", str(delay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert hosts.stdin is not None and hosts.stdout is not None
    child_in, child_out = hosts.stdin, hosts.stdout
    tmp = tempfile.TemporaryDirectory()
    try:
        where = json.loads(child_out.readline())
        customer, invoices = where["customer"], where["invoices"]
        slow_started = threading.Event()
        replies: list[dict[str, Any]] = []

        def listen() -> None:
            for line in child_out:
                message = json.loads(line)
                if "slow_call" in message:
                    slow_started.set()
                else:
                    replies.append(message)

        threading.Thread(target=listen, daemon=True).start()
        db_path = Path(tmp.name) / "serve.sqlite3"
        url = f"sqlite:///{db_path}"
        upgrade(url)
        with sqlite3.connect(db_path) as conn:
            conn.execute(
                "INSERT INTO customer_links (crm_account_id, stripe_customer_id, source, "
                "linked_at) VALUES (?, ?, 'found', CURRENT_TIMESTAMP)",
                (where["account"], customer),
            )
        port = free_port()
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
            # Stripe's answer must be waited for, not timed out: 40 s is within the bound.
            "DEALBRIDGE__STRIPE__TIMEOUT_SECONDS": str(int(delay) + 30),
            "DEALBRIDGE__CRM__SALESFORCE__INSTANCE_URL": where["salesforce_url"],
            "DEALBRIDGE__WEB__HOST": "127.0.0.1",
            "DEALBRIDGE__APP__LOG_LEVEL": "WARNING",
        }
        base = f"http://127.0.0.1:{port}"
        webhooks: list[tuple[int, float]] = []
        health: list[tuple[int, float]] = []
        sent = 0
        with deployment("serve", env, port), requests.Session() as session:
            _wait_idle(url)  # the start-up catch-up ran at full speed
            child_in.write("slow\n")
            child_in.flush()
            for invoice in invoices:  # the worker fetches these: each call takes `delay`
                payload = _event(sent, invoice, customer)
                session.post(f"{base}/webhooks/stripe", data=payload, headers=_signed(payload))
                sent += 1
            if not slow_started.wait(timeout=60):
                raise RuntimeError("the worker never asked Stripe for an invoice")
            window_end = time.monotonic() + delay
            while time.monotonic() < window_end:
                payload = _event(sent, invoices[sent % len(invoices)], customer)
                started = time.perf_counter()
                answer = session.post(
                    f"{base}/webhooks/stripe", data=payload, headers=_signed(payload), timeout=60
                )
                webhooks.append((answer.status_code, time.perf_counter() - started))
                sent += 1
                started = time.perf_counter()
                answer = session.get(f"{base}/healthz", timeout=60)
                health.append((answer.status_code, time.perf_counter() - started))
                time.sleep(1 / probes_per_second)  # the probes' pace, not synchronisation
            child_in.write("fast\n")
            child_in.flush()
            recovered = time.monotonic()
            drained = float("nan")
            while time.monotonic() < recovered + DRAIN_WAIT:
                if waiting_work(url, outbox=False) == 0:
                    drained = time.monotonic() - recovered
                    break
                time.sleep(0.5)  # a benchmark polling for the end of the work
            with sqlite3.connect(db_path, timeout=30) as conn:
                stored, distinct, done = conn.execute(
                    "SELECT COUNT(*), COUNT(DISTINCT event_id), SUM(status = 'done') "
                    "FROM inbox_events WHERE event_id LIKE 'evt_bench_%'"
                ).fetchone()
        child_in.write("calls\n")  # every slow call has ended by now
        child_in.flush()
        deadline = time.monotonic() + 10
        while not replies and time.monotonic() < deadline:
            time.sleep(0.1)  # the child's answer to "calls"
        calls = replies[0]["calls"] if replies else []
        return {
            "delay_s": delay,
            "slow_stripe_calls": len(calls),
            "longest_stripe_call_s": round(max((took for _, took in calls), default=0.0), 1),
            "webhooks_while_slow": _summary(webhooks),
            "healthz_while_slow": _summary(health),
            "webhooks_sent": sent,
            "stored": stored,
            "distinct": distinct,
            "done": done,
            "drained_after_recovery_s": round(drained, 1),
        }
    finally:
        child_in.close()
        hosts.wait(timeout=60)
        tmp.cleanup()


def main(argv: list[str]) -> None:
    delay, probes = DELAY_SECONDS, PROBES_PER_SECOND
    if "--delay" in argv:
        delay = float(argv[argv.index("--delay") + 1])
    if "--probes" in argv:
        probes = float(argv[argv.index("--probes") + 1])
    if "--sandboxes" in argv:
        sandboxes(delay)
        return
    print(json.dumps(run(delay, probes)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
