"""Stripe answering slowly never slows intake: no store session is open during a Stripe call.

On SQLite every transaction holds the database's write lock from BEGIN IMMEDIATE, so a
handler that called Stripe inside one made webhook intake wait (and answer 500 after
30 s) and ``/healthz`` answer 503 for as long as Stripe took. Here the Stripe sandbox holds
the worker's invoice fetch for as long as the test wants (no sleeping: the hold says when
the call is in flight, and the test releases it) while webhooks and health checks arrive.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from connector.jobs.schedule import process_inbox
from connector.services import activation
from connector.services.plans import approve
from tests.e2e.conftest import World, make_world
from tests.support import FrozenClock
from tests.support.stripe_events import stripe_signature

#: What intake and /healthz must answer within while Stripe is slow.
BUDGET_SECONDS = 1.0


@pytest.fixture
def sqlite_world(tmp_path: Path, clock: FrozenClock) -> Iterator[World]:
    world = make_world(f"sqlite:///{tmp_path / 'dealbridge.sqlite3'}", clock)
    world.start()
    yield world
    world.stop()


def _signed_event(world: World, event_id: str) -> tuple[str, dict[str, str]]:
    assert world.config is not None
    secret = world.config.secrets.stripe_webhook_secrets[0].reveal()
    payload = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "invoice.paid",
            "created": int(world.clock().timestamp()),
            "data": {"object": {"id": "in_elsewhere", "object": "invoice", "customer": "cus_x"}},
        }
    )
    signature = stripe_signature(payload, int(world.clock().timestamp()), secret)
    return payload, {"Content-Type": "application/json", "Stripe-Signature": signature}


def test_intake_and_healthz_answer_at_once_while_the_worker_waits_on_stripe(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    assert world.runtime is not None
    runtime = world.runtime
    world.sync()
    plan = world.plan_for("acme_platform")
    approve(runtime, plan["id"], actor="test")
    activation.activate(runtime, plan["id"])
    world.sync()
    customer = world.plan_for("acme_platform")["stripe_customer_id"]
    invoice = world.invoice_by_hand(customer)
    slow = world.stripe_sandbox.hold(f"/v1/invoices/{invoice.id}", method="GET")
    world.stripe_sandbox.deliver_webhooks()  # stored in the inbox; the worker fetches them
    worker_done: list[int] = []
    worker = threading.Thread(target=lambda: worker_done.append(process_inbox(runtime)))
    worker.start()
    try:
        assert slow.arrived.wait(timeout=30), "the worker never asked Stripe for the invoice"
        timings: list[tuple[str, int, float]] = []
        for n in range(5):
            payload, headers = _signed_event(world, f"evt_while_slow_{n}")
            started = time.perf_counter()
            answer = requests.post(
                f"{world.app_url}/webhooks/stripe", data=payload, headers=headers, timeout=10
            )
            timings.append(("webhook", answer.status_code, time.perf_counter() - started))
            started = time.perf_counter()
            health = requests.get(f"{world.app_url}/healthz", timeout=10)
            timings.append(("healthz", health.status_code, time.perf_counter() - started))
        assert slow.waiting >= 1 and not worker_done, "Stripe answered before the checks ran"
    finally:
        slow.release()
        worker.join(timeout=60)
    assert all(status == 200 for _, status, _ in timings), timings
    assert max(seconds for _, _, seconds in timings) < BUDGET_SECONDS, timings
    assert worker_done and worker_done[0] >= 1
    world.sync()
    records = [r for r in world.crm.invoices() if r.get("stripe_invoice_id") == invoice.id]
    assert [r["status"] for r in records] == ["open"]
