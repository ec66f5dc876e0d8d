"""Intake notices a gap: an event delivered long after Stripe created it was retried, so the
endpoint was failing and other events may still wait in Stripe's retry schedule; a catch-up
from ``/v1/events`` is requested at once (the ``catch_up_stripe`` job runs it)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from connector.services.reconcile import CATCH_UP_CURSOR, LATE_DELIVERY
from connector.store.cursors import read_cursor
from connector.store.db import Database
from tests.support import FrozenClock
from tests.support.stripe_events import load_event, stripe_signature


def _deliver(client: Any, clock: FrozenClock, created_ago: timedelta, event_id: str) -> Any:
    event = load_event("invoice.paid__ach.json")
    event["id"] = event_id
    event["created"] = int((clock() - created_ago).timestamp())
    body = json.dumps(event)
    signature = stripe_signature(body, int(clock().timestamp()))
    return client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": signature},
        content_type="application/json",
    )


def _catch_up_due(db: Database) -> str | None:
    with db.session() as session:
        return read_cursor(session, CATCH_UP_CURSOR)


def test_an_event_delivered_as_it_happens_requests_nothing(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    response = _deliver(store_client, clock, timedelta(seconds=5), "evt_fresh")
    assert response.status_code == 200
    assert _catch_up_due(db) is None


def test_a_late_delivery_requests_a_catch_up_with_stripe(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    late = LATE_DELIVERY + timedelta(seconds=1)
    response = _deliver(store_client, clock, late, "evt_retried")
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "stored"
    assert _catch_up_due(db) is not None


def test_a_late_duplicate_requests_nothing(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    _deliver(store_client, clock, timedelta(seconds=1), "evt_seen")
    response = _deliver(store_client, clock, timedelta(hours=1), "evt_seen")
    assert response.get_json()["outcome"] == "duplicate"
    assert _catch_up_due(db) is None
